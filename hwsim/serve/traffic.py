"""Request traffic for ``hwsim serve``: which requests arrive when, with how many tokens.

The serving engine (continuous batching, KV blocks) consumes this layer; it knows nothing of
hardware. Units: seconds and whole tokens inside; human units (``2 s``) only in YAML.

Sources of traffic (:func:`load_traffic`, the ``--traffic`` option)
    * a built-in profile, ``workloads/traffic/<name>.yaml`` (:func:`list_traffic`): lengths as
      ``fixed`` / ``lognormal`` / ``histogram`` distributions, optional shared-prefix groups, a
      default arrival process and SLOs, every number cited (see that folder's README);
    * any such YAML file (:class:`TrafficSpec`);
    * a trace, ``.csv`` or ``.jsonl`` with ``arrival_s, prompt_tokens, output_tokens`` and optional
      ``prefix_id``, ``prefix_tokens`` (:class:`Trace`). It is read streaming, one bounded line
      at a time, and refused beyond ``max_requests`` rows unless ``first=N`` stops early.

Arrival processes (:data:`Arrival`; ``--qps X | --offline | --concurrency C`` override the
file's default through :func:`resolve_arrival`): :class:`Poisson` (``qps``), :class:`Gamma`
(``qps``, ``cv``: bursty; vLLM's ``--burstiness b`` is ``cv = 1/sqrt(b)``), :class:`Offline` (all
at t = 0) and :class:`ClosedLoop` (``users``, think time).

API (frozen types; the schema is in :mod:`~hwsim.serve.traffic_spec`, file reading in
:mod:`~hwsim.serve.traffic_files`, the sampling internals in :mod:`~hwsim.serve.traffic_sample`)
    ``list_traffic() -> list[str]``
        The built-in profile names.
    ``load_traffic(name_or_path, first=None, max_requests=DEFAULT_MAX_REQUESTS) -> TrafficSpec |
    Trace``
        A built-in name, a traffic YAML, or a trace (see above).
    ``resolve_arrival(default, qps=None, offline=False, concurrency=None, think_s=None) ->
    Arrival | None``
        What ``--qps | --offline | --concurrency`` (and ``--think``) ask for, given the file's
        default (``None`` for a trace: as recorded); bad options raise naming the option.
    ``sample(traffic, n=None, duration_s=None, arrival=None, qps=None, seed=0, max_context=None,
    overflow="clip", max_requests=DEFAULT_MAX_REQUESTS) -> Requests``
        Open-loop or offline requests, sorted by arrival. Bounded by ``n`` and/or ``duration_s``
        (``--requests`` / ``--duration``); a trace defaults to all its rows. ``qps`` keeps the
        default process's shape (a gamma stays gamma with its cv). For a trace, a rate rescales its
        timestamps to that mean rate (burstiness kept) and ``Offline`` zeroes them.
    ``closed_loop(traffic, users, think_s=0, think_dist="exponential", seed=0, ...) ->
    UserStreams``
        Per-user request streams for a closed loop (see :class:`UserStreams`).
    :class:`Requests`
        A frozen record of read-only numpy arrays, one entry per request: ``arrival_s`` (float64),
        ``prompt_tokens``, ``output_tokens``, ``prefix_id`` (-1: none), ``prefix_tokens`` (int64);
        ``len(r)``, ``r.take(index)``, ``r.records()`` (one structured array), ``r.equals(other)``.
    ``TrafficSpec.slo``
        Default SLOs (``ttft_s``, ``tpot_s`` at ``percentile``) where the profile has them.

Prefixes (for prefix caching): ``prompt_tokens`` is the *whole* prompt; its first
``prefix_tokens`` tokens are shared with every other request of the same ``prefix_id`` (a system
prompt, or a conversation's history: turn k's prefix is turns 1..k-1, prompts and answers). The
first request of a group carries the group's id too; whether its prefix is cached is the
engine's business. ``prefix_tokens <= prompt_tokens`` always.

Context cap: with ``max_context`` (the model's context, e.g. ``ModelConfig.max_position``) every
request fits ``prompt + output <= max_context``. ``overflow="clip"`` (default) shortens the output
(then the prompt, keeping >= 1 output token) and warns with a :class:`SpecWarning` saying how many;
``overflow="refuse"`` raises :class:`SpecError` (for a trace, naming the first offending line).

Randomness: ``numpy`` ``Generator`` streams derived from ``seed`` with fixed keys, one per purpose
(arrival gaps, prompt lengths, output lengths, prefixes, think times, each user). Lengths are
drawn by inverse CDF in request order, so the same seed gives the same lengths in the same order at
any rate (common random numbers), and arrival times at ``qps_new`` are those at ``qps_old`` scaled
by ``qps_old / qps_new``. Drawing more requests extends the stream: ``n = 100`` is a prefix of
``n = 1000``. Poisson gaps are exact exponentials (no truncated tail): the offered rate is ``qps``.

Errors are one-line :class:`~hwsim.spec.errors.SpecError` naming the file and line, or the CLI
option (``--qps``, ``--requests``, ...). ``DEFAULT_MAX_REQUESTS`` bounds every stream (raise it
with ``max_requests=``; CLI ``--max-requests``), so a typo like ``--duration 1e9`` cannot fill
memory.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from hwsim.serve.traffic_sample import (
    THINK,
    USER,
    arrivals,
    check_context,
    fit_context,
    lengths,
    stream,
)
from hwsim.serve.traffic_spec import (
    MAX_QPS,
    MAX_USERS,
    SLO,
    Arrival,
    ClosedLoop,
    Conversation,
    Gamma,
    Histogram,
    Lengths,
    LogNormal,
    Offline,
    Poisson,
    Prefix,
    SystemPrompt,
    TrafficSpec,
)
from hwsim.spec.errors import SpecError, SpecWarning

__all__ = [
    "DEFAULT_MAX_REQUESTS",
    "SLO",
    "Arrival",
    "ClosedLoop",
    "Conversation",
    "Gamma",
    "Histogram",
    "Lengths",
    "LogNormal",
    "Offline",
    "Poisson",
    "Prefix",
    "Requests",
    "SystemPrompt",
    "Trace",
    "TrafficSpec",
    "UserStreams",
    "closed_loop",
    "list_traffic",
    "load_traffic",
    "resolve_arrival",
    "sample",
]

DEFAULT_MAX_REQUESTS = 2_000_000  #: ~80 MB of arrays; raise with ``max_requests=``
Overflow = Literal["clip", "refuse"]


# ---- records ----------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Requests:
    """One entry per request, sorted by arrival (closed-loop streams: ``arrival_s`` is NaN)."""

    arrival_s: np.ndarray
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray
    prefix_id: np.ndarray
    prefix_tokens: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.arrival_s)
        for name, dtype in _FIELDS:
            arr = np.array(getattr(self, name), dtype=dtype)  # a copy we own
            if arr.shape != (n,):
                raise ValueError(f"{name} has shape {arr.shape}, expected ({n},)")
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)

    def __len__(self) -> int:
        return len(self.arrival_s)

    def take(self, index: slice | np.ndarray) -> Requests:
        """The requests at ``index`` (a slice, integer indices or a boolean mask)."""
        return Requests(**{name: getattr(self, name)[index] for name, _ in _FIELDS})

    def records(self) -> np.ndarray:
        """The same data as one structured array (a copy)."""
        out = np.empty(len(self), dtype=[(name, dtype) for name, dtype in _FIELDS])
        for name, _ in _FIELDS:
            out[name] = getattr(self, name)
        return out

    def equals(self, other: Requests) -> bool:
        return all(
            np.array_equal(getattr(self, k), getattr(other, k), equal_nan=k == "arrival_s")
            for k, _ in _FIELDS
        )


_FIELDS = (
    ("arrival_s", np.float64),
    ("prompt_tokens", np.int64),
    ("output_tokens", np.int64),
    ("prefix_id", np.int64),
    ("prefix_tokens", np.int64),
)


@dataclass(frozen=True, eq=False)
class Trace:
    """A replayed trace: its requests (arrival times shifted to start at 0) and, per request, the
    file line it came from (for messages). ``truncated``: more rows followed ``first=N``."""

    file: str
    requests: Requests
    lines: np.ndarray
    truncated: bool = False

    @property
    def where(self) -> str:
        return self.file


Traffic = TrafficSpec | Trace


# ---- names and files ---------------------------------------------------------------------
def list_traffic() -> list[str]:
    """Names of the built-in traffic profiles, sorted."""
    from hwsim.serve.traffic_files import list_builtin

    return list_builtin()


def load_traffic(
    name_or_path: str, *, first: int | None = None, max_requests: int = DEFAULT_MAX_REQUESTS
) -> Traffic:
    """A built-in profile name, a traffic ``.yaml`` file, or a ``.csv``/``.jsonl`` trace (read
    streaming; ``first=N`` stops after N rows, else more than ``max_requests`` rows is refused)."""
    from hwsim.serve.traffic_files import load

    return load(name_or_path, first=first, max_requests=max_requests)


# ---- options ------------------------------------------------------------------------------
def resolve_arrival(
    default: Arrival | None,
    *,
    qps: float | None = None,
    offline: bool = False,
    concurrency: int | None = None,
    think_s: float | None = None,
) -> Arrival | None:
    """The arrival process the command line asks for: at most one of ``--qps``, ``--offline``,
    ``--concurrency`` overrides the file's ``default`` (``None`` for a trace: replay as recorded).
    ``--qps`` keeps a gamma default's cv; ``--think`` needs a closed loop."""
    chosen = [o for o, v in (("--qps", qps), ("--concurrency", concurrency)) if v is not None]
    chosen += ["--offline"] if offline else []
    if len(chosen) > 1:
        raise SpecError(f"choose one of --qps, --offline, --concurrency (got {', '.join(chosen)})")
    if think_s is not None:
        if not isinstance(think_s, int | float) or not math.isfinite(think_s) or think_s < 0:
            raise SpecError(f"must be a time >= 0, got {think_s!r}", key="--think")
        if concurrency is None and not (isinstance(default, ClosedLoop) and not chosen):
            raise SpecError("needs a closed loop (--concurrency C)", key="--think")
    if qps is not None:
        if not isinstance(qps, int | float) or not math.isfinite(qps) or not 0 < qps <= MAX_QPS:
            raise SpecError(
                f"must be a number of requests per second in (0, {MAX_QPS:g}], got {qps!r}",
                key="--qps",
            )
        return with_qps(default, float(qps))
    if concurrency is not None:
        if (
            isinstance(concurrency, bool)
            or not isinstance(concurrency, int)
            or not 1 <= concurrency <= MAX_USERS
        ):
            raise SpecError(
                f"must be a whole number of users in 1..{MAX_USERS:,}, got {concurrency!r}",
                key="--concurrency",
            )
        base = default if isinstance(default, ClosedLoop) else None
        think = think_s if think_s is not None else (base.think_s if base else 0.0)
        dist = base.think_dist if base else "exponential"
        return ClosedLoop(users=concurrency, think=think, think_dist=dist)
    if think_s is not None:
        assert isinstance(default, ClosedLoop)
        return default.model_copy(update={"think": float(think_s)})
    return Offline() if offline else default


