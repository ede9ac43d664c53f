"""Resource limits: refuse a simulation that would exhaust time or memory, and say what to do.

A fine-grained mode (``--detail tile`` on a 1M-token prefill) can need billions of simpy events.
Simulators estimate their cost *before* building the event graph and call :func:`check_budget`
(events) and :func:`check_memory` (bytes of Python/numpy state); both raise a
:class:`~hwsim.spec.errors.SpecError` naming the cheaper mode. :func:`run_bounded` is the safety
net when an estimate is wrong: it runs an engine and stops it once the limit is passed.

Limits are explicit configuration, never environment variables: per call (``limit=``), or for
a block of code with ``with budget.limits(max_events=..., max_memory_bytes=...):`` (a
:mod:`contextvars` value, so it holds for that thread/task only and ends with the block). The
CLI enters it from its global ``--max-events`` and ``--max-memory`` options (a count such as
``2e8``; a size such as ``8 GiB``). Defaults: 5,000,000 events (about a minute of simpy) and
4 GiB.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, replace
from typing import Any

from hwsim.spec.errors import SpecError
from hwsim.spec.units import Dim, UnitError, format_quantity, parse_quantity

DEFAULT_MAX_EVENTS = 5_000_000
DEFAULT_MAX_MEMORY_BYTES = 4 * 2**30


@dataclass(frozen=True)
class Limits:
    """The budget one run may use: simpy events (a count) and host memory (bytes)."""

    max_events: int = DEFAULT_MAX_EVENTS
    max_memory_bytes: float = float(DEFAULT_MAX_MEMORY_BYTES)


# Limits is frozen, so one shared default instance is safe
_LIMITS: ContextVar[Limits] = ContextVar("hwsim_budget_limits", default=Limits())  # noqa: B039


def current_limits() -> Limits:
    """The limits in force here (the innermost :func:`limits` block, else the defaults)."""
    return _LIMITS.get()


@contextlib.contextmanager
def limits(
    max_events: int | None = None, max_memory_bytes: float | None = None
) -> Iterator[Limits]:
    """Run a block under other limits (``None`` keeps the enclosing value); yields them."""
    new = current_limits()
    if max_events is not None:
        new = replace(new, max_events=int(max_events))
    if max_memory_bytes is not None:
        new = replace(new, max_memory_bytes=float(max_memory_bytes))
    token = _LIMITS.set(new)
    try:
        yield new
    finally:
        _LIMITS.reset(token)


def parse_max_events(text: str, option: str = "--max-events") -> int:
    """A user's event budget (``5e6``, ``200000000``) as an int; a SpecError naming ``option``."""
    try:
        value = parse_quantity(text, Dim.COUNT)
    except UnitError as err:
        raise SpecError(f"{option} {text!r}: {err}") from None
    if not math.isfinite(value) or value < 1:
        raise SpecError(f"{option} {text!r}: expected a positive count such as '2e8'")
    return int(value)


def parse_max_memory(text: str, option: str = "--max-memory") -> float:
    """A user's memory budget (``8 GiB``) in bytes; a SpecError naming ``option``."""
    try:
        value = parse_quantity(text, Dim.BYTES)
    except UnitError as err:
        raise SpecError(f"{option} {text!r}: {err}") from None
    if not math.isfinite(value) or value <= 0:
        raise SpecError(f"{option} {text!r}: expected a positive size such as '8 GiB'")
    return value


def event_limit() -> int:
    """The event budget in force (see :func:`limits`)."""
    return current_limits().max_events


def memory_limit_bytes() -> float:
    """The memory budget in force, bytes (see :func:`limits`)."""
    return current_limits().max_memory_bytes


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
        raise SpecError(
            f"would process ~{shown} events (limit {cap:,}; --max-events raises it)"
            f"{_tail(cheaper_mode_hint)}"
        )


def check_memory(
    estimated_bytes: float, limit_bytes: float | None = None, cheaper_mode_hint: str = ""
) -> None:
    """Refuse a run whose estimated host memory (bytes) exceeds ``limit_bytes`` (default
    :func:`memory_limit_bytes`)."""
    cap = memory_limit_bytes() if limit_bytes is None else limit_bytes
    if not math.isfinite(estimated_bytes) or estimated_bytes > cap:
        raise SpecError(
            f"would need ~{format_quantity(estimated_bytes, Dim.BYTES)} of host memory "
            f"(limit {format_quantity(cap, Dim.BYTES)}; --max-memory raises it)"
            f"{_tail(cheaper_mode_hint)}"
        )


def run_bounded(
    engine: Any,
    max_events: int | None = None,
    cheaper_mode_hint: str = "",
    until: float | None = None,
) -> float:
    """``engine.run(until)``, stopped with a :class:`SpecError` once it has processed more than
    ``max_events`` events (default :func:`event_limit`). Returns the simulated seconds.

    Works with :class:`hwsim.sim.engine.Engine` (or anything with ``.env`` - a simpy environment
    that counts ``events_processed`` - and ``.run``) without changing it: the environment's
    ``step`` is wrapped for the duration of the run.
    """
    cap = event_limit() if max_events is None else max_events
    env = engine.env
    start = env.events_processed
    inner = env.step

    def step() -> None:
        inner()
        if env.events_processed - start > cap:
            raise SpecError(
                f"stopped after {cap:,} events at simulated time "
                f"{format_quantity(env.now, Dim.TIME)} (--max-events raises the limit)"
                f"{_tail(cheaper_mode_hint)}"
            )

    env.step = step
    try:
        return float(engine.run(until))
    finally:
        del env.step  # back to the class's method
