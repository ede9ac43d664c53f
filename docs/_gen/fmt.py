"""Number formatting for the docs (human units at the edge, via hwsim.spec.units)."""

from __future__ import annotations

import math

from hwsim.spec.units import Dim, format_quantity


def q(value: float, dim: Dim, digits: int = 3) -> str:
    """``3.35e12, BANDWIDTH`` → ``3.35 TB/s``; microseconds written ``µs``."""
    if not math.isfinite(value):
        return "∞" if value > 0 else "—"
    return format_quantity(value, dim, digits=digits).replace(" us", " µs")


def t(seconds: float) -> str:
    return q(seconds, Dim.TIME)


def b(nbytes: float) -> str:
    return q(nbytes, Dim.BYTES)


def bw(bps: float) -> str:
    return q(bps, Dim.BANDWIDTH)


def rate(flops: float) -> str:
    return q(flops, Dim.RATE)


def n(x: float, digits: int = 3) -> str:
    """A plain number with ``digits`` significant digits, thousands separated."""
    if not math.isfinite(x):
        return "∞"
    if abs(x) >= 10 ** (digits - 1) and abs(x) < 1e15:
        return f"{round(x):,}"
    return f"{x:.{digits}g}"


def pct(x: float, digits: int = 0) -> str:
    return f"{100 * x:.{digits}f}%"


def times(x: float) -> str:
    """A ratio as ``2.4×``."""
    return f"{x:.3g}×"