def with_qps(default: Arrival | None, qps: float) -> Poisson | Gamma:
    """``default`` at a new rate: a gamma keeps its cv; anything else becomes Poisson."""
    if isinstance(default, Gamma):
        return Gamma(qps=qps, cv=default.cv)
    return Poisson(qps=qps)


def _check_bounds(n: int | None, duration_s: float | None, max_requests: int) -> None:
    if n is not None and (isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1):
        raise SpecError(f"must be a whole number >= 1, got {n!r}", key="--requests")
    if duration_s is not None and not (math.isfinite(duration_s) and duration_s > 0):
        raise SpecError(f"must be a time > 0, got {duration_s!r}", key="--duration")
    if n is not None and n > max_requests:
        raise SpecError(
            f"{n:,} requests is more than max_requests = {max_requests:,}; raise the limit with "
            "--max-requests if you mean it",
            key="--requests",
        )


# ---- sampling ------------------------------------------------------------------------------
def _check_seed(seed: int) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise SpecError(f"must be a whole number >= 0, got {seed!r}", key="--seed")


def sample(
    traffic: Traffic,
    *,
    n: int | None = None,
    duration_s: float | None = None,
    arrival: Arrival | None = None,
    qps: float | None = None,
    seed: int = 0,
    max_context: int | None = None,
    overflow: Overflow = "clip",
    max_requests: int = DEFAULT_MAX_REQUESTS,
) -> Requests:
    """Open-loop (or offline) requests; see the module docstring."""
    _check_seed(seed)
    _check_bounds(n, duration_s, max_requests)
    check_context(max_context, overflow)
    if qps is not None:
        if arrival is not None:
            raise SpecError("give either arrival= or qps=, not both", key="--qps")
        arrival = resolve_arrival(arrival or _default(traffic), qps=qps)
    arrival = arrival if arrival is not None else _default(traffic)
    if isinstance(arrival, ClosedLoop):
        raise SpecError(
            "a closed loop has no arrival times to sample; the engine drives it with "
            "hwsim.serve.traffic.closed_loop()",
            key="--concurrency",
        )
    if isinstance(traffic, Trace):
        return _sample_trace(traffic, n, duration_s, arrival, max_context, overflow)
    if arrival is None:
        raise SpecError(
            "gives no default arrival process; pass --qps X, --offline or --concurrency C",
            file=traffic.where,
        )
    if n is None and duration_s is None:
        raise SpecError("give --requests N or --duration S to bound the request stream")
    if isinstance(arrival, Offline):
        if n is None:
            raise SpecError("an offline run has no time axis; give --requests N", key="--duration")
        t = np.zeros(n)
    else:
        t = arrivals(arrival, n, duration_s, seed, max_requests)
    prompt, output, pid, ptok = lengths(traffic, len(t), seed, max_context, users=None)
    prompt, output, ptok = fit_context(
        prompt, output, ptok, max_context, overflow, traffic.where, None
    )
    return Requests(t, prompt, output, pid, ptok)


