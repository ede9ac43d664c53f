"""The traffic file's schema: length distributions, arrival processes, prefix groups, SLOs.

These pydantic models are both the YAML schema of ``workloads/traffic/*.yaml`` and the objects
the sampler uses (:mod:`hwsim.serve.traffic` re-exports them; read its docstring first). All are
frozen. Inside the code times are seconds and lengths are whole tokens; the YAML edge accepts
``{value: 2 s, source: key}`` leaves, unwrapped by :mod:`hwsim.serve.traffic_files`.

Every distribution samples by inverse CDF from uniforms in [0, 1): the caller owns the random
stream, so the same uniforms give the same lengths whatever else changes (common random numbers).
"""

from __future__ import annotations

import math
from functools import cached_property
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator
from scipy import optimize, special

from hwsim.spec.errors import FieldError
from hwsim.spec.quantity import Strict
from hwsim.spec.units import Dim, UnitError, parse_quantity

__all__ = [
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
    "Stats",
    "SystemPrompt",
    "TrafficSpec",
]

MAX_TOKENS = 100_000_000  #: a single request longer than this is a unit slip, not traffic
MAX_QPS = 1e9  #: requests/s: past every serving cluster by orders of magnitude
MAX_USERS = 1_000_000  #: closed-loop users: one simpy process each


def _seconds(raw: Any) -> Any:
    """``"2 s"`` / ``"200 ms"`` → seconds; numbers pass through (Python callers give seconds)."""
    if isinstance(raw, str):
        try:
            return parse_quantity(raw, Dim.TIME)
        except UnitError as err:
            raise ValueError(str(err)) from None
    return raw


# ---- length distributions ------------------------------------------------------------------
def _mass(za: float, zb: float) -> float:
    """P(za < Z < zb) for a standard normal Z, accurate deep in either tail."""
    if za > 0:
        return float(special.ndtr(-za) - special.ndtr(-zb))
    return float(special.ndtr(zb) - special.ndtr(za))


def _quantile(za: float, zb: float, q: np.ndarray) -> np.ndarray:
    """z with P(za < Z < z) = q P(za < Z < zb): the inverse CDF of a truncated normal."""
    if za > 0:  # upper tail: survival functions keep the precision that 1 - tiny would lose
        sa, sb = special.ndtr(-za), special.ndtr(-zb)
        return -special.ndtri(sa - q * (sa - sb))
    fa, fb = special.ndtr(za), special.ndtr(zb)
    return special.ndtri(fa + q * (fb - fa))


