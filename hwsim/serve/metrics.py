"""From a serving run's ledger to its figures: latency percentiles, throughput, goodput, and how
busy each replica and its KV cache were over time.

Per request: **TTFT** = first token − arrival; **TPOT** = (finish − first token) / (output − 1),
the mean gap between output tokens after the first (requests with one output token have none);
**end-to-end** = finish − arrival; **queueing** = admission (first prompt chunk scheduled) −
arrival.

**Steady state.** While batches fill at the start and while the queue drains after the last
arrival, a server is not in the regime a load is meant to measure. Open-loop runs therefore keep
the middle of the run: latency statistics over the requests that arrive after the first 10%
and before the last 10% of arrivals (by arrival order), throughput as the output tokens
produced between those two arrival times over that interval, goodput as the steady requests
that met every SLO over it. (MLPerf's LoadGen likewise runs a fixed minimum duration and query
count so that warm-up and the tail do not dominate.) Closed loops keep the middle 80% of the run
time. Offline runs (everything at t = 0) report what MLPerf Offline reports: all output tokens
over the time until the last request finished, and latencies over every request.

Percentiles are numpy's linear interpolation between order statistics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hwsim.serve.ledger import Ledger
from hwsim.spec.errors import SpecError

#: Share of requests (by arrival order) left out at each end of an open-loop run.
WARMUP_FRACTION = 0.10
#: Points kept per time series in the result (iterations are binned to this many).
SERIES_POINTS = 400


@dataclass(frozen=True)
class Stats:
    """Percentiles and mean of one latency (seconds); NaN where no request has it."""

    p50: float
    p90: float
    p99: float
    mean: float
    n: int

    @staticmethod
    def of(values: np.ndarray) -> Stats:
        v = values[np.isfinite(values)]
        if not len(v):
            return Stats(math.nan, math.nan, math.nan, math.nan, 0)
        p50, p90, p99 = np.percentile(v, [50, 90, 99])
        return Stats(float(p50), float(p90), float(p99), float(v.mean()), len(v))

    def to_dict(self) -> dict[str, float]:
        return {"p50": self.p50, "p90": self.p90, "p99": self.p99, "mean": self.mean}

    def get(self, name: str) -> float:
        return float(getattr(self, name))


@dataclass(frozen=True)
class SLO:
    """Latency limits: ``{metric: (percentile name, seconds)}``, e.g. ``ttft: (p99, 2.0)``."""

    limits: tuple[tuple[str, str, float], ...] = ()

    def met_by(self, stats: dict[str, Stats]) -> dict[str, bool]:
        return {f"{m}_{p}": stats[m].get(p) <= v for m, p, v in self.limits}

    def per_request(self, lat: dict[str, np.ndarray]) -> np.ndarray:
        """Which requests met every limit on their own (for goodput)."""
        ok = np.ones(len(next(iter(lat.values()))), dtype=bool)
        for m, _, v in self.limits:
            x = lat[m]
            ok &= ~(x > v)  # NaN (no TPOT for one-token outputs) meets the limit
        return ok

    def __str__(self) -> str:
        return ",".join(f"{m}_{p}={v:g}s" for m, p, v in self.limits)


@dataclass(frozen=True)
class Window:
    """The steady-state interval and the requests in it."""

    start_s: float
    end_s: float
    requests: np.ndarray  #: boolean mask over requests

    @property
    def seconds(self) -> float:
        return max(self.end_s - self.start_s, 0.0)


@dataclass(frozen=True)
class RunMetrics:
    """Everything the run measured (SI units)."""

    arrived: int
    completed: int
    rejected: int
    rejected_reasons: dict[str, int]
    preempted: int
    ttft_s: Stats
    tpot_s: Stats
    e2e_s: Stats
    queue_s: Stats
    output_tokens_per_s: float
    total_tokens_per_s: float
    requests_per_s: float
    goodput_requests_per_s: float
    slo_met: dict[str, bool]
    window: tuple[float, float]
    steady_requests: int
    makespan_s: float
    mean_in_system: float  #: time-average of requests in the system over the window
    series: dict[str, list[float]] = field(repr=False)
    #: why a watched run stopped early ('' if it ran to the end): its figures cover only what ran
    stopped: str = ""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "arrived": self.arrived,
            "completed": self.completed,
            "rejected": self.rejected,
            "rejected_reasons": dict(self.rejected_reasons),
            "preempted": self.preempted,
            "output_tokens_per_s": self.output_tokens_per_s,
            "total_tokens_per_s": self.total_tokens_per_s,
            "requests_per_s": self.requests_per_s,
            "goodput_requests_per_s": self.goodput_requests_per_s,
            "slo_met": dict(self.slo_met),
            "steady_window_s": list(self.window),
            "steady_requests": self.steady_requests,
            "makespan_s": self.makespan_s,
            "mean_in_system": self.mean_in_system,
            "stopped_early": self.stopped or None,
        }
        for name in ("ttft_s", "tpot_s", "e2e_s", "queue_s"):
            out[name] = getattr(self, name).to_dict()
        return out


def latencies(cols: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per-request TTFT, TPOT, end-to-end and queueing times (NaN where undefined)."""
    arr, first, fin = cols["arrival_s"], cols["first_s"], cols["finish_s"]
    out_tok = cols["output_tokens"].astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        tpot = np.where(out_tok > 1, (fin - first) / (out_tok - 1), np.nan)
    return {
        "ttft": first - arr,
        "tpot": tpot,
        "e2e": fin - arr,
        "queue": cols["admit_s"] - arr,
    }


