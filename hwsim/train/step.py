"""One training step of a model on a cluster, composed from the existing simulators.

:func:`simulate_train` is a pipeline of small parts:

1. resolve the model, device, cluster and mapper; check the layout and the batch
   (:func:`hwsim.plan.train_layout.check_train_layout`) and the memory per GPU
   (:func:`memory_per_gpu`; a layout that does not fit is refused with the arithmetic);
2. build each distinct layer's forward and backward passes (:mod:`hwsim.plan.train_step`) and
   time them once (:class:`hwsim.train.timing.Timer`: each distinct op once on the mapper, MoE
   all-to-alls on the flow simulator);
3. add up each pipeline chunk's pass costs (identical layers multiplied, never replayed);
4. play the schedule's tasks of stages × micro-batches on simpy
   (:func:`hwsim.train.pipeline.simulate_pipeline`);
5. data-parallel gradient reduction overlapped with the last backward, the optimizer, the
   parameter gather (:mod:`hwsim.train.dp`);
6. rates, FLOPs, MFU and the breakdown (:mod:`hwsim.train.result`); with ``timeline``, where
   each collective and optimizer step ran (:mod:`hwsim.train.events`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from hwsim.plan.train_layout import (
    TrainLayout,
    check_train_layout,
    chunk_layers,
    parse_train_layout,
)
from hwsim.plan.train_memory import MemoryBreakdown, stage_params
from hwsim.plan.train_step import (
    Passes,
    TrainOp,
    TrainSpec,
    embedding_passes,
    head_passes,
    layer_passes,
    p2p_bytes,
)
from hwsim.sim.mapper import Mapper, mapper_for
from hwsim.spec.model import ModelConfig, load_model_config
from hwsim.train.dp import (
    dp_cost,
    optimizer_s,
    reduce_finish,
    zero3_layer_exposure,
)
from hwsim.train.events import chunk_comm, dp_events, task_events, zero3_spans
from hwsim.train.memory import fit_error, memory_per_gpu, wgrad_keep_bytes
from hwsim.train.pipeline import PipelineResult, PipelineSpec, simulate_pipeline
from hwsim.train.profile import TrainingParams, training_params
from hwsim.train.request import TrainRequest
from hwsim.train.result import StepEvent, TrainResult, make_result
from hwsim.train.schedules import Task, rank_order
from hwsim.train.timing import CommSpan, PassCost, Timer, parse_routing, play_pair

if TYPE_CHECKING:
    from hwsim.spec.cluster import Cluster
    from hwsim.spec.device import Device

#: mappers by (device, cluster) identity, so repeated steps (search, validation) reuse timings
#: (the objects are kept with their mapper, so an id is never reused while cached)
_MAPPERS: dict[tuple[int, int], tuple[Device, Cluster | None, Mapper]] = {}


def clear_mapper_cache() -> None:
    """Forget every cached mapper (and so every op timing): a cold start, for benchmarks."""
    _MAPPERS.clear()


@dataclass(frozen=True)
class Target:
    """Where the step runs: a device, its cluster (or None) and their mapper."""

    device: Device
    cluster: Cluster | None
    mapper: Mapper
    params: TrainingParams


def resolve_target(
    req: TrainRequest, device: Device | None = None, cluster: Cluster | None = None
) -> Target:
    """The device (``device``, ``req.device`` or the cluster's), the cluster and a mapper
    (cached per device and cluster object)."""
    from hwsim.spec.cluster import load_cluster
    from hwsim.spec.load import load_device

    if cluster is None and req.cluster is not None:
        cluster = load_cluster(req.cluster)
    if device is None:
        device = load_device(req.device if req.device is not None else cluster.device)  # type: ignore[union-attr]
    key = (id(device), id(cluster))
    hit = _MAPPERS.get(key)
    if hit is None or hit[0] is not device or hit[1] is not cluster:
        if len(_MAPPERS) > 32:
            _MAPPERS.clear()
        hit = _MAPPERS[key] = (device, cluster, mapper_for(device, cluster))
    mapper = hit[2]
    return Target(device, cluster, mapper, training_params(device, req.profile))


def model_of(req: TrainRequest) -> ModelConfig:
    return req.model if isinstance(req.model, ModelConfig) else load_model_config(req.model)


def layout_of(req: TrainRequest) -> TrainLayout:
    if req.layout is None:
        return TrainLayout(dp=req.gpus, vpp=req.vpp or 1)
    return parse_train_layout(req.layout, req.vpp)


def train_spec(req: TrainRequest, target: Target) -> TrainSpec:
    return TrainSpec(
        seqlen=req.seqlen,
        micro_batch=req.micro_batch,
        dtype=req.dtype,
        recompute=req.recompute,
        sp=req.sp,
        tp_overlap=req.tp_overlap,
        devices_per_node=max(1, int(target.mapper.fabric.devices_per_node)),
        wire_dtype="fp8" if req.dtype == "fp8" else None,
        attention=req.attention,
        dropout=req.dropout,
    )


@dataclass(frozen=True)
class LayerSet:
    """The distinct passes of a step: dense and MoE layers, embedding and LM head."""

    dense: Passes
    moe: Passes | None
    embedding: Passes
    head: Passes

    def chunk(self, model: ModelConfig, chunks: int, pos: int) -> list[tuple[Passes, int]]:
        """(passes, repeat) of model chunk ``pos`` in forward order."""
        lo, hi = chunk_layers(model.layers, chunks, pos)
        out: list[tuple[Passes, int]] = [(self.embedding, 1)] if pos == 0 else []
        i = lo
        while i < hi:  # runs of consecutive layers of one kind
            kind = model.is_moe_layer(i)
            j = i
            while j < hi and model.is_moe_layer(j) == kind:
                j += 1
            out.append((self.moe if (kind and self.moe) else self.dense, j - i))
            i = j
        if pos == chunks - 1:
            out.append((self.head, 1))
        return out


def build_layers(model: ModelConfig, lay: TrainLayout, spec: TrainSpec, timer: Timer) -> LayerSet:
    """Each distinct layer's passes (MoE ones sized for the busiest rank's expert load)."""
    moe = None
    if model.moe is not None:
        m = model.moe
        tokens = max(1, spec.micro_batch * (spec.seqlen // lay.cp) // (lay.tp if spec.sp else 1))
        groups = m.topk_groups if m.n_groups > 1 else None
        load = timer.expert_load(lay.ep, tokens, model.hidden, m.n_routed_experts, m.top_k, groups)
        moe = layer_passes(model, lay, spec, True, load)
    return LayerSet(
        layer_passes(model, lay, spec, False), moe,
        embedding_passes(model, lay, spec), head_passes(model, lay, spec),
    )  # fmt: skip


@dataclass
class ChunkCosts:
    """Pass costs of every model chunk: forward, full backward, input-gradient backward, weight
    gradient; the activation bytes a forward keeps and a deferred weight gradient keeps
    (:func:`hwsim.train.memory.wgrad_keep_bytes`); and each chunk's distinct layers' pass
    costs in forward order with their repeat counts (``parts``: where its collectives run)."""

    fwd: list[PassCost]
    bwd: list[PassCost]
    bgrad: list[PassCost]
    wgrad: list[PassCost]
    saved: list[float]
    ops_fwd: list[list[TrainOp]]
    ops_bwd: list[list[TrainOp]]
    w_saved: list[float] = field(default_factory=list)
    parts: list[list[tuple[tuple[PassCost, PassCost, PassCost, PassCost], int]]] = field(
        default_factory=list
    )


def chunk_costs(
    model: ModelConfig, lay: TrainLayout, layers: LayerSet, timer: Timer, zero: int,
    split_w: bool, keep_ops: bool,
) -> ChunkCosts:  # fmt: skip
    """Each chunk's costs: its layers' pass costs times their repeat counts (no replay)."""
    cache: dict[int, tuple[PassCost, PassCost, PassCost, PassCost]] = {}
    out = ChunkCosts([], [], [], [], [], [], [])
    for pos in range(lay.chunks):
        f, b, bg, w = PassCost(), PassCost(), PassCost(), PassCost()
        saved = w_saved = 0.0
        ops_f: list[TrainOp] = []
        ops_b: list[TrainOp] = []
        parts: list[tuple[tuple[PassCost, PassCost, PassCost, PassCost], int]] = []
        for passes, n in layers.chunk(model, lay.chunks, pos):
            hit = cache.get(id(passes))
            if hit is None:
                pf, pb = timer.cost(passes.fwd), timer.cost(passes.bwd)
                pbg = timer.cost(passes.bgrad) if split_w else PassCost()
                pw = timer.cost(passes.wgrad) if split_w else PassCost()
                if passes.name == "moe layer":  # routing's host sync, forward and backward
                    ovh = float(timer.params.moe_layer_overhead.value)
                    for pc in (pf, pb, pbg):
                        pc.time_s += ovh
                        pc.compute["moe"] = pc.compute.get("moe", 0.0) + ovh
                if zero >= 3 and passes.name.endswith("layer"):
                    lp = _layer_params(model, lay, passes)
                    ef, eb = zero3_layer_exposure(timer, lay, lp, pf.time_s, pb.time_s)
                    for pc, e in ((pf, ef), (pb, eb), (pbg, eb)):
                        pc.time_s += e
                        pc.exposed["dp"] = pc.exposed.get("dp", 0.0) + e
                        pc.comm["dp"] = pc.comm.get("dp", 0.0) + e
                    if timer.spans:
                        zero3_spans(timer, lay, lp, pf, pb, pbg)
                hit = cache[id(passes)] = (pf, pb, pbg, pw)
            for acc, part in zip((f, b, bg, w), hit, strict=True):
                acc.add(part, n)
            parts.append((hit, n))
            saved += passes.saved_bytes * n
            w_saved += wgrad_keep_bytes(passes) * n
            if keep_ops:
                ops_f += list(passes.fwd) * n
                ops_b = list(passes.bwd) * n + ops_b
        for lst, v in ((out.fwd, f), (out.bwd, b), (out.bgrad, bg), (out.wgrad, w)):
            lst.append(v)
        out.saved.append(saved)
        out.w_saved.append(w_saved)
        out.ops_fwd.append(ops_f)
        out.ops_bwd.append(ops_b)
        out.parts.append(parts)
    return out


def _layer_params(model: ModelConfig, lay: TrainLayout, passes: Passes) -> float:
    from hwsim.plan.train_memory import layer_param_split

    moe = passes.name == "moe layer"
    i = next((j for j in range(model.layers) if model.is_moe_layer(j) == moe), 0)
    d, e = layer_param_split(model, lay, i)
    return d + e


@dataclass
class Prepared:
    """A step resolved, checked and timed, before its pipeline is played."""

    req: TrainRequest
    model: ModelConfig
    target: Target
    layout: TrainLayout
    m: int
    spec: TrainSpec
    timer: Timer
    layers: LayerSet
    mem: MemoryBreakdown
    costs: ChunkCosts
    t0: float
    _pairs: dict[tuple[int, int], PassCost] = field(default_factory=dict)
    _comm: dict[tuple[int, int], list[CommSpan]] = field(default_factory=dict)

    def task_cost(self, t: Task) -> PassCost:
        """The pass cost of one pipeline task (DualPipe pairs played once per pair)."""
        c = self.costs
        if t.kind == "F":
            return c.fwd[t.pos]
        if t.kind == "B":
            return c.bgrad[t.pos] if (t.zb or self.req.schedule == "zb") else c.bwd[t.pos]
        if t.kind == "W":
            return c.wgrad[t.pos]
        key = (t.pos, t.pos2)
        hit = self._pairs.get(key)
        if hit is None:
            hit = self._pairs[key] = play_pair(c.ops_fwd[t.pos], c.ops_bwd[t.pos2], self.timer)
        return hit

    def task_comm(self, t: Task) -> list[CommSpan]:
        """When each collective of one task runs, in seconds from the task's start: its
        chunk's layers' passes laid end to end (:func:`hwsim.train.events.chunk_comm`); a
        DualPipe pair's as :func:`play_pair` played them."""
        if t.kind == "FB":
            return self.task_cost(t).spans
        zb = t.zb or self.req.schedule == "zb"
        which = {"F": 0, "B": 2 if zb else 1, "W": 3}[t.kind]
        key = (which, t.pos)
        hit = self._comm.get(key)
        if hit is None:
            hit = self._comm[key] = chunk_comm(self.costs.parts[t.pos], which)
        return hit


