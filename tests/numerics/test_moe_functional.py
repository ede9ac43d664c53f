"""MoE executor vs the dense float64 reference, over random shapes, gates, ranks and paths.

Tolerances (relative Frobenius error of the output):
* float64 wire: 1e-12 — only summation order differs from the reference.
* bf16 dispatch + bf16 combine: 2e-2 — bf16 has 8 significant bits (rel. step 2^-8 ≈ 0.4%);
  two roundings through an FFN stay well under 2%.
* fp8 e4m3 dispatch (per-128 scale) + bf16 combine: 8e-2 — e4m3 has 4 significant bits
  (rel. step 2^-4 ≈ 6% worst case, ~2-3% rms), measured ≈ 3%.
Byte counts are integers × bytes per token and must match the plan exactly."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsim.functional.moe import (
    execute_moe,
    expected_bytes,
    random_weights,
    reference_moe,
)
from hwsim.plan.moe import (
    deepseek_v2,
    deepseek_v3,
    make_dispatch_plan,
    place_experts,
    softmax_topk,
    synthetic_logits,
)

TOL = {None: 1e-12, "bf16": 2e-2, "fp8": 8e-2}


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


def _check(x, r, pl, w, path, dd, cd):  # type: ignore[no-untyped-def]
    plan = make_dispatch_plan(r, pl, x.shape[1])
    res = execute_moe(x, r, plan, pl, w, path, dd, cd)
    ref = reference_moe(x, r, w)
    assert _rel(res.y, ref) <= TOL[dd], (path, dd, _rel(res.y, ref))
    # every kept (token, slot) computed exactly once; dropped slots never
    assert np.array_equal(res.arrivals, (r.topk_idx >= 0).astype(np.int64))
    exp = expected_bytes(plan, path, dd, cd)
    for leg, m in exp.items():
        assert np.array_equal(res.bytes[leg], m), leg
    return plan, res


@settings(max_examples=30, deadline=None)
@given(
    st.integers(1, 8),  # tokens per rank
    st.sampled_from([(1, 1), (2, 2), (4, 2), (4, 4), (8, 4), (6, 3)]),  # ranks, gpus per node
    st.integers(1, 3),  # experts per rank
    st.integers(1, 4),  # top-k
    st.integers(0, 2),  # redundant experts
    st.sampled_from(["softmax", "v3", "switch_cap"]),
    st.sampled_from(["two_hop", "direct"]),
    st.integers(0, 10_000),
)
def test_executor_matches_reference(
    tpr: int,
    layout: tuple[int, int],
    epr: int,
    k: int,
    red: int,
    gate: str,
    path: str,
    seed: int,
) -> None:
    ranks, gpn = layout
    e = ranks * epr
    k = min(k, e)
    t = tpr * ranks
    h = 32
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((t, h))
    logits = synthetic_logits(t, e, "zipf:1.0", seed)
    if gate == "v3":
        groups = ranks // gpn if e % (ranks // gpn) == 0 else 1
        r = deepseek_v3(logits, k, groups, max(1, groups // 2) if k <= e // 2 else groups,
                        n_shared=1, routed_scaling_factor=2.5)  # fmt: skip
    elif gate == "switch_cap":
        r = softmax_topk(logits, k, capacity_factor=1.0)
    else:
        r = softmax_topk(logits, k, normalize=True)
    w = random_weights(h, e, 16, shared_inter=16 if gate == "v3" else 0, seed=seed)
    # a rank holds at most one copy of an expert, so copies need more than one rank
    pl = place_experts(e, ranks, gpn, min(red, ranks - 1), r.tokens_per_expert())
    _check(x, r, pl, w, path, None, None)


@pytest.mark.parametrize("path", ["two_hop", "direct"])
@pytest.mark.parametrize(("dd", "cd"), [(None, None), ("bf16", "bf16"), ("fp8", "bf16")])
def test_deepseek_like_layer(path: str, dd: str | None, cd: str | None) -> None:
    # 4 nodes × 4 ranks, 64 experts, top-8 over 2 of 4 node groups, 2 redundant hot experts
    t, h, e = 256, 256, 64
    x = np.random.default_rng(0).standard_normal((t, h))
    r = deepseek_v3(synthetic_logits(t, e, "zipf:1.2", 1), 8, 4, 2, n_shared=1,
                    routed_scaling_factor=2.5)  # fmt: skip
    w = random_weights(h, e, 32, shared_inter=32, seed=2)
    pl = place_experts(e, 16, 4, 2, r.tokens_per_expert(), same_node=True)
    plan, _res = _check(x, r, pl, w, path, dd, cd)
    # two-hop crosses InfiniBand once per (token, node): never more IB bytes than direct
    assert plan.rdma_tokens.sum() <= plan.direct_rdma.sum()
    # same-node copies keep the node limit: a token reaches at most 2 of the 4 nodes
    tok_node = np.unique(plan.pair_token * plan.n_nodes + plan.pair_dst // plan.gpus_per_node)
    assert np.bincount(tok_node // plan.n_nodes).max() <= 2


def test_qwen_style_gated_shared_and_v2() -> None:
    t, h, e = 64, 64, 16
    x = np.random.default_rng(3).standard_normal((t, h))
    w = random_weights(h, e, 16, shared_inter=64, shared_gate=True, seed=4)
    r = deepseek_v2(synthetic_logits(t, e, seed=5), 4, n_devices=4, max_devices=2, n_shared=1)
    pl = place_experts(e, 4, 2)
    _check(x, r, pl, w, "two_hop", None, None)


def test_broken_plan_is_caught() -> None:
    # a forwarder that never received a token cannot deliver it: the executor must fail
    t, h, e = 32, 16, 8
    x = np.random.default_rng(0).standard_normal((t, h))
    r = softmax_topk(synthetic_logits(t, e, seed=1), 2)
    pl = place_experts(e, 4, 2)
    w = random_weights(h, e, 8)
    plan = make_dispatch_plan(r, pl, h)
    assert plan.ib_token.size > 0
    pa = plan.pair_arrays
    # lose one InfiniBand transfer (per-pair arrays are lazy: hand the broken ones in as pairs)
    lost = dataclasses.replace(
        pa, ib_token=pa.ib_token[1:], ib_src=pa.ib_src[1:], ib_dst=pa.ib_dst[1:]
    )
    with pytest.raises(AssertionError, match="does not hold"):
        execute_moe(x, r, dataclasses.replace(plan, pairs=lost), pl, w)