def _default(traffic: Traffic) -> Arrival | None:
    return traffic.arrival if isinstance(traffic, TrafficSpec) else None


def _sample_trace(
    trace: Trace,
    n: int | None,
    duration_s: float | None,
    arrival: Arrival | None,
    max_context: int | None,
    overflow: str,
) -> Requests:
    r, lines = trace.requests, trace.lines
    t = r.arrival_s
    if isinstance(arrival, Poisson | Gamma):
        span = float(t[-1] - t[0]) if len(t) > 1 else 0.0
        if span <= 0:
            raise SpecError(
                "every request arrives at the same time; a rate cannot rescale it (use --offline)",
                file=trace.file,
            )
        t = t * ((len(t) - 1) / span / arrival.qps)
    elif isinstance(arrival, Offline):
        if duration_s is not None:
            raise SpecError("an offline run has no time axis; give --requests N", key="--duration")
        t = np.zeros_like(t)
    keep = np.ones(len(t), dtype=bool) if duration_s is None else t < duration_s
    if n is not None:
        keep &= np.arange(len(t)) < n
    prompt, output, ptok = fit_context(
        r.prompt_tokens[keep],
        r.output_tokens[keep],
        r.prefix_tokens[keep],
        max_context,
        overflow,
        trace.file,
        lines[keep],
    )
    return Requests(t[keep], prompt, output, r.prefix_id[keep], ptok)


