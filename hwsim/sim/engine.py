"""The discrete-event engine: simpy plus fluid, max-min fair shared bandwidth.

The engine knows nothing about attention, GEMMs or MoE: it moves bytes over links and spends
time on compute. Hardware actors (SMs, copy engines, NICs) are plain simpy generator processes
written by the mappers; they ``yield engine.transfer(...)`` and ``yield engine.compute(...)``.

Shared bandwidth is a *fluid*: every active transfer (a flow) crosses one or more links, and the
rates of all flows are the max-min fair allocation over link capacities (progressive filling,
solved in :mod:`hwsim.sim.fairshare`).
Rates are recomputed only when a flow starts or ends, so the cost of a simulation grows with the
number of flows, never with the number of bytes. A transfer costs ``latency + bytes / share``.

Two refinements keep large runs cheap and still exact:

* **Weighted flows.** A transfer may put only a fraction ``w_l`` of its bytes on link ``l`` (a CTA
  whose K/V stream is mostly served by L2 puts little on HBM). Fairness is on *progress*: every
  flow advances its own ``nbytes`` at its rate ``r`` and loads link ``l`` with ``w_l · r``.
* **Flow classes.** Flows with the same set of links and the same own-rate cap always freeze at
  the same level of progressive filling, so they share one rate. The engine therefore solves the
  max-min problem over *classes* (a handful), and tracks progress per class as a virtual service
  ``V`` (processor-sharing virtual time): a flow finishes when ``V`` reaches its start level plus
  its size. An update costs O(classes + log flows), not O(flows).
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import simpy

# the solvers live in their own module; re-exported here, where callers have always found them
from hwsim.sim.fairshare import (
    _EPS,
    VECTORIZE_ABOVE,
    class_rates,
    class_rates_vectorized,
    incidence_index,
    max_min_incidence,
    max_min_rates,
)
from hwsim.spec.limits import LimitExceeded, event_limit
from hwsim.spec.units import Dim, format_quantity

__all__ = [
    "VECTORIZE_ABOVE",
    "CountingEnvironment",
    "Engine",
    "Flow",
    "Link",
    "TraceEvent",
    "class_rates",
    "class_rates_vectorized",
    "incidence_index",
    "max_min_incidence",
    "max_min_rates",
]


class CountingEnvironment(simpy.Environment):
    """A simpy environment that counts processed events (reported as ``events``) and stops a
    run past the event limit in force when it was made (``--max-events``): the safety net
    under every simulator's own up-front estimate, so no run can hang a worker."""

    def __init__(self) -> None:
        super().__init__()
        self.events_processed = 0
        self.max_events = event_limit()

    def step(self) -> None:
        self.events_processed += 1
        if self.events_processed > self.max_events:
            raise LimitExceeded(
                f"stopped after {self.max_events:,} events at simulated time "
                f"{format_quantity(self.now, Dim.TIME)} (--max-events raises the limit); "
                "simulate a smaller problem"
            )
        super().step()


@dataclass
class Link:
    """A shared-bandwidth resource: an HBM stack, the L2, an NVLink port, a NIC, a mesh link."""

    name: str
    bandwidth_Bps: float
    latency_s: float = 0.0
    kind: str = ""
    index: int = -1
    bytes_moved: float = 0.0  #: integral of carried rate over time (bytes)
    peak_rate_Bps: float = 0.0  #: the largest sum of flow rates ever allocated (≤ bandwidth)
    rate_Bps: float = 0.0  #: the rate carried right now (bytes/s)

    def utilization(self, elapsed_s: float) -> float:
        """Average fraction of bandwidth used over ``elapsed_s`` seconds."""
        if elapsed_s <= 0:
            return 0.0
        return self.bytes_moved / (self.bandwidth_Bps * elapsed_s)


class _FlowClass:
    """Flows with one link set and one own-rate cap: they always share one rate."""

    __slots__ = ("cap_Bps", "heap", "links", "n", "rate_Bps", "virtual_bytes", "wsum")

    def __init__(self, links: tuple[int, ...], cap_Bps: float) -> None:
        self.links = links
        self.cap_Bps = cap_Bps
        self.n = 0  #: active flows
        self.wsum = [0.0] * len(links)  #: Σ weights of the active flows, per link
        self.virtual_bytes = 0.0  #: progress (bytes) of a flow active since the class began
        self.rate_Bps = 0.0
        #: (finish level, sequence, flow) - or a milestone event of a flow, which fires when
        #: the class reaches its level but moves no bytes of its own
        self.heap: list[tuple[float, int, Flow | simpy.Event]] = []


