"""The discrete-event engine: simpy plus fluid, max-min fair shared bandwidth.

The engine knows nothing about attention, GEMMs or MoE: it moves bytes over links and spends
time on compute. Hardware actors (SMs, copy engines, NICs) are plain simpy generator processes
written by the mappers; they ``yield engine.transfer(...)`` and ``yield engine.compute(...)``.

Shared bandwidth is a *fluid*: every active transfer (a flow) crosses one or more links, and the
rates of all flows are the max-min fair allocation over link capacities (progressive filling).
Rates are recomputed only when a flow starts or ends, so the cost of a simulation grows with the
number of flows, never with the number of bytes. A transfer costs ``latency + bytes / share``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import simpy

#: Relative tolerance for "this flow has finished" after floating-point rate integration.
_EPS = 1e-12


class CountingEnvironment(simpy.Environment):
    """A simpy environment that counts processed events (reported as ``events``)."""

    def __init__(self) -> None:
        super().__init__()
        self.events_processed = 0

    def step(self) -> None:
        self.events_processed += 1
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

    def utilization(self, elapsed_s: float) -> float:
        """Average fraction of bandwidth used over ``elapsed_s`` seconds."""
        if elapsed_s <= 0:
            return 0.0
        return self.bytes_moved / (self.bandwidth_Bps * elapsed_s)


@dataclass
class Flow:
    """An active transfer over a path of links."""

    path: np.ndarray  #: link indices
    size_bytes: float
    remaining_bytes: float
    done: simpy.Event
    max_rate_Bps: float = np.inf
    rate_Bps: float = 0.0
    label: str = ""
    start_s: float = 0.0


@dataclass
class TraceEvent:
    """One span for the Chrome/Perfetto trace: a track (SM 3, HBM, NIC 0) and a time interval."""

    track: str
    name: str
    start_s: float
    end_s: float
    args: dict[str, float] = field(default_factory=dict)


def max_min_rates(
    paths: Sequence[np.ndarray], capacity_Bps: np.ndarray, max_rate_Bps: np.ndarray | None = None
) -> np.ndarray:
    """Max-min fair rates (bytes/s) for flows over links, by progressive filling.

    ``paths[i]`` holds the link indices flow ``i`` crosses; ``capacity_Bps[l]`` is link ``l``'s
    bandwidth; ``max_rate_Bps[i]`` optionally caps flow ``i`` alone (e.g. a DMA engine's rate).
    All flows grow together; whenever a link saturates (or a flow hits its own cap) the flows
    through it are frozen at the current level. The loop runs once per distinct bottleneck
    level, each pass vectorised over all (flow, link) incidences.
    """
    n = len(paths)
    rates = np.zeros(n)
    if n == 0:
        return rates
    lengths = np.fromiter((len(p) for p in paths), dtype=np.int64, count=n)
    flow_of = np.repeat(np.arange(n), lengths)
    link_of = (
        np.concatenate([np.asarray(p, dtype=np.int64) for p in paths])
        if lengths.sum()
        else (np.zeros(0, dtype=np.int64))
    )
    cap = capacity_Bps.astype(float).copy()
    own = np.full(n, np.inf) if max_rate_Bps is None else max_rate_Bps.astype(float).copy()
    active = np.ones(n, dtype=bool)
    level = 0.0
    while active.any():
        inc_active = active[flow_of]
        users = np.bincount(link_of[inc_active], minlength=len(cap)).astype(float)
        with np.errstate(divide="ignore", invalid="ignore"):
            link_share = np.where(users > 0, cap / users, np.inf)
        step = min(float(link_share.min(initial=np.inf)), float((own - level)[active].min()))
        if not np.isfinite(step):
            # flows on no link and with no cap: unbounded; give them their (infinite) cap
            rates[active] = np.inf
            break
        level += step
        cap -= step * users
        # freeze flows whose own cap is reached or who cross a saturated link
        saturated = (users > 0) & (cap <= _EPS * np.maximum(capacity_Bps, 1.0))
        hit = np.zeros(n, dtype=bool)
        hit[flow_of[inc_active & saturated[link_of]]] = True
        hit |= active & np.isfinite(own) & (own - level <= _EPS * np.maximum(own, 1.0))
        rates[hit & active] = level
        active &= ~hit
    return rates


class Engine:
    """simpy environment with fluid links. One engine per simulated run (deterministic)."""

    def __init__(self, trace: bool = False) -> None:
        self.env = CountingEnvironment()
        self.links: list[Link] = []
        self._flows: list[Flow] = []
        self._last_update_s = 0.0
        self._generation = 0
        self.tracing = trace
        self.trace: list[TraceEvent] = []
        self.rate_recomputations = 0

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
    ) -> simpy.Event:
        """Move ``nbytes`` over ``path``: wait the latency (sum of the links' latencies unless
        given), then flow at the max-min fair share. Returns an event that fires on arrival."""
        links = [path] if isinstance(path, Link) else list(path)
        done = self.env.event()
        lat = sum(lk.latency_s for lk in links) if latency_s is None else latency_s
        idx = np.array([lk.index for lk in links], dtype=np.int64)

        def start(_: object = None) -> None:
            if nbytes <= 0:
                done.succeed()
                return
            self._advance()
            self._flows.append(
                Flow(
                    idx,
                    float(nbytes),
                    float(nbytes),
                    done,
                    float(max_rate_Bps),
                    0.0,
                    label,
                    self.env.now,
                )
            )
            self._reschedule()

        if lat > 0:
            self.env.timeout(lat).callbacks.append(start)
        else:
            start()
        return done

    def run(self, until: float | simpy.Event | None = None) -> float:
        """Run to completion (or ``until``); returns the simulated time in seconds."""
        self.env.run(until=until)
        return float(self.env.now)

    @property
    def events(self) -> int:
        return self.env.events_processed

    # ---- the fluid scheduler ---------------------------------------------------------------
    def _advance(self) -> None:
        """Integrate every active flow's rate from the last update to now."""
        dt = self.env.now - self._last_update_s
        self._last_update_s = self.env.now
        if dt <= 0 or not self._flows:
            return
        for f in self._flows:
            moved = min(f.rate_Bps * dt, f.remaining_bytes)
            f.remaining_bytes -= moved
            for li in f.path:
                self.links[li].bytes_moved += moved

    def _reschedule(self) -> None:
        """Finish flows that are done, recompute fair rates, schedule the next completion."""
        finished = [f for f in self._flows if f.remaining_bytes <= _EPS * f.size_bytes]
        if finished:
            self._flows = [f for f in self._flows if f.remaining_bytes > _EPS * f.size_bytes]
            for f in finished:
                # account the rounding residue so bytes are conserved exactly
                for li in f.path:
                    self.links[li].bytes_moved += f.remaining_bytes
                f.remaining_bytes = 0.0
                if self.tracing:
                    for li in f.path:
                        self.trace.append(
                            TraceEvent(
                                self.links[li].name,
                                f.label or "transfer",
                                f.start_s,
                                self.env.now,
                                {"bytes": f.size_bytes},
                            )
                        )
                f.done.succeed()
        self._generation += 1
        if not self._flows:
            return
        self.rate_recomputations += 1
        caps = np.array([lk.bandwidth_Bps for lk in self.links])
        rates = max_min_rates(
            [f.path for f in self._flows], caps, np.array([f.max_rate_Bps for f in self._flows])
        )
        load = np.zeros(len(self.links))
        for f, r in zip(self._flows, rates, strict=True):
            f.rate_Bps = float(r)
            np.add.at(load, f.path, r)
        for lk, ld in zip(self.links, load, strict=True):
            lk.peak_rate_Bps = max(lk.peak_rate_Bps, float(ld))
        dt = min(f.remaining_bytes / f.rate_Bps for f in self._flows)
        gen = self._generation

        def wake(_: object) -> None:
            if gen != self._generation:
                return  # a flow arrived or left since; that update scheduled a fresh wake-up
            self._advance()
            self._reschedule()

        self.env.timeout(dt).callbacks.append(wake)

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
