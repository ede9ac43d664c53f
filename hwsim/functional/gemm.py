"""The GEMM plan run in numpy, tile by tile, with every byte counted per memory level.

:func:`execute_gemm` walks the CTAs of a :class:`~hwsim.plan.gemm.GemmPlan` in launch order,
wave by wave, and for each CTA multiplies its valid ``A`` block by its ``B`` block in fp32 (one
vectorised ``@`` per tile: the K loop inside a tile is numpy's), writes the tile (rounded to the
output dtype), or, with split-K, its fp32 partial to a workspace that a final pass sums in split
order. It counts bytes independently of the plan's formulas:

* ``l2_read_bytes``: every element a CTA loads (L2 → SM);
* ``hbm_read_bytes``: an L2 model that applies the plan's reuse rule to the panels it actually
  touched - a panel comes from HBM once per wave, unless the previous wave also used it and both
  waves' panels fit the resident L2, or unless both operands fit it (then once overall);
* ``epilogue_bytes`` (C tiles or fp32 partials) and ``reduction_bytes`` (split-K pass).

The check cases (registered for ``hwsim check``) compare the result with ``a @ b`` in float64 on
the same rounded inputs and the counted bytes with the plan's totals.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from hwsim.functional.check import CheckResult, compare, inputs, register_case
from hwsim.functional.dtypes import quantize_blocked, quantize_scaled, round_to
from hwsim.plan.gemm import ACC_BYTES, GemmPlan, plan_gemm
from hwsim.spec.device import FP4_DTYPES
from hwsim.spec.load import load_device

#: ``hwsim.functional.dtypes`` names of the plan's dtypes (fp8 data is e4m3).
_FMT = {"fp32": "fp32", "tf32": "fp32", "fp16": "fp16", "bf16": "bf16", "fp8": "fp8_e4m3"}


@dataclass(frozen=True)
class GemmRun:
    """Output of the executor and the bytes it moved at each level."""

    c: np.ndarray  #: [m, n] float32 holding values rounded to the plan's output dtype
    hbm_read_bytes: float
    l2_read_bytes: float
    epilogue_bytes: float
    reduction_bytes: float
    wave_hbm_read_bytes: tuple[float, ...]
    flops: float  #: useful FLOPs done (valid elements)

    def matches(self, plan: GemmPlan, rtol: float = 1e-12) -> bool:
        """Counted bytes and FLOPs equal the plan's totals (up to float summation order)."""
        pairs = [
            (self.hbm_read_bytes, plan.hbm_read_bytes),
            (self.l2_read_bytes, plan.l2_read_bytes),
            (self.epilogue_bytes, plan.epilogue_bytes),
            (self.reduction_bytes, plan.reduction_bytes),
            (self.flops, plan.flops),
        ]
        return all(abs(a - b) <= rtol * max(1.0, abs(b)) for a, b in pairs)