class LogNormal(Strict):
    """Lognormal token counts, given by two of ``mu``/``sigma``/``median``/``mean`` and optionally
    truncated to ``[min, max]``. A stated ``mean`` or ``median`` is that of the distribution *as
    sampled* (after truncation), so it reproduces the published figure; ``mu``/``sigma`` are the
    untruncated log-space parameters. Samples are rounded to whole tokens."""

    mu: float | None = Field(None, ge=-50, le=50)
    sigma: float | None = Field(None, gt=0, le=5)
    median: float | None = Field(None, gt=0, le=MAX_TOKENS)
    mean: float | None = Field(None, gt=0, le=MAX_TOKENS)
    min: int = Field(1, ge=1, le=MAX_TOKENS)
    max: int | None = Field(None, ge=1, le=MAX_TOKENS)

    @model_validator(mode="after")
    def _check(self) -> LogNormal:
        given = {k for k in ("mu", "sigma", "median", "mean") if getattr(self, k) is not None}
        pairs = ({"mu", "sigma"}, {"median", "sigma"}, {"mean", "sigma"}, {"mean", "median"})
        if given not in pairs:
            raise ValueError(
                "give exactly two of mu/sigma/median/mean: mu+sigma, median+sigma, mean+sigma "
                f"or mean+median (got {', '.join(sorted(given)) or 'none'})"
            )
        if self.max is not None and self.max < self.min:
            raise FieldError(("max",), f"{self.max} is below min ({self.min})")
        for k in ("mean", "median"):
            v = getattr(self, k)
            if v is not None and not self._lo <= v <= self._hi:
                raise FieldError((k,), f"{v:g} lies outside [min, max] = [{self.min}, {self.max}]")
        if given == {"mean", "median"} and self.mean is not None and self.median is not None:
            if self.mean <= self.median:
                raise FieldError(
                    ("mean",),
                    f"a lognormal's mean exceeds its median; got mean {self.mean:g} <= "
                    f"median {self.median:g}",
                )
        try:
            _ = self.params  # solve now: an unreachable mean fails at load, naming the key
        except ValueError as err:
            raise FieldError(("mean" if self.mean is not None else "median",), str(err)) from None
        return self

    @property
    def _lo(self) -> float:
        return self.min - 0.5 if self.min > 1 else 0.5  # values that round into [min, max]

    @property
    def _hi(self) -> float:
        return math.inf if self.max is None else self.max + 0.5

    def _moments(self, mu: float, s: float) -> tuple[float, float]:
        """(mean, median) of the lognormal(mu, s) truncated to [_lo, _hi]."""
        za, zb = (math.log(self._lo) - mu) / s, (math.log(self._hi) - mu) / s
        z = _mass(za, zb)
        if not z > 0:
            return math.nan, math.nan
        mean = math.exp(mu + s * s / 2) * _mass(za - s, zb - s) / z
        return mean, math.exp(mu + s * float(_quantile(za, zb, np.array([0.5]))[0]))

    @cached_property
    def params(self) -> tuple[float, float]:
        """(mu, sigma) of the untruncated lognormal that reproduces the stated figures."""
        if self.mu is not None and self.sigma is not None:
            return self.mu, self.sigma
        if self.sigma is not None:
            s, target = self.sigma, (self.mean if self.mean is not None else self.median)
            assert target is not None
            idx = 0 if self.mean is not None else 1

            def f(mu: float) -> float:
                return math.log(self._moments(mu, s)[idx]) - math.log(target)

            a, b = math.log(target) - s * s - 10 * s, math.log(target) + 10 * s
            try:
                return optimize.brentq(f, a, b, xtol=1e-12), s
            except ValueError:
                raise ValueError(
                    f"no lognormal with sigma {s:g} has {'mean' if idx == 0 else 'median'} "
                    f"{target:g} within [{self.min}, {self.max}]"
                ) from None
        mean, median = self.mean, self.median
        assert mean is not None and median is not None
        s0 = math.sqrt(2 * math.log(mean / median))
        x0 = np.array([math.log(median), math.log(s0)])

        def g(x: np.ndarray) -> np.ndarray:
            m, med = self._moments(float(x[0]), math.exp(float(x[1])))
            return np.array([math.log(m / mean), math.log(med / median)])

        sol = optimize.root(g, x0, tol=1e-12)
        if not np.all(np.abs(g(sol.x)) <= 1e-8):  # judged by the residual, not sol.success
            raise ValueError(
                f"no lognormal within [{self.min}, {self.max}] has mean {self.mean:g} and "
                f"median {self.median:g}"
            )
        return float(sol.x[0]), math.exp(float(sol.x[1]))

    def sample(self, u: np.ndarray) -> np.ndarray:
        mu, s = self.params
        za, zb = (math.log(self._lo) - mu) / s, (math.log(self._hi) - mu) / s
        x = np.exp(mu + s * _quantile(za, zb, u))
        return np.clip(np.rint(x), self.min, self.max or MAX_TOKENS).astype(np.int64)

    def mean_value(self) -> float:
        return self._moments(*self.params)[0]

    def median_value(self) -> float:
        return self._moments(*self.params)[1]


