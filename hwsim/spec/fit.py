"""Does it fit? One place that refuses a problem too large for a device, with the numbers.

Simulators and planners call :func:`require_fits` before they build anything, so a 1M-token
KV cache on one GPU fails in milliseconds with ``KV cache does not fit on NVIDIA H100 SXM5 80GB:
needs 137.4 GB, has 80 GB (1.72x too much); shard over more GPUs``, not with a numpy
MemoryError or - worse - a confident time for an impossible run.
"""

from __future__ import annotations

import math

from hwsim.spec.errors import SpecError
from hwsim.spec.units import Dim, format_quantity


def human_bytes(nbytes: float) -> str:
    """``137.4e9`` → ``137.4 GB`` (decimal prefixes, 4 significant digits)."""
    return format_quantity(nbytes, Dim.BYTES)


def fits(need_bytes: float, have_bytes: float) -> bool:
    """True when ``need_bytes`` (finite, ≥ 0) is at most ``have_bytes``."""
    return math.isfinite(need_bytes) and 0 <= need_bytes <= have_bytes


def require_fits(
    what: str, need_bytes: float, have_bytes: float, device_name: str, hint: str = ""
) -> None:
    """Raise :class:`SpecError` unless ``need_bytes`` fits in ``have_bytes``.

    ``what`` names the data (``"weights + KV cache"``), ``device_name`` the memory it must fit in
    (``"NVIDIA H100 SXM5 80GB HBM"``), ``hint`` says what to do instead (``"use 2 GPUs"``).
    Both sizes are in bytes; the message gives them in human units with the ratio.
    """
    tail = f"; {hint}" if hint else ""
    if not math.isfinite(need_bytes) or need_bytes < 0:
        raise SpecError(f"{what}: size is not a finite number of bytes ({need_bytes!r}){tail}")
    if need_bytes <= have_bytes:
        return
    if have_bytes > 0:
        over = need_bytes / have_bytes
        ratio = f"{over:.3g}x too much" if over < 1000 else f"{over:,.0f}x too much"
    else:
        ratio = "none available"
    raise SpecError(
        f"{what} does not fit on {device_name}: needs {human_bytes(need_bytes)}, "
        f"has {human_bytes(have_bytes)} ({ratio}){tail}"
    )