def execute_gemm(
    plan: GemmPlan,
    a: np.ndarray,
    b: np.ndarray,
    scale_a: float = 1.0,
    scale_b: float = 1.0,
) -> GemmRun:
    """Run ``plan`` on ``a`` [m, k] and ``b`` [k, n] (values already in the input dtype; fp8
    data with per-tensor scales applied in the epilogue, as fp8 GEMMs do)."""
    m, n, k = plan.m, plan.n, plan.k
    if a.shape != (m, k) or b.shape != (k, n):
        raise ValueError(f"expected A {(m, k)} and B {(k, n)}, got {a.shape} and {b.shape}")
    t = plan.tile
    ib, ob = plan.in_bytes, plan.out_bytes
    out_fmt = _FMT[plan.out_dtype]
    a32, b32 = a.astype(np.float32), b.astype(np.float32)
    c = np.zeros((m, n), dtype=np.float32)
    work = np.zeros((t.split, m, n), dtype=np.float32) if t.split > 1 else None
    s_idx, r_idx, c_idx = plan.cta_order()
    fit = (m * k + k * n) * ib <= plan.l2_resident_bytes
    seen: set[tuple[str, int, int]] = set()
    prev: dict[tuple[str, int, int], float] = {}
    l2 = epi = flops = 0.0
    wave_hbm: list[float] = []
    for lo in range(0, len(s_idx), plan.slots):
        touched: dict[tuple[str, int, int], float] = {}
        for s, i, j in zip(
            s_idx[lo : lo + plan.slots].tolist(),
            r_idx[lo : lo + plan.slots].tolist(),
            c_idx[lo : lo + plan.slots].tolist(),
            strict=True,
        ):
            k0, k1 = plan.k_range(s)
            rs = slice(i * t.bm, min(m, (i + 1) * t.bm))
            cs = slice(j * t.bn, min(n, (j + 1) * t.bn))
            ablk, bblk = a32[rs, k0:k1], b32[k0:k1, cs]
            touched[("A", s, i)] = ablk.size * ib
            touched[("B", s, j)] = bblk.size * ib
            l2 += (ablk.size + bblk.size) * ib
            acc = ablk @ bblk  # fp32 accumulation over the tile's K slice
            flops += 2.0 * acc.size * (k1 - k0)
            epi += acc.size * (ob if work is None else ACC_BYTES)
            if work is None:
                c[rs, cs] = round_to(acc * np.float32(scale_a * scale_b), out_fmt)
            else:
                work[s, rs, cs] = acc
        # the L2 model: which of this wave's panels come from HBM
        if fit:
            new = [p for p in touched if p not in seen]
            seen.update(touched)
        elif prev and sum({**prev, **touched}.values()) <= plan.l2_resident_bytes:
            new = [p for p in touched if p not in prev]
        else:
            new = list(touched)
        wave_hbm.append(float(sum(touched[p] for p in new)))
        prev = touched
    red = 0.0
    if work is not None:
        total = np.zeros((m, n), dtype=np.float32)
        for s in range(t.split):  # the reduction pass adds partials in split order, in fp32
            total += work[s]
        c = round_to(total * np.float32(scale_a * scale_b), out_fmt)
        red = float(t.split * m * n * ACC_BYTES + m * n * ob)
    return GemmRun(c, float(sum(wave_hbm)), l2, epi, red, tuple(wave_hbm), flops)


def check_gemm(device: str, m: int, n: int, k: int, dtype: str, seed: int = 0) -> CheckResult:
    """Plan, execute and compare one GEMM with float64 ``a @ b`` (same rounded inputs).

    Tolerance: the output dtype's (``hwsim.functional.check.TOLERANCES``): inputs are rounded
    the same way for the reference, so the error is fp32 accumulation plus one rounding of the
    output (fp8 GEMMs write bf16, so they use the bf16 tolerance)."""
    plan = plan_gemm(load_device(device), m, n, k, dtype)
    x = inputs({"a": (m, k), "b": (k, n)}, "fp64", seed)
    if dtype in FP4_DTYPES:  # block scales along K; the per-tensor scale in the epilogue
        qa, sa = quantize_blocked(x["a"], dtype, axis=1)
        qb, sb = quantize_blocked(x["b"], dtype, axis=0)
    else:
        qa, sa = quantize_scaled(x["a"], _FMT[dtype])
        qb, sb = quantize_scaled(x["b"], _FMT[dtype])
    run = execute_gemm(plan, qa, qb, sa, sb)
    ref = (qa.astype(np.float64) * sa) @ (qb.astype(np.float64) * sb)
    res = compare(run.c, ref, _FMT[plan.out_dtype], case=f"gemm/{dtype} {m}x{n}x{k} {device}")
    t = plan.tile
    detail = (
        f"tile {t.bm}x{t.bn}x{t.bk} split {t.split} waves {plan.wave_count}; "
        f"HBM {run.hbm_read_bytes:.0f} B vs plan {plan.hbm_read_bytes:.0f} B"
    )
    return res.with_bytes(run.matches(plan), detail)


def _cases() -> None:
    """GEMM cases for ``hwsim check``: edge tiles, split-K and every GEMM dtype."""
    shapes = {
        "fp32": ("a100-sxm-80gb", 200, 136, 300),
        "bf16": ("a100-sxm-80gb", 96, 520, 2000),
        "fp16": ("mi210", 300, 260, 96),
        "fp8": ("a100-sxm-80gb", 32, 64, 4096),
        "nvfp4": ("b200", 200, 264, 1000),  # K not a multiple of the 16-value block
        "mxfp4": ("mi355x", 96, 130, 2080),  # nor of the 32-value block
    }
    for dt, (dev, m, n, k) in shapes.items():
        register_case(f"gemm/{dt}", functools.partial(check_gemm, dev, m, n, k, dt), quick=True)


_cases()