@dataclass(slots=True)
class Flow:
    """An active transfer: ``size_bytes`` of progress, loading link ``links[i]`` with
    ``weights[i]`` bytes per byte of progress."""

    links: tuple[int, ...]
    weights: tuple[float, ...]
    size_bytes: float
    done: simpy.Event
    label: str = ""
    start_s: float = 0.0
    finish_level: float = 0.0  #: the class's virtual bytes at which this flow is done
    milestone_bytes: float = -1.0  #: fire ``milestone`` once this much has arrived (if ≥ 0)
    milestone: simpy.Event | None = None
    count: int = 1  #: identical flows this one stands for (a cohort of lockstep CTAs)
    cap_Bps: float = np.inf
    then: Flow | None = None  #: started the instant this one finishes (no latency, one solve)


@dataclass
class TraceEvent:
    """One span for the Chrome/Perfetto trace: a track (SM 3, HBM, NIC 0) and a time interval."""

    track: str
    name: str
    start_s: float
    end_s: float
    args: dict[str, float] = field(default_factory=dict)


class Engine:
    """simpy environment with fluid links. One engine per simulated run (deterministic)."""

    def __init__(self, trace: bool = False, log_rates: bool | None = None) -> None:
        """``trace`` records one span per flow and link; ``log_rates`` (default: ``trace``)
        records the carried rate of every link after each update (traffic over time)."""
        self.env = CountingEnvironment()
        self.links: list[Link] = []
        self._classes: dict[tuple[tuple[int, ...], float], _FlowClass] = {}
        self._active: list[_FlowClass] = []
        self._seq = itertools.count()
        self._last_update_s = 0.0
        self._wake_ev: simpy.Event | None = None  #: the one live wake-up timeout
        self._wake_at = np.inf
        self.tracing = trace
        self.logging_rates = trace if log_rates is None else log_rates
        self.trace: list[TraceEvent] = []
        #: (time_s, per-link carried rate in B/s) after every rate update, when tracing
        self.rate_log: list[tuple[float, tuple[float, ...]]] = []
        self.rate_recomputations = 0
        self.flows_started = 0
        self._last_milestone: simpy.Event = self.env.event()

    # ---- construction ----------------------------------------------------------------------
    def link(self, name: str, bandwidth_Bps: float, latency_s: float = 0.0, kind: str = "") -> Link:
        """Add a shared-bandwidth link (bytes/s, seconds)."""
        if not bandwidth_Bps > 0:
            raise ValueError(f"link {name!r}: bandwidth must be > 0 B/s, got {bandwidth_Bps}")
        lk = Link(name, float(bandwidth_Bps), float(latency_s), kind, index=len(self.links))
        self.links.append(lk)
        return lk

    # ---- actions for processes -------------------------------------------------------------
    def compute(self, flops: float, rate_flops: float) -> simpy.Event:
        """Spend ``flops / rate_flops`` seconds (the caller folds efficiency into the rate)."""
        if not rate_flops > 0:
            raise ValueError(f"compute rate must be > 0 FLOP/s, got {rate_flops}")
        return self.env.timeout(max(flops, 0.0) / rate_flops)

    def delay(self, seconds: float) -> simpy.Event:
        """A fixed cost (launch overhead, pipeline fill, a per-message overhead)."""
        return self.env.timeout(max(seconds, 0.0))

    def transfer(
        self,
        path: Link | Iterable[Link],
        nbytes: float,
        *,
        latency_s: float | None = None,
        max_rate_Bps: float = np.inf,
        label: str = "",
        weights: Sequence[float] | None = None,
        _milestone: float = -1.0,
    ) -> simpy.Event:
        """Move ``nbytes`` over ``path``: wait the latency (sum of the links' latencies unless
        given), then flow at the max-min fair share. Returns an event that fires on arrival.

        ``weights[i]`` (default 1) is the fraction of the bytes that crosses ``path[i]``; a link
        with weight 0 is not used. ``max_rate_Bps`` caps this flow alone (a copy engine's rate).
        """
        links = [path] if isinstance(path, Link) else list(path)
        if weights is None:
            ws = [1.0] * len(links)
        else:
            ws = [float(w) for w in weights]
            if len(ws) != len(links) or min(ws, default=0.0) < 0:
                raise ValueError(f"transfer: need one weight ≥ 0 per link, got {ws} for {links}")
        lat = sum(lk.latency_s for lk in links) if latency_s is None else latency_s
        # merge repeated links, drop unused ones; sort so the class key is canonical
        merged: dict[int, float] = {}
        for lk, w in zip(links, ws, strict=True):
            if w > 0:
                merged[lk.index] = merged.get(lk.index, 0.0) + w
        idx = tuple(sorted(merged))
        return self.send(
            idx,
            tuple(merged[i] for i in idx),
            float(nbytes),
            lat,
            float(max_rate_Bps),
            _milestone,
            label,
        )[1]

    def send(
        self,
        links: tuple[int, ...],
        weights: tuple[float, ...],
        nbytes: float,
        latency_s: float = 0.0,
        max_rate_Bps: float = np.inf,
        first_bytes: float = -1.0,
        label: str = "",
        count: int = 1,
        done: simpy.Event | None = None,
        then: tuple[tuple[int, ...], tuple[float, ...], float, simpy.Event] | None = None,
    ) -> tuple[simpy.Event | None, simpy.Event]:
        """The fast path under :meth:`transfer` and :meth:`stream` for mappers that issue many
        flows: ``links`` are sorted link indices, ``weights`` (> 0) align with them, nothing
        is checked. Returns ``(milestone or None, done)``; the milestone (``first_bytes ≥ 0``)
        fires once that many bytes have arrived. ``count`` makes the flow stand for that many
        identical flows (each gets the fair share of one; links carry all of them). ``done``
        lets the caller supply the completion event. ``then = (links, weights, nbytes, done)``
        chains a second flow (same cap and count) that starts the instant this one finishes:
        a pipeline's first tile, then its stream; both share one rate solve at the hand-over."""
        done = self.env.event() if done is None else done
        flow = Flow(links, weights, nbytes, done, label)
        flow.count = count
        if then is not None:
            nxt = Flow(then[0], then[1], then[2], then[3], label)
            nxt.count = count
            nxt.cap_Bps = max_rate_Bps
            flow.then = nxt
        first = None
        if first_bytes >= 0:
            flow.milestone_bytes = min(first_bytes, max(nbytes, 0.0))
            flow.milestone = first = self._last_milestone = self.env.event()
        if latency_s > 0:
            self.env.timeout(latency_s).callbacks.append(lambda _: self._start(flow, max_rate_Bps))
        else:
            self._start(flow, max_rate_Bps)
        return first, done

    def stream(
        self,
        path: Link | Iterable[Link],
        nbytes: float,
        first_bytes: float,
        *,
        latency_s: float | None = None,
        max_rate_Bps: float = np.inf,
        label: str = "",
        weights: Sequence[float] | None = None,
    ) -> tuple[simpy.Event, simpy.Event]:
        """Like :meth:`transfer`, plus a milestone: returns ``(first, done)`` where ``first``
        fires once the first ``first_bytes`` have arrived (a pipeline's first tile) and ``done``
        when all of them have. Costs no extra rate solve."""
        done = self.transfer(
            path,
            nbytes,
            latency_s=latency_s,
            max_rate_Bps=max_rate_Bps,
            label=label,
            weights=weights,
            _milestone=min(max(first_bytes, 0.0), max(nbytes, 0.0)),
        )
        return self._last_milestone, done

    def _start(self, flow: Flow, cap: float) -> None:
        """A flow's first byte leaves: join its class and ask for a rate update."""
        if flow.size_bytes <= 0:
            if flow.milestone is not None:
                flow.milestone.succeed()
            flow.done.succeed()
            if flow.then is not None:
                self._start(flow.then, flow.then.cap_Bps)
            return
        self._advance()
        self._join(flow, cap)
        self._solve()

    def _join(self, flow: Flow, cap: float) -> None:
        """Add a flow to its class (no rate solve)."""
        flow.start_s = self.env.now
        key = (flow.links, cap)
        cls = self._classes.get(key)
        if cls is None:
            cls = self._classes[key] = _FlowClass(flow.links, cap)
        if cls.n == 0:
            self._active.append(cls)
        flow.finish_level = cls.virtual_bytes + flow.size_bytes
        heapq.heappush(cls.heap, (flow.finish_level, next(self._seq), flow))
        if flow.milestone is not None:
            level = cls.virtual_bytes + flow.milestone_bytes
            heapq.heappush(cls.heap, (level, next(self._seq), flow.milestone))
        cls.n += flow.count
        wsum = cls.wsum
        for i, w in enumerate(flow.weights):
            wsum[i] += w * flow.count
        self.flows_started += 1

    def run(self, until: float | simpy.Event | None = None) -> float:
        """Run to completion (or ``until``); returns the simulated time in seconds."""
        self.env.run(until=until)
        self._advance()  # a run stopped mid-flow still accounts the bytes moved so far
        return float(self.env.now)

    @property
    def events(self) -> int:
        return self.env.events_processed

    @property
    def active_flows(self) -> int:
        return sum(c.n for c in self._active)

    # ---- the fluid scheduler ---------------------------------------------------------------
    def _advance(self) -> None:
        """Integrate every active class's rate from the last update to now."""
        dt = self.env.now - self._last_update_s
        self._last_update_s = self.env.now
        if dt <= 0:
            return
        for cls in self._active:
            dv = cls.rate_Bps * dt
            if dv <= 0:
                continue
            cls.virtual_bytes += dv
            for li, w in zip(cls.links, cls.wsum, strict=True):
                self.links[li].bytes_moved += w * dv

    def _finish_due(self) -> bool:
        """Complete every flow whose class progress reached its finish level - or would reach it
        in less time than the clock can resolve (else ``now + dt == now`` would loop forever).
        Returns whether a flow (not just a milestone) left, i.e. whether rates must change."""
        tol_s = 4 * np.spacing(self.env.now) + 1e-18
        left = False
        chained: list[Flow] = []
        for cls in self._active:
            heap = cls.heap
            slack = _EPS + cls.rate_Bps * tol_s
            while heap and (
                heap[0][0] - cls.virtual_bytes <= _EPS * max(heap[0][0], 1.0) + slack
                or cls.rate_Bps == np.inf
            ):
                _, _, f = heapq.heappop(heap)
                if not isinstance(f, Flow):
                    f.succeed()  # a milestone: no bytes of its own
                    continue
                left = True
                # account the rounding residue (either sign) so bytes are conserved exactly
                residue = f.finish_level - cls.virtual_bytes
                cls.n -= f.count
                for i, (li, w) in enumerate(zip(f.links, f.weights, strict=True)):
                    self.links[li].bytes_moved += w * f.count * residue
                    cls.wsum[i] -= w * f.count
                if cls.n == 0:
                    # no drift across idle periods, and small levels keep full precision
                    cls.wsum = [0.0] * len(cls.links)
                    if not heap:
                        cls.virtual_bytes = 0.0
                if self.tracing:
                    for li, w in zip(f.links, f.weights, strict=True):
                        self.trace.append(
                            TraceEvent(
                                self.links[li].name,
                                f.label or "transfer",
                                f.start_s,
                                self.env.now,
                                {"bytes": w * f.size_bytes * f.count},
                            )
                        )
                f.done.succeed()
                if f.then is not None:
                    chained.append(f.then)
        if left:
            self._active = [c for c in self._active if c.n > 0]
        for nxt in chained:
            if nxt.size_bytes <= 0:
                nxt.done.succeed()
            else:
                self._join(nxt, nxt.cap_Bps)
        return left

    def _solve(self) -> None:
        """Recompute the fair rates of all classes (after a flow joined or left)."""
        links = self.links
        for lk in links:
            lk.rate_Bps = 0.0
        if self._active:
            self.rate_recomputations += 1
            if len(self._active) == 1:  # the common case: one class, closed form
                c = self._active[0]
                r = c.cap_Bps
                for li, w in zip(c.links, c.wsum, strict=True):
                    if w > 0:
                        r = min(r, links[li].bandwidth_Bps / w)
                rates = [r]
            else:
                rates = class_rates(
                    [(c.links, c.wsum, c.cap_Bps) for c in self._active],
                    [lk.bandwidth_Bps for lk in links],
                )
            for cls, r in zip(self._active, rates, strict=True):
                cls.rate_Bps = r
                for li, w in zip(cls.links, cls.wsum, strict=True):
                    links[li].rate_Bps += w * r
            for lk in links:
                if lk.rate_Bps > lk.peak_rate_Bps:
                    lk.peak_rate_Bps = lk.rate_Bps
        if self.logging_rates:
            self.rate_log.append((self.env.now, tuple(lk.rate_Bps for lk in links)))
        self._schedule_wake()

    def _schedule_wake(self) -> None:
        """Make sure a wake-up fires at the next completion (flow or milestone). A pending
        wake-up that fires no later is kept: it will simply look again (no stale events)."""
        dt = np.inf
        for cls in self._active:
            r = cls.rate_Bps
            if r > 0 and cls.heap:
                dt = min(dt, (cls.heap[0][0] - cls.virtual_bytes) / r)
        if not np.isfinite(dt):
            if not self._active:
                return
            dt = 0.0  # unbounded flows finish now
        at = self.env.now + max(dt, 0.0)
        if self._wake_ev is not None and self._wake_at <= at:
            return
        ev = self.env.timeout(max(dt, 0.0))
        ev.callbacks.append(self._wake)
        self._wake_ev, self._wake_at = ev, at

    def _wake(self, ev: simpy.Event) -> None:
        if ev is not self._wake_ev:
            return  # superseded by an earlier wake-up
        self._wake_ev, self._wake_at = None, np.inf
        self._advance()
        if self._finish_due():
            self._solve()
        else:
            self._schedule_wake()

    # ---- results ---------------------------------------------------------------------------
    def link_stats(self, elapsed_s: float | None = None) -> dict[str, dict[str, float | str]]:
        """Kind, bytes, average utilisation and peak allocated rate fraction per link."""
        t = self.env.now if elapsed_s is None else elapsed_s
        return {
            lk.name: {
                "kind": lk.kind,
                "bytes": lk.bytes_moved,
                "utilization": lk.utilization(t),
                "peak_rate_fraction": lk.peak_rate_Bps / lk.bandwidth_Bps,
            }
            for lk in self.links
        }
