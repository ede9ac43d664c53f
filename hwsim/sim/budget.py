"""Resource limits: refuse a simulation that would exhaust time or memory, and say what to do.

A fine-grained mode (``--detail tile`` on a 1M-token prefill) can need billions of simpy events.
Simulators estimate their cost *before* building the event graph and call :func:`check_budget`
(events) and :func:`check_memory` (bytes of Python/numpy state); both raise a
:class:`~hwsim.spec.errors.SpecError` naming the cheaper mode. :func:`run_bounded` is the safety
net when an estimate is wrong: it runs an engine and stops it once the limit is passed.

The limits themselves (:class:`Limits`, :func:`limits`, the checks and parsers) live in
:mod:`hwsim.spec.limits`, so that planners below the simulator can refuse a plan before they
allocate it; they are re-exported here unchanged. Limits are explicit configuration, never
environment variables: per call (``limit=``), or for a block of code with
``with budget.limits(max_events=..., max_memory_bytes=...):``. The CLI enters it from its global
``--max-events``, ``--max-memory``, ``--max-points`` and ``--max-sims`` options. Defaults:
5,000,000 events (about a minute of simpy) and 4 GiB; see ``docs/reliability.md``.
"""

from __future__ import annotations

from typing import Any

from hwsim.spec.limits import (
    DEFAULT_MAX_EVENTS,
    DEFAULT_MAX_MEMORY_BYTES,
    DEFAULT_MAX_POINTS,
    DEFAULT_MAX_SIMS,
    LimitExceeded,
    Limits,
    check_budget,
    check_memory,
    current_limits,
    event_limit,
    limits,
    memory_limit_bytes,
    parse_max_events,
    parse_max_memory,
    parse_max_points,
    parse_max_sims,
)
from hwsim.spec.units import Dim, format_quantity

__all__ = [
    "DEFAULT_MAX_EVENTS",
    "DEFAULT_MAX_MEMORY_BYTES",
    "DEFAULT_MAX_POINTS",
    "DEFAULT_MAX_SIMS",
    "LimitExceeded",
    "Limits",
    "check_budget",
    "check_memory",
    "current_limits",
    "event_limit",
    "limits",
    "memory_limit_bytes",
    "parse_max_events",
    "parse_max_memory",
    "parse_max_points",
    "parse_max_sims",
    "run_bounded",
]


def _tail(hint: str) -> str:
    return f"; {hint}" if hint else ""


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
            raise LimitExceeded(
                f"stopped after {cap:,} events at simulated time "
                f"{format_quantity(env.now, Dim.TIME)} (--max-events raises the limit)"
                f"{_tail(cheaper_mode_hint)}"
            )

    env.step = step
    try:
        return float(engine.run(until))
    finally:
        del env.step  # back to the class's method
