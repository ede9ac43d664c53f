"""Whole-model prefill and decode steps on a device and layout, simulated op by op.

:func:`simulate_step` builds the per-device layer graph (:mod:`hwsim.plan.model_step`), times
every distinct op once through the device's mapper (:func:`hwsim.sim.mapper.mapper_for`), and
plays the stage on the simpy engine with two resources per device, the compute units and the
communication engine, so that:

* with one micro-batch every op runs in order and all communication is *exposed*;
* with dual micro-batch overlap (DeepSeek-V3, technical report sec. 3.4) the stage's sequences
  are split in two and one micro-batch's collectives run while the other computes; the
  communication that finds the compute busy is *hidden*. Each micro-batch reads the weights
  again, which is the price of the overlap at small batch.

Exposed communication = makespan − compute busy time; hidden = communication busy − exposed.

Pipeline parallelism: ``m = min(pp, sequences)`` micro-batches cycle through ``pp`` stages; a
round (every user gets a token) takes ``max(m, pp)`` × the slowest stage (the bubble at batch 1
is ``pp − 1`` idle stages). Prefill's time to first token is ``(pp + m − 1)`` stage times.

MTP / speculative decoding: a step verifies ``1 + d`` tokens per sequence; with acceptance rate
``a`` each step yields ``1 + a + … + a^d`` tokens on average (DeepSeek reports 85–90% for its
second token, sec. 5.4.3).
"""

from __future__ import annotations

import math
from collections.abc import Generator
from dataclasses import dataclass, field, fields
from typing import Any

import simpy

from hwsim.plan.layout import Layout, check_layout
from hwsim.plan.model_step import CATEGORIES, StepGraph, StepSpec, build_step
from hwsim.plan.workload import Collective, OpTiming, op_name
from hwsim.sim.engine import Engine
from hwsim.sim.mapper import Mapper, capacity_error
from hwsim.sim.trust import Trust
from hwsim.spec.model import ModelConfig

#: Spans kept for the timeline (the first layers of stage 0 are enough to see the overlap).
MAX_SPANS = 4000
_MEMORY_BOUNDS = ("hbm", "sram", "ddr", "l2", "smem", "lds", "infinity_cache", "memoryx")


@dataclass(frozen=True)
class Span:
    """One op on one stream of the timeline (seconds from the start of the step)."""

    stream: str
    name: str
    category: str
    micro_batch: int
    layer: int
    start_s: float
    end_s: float


@dataclass(frozen=True)
class OpRecord:
    """A distinct op of the step, its timing, and how often one device runs it per step."""

    layer: str
    op: str
    category: str
    stream: str
    count: int
    timing: OpTiming


@dataclass(frozen=True)
class StepResult:
    """One step of a model on a device and layout (SI units; per device unless named)."""

    model: str
    device: str
    phase: str
    layout: Layout
    devices: int
    batch: int
    context: int
    dtype: str
    step_time_s: float  #: one decode round (every user gets ≥ 1 token) or the prefill TTFT
    stage_time_s: float  #: slowest pipeline stage
    tokens_per_step: float  #: new tokens for the whole deployment, with MTP acceptance
    time_per_token_s: float  #: per user (decode); step time per prompt token (prefill)
    tokens_per_s_per_user: float
    tokens_per_s_total: float
    ttft_s: float
    memory_per_device_bytes: float
    weight_bytes_per_device: float
    kv_bytes_per_device: float
    capacity_bytes: float
    fits: bool
    breakdown_s: dict[str, float]  #: busy time per category, one device of the slowest stage
    comm_s: float
    comm_exposed_s: float
    comm_hidden_s: float
    bound: str
    bound_shares: dict[str, float]
    micro_batches: int
    accepted_tokens_per_step: float
    ops: tuple[OpRecord, ...] = field(repr=False)
    timeline: tuple[Span, ...] = field(repr=False)
    #: how far to trust the step (hwsim.sim.trust): its ops' suite or leave-one-out errors,
    #: time-weighted, on a GPU; the device's held-out decode error on other kinds
    trust: Trust = field(repr=False)
    notes: tuple[str, ...] = ()

    def to_dict(self, ops: bool = False) -> dict[str, Any]:
        """Every scalar field by name, the layout as a dict and a string, the breakdown, and
        (``ops``) every op's timing."""
        skip = {"layout", "breakdown_s", "ops", "timeline", "notes", "trust"}
        out: dict[str, Any] = {
            f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip
        }
        out["bound_shares"] = dict(self.bound_shares)
        out["layout"] = self.layout.to_dict()
        out["layout_str"] = str(self.layout)
        out["breakdown"] = dict(self.breakdown_s)
        out["tokens_per_s"] = self.tokens_per_s_total
        out["notes"] = list(self.notes)
        out.update(self.trust.to_dict())
        if ops:
            out["ops"] = [
                {
                    "layer": r.layer,
                    "category": r.category,
                    "count": r.count,
                    **r.timing.to_dict(),
                }
                for r in self.ops
            ]
        return out


