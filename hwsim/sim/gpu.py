"""GPU actors on the fluid engine: SMs, their copy engines, the shared L2 and HBM.

Shared by every GPU mapper (attention here, GEMM and elementwise kernels elsewhere). A mapper
describes one kernel launch as a :class:`CtaLaunch` - arrays over its CTAs (thread blocks): how
many inner-loop steps each runs, what one step costs on an SM, which bytes it loads before it
can start, streams per step and stores at the end, and which *reuse group* its streamed bytes
belong to (e.g. the K/V of one head, read by every Q block of that head). :class:`GpuRun` then
plays the launches on the device:

* every SM runs ``slots_per_sm`` CTA *slots* (simpy processes), each with the SM's compute split
  evenly among them; CTAs are assigned round-robin in issue order (``dynamic=False``, a static
  persistent or a hardware grid schedule) or to whichever slot frees first (``dynamic=True``);
* all bytes cross the shared L2 link; bytes that miss in L2 also cross the HBM link; each flow
  is capped by the SM's own port bandwidth (the copy engine / TMA of that SM);
* L2 reuse: a reuse group's bytes come from HBM for the first CTA that streams them; CTAs of the
  same group that run while another of its CTAs is running, or while the group is still resident
  (an LRU of groups over the usable L2 capacity), read them from L2 only.

Two granularities, chosen per run:

* ``detail="cta"`` (default): one flow per CTA carries all its bytes while the SM spends the
  analytic compute time ``fill + steps·step + drain + overhead``; the CTA ends when both are
  done. Cost grows with CTAs, never with tiles × steps.
* ``detail="tile"``: a producer process (the copy engine) loads the first tile, then one tile per
  step into a ring of ``stages`` buffers; the consumer (the MMA warps) waits for each tile,
  computes the step and frees the buffer. For teaching and small problems.

Times are seconds, sizes bytes, rates bytes/s.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import simpy

from hwsim.sim.engine import Engine, Link, TraceEvent
from hwsim.sim.gpu_tile import TileDetail
from hwsim.spec.device import Device

Proc = Generator[Any, Any, None]


@dataclass
class GpuFabric:
    """The links of one GPU inside an engine."""

    device: Device
    l2: Link  #: the shared on-chip cache every SM load and store crosses
    hbm: Link  #: main memory
    sm_port_Bps: float  #: one SM's load/store port (its copy engine's rate cap)
    n_sms: int
    l2_capacity_bytes: float
    clock_Hz: float

    def route(
        self, hbm_share: float, l2_share: float = 1.0
    ) -> tuple[tuple[int, ...], tuple[float, ...], float]:
        """(link indices, weights, latency) of a flow of which the fraction ``l2_share`` of
        its bytes crosses L2 (less than 1 when a cluster multicasts loads) and ``hbm_share``
        also crosses HBM - the arguments of ``Engine.send``."""
        if hbm_share <= 0:
            return (self.l2.index,), (l2_share,), self.l2.latency_s
        lat = self.l2.latency_s + self.hbm.latency_s
        if self.l2.index < self.hbm.index:
            return (self.l2.index, self.hbm.index), (l2_share, hbm_share), lat
        return (self.hbm.index, self.l2.index), (hbm_share, l2_share), lat

    @property
    def hit_path(self) -> list[Link]:
        return [self.l2]

    @property
    def miss_path(self) -> list[Link]:
        return [self.l2, self.hbm]


def build_gpu(eng: Engine, device: Device, l2_bandwidth_fraction: float = 1.0) -> GpuFabric:
    """Add a GPU's shared links to ``eng``. ``l2_bandwidth_fraction`` scales the spec's L2
    bandwidth to what a kernel's access pattern sustains (a calibrated profile value).

    The shared cache is the largest ``per_chip`` on-chip level (L2; Infinity Cache where larger),
    main memory is ``device.main_memory``, and the SM port is the bandwidth of the innermost
    ``per_unit`` level (shared memory / LDS fill rate of one SM or CU).
    """
    main = device.main_memory
    shared = [m for m in device.on_chip_levels if m.scope == "per_chip" and m is not main]
    per_unit = [m for m in device.memory if m.scope == "per_unit"]
    if not shared:
        # no shared cache: a zero-latency pass-through at main-memory speed keeps one code path
        l2 = eng.link("l2", main.bandwidth_Bps, 0.0, kind="cache")
        l2_cap = 0.0
    else:
        lvl = max(shared, key=lambda m: m.capacity_bytes)
        bw = lvl.bandwidth_Bps * l2_bandwidth_fraction
        l2 = eng.link(lvl.name, bw, lvl.latency_s, kind="cache")
        l2_cap = lvl.capacity_bytes
    hbm = eng.link(main.name, main.bandwidth_Bps, main.latency_s, kind="memory")
    port = per_unit[0].bandwidth_Bps if per_unit else np.inf
    return GpuFabric(
        device=device,
        l2=l2,
        hbm=hbm,
        sm_port_Bps=port,
        n_sms=device.compute.units_count,
        l2_capacity_bytes=l2_cap,
        clock_Hz=device.compute.clock_Hz,
    )


@dataclass(frozen=True)
class CtaLaunch:
    """One kernel launch as arrays over its CTAs (scalars broadcast). Times are for a CTA that
    has the whole SM; with ``slots_per_sm = k`` each resident CTA runs k times slower."""

    name: str
    steps: np.ndarray  #: inner-loop steps per CTA
    step_s: np.ndarray  #: one steady-state step
    fill_s: np.ndarray  #: compute before the first steady step (pipeline fill)
    drain_s: np.ndarray  #: compute after the last step (pipeline drain, epilogue)
    overhead_s: np.ndarray  #: fixed per-CTA cost (scheduler, barriers, setup)
    first_bytes: np.ndarray  #: loaded from HBM before compute can start (e.g. the Q tile)
    step_bytes: np.ndarray  #: streamed per step and shared within the reuse group (K/V tile)
    store_bytes: np.ndarray  #: written to HBM at the end (e.g. the O tile)
    group: np.ndarray  #: reuse group of the streamed bytes (-1: never reused)
    group_bytes: np.ndarray  #: footprint of each reuse group (indexed by group id)
    order: np.ndarray  #: CTA issue order
    dynamic: bool = False
    slots_per_sm: int = 1
    prefetch: bool = True  #: the next CTA's first loads overlap this CTA's drain
    stages: int = 2  #: step buffers in flight (tile detail)
    launch_overhead_s: float = 0.0
    label: Callable[[int], str] | None = None  #: CTA name in traces
    step_unique_bytes: np.ndarray | float = 0.0  #: per step, never reused (e.g. naive S, P)
    multicast: int = 1  #: CTAs of a cluster that receive each shared step load from L2 once

    @property
    def n_ctas(self) -> int:
        return len(self.order)


@dataclass(frozen=True)
class LaunchResult:
    name: str
    start_s: float
    end_s: float
    ctas: int
    reuse_hits: int
    first_bytes: float
    streamed_bytes: float
    store_bytes: float
    hbm_stream_bytes: float  #: streamed bytes that missed in L2

    @property
    def time_s(self) -> float:
        return self.end_s - self.start_s


class _L2Reuse:
    """Which reuse groups are resident in (or streaming through) the shared cache."""

    def __init__(self, capacity_bytes: float) -> None:
        self.capacity = capacity_bytes
        self.active: dict[int, int] = {}
        self.lru: OrderedDict[int, float] = OrderedDict()
        self.used = 0.0

    def acquire(self, g: int, footprint: float) -> bool:
        if g < 0:
            return False
        hit = self.active.get(g, 0) > 0 or g in self.lru
        if g in self.lru:
            self.lru.move_to_end(g)
        elif footprint <= self.capacity:
            self.lru[g] = footprint
            self.used += footprint
            while self.used > self.capacity and len(self.lru) > 1:
                _, b = self.lru.popitem(last=False)
                self.used -= b
        self.active[g] = self.active.get(g, 0) + 1
        return hit

    def release(self, g: int) -> None:
        if g >= 0:
            self.active[g] -= 1


def _as_list(a: np.ndarray | float, n: int, dtype: type = float) -> list[Any]:
    return np.broadcast_to(np.asarray(a, dtype=dtype), (n,)).tolist()


@dataclass
class _Cta:
    """Per-CTA values as Python lists (fast scalar access in the simpy processes)."""

    steps: list[int]
    step: list[float]
    fill: list[float]
    drain: list[float]
    over: list[float]
    first: list[float]
    sbytes: list[float]
    ubytes: list[float]
    store: list[float]
    group: list[int]
    gbytes: list[float]


@dataclass
class _Cohorts:
    """CTAs grouped into cohorts of ``k`` consecutive CTAs in issue order, played in lockstep on
    ``k`` SMs (one flow with ``count = k``, the members' mean compute time). ``k = 1`` is
    exact; larger ``k`` keeps the cost of huge launches bounded (see ``GpuRun.max_cohorts``)."""

    members: list[list[int]]
    compute: list[float]  #: mean fill + steps·step, up to the next CTA's prefetch point
    lead: list[float]  #: mean compute after the prefetch point (the last stages - 1 steps)
    step: list[float]  #: mean step (the last step after a memory-bound stream)
    drain: list[float]  #: mean drain
    over: list[float]  #: mean per-CTA overhead


def _cohorts(ln: CtaLaunch, k: int) -> _Cohorts:
    n = ln.n_ctas
    order = np.asarray(ln.order, dtype=np.int64)
    slots = ln.slots_per_sm

    def per(a: np.ndarray | float) -> np.ndarray:
        return np.broadcast_to(np.asarray(a, dtype=float), (n,))[order]

    steps = per(ln.steps)
    lead_steps = np.minimum(steps, max(ln.stages, 1) - 1) if ln.prefetch else 0 * steps
    comp = (per(ln.fill_s) + (steps - lead_steps) * per(ln.step_s)) * slots
    lead = lead_steps * per(ln.step_s) * slots
    starts = np.arange(0, n, k)
    cnt = np.diff(np.append(starts, n)).astype(float)

    def mean(a: np.ndarray) -> list[float]:
        return (np.add.reduceat(a, starts) / cnt).tolist() if n else []

    return _Cohorts(
        members=[order[a : a + k].tolist() for a in starts],
        compute=mean(comp),
        lead=mean(lead),
        step=mean(per(ln.step_s) * slots),
        drain=mean(per(ln.drain_s) * slots),
        over=mean(per(ln.overhead_s) * slots),
    )


def cohort_size(n_ctas: int, n_slots: int, max_cohorts: int) -> int:
    """Smallest divisor ``k`` of ``n_slots`` with at most ``max_cohorts`` cohorts (1 if
    ``max_cohorts`` ≤ 0): a divisor, so that a wave of identical CTAs stays a whole number of
    cohorts and wave quantisation is kept exactly."""
    if max_cohorts <= 0 or n_ctas <= max_cohorts:
        return 1
    for k in range(1, n_slots + 1):
        if n_slots % k == 0 and -(-n_ctas // k) <= max_cohorts:
            return k
    return n_slots


@dataclass
class LaunchCounters:
    """What the launch being played has counted so far (new for every launch): K/V tiles found
    in L2, bytes streamed from HBM, and the TMA multicast factor of its loads."""

    hits: int = 0
    hbm_stream: float = 0.0
    multicast: int = 1


@dataclass
class GpuRun(TileDetail):
    """Plays kernel launches on a GPU fabric; records spans for the SMs in ``trace_sms``."""

    eng: Engine
    fabric: GpuFabric
    l2_usable_fraction: float = 0.5
    trace_sms: frozenset[int] = frozenset()
    #: at CTA detail, CTAs are played in lockstep cohorts so that a launch has at most this
    #: many (0: never group); tile detail never groups
    max_cohorts: int = 0
    spans: list[TraceEvent] = field(default_factory=list)
    results: list[LaunchResult] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.reuse = _L2Reuse(self.fabric.l2_capacity_bytes * self.l2_usable_fraction)
        self.counters = LaunchCounters()

    # ---- public -----------------------------------------------------------------------------
    def run(self, launches: list[CtaLaunch], detail: str = "cta") -> float:
        """Run the launches back to back (one stream); returns the simulated end time."""
        if detail not in ("cta", "tile"):
            raise ValueError(f"detail must be 'cta' or 'tile', got {detail!r}")
        self.eng.env.process(self._stream(launches, detail))
        return self.eng.run()

    # ---- kernel level -----------------------------------------------------------------------
    def _stream(self, launches: list[CtaLaunch], detail: str) -> Proc:
        env = self.eng.env
        for ln in launches:
            start = env.now
            self.counters = LaunchCounters(multicast=max(int(ln.multicast), 1))
            yield self.eng.delay(ln.launch_overhead_s)
            n = ln.n_ctas
            c = _Cta(
                _as_list(ln.steps, n, int),
                _as_list(ln.step_s * ln.slots_per_sm, n),
                _as_list(ln.fill_s * ln.slots_per_sm, n),
                _as_list(ln.drain_s * ln.slots_per_sm, n),
                _as_list(ln.overhead_s * ln.slots_per_sm, n),
                _as_list(ln.first_bytes, n),
                _as_list(ln.step_bytes, n),
                _as_list(ln.step_unique_bytes, n),
                _as_list(ln.store_bytes, n),
                _as_list(ln.group, n, int),
                np.asarray(ln.group_bytes, dtype=float).tolist(),
            )
            n_slots = self.fabric.n_sms * ln.slots_per_sm
            n_sms = self.fabric.n_sms
            k = cohort_size(n, n_slots, self.max_cohorts) if detail == "cta" else 1
            n_cs = n_slots // k
            if detail == "cta":
                coh = _cohorts(ln, k)
                ids = list(range(len(coh.members)))
                cq = (
                    [deque(ids)] * n_cs
                    if ln.dynamic
                    else [deque(ids[s::n_cs]) for s in range(n_cs)]
                )
                procs = [
                    env.process(
                        self._slot_cta(ln, c, coh, [(s * k + m) % n_sms for m in range(k)], cq[s])
                    )
                    for s in range(min(n_cs, max(len(ids), 1)))
                ]
            else:
                order = np.asarray(ln.order).tolist()
                queues: list[deque[int]]
                if ln.dynamic:
                    shared = deque(order)
                    queues = [shared] * n_slots
                else:
                    queues = [deque(order[s::n_slots]) for s in range(n_slots)]
                procs = [
                    env.process(self._slot_tile(ln, c, s % n_sms, queues[s]))
                    for s in range(min(n_slots, max(n, 1)))
                ]
            yield simpy.AllOf(env, procs)
            self.results.append(
                LaunchResult(
                    ln.name,
                    start,
                    env.now,
                    n,
                    self.counters.hits,
                    float(np.sum(np.broadcast_to(ln.first_bytes, (n,)))),
                    float(
                        np.sum(
                            np.broadcast_to((ln.step_bytes + ln.step_unique_bytes) * ln.steps, (n,))
                        )
                    ),
                    float(np.sum(np.broadcast_to(ln.store_bytes, (n,)))),
                    self.counters.hbm_stream,
                )
            )
            if self.trace_sms:
                self.spans.append(TraceEvent("kernels", ln.name, start, env.now, {"ctas": n}))

    def _span(self, sm: int, track: str, name: str, t0: float, **args: float) -> None:
        if sm in self.trace_sms:
            self.spans.append(TraceEvent(f"SM {sm:03d}{track}", name, t0, self.eng.env.now, args))

    def _name(self, ln: CtaLaunch, i: int) -> str:
        return ln.label(i) if ln.label else f"{ln.name} cta {i}"

    # ---- CTA granularity --------------------------------------------------------------------
    def _slot_cta(
        self, ln: CtaLaunch, c: _Cta, coh: _Cohorts, sms: list[int], queue: deque[int]
    ) -> Proc:
        """One cohort slot at CTA granularity. Per cohort two chained flows (``count`` = its
        CTAs): the *first tile* (Q and the first K/V step, plus the previous cohort's output
        store, which leaves at the same moment) and then the *stream* of the remaining steps.
        The SMs compute ``fill + steps·step`` once the first tile is in, then drain.
        Warp-specialised kernels (``prefetch``) issue the next first tile when this cohort
        starts draining; others when it has finished."""
        eng = self.eng
        env = eng.env
        nxt = self._issue(c, coh, queue, 0.0)
        while nxt is not None:
            j, hits, first, done, t_issue, _last = nxt
            nxt = None
            t0 = env.now
            if not first.processed:
                yield first
            if coh.compute[j] > 0:
                yield eng.delay(coh.compute[j])
            members = coh.members[j]
            out = sum(c.store[i] for i in members)
            if ln.prefetch:
                # the producer starts on the next CTA once Q is no longer read: stages - 1
                # steps before the end; this cohort's output store rides with that load
                nxt = self._issue(c, coh, queue, out)
            if coh.lead[j] > 0:
                yield eng.delay(coh.lead[j])
            if not done.processed:
                yield done  # memory-bound: the last step waits for its data
                yield eng.delay(coh.step[j])
            if out > 0 and nxt is None:
                # no next first tile to ride with (last cohort, or a grid kernel): store alone
                yield eng.delay(coh.drain[j])
                idx, w, lat = self.fabric.route(1.0)
                store = eng.send(
                    idx,
                    w,
                    out / len(members),
                    lat,
                    self.fabric.sm_port_Bps,
                    -1.0,
                    "store",
                    count=len(members),
                )[1]
                yield eng.delay(coh.over[j])
                if not store.processed:
                    yield store
            else:
                yield eng.delay(coh.drain[j] + coh.over[j])
            for i in members:
                self.reuse.release(c.group[i])
            if self.trace_sms:
                for m, i in enumerate(members):
                    sm = sms[m]
                    if sm in self.trace_sms:
                        name = "load" + (" (L2 hit)" if hits[m] else "")
                        self.spans.append(TraceEvent(f"SM {sm:03d} · copy", name, t_issue, env.now))
                        self._span(sm, "", self._name(ln, i), t0, steps=c.steps[i])
            if not ln.prefetch:
                nxt = self._issue(c, coh, queue, 0.0)

    def _issue(
        self, c: _Cta, coh: _Cohorts, queue: deque[int], carried_store: float
    ) -> tuple[int, list[bool], simpy.Event, simpy.Event, float, bool] | None:
        """Take the next cohort and issue its first-tile flow (carrying ``carried_store`` bytes
        of the previous cohort's output) chained to its stream flow."""
        if not queue:
            return None
        fab = self.fabric
        j = queue.popleft()
        last = not queue
        mc = self.counters.multicast
        members = coh.members[j]
        a_tot = a_l2 = a_hbm = carried_store
        b_tot = b_l2 = b_hbm = 0.0
        hits = []
        for i in members:
            g = c.group[i]
            hit = self.reuse.acquire(g, c.gbytes[g] if g >= 0 else 0.0)
            hits.append(hit)
            self.counters.hits += hit
            steps = c.steps[i]
            sb, ub = c.sbytes[i], c.ubytes[i]
            if not hit:
                self.counters.hbm_stream += sb * steps
            shared_l2, shared_hbm = (sb / mc, 0.0) if hit else (sb, sb)
            k0 = min(steps, 1)
            a_tot += c.first[i] + k0 * (sb + ub)
            a_l2 += c.first[i] + k0 * (ub + shared_l2)
            a_hbm += c.first[i] + k0 * (ub + shared_hbm)
            rest = steps - k0
            b_tot += rest * (sb + ub)
            b_l2 += rest * (ub + shared_l2)
            b_hbm += rest * (ub + shared_hbm)
        k = len(members)
        cap = fab.sm_port_Bps
        idx, w, lat = fab.route(a_hbm / a_tot, a_l2 / a_tot) if a_tot > 0 else fab.route(0.0)
        if b_tot <= 0:
            first = self.eng.send(idx, w, a_tot / k, lat, cap, -1.0, "first tile", count=k)[1]
            return j, hits, first, first, self.eng.env.now, last
        done = self.eng.env.event()
        route_b = fab.route(b_hbm / b_tot, b_l2 / b_tot)
        # the stream is pipelined behind the first tile: it starts the instant that ends
        first = self.eng.send(
            idx,
            w,
            a_tot / k,
            lat,
            cap,
            -1.0,
            "first tile",
            count=k,
            then=(route_b[0], route_b[1], b_tot / k, done),
        )[1]
        return j, hits, first, done, self.eng.env.now, last
