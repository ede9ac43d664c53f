"""GEMM and streaming-op plans: tile and wave quantisation, split-K and L2 reuse checked by hand
on a made-up 4-SM GPU (tests/fixtures/gpu-tiny.yaml), plus properties on random shapes."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsim.plan.gemm import cta_order, plan_gemm
from hwsim.plan.streaming import plan_stream
from hwsim.spec.errors import SpecError
from hwsim.spec.load import load_device

TINY = load_device(Path(__file__).parents[1] / "fixtures" / "gpu-tiny.yaml")
A100 = load_device("a100-sxm-80gb")
FP16 = 2  # bytes per element


def test_tile_fits_smem_and_registers_by_hand() -> None:
    # 128x128 tile, bk = 64 B / 2 B = 32: one stage is (128+128)*32*2 = 16 KiB, so 4 stages
    # fill the 64 KiB of shared memory -> 1 CTA per SM (registers would allow 2:
    # 256 KiB / (2 * 128*128*4 B)).
    p = plan_gemm(TINY, 300, 200, 64, tile=(128, 128), split=1, swizzle=1)
    assert (p.tile.bk, p.tile.stages, p.tile.occupancy) == (32, 4, 1)
    assert p.smem_bytes_per_cta == 64 * 1024
    assert p.slots == 4


def test_tile_and_wave_quantisation_by_hand() -> None:
    p = plan_gemm(TINY, 300, 200, 64, tile=(128, 128), split=1, swizzle=1)
    # ceil(300/128) = 3 tile rows, ceil(200/128) = 2 tile cols: 6 CTAs on 4 slots = 2 waves
    assert (p.tiles_m, p.tiles_n, p.ctas, p.wave_count) == (3, 2, 6, 2)
    assert [w.ctas for w in p.waves] == [4, 2]
    assert [w.active_units for w in p.waves] == [4, 2]
    assert p.summary()["wave_efficiency"] == pytest.approx(6 / 8, rel=1e-12)  # exact ratio
    # tile quantisation: every CTA computes a full padded 128x128x64 tile
    assert p.padded_flops == 6 * 2 * 128 * 128 * 64
    assert p.flops == 2 * 300 * 200 * 64
    assert p.waves[0].busy_flops == 2 * 128 * 128 * 64  # one CTA per SM in each wave
    # L2 -> SM loads count valid elements only: each row block is loaded by 2 CTAs and each
    # column block by 3: rows (128+128+44)*2 = 600, cols (128+72)*3 = 600
    assert p.l2_read_bytes == (600 + 600) * 64 * FP16
    # A (38400 B) + B (25600 B) fit half the 256 KiB L2: each is read from HBM exactly once
    assert p.operands_fit_l2
    assert p.hbm_read_bytes == (300 * 64 + 64 * 200) * FP16
    assert p.epilogue_bytes == 300 * 200 * FP16


def test_l2_reuse_per_wave_by_hand() -> None:
    # k = 1024: A (614400 B) + B (409600 B) no longer fit the 131072 B resident L2
    p = plan_gemm(TINY, 300, 200, 1024, tile=(128, 128), split=1, swizzle=1)
    assert not p.operands_fit_l2
    _, r, c = p.cta_order()
    assert list(zip(r.tolist(), c.tolist(), strict=True)) == [
        (0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1)
    ]  # fmt: skip
    # wave 0 reads A rows 0,1 and B cols 0,1 once each (reused across its 4 CTAs)
    w0 = (128 + 128) * 1024 * FP16 + (128 + 72) * 1024 * FP16
    # wave 1 reads A row 2 (44 rows) and B cols 0,1 again: the two waves' panels (1 MB) do not
    # fit the resident L2, so B is not reused across waves
    w1 = 44 * 1024 * FP16 + (128 + 72) * 1024 * FP16
    assert p.hbm_read_bytes == w0 + w1
    c_tiles_w0 = 2 * (128 * 128 + 128 * 72) * FP16
    assert p.waves[0].hbm_bytes == w0 + c_tiles_w0


def test_split_k_by_hand() -> None:
    p = plan_gemm(TINY, 300, 200, 1024, tile=(128, 128), split=2, swizzle=1)
    assert p.k_split == 512 and p.ctas == 12 and p.wave_count == 3
    assert p.k_range(0) == (0, 512) and p.k_range(1) == (512, 1024)
    # partials in fp32 to the workspace, then a pass reads them and writes C
    assert p.epilogue_bytes == 2 * 300 * 200 * 4
    assert p.reduction_bytes == 2 * 300 * 200 * 4 + 300 * 200 * FP16


def test_swizzle_groups_rows() -> None:
    _, r, c = cta_order(3, 4, 1, 2)
    # groups of 2 rows walked column by column, then the last (1-row) group
    assert list(zip(r.tolist(), c.tolist(), strict=True))[:8] == [
        (0, 0), (1, 0), (0, 1), (1, 1), (0, 2), (1, 2), (0, 3), (1, 3)
    ]  # fmt: skip
    assert list(r[8:]) == [2, 2, 2, 2] and list(c[8:]) == [0, 1, 2, 3]


def test_skinny_gemm_without_split_is_not_chosen_when_slots_idle() -> None:
    # 16x16 output has one tile; the planner splits K to use more SMs
    p = plan_gemm(A100, 16, 16, 65536)
    assert p.tile.split > 1
    big = plan_gemm(A100, 8192, 8192, 8192)
    assert big.tile.split == 1


@settings(max_examples=40, deadline=None)
@given(
    m=st.integers(1, 700),
    n=st.integers(1, 700),
    k=st.integers(1, 3000),
    dtype=st.sampled_from(["fp16", "bf16", "fp32"]),
)
def test_plan_conservation(m: int, n: int, k: int, dtype: str) -> None:
    p = plan_gemm(TINY, m, n, k, dtype)
    # FLOPs: waves add up to 2mnk exactly (integers below 2^53)
    assert sum(w.flops * w.count for w in p.waves) == 2 * m * n * k
    assert p.padded_flops >= p.flops
    assert p.wave_count == math.ceil(p.ctas / p.slots)
    # every operand element is read from HBM at least once, C written at least once
    assert p.hbm_read_bytes >= (m * k + k * n) * p.in_bytes - 1e-6
    assert p.l2_read_bytes >= p.hbm_read_bytes - 1e-6  # L2 serves at least what HBM sends
    assert p.hbm_bytes >= p.compulsory_bytes - 1e-6
    s, r, c = p.cta_order()
    assert len({(a, b, d) for a, b, d in zip(s, r, c, strict=True)}) == p.ctas  # no duplicates


def test_bad_inputs_raise_spec_error() -> None:
    with pytest.raises(SpecError, match="positive"):
        plan_gemm(A100, 0, 10, 10)
    with pytest.raises(SpecError, match="dtype"):
        plan_gemm(A100, 10, 10, 10, "fp64")
    with pytest.raises(SpecError, match="tile 96x96"):
        plan_gemm(A100, 10, 10, 10, tile=(96, 96))
    # refused before any per-CTA array is built: 2 x 10^14 B of fp16 operands on an 80 GB GPU
    with pytest.raises(SpecError, match="does not fit"):
        plan_gemm(A100, 10_000_000, 10_000_000, 10_000_000)
    with pytest.raises(SpecError, match="does not fit"):
        plan_stream(A100, "gelu", 2**34, 4, "fp16")  # 2^36 elements, 275 GB


def test_streaming_plan_by_hand() -> None:
    # softmax over 64 rows of 4096 fp16 on the tiny GPU: one row per CTA, 8 CTAs per SM
    # -> 32 slots -> 2 waves; a 4096-element fp32 row (16 KiB) fits a quarter of 64 KiB smem
    p = plan_stream(TINY, "softmax", 64, 4096, "fp16")
    assert (p.ctas, p.slots, p.wave_count, p.reads) == (64, 32, 2, 1)
    assert p.hbm_bytes == 64 * 4096 * (2 + 2)  # read + write, 2 B each
    # 8192 elements (32 KiB fp32) do not fit: looped, the input is read twice
    q = plan_stream(TINY, "layernorm", 64, 8192, "fp16")
    assert not q.fits_on_chip and q.reads == 2
    assert q.hbm_bytes == 64 * 8192 * (2 * 2 + 2) + 2 * 8192 * 2  # + gamma, beta
    # a kernel-family limit overrides the smem rule (PyTorch softmax: rows <= 1024 elements)
    assert plan_stream(TINY, "softmax", 64, 2048, "fp16", row_on_chip_bytes=4096).reads == 2
    # elementwise: 1024 elements per CTA; SwiGLU reads gate and up
    g = plan_stream(TINY, "swiglu", 10, 1000, "bf16")
    assert g.ctas == math.ceil(10_000 / 1024)
    assert g.hbm_bytes == 10_000 * 3 * 2
    with pytest.raises(SpecError, match="--n"):
        plan_stream(TINY, "softmax", 64)
    with pytest.raises(SpecError, match="unknown operator"):
        plan_stream(TINY, "conv", 64, 64)