def accepted_tokens(depth: int, acceptance: float) -> float:
    """Expected tokens per step with ``depth`` draft tokens accepted in order at rate ``a``."""
    return float(sum(acceptance**i for i in range(depth + 1)))


def bound_class(t: OpTiming, stream: str, main_level: str, main_Bps: float) -> str:
    """Coarse class of an op's bound: ``compute``, the main-memory level (``hbm``, ``sram``) when
    moving its main-memory bytes at full bandwidth takes at least half its time (a weight-
    streaming GEMM whose simulator calls it 'overhead' is still memory-bound), another memory
    level, ``latency``, or ``communication``."""
    if stream == "comm":
        return "communication"
    if t.bound in ("compute", "vector", "special"):
        return "compute"
    if t.bound == main_level:
        return main_level
    moved = t.bytes_by_level.get(main_level, 0.0) / main_Bps if main_Bps > 0 else 0.0
    if t.time_s > 0 and moved >= 0.5 * t.time_s:
        return main_level
    return t.bound if t.bound in _MEMORY_BOUNDS else "latency"


def _chains(
    graph: tuple[Any, ...], timings: dict[int, OpTiming]
) -> list[tuple[str, float, Any, int]]:
    """The stage as one ordered list of (stream, seconds, step op, layer index)."""
    out = []
    layer = 0
    for lg in graph:
        for _ in range(lg.repeat):
            out += [(so.stream, timings[id(so)].time_s, so, layer) for so in lg.ops]
            layer += 1
    return [c for c in out if c[1] > 0]


def stage_schedule(
    graph: tuple[Any, ...], timings: dict[int, OpTiming], mb: int, keep_spans: bool
) -> tuple[float, float, float, list[Span]]:
    """Play one stage: ``mb`` micro-batches, each running every op in order on its stream (the
    compute units or the communication engine), each stream serving requests first come first
    served. An exact list schedule of what :func:`stage_engine` plays on the simpy engine (a
    test holds the two equal), in microseconds of wall time per layer instead of milliseconds.
    Returns (makespan, compute busy, comm busy, spans)."""
    ops = _chains(graph, timings)
    if mb == 1 and not keep_spans:  # one chain: everything in order
        comp = sum(t for st, t, _, _ in ops if st == "compute")
        comm = sum(t for st, t, _, _ in ops if st == "comm")
        return comp + comm, comp, comm, []
    free = {"compute": 0.0, "comm": 0.0}
    busy = {"compute": 0.0, "comm": 0.0}
    ready = [0.0] * mb
    nxt = [0] * mb
    spans: list[Span] = []
    n = len(ops)
    while True:
        # the next request in time order (ties: lower micro-batch, as simpy's event order)
        m = min((i for i in range(mb) if nxt[i] < n), key=lambda i: (ready[i], i), default=-1)
        if m < 0:
            break
        stream, t, so, layer = ops[nxt[m]]
        start = max(ready[m], free[stream])
        end = start + t
        free[stream] = end
        busy[stream] += t
        ready[m] = end
        nxt[m] += 1
        if keep_spans and len(spans) < MAX_SPANS:
            spans.append(Span(stream, op_name(so.op), so.category, m, layer, start, end))
    return max(ready, default=0.0), busy["compute"], busy["comm"], spans


def stage_engine(
    graph: tuple[Any, ...], timings: dict[int, OpTiming], mb: int, keep_spans: bool
) -> tuple[float, float, float, list[Span]]:
    """The same stage played on the simpy engine, one process per micro-batch and one resource
    per stream (the reference for :func:`stage_schedule`)."""
    eng = Engine()
    env = eng.env
    res = {"compute": simpy.Resource(env, 1), "comm": simpy.Resource(env, 1)}
    busy = {"compute": 0.0, "comm": 0.0}
    spans: list[Span] = []

    def run(m: int) -> Generator[Any, Any, None]:
        layer = 0
        for lg in graph:
            for _ in range(lg.repeat):
                for so in lg.ops:
                    t = timings[id(so)].time_s
                    if t <= 0:
                        continue
                    with res[so.stream].request() as req:
                        yield req
                        start = env.now
                        yield eng.delay(t)
                    busy[so.stream] += t
                    if keep_spans and len(spans) < MAX_SPANS:
                        spans.append(
                            Span(so.stream, op_name(so.op), so.category, m, layer, start, env.now)
                        )
                layer += 1

    for m in range(mb):
        env.process(run(m))
    makespan = eng.run()
    return makespan, busy["compute"], busy["comm"], spans