def prepare(
    req: TrainRequest, *, device: Device | None = None, cluster: Cluster | None = None,
    strict: bool = True,
) -> Prepared:  # fmt: skip
    """Steps 1-3 of the module docstring: checked, memory counted, every chunk's passes timed."""
    t0 = time.perf_counter()
    model = model_of(req)
    target = resolve_target(req, device, cluster)
    lay = layout_of(req)
    split = check_train_layout(model, lay, req.gpus, req.seqlen, req.global_batch,
                               req.micro_batch, req.schedule, req.pp_split)  # fmt: skip
    spec = train_spec(req, target)
    routing = parse_routing(req.routing)
    if req.node_limit is not None:
        routing = replace(routing, node_limit=req.node_limit)
    timer = Timer(target.mapper, target.params, routing, spans=req.timeline)
    layers = build_layers(model, lay, spec, timer)
    mem = memory_per_gpu(model, lay, req, split.micro_batches, layers,
                         target.mapper.capacity_bytes,
                         float(target.params.reserved_memory.value))  # fmt: skip
    if strict and not mem.fits:
        raise fit_error(mem, lay, req, target.device)
    split_w = req.schedule in ("zb", "dualpipe")
    costs = chunk_costs(model, lay, layers, timer, req.zero, split_w, req.schedule == "dualpipe")
    return Prepared(req, model, target, lay, split.micro_batches, spec, timer, layers, mem,
                    costs, t0)  # fmt: skip