def steady_window(cols: dict[str, np.ndarray], mode: str, makespan: float) -> Window:
    """The interval and requests the steady-state figures use (see the module docstring)."""
    arr = cols["arrival_s"]
    n = len(arr)
    if mode == "offline" or n == 0:
        return Window(0.0, makespan, np.ones(n, dtype=bool))
    if mode == "closed":
        lo, hi = WARMUP_FRACTION * makespan, (1 - WARMUP_FRACTION) * makespan
        return Window(lo, hi, (arr >= lo) & (arr <= hi))
    order = np.argsort(arr, kind="stable")
    a, b = int(WARMUP_FRACTION * n), max(int((1 - WARMUP_FRACTION) * n) - 1, 0)
    lo, hi = float(arr[order[a]]), float(arr[order[b]])
    mask = np.zeros(n, dtype=bool)
    mask[order[a : b + 1]] = True
    return Window(lo, hi, mask)


def tokens_in(iters: np.ndarray, lo: float, hi: float, col: int) -> float:
    """Tokens of column ``col`` produced by iterations ending in ``[lo, hi]``."""
    if not len(iters):
        return 0.0
    end = iters[:, 1]
    keep = (end >= lo) & (end <= hi)
    return float(iters[keep, col].sum())


def measure(ledger: Ledger, mode: str, slo: SLO) -> RunMetrics:
    """The run's metrics (see the module docstring)."""
    cols = ledger.arrays()
    lat = latencies(cols)
    done = np.isfinite(cols["finish_s"])
    makespan = float(np.nanmax(cols["finish_s"])) if done.any() else 0.0
    win = steady_window(cols, mode, makespan)
    mask = win.requests & done
    stats = {k: Stats.of(v[mask]) for k, v in lat.items()}
    it = _iteration_array(ledger)
    span = win.seconds
    if mode == "offline":
        out_tok = float(cols["output_tokens"][done].sum())
        prompt_tok = float(cols["prompt_tokens"][done].sum())
        reqs = float(done.sum())
    else:
        out_tok = tokens_in(it, win.start_s, win.end_s, 4)
        prompt_tok = tokens_in(it, win.start_s, win.end_s, 3)
        reqs = float(((cols["finish_s"] >= win.start_s) & (cols["finish_s"] <= win.end_s)).sum())
    good = slo.per_request({k: v[mask] for k, v in lat.items()}).sum() if mask.any() else 0
    reasons: dict[str, int] = {}
    for why in ledger.rejected.values():
        reasons[why] = reasons.get(why, 0) + 1
    rate = (lambda x: x / span) if span > 0 else (lambda x: 0.0)
    return RunMetrics(
        arrived=len(cols["arrival_s"]),
        completed=int(done.sum()),
        rejected=len(ledger.rejected),
        rejected_reasons=reasons,
        preempted=int(cols["preemptions"].sum()),
        ttft_s=stats["ttft"],
        tpot_s=stats["tpot"],
        e2e_s=stats["e2e"],
        queue_s=stats["queue"],
        output_tokens_per_s=rate(out_tok),
        total_tokens_per_s=rate(out_tok + prompt_tok),
        requests_per_s=rate(reqs),
        goodput_requests_per_s=rate(float(good)),
        slo_met=_met(slo, stats, ledger.lost),
        stopped=ledger.lost,
        window=(win.start_s, win.end_s),
        steady_requests=int(mask.sum()),
        makespan_s=makespan,
        mean_in_system=in_system(cols, win.start_s, win.end_s),
        series=series(it, ledger),
    )


