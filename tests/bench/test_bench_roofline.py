"""Benchmark: the vectorised hierarchical roofline over 100,000 kernel/device points.

Run with ``make bench`` (or ``pytest -m bench -s tests/bench/test_bench_roofline.py``).
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from hwsim.roofline.analytic import device_bandwidths, device_rates, evaluate, level_union
from hwsim.roofline.ops import COMPUTE_KINDS
from hwsim.spec.load import list_devices, load_device


@pytest.mark.bench
def test_bench_100k_points() -> None:
    devices = [load_device(n) for n in list_devices()]
    levels = level_union(devices)
    rng = np.random.default_rng(0)
    n_points = 100_000
    # random kernels (matrix bf16 FLOPs, exps, bytes per level) paired with random devices
    flops = np.zeros((n_points, len(COMPUTE_KINDS)))
    flops[:, COMPUTE_KINDS.index("bf16")] = 10 ** rng.uniform(6, 15, n_points)
    flops[:, COMPUTE_KINDS.index("special")] = 10 ** rng.uniform(3, 12, n_points)
    qbytes = 10 ** rng.uniform(3, 12, (n_points, len(levels)))
    rates = np.stack([device_rates(d) for d in devices])
    bws = np.stack([device_bandwidths(d, levels) for d in devices])
    bws = np.nan_to_num(bws, nan=np.inf)  # a level a device lacks does not limit it
    pick = rng.integers(0, len(devices), n_points)
    p, b = rates[pick], bws[pick]
    evaluate(flops[:100], qbytes[:100], p[:100], b[:100], levels)  # warm-up
    best = np.inf
    for _ in range(5):
        t0 = time.perf_counter()
        out = evaluate(flops, qbytes, p, b, levels)
        best = min(best, time.perf_counter() - t0)
    assert out.time_s.shape == (n_points,)
    assert np.all(np.isfinite(out.time_s))
    print()
    print("| benchmark | points | best of 5 (s) | points/s |")
    print("|---|---|---|---|")
    print(f"| roofline.evaluate | {n_points} | {best:.4f} | {n_points / best:.3g} |")
    assert best < 0.5  # "well under a second" with room for a loaded 2-core machine
