"""Invariants every simulation must satisfy: a simulator may be inaccurate, but never impossible.

Checks (each raises :class:`InvariantError`, an ``AssertionError``, naming what broke and by how
much):

* :func:`check_time` - a simulated time is finite and > 0.
* :func:`check_utilization` - no link or resource carries more than 100 % of its capacity, on
  average or at its peak allocated rate.
* :func:`check_bytes_conserved` - the bytes each link/level moved equal the bytes the plan
  sent through it.
* :func:`check_roofline_bound` - the analytic roofline time is a lower bound on the simulated
  time (the simulator can never beat physics).
* :func:`check_monotone` - more bandwidth or more FLOP/s never makes a workload slower.
* :func:`check_deterministic` - the same inputs and seed give byte-identical JSON.
* :func:`check_engine` - the first three on a finished :class:`hwsim.sim.engine.Engine`.
* :func:`check_result` - generic checks on any result dataclass/dict by the project's naming
  convention (``*_s`` times, ``*_bytes``, ``*_Bps``, ``*utilization``/``*_fraction``).

Simulators call :func:`debug_check` (or ``if invariants.enabled(): ...``) at the end of ``run()``:
it is free unless debug mode is on, i.e. inside a ``with invariants.debug_checks():`` block
(which ``hwsim --debug`` enters; a :mod:`contextvars` value, never an environment variable).
In debug mode *every* engine run of every simulator is also checked (:func:`check_engine`)
without the simulators doing anything. Tests call the checks directly over random cases.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from typing import Any

#: Relative slack for floating-point accumulation (the engine integrates rates over time).
RTOL = 1e-9

#: Slack for raising ONE resource (2x HBM bandwidth, or 2x FLOP/s) on a fair-sharing or
#: plan-choosing simulation. Such a change can legitimately cost a little time: a faster producer
#: starts a transfer earlier and halves a critical transfer's share (Graham's list-scheduling
#: anomaly, docs/reliability.md), or a planner picks another tile shape for the new balance.
#: Worst random cases seen: 8 % (engine), 1.5 % (decode attention); GEMM plans are autotuned
#: against the simulator's own timing, so random GEMMs are exactly monotone;
#: 10 % still catches a model that gets *really* slower with more of a resource.
SCHEDULING_RTOL = 0.10


class InvariantError(AssertionError):
    """A simulation result that cannot be physically right (a bug, not bad input)."""


_DEBUG: ContextVar[bool] = ContextVar("hwsim_debug_checks", default=False)


def enabled() -> bool:
    """Whether invariant checks run inside simulators (inside :func:`debug_checks`)."""
    return _DEBUG.get()


@contextlib.contextmanager
def debug_checks(on: bool = True) -> Iterator[None]:
    """Run a block with the invariant checks on (``on=False``: off); ``hwsim --debug`` enters
    it around the command. Also installs :func:`install_engine_checks`, which checks engine
    runs only while debug mode is on."""
    if on:
        install_engine_checks()
    token = _DEBUG.set(on)
    try:
        yield
    finally:
        _DEBUG.reset(token)


def _fail(what: str, detail: str) -> InvariantError:
    return InvariantError(f"{what}: {detail}" if what else detail)


# ---- single-number checks -------------------------------------------------------------------
def check_time(time_s: float, what: str = "simulated time") -> None:
    """A time (s) is a finite number > 0."""
    if not (isinstance(time_s, int | float) and math.isfinite(time_s) and time_s > 0):
        raise _fail(what, f"time must be finite and > 0 s, got {time_s!r}")


def check_utilization(
    stats: Mapping[str, Mapping[str, Any]], what: str = "", rtol: float = RTOL
) -> None:
    """No resource over 100 %: ``stats`` maps a resource name to a mapping holding any of
    ``utilization`` (average fraction of capacity) and ``peak_rate_fraction`` (largest
    allocated rate / capacity), as :meth:`Engine.link_stats` returns."""
    for name, row in stats.items():
        for key in ("utilization", "peak_rate_fraction"):
            if key not in row:
                continue
            value = float(row[key])
            if not (math.isfinite(value) and -rtol <= value <= 1.0 + rtol):
                raise _fail(what, f"{name}: {key} = {value!r}, outside [0, 1]")


def check_bytes_conserved(
    moved: Mapping[str, float],
    expected: Mapping[str, float],
    what: str = "",
    rtol: float = RTOL,
    atol_bytes: float = 1e-6,
) -> None:
    """Every link/level in ``expected`` moved exactly the bytes the plan sent over it, and
    nothing else moved bytes anywhere not named in ``expected``."""
    for name in sorted(set(moved) | set(expected)):
        got, want = float(moved.get(name, 0.0)), float(expected.get(name, 0.0))
        if not math.isfinite(got) or abs(got - want) > atol_bytes + rtol * abs(want):
            raise _fail(what, f"{name}: moved {got!r} B, the plan sent {want!r} B")


def check_roofline_bound(
    roofline_time_s: float, simulated_time_s: float, what: str = "", rtol: float = RTOL
) -> None:
    """The analytic roofline time (s) is a lower bound on the simulated time (s)."""
    check_time(simulated_time_s, what or "simulated time")
    if not roofline_time_s <= simulated_time_s * (1.0 + rtol):
        raise _fail(
            what,
            f"simulated {simulated_time_s:.6g} s beats the roofline bound "
            f"{roofline_time_s:.6g} s ({simulated_time_s / roofline_time_s:.4g}x)",
        )


def check_monotone(
    run: Callable[[float], float],
    factors: Iterable[float] = (1.0, 1.25, 2.0, 4.0),
    what: str = "",
    rtol: float = RTOL,
) -> list[float]:
    """``run(f)`` simulates with a resource scaled by ``f`` (more bandwidth or FLOP/s as ``f``
    grows) and returns its time (s); times must not increase along ascending ``factors``.
    Returns the times."""
    fs = sorted(factors)
    times = [run(f) for f in fs]
    for i in range(1, len(fs)):
        f0, t0, f1, t1 = fs[i - 1], times[i - 1], fs[i], times[i]
        if t1 > t0 * (1.0 + rtol):
            raise _fail(
                what,
                f"{f1:g}x the resource takes {t1:.6g} s, slower than {t0:.6g} s at {f0:g}x",
            )
    return times


# ---- JSON and determinism -------------------------------------------------------------------
def _plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    if hasattr(obj, "tolist") and callable(obj.tolist):  # numpy arrays and scalars
        return _plain(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return repr(obj)  # 'inf'/'nan' as text: still comparable, and valid JSON
    return obj


def to_json(result: Any) -> str:
    """Canonical JSON of a result (dataclasses, dicts, numpy values): sorted keys, so equal
    results give byte-identical text."""
    return json.dumps(_plain(result), sort_keys=True, separators=(",", ":"), default=str)


def check_deterministic(run: Callable[[], Any], repeats: int = 2, what: str = "") -> str:
    """Run ``run()`` ``repeats`` times (same inputs and seed) and require byte-identical JSON.
    Returns the JSON."""
    first = to_json(run())
    for i in range(1, repeats):
        again = to_json(run())
        if again != first:
            at = next((j for j, (a, b) in enumerate(zip(first, again, strict=False)) if a != b), 0)
            raise _fail(
                what,
                f"run {i + 1} differs from run 1 at character {at}: "
                f"{first[max(0, at - 40) : at + 40]!r} vs {again[max(0, at - 40) : at + 40]!r}",
            )
    return first


# ---- composite checks ------------------------------------------------------------------------
def check_engine(
    engine: Any,
    expected_bytes: Mapping[str, float] | None = None,
    what: str = "engine",
    rtol: float = RTOL,
) -> None:
    """Checks on a finished :class:`~hwsim.sim.engine.Engine`: elapsed time finite (and > 0 if
    anything moved), no link above its bandwidth, bytes moved finite and ≥ 0 (and equal to
    ``expected_bytes`` per link name when given), and no link finished faster than
    bytes / bandwidth allows."""
    now = float(engine.env.now)
    links = list(engine.links)
    if not math.isfinite(now) or now < 0:
        raise _fail(what, f"elapsed time {now!r} s")
    if any(lk.bytes_moved > 0 for lk in links):
        check_time(now, what)
    check_utilization(engine.link_stats(), what, rtol)
    for lk in links:
        if not (math.isfinite(lk.bytes_moved) and lk.bytes_moved >= 0):
            raise _fail(what, f"{lk.name}: moved {lk.bytes_moved!r} B")
        if lk.bytes_moved / lk.bandwidth_Bps > now * (1.0 + rtol) + 1e-15:
            raise _fail(
                what,
                f"{lk.name}: moved {lk.bytes_moved:.6g} B in {now:.6g} s, faster than its "
                f"{lk.bandwidth_Bps:.6g} B/s",
            )
    if expected_bytes is not None:
        check_bytes_conserved({lk.name: lk.bytes_moved for lk in links}, expected_bytes, what, rtol)


_TIME_TOTALS = ("time_s", "total_s", "total_time_s", "makespan_s", "step_s")


def check_result(result: Any, what: str = "", rtol: float = RTOL) -> None:
    """Generic sanity of a result by the project's naming convention (SI unit suffixes):

    * no NaN anywhere;
    * ``*_s``, ``*_bytes``, ``*_Bps``, ``*_W``, ``*_flops`` values finite and ≥ 0
      (``intensity``/``ridge`` values may be +inf: no bytes moved);
    * ``time_s``/``total_s``/``makespan_s``/``step_s`` > 0;
    * ``*utilization*`` and ``*_fraction`` (also ``fraction_of_peak``) within [0, 1].
    """

    def walk(obj: Any, path: str, key: str) -> None:
        if isinstance(obj, Mapping):
            for k, v in obj.items():
                # a mapping's unit is its own name's suffix (``level_time_s: {hbm: ...}``)
                walk(v, f"{path}.{k}" if path else str(k), key if _has_unit(key) else str(k))
            return
        if isinstance(obj, list | tuple):
            for i, v in enumerate(obj):
                walk(v, f"{path}[{i}]", key)
            return
        if isinstance(obj, bool) or not isinstance(obj, int | float):
            return
        v = float(obj)
        if math.isnan(v):
            raise _fail(what, f"{path} is NaN")
        if "intensity" in key or "ridge" in key:
            if v < 0:
                raise _fail(what, f"{path} = {v!r} < 0")
            return
        if key.endswith(("_s", "_bytes", "_Bps", "_W", "_flops", "_J")) and not (
            math.isfinite(v) and v >= 0
        ):
            raise _fail(what, f"{path} = {v!r}; expected finite and >= 0")
        if key in _TIME_TOTALS and not v > 0:
            raise _fail(what, f"{path} = {v!r}; a total time must be > 0")
        if ("utilization" in key or key.endswith("fraction") or key == "fraction_of_peak") and not (
            -rtol <= v <= 1.0 + rtol
        ):
            raise _fail(what, f"{path} = {v!r}; outside [0, 1]")

    walk(_plain_keep_floats(result), "", "")


def _has_unit(key: str) -> bool:
    return key.endswith(("_s", "_bytes", "_Bps", "_W", "_flops", "_J")) or "utilization" in key


def _plain_keep_floats(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _plain_keep_floats(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): _plain_keep_floats(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain_keep_floats(v) for v in obj]
    if hasattr(obj, "tolist") and callable(obj.tolist):
        return _plain_keep_floats(obj.tolist())
    return obj


def debug_check(
    result: Any,
    *,
    engine: Any = None,
    roofline_time_s: float | None = None,
    time_s: float | None = None,
    expected_bytes: Mapping[str, float] | None = None,
    what: str = "",
) -> None:
    """Run the applicable checks when :func:`enabled` (``hwsim --debug``); free otherwise.

    Call at the end of a simulator's ``run()``: ``debug_check(result, engine=eng,
    roofline_time_s=rl.time_s, time_s=result.time_s, expected_bytes=plan_bytes)``.
    """
    if not enabled():
        return
    check_result(result, what)
    if engine is not None:
        check_engine(engine, expected_bytes, what or "engine")
    if time_s is not None:
        check_time(time_s, what or "simulated time")
        if roofline_time_s is not None:
            check_roofline_bound(roofline_time_s, time_s, what)


def install_engine_checks() -> None:
    """Check every :meth:`hwsim.sim.engine.Engine.run` made in debug mode (:func:`enabled`)
    with :func:`check_engine` (time finite, no link above its bandwidth, bytes finite and
    physically possible).

    :func:`debug_checks` calls it: it wraps the method for the rest of the process, costing
    one pass over the links per run in debug mode and one context lookup otherwise.
    Idempotent."""
    from hwsim.sim import engine as engine_mod

    original = engine_mod.Engine.run
    if getattr(original, "_hwsim_checked", False):
        return

    def run(self: Any, until: Any = None) -> float:
        t = original(self, until)
        if enabled():
            check_engine(self, what="engine run (debug checks)")
        return t

    run._hwsim_checked = True  # type: ignore[attr-defined]
    run.__doc__ = original.__doc__
    engine_mod.Engine.run = run  # type: ignore[method-assign]