def memory_only(req: TrainRequest) -> MemoryBreakdown:
    """Memory per GPU by the arithmetic alone (balanced expert load, nothing timed): the
    search's first filter."""
    model = model_of(req)
    target = resolve_target(req)
    lay = layout_of(req)
    split = check_train_layout(model, lay, req.gpus, req.seqlen, req.global_batch,
                               req.micro_batch, req.schedule, req.pp_split)  # fmt: skip
    spec = train_spec(req, target)
    layers = LayerSet(
        layer_passes(model, lay, spec, False),
        layer_passes(model, lay, spec, True) if model.moe is not None else None,
        embedding_passes(model, lay, spec),
        head_passes(model, lay, spec),
    )
    return memory_per_gpu(model, lay, req, split.micro_batches, layers,
                          target.mapper.capacity_bytes,
                          float(target.params.reserved_memory.value))  # fmt: skip


def busy_bound_s(p: Prepared) -> float:
    """A lower bound on the step time without playing the pipeline: the busiest rank's tasks
    back to back (every chunk's forward and backward for every micro-batch), plus the per-step
    overhead. The makespan can only be longer (bubbles, waits)."""
    busy = 0.0
    for r in range(p.layout.pp):
        busy = max(busy, sum(p.task_cost(t).time_s for t in _rank_tasks(
            p.req.schedule, p.layout, p.m, r)))  # fmt: skip
    return busy + float(p.target.params.step_overhead.value)


