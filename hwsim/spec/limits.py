"""Work limits: every command estimates its work and memory up front and refuses, in one line
that says what to change, beyond a limit.

The limits are explicit configuration, never environment variables: per call (``limit=``), or
for a block of code with ``with limits(max_events=..., max_points=...):`` (a :mod:`contextvars`
value, so it holds for that thread/task only and ends with the block). The CLI enters it from
its global options (:data:`OPTIONS`: ``--max-events``, ``--max-memory``, ``--max-points``,
``--max-sims``), accepted anywhere on the command line; a sweep task carries the
:class:`Limits` of the command that started it to its worker (:mod:`hwsim.sweep.run`).

This module lives in the spec layer so that planners (which may not import the simulator)
can refuse a plan before they allocate it; :mod:`hwsim.sim.budget` re-exports it and adds
the engine's safety net. Defaults and why they are safe on a laptop: ``docs/reliability.md``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, replace
from typing import Any

from hwsim.spec.errors import SpecError
from hwsim.spec.units import Dim, UnitError, format_quantity, parse_quantity


class LimitExceeded(SpecError):
    """Work or memory beyond a limit (a :class:`SpecError`: one line, exit 2). A sweep unit
    that raises it on a worker fails alone, with this reason, and the sweep goes on."""


#: simpy events one simulation may process: about a minute of simpy on one core
DEFAULT_MAX_EVENTS = 5_000_000
#: host memory one command may plan to allocate (bytes): half of an 8 GiB laptop
DEFAULT_MAX_MEMORY_BYTES = 4 * 2**30
#: points one sweep may expand to: ~10 s and ~1 GB per analytic metric kind (measured)
DEFAULT_MAX_POINTS = 1_000_000
#: simulator sub-problems one sweep may run (those not in its cache): 0.01-1 s each
DEFAULT_MAX_SIMS = 10_000


@dataclass(frozen=True)
class Limits:
    """The budget one command may use: simpy events, host memory (bytes), sweep points and
    simulated sweep sub-problems (counts)."""

    max_events: int = DEFAULT_MAX_EVENTS
    max_memory_bytes: float = float(DEFAULT_MAX_MEMORY_BYTES)
    max_points: int = DEFAULT_MAX_POINTS
    max_sims: int = DEFAULT_MAX_SIMS


# Limits is frozen, so one shared default instance is safe
_LIMITS: ContextVar[Limits] = ContextVar("hwsim_budget_limits", default=Limits())  # noqa: B039


def current_limits() -> Limits:
    """The limits in force here (the innermost :func:`limits` block, else the defaults)."""
    return _LIMITS.get()


@contextlib.contextmanager
def limits(
    max_events: int | None = None,
    max_memory_bytes: float | None = None,
    max_points: int | None = None,
    max_sims: int | None = None,
) -> Iterator[Limits]:
    """Run a block under other limits (``None`` keeps the enclosing value); yields them."""
    new = current_limits()
    if max_events is not None:
        new = replace(new, max_events=int(max_events))
    if max_memory_bytes is not None:
        new = replace(new, max_memory_bytes=float(max_memory_bytes))
    if max_points is not None:
        new = replace(new, max_points=int(max_points))
    if max_sims is not None:
        new = replace(new, max_sims=int(max_sims))
    token = _LIMITS.set(new)
    try:
        yield new
    finally:
        _LIMITS.reset(token)


@contextlib.contextmanager
def use(lim: Limits) -> Iterator[Limits]:
    """Run a block under exactly ``lim`` (a worker running a task of another process)."""
    token = _LIMITS.set(lim)
    try:
        yield lim
    finally:
        _LIMITS.reset(token)


def _parse_count(text: str, option: str) -> int:
    try:
        value = parse_quantity(text, Dim.COUNT)
    except UnitError as err:
        raise SpecError(f"{option} {text!r}: {err}") from None
    # 1e18 is far beyond any budget a machine can honour, and keeps the value an exact int
    if not math.isfinite(value) or value < 1 or value > 1e18:
        raise SpecError(f"{option} {text!r}: expected a positive count such as '2e8'")
    return int(value)


def parse_max_events(text: str, option: str = "--max-events") -> int:
    """A user's event budget (``5e6``, ``200000000``) as an int; a SpecError naming ``option``."""
    return _parse_count(text, option)


def parse_max_points(text: str, option: str = "--max-points") -> int:
    """A user's sweep-point budget (``1e7``) as an int; a SpecError naming ``option``."""
    return _parse_count(text, option)


def parse_max_sims(text: str, option: str = "--max-sims") -> int:
    """A user's budget of simulated sweep sub-problems (``5e4``); a SpecError naming ``option``."""
    return _parse_count(text, option)


