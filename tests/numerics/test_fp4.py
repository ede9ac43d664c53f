"""Block-scaled FP4 (NVFP4, MXFP4): the emulated rounding, the bytes counted for it, and which
chips run it."""

from __future__ import annotations

import math

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from hwsim.functional.dtypes import E2M1_MAX, quantize_blocked
from hwsim.functional.gemm import check_gemm
from hwsim.spec.device import DTYPE_BYTES, FP4_BLOCKS
from hwsim.spec.errors import SpecError
from hwsim.spec.load import load_device

E2M1_GRID = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0])

#: Weights as a kernel would hold them: zero or float32 normals, within float32's range.
values = arrays(
    np.float64,
    st.tuples(st.integers(1, 4), st.integers(1, 100)),
    elements=st.one_of(st.just(0.0), st.floats(1e-30, 1e30), st.floats(-1e30, -1e-30)),
)
#: NVFP4's block scales are E4M3 relative to the tensor's maximum: a block whose maximum is
#: under 2^-6 / 448 of it gets a subnormal (imprecise) or zero scale and may flush to zero,
#: as the format does.
NVFP4_RANGE = 2.0**-6 / 448


@settings(max_examples=200, deadline=None)
@given(x=values, fmt=st.sampled_from(["nvfp4", "mxfp4"]))
def test_blocked_fp4_error_is_bounded_by_the_block_maximum(x: np.ndarray, fmt: str) -> None:
    """Every value is within a quarter of its block's largest magnitude: half the widest E2M1
    gap (2 between 4 and 6, i.e. 1/6 of the block maximum) plus MXFP4's clipping of values
    above 6 x its power-of-two scale (at most a quarter) or NVFP4's E4M3 rounding of the scale
    (2^-4 relative). The tolerance is that bound, not a loose fudge: a scale off by 2x breaks it."""
    v, tensor = quantize_blocked(x, fmt, axis=1)
    assert v.shape == x.shape and v.dtype == np.float32
    block = FP4_BLOCKS[fmt][0]
    top = float(np.max(np.abs(x)))
    for j in range(0, x.shape[1], block):
        blk = x[:, j : j + block]
        amax = np.max(np.abs(blk), axis=1, keepdims=True)
        err = np.abs(v[:, j : j + block].astype(np.float64) * tensor - blk)
        bound = 0.25 * amax * (1 + 1e-6)
        if fmt == "nvfp4":  # below the scales' range a block may flush to zero, never worse
            bound = np.where(amax >= NVFP4_RANGE * top, bound, amax * (1 + 1e-6))
        assert np.all(err <= bound), (fmt, err.max(), amax.max())


@settings(max_examples=100, deadline=None)
@given(x=values)
def test_mxfp4_values_are_e2m1_times_a_power_of_two(x: np.ndarray) -> None:
    """MXFP4 per OCP MX v1.0: the block scale is 2^(floor(log2 amax) - 2) and every stored value
    an E2M1 number (on the grid 0, 0.5, ..., 6, either sign) times it."""
    v, tensor = quantize_blocked(x, "mxfp4", axis=1)
    assert tensor == 1.0
    for j in range(0, x.shape[1], 32):
        blk, got = x[:, j : j + 32], v[:, j : j + 32].astype(np.float64)
        for row in range(blk.shape[0]):
            amax = float(np.max(np.abs(blk[row])))
            if amax == 0.0:
                assert np.all(got[row] == 0.0)
                continue
            q = np.abs(got[row]) / 2.0 ** (math.floor(math.log2(amax)) - 2)
            assert np.all(np.isin(q, E2M1_GRID)), q


def test_nvfp4_matches_a_hand_worked_block() -> None:
    """One 16-value block whose maximum is 6: the tensor scale is 6 / (6 x 448), the block scale
    e4m3(448) = 448, so values are stored as E2M1 of themselves: 0.26 -> 0.5, 0.74 -> 0.5,
    2.6 -> 3, 5.2 -> 6 (round to nearest even on the E2M1 grid)."""
    x = np.array([[6.0, 0.26, 0.74, 2.6, 5.2, -1.2] + [0.0] * 10])
    v, tensor = quantize_blocked(x, "nvfp4", axis=1)
    assert tensor == pytest.approx(1 / 448)
    # E2M1 values times the block scale exactly; the float32 tensor scale 1/448 to its rounding
    np.testing.assert_array_equal(v[0, :6], np.array([6.0, 0.5, 0.5, 3.0, 6.0, -1.0]) * 448)
    np.testing.assert_allclose(v[0, :6] * tensor, [6.0, 0.5, 0.5, 3.0, 6.0, -1.0], rtol=1e-6)


def test_blocks_run_along_the_axis_given() -> None:
    """B of a GEMM is [k, n]: its blocks run down K (axis 0), not across N."""
    rng = np.random.default_rng(0)
    b = rng.normal(size=(64, 3))
    v0, t0 = quantize_blocked(b, "mxfp4", axis=0)
    v1, t1 = quantize_blocked(b.T, "mxfp4", axis=1)
    np.testing.assert_array_equal(v0, v1.T)
    assert t0 == t1  # one tensor scale from the same values, whichever way the blocks run
    assert E2M1_MAX == float(ml_dtypes.finfo(ml_dtypes.float4_e2m1fn).max)


def test_bytes_count_the_scales() -> None:
    """4 bits per value plus one 8-bit scale per block: NVFP4 4.5 bits, MXFP4 4.25 bits."""
    assert DTYPE_BYTES["nvfp4"] == 4.5 / 8 and DTYPE_BYTES["mxfp4"] == 4.25 / 8


def test_only_chips_that_run_a_format_get_a_rate() -> None:
    b200, mi355x, h100 = (load_device(d) for d in ("b200", "mi355x", "h100-sxm"))
    assert b200.peak_flops("nvfp4") == b200.peak_flops("mxfp4") == 2 * b200.peak_flops("fp8")
    assert mi355x.peak_flops("mxfp4") > 0
    for dev, fmt in ((mi355x, "nvfp4"), (h100, "nvfp4"), (h100, "mxfp4")):
        with pytest.raises(SpecError, match=f"does not run {fmt}"):
            dev.peak_flops(fmt)


@pytest.mark.parametrize(("fmt", "device"), [("nvfp4", "b200"), ("mxfp4", "mi355x")])
def test_fp4_gemm_executes_its_plan(fmt: str, device: str) -> None:
    """The functional GEMM on block-scaled inputs equals float64 on the same (dequantized)
    inputs to bf16 output rounding, and moves the bytes the plan charges (scales included)."""
    res = check_gemm(device, 72, 40, 200, fmt)
    assert res.passed and res.bytes_match, res