@dataclass(frozen=True)
class StagePlay:
    """Every pipeline stage played: its makespan, and for the slowest (which sets the pace)
    the communication busy, exposed and hidden time; spans of stage 0 for the timeline."""

    stage_times: tuple[float, ...]
    slowest: int
    comm_s: float
    exposed_s: float
    hidden_s: float
    spans: tuple[Span, ...]

    @property
    def stage_time_s(self) -> float:
        return self.stage_times[self.slowest]


def time_ops(
    graph: StepGraph, mapper: Mapper
) -> tuple[dict[int, OpTiming], list[dict[tuple[str, str, int], OpRecord]]]:
    """Every op of every stage timed by ``mapper`` (each distinct op once: mapper caches):
    timings by step-op identity, and per stage the records of its distinct ops."""
    timings: dict[int, OpTiming] = {}
    records: list[dict[tuple[str, str, int], OpRecord]] = []
    for st in graph.stages:
        recs: dict[tuple[str, str, int], OpRecord] = {}
        for lg in st:
            for so in lg.ops:
                t = mapper.time(so.op)
                timings[id(so)] = t
                key = (lg.name, op_name(so.op), id(so))
                recs[key] = OpRecord(lg.name, op_name(so.op), so.category, so.stream, lg.repeat, t)
        records.append(recs)
    return timings, records


def play_stages(
    graph: StepGraph, timings: dict[int, OpTiming], mb: int, engine: bool, timeline: bool
) -> StagePlay:
    """Each stage with ``mb`` micro-batches on its compute and communication streams
    (:func:`stage_schedule`, or :func:`stage_engine` on simpy); the slowest sets the pace."""
    play = stage_engine if engine else stage_schedule
    times: list[float] = []
    slowest = 0
    exposed = hidden = comm = 0.0
    spans: list[Span] = []
    for s, stage in enumerate(graph.stages):
        make, busy_c, busy_m, sp = play(stage, timings, mb, timeline and s == 0)
        if s == 0:
            spans = sp
        if not times or make > max(times):
            slowest = s
            exposed = max(0.0, make - busy_c)
            hidden = max(0.0, busy_m - exposed)
            comm = busy_m
        times.append(make)
    return StagePlay(tuple(times), slowest, comm, exposed, hidden, tuple(spans))


def pipeline_times(pp: int, micro_batches: int, stage_s: float) -> tuple[float, float, str | None]:
    """(decode round, prefill TTFT, a note on the bubble) of ``micro_batches`` cycling through
    ``pp`` stages of ``stage_s`` each: a round takes ``max(m, pp)`` stage times, the first
    token ``pp + m - 1``; one stage (no pipeline) is one stage time for both."""
    if pp <= 1:
        return stage_s, stage_s, None
    m = micro_batches
    note = None
    if m < pp:
        note = (
            f"pipeline bubble: {m} micro-batch(es) over {pp} stages keep {m / pp:.0%} of the "
            "stages busy"
        )
    return max(m, pp) * stage_s, (pp + m - 1) * stage_s, note


@dataclass(frozen=True)
class Throughput:
    """Tokens of one step and the rates they give (decode: per user and in total)."""

    tokens_per_step: float
    per_user: float
    total: float
    time_per_token_s: float
    accepted: float


def step_throughput(
    spec: StepSpec, round_s: float, ttft_s: float, mtp_acceptance: float
) -> Throughput:
    """Decode: every sequence gets the accepted tokens of one round; prefill: every prompt
    token of the batch by the first token's time."""
    if spec.phase == "decode":
        acc = accepted_tokens(spec.q_len - 1, mtp_acceptance)
        tok = spec.batch * acc
        return Throughput(tok, acc / round_s, tok / round_s, round_s / acc, acc)
    tok = float(spec.batch * spec.context)
    return Throughput(tok, spec.context / ttft_s, tok / ttft_s, ttft_s / spec.context, 1.0)


def step_breakdown(
    records: dict[tuple[str, str, int], OpRecord], n_mb: int, mapper: Mapper, play: StagePlay
) -> tuple[dict[str, float], dict[str, float], str]:
    """Busy time per category of one device of the slowest stage (``records``), the shares of
    each bound class (exposed communication included), and the dominant one."""
    breakdown = dict.fromkeys(CATEGORIES, 0.0)
    shares: dict[str, float] = {}
    main = mapper.device.main_memory
    main_bw = mapper.device.level_bandwidth_Bps(main.name)
    for r in records.values():
        if r.category == "comm" or r.stream == "comm":
            continue
        dt = r.timing.time_s * r.count * n_mb
        breakdown[r.category] += dt
        cls = bound_class(r.timing, r.stream, main.name, main_bw)
        shares[cls] = shares.get(cls, 0.0) + dt
    breakdown["comm"] = play.comm_s
    breakdown = {k: v for k, v in breakdown.items() if v > 0}
    breakdown["comm_exposed"] = play.exposed_s
    if play.exposed_s > 0:
        shares["communication"] = play.exposed_s
    tot = sum(shares.values()) or 1.0
    shares = {k: v / tot for k, v in sorted(shares.items(), key=lambda kv: -kv[1])}
    return breakdown, shares, next(iter(shares), "none")