def play(p: Prepared) -> TrainResult:
    """Steps 4-6: the pipeline on simpy (or its exact list schedule), DP and the result."""
    fab = p.target.mapper.fabric
    eff = float(p.target.params.collective_efficiency.value)
    lay = p.layout
    inter = lay.stage_gpus >= fab.devices_per_node
    pspec = PipelineSpec(
        p.req.schedule, lay.pp, lay.vpp, p.m,
        duration=lambda t: p.task_cost(t).time_s,
        saved=lambda pos: p.costs.saved[pos],
        p2p_bytes=p2p_bytes(p.model, lay, p.spec) if lay.pp > 1 else 0.0,
        p2p_Bps=(fab.inter_Bps if inter else fab.intra_Bps) * eff,
        p2p_latency_s=fab.inter_latency_s if inter else fab.intra_latency_s,
        keep_log=p.req.timeline,
        w_saved=lambda pos: p.costs.w_saved[pos],
    )  # fmt: skip
    pipe = simulate_pipeline(pspec)
    return _finish(p, pipe)


def simulate_train(
    req: TrainRequest, *, device: Device | None = None, cluster: Cluster | None = None,
    strict: bool = True,
) -> TrainResult:  # fmt: skip
    """Simulate one training step (module docstring). ``strict``: refuse a layout that does
    not fit in memory (else report ``fits = False``)."""
    return play(prepare(req, device=device, cluster=cluster, strict=strict))


