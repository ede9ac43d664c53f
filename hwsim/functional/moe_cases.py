"""MoE cases for ``hwsim check``: the rank-by-rank executor against the dense float64 MoE.

Each case routes seeded tokens with one gate generation, places experts (with redundant copies
where the case says so), builds the dispatch plan, runs :func:`execute_moe` and reports the
output error under the wire dtype's tolerance. ``bytes`` match means: every byte matrix counted
while running equals the plan's, and every kept (token, slot) was computed exactly once.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from hwsim.functional.check import CheckResult, compare, inputs, register_case
from hwsim.functional.moe import execute_moe, expected_bytes, random_weights, reference_moe
from hwsim.plan.moe import (
    Placement,
    Routing,
    deepseek_v2,
    deepseek_v3,
    make_dispatch_plan,
    place_experts,
    softmax_topk,
    synthetic_logits,
)


def _run(
    name: str,
    x: np.ndarray,
    r: Routing,
    pl: Placement,
    shared: int,
    path: str,
    dispatch: str | None,
    combine: str | None,
    shared_gate: bool = False,
) -> CheckResult:
    h = x.shape[1]
    w = random_weights(h, r.n_experts, 32, shared_inter=shared, shared_gate=shared_gate, seed=7)
    plan = make_dispatch_plan(r, pl, h)
    res = execute_moe(x, r, plan, pl, w, path, dispatch, combine)
    ref = reference_moe(x, r, w)
    exp = expected_bytes(plan, path, dispatch, combine)
    bytes_ok = all(np.array_equal(res.bytes[k], v) for k, v in exp.items())
    once = bool(np.array_equal(res.arrivals, (r.topk_idx >= 0).astype(np.int64)))
    # the tolerance follows the coarsest format on the wire (fp64 when nothing is rounded)
    dtype = dispatch or combine or "fp64"
    moved = sum(float(v.sum()) for v in res.bytes.values())
    return compare(res.y, ref, dtype, case=name).with_bytes(
        bytes_ok and once,
        f"{path}; {moved / 1e6:.2f} MB moved; dropped {r.dropped}; each slot once: {once}",
    )


def _case(
    name: str,
    gate: str,
    path: str,
    dispatch: str | None,
    combine: str | None,
    tokens: int = 256,
    hidden: int = 256,
    experts: int = 64,
    ranks: int = 16,
    gpus_per_node: int = 4,
    redundant: int = 2,
) -> Callable[[], CheckResult]:
    def fn() -> CheckResult:
        x = np.asarray(inputs((tokens, hidden), "fp64", seed=0), dtype=np.float64)
        logits = synthetic_logits(tokens, experts, "zipf:1.2", seed=1)
        nodes = ranks // gpus_per_node
        shared, same_node, gated = 0, False, False
        if gate == "v3":
            r = deepseek_v3(logits, 8, nodes, max(1, nodes // 2), n_shared=1,
                            routed_scaling_factor=2.5)  # fmt: skip
            shared, same_node = 32, True
        elif gate == "v2":
            r = deepseek_v2(logits, 6, ranks, 3, n_shared=2, routed_scaling_factor=16.0)
            shared = 64
        elif gate == "switch":
            r = softmax_topk(logits, 2, capacity_factor=1.0)
        else:  # Qwen-style: softmax top-4, unnormalised, sigmoid-gated shared expert
            r = softmax_topk(logits, 4)
            shared, gated = 128, True
        pl = place_experts(experts, ranks, gpus_per_node, redundant, r.tokens_per_expert(),
                           same_node=same_node)  # fmt: skip
        return _run(name, x, r, pl, shared, path, dispatch, combine, gated)

    return fn


for _name, _args, _quick in (
    ("moe/v3/two_hop/fp64", ("v3", "two_hop", None, None), True),
    ("moe/v3/direct/fp64", ("v3", "direct", None, None), True),
    ("moe/v3/two_hop/fp8-dispatch+bf16-combine", ("v3", "two_hop", "fp8", "bf16"), True),
    ("moe/v3/two_hop/bf16", ("v3", "two_hop", "bf16", "bf16"), False),
    ("moe/v2-device-limited/two_hop/fp64", ("v2", "two_hop", None, None), True),
    ("moe/switch-capacity/two_hop/fp64", ("switch", "two_hop", None, None), True),
    ("moe/qwen-shared-gate/direct/bf16", ("qwen", "direct", "bf16", "bf16"), False),
):
    register_case(_name, _case(_name, *_args), quick=_quick)

# realistic size: DeepSeek-V3-like routing (256 experts, top-8, 4 of 8 nodes) on EP 64
register_case(
    "moe/v3/two_hop/fp8/ep64",
    _case(
        "moe/v3/two_hop/fp8/ep64",
        "v3",
        "two_hop",
        "fp8",
        "bf16",
        tokens=4096,
        hidden=512,
        experts=256,
        ranks=64,
        gpus_per_node=8,
        redundant=8,
    ),
    quick=False,
)
