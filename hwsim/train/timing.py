"""Time the passes of a training step: every distinct op once on the device's mapper, MoE
all-to-alls on the flow simulator with the chosen routing, and the cost of a pass as its ops
played in order with their overlap groups.

* Compute ops: the mapper's time (GEMM, attention and streaming simulators) plus the profile's
  ``kernel_gap`` (launch and synchronisation idle time per kernel).
* Collectives: the mapper's alpha-beta time on the cluster fabric divided by the profile's
  ``collective_efficiency`` (NCCL reaches a fraction of the link rate).
* MoE dispatch/combine: :func:`hwsim.sim.alltoall.simulate_alltoall` on the cluster graph with a
  routing plan drawn by :mod:`hwsim.plan.moe` (``deepep``, ``uniform``, ``zipf:S`` or a measured
  per-expert load vector, node-limited to ``topk_groups`` nodes): the slowest rank sets the
  time, and the busiest rank's expert load sizes its grouped GEMMs.
* An overlap group (consecutive ops sharing an id, :mod:`hwsim.plan.train_step`) takes
  ``max(C·(1+slowdown), M) + min(C, M)/chunks`` for compute ``C`` and communication ``M``;
  the communication beyond the compute is *exposed* and charged to its category.
* With ``spans`` (a step simulated for its timeline), every pass timed here also records
  when each of its collectives runs (:class:`CommSpan`, seconds from the pass's start), for
  the step's communication tracks: a lone collective where it is played; inside an overlap
  group, the collectives listed before the group's first compute op from the group's start,
  those after it ending with the group.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from hwsim.plan.train_step import TrainOp
from hwsim.plan.workload import Collective, Op
from hwsim.sim.mapper import Mapper
from hwsim.spec.errors import SpecError

if TYPE_CHECKING:
    from hwsim.plan.moe_dispatch import DispatchPlan
    from hwsim.sim.topology import Topology
    from hwsim.train.profile import TrainingParams

#: comm categories reported in the breakdown
COMM = ("tp", "cp", "ep", "pp", "dp")


@dataclass(frozen=True)
class Routing:
    """How MoE tokens pick experts: ``name`` is ``deepep``, ``uniform``, ``zipf:S`` or
    ``load`` (then ``load`` holds the measured per-expert token counts); ``node_limit``: the
    most nodes a token may reach (None: the model's ``topk_groups``; 0: unrestricted)."""

    name: str = "uniform"
    node_limit: int | None = None
    load: tuple[float, ...] = ()
    seed: int = 0


def parse_routing(text: str) -> Routing:
    """``deepep`` | ``uniform`` | ``zipf:S`` | ``load:a,b,c,…`` (tokens per expert) → Routing;
    SpecError naming ``--routing`` otherwise."""
    from hwsim.sim.alltoall_run import check_routing

    if text.startswith("load:"):
        try:
            vals = tuple(float(x) for x in text[5:].split(",") if x.strip())
        except ValueError:
            vals = ()
        if not vals or min(vals) < 0 or not math.isfinite(sum(vals)) or sum(vals) <= 0:
            raise SpecError(
                "expected load:n1,n2,... with one non-negative token count per expert",
                key="--routing",
            )
        return Routing("load", load=vals)
    check_routing(text)
    return Routing(text)


class CommSpan(NamedTuple):
    """One collective of a pass: its category (``tp``, ``cp``, ``ep``, ``dp``), name, start
    (seconds from the start of the pass, or of the step once placed) and duration, and the
    bytes each rank moves."""

    category: str
    name: str
    start_s: float
    dur_s: float
    nbytes: float = 0.0

    def shifted(self, by: float) -> CommSpan:
        return self._replace(start_s=self.start_s + by)


@dataclass
class PassCost:
    """A pass's cost on one GPU (seconds): wall time, compute busy time by category, the
    communication busy and exposed time by category, the hardware FLOPs of its ops, and when
    each of its collectives runs (``spans``, from the pass's start; module docstring)."""

    time_s: float = 0.0
    compute: dict[str, float] = field(default_factory=dict)
    comm: dict[str, float] = field(default_factory=dict)
    exposed: dict[str, float] = field(default_factory=dict)
    flops: float = 0.0
    spans: list[CommSpan] = field(default_factory=list)

    def add(self, other: PassCost, times: float = 1.0) -> PassCost:
        """``self + times · other`` (in place; returns self). Sums keep no ``spans``: a
        chunk's collectives are its passes' spans laid end to end
        (:meth:`hwsim.train.step.Prepared.task_comm`)."""
        self.time_s += other.time_s * times
        self.flops += other.flops * times
        for mine, theirs in ((self.compute, other.compute), (self.comm, other.comm),
                             (self.exposed, other.exposed)):  # fmt: skip
            for k, v in theirs.items():
                mine[k] = mine.get(k, 0.0) + v * times
        return self

    @property
    def compute_s(self) -> float:
        return sum(self.compute.values())

    @property
    def exposed_s(self) -> float:
        return sum(self.exposed.values())


#: per mapper (kept alive with its caches): all-to-all times, routing plans, topologies
_SHARED: dict[int, tuple[Mapper, dict[Any, float], dict[Any, Any], dict[int, Any]]] = {}


class Timer:
    """Times ops for one device (mapper), cluster and routing; each distinct op once."""

    def __init__(
        self, mapper: Mapper, params: TrainingParams, routing: Routing | None = None,
        spans: bool = False,
    ) -> None:  # fmt: skip
        self.mapper = mapper
        self.params = params
        self.routing = routing or Routing()
        self.spans = spans  #: record where each collective runs (module docstring)
        # routing plans, all-to-all times and topologies live as long as the mapper (which
        # the step layer caches per device and cluster), so searches and the validation fit
        # simulate each flow problem once
        caches = _SHARED.get(id(mapper))
        if caches is None or caches[0] is not mapper:
            if len(_SHARED) > 32:
                _SHARED.clear()
            caches = _SHARED[id(mapper)] = (mapper, {}, {}, {})
        self._a2a: dict[tuple[object, ...], float] = caches[1]
        self._plans: dict[tuple[object, ...], tuple[DispatchPlan, float]] = caches[2]
        self._topo: dict[int, Topology] = caches[3]
        self.notes: list[str] = []

    # ---- single ops ----------------------------------------------------------------------
    def seconds(self, o: TrainOp) -> float:
        op = o.op
        if isinstance(op, Collective):
            if op.kind == "all-to-all" and op.traffic is not None:
                return self.alltoall(op)
            t = self.mapper.time(op).time_s
            return t / float(self.params.collective_efficiency.value)
        t = self.mapper.time(op).time_s
        if t <= 0:
            return 0.0
        return t / float(self.params.compute_efficiency.value) + float(self.params.kernel_gap.value)

    def flops(self, op: Op) -> float:
        return 0.0 if isinstance(op, Collective) else float(self.mapper.time(op).flops)

    # ---- MoE all-to-alls -------------------------------------------------------------------
    def _groups(self, topk_groups: int | None) -> int | None:
        lim = self.routing.node_limit
        if lim is None:
            return topk_groups
        return None if lim == 0 else lim

    def plan(self, ep: int, tokens: int, hidden: int, experts: int, top_k: int,
             topk_groups: int | None) -> tuple[DispatchPlan, float]:  # fmt: skip
        """The routing plan of one EP group and the busiest rank's expert load (max/mean
        token-expert assignments per rank); cached."""
        from hwsim.plan.moe import routing_stats, synthetic_dispatch_plan

        groups = self._groups(topk_groups)
        r = self.routing
        key = (ep, tokens, hidden, experts, top_k, groups, r)
        hit = self._plans.get(key)
        if hit is None:
            per = max(1, min(self.mapper.fabric.devices_per_node, ep))
            if r.name == "load":
                plan, idx = _load_plan(ep, tokens, hidden, experts, top_k, groups, per, r)
            else:
                plan, _, idx = synthetic_dispatch_plan(
                    ep, tokens, hidden, experts, top_k, groups, r.name, per, seed=r.seed
                )
            stats = routing_stats(plan, idx, experts)
            hit = self._plans[key] = (plan, float(stats.imbalance_rank))
        return hit

    def alltoall(self, op: Collective) -> float:
        """One MoE dispatch or combine on the flow simulator (slowest rank), or the mapper's
        alpha-beta time without a cluster."""
        tr = op.traffic
        assert tr is not None
        cluster = self.mapper.cluster
        if cluster is None:
            if "no cluster" not in " ".join(self.notes):
                self.notes.append("no cluster given: MoE all-to-alls by the alpha-beta model")
            return self.mapper.time(op).time_s
        key = (op.group, tr, self.routing)
        hit = self._a2a.get(key)
        if hit is None:
            from hwsim.sim.alltoall import simulate_alltoall
            from hwsim.sim.topology import build_topology

            plan, _ = self.plan(op.group, tr.tokens_per_rank, tr.hidden, tr.n_experts, tr.top_k,
                                tr.topk_groups)  # fmt: skip
            per = max(1, self.mapper.fabric.devices_per_node)
            nodes = max(1, math.ceil(op.group / per))
            if nodes not in self._topo:
                self._topo[nodes] = build_topology(cluster, nodes, self.mapper.device)
            wire = "fp8" if tr.dtype.startswith("fp8") else "bf16"
            res = simulate_alltoall(self._topo[nodes], plan, "normal", tr.phase, dtype=wire)
            hit = self._a2a[key] = res.time_s
        return hit

    def expert_load(self, ep: int, tokens: int, hidden: int, experts: int, top_k: int,
                    topk_groups: int | None) -> float:  # fmt: skip
        """Busiest rank's token-expert assignments over the mean (1 without EP)."""
        if ep <= 1:
            return 1.0
        return self.plan(ep, tokens, hidden, experts, top_k, topk_groups)[1]

    # ---- passes ----------------------------------------------------------------------------
    def cost(self, ops: Sequence[TrainOp]) -> PassCost:
        """The ops played in order, overlap groups together (module docstring)."""
        out = PassCost()
        slow = float(self.params.overlap_slowdown.value)
        for group in overlap_groups(ops):
            comp = comm = 0.0
            chunks = 1
            comm_by: dict[str, float] = {}
            comp_by: dict[str, float] = {}
            head: list[tuple[TrainOp, float]] = []  # collectives before the first compute op
            tail: list[tuple[TrainOp, float]] = []  # and after it
            for o in group:
                t = self.seconds(o)
                out.flops += self.flops(o.op)
                if o.stream == "comm":
                    comm += t
                    comm_by[o.category] = comm_by.get(o.category, 0.0) + t
                    if self.spans:
                        (tail if comp_by else head).append((o, t))
                else:
                    comp += t
                    comp_by[o.category] = comp_by.get(o.category, 0.0) + t
                chunks = max(chunks, o.chunks)
            # compute under a collective runs slower (the communication kernels take SMs)
            scale = 1.0 + slow if (comp > 0 and comm > 0) else 1.0
            c_eff = comp * scale
            wall = max(c_eff, comm) + min(c_eff, comm) / chunks if scale > 1.0 else comp + comm
            exposed = wall - c_eff
            for k, v in comp_by.items():
                out.compute[k] = out.compute.get(k, 0.0) + v * scale
            for k, v in comm_by.items():
                out.comm[k] = out.comm.get(k, 0.0) + v
                if exposed > 0:
                    out.exposed[k] = out.exposed.get(k, 0.0) + exposed * v / comm
            # where the collectives run: from the group's start, or ending with it (wall ≥
            # comm, so the two runs never overlap)
            at = out.time_s
            for run in (head, tail):
                if run is tail:
                    at = out.time_s + wall - sum(t for _, t in tail)
                for o, t in run:
                    if t > 0:
                        out.spans.append(_span(o, at, t))
                    at += t
            out.time_s += wall
        return out


def overlap_groups(ops: Sequence[TrainOp]) -> Iterator[Sequence[TrainOp]]:
    """``ops`` cut into runs played together: consecutive ops sharing a non-zero ``overlap``
    group form one run, every other op is a run of its own."""
    i, n = 0, len(ops)
    while i < n:
        g = ops[i].overlap
        j = i + 1
        if g:
            while j < n and ops[j].overlap == g:
                j += 1
        yield ops[i:j]
        i = j


def _span(o: TrainOp, start: float, dur: float) -> CommSpan:
    op = o.op
    if isinstance(op, Collective):
        return CommSpan(o.category, op.name or op.kind, start, dur, float(op.bytes))
    return CommSpan(o.category, o.category, start, dur)


def play_pair(a: Sequence[TrainOp], b: Sequence[TrainOp], timer: Timer) -> PassCost:
    """Two passes of different micro-batches overlapped (DualPipe's forward-and-backward
    chunk): each pass's overlap groups and compute ops go to the compute stream, its
    standalone collectives (all-to-alls, point-to-point) to the communication stream; each op
    runs after its predecessor in its own chain, and the next op to run is the one that can
    start first (a list schedule). Exposed communication is the makespan minus the compute
    busy time."""
    chains = [_items(a, timer), _items(b, timer)]
    free = {"compute": 0.0, "comm": 0.0}
    ready = [0.0, 0.0]
    nxt = [0, 0]
    out = PassCost()
    inner: dict[str, float] = {}  # exposure inside overlap groups (TP under GEMMs)
    for ops in (a, b):
        part = timer.cost(ops)
        out.flops += part.flops
        for k, v in part.compute.items():
            out.compute[k] = out.compute.get(k, 0.0) + v
        for k, v in part.comm.items():
            out.comm[k] = out.comm.get(k, 0.0) + v
        for o in ops:  # lone collectives are re-played below; keep only in-group exposure
            if o.stream == "comm" and not o.overlap:
                part.exposed[o.category] = part.exposed.get(o.category, 0.0) - timer.seconds(o)
        for k, v in part.exposed.items():
            inner[k] = inner.get(k, 0.0) + max(0.0, v)
    busy_comp = 0.0
    comm_cats: dict[str, float] = {}
    spans: list[CommSpan] = []
    while True:
        live = [c for c in (0, 1) if nxt[c] < len(chains[c])]
        if not live:
            break

        # the item that can start first; on a tie, the one whose chain then communicates (its
        # collective goes out sooner, under the other chain's compute), as DualPipe orders them
        def key(x: int) -> tuple[float, int, int]:
            st = chains[x][nxt[x]][0]
            comm_next = nxt[x] + 1 < len(chains[x]) and chains[x][nxt[x] + 1][0] == "comm"
            return (max(ready[x], free[st]), 0 if comm_next else 1, x)

        c = min(live, key=key)
        stream, dur, cat, inner_spans = chains[c][nxt[c]]
        start = max(ready[c], free[stream])
        free[stream] = ready[c] = start + dur
        nxt[c] += 1
        if stream == "compute":
            busy_comp += dur
        else:
            comm_cats[cat] = comm_cats.get(cat, 0.0) + dur
        spans += [sp.shifted(start) for sp in inner_spans]
    out.time_s = max(ready)
    out.spans = sorted(spans, key=lambda sp: sp.start_s)
    out.exposed = dict(inner)
    exposed = max(0.0, out.time_s - busy_comp)
    tot = sum(comm_cats.values())
    if exposed > 0 and tot > 0:
        for k, v in comm_cats.items():
            out.exposed[k] = out.exposed.get(k, 0.0) + exposed * v / tot
    # what is left is idle time inside the pair with no communication to blame: none when the
    # chains are each sequential, so the parts add up to the makespan
    return out


def _items(ops: Sequence[TrainOp], timer: Timer) -> list[tuple[str, float, str, list[CommSpan]]]:
    """(stream, seconds, category, collectives from the item's start) items of a chain:
    overlap groups collapsed into one compute item of the group's wall time (with the
    collectives inside it); lone collectives on the comm stream."""
    out: list[tuple[str, float, str, list[CommSpan]]] = []
    for group in overlap_groups(ops):
        if len(group) == 1 and group[0].stream == "comm":
            t = timer.seconds(group[0])
            sp = [_span(group[0], 0.0, t)] if timer.spans else []
            out.append(("comm", t, group[0].category, sp))
        else:
            c = timer.cost(group)
            out.append(("compute", c.time_s, "compute", c.spans))
    return [x for x in out if x[1] > 0]


def _load_plan(
    ep: int,
    tokens: int,
    hidden: int,
    experts: int,
    top_k: int,
    groups: int | None,
    per: int,
    r: Routing,
) -> tuple[DispatchPlan, np.ndarray]:
    """A dispatch plan whose experts are picked in proportion to a measured load vector."""
    from hwsim.plan.moe import (
        even_token_src,
        place_experts,
        plan_dispatch,
        race_topk,
        resolve_replicas,
    )

    if len(r.load) != experts:
        raise SpecError(
            f"the load vector has {len(r.load)} entries, expected one per expert ({experts})",
            key="--routing",
        )
    pop = np.asarray(r.load, dtype=np.float64) + 1e-12
    pop /= pop.sum()
    n_nodes = max(1, ep // per)
    n_groups = n_nodes if experts % n_nodes == 0 else 1
    tg = n_groups if groups is None else max(1, min(n_groups, groups))
    idx = np.empty((ep * tokens, top_k), dtype=np.int64)
    for rank in range(ep):
        rng = np.random.default_rng([r.seed, rank])
        idx[rank * tokens : (rank + 1) * tokens] = race_topk(rng, tokens, pop, top_k, n_groups, tg)
    load = np.bincount(idx.reshape(-1), minlength=experts)
    placement = place_experts(experts, ep, per, 0, load)
    dst = resolve_replicas(idx, placement)
    src = even_token_src(idx.shape[0], ep)
    return plan_dispatch(dst, src, ep, per, hidden, "bf16"), idx