class Histogram(Strict):
    """An empirical histogram: bin ``i`` holds the whole numbers ``edges[i] .. edges[i+1]-1``
    with probability ``weights[i] / sum(weights)``, uniform inside the bin."""

    edges: list[int] = Field(min_length=2, max_length=10_000)
    weights: list[float] = Field(min_length=1, max_length=10_000)

    @model_validator(mode="after")
    def _check(self) -> Histogram:
        e, w = self.edges, self.weights
        if len(w) != len(e) - 1:
            raise FieldError(
                ("weights",),
                f"{len(w)} weights for {len(e) - 1} bins ({len(e)} edges make {len(e) - 1} bins)",
            )
        if e[0] < 1 or e[-1] > MAX_TOKENS + 1:
            raise FieldError(
                ("edges",), f"must lie in [1, {MAX_TOKENS + 1}], got {e[0]} .. {e[-1]}"
            )
        bad = next((i for i in range(1, len(e)) if e[i] <= e[i - 1]), None)
        if bad is not None:
            raise FieldError(("edges",), f"must increase: edges[{bad}] = {e[bad]} <= {e[bad - 1]}")
        if any(not math.isfinite(x) or x < 0 for x in w) or sum(w) <= 0:
            raise FieldError(("weights",), "must be finite, non-negative and not all zero")
        return self

    @cached_property
    def _cdf(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        w = np.asarray(self.weights, dtype=float)
        c = np.concatenate([[0.0], np.cumsum(w) / w.sum()])
        c[-1] = 1.0
        return np.asarray(self.edges, dtype=float), c, w / w.sum()

    def sample(self, u: np.ndarray) -> np.ndarray:
        e, c, p = self._cdf
        i = np.clip(np.searchsorted(c, u, side="right") - 1, 0, len(p) - 1)
        frac = np.clip((u - c[i]) / np.where(p[i] > 0, p[i], 1.0), 0.0, 1.0)
        x = np.floor(e[i] + frac * (e[i + 1] - e[i]))
        return np.minimum(x, e[i + 1] - 1).astype(np.int64)

    def mean_value(self) -> float:
        e, _, p = self._cdf
        return float(np.sum(p * (e[:-1] + e[1:] - 1) / 2))

    def median_value(self) -> float:
        return float(self.sample(np.array([0.5]))[0])


class Stats(Strict):
    """Published figures a distribution must reproduce (checked by the test suite)."""

    mean: float | None = Field(None, gt=0)
    median: float | None = Field(None, gt=0)


class Lengths(Strict):
    """Token counts: exactly one of ``fixed``, ``lognormal``, ``histogram``; optional ``stats``."""

    fixed: int | None = Field(None, ge=1, le=MAX_TOKENS)
    lognormal: LogNormal | None = None
    histogram: Histogram | None = None
    stats: Stats | None = None

    @model_validator(mode="after")
    def _one(self) -> Lengths:
        n = sum(x is not None for x in (self.fixed, self.lognormal, self.histogram))
        if n != 1:
            raise ValueError("give exactly one of fixed, lognormal, histogram")
        return self

    def sample(self, u: np.ndarray) -> np.ndarray:
        """Token counts (int64, >= 1) for uniforms ``u`` in [0, 1), by inverse CDF."""
        if self.fixed is not None:
            return np.full(len(u), self.fixed, dtype=np.int64)
        dist = self.lognormal or self.histogram
        assert dist is not None
        return dist.sample(np.asarray(u, dtype=float))

    def mean(self) -> float:
        """Mean of the distribution as sampled (rounding aside)."""
        if self.fixed is not None:
            return float(self.fixed)
        return (self.lognormal or self.histogram).mean_value()  # type: ignore[union-attr]

    def median(self) -> float:
        if self.fixed is not None:
            return float(self.fixed)
        return (self.lognormal or self.histogram).median_value()  # type: ignore[union-attr]

    def upper(self) -> int | None:
        """Largest value it can produce (None: unbounded)."""
        if self.fixed is not None:
            return self.fixed
        if self.histogram is not None:
            return self.histogram.edges[-1] - 1
        return self.lognormal.max if self.lognormal is not None else None


# ---- arrival processes -------------------------------------------------------------------
class Poisson(Strict):
    """Open loop, exponential inter-arrival gaps at ``qps`` requests per second."""

    process: Literal["poisson"] = "poisson"
    qps: float = Field(gt=0, le=MAX_QPS, allow_inf_nan=False)


class Gamma(Strict):
    """Open loop, bursty: gamma inter-arrival gaps with mean ``1/qps`` and coefficient of
    variation ``cv`` (cv = 1 is Poisson, cv > 1 burstier)."""

    process: Literal["gamma"] = "gamma"
    qps: float = Field(gt=0, le=MAX_QPS, allow_inf_nan=False)
    cv: float = Field(gt=0, le=100, allow_inf_nan=False)


class ClosedLoop(Strict):
    """``users`` concurrent users; each sends its next request when its last one finishes, after
    a think time of ``think`` seconds (``fixed``, or ``exponential`` with that mean)."""

    process: Literal["closed"] = "closed"
    users: int = Field(ge=1, le=MAX_USERS)
    think: float = Field(0.0, ge=0, le=1e6, allow_inf_nan=False)
    think_dist: Literal["fixed", "exponential"] = "exponential"

    _parse_think = field_validator("think", mode="before")(_seconds)

    @property
    def think_s(self) -> float:
        return self.think


class Offline(Strict):
    """Every request arrives at t = 0 (MLPerf Offline)."""

    process: Literal["offline"] = "offline"


Arrival = Annotated[Poisson | Gamma | ClosedLoop | Offline, Field(discriminator="process")]


# ---- shared prefixes ---------------------------------------------------------------------
class SystemPrompt(Strict):
    """A ``fraction`` of requests start with one of ``groups`` shared system prompts (chosen
    uniformly), each ``tokens`` long (drawn once per group). The prompt is prefix + own part."""

    kind: Literal["system"] = "system"
    fraction: float = Field(ge=0, le=1)
    groups: int = Field(1, ge=1, le=1_000_000)
    tokens: Lengths


class Conversation(Strict):
    """A ``fraction`` of requests are turns of multi-turn conversations of ``turns`` turns, with
    ``active`` conversations open at once (a turn joins one of them at random). Turn k's prompt is
    the whole history (prompts and answers of turns 1..k-1, its shared prefix) plus its own part;
    a conversation ends early when the next turn would not fit the model's context."""

    kind: Literal["conversation"] = "conversation"
    fraction: float = Field(ge=0, le=1)
    turns: Lengths
    active: int = Field(16, ge=1, le=1_000_000)


Prefix = Annotated[SystemPrompt | Conversation, Field(discriminator="kind")]


class SLO(Strict):
    """Default latency targets at ``percentile``: time to first token and time per output token,
    in seconds (``ttft_s``, ``tpot_s``; YAML ``{value: 2 s, source: ...}``)."""

    ttft: float | None = Field(None, gt=0, le=1e6, allow_inf_nan=False)
    tpot: float | None = Field(None, gt=0, le=1e6, allow_inf_nan=False)
    percentile: float = Field(99.0, gt=0, lt=100)

    _parse = field_validator("ttft", "tpot", mode="before")(_seconds)

    @property
    def ttft_s(self) -> float | None:
        return self.ttft

    @property
    def tpot_s(self) -> float | None:
        return self.tpot


class TrafficSpec(Strict):
    """A traffic profile: lengths, prefix groups, a default arrival process and SLOs.

    ``citations`` maps each number's key path to its source key, or to ``estimate: <why>``."""

    name: str = Field(min_length=1, max_length=200)
    description: str | None = None
    sources: dict[str, str] = Field(default_factory=dict)
    citations: dict[str, str] = Field(default_factory=dict)
    file: str | None = Field(None, description="where it was loaded from (set by the loader)")
    arrival: Arrival | None = None
    prompt_tokens: Lengths
    output_tokens: Lengths
    prefixes: list[Prefix] = Field(default_factory=list, max_length=100)
    slo: SLO | None = None

    @model_validator(mode="after")
    def _check(self) -> TrafficSpec:
        total = sum(p.fraction for p in self.prefixes)
        if total > 1 + 1e-9:
            raise FieldError(("prefixes",), f"the fractions add up to {total:g}, more than 1")
        if sum(isinstance(p, Conversation) for p in self.prefixes) > 1:
            raise FieldError(("prefixes",), "at most one conversation entry")
        return self

    @property
    def where(self) -> str:
        """How messages name this profile: its file, else its name."""
        return self.file or self.name
