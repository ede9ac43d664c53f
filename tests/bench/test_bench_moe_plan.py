"""Benchmark of the MoE routing + dispatch plan for the all-to-all simulator (``make bench``).

``synthetic_dispatch_plan`` at EP 8 / 64 / 256 with 4096 tokens per rank (DeepEP routing, 256
experts, top-8, 4 nodes per token): CPU seconds (median of 3, ``time.process_time``: the wall
clock of a shared machine also counts other jobs), the first call in the process (fresh
memory costs page faults), the peak of numpy allocations (``tracemalloc``), and the previous
algorithm — every score drawn, group-limited top-k by partial sort, per-pair arrays by row
sort — timed once as the reference.
"""

from __future__ import annotations

import statistics
import time
import tracemalloc

import numpy as np
import pytest

from hwsim.plan.moe import (
    even_token_src,
    group_limited_topk,
    pair_arrays,
    synthetic_dispatch_plan,
)

ARGS = (7168, 256, 8, 4, "deepep", 8, 0, 0)  # hidden, experts, top-k, groups, routing, gpn, ...


def _full_draw(ep: int, tokens: int) -> None:
    """The pre-race algorithm: all ``tokens × experts`` scores, partial sort, per-pair arrays."""
    n_nodes = max(1, ep // 8)
    idx = np.empty((ep * tokens, 8), dtype=np.int64)
    for r in range(ep):
        s = np.random.default_rng([0, r]).random((tokens, 256), dtype=np.float32)
        idx[r * tokens : (r + 1) * tokens] = group_limited_topk(
            s, 8, n_nodes, min(4, n_nodes), "max"
        )
    pair_arrays(idx // (256 // ep), even_token_src(idx.shape[0], ep), min(8, ep))


@pytest.mark.bench
def test_bench_moe_plan() -> None:
    rows = []
    for ep in (8, 64, 256):
        w0 = time.perf_counter()
        synthetic_dispatch_plan(ep, 4096, *ARGS)
        first = time.perf_counter() - w0
        cpu = []
        for _ in range(3):
            c0 = time.process_time()
            synthetic_dispatch_plan(ep, 4096, *ARGS)
            cpu.append(time.process_time() - c0)
        tracemalloc.start()
        synthetic_dispatch_plan(ep, 4096, *ARGS)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        c0 = time.process_time()
        _full_draw(ep, 4096)
        ref = time.process_time() - c0
        rows.append((ep, statistics.median(cpu), first, peak / 2**20, ref))
    print("\nsynthetic_dispatch_plan, 4096 tokens/rank, 256 experts, top-8, 4 node groups")
    print(
        f"{'EP':>5} {'tokens':>8} {'cpu s (med 3)':>13} {'first wall s':>12} "
        f"{'peak MB':>8} {'full draw s':>11} {'speed-up':>8}"
    )
    for ep, cpu_s, first, peak_mb, ref in rows:
        print(
            f"{ep:>5} {ep * 4096:>8} {cpu_s:>13.3f} {first:>12.3f} {peak_mb:>8.0f} "
            f"{ref:>11.3f} {ref / cpu_s:>7.1f}x"
        )
    by_ep = {r[0]: r for r in rows}
    assert by_ep[64][1] < 1.0  # issue 5: EP 64 dispatch under 1 s, plan included
    assert by_ep[256][1] < 5.0  # half of the EP 256 end-to-end budget (10 s)
    assert by_ep[256][3] < 2048  # memory: under 2 GB at EP 256 x 4096 tokens
