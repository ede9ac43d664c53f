"""Flow-level network simulation over the fluid engine.

Traffic is described as :class:`Flow` aggregates: all tokens going from one source to one
destination by one path (one *leg*) become a single flow with a byte count, so the cost of a
simulation grows with the number of flows, never with tokens or bytes. Each flow follows the
ECMP route of :class:`~hwsim.sim.topology.Topology` (a set of links with the fraction of the
bytes on each).

A kernel moves its flows in *transfers* (:class:`Transfer`): a transfer is one engine flow whose
progress carries a fixed mix of the member flows' bytes on every link they cross. This models
how GPU communication kernels really progress: a sender walks its tokens in order and hands each
token to every destination it needs, with bounded per-destination buffers, so all flows of one
sender advance together (they are *coupled*). A kernel whose peers progress independently
(NCCL's grouped send/recv) simply uses one transfer per flow. Links are shared max-min fairly
and rates are recomputed only when a transfer starts or ends (the engine's rule).

Besides physical links the caller may add *virtual* links (``kind`` ``sm``: the copy throughput
of the SMs a kernel dedicates to communication), which the same fairness rule shares.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from hwsim.sim.engine import Engine
from hwsim.sim.topology import Topology

FArr = NDArray[np.float64]

#: Link kinds that are not cables (excluded from ``bytes_by_link_kind``).
VIRTUAL_KINDS = frozenset({"sm"})


@dataclass(frozen=True)
class Flow:
    """Aggregated traffic: ``nbytes`` from ``src`` to ``dst`` (ranks) over one ``leg``."""

    src: int
    dst: int
    leg: str
    nbytes: float


@dataclass
class Transfer:
    """One engine flow: a coupled group of flows (or a single one).

    ``loads`` maps link index → bytes this transfer puts on it; ``size_bytes`` is its progress
    unit (the engine's fairness is on progress); ``latency_s`` is paid before the first byte and
    ``tail_s`` after the last (e.g. a completion flag's flight). ``after`` lists transfers that
    must finish first (a dependency, e.g. the next micro-batch)."""

    label: str
    owner: int
    size_bytes: float
    loads: dict[int, float]
    latency_s: float = 0.0
    tail_s: float = 0.0
    max_rate_Bps: float = np.inf
    after: tuple[int, ...] = ()
    receivers: tuple[int, ...] = ()  #: ranks whose completion waits for this transfer


@dataclass(frozen=True)
class VirtualLink:
    """A non-cable shared resource (e.g. the SMs of one GPU that copy data)."""

    name: str
    bandwidth_Bps: float
    kind: str = "sm"


@dataclass(frozen=True)
class LinkLoad:
    """What one link carried in a run."""

    name: str
    kind: str
    bytes: float
    utilization: float  #: average over the run
    peak: float  #: largest allocated rate / bandwidth


@dataclass(frozen=True)
class NetworkRun:
    """Result of :func:`run_transfers` (SI units)."""

    time_s: float
    finish_s: tuple[float, ...]  #: per transfer
    rank_time_s: tuple[float, ...]  #: per rank: its last own or received transfer
    links: tuple[LinkLoad, ...]
    events: int
    rate_updates: int
    transfers: int
    wall_s: float
    trace: tuple[object, ...] = field(default=(), repr=False)
    rate_log: tuple[tuple[float, tuple[float, ...]], ...] = field(default=(), repr=False)

    def bytes_by_kind(self, include_virtual: bool = False) -> dict[str, float]:
        out: dict[str, float] = {}
        for lk in self.links:
            if include_virtual or lk.kind not in VIRTUAL_KINDS:
                out[lk.kind] = out.get(lk.kind, 0.0) + lk.bytes
        return out

    def max_utilization(self, include_virtual: bool = False) -> float:
        vals = [
            lk.utilization for lk in self.links if include_virtual or lk.kind not in VIRTUAL_KINDS
        ]
        return max(vals, default=0.0)


def route_loads(topology: Topology, flows: Sequence[Flow]) -> dict[int, float]:
    """Bytes on every link when ``flows`` follow their ECMP routes (a flow whose source and
    destination are the same element is a local copy and loads no link)."""
    acc = np.zeros(len(topology.links))
    for f in flows:
        if f.nbytes <= 0 or f.src == f.dst:
            continue
        r = topology.route(f.src, f.dst)
        np.add.at(acc, r.links, f.nbytes * r.fractions)
    nz = np.flatnonzero(acc)
    return dict(zip(nz.tolist(), acc[nz].tolist(), strict=True))


def run_transfers(
    topology: Topology,
    transfers: Sequence[Transfer],
    *,
    virtual: Sequence[VirtualLink] = (),
    link_scale: dict[str, float] | None = None,
    ranks: int | None = None,
    trace: bool = False,
) -> NetworkRun:
    """Simulate ``transfers`` on ``topology`` in the fluid engine.

    Link indices ``< len(topology.links)`` are the topology's links; index
    ``len(topology.links) + i`` is ``virtual[i]``. ``link_scale[kind]`` multiplies the
    bandwidth of every link of that kind (the calibrated achievable fraction of line rate).
    Only links that carry bytes are created in the engine.
    """
    t0 = time.perf_counter()
    scale = link_scale or {}
    n_phys = len(topology.links)
    used = sorted({li for tr in transfers for li, b in tr.loads.items() if b > 0})
    eng = Engine(trace=trace, log_rates=trace)
    elinks = {}
    for li in used:
        if li < n_phys:
            spec = topology.links[li]
            bw, name, kind = spec.bandwidth_Bps, spec.name, spec.kind
        else:
            v = virtual[li - n_phys]
            bw, name, kind = v.bandwidth_Bps, v.name, v.kind
        elinks[li] = eng.link(name, bw * scale.get(kind, 1.0), 0.0, kind)
    finish = [0.0] * len(transfers)
    done_events = [eng.env.event() for _ in transfers]

    def proc(i: int, tr: Transfer):
        for j in tr.after:
            yield done_events[j]
        links = [elinks[li] for li, b in tr.loads.items() if b > 0]
        weights = [b / tr.size_bytes for li, b in tr.loads.items() if b > 0]
        if links and tr.size_bytes > 0:
            yield eng.transfer(
                links,
                tr.size_bytes,
                latency_s=tr.latency_s,
                max_rate_Bps=tr.max_rate_Bps,
                label=tr.label,
                weights=weights,
            )
        elif tr.latency_s > 0:
            yield eng.delay(tr.latency_s)
        if tr.tail_s > 0:
            yield eng.delay(tr.tail_s)
        finish[i] = eng.env.now
        done_events[i].succeed()

    for i, tr in enumerate(transfers):
        eng.env.process(proc(i, tr))
    total = eng.run()
    n_ranks = ranks if ranks is not None else topology.ranks
    rank_t = [0.0] * n_ranks
    for i, tr in enumerate(transfers):
        for r in (tr.owner, *tr.receivers):
            if 0 <= r < n_ranks:
                rank_t[r] = max(rank_t[r], finish[i])
    loads = tuple(
        LinkLoad(
            lk.name,
            lk.kind,
            lk.bytes_moved,
            lk.utilization(total) if total > 0 else 0.0,
            lk.peak_rate_Bps / lk.bandwidth_Bps,
        )
        for lk in eng.links
    )
    return NetworkRun(
        time_s=total,
        finish_s=tuple(finish),
        rank_time_s=tuple(rank_t),
        links=loads,
        events=eng.events,
        rate_updates=eng.rate_recomputations,
        transfers=len(transfers),
        wall_s=time.perf_counter() - t0,
        trace=tuple(eng.trace),
        rate_log=tuple(eng.rate_log),
    )