def simulate_step(
    model: ModelConfig,
    mapper: Mapper,
    layout: Layout,
    spec: StepSpec,
    *,
    mtp_acceptance: float = 0.0,
    strict: bool = True,
    device_name: str | None = None,
    engine: bool = False,
    timeline: bool = True,
) -> StepResult:
    """Simulate one step (see the module docstring). ``strict``: raise SpecError when the
    weights and KV cache do not fit the devices; otherwise report ``fits=False``. ``engine``
    plays the stages on the simpy engine instead of the (equal, faster) list schedule;
    ``timeline`` keeps the spans of the first stage (off for searches)."""
    check_layout(model, layout)
    graph: StepGraph = build_step(model, layout, spec)
    mem = graph.weight_bytes_per_device + graph.kv_bytes_per_device
    fits = mapper.fits(mem)
    mapper = mapper.for_resident(mem)  # e.g. a wafer packs its cores denser when it must
    if strict and not fits:
        raise capacity_error(
            f"weights + KV cache with {layout}", mem * layout.devices, mapper, layout.devices
        )
    timings, records = time_ops(graph, mapper)
    n_mb = graph.micro_batches if layout.pp == 1 else 1  # a pipeline stage runs one at a time
    play = play_stages(graph, timings, n_mb, engine, timeline)
    round_t, ttft, bubble = pipeline_times(layout.pp, graph.micro_batches, play.stage_time_s)
    tp = step_throughput(spec, round_t, ttft, mtp_acceptance)
    breakdown, shares, bound = step_breakdown(records[play.slowest], n_mb, mapper, play)
    notes = list(graph.notes) + ([bubble] if bubble else [])
    for t in timings.values():
        notes += [n for n in t.notes if n not in notes and not n.startswith("kernel ")]
    if n_mb > 1:
        notes.append(f"dual micro-batch overlap: {n_mb} micro-batches; weights are read once each")
    return StepResult(
        model=model.name,
        device=device_name or mapper.device.name,
        phase=spec.phase,
        layout=layout,
        devices=layout.devices,
        batch=spec.batch,
        context=spec.context,
        dtype=spec.dtype,
        step_time_s=round_t if spec.phase == "decode" else ttft,
        stage_time_s=play.stage_time_s,
        tokens_per_step=tp.tokens_per_step,
        time_per_token_s=tp.time_per_token_s,
        tokens_per_s_per_user=tp.per_user,
        tokens_per_s_total=tp.total,
        ttft_s=ttft,
        memory_per_device_bytes=mem,
        weight_bytes_per_device=graph.weight_bytes_per_device,
        kv_bytes_per_device=graph.kv_bytes_per_device,
        capacity_bytes=mapper.capacity_bytes,
        fits=fits,
        breakdown_s=breakdown,
        comm_s=play.comm_s,
        comm_exposed_s=play.exposed_s,
        comm_hidden_s=play.hidden_s,
        bound=bound,
        bound_shares=shares,
        micro_batches=n_mb if layout.pp == 1 else graph.micro_batches,
        accepted_tokens_per_step=tp.accepted,
        ops=tuple(r for recs in records for r in recs.values()),
        timeline=play.spans,
        notes=tuple(notes),
        trust=_trust(records, mapper, device_name),
    )


def _trust(records: Any, mapper: Mapper, device_name: str | None) -> Trust:
    """The step's error bar (see :attr:`StepResult.trust`)."""
    from hwsim.sim.trust import step_trust, trust_for

    dev = mapper.device
    if dev.kind != "gpu":
        return trust_for("step", device_name or dev.name)
    return step_trust(((r.timing, r.count) for recs in records for r in recs.values()), dev.arch)


def uses_comm(graph: StepGraph) -> bool:
    """Whether a step graph has any collective."""
    return any(isinstance(so.op, Collective) for st in graph.stages for lg in st for so in lg.ops)


def auto_micro_batches(model: ModelConfig, layout: Layout, batch: int, phase: str) -> int:
    """Dual micro-batch when there is communication to hide and at least two sequences per
    replica (decode) or one long prompt (prefill): 2, else 1."""
    if layout.pp > 1 or layout.devices == 1:
        return 1
    seqs = math.ceil(batch / layout.dp)
    return 2 if (seqs >= 2 and (layout.ep > 1 or layout.tp > 1)) else 1
