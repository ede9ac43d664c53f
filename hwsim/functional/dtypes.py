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


def element_bytes(dtype: str) -> int:
    return ELEMENT_BYTES[canonical(dtype)]
