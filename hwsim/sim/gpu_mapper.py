"""The GPU mapper: whole-model ops timed by the simpy GPU simulators.

* GEMMs: :func:`hwsim.sim.gpu_gemm.simulate_gemm` (a grouped GEMM over ``count`` experts as
  one GEMM with ``count`` times the columns);
* attention: :func:`hwsim.sim.gpu_attention.simulate_attention`, the fastest kernel profiled
  for the architecture, its KV tile tuned;
* streaming ops: :func:`hwsim.sim.streaming.simulate_op`;
* MoE all-to-alls with a cluster: routed token by token on the cluster graph
  (:func:`hwsim.sim.alltoall.simulate_alltoall`, DeepEP kernels).

The roofline (:class:`hwsim.sim.mapper.Mapper`'s default) times an op only for a modelling
reason the timing's notes state: weights that a GPU cannot stream, a shape a simulator
refuses, an all-to-all without a cluster or beyond the flow budget. A missing or broken
simulator is an import error, never a quiet fallback.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from hwsim.plan.attention import AttentionShape, choose_blocks, onchip_budget_bytes
from hwsim.plan.moe import DispatchPlan, synthetic_dispatch_plan
from hwsim.plan.workload import Attention, Collective, Elementwise, Gemm, OpTiming, op_name
from hwsim.sim.alltoall import simulate_alltoall
from hwsim.sim.gpu_attention import simulate_attention
from hwsim.sim.gpu_fixed import fixed_note, load_fixed_costs
from hwsim.sim.gpu_gemm import simulate_gemm
from hwsim.sim.gpu_paths import register_limits
from hwsim.sim.kernel_profiles import load_attention_profile
from hwsim.sim.mapper import Mapper, override, register_mapper, with_notes
from hwsim.sim.streaming import simulate_op
from hwsim.sim.topology import Topology, build_topology
from hwsim.spec.device import Device
from hwsim.spec.errors import SpecError
from hwsim.spec.fit import human_bytes

if TYPE_CHECKING:
    from hwsim.spec.cluster import Cluster

#: Most (sender, receiver) flows an all-to-all may have for the GPU mapper to simulate it flow
#: by flow; estimated as ranks x min(ranks, tokens x top-k). EP320 decode (~52k flows) takes
#: ~1.5 s of CPU per phase, EP320 prefill (~83k) ~1.4 s, 1024 GPUs at 256 tokens (262k) ~5 s.
#: Beyond it the alpha-beta model is used and noted: it is 0.55-0.65x the flow time for
#: DeepEP low-latency decode at EP64-320 (optimistic), 1.7-1.9x for normal prefill at EP<=256.
ALLTOALL_SIM_MAX_FLOWS = 2**18
#: DeepEP's low-latency kernels serve decode batches up to this many tokens per rank.
LOW_LATENCY_TOKENS = 128


class GpuMapper(Mapper):
    """GPUs: the simpy GPU simulators (see the module docstring).

    Kernel times exclude host launch overhead (``kernel_s``): serving engines replay decode
    steps as CUDA graphs; each GEMM and streaming kernel pays the graph's per-kernel gap, small
    intra-node collectives the nccl-tests floor, and MoE routers their routing kernels
    (:mod:`hwsim.sim.gpu_fixed`). Decode attention packs the query heads that share a KV head (GQA
    group, or all MLA heads on one latent) into the rows of one tile, as FlashDecoding/FlashMLA
    do, and takes the fastest of the kernels profiled for the architecture."""

    unit = "GPU"

    def __init__(self, device: Device, cluster: Cluster | None = None) -> None:
        super().__init__(device, cluster)
        self._topologies: dict[int, Topology] = {}
        self._plans: dict[tuple[int | None, ...], DispatchPlan] = {}
        self.fixed = load_fixed_costs(device.arch)

    @override
    def gemm(self, op: Gemm) -> OpTiming:
        if op.weights == "streamed":
            return _noted(
                self.gemm_roofline(op),
                "GPU weights are resident in HBM; 'streamed' timed by roofline",
            )
        # a grouped GEMM over `count` experts moves the same weights and does the same work as
        # one GEMM with `count` times the columns (one launch, tiles of all experts in waves)
        try:
            r = simulate_gemm(self.device, op.m, op.n * op.count, op.k, op.dtype)
        except SpecError as err:
            return _noted(self.gemm_roofline(op), f"GEMM simulator: {err}; roofline used")
        gap = self.fixed.graph_kernel_gap.value
        notes = [fixed_note("kernel gaps", gap, "CUDA graph replay, 1 kernel")]
        extra = gap
        if op.name == "router":  # top-k, permute and un-permute run before/after the experts
            routing = self._routing_s(op)
            notes.append(fixed_note("MoE routing", routing, "top-k, permute, un-permute"))
            extra += routing
        return OpTiming(
            op.name,
            r.kernel_s + extra,
            r.bound,
            dict(r.bytes),
            r.flops,
            r.events,
            tuple(notes),
            "sim:gpu_gemm",
        )

    def _routing_s(self, router: Gemm) -> float:
        """The MoE routing kernels after a router GEMM (tokens × experts logits, hidden
        ``router.k``): top-k over the logits (a softmax-shaped pass), then ``n - 1`` token
        copies into and out of expert order (add-shaped passes), each with its kernel gap."""
        n = int(self.fixed.moe_routing_kernels.value)
        gap = self.fixed.graph_kernel_gap.value
        shapes = [("softmax", router.m, router.n)] + [("add", router.m, router.k)] * (n - 1)
        total = 0.0
        for kind, rows, cols in shapes[:n]:
            try:
                total += simulate_op(self.device, kind, rows, cols, router.dtype).kernel_s + gap
            except SpecError:
                total += gap
        return total

    @override
    def elementwise(self, op: Elementwise) -> OpTiming:
        try:
            r = simulate_op(self.device, op.op, op.rows, op.cols, op.dtype)
        except SpecError as err:
            return _noted(
                self.elementwise_roofline(op), f"streaming-op simulator: {err}; roofline used"
            )
        gap = self.fixed.graph_kernel_gap.value
        return OpTiming(
            op_name(op),
            r.kernel_s + gap,
            r.bound,
            dict(r.bytes),
            op.flops,
            r.events,
            (fixed_note("kernel gaps", gap, "CUDA graph replay, 1 kernel"),),
            "sim:streaming",
        )

    @override
    def attention(self, op: Attention) -> OpTiming:
        s = op.shape
        shape = s
        if op.phase == "decode" and s.heads > s.kv_heads:
            shape = AttentionShape(
                batch=s.batch,
                heads=s.kv_heads,
                kv_heads=s.kv_heads,
                seqlen_q=s.group * s.seqlen_q,
                seqlen_kv=s.seqlen_kv,
                head_dim=s.head_dim,
                head_dim_v=s.dv,
                causal=False,
                dtype=s.dtype,
                kv_shared=op.latent_kv,  # MLA: V is read from the cached latent K (FlashMLA)
            )
        kernels = ["fa3", "fa2"] if self.device.arch == "hopper" else ["fa2"]
        if op.phase == "decode":
            kernels.append("flash-decoding")
        best, best_kernel, errors = None, "", []
        for kern in kernels:  # each kernel with its default plan
            try:
                r = simulate_attention(self.device, shape, kern)
            except SpecError as err:
                errors.append(f"{kern}: {err}")
                continue
            if best is None or r.time_s < best.time_s:
                best, best_kernel = r, kern
        if best is None:
            return _noted(
                self.attention_roofline(op),
                f"attention simulator: {'; '.join(errors)}; roofline used",
            )
        for block_kv in self._smaller_kv_tiles(shape, best_kernel):  # the winner's tile, tuned
            r = simulate_attention(self.device, shape, best_kernel, block_kv=block_kv)
            if r.time_s < best.time_s:
                best = r
        lo = load_attention_profile(best.kernel, self.device.arch).launch_overhead_s
        gaps = lo * len(best.kernels)  # already in the kernel time: labelled, not added
        notes = [
            f"kernel {best.kernel}",
            fixed_note("kernel gaps", gaps, "attention launch gaps, in the kernel time"),
            *best.notes,
        ]
        if op.latent_kv:
            notes.append(f"MLA: V read from the latent K ({human_bytes(op.kv_bytes)} of cache)")
        return OpTiming(
            op.name,
            best.time_s,
            best.bound,
            dict(best.bytes),
            best.flops,
            best.events,
            tuple(notes),
            "sim:gpu_attention",
        )

    def _smaller_kv_tiles(self, shape: AttentionShape, kernel: str) -> list[int]:
        """KV tiles below the default plan's (the largest that fits SMEM) worth timing: the
        tile the planner would take with 1/2, 1/4 … of the SMEM, as serving engines tune
        attention per GPU. Twice the SMEM only adds candidates, so a what-if with more does
        not pick a slower plan (the largest tile alone left fewer KV blocks to spread over the
        SMs: 2x SMEM made H100 decode attention 0.3% and causal prefill 2.7% slower). Tuned
        for the fastest kernel only, which keeps the cost at a few simulations per op;
        ``hwsim attention`` and the FA3 validation time the default plan."""
        # the kernel's own buffering depth, so every candidate fits SMEM as the plan builds it
        prof = load_attention_profile(kernel, self.device.arch)
        stages = int(prof.stages.value)
        acc = register_limits(self.device, shape, prof)[0]  # the register file bounds it too
        budget, _, _ = onchip_budget_bytes(self.device)
        tiles: set[int] = set()
        while True:  # down to the smallest budget that still holds a 16x16 tile
            try:
                tiles.add(choose_blocks(shape, budget, stages, acc_budget_bytes=acc)[1])
            except SpecError:
                break
            budget /= 2
        largest = max(tiles, default=0)
        return sorted(t for t in tiles if t < largest)

    @override
    def collective(self, op: Collective) -> OpTiming:
        """MoE dispatch/combine routed token by token on the cluster graph (DeepEP kernels:
        low-latency for decode-sized batches across nodes, normal otherwise); other
        collectives by the alpha-beta model on the fabric."""
        tr = op.traffic
        if op.kind != "all-to-all" or tr is None:
            return self._with_floor(op, super().collective(op))
        if self.cluster is None:
            return _noted(
                super().collective(op), "no cluster given: all-to-all by the alpha-beta model"
            )
        flows = op.group * min(op.group, tr.tokens_per_rank * tr.top_k)
        if flows > ALLTOALL_SIM_MAX_FLOWS:
            return _noted(
                super().collective(op),
                f"EP{op.group} all-to-all by the alpha-beta model (~{flows} flows, over the flow "
                f"simulator's budget of {ALLTOALL_SIM_MAX_FLOWS}; optimistic for low-latency "
                "decode kernels by up to ~1.8x; hwsim moe runs it)",
            )
        per = max(1, self.fabric.devices_per_node)
        nodes = math.ceil(op.group / per)
        kernel = (
            "low-latency" if (tr.tokens_per_rank <= LOW_LATENCY_TOKENS and nodes > 1) else "normal"
        )
        key = (op.group, tr.tokens_per_rank, tr.hidden, tr.n_experts, tr.top_k, tr.topk_groups)
        try:
            if nodes not in self._topologies:
                # the mapper's device, not the one the cluster YAML names: a what-if device
                # (faster NVLink ports, more SMs) must time its own all-to-all
                self._topologies[nodes] = build_topology(self.cluster, nodes, self.device)
            if key not in self._plans:
                self._plans[key] = synthetic_dispatch_plan(
                    op.group, tr.tokens_per_rank, tr.hidden, tr.n_experts, tr.top_k,
                    tr.topk_groups, routing="deepep", gpus_per_node=min(per, op.group),
                    n_redundant=max(0, op.group - tr.n_experts),
                )[0]  # fmt: skip
            r = simulate_alltoall(
                self._topologies[nodes], self._plans[key], kernel, tr.phase, dtype=tr.dtype
            )
        except SpecError as err:
            return _noted(super().collective(op), f"all-to-all simulator: {err}; alpha-beta used")
        return OpTiming(
            op.name or op.kind,
            r.time_s,
            r.bound,
            dict(r.bytes_by_link_kind),
            0.0,
            r.events,
            (
                f"DeepEP {kernel} kernel, EP{op.group} on {nodes} node(s) of "
                f"{self.cluster.name}: flow simulation",
            ),
            "sim:alltoall",
        )

    def _with_floor(self, op: Collective, t: OpTiming) -> OpTiming:
        """An intra-node all-reduce/all-gather/reduce-scatter takes at least the measured
        small-message time (nccl-tests with CUDA graphs); the alpha-beta model above it."""
        floor = self.fixed.collective_floor.value
        small = op.kind in ("all-reduce", "all-gather", "reduce-scatter")
        if not small or op.scope != "intra" or op.group <= 1 or t.time_s >= floor:
            return t
        note = fixed_note("collective floor", floor - t.time_s, "nccl-tests small-message time")
        return OpTiming(
            t.op, floor, "latency", t.bytes_by_level, t.flops, t.events, (*t.notes, note), t.source
        )


def _noted(t: OpTiming, note: str) -> OpTiming:
    """A base-class timing (roofline, alpha-beta) of an op the simulators do not time, with the
    note that says why."""
    return with_notes(t, (note,))


register_mapper("gpu", GpuMapper)