def _finish(prep: Prepared, pipe: PipelineResult) -> TrainResult:
    """Data parallelism, the optimizer and the result (with ``timeline``, every collective's
    and optimizer step's interval on each rank: :mod:`hwsim.train.events`)."""
    req, model, lay, timer, target = prep.req, prep.model, prep.layout, prep.timer, prep.target
    log: list[StepEvent] | None = [] if req.timeline else None
    end_dp = 0.0
    opt_end = 0.0
    ag_exposed = 0.0
    for r in range(lay.pp):
        p = stage_params(model, lay, r, req.schedule)
        dc = dp_cost(timer, lay, p, req.zero)
        windows = list(pipe.last_grad[r].values())
        buckets: list[tuple[float, float]] | None = [] if log is not None else None
        fin = reduce_finish(windows, dc.grad_reduce_s, dc.buckets, req.dp_overlap, pipe.end_s[r],
                            buckets)  # fmt: skip
        done = max(pipe.end_s[r], fin)
        end_dp = max(end_dp, done)
        opt = optimizer_s(timer, lay, p, req.zero)
        opt_end = max(opt_end, done + opt)
        first = 0.0
        if dc.param_gather_s > 0:
            first = dc.param_gather_s / max(1, dc.buckets) if req.dp_overlap else dc.param_gather_s
            ag_exposed = max(ag_exposed, first)
        if log is not None:
            log += dp_events(req, r, dc.param_gather_s, buckets or [], done, opt, first)
    busiest = max(range(lay.pp), key=lambda r: pipe.busy_s[r])
    per_rank = PassCost()
    for t in _rank_tasks(req.schedule, lay, prep.m, busiest):
        per_rank.add(prep.task_cost(t))
    notes = list(timer.notes)
    if log is not None:
        log = task_events(pipe, prep.task_comm, notes) + log
    return make_result(
        req=req, model=model, device=target.device, mapper=target.mapper, layout=lay, m=prep.m,
        spec=prep.spec, mem=prep.mem, pipe=pipe, busiest=busiest, rank_cost=per_rank,
        dp_exposed_s=max(0.0, end_dp - pipe.makespan_s), optimizer_s=opt_end - end_dp,
        param_gather_s=ag_exposed, overhead_s=float(target.params.step_overhead.value),
        notes=notes, wall_s=time.perf_counter() - prep.t0, events=log,
    )  # fmt: skip


def _rank_tasks(schedule: str, lay: TrainLayout, m: int, rank: int) -> list[Task]:
    """The tasks one rank runs, in its schedule's order."""
    return rank_order(schedule, lay.pp, lay.vpp, m, rank)
