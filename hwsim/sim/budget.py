"""Resource limits: refuse a simulation that would exhaust time or memory, and say what to do.

A fine-grained mode (``--detail tile`` on a 1M-token prefill) can need billions of simpy events.
Simulators estimate their cost *before* building the event graph and call :func:`check_budget`
(events) and :func:`check_memory` (bytes of Python/numpy state); both raise a
:class:`~hwsim.spec.errors.SpecError` naming the cheaper mode. :func:`run_bounded` is the safety
net when an estimate is wrong: it runs an engine and stops it once the limit is passed.

Limits are configurable per call (``limit=``) or for the whole process through the environment:
``HWSIM_MAX_EVENTS`` (a count, default 5,000,000 ≈ a minute of simpy) and ``HWSIM_MAX_MEMORY``
(a size such as ``8 GiB``, default 4 GiB).
"""

from __future__ import annotations

import math
import os
from typing import Any

from hwsim.spec.errors import SpecError
from hwsim.spec.units import Dim, UnitError, format_quantity, parse_quantity

DEFAULT_MAX_EVENTS = 5_000_000
DEFAULT_MAX_MEMORY_BYTES = 4 * 2**30


def event_limit() -> int:
    """The event budget: ``HWSIM_MAX_EVENTS`` if set, else :data:`DEFAULT_MAX_EVENTS`."""
    raw = os.environ.get("HWSIM_MAX_EVENTS")
    if raw is None or not raw.strip():
        return DEFAULT_MAX_EVENTS
    try:
        value = parse_quantity(raw, Dim.COUNT)
    except UnitError as err:
        raise SpecError(f"HWSIM_MAX_EVENTS: {err}") from None
    return int(value)


def memory_limit_bytes() -> float:
    """The memory budget (bytes): ``HWSIM_MAX_MEMORY`` if set, else 4 GiB."""
    raw = os.environ.get("HWSIM_MAX_MEMORY")
    if raw is None or not raw.strip():
        return float(DEFAULT_MAX_MEMORY_BYTES)
    try:
        return parse_quantity(raw, Dim.BYTES)
    except UnitError as err:
        raise SpecError(f"HWSIM_MAX_MEMORY: {err}") from None


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
            f"would process ~{shown} events (limit {cap:,}; HWSIM_MAX_EVENTS raises it)"
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
            f"(limit {format_quantity(cap, Dim.BYTES)}; HWSIM_MAX_MEMORY raises it)"
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
                f"{format_quantity(env.now, Dim.TIME)} (HWSIM_MAX_EVENTS raises the limit)"
                f"{_tail(cheaper_mode_hint)}"
            )

    env.step = step
    try:
        return float(engine.run(until))
    finally:
        del env.step  # back to the class's method
