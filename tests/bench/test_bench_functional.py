"""Benchmark: the numpy executor at a realistic size (seqlen 4096, head dim 128, 8 heads,
forward + backward, H100 tile plan). Run with ``make bench``; prints a table of figures."""

from __future__ import annotations

import time

import pytest

from hwsim.functional.attention import execute
from hwsim.functional.attention_cases import H100_SMEM_BYTES, attention_inputs
from hwsim.plan.attention import AttentionShape, plan_attention


@pytest.mark.bench
def test_bench_attention_fwd_bwd_4k():
    rows = []
    for causal in (True, False):
        s = AttentionShape(1, 8, 8, 4096, 4096, 128, causal=causal, dtype="bf16", pass_="fwd+bwd")
        plan = plan_attention(s, H100_SMEM_BYTES)
        d = attention_inputs(s, 0)
        t0 = time.perf_counter()
        run = execute(plan, d["q"], d["k"], d["v"], d["do"])
        wall = time.perf_counter() - t0
        planned = {k: v for k, v in plan.bytes_rw().items() if v}
        assert run.counts == planned and run.flops == plan.flops()
        rows.append((causal, plan.block_pairs(), plan.flops() / 1e9, wall))
        # "seconds, not minutes": generous bound for a loaded 2-core machine
        assert wall < 60
    print("\nattention executor, b=1 h=8 s=4096 d=128 bf16, fwd+bwd (H100 tiles)")
    print(f"{'causal':>6} {'tile pairs':>10} {'GFLOP':>8} {'wall s':>7} {'GFLOP/s':>8}")
    for causal, pairs, gf, wall in rows:
        print(f"{causal!s:>6} {pairs:>10} {gf:>8.1f} {wall:>7.2f} {gf / wall:>8.1f}")