def parse_max_memory(text: str, option: str = "--max-memory") -> float:
    """A user's memory budget (``8 GiB``) in bytes; a SpecError naming ``option``."""
    try:
        value = parse_quantity(text, Dim.BYTES)
    except UnitError as err:
        raise SpecError(f"{option} {text!r}: {err}") from None
    if not math.isfinite(value) or value <= 0:
        raise SpecError(f"{option} {text!r}: expected a positive size such as '8 GiB'")
    return value


#: The global options that set limits: option -> (keyword of :func:`limits`, parser, example).
OPTIONS: dict[str, tuple[str, Callable[[str, str], Any], str]] = {
    "--max-events": ("max_events", parse_max_events, "2e8"),
    "--max-memory": ("max_memory_bytes", parse_max_memory, "8GiB"),
    "--max-points": ("max_points", parse_max_points, "1e7"),
    "--max-sims": ("max_sims", parse_max_sims, "1e5"),
}


def parse_options(values: dict[str, str]) -> dict[str, Any]:
    """``{"--max-points": "1e7"}`` -> ``{"max_points": 10000000}`` (keywords of :func:`limits`)."""
    out: dict[str, Any] = {}
    for option, text in values.items():
        key, parser, _ = OPTIONS[option]
        out[key] = parser(text, option)
    return out


def event_limit() -> int:
    """The event budget in force (see :func:`limits`)."""
    return current_limits().max_events


def memory_limit_bytes() -> float:
    """The memory budget in force, bytes (see :func:`limits`)."""
    return current_limits().max_memory_bytes


def format_count(n: int | float) -> str:
    """A count for messages: ``123,456``; ``10^15``; ``2.5×10^7``; ``unbounded``."""
    if isinstance(n, float) and not math.isfinite(n):
        return "unbounded"
    if n < 1e6:
        return f"{n:,.0f}"
    exp = math.floor(math.log10(n))  # exact enough for Python ints of any size
    mant = n / 10**exp
    if mant >= 9.995:  # rounding carries into the next power
        mant, exp = mant / 10, exp + 1
    text = f"{mant:.2f}".rstrip("0").rstrip(".")
    return f"10^{exp}" if text == "1" and n == 10**exp else f"{text}×10^{exp}"


def _tail(hint: str) -> str:
    return f"; {hint}" if hint else ""


def check_budget(
    estimated_events: float, limit: int | None = None, cheaper_mode_hint: str = ""
) -> None:
    """Refuse a run whose estimated simpy event count exceeds ``limit`` (default
    :func:`event_limit`). ``cheaper_mode_hint`` says what to do, e.g. ``"use --detail cta"``."""
    cap = event_limit() if limit is None else limit
    if not math.isfinite(estimated_events) or estimated_events > cap:
        shown = f"{estimated_events:,.0f}" if math.isfinite(estimated_events) else "unbounded"
        raise LimitExceeded(
            f"would process ~{shown} events (limit {cap:,}; --max-events raises it)"
            f"{_tail(cheaper_mode_hint)}"
        )


def check_sims(estimated: float, what: str, cheaper_mode_hint: str = "") -> None:
    """Refuse a search that would run more than ``--max-sims`` simulations; ``what`` names
    them ("decode steps to simulate (19 layouts)"), ``cheaper_mode_hint`` how to ask for
    fewer."""
    cap = current_limits().max_sims
    if not math.isfinite(estimated) or estimated > cap:
        raise LimitExceeded(
            f"up to {format_count(estimated)} {what}; the limit is "
            f"{format_count(cap)} (--max-sims raises it){_tail(cheaper_mode_hint)}"
        )


def check_memory(
    estimated_bytes: float, limit_bytes: float | None = None, cheaper_mode_hint: str = ""
) -> None:
    """Refuse a run whose estimated host memory (bytes) exceeds ``limit_bytes`` (default
    :func:`memory_limit_bytes`)."""
    cap = memory_limit_bytes() if limit_bytes is None else limit_bytes
    if not math.isfinite(estimated_bytes) or estimated_bytes > cap:
        shown = (
            format_quantity(estimated_bytes, Dim.BYTES)
            if math.isfinite(estimated_bytes)
            else "unbounded memory"
        )
        raise LimitExceeded(
            f"would need ~{shown} of host memory "
            f"(limit {format_quantity(cap, Dim.BYTES)}; --max-memory raises it)"
            f"{_tail(cheaper_mode_hint)}"
        )


__all__ = [
    "DEFAULT_MAX_EVENTS",
    "DEFAULT_MAX_MEMORY_BYTES",
    "DEFAULT_MAX_POINTS",
    "DEFAULT_MAX_SIMS",
    "OPTIONS",
    "LimitExceeded",
    "Limits",
    "check_budget",
    "check_memory",
    "check_sims",
    "current_limits",
    "event_limit",
    "format_count",
    "limits",
    "memory_limit_bytes",
    "parse_max_events",
    "parse_max_memory",
    "parse_max_points",
    "parse_max_sims",
    "parse_options",
    "use",
]
