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

Two executions give the same result (tests compare them): ``mode="engine"`` hands every
transfer to :meth:`Engine.transfer`; ``mode="vector"`` runs the same fluid rules on the same
simpy environment and links, but keeps all transfers' (transfer, link) incidences in numpy
arrays, so an update costs a few vector passes instead of a Python loop over every incidence.
An all-to-all has O(ranks²) incidences and O(ranks) updates, so ``auto`` picks ``vector``
above 2048 incidences (EP 256 in seconds instead of minutes).

Besides physical links the caller may add *virtual* links (``kind`` ``sm``: the copy throughput
of the SMs a kernel dedicates to communication), which the same fairness rule shares.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from hwsim.sim.engine import Engine, Link, TraceEvent, incidence_index, max_min_incidence
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


VECTOR_ABOVE = 2048


def run_transfers(
    topology: Topology,
    transfers: Sequence[Transfer],
    *,
    virtual: Sequence[VirtualLink] = (),
    link_scale: dict[str, float] | None = None,
    ranks: int | None = None,
    trace: bool = False,
    mode: str = "auto",
) -> NetworkRun:
    """Simulate ``transfers`` on ``topology`` in the fluid engine.

    Link indices ``< len(topology.links)`` are the topology's links; index
    ``len(topology.links) + i`` is ``virtual[i]``. ``link_scale[kind]`` multiplies the
    bandwidth of every link of that kind (the calibrated achievable fraction of line rate).
    Only links that carry bytes are created in the engine. ``mode``: ``engine``, ``vector``
    or ``auto`` (see the module docstring).
    """
    t0 = time.perf_counter()
    scale = link_scale or {}
    n_phys = len(topology.links)
    used = sorted({li for tr in transfers for li, b in tr.loads.items() if b > 0})
    eng = Engine(trace=trace)
    elinks = {}
    for li in used:
        if li < n_phys:
            spec = topology.links[li]
            bw, name, kind = spec.bandwidth_Bps, spec.name, spec.kind
        else:
            v = virtual[li - n_phys]
            bw, name, kind = v.bandwidth_Bps, v.name, v.kind
        elinks[li] = eng.link(name, bw * scale.get(kind, 1.0), 0.0, kind)
    incidences = sum(len(tr.loads) for tr in transfers)
    if mode not in ("auto", "engine", "vector"):
        raise ValueError(f"mode must be auto, engine or vector, got {mode!r}")
    if mode == "vector" or (mode == "auto" and incidences > VECTOR_ABOVE):
        finish, rate_log, trace_ev, updates = _run_vector(eng, elinks, transfers, trace)
        total = float(eng.env.now)
        eng_trace: tuple[object, ...] = tuple(trace_ev)
    else:
        finish, total = _run_engine(eng, elinks, transfers)
        rate_log = list(eng.rate_log)
        updates = eng.rate_recomputations
        eng_trace = tuple(eng.trace)
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
        rate_updates=updates,
        transfers=len(transfers),
        wall_s=time.perf_counter() - t0,
        trace=eng_trace,
        rate_log=tuple(rate_log),
    )


def _run_engine(
    eng: Engine, elinks: dict[int, Link], transfers: Sequence[Transfer]
) -> tuple[list[float], float]:
    """Every transfer through :meth:`Engine.transfer` (the reference execution)."""
    finish = [0.0] * len(transfers)
    done_events = [eng.env.event() for _ in transfers]

    def proc(i: int, tr: Transfer):
        for j in tr.after:
            yield done_events[j]
        links = [elinks[li] for li, b in tr.loads.items() if b > 0]
        # a transfer that moves nothing itself (size 0) may still carry loads (its SM copy
        # share): it has no progress to weight them by, so it waits its latency only
        sized = tr.size_bytes > 0
        weights = [b / tr.size_bytes for li, b in tr.loads.items() if b > 0] if sized else []
        if links and sized:
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
    return finish, total


@dataclass
class _VState:
    last: float = 0.0
    wake: object | None = None
    pending: bool = False
    updates: int = 0