# ---- closed loop ------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class UserStreams:
    """Per-user request streams for a closed loop of ``users`` users.

    Drive it like this: user ``u`` sends ``requests(u, k+1)`` entry ``k`` (its k-th request, k from
    0) ``think_times(u, k+1)[k]`` seconds after its previous request finished (the first one that
    long after t = 0, so exponential think times stagger the start). Stop when ``--requests N``
    have been sent or ``--duration`` has passed. User u's stream depends only on (seed, u), so
    adding users never changes the existing ones. A user's conversation turns (if the profile has
    a conversation group) follow each other in its own stream. For a trace, user u replays rows
    u, u + users, u + 2 users, ...; ``requests`` returns fewer entries once the trace runs out.
    ``arrival_s`` is NaN: the engine decides arrival times."""

    traffic: Traffic
    users: int
    think_s: float = 0.0
    think_dist: Literal["fixed", "exponential"] = "exponential"
    seed: int = 0
    max_context: int | None = None
    overflow: Overflow = "clip"
    _cache: dict[int, Requests] = field(default_factory=dict, repr=False)

    def requests(self, user: int, count: int) -> Requests:
        """The first ``count`` requests of ``user`` (deterministic; more never changes them)."""
        self._check_user(user)
        if isinstance(self.traffic, Trace):
            rows = np.arange(user, len(self.traffic.requests), self.users)[:count]
            r, lines = self.traffic.requests.take(rows), self.traffic.lines[rows]
            p, o, k = fit_context(
                r.prompt_tokens,
                r.output_tokens,
                r.prefix_tokens,
                self.max_context,
                self.overflow,
                self.traffic.file,
                lines,
            )
            return Requests(np.full(len(rows), np.nan), p, o, r.prefix_id, k)
        have = self._cache.get(user)
        if have is None or len(have) < count:
            size = max(count, 2 * len(have) if have is not None else 64)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", SpecWarning)  # closed_loop() warned once
                p, o, pid, k = lengths(
                    self.traffic, size, self.seed, self.max_context, users=(user, self.users)
                )
                p, o, k = fit_context(
                    p, o, k, self.max_context, self.overflow, self.traffic.where, None
                )
            have = Requests(np.full(size, np.nan), p, o, pid, k)
            self._cache[user] = have
        return have.take(slice(0, count))

    def think_times(self, user: int, count: int) -> np.ndarray:
        """Pause (seconds) before each of the user's first ``count`` requests."""
        self._check_user(user)
        if self.think_s == 0 or self.think_dist == "fixed":
            return np.full(count, float(self.think_s))
        return stream(self.seed, USER, user, THINK).standard_exponential(count) * self.think_s

    def _check_user(self, user: int) -> None:
        if not 0 <= user < self.users:
            raise IndexError(f"user {user} out of range 0..{self.users - 1}")


