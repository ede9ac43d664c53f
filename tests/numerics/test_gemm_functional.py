"""The GEMM plan executed in numpy: results vs float64 ``a @ b`` per dtype, and bytes counted by
the executor's own L2 model equal to the plan's totals (multi-wave, edge tiles, split-K)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsim.functional.check import compare, inputs, run_cases
from hwsim.functional.dtypes import quantize_scaled
from hwsim.functional.gemm import execute_gemm
from hwsim.plan.gemm import plan_gemm
from hwsim.spec.load import load_device

TINY = load_device(Path(__file__).parents[1] / "fixtures" / "gpu-tiny.yaml")
FMT = {"fp32": "fp32", "fp16": "fp16", "bf16": "bf16", "fp8": "fp8_e4m3"}
OUT = {"fp32": "fp32", "fp16": "fp16", "bf16": "bf16", "fp8": "bf16"}


def _run(m: int, n: int, k: int, dtype: str, **pin: object) -> None:
    plan = plan_gemm(TINY, m, n, k, dtype, **pin)  # type: ignore[arg-type]
    x = inputs({"a": (m, k), "b": (k, n)}, "fp64", seed=m * 7 + n * 3 + k)
    qa, sa = quantize_scaled(x["a"], FMT[dtype])
    qb, sb = quantize_scaled(x["b"], FMT[dtype])
    run = execute_gemm(plan, qa, qb, sa, sb)
    ref = (qa.astype(np.float64) * sa) @ (qb.astype(np.float64) * sb)
    # tolerance: the output dtype's entry of the shared table (inputs are identical for the
    # reference, so only fp32 accumulation and one output rounding remain)
    res = compare(run.c, ref, OUT[dtype])
    assert res.ok, (res.max_rel, res.rel_tol)
    # bytes per level: counted == planned (exact; sums of integers below 2^53)
    assert run.matches(plan, rtol=0.0)
    planned_wave_reads = [w.hbm_bytes - _epi(plan, i) for i, w in enumerate(plan.waves)]
    assert list(run.wave_hbm_read_bytes) == planned_wave_reads


def _epi(plan, wave: int) -> float:  # type: ignore[no-untyped-def]
    """C (or partial) bytes the plan puts in ``wave``'s HBM total."""
    _, r, c = plan.cta_order()
    lo, hi = wave * plan.slots, min(plan.ctas, (wave + 1) * plan.slots)
    t = plan.tile
    rows = np.minimum(t.bm, plan.m - r[lo:hi] * t.bm)
    cols = np.minimum(t.bn, plan.n - c[lo:hi] * t.bn)
    per = plan.out_bytes if t.split == 1 else 4
    return float((rows * cols).sum() * per)


@pytest.mark.parametrize("dtype", ["fp32", "fp16", "bf16", "fp8"])
def test_multi_wave_edge_tiles(dtype: str) -> None:
    # 6 CTAs on 4 slots, ragged last row/col of tiles, operands too big to stay in L2
    _run(300, 200, 1024, dtype, tile=(128, 128), split=1, swizzle=1)


@pytest.mark.parametrize("dtype", ["fp32", "bf16", "fp8"])
def test_split_k(dtype: str) -> None:
    _run(100, 70, 3000, dtype, tile=(64, 32), split=3, swizzle=1)


def test_swizzled_waves_reuse_panels() -> None:
    _run(256, 512, 512, "fp16", tile=(64, 64), split=1, swizzle=2)


@settings(max_examples=15, deadline=None)
@given(m=st.integers(1, 160), n=st.integers(1, 160), k=st.integers(1, 700))
def test_planner_choice_random_shapes(m: int, n: int, k: int) -> None:
    _run(m, n, k, "bf16")


def test_registered_check_cases_pass() -> None:
    results = run_cases(match="gemm/")
    assert len(results) >= 4
    for r in results:
        assert r.passed, (r.case, r.detail, r.max_rel)