def _run_vector(
    eng: Engine, elinks: dict[int, Link], transfers: Sequence[Transfer], trace: bool
) -> tuple[list[float], list[tuple[float, tuple[float, ...]]], list[TraceEvent], int]:
    """The engine's fluid rules with all incidences in numpy arrays.

    A transfer waits for its dependencies, then its latency, then joins (rates are solved
    again, once per instant however many join); it leaves when its progress reaches its size
    (rates solved again), then waits its tail. Bytes are integrated per link between updates.
    """
    env = eng.env
    n = len(transfers)
    col = {li: k for k, li in enumerate(elinks)}
    cls_l, link_l, w_l = [], [], []
    for i, tr in enumerate(transfers):
        for li, b in tr.loads.items():
            if b > 0 and tr.size_bytes > 0:
                cls_l.append(i)
                link_l.append(col[li])
                w_l.append(b / tr.size_bytes)
    cls_of = np.asarray(cls_l, dtype=np.int64)
    link_of = np.asarray(link_l, dtype=np.int64)
    w = np.asarray(w_l, dtype=float)
    links = list(elinks.values())
    n_links = len(links)
    index = incidence_index(cls_of, link_of, n, n_links)
    by_cls, c_ptr = index[0], index[1]
    caps = np.array([lk.bandwidth_Bps for lk in links])
    own = np.array([tr.max_rate_Bps for tr in transfers], dtype=float)
    size = np.array([tr.size_bytes for tr in transfers], dtype=float)
    remaining = size.copy()
    rate = np.zeros(n)
    active = np.zeros(n, dtype=bool)
    moved_bytes = np.zeros(n_links)
    peak = np.zeros(n_links)
    done = [env.event() for _ in transfers]
    joined = [0.0] * n
    state = _VState()
    rate_log: list[tuple[float, tuple[float, ...]]] = []

    def advance() -> None:
        dt = env.now - state.last
        state.last = env.now
        if dt <= 0 or not active.any():
            return
        step = np.minimum(rate * dt, remaining) * active
        remaining[:] -= step
        moved_bytes[:] += np.bincount(link_of, weights=w * step[cls_of], minlength=n_links)

    def solve(_: object = None) -> None:
        state.pending = False
        advance()
        finish_due()
        rate[:] = 0.0
        if active.any():
            rate[:] = max_min_incidence(cls_of, link_of, w, caps, own, active, index)
            state.updates += 1
        link_rate = np.bincount(link_of, weights=w * rate[cls_of], minlength=n_links)
        np.maximum(peak, link_rate, out=peak)
        if trace:
            rate_log.append((env.now, tuple(link_rate.tolist())))
        schedule()

    def request_solve() -> None:
        if not state.pending:  # everything joining or leaving at this instant: one solve
            state.pending = True
            env.timeout(0.0).callbacks.append(solve)

    def finish_due() -> None:
        tol = 4 * np.spacing(env.now) + 1e-18
        due = active & (remaining <= 1e-12 * np.maximum(size, 1.0) + rate * tol)
        for i in np.flatnonzero(due).tolist():
            # account the rounding residue so every transfer delivers exactly its bytes
            sel = by_cls[c_ptr[i] : c_ptr[i + 1]]
            np.add.at(moved_bytes, link_of[sel], w[sel] * remaining[i])
            remaining[i] = 0.0
            active[i] = False
            done[i].succeed()

    def schedule() -> None:
        go = active & (rate > 0)
        if not go.any():
            return
        dt = float((remaining[go] / rate[go]).min())
        ev = env.timeout(max(dt, 0.0))
        state.wake = ev

        def wake(e: object) -> None:
            if e is state.wake:
                solve()

        ev.callbacks.append(wake)

    def join(i: int) -> None:
        advance()
        joined[i] = env.now
        if size[i] <= 0 or c_ptr[i] == c_ptr[i + 1]:
            done[i].succeed()
            return
        active[i] = True
        request_solve()

    finish = [0.0] * n
    trace_ev: list[TraceEvent] = []
    finished = [env.event() for _ in transfers]

    def proc(i: int, tr: Transfer):
        for j in tr.after:
            yield finished[j]
        if tr.latency_s > 0:
            yield env.timeout(tr.latency_s)
        join(i)
        yield done[i]
        if tr.tail_s > 0:
            yield env.timeout(tr.tail_s)
        finish[i] = env.now
        if trace:
            trace_ev.append(
                TraceEvent(
                    f"rank{tr.owner}", tr.label, joined[i], env.now, {"bytes": tr.size_bytes}
                )
            )
        finished[i].succeed()

    for i, tr in enumerate(transfers):
        env.process(proc(i, tr))
    env.run()
    for k, lk in enumerate(links):
        lk.bytes_moved = float(moved_bytes[k])
        lk.peak_rate_Bps = float(peak[k])
    return finish, rate_log, trace_ev, state.updates