def _met(slo: SLO, stats: dict[str, Stats], lost: str) -> dict[str, bool]:
    """Each limit met or not; the one a stopped run lost is missed whatever its partial
    figures say."""
    met = slo.met_by(stats)
    key = lost.split(" ", 1)[0]
    if key in met:
        met[key] = False
    return met


def in_system(cols: dict[str, np.ndarray], lo: float, hi: float) -> float:
    """Time-average number of requests arrived and not finished over ``[lo, hi]``."""
    if hi <= lo:
        return math.nan
    a = np.clip(cols["arrival_s"], lo, hi)
    f = np.clip(np.where(np.isfinite(cols["finish_s"]), cols["finish_s"], hi), lo, hi)
    return float(np.maximum(f - a, 0.0).sum() / (hi - lo))


def _iteration_array(ledger: Ledger) -> np.ndarray:
    """Iterations as rows (start, end, batch, prompt tokens, output tokens, KV blocks)."""
    if not ledger.iterations:
        return np.zeros((0, 6))
    rows = [(s, e, b, p, o, kv) for _, s, e, b, p, kv, _, o, _ in ledger.iterations]
    return np.asarray(rows, dtype=float)


def series(it: np.ndarray, ledger: Ledger) -> dict[str, list[float]]:
    """Batch size, KV blocks in use and output tokens/s over time, binned to at most
    :data:`SERIES_POINTS` points (means per bin; tokens per bin over the bin width)."""
    if not len(it):
        return {"t_s": [], "batch": [], "kv_blocks": [], "output_tokens_per_s": []}
    t_end = float(it[:, 1].max())
    edges = np.linspace(0.0, t_end, SERIES_POINTS + 1)
    idx = np.clip(np.searchsorted(edges, it[:, 1], side="right") - 1, 0, SERIES_POINTS - 1)
    cnt = np.bincount(idx, minlength=SERIES_POINTS)
    keep = cnt > 0

    def mean(col: int) -> np.ndarray:
        return np.bincount(idx, weights=it[:, col], minlength=SERIES_POINTS)[keep] / cnt[keep]

    width = t_end / SERIES_POINTS if t_end > 0 else 1.0
    tok = np.bincount(idx, weights=it[:, 4], minlength=SERIES_POINTS)[keep] / width
    mid = ((edges[:-1] + edges[1:]) / 2)[keep]
    return {
        "t_s": mid.tolist(),
        "batch": mean(2).tolist(),
        "kv_blocks": mean(5).tolist(),
        "output_tokens_per_s": tok.tolist(),
    }


#: Latencies an SLO may limit, and the statistics it may limit them at.
SLO_METRICS = ("ttft", "tpot", "e2e", "queue")
SLO_STATS = ("p50", "p90", "p99", "mean")


def parse_slo(text: str) -> SLO:
    """``ttft_p99=2s,tpot_p99=200ms`` → :class:`SLO`; a SpecError naming ``--slo`` otherwise."""
    from hwsim.spec.units import Dim, UnitError, parse_quantity

    limits: list[tuple[str, str, float]] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, eq, value = part.partition("=")
        metric, _, stat = name.strip().rpartition("_")
        if not eq or metric not in SLO_METRICS or stat not in SLO_STATS:
            raise SpecError(
                f"cannot read {part!r}: expected METRIC_STAT=TIME with METRIC one of "
                f"{', '.join(SLO_METRICS)} and STAT one of {', '.join(SLO_STATS)}, like "
                "ttft_p99=2s,tpot_p99=200ms",
                key="--slo",
            )
        try:
            seconds = parse_quantity(value.strip(), Dim.TIME)
        except (SpecError, UnitError) as err:
            raise SpecError(f"{part!r}: {err}", key="--slo") from None
        if not seconds > 0:
            raise SpecError(f"{part!r}: a limit must be a time > 0", key="--slo")
        limits.append((metric, stat, seconds))
    if not limits:
        raise SpecError("expected at least one limit, like ttft_p99=2s", key="--slo")
    return SLO(tuple(limits))
