"""MoE plan: gating V1-V3, capacity dropping, node limits, bias update, placement, dispatch plan.

Counts (tokens, pairs, bytes) are integers and compared exactly; loss values of random routing
are compared with the value of perfectly uniform routing (1.0) at a tolerance set by the
sampling noise of the token count used."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsim.plan.moe import (
    apply_capacity,
    bias_dynamics,
    bytes_per_token,
    deepseek_v1,
    deepseek_v2,
    deepseek_v3,
    even_token_src,
    expert_balance_loss,
    expert_capacity,
    gate_for_model,
    group_limited_topk,
    imbalance,
    make_dispatch_plan,
    place_experts,
    plan_dispatch,
    resolve_replicas,
    routing_stats,
    softmax_topk,
    synthetic_dispatch_plan,
    synthetic_logits,
    update_bias,
    v2_balance_losses,
    v3_sequence_balance_loss,
)
from hwsim.spec.errors import SpecError
from hwsim.spec.model import list_models, load_model_config


def test_softmax_topk_weights_and_order() -> None:
    logits = synthetic_logits(64, 8, seed=1)
    r = softmax_topk(logits, 2)
    assert np.all(np.diff(r.topk_weight, axis=1) <= 0)  # sorted by descending probability
    np.testing.assert_allclose(r.scores.sum(axis=1), 1.0, rtol=1e-12)  # fp64 rounding only
    rn = softmax_topk(logits, 2, normalize=True)
    np.testing.assert_allclose(rn.topk_weight.sum(axis=1), 1.0, rtol=1e-12)
    assert np.array_equal(r.topk_idx, rn.topk_idx)


def test_capacity_drops_in_gshard_priority_order() -> None:
    # every token's first choice is expert 0, second choice expert 1
    logits = np.tile(np.array([5.0, 4.0, 0.0, 0.0]), (10, 1))
    r = softmax_topk(logits, 2, capacity_factor=1.0)
    cap = expert_capacity(10, 4, 2, 1.0)
    assert cap == 5 and r.capacity == 5
    assert list(r.topk_idx[:5, 0]) == [0] * 5 and np.all(r.topk_idx[5:, 0] == -1)
    assert np.all(r.tokens_per_expert() <= cap)
    assert r.dropped == 10 and np.all(r.topk_weight[r.topk_idx < 0] == 0)
    # first choices outrank second choices: tokens 1, 2 fill expert 0 with first choices, so
    # token 0's second choice (expert 0) is dropped although token 0 comes first
    idx = np.array([[1, 0], [0, 1], [0, 1]])
    kept = apply_capacity(idx, 2, 2)
    assert kept.tolist() == [[1, -1], [0, 1], [0, -1]]


def test_capacity_epsilon() -> None:
    assert expert_capacity(96, 8, 2, 1.25) == 30


def test_deepseek_v1_shared_and_unnormalised() -> None:
    logits = synthetic_logits(32, 16, seed=2)
    r = deepseek_v1(logits, 4, n_shared=2)
    assert r.n_shared == 2
    np.testing.assert_allclose(r.topk_weight, np.take_along_axis(r.scores, r.topk_idx, 1))
    assert np.all(r.topk_weight.sum(axis=1) < 1.0)


@settings(max_examples=30, deadline=None)
@given(
    st.integers(1, 64),
    st.sampled_from([(8, 2), (8, 4), (16, 4), (16, 8)]),
    st.integers(1, 4),
    st.integers(0, 10_000),
)
def test_group_limited_never_exceeds_topk_groups(
    tokens: int, groups: tuple[int, int], tg: int, seed: int
) -> None:
    n_groups, per = groups
    e = n_groups * per
    tg = min(tg, n_groups)
    k = min(tg * per, 8)
    s = synthetic_logits(tokens, e, "deepep", seed)
    for gs in ("max", "top2_sum"):
        idx = group_limited_topk(s, k, n_groups, tg, gs)  # type: ignore[arg-type]
        used = idx // per
        n_used = np.array([len(set(row)) for row in used.tolist()])
        assert np.all(n_used <= tg)
        assert all(len(set(row)) == k for row in idx.tolist())  # k distinct experts


def test_group_score_top2_sum_differs_from_max() -> None:
    # group 0: one high expert; group 1: two good experts → top2_sum prefers group 1
    s = np.array([[0.9, 0.1, 0.6, 0.55]])
    assert group_limited_topk(s, 1, 2, 1, "max").tolist() == [[0]]
    assert group_limited_topk(s, 1, 2, 1, "top2_sum").tolist() == [[2]]


def test_deepseek_v2_device_limit_and_losses() -> None:
    logits = synthetic_logits(4096, 64, seed=3)
    r = deepseek_v2(logits, 6, n_devices=8, max_devices=3, routed_scaling_factor=16.0)
    devs = r.topk_idx // 8
    assert max(len(set(row)) for row in devs.tolist()) <= 3
    np.testing.assert_allclose(r.topk_weight, 16.0 * np.take_along_axis(r.scores, r.topk_idx, 1))
    losses = v2_balance_losses(r, 8, 3)
    # near-uniform routing: each loss ≈ 1 (its minimum under balance); 4096 tokens → a few %
    for name in ("expert", "device", "comm"):
        assert losses[name] == pytest.approx(1.0, abs=0.05), name
    assert expert_balance_loss(r) == pytest.approx(losses["expert"], rel=1e-12)


def test_deepseek_v2_ranks_devices_by_their_best_expert() -> None:
    """DeepSeek-V2 device-limited routing (paper §2.2.2; HF ``group_limited_greedy``): a
    device's score is its *highest* affinity, not the sum of its top two (V3's ``noaux_tc``).

    8 experts on 4 devices (2 each), M = 1 device, top-2. Device 0 holds logits (3, -5): max
    e³ = 20.1; device 1 holds (2.5, 2.5): max e^2.5 = 12.2 but top-2 sum 24.4 > 20.1. Devices
    2 and 3 hold -5 (negligible). Max picks device 0, so the experts are 0 then 1; a top-2-sum
    score would pick device 1 (experts 2, 3)."""
    logits = np.array([[3.0, -5.0, 2.5, 2.5, -5.0, -5.0, -5.0, -5.0]])
    r = deepseek_v2(logits, 2, n_devices=4, max_devices=1, routed_scaling_factor=16.0)
    assert r.topk_idx.tolist() == [[0, 1]]
    # gates: the (not renormalised) softmax probabilities × 16; fp64 rounding only
    z = np.exp(logits[0] - 3.0)
    np.testing.assert_allclose(r.topk_weight[0], 16.0 * z[[0, 1]] / z.sum(), rtol=1e-12)


def _v2_reference(logits: np.ndarray, k: int, n_devices: int, m: int) -> np.ndarray:
    """HF DeepSeek-V2 ``group_limited_greedy`` as written there: per-group max, keep the M best
    groups, mask the others out, top-k over all experts (a second implementation: it masks
    where the package gathers)."""
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    t, e = p.shape
    best = p.reshape(t, n_devices, e // n_devices).max(axis=2)
    keep = np.zeros((t, n_devices), dtype=bool)
    np.put_along_axis(keep, np.argsort(-best, axis=1, kind="stable")[:, :m], True, axis=1)
    masked = np.where(np.repeat(keep, e // n_devices, axis=1), p, -np.inf)
    return np.argsort(-masked, axis=1, kind="stable")[:, :k]


def test_deepseek_v2_gate_matches_the_reference_on_its_config() -> None:
    """The DeepSeek-V2 config (160 experts, 8 groups = devices, M = 3, top-6) through
    ``gate_for_model``, against :func:`_v2_reference` on 4096 seeded tokens: the same experts
    in the same order for every token (random fp64 logits have no ties). Scoring groups by
    their top-2 sum instead changes the experts of 866 of these 4096 tokens."""
    cfg = load_model_config("deepseek-v2")
    assert cfg.moe is not None and cfg.moe.topk_method == "group_limited_greedy"
    logits = synthetic_logits(4096, 160, seed=11)
    r = gate_for_model(cfg, logits)
    want = _v2_reference(logits, 6, 8, 3)
    assert np.array_equal(r.topk_idx, want)


@settings(max_examples=50, deadline=None)
@given(
    st.sampled_from([(2, 4), (4, 2), (4, 4), (8, 2), (8, 20)]),  # (devices, experts per device)
    st.integers(1, 8),
    st.integers(1, 6),
    st.integers(0, 10_000),
)
def test_deepseek_v2_matches_the_reference_on_random_shapes(
    groups: tuple[int, int], m: int, k: int, seed: int
) -> None:
    n_devices, per = groups
    m = min(m, n_devices)
    k = min(k, m * per)
    logits = synthetic_logits(64, n_devices * per, seed=seed)
    r = deepseek_v2(logits, k, n_devices=n_devices, max_devices=m)
    assert np.array_equal(r.topk_idx, _v2_reference(logits, k, n_devices, m))


def test_deepseek_v3_bias_selects_but_does_not_weigh() -> None:
    logits = synthetic_logits(128, 16, seed=4)
    bias = np.zeros(16)
    bias[5] = 10.0  # forces expert 5 into every selection
    r = deepseek_v3(logits, 4, bias=bias, routed_scaling_factor=2.5)
    assert np.all((r.topk_idx == 5).any(axis=1))
    s = 1 / (1 + np.exp(-logits))
    w = np.take_along_axis(s, r.topk_idx, 1)
    # weights come from the unbiased scores, normalised then scaled (fp64: 1e-12)
    np.testing.assert_allclose(r.topk_weight, 2.5 * w / w.sum(1, keepdims=True), rtol=1e-12)
    np.testing.assert_allclose(r.topk_weight.sum(axis=1), 2.5, rtol=1e-12)


def test_v3_sequence_loss_uniform_is_one() -> None:
    r = deepseek_v3(np.zeros((64, 16)) + 0.01 * synthetic_logits(64, 16, seed=5), 4)
    # near-equal sigmoid scores → P_i ≈ 1/E, f averages to 1 → loss ≈ 1 within a few %
    assert v3_sequence_balance_loss(r, 16) == pytest.approx(1.0, abs=0.05)
    with pytest.raises(SpecError):
        v3_sequence_balance_loss(r, 7)


def test_update_bias_sign() -> None:
    b = update_bias(np.zeros(4), np.array([10, 0, 5, 5]), 0.1)
    assert b.tolist() == [-0.1, 0.1, 0.0, 0.0]


def test_bias_dynamics_shrink_imbalance() -> None:
    d = bias_dynamics(40, 2048, 32, 4, "zipf:1.2", gamma=0.02, seed=0)
    # skewed start: the hottest expert gets several times the mean; after 40 updates the
    # imbalance must have at least halved and ended close to balanced (sampling noise ~ 10-20%)
    assert d.imbalance[0] > 3.0
    assert d.imbalance[-5:].mean() < d.imbalance[0] / 2
    assert d.imbalance[-5:].mean() < 1.6


def test_synthetic_logits_seeded_and_skewed() -> None:
    a = synthetic_logits(256, 32, "zipf:1.2", seed=7)
    assert np.array_equal(a, synthetic_logits(256, 32, "zipf:1.2", seed=7))
    load = np.bincount(softmax_topk(a, 2).topk_idx.ravel(), minlength=32)
    assert imbalance(load) > 3.0  # Zipf(1.2) over 32 experts: hottest ≈ 8× mean
    with pytest.raises(SpecError):
        synthetic_logits(4, 4, "zipf:x")
    with pytest.raises(SpecError):
        synthetic_logits(4, 4, "pareto")


def test_placement_redundant_hot_experts() -> None:
    load = np.ones(16)
    load[3] = 10.0
    pl = place_experts(16, 8, gpus_per_node=4, n_redundant=2, expert_load=load)
    assert pl.n_redundant == 2 and len(pl.replicas[3]) == 3
    assert all(3 in pl.rank_experts[r] for r in pl.replicas[3])
    pl_node = place_experts(16, 8, 4, 2, load, same_node=True)
    assert {r // 4 for r in pl_node.replicas[3]} == {pl_node.replicas[3][0] // 4}
    # DeepSeek-V3 decode: 256 experts + 64 redundant on 320 GPUs, one expert per GPU
    pl320 = place_experts(256, 320, 8, 64)
    assert all(len(es) == 1 for es in pl320.rank_experts)


def test_resolve_replicas_balances_copies() -> None:
    idx = np.zeros((100, 1), dtype=np.int64)  # every token picks expert 0
    pl = place_experts(4, 4, 4, n_redundant=3, expert_load=np.array([100.0, 0, 0, 0]))
    dst = resolve_replicas(idx, pl)
    counts = np.bincount(dst.ravel(), minlength=4)
    assert counts.tolist() == [25, 25, 25, 25]
    for t, r in enumerate(dst[:, 0].tolist()):
        assert 0 in pl.rank_experts[r], t


def test_plan_by_hand() -> None:
    # 2 nodes × 2 GPUs. Token 0 on rank 0 goes to ranks 1, 2, 3; token 1 on rank 3 to 3 and 0.
    dst = np.array([[1, 2, 3, 2], [3, 0, -1, 3]])
    plan = plan_dispatch(dst, np.array([0, 3]), 4, 2, hidden=128)
    assert plan.pair_token.tolist() == [0, 0, 0, 1, 1]
    assert plan.pair_dst.tolist() == [1, 2, 3, 0, 3]
    assert plan.rdma_pairs.tolist() == [[1, 1], [0, 0], [0, 0], [1, 1]]
    # two-hop: token 0 crosses IB once 0→2, then NVLink 2→3; token 1 crosses IB 3→1, NVLink 1→0
    assert plan.ib_src.tolist() == [0, 3] and plan.ib_dst.tolist() == [2, 1]
    assert plan.rdma_tokens[0, 2] == 1 and plan.rdma_tokens[3, 1] == 1
    assert plan.rdma_tokens.sum() == 2
    assert plan.nvl_tokens[0, 1] == 1 and plan.nvl_tokens[2, 3] == 1 and plan.nvl_tokens[1, 0] == 1
    assert plan.nvl_tokens.sum() == 3
    # direct: token 0 crosses IB twice (to 2 and 3); token 1 once (3→0); rank 3 keeps its own
    assert plan.direct_rdma.sum() == 3 and plan.direct_nvl.sum() == 1
    assert plan.tokens[3, 3] == 1
    bpt = 128 + 4  # fp8: 128 bytes + one fp32 scale
    assert plan.deepep_rdma_bytes().tolist() == [2 * bpt, 0, 0, 2 * bpt]
    assert plan.deepep_nvl_bytes().tolist() == [bpt, bpt, bpt, 2 * bpt]
    assert plan.deepep_nvl_bytes("combine").tolist() == [256, 256, 256, 512]


def test_bytes_per_token() -> None:
    assert bytes_per_token(7168, "fp8") == 7168 * (1 + 4 / 128)  # DeepEP's factor, exact
    assert bytes_per_token(7168, "bf16") == 2 * 7168
    with pytest.raises(SpecError):
        bytes_per_token(7168, "int3")


@settings(max_examples=40, deadline=None)
@given(
    st.integers(1, 6),  # tokens per rank
    st.sampled_from([(2, 1), (2, 2), (4, 2), (4, 4), (8, 4), (6, 2)]),  # (ranks, gpus/node)
    st.integers(1, 4),  # experts per rank
    st.integers(1, 4),  # top-k
    st.integers(0, 2),  # redundant experts
    st.integers(0, 1000),
)
def test_plan_invariants(
    tpr: int, layout: tuple[int, int], epr: int, k: int, red: int, seed: int
) -> None:
    ranks, gpn = layout
    e = ranks * epr
    k = min(k, e)
    r = softmax_topk(synthetic_logits(tpr * ranks, e, "zipf:1.0", seed), k)
    pl = place_experts(e, ranks, gpn, red, r.tokens_per_expert())
    plan = make_dispatch_plan(r, pl, hidden=256)
    src = even_token_src(r.tokens, ranks)
    # each (token, dst) pair: dst hosts one of the token's experts; pairs are unique
    for t, d in zip(plan.pair_token.tolist(), plan.pair_dst.tolist(), strict=True):
        assert set(pl.rank_experts[d]) & set(r.topk_idx[t].tolist())
    assert len(set(zip(plan.pair_token.tolist(), plan.pair_dst.tolist(), strict=True))) == len(
        plan.pair_token
    )
    # every (token, slot) is covered by a pair to its destination rank
    dst = plan.dst_rank
    pairs = set(zip(plan.pair_token.tolist(), plan.pair_dst.tolist(), strict=True))
    assert all((t, int(dst[t, j])) in pairs for t in range(r.tokens) for j in range(k))
    # conservation per leg: every received token arrives once, via NVLink or locally
    local = np.array(
        [
            int(((plan.pair_sender == plan.pair_dst) & (plan.pair_dst == d)).sum())
            for d in range(ranks)
        ]
    )
    assert np.array_equal(plan.nvl_tokens.sum(axis=0) + local, plan.tokens.sum(axis=0))
    assert plan.tokens.sum() == len(plan.pair_token)
    assert plan.direct_nvl.sum() + plan.direct_rdma.sum() + np.trace(plan.tokens) == len(
        plan.pair_token
    )
    # IB leg: only across nodes and to the same local index; once per (token, remote node)
    g = plan.gpus_per_node
    for s, d in zip(*np.nonzero(plan.rdma_tokens), strict=True):
        assert s // g != d // g and s % g == d % g
    remote_pairs = plan.rdma_pairs.sum() - sum(plan.rdma_pairs[s, s // g] for s in range(ranks))
    assert plan.rdma_tokens.sum() == remote_pairs
    assert plan.rdma_pairs.sum(axis=1).tolist() == [
        len(
            {
                (t, int(d) // g)
                for t, d in zip(plan.pair_token, plan.pair_dst, strict=True)
                if src[t] == s
            }
        )
        for s in range(ranks)
    ]
    # combine is the transpose
    assert np.array_equal(plan.matrix("nvl_tokens", "combine"), plan.nvl_tokens.T)
    stats = routing_stats(plan, r.topk_idx, e)
    assert stats.tokens_per_expert.sum() == r.tokens * k
    assert stats.imbalance_rank >= 1.0


def test_synthetic_plan_node_limited_and_deterministic() -> None:
    plan, _pl, idx = synthetic_dispatch_plan(32, 64, 7168, 256, 8, topk_groups=2, seed=3)
    g = plan.gpus_per_node
    nodes_per_token = np.array([len(set((row // (256 // 4)).tolist())) for row in idx])
    assert nodes_per_token.max() <= 2
    # the plan itself never sends a token to more than topk_groups nodes
    tok_node = np.unique(plan.pair_token * plan.n_nodes + plan.pair_dst // g)
    assert np.bincount(tok_node // plan.n_nodes).max() <= 2
    assert plan.rdma_pairs.sum(axis=1).max() <= 2 * 64
    plan2, _, idx2 = synthetic_dispatch_plan(32, 64, 7168, 256, 8, topk_groups=2, seed=3)
    assert np.array_equal(idx, idx2) and np.array_equal(plan.tokens, plan2.tokens)
    flows = plan.flows()
    assert sum(f.nbytes for f in flows) == pytest.approx(sum(plan.bytes_by_link_kind().values()))
    assert {f.kind for f in flows} == {"nvlink", "rdma"}


@pytest.mark.parametrize("name", [m for m in list_models() if load_model_config(m).moe])
def test_gate_for_each_moe_model(name: str) -> None:
    cfg = load_model_config(name)
    assert cfg.moe is not None
    r = gate_for_model(cfg, synthetic_logits(64, cfg.moe.n_routed_experts, seed=1))
    assert r.topk_idx.shape == (64, cfg.moe.top_k)
    assert r.n_shared == cfg.moe.n_shared_experts
    if cfg.moe.norm_topk_prob:  # weights sum to the scaling factor (fp64 rounding only)
        np.testing.assert_allclose(
            r.topk_weight.sum(axis=1), cfg.moe.routed_scaling_factor, rtol=1e-9
        )


def test_bad_inputs_raise_spec_error() -> None:
    s = np.ones((4, 8))
    with pytest.raises(SpecError, match="top_k"):
        group_limited_topk(s, 9, 1, 1)
    with pytest.raises(SpecError, match="divisible"):
        group_limited_topk(s, 2, 3, 1)
    with pytest.raises(SpecError, match="gpus_per_node"):
        place_experts(8, 12, 8)
    with pytest.raises(SpecError, match="multiple"):
        even_token_src(5, 2)
    with pytest.raises(SpecError, match="bias"):
        deepseek_v3(s, 2, bias=np.zeros(3))


def test_figures_build() -> None:
    from hwsim.report.moe_figures import (
        bias_dynamics_figure,
        dispatch_matrix_figure,
        rank_load_figure,
    )

    d = bias_dynamics(5, 256, 16, 2, "zipf:1.2", gamma=0.02)
    fig = bias_dynamics_figure(d)
    assert len(fig.data) == 4 and list(fig.data[0].y) == list(d.imbalance)
    plan, _pl, idx = synthetic_dispatch_plan(8, 16, 256, 32, 4, 1)
    assert len(rank_load_figure(routing_stats(plan, idx, 32)).data) == 2
    heat = dispatch_matrix_figure(plan, "nvl_tokens")
    assert np.asarray(heat.data[0].z).shape == (8, 8)
