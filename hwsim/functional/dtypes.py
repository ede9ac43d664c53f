"""Low-precision number formats emulated with real rounding (ml_dtypes), held in float32 arrays.

Kernels load bf16/fp16/fp8 operands and accumulate in fp32. We emulate that by rounding values
to the storage format (round-to-nearest-even, as the hardware's conversion instructions do) and
computing on float32 arrays that hold exactly those values; numpy's float32 matmul then
accumulates in fp32 like the tensor cores' fp32 accumulators.

fp8 uses a per-tensor scale, as FlashAttention-3's fp8 forward (``descale_q/k/v``) and
Transformer Engine do: ``scale = amax / max_finite`` (a float32), the stored tensor is
``q = fp8(x / scale)`` (saturating, never NaN), and the kernel multiplies its fp32 result by the
scale. :func:`quantize` returns the dequantized values ``q · scale`` (float32); use
:func:`quantize_scaled` to get ``q`` and ``scale`` separately. Intermediates that a kernel
converts without a scale (e.g. FA3 converts P ∈ [0, 1] to e4m3 for the PV GEMM) use
:func:`round_to`.

Names: ``fp64`` (the reference path), ``fp32``, ``bf16``, ``fp16``, ``fp8_e4m3`` (alias
``fp8``), ``fp8_e5m2``.
"""

from __future__ import annotations

from typing import Any

import ml_dtypes
import numpy as np

from hwsim.spec.device import STORAGE_BYTES
from hwsim.spec.errors import SpecError

#: numpy/ml_dtypes storage type of each emulated format.
STORAGE: dict[str, Any] = {
    "fp64": np.float64,
    "fp32": np.float32,
    "bf16": ml_dtypes.bfloat16,
    "fp16": np.float16,
    "fp8_e4m3": ml_dtypes.float8_e4m3fn,
    "fp8_e5m2": ml_dtypes.float8_e5m2,
}
ALIASES = {"fp8": "fp8_e4m3", "e4m3": "fp8_e4m3", "e5m2": "fp8_e5m2", "float32": "fp32"}
#: Bytes per element in memory.
ELEMENT_BYTES = {d: int(STORAGE_BYTES[d]) for d in STORAGE}
DTYPES = tuple(STORAGE)


def canonical(dtype: str) -> str:
    """The canonical name of ``dtype`` (``fp8`` → ``fp8_e4m3``); SpecError if unknown."""
    name = ALIASES.get(dtype, dtype)
    if name not in STORAGE:
        raise SpecError(
            f"unknown dtype {dtype!r}; expected one of {', '.join(DTYPES)} (or 'fp8')",
            key="dtype",
        )
    return name


def is_fp8(dtype: str) -> bool:
    return canonical(dtype).startswith("fp8")


def max_finite(dtype: str) -> float:
    """Largest finite value of the format (448 for e4m3, 57344 for e5m2)."""
    return float(ml_dtypes.finfo(STORAGE[canonical(dtype)]).max)


def unit_roundoff(dtype: str) -> float:
    """Relative rounding error bound of round-to-nearest, ``2^-(mantissa bits + 1)``:
    fp32 2^-24, bf16 2^-8, fp16 2^-11, e4m3 2^-4, e5m2 2^-3 (normal range)."""
    return float(ml_dtypes.finfo(STORAGE[canonical(dtype)]).eps) / 2.0


def round_to(x: Any, dtype: str) -> np.ndarray:
    """Round ``x`` to ``dtype`` (nearest-even) and return float32 holding exactly those values
    (float64 for ``fp64``). fp8 conversion saturates to ±max finite like ``cvt ... .satfinite``
    (ml_dtypes would give NaN for e4m3 overflow); ±inf stays ±inf only in formats that have it."""
    name = canonical(dtype)
    a = np.asarray(x)
    if name == "fp64":
        return a.astype(np.float64)
    if name == "fp32":
        return a.astype(np.float32)
    if name.startswith("fp8"):
        m = max_finite(name)
        a = np.clip(np.nan_to_num(a.astype(np.float32), nan=np.nan, posinf=m, neginf=-m), -m, m)
    with np.errstate(over="ignore"):
        return a.astype(STORAGE[name]).astype(np.float32)


def fp8_scale(x: Any, dtype: str) -> float:
    """Per-tensor scale ``amax / max_finite`` as a float32 value (1.0 for an all-zero tensor)."""
    amax = float(np.max(np.abs(x))) if np.size(x) else 0.0
    if amax == 0.0 or not np.isfinite(amax):
        return 1.0
    return float(np.float32(amax / max_finite(dtype)))