def closed_loop(
    traffic: Traffic,
    users: int,
    *,
    think_s: float = 0.0,
    think_dist: Literal["fixed", "exponential"] = "exponential",
    seed: int = 0,
    max_context: int | None = None,
    overflow: Overflow = "clip",
) -> UserStreams:
    """Per-user streams for ``users`` concurrent users (see :class:`UserStreams`)."""
    _check_seed(seed)
    check_context(max_context, overflow)
    loop = resolve_arrival(None, concurrency=users, think_s=think_s)
    assert isinstance(loop, ClosedLoop)
    if max_context is not None:
        # refuse (or warn about clipping) now, not in the middle of a run: check the whole trace,
        # or a generous first block of the first users' streams
        if isinstance(traffic, Trace):
            r = traffic.requests
            fit_context(
                r.prompt_tokens,
                r.output_tokens,
                r.prefix_tokens,
                max_context,
                overflow,
                traffic.file,
                traffic.lines,
            )
        else:
            probe = [
                lengths(traffic, 256, seed, max_context, users=(u, users))
                for u in range(min(users, 64))
            ]
            p, o, _, k = (np.concatenate(x) for x in zip(*probe, strict=True))
            fit_context(p, o, k, max_context, overflow, traffic.where, None)
    return UserStreams(traffic, users, loop.think_s, think_dist, seed, max_context, overflow)
