"""Benchmark: wall time of one GEMM / op prediction (plan + engine), target < 50 ms each, even
for 32768 x 12288 x 12288. Run with ``make bench`` (or ``pytest -m bench -s`` on this file)."""

from __future__ import annotations

import statistics
import time

import pytest

from hwsim.sim.gpu_gemm import simulate_gemm
from hwsim.sim.streaming import simulate_op
from hwsim.spec.load import load_device

TARGET_S = 0.050
GEMMS = [
    ("a100-sxm-80gb", 64, 12288, 12288),
    ("a100-sxm-80gb", 8192, 8192, 8192),
    ("a100-sxm-80gb", 32768, 12288, 12288),
    ("mi210", 32768, 12288, 12288),
    ("h100-sxm", 32768, 12288, 12288),
    ("a100-sxm-80gb", 8192, 32768, 32768),
]


def _median_wall(fn, repeat: int = 5) -> float:  # type: ignore[no-untyped-def]
    fn()  # warm caches (device/profile loading, imports)
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


@pytest.mark.bench
def test_bench_one_gemm_prediction_under_50ms() -> None:
    rows = []
    for name, m, n, k in GEMMS:
        dev = load_device(name)
        r = simulate_gemm(dev, m, n, k, "fp16")
        wall = _median_wall(lambda d=dev, a=m, b=n, c=k: simulate_gemm(d, a, b, c, "fp16"))
        rows.append((name, f"{m}x{n}x{k}", r.plan["ctas"], r.plan["waves"], r.events, wall))
    print(f"\n{'device':15s} {'shape':>20s} {'CTAs':>7s} {'waves':>6s} {'events':>7s} {'wall':>9s}")
    for name, shape, ctas, waves, ev, wall in rows:
        print(f"{name:15s} {shape:>20s} {ctas:7d} {waves:6d} {ev:7d} {wall * 1e3:7.1f} ms")
    for *_, wall in rows:
        assert wall < TARGET_S


@pytest.mark.bench
def test_bench_one_op_prediction() -> None:
    dev = load_device("a100-sxm-80gb")
    cases = [("softmax", 32768, 4096), ("layernorm", 4096, 32768), ("gelu", 536870912, None)]
    print(f"\n{'op':10s} {'shape':>14s} {'waves':>6s} {'events':>7s} {'wall':>9s}")
    for op, m, n in cases:
        r = simulate_op(dev, op, m, n, "fp16")
        wall = _median_wall(lambda o=op, a=m, b=n: simulate_op(dev, o, a, b, "fp16"))
        print(f"{op:10s} {f'{m}x{n}':>14s} {r.plan['waves']:6d} {r.events:7d} {wall * 1e3:7.2f} ms")
        assert wall < TARGET_S
