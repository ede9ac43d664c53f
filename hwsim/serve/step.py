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
from dataclasses import dataclass, field
from typing import Any

import simpy

from hwsim.plan.model_step import CATEGORIES, StepGraph, StepSpec, build_step
from hwsim.plan.workload import Collective, OpTiming, op_name
from hwsim.serve.layout import Layout, check_layout
from hwsim.sim.engine import Engine
from hwsim.sim.mapper import Mapper, capacity_error
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
    notes: tuple[str, ...] = ()

    def to_dict(self, ops: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            k: getattr(self, k)
            for k in (
                "model",
                "device",
                "phase",
                "devices",
                "batch",
                "context",
                "dtype",
                "step_time_s",
                "stage_time_s",
                "tokens_per_step",
                "time_per_token_s",
                "tokens_per_s_per_user",
                "tokens_per_s_total",
                "ttft_s",
                "memory_per_device_bytes",
                "weight_bytes_per_device",
                "kv_bytes_per_device",
                "capacity_bytes",
                "fits",
                "comm_s",
                "comm_exposed_s",
                "comm_hidden_s",
                "bound",
                "bound_shares",
                "micro_batches",
                "accepted_tokens_per_step",
            )
        }
        out["layout"] = self.layout.to_dict()
        out["layout_str"] = str(self.layout)
        out["breakdown"] = dict(self.breakdown_s)
        out["tokens_per_s"] = self.tokens_per_s_total
        out["notes"] = list(self.notes)
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
    decode = spec.phase == "decode"
    notes = list(graph.notes)
    mem = graph.weight_bytes_per_device + graph.kv_bytes_per_device
    fits = mapper.fits(mem)
    mapper = mapper.for_resident(mem)  # e.g. a wafer packs its cores denser when it must
    if strict and not fits:
        raise capacity_error(
            f"weights + KV cache with {layout}", mem * layout.devices, mapper, layout.devices
        )
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
    mb = graph.micro_batches
    stage_times: list[float] = []
    exposed = hidden = comm_total = 0.0
    slowest = 0
    spans: list[Span] = []
    for s, stage in enumerate(graph.stages):
        play = stage_engine if engine else stage_schedule
        make, busy_c, busy_m, sp = play(
            stage, timings, mb if layout.pp == 1 else 1, timeline and s == 0
        )
        if s == 0:
            spans = sp
        if not stage_times or make > max(stage_times):  # the slowest stage sets the pace
            slowest = s
            exposed = max(0.0, make - busy_c)
            hidden = max(0.0, busy_m - exposed)
            comm_total = busy_m
        stage_times.append(make)
    stage_t = max(stage_times)
    if layout.pp > 1:
        m = graph.micro_batches
        round_t = max(m, layout.pp) * stage_t
        ttft = (layout.pp + m - 1) * stage_t
        if m < layout.pp:
            notes.append(
                f"pipeline bubble: {m} micro-batch(es) over {layout.pp} stages keep "
                f"{m / layout.pp:.0%} of the stages busy"
            )
    else:
        round_t = ttft = stage_t
    accepted = accepted_tokens(spec.q_len - 1, mtp_acceptance) if decode else 1.0
    if decode:
        tok_step = spec.batch * accepted
        per_user = accepted / round_t
        total = tok_step / round_t
        tpt = round_t / accepted
    else:
        tok_step = float(spec.batch * spec.context)
        total = tok_step / ttft
        per_user = spec.context / ttft
        tpt = ttft / spec.context
    breakdown = {c: 0.0 for c in CATEGORIES}
    shares: dict[str, float] = {}
    n_mb = mb if layout.pp == 1 else 1
    main = mapper.device.main_memory
    main_bw = mapper.device.level_bandwidth_Bps(main.name)
    for r in records[slowest].values():
        if r.category == "comm" or r.stream == "comm":
            continue
        dt = r.timing.time_s * r.count * n_mb
        breakdown[r.category] += dt
        cls = bound_class(r.timing, r.stream, main.name, main_bw)
        shares[cls] = shares.get(cls, 0.0) + dt
    breakdown["comm"] = comm_total
    breakdown = {k: v for k, v in breakdown.items() if v > 0}
    breakdown["comm_exposed"] = exposed
    if exposed > 0:
        shares["communication"] = exposed
    tot = sum(shares.values()) or 1.0
    shares = {k: v / tot for k, v in sorted(shares.items(), key=lambda kv: -kv[1])}
    bound = next(iter(shares), "none")
    for t in timings.values():
        notes += [n for n in t.notes if n not in notes and not n.startswith("kernel ")]
    if mb > 1 and layout.pp == 1:
        notes.append(f"dual micro-batch overlap: {mb} micro-batches; weights are read once each")
    return StepResult(
        model=model.name,
        device=device_name or mapper.device.name,
        phase=spec.phase,
        layout=layout,
        devices=layout.devices,
        batch=spec.batch,
        context=spec.context,
        dtype=spec.dtype,
        step_time_s=round_t if decode else ttft,
        stage_time_s=stage_t,
        tokens_per_step=tok_step,
        time_per_token_s=tpt,
        tokens_per_s_per_user=per_user,
        tokens_per_s_total=total,
        ttft_s=ttft,
        memory_per_device_bytes=mem,
        weight_bytes_per_device=graph.weight_bytes_per_device,
        kv_bytes_per_device=graph.kv_bytes_per_device,
        capacity_bytes=mapper.capacity_bytes,
        fits=fits,
        breakdown_s=breakdown,
        comm_s=comm_total,
        comm_exposed_s=exposed,
        comm_hidden_s=hidden,
        bound=bound,
        bound_shares=shares,
        micro_batches=mb if layout.pp == 1 else graph.micro_batches,
        accepted_tokens_per_step=accepted,
        ops=tuple(r for recs in records for r in recs.values()),
        timeline=tuple(spans),
        notes=tuple(notes),
    )


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
