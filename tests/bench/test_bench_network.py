"""Benchmarks of the flow-level all-to-all (``make bench``; each prints a table).

* EP 64 DeepEP dispatch at 4096 tokens per rank: simulation under 1 s.
* EP 256 (32 nodes) dispatch, and one DeepSeek-V3 MoE layer at EP 320 in decode (low-latency
  dispatch + combine, 128 tokens per rank, DeepSeek-V3 gating, 32 redundant experts, two
  micro-batches overlapped with the expert GEMMs): under 10 s each.
* Events, wall time and RSS from 8 to 1024 GPUs, and at fixed EP for growing token counts:
  the cost follows the number of flows, not tokens.

Wall times are for the simulation (``simulate_alltoall``); building the routing plan
(``plan/moe``: drawing ``tokens x experts`` random scores) is reported separately.
"""

from __future__ import annotations

import resource
import time

import numpy as np
import pytest

from hwsim.plan.moe import (
    deepseek_v3,
    make_dispatch_plan,
    place_experts,
    synthetic_dispatch_plan,
    synthetic_logits,
)
from hwsim.sim.alltoall import simulate_alltoall
from hwsim.sim.gpu_gemm import simulate_gemm
from hwsim.sim.moe_overlap import dual_microbatch_overlap
from hwsim.sim.topology import build_topology


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _run(ep: int, tokens: int, kernel: str = "normal", phase: str = "dispatch"):  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    plan, _, _ = synthetic_dispatch_plan(ep, tokens, 7168, 256, 8, 4, "deepep", 8, 0, 0)
    plan_s = time.perf_counter() - t0
    topo = build_topology("h800-deepseek", max(1, ep // 8))
    c0 = time.process_time()
    res = simulate_alltoall(topo, plan, kernel, phase)
    return res, plan_s, time.process_time() - c0


@pytest.mark.bench
def test_bench_ep64_and_ep256() -> None:
    print("\nDeepEP normal dispatch, 4096 tokens/rank, h800-deepseek")
    print(
        f"{'EP':>5} {'flows':>7} {'transfers':>9} {'events':>7} {'updates':>7} "
        f"{'sim wall s':>10} {'sim cpu s':>9} {'plan s':>7} {'RDMA GB/s':>9}"
    )
    for ep, limit in ((64, 1.0), (256, 10.0)):
        res, plan_s, cpu = _run(ep, 4096)
        print(
            f"{ep:>5} {res.flows:>7} {res.transfers:>9} {res.events:>7} {res.rate_updates:>7} "
            f"{res.wall_s:>10.2f} {cpu:>9.2f} {plan_s:>7.2f} {res.rdma_gbps:>9.1f}"
        )
        # CPU seconds: the wall clock of a shared 2-core machine also counts other jobs
        assert cpu < limit


def deepseek_v3_decode_plan(ep: int, tokens_per_rank: int, redundant: int, seed: int = 0):  # type: ignore[no-untyped-def]
    """DeepSeek-V3 gate (sigmoid, 8 groups, top-4 groups, top-8) on synthetic logits, 256
    experts plus ``redundant`` copies of the hottest over ``ep`` ranks."""
    logits = synthetic_logits(ep * tokens_per_rank, 256, "uniform", seed)
    routing = deepseek_v3(logits, 8, n_groups=8, topk_groups=4)
    load = np.bincount(routing.topk_idx.reshape(-1), minlength=256)
    placement = place_experts(256, ep, 8, redundant, load)
    return make_dispatch_plan(routing, placement, 7168), routing


@pytest.mark.bench
def test_bench_deepseek_v3_layer_ep320_decode() -> None:
    ep, tokens = 320, 128
    t0 = time.perf_counter()
    plan, _ = deepseek_v3_decode_plan(ep, tokens, 32)
    plan_s = time.perf_counter() - t0
    topo = build_topology("h800-deepseek", ep // 8)
    c0 = time.process_time()
    w0 = time.perf_counter()
    disp = simulate_alltoall(topo, plan, "low-latency", "dispatch")
    comb = simulate_alltoall(topo, plan, "low-latency", "combine")
    # expert FFN of one micro-batch on one rank: its (token, expert) rows through the SwiGLU
    rows = int(np.bincount(plan.dst_rank[plan.dst_rank >= 0], minlength=ep).max()) // 2
    up = simulate_gemm("h800", max(rows, 1), 2 * 2048, 7168, "fp8").time_s
    down = simulate_gemm("h800", max(rows, 1), 7168, 2048, "fp8").time_s
    ov = dual_microbatch_overlap(
        30e-6, up + down, disp.time_s / 2, comb.time_s / 2, comm_sm_fraction=0.0
    )
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    print(
        f"\nDeepSeek-V3 MoE layer, EP {ep} decode, {tokens} tokens/rank, LL kernels "
        f"(plan {plan_s:.2f} s)"
    )
    print(f"{'phase':>9} {'time us':>8} {'LL GB/s':>8} {'flows':>7} {'events':>7} {'wall s':>7}")
    for r in (disp, comb):
        print(
            f"{r.phase:>9} {r.time_s * 1e6:>8.1f} {r.ll_gbps:>8.1f} {r.flows:>7} "
            f"{r.events:>7} {r.wall_s:>7.2f}"
        )
    print(
        f"overlap: total {ov.total_s * 1e6:.1f} us, exposed comm {ov.exposed_comm_s * 1e6:.1f} "
        f"us, hidden {ov.hidden_comm_s * 1e6:.1f} us; wall {wall:.2f} s, cpu {cpu:.2f} s"
    )
    assert cpu < 10.0


@pytest.mark.bench
def test_bench_scaling_8_to_1024_gpus() -> None:
    print("\nscaling, DeepEP normal dispatch, 256 tokens/rank (h800-deepseek)")
    print(
        f"{'GPUs':>5} {'flows':>8} {'transfers':>9} {'events':>7} {'sim cpu s':>9} "
        f"{'plan s':>7} {'max RSS MB':>10}"
    )
    for ep in (8, 32, 128, 512, 1024):
        res, plan_s, cpu = _run(ep, 256)
        print(
            f"{ep:>5} {res.flows:>8} {res.transfers:>9} {res.events:>7} {cpu:>9.2f} "
            f"{plan_s:>7.2f} {_rss_mb():>10.0f}"
        )
    print("\nfixed EP 64: cost follows flows, not tokens")
    print(f"{'tokens/rank':>11} {'flows':>7} {'events':>7} {'sim cpu s':>9} {'time us':>8}")
    events = []
    for tok in (256, 1024, 4096, 8192):
        res, _, cpu = _run(64, tok)
        events.append(res.events)
        print(f"{tok:>11} {res.flows:>7} {res.events:>7} {cpu:>9.2f} {res.time_s * 1e6:>8.1f}")
    # 32x more tokens, the same flows (every pair already talks): events do not grow with tokens
    assert max(events) <= 1.2 * min(events)