def quantize_scaled(x: Any, dtype: str) -> tuple[np.ndarray, float]:
    """``(q, scale)`` with ``q`` exactly representable in ``dtype`` (float32 array) and
    ``x ≈ q · scale``; ``scale`` is 1.0 for non-fp8 formats."""
    name = canonical(dtype)
    if not name.startswith("fp8"):
        return round_to(x, name), 1.0
    s = fp8_scale(x, name)
    return round_to(np.asarray(x, dtype=np.float64) / s, name), s


def quantize(x: Any, dtype: str) -> np.ndarray:
    """Values a kernel computes with after loading ``x`` stored in ``dtype``: rounded values for
    16/32-bit formats, ``q · scale`` (float32) for fp8 with its per-tensor scale."""
    q, s = quantize_scaled(x, dtype)
    return q if s == 1.0 else (q * np.float32(s)).astype(np.float32)


#: Largest magnitude of an FP4 E2M1 value (the grid is 0, 0.5, 1, 1.5, 2, 3, 4, 6).
E2M1_MAX = 6.0


def quantize_blocked(x: Any, dtype: str, axis: int = -1) -> tuple[np.ndarray, float]:
    """Block-scaled FP4 (``nvfp4``, ``mxfp4``: :data:`hwsim.spec.device.FP4_DTYPES`) along
    ``axis`` (a GEMM's K): ``(v, tensor_scale)`` with ``v = q · s_block`` as float32 and
    ``x ≈ v · tensor_scale``.

    ``q`` is E2M1 (round to nearest even, saturating at ±6, as ``cvt.rn.satfinite`` does); each
    block of ``block`` values along ``axis`` shares one scale, set from its largest magnitude:

    * NVFP4: ``s_block = e4m3(amax / 6 / tensor_scale)`` with the FP32 per-tensor scale
      ``tensor_scale = amax_tensor / (6 · 448)`` that puts every block scale in E4M3's range;
      the kernel applies ``tensor_scale`` in its epilogue, like an fp8 GEMM's per-tensor scales.
    * MXFP4 (OCP MX v1.0): ``s_block = 2^(floor(log2 amax) - 2)``, an E8M0 power of two
      (``2`` is E2M1's largest exponent); values up to ``8 · s_block`` saturate at ``6 · s_block``,
      the format's known clipping; ``tensor_scale`` is 1.

    ``v`` is exact in float32 (a 2-bit significand times a 4-bit one or a power of two), so the
    executor's fp32 accumulation over K sees exactly what the tensor cores multiply."""
    from hwsim.spec.device import FP4_BLOCKS

    if dtype not in FP4_BLOCKS:
        raise SpecError(f"unknown block-scaled dtype {dtype!r}; expected nvfp4 or mxfp4")
    block = FP4_BLOCKS[dtype][0]
    a = np.moveaxis(np.asarray(x, dtype=np.float64), axis, -1)
    k = a.shape[-1]
    padded = np.concatenate([a, np.zeros((*a.shape[:-1], (-k) % block))], axis=-1)
    blocks = padded.reshape(*a.shape[:-1], -1, block)
    amax = np.max(np.abs(blocks), axis=-1, keepdims=True)
    tensor = 1.0
    if dtype == "nvfp4":
        top = float(np.max(amax)) if amax.size else 0.0
        # a float32 normal (an all-zero tensor, or one below float32's range, keeps 1.0)
        tensor = float(np.float32(top / (E2M1_MAX * max_finite("fp8_e4m3")))) or 1.0
        scale = round_to(amax / E2M1_MAX / tensor, "fp8_e4m3").astype(np.float64)
    else:
        exp = np.floor(np.log2(np.where(amax > 0, amax, 1.0))) - 2.0
        scale = np.exp2(np.clip(exp, -127.0, 127.0))
    scale = np.where(scale > 0, scale, 1.0)  # an all-zero block (or one flushed to zero)
    q = np.clip(blocks / (scale * tensor), -E2M1_MAX, E2M1_MAX).astype(ml_dtypes.float4_e2m1fn)
    v = (q.astype(np.float64) * scale).reshape(padded.shape)[..., :k]
    return np.moveaxis(v.astype(np.float32), -1, axis), tensor


def element_bytes(dtype: str) -> int:
    return ELEMENT_BYTES[canonical(dtype)]
