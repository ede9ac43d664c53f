"""Mappers: how one device kind runs the common workload vocabulary, and the registry that picks
one per device.

A mapper places an op (:mod:`hwsim.plan.workload`: :class:`Gemm`, :class:`Attention`,
:class:`Elementwise`, :class:`MoE`, :class:`Collective`) on one device and says how long it takes
(:class:`OpTiming`), or refuses it with a :class:`SpecError` that says why and what would fit
("KV cache of 12 GB does not fit the 230 MB SRAM of 1 chip; needs ≥ 53 chips"). The serving
layer (``hwsim.serve``) composes whole-model steps from mapper timings and never branches on
the device kind.

Interface (:class:`Mapper`)::

    mapper.time(op) -> OpTiming            # cached per op; raises SpecError to refuse
    mapper.refuse_reason(op) -> str | None # why time(op) would refuse, without timing it
    mapper.capacity_bytes                  # bytes one device holds for weights + KV + activations
    mapper.fits(need_bytes, devices=1) -> bool
    mapper.kind, mapper.device, mapper.fabric, mapper.unit ("GPU", "chip", "wafer", "socket")

Registry::

    register_mapper(kind, factory)         # factory(device, cluster) -> Mapper
    mapper_for(device, cluster=None) -> Mapper

``gpu`` maps to :class:`GpuMapper`, which delegates to the GPU simulators (attention:
``hwsim.sim.gpu_attention``, GEMM: ``hwsim.sim.gpu_gemm``, streaming ops: ``hwsim.sim.streaming``)
and falls back to the analytic roofline, with a note in the timing, where a simulator or its
profile for the architecture is missing. The other kinds (``wafer_scale``, ``dataflow``, ``lpu``)
are registered by their modules (``hwsim.sim.wafer``, ``hwsim.sim.dataflow``, ``hwsim.sim.lpu``,
imported on first use); until one exists, :class:`RooflineMapper` times that kind and says so in
every timing's notes. Collectives use :mod:`hwsim.sim.collectives` (alpha-beta) on the device's
:class:`~hwsim.sim.collectives.Fabric`.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from hwsim.plan.attention import AttentionShape
from hwsim.plan.workload import (
    Attention,
    Collective,
    Elementwise,
    Gemm,
    MoE,
    Op,
    OpTiming,
    combine,
    op_name,
)
from hwsim.roofline.analytic import roofline
from hwsim.roofline.ops import SPECIAL, VECTOR, Kernel
from hwsim.roofline.ops import attention as attention_kernel
from hwsim.roofline.ops import gemm as gemm_kernel
from hwsim.sim.collectives import Fabric, collective_time, fabric_for

if TYPE_CHECKING:  # cluster specs are only read through their attributes
    from hwsim.spec.cluster import Cluster
from hwsim.spec.device import DTYPE_BYTES, Device
from hwsim.spec.errors import SpecError
from hwsim.spec.fit import human_bytes

__all__ = [
    "Attention",
    "Collective",
    "Elementwise",
    "Gemm",
    "GpuMapper",
    "Mapper",
    "MoE",
    "Op",
    "OpTiming",
    "RooflineMapper",
    "capacity_error",
    "mapper_for",
    "register_mapper",
    "registered_kinds",
]

#: Most (sender, receiver) flows an all-to-all may have for the GPU mapper to simulate it flow
#: by flow; estimated as ranks x min(ranks, tokens x top-k). EP320 decode (~52k flows) takes
#: ~1.5 s of CPU per phase, EP320 prefill (~83k) ~1.4 s, 1024 GPUs at 256 tokens (262k) ~5 s.
#: Beyond it the alpha-beta model is used and noted: it is 0.55-0.65x the flow time for
#: DeepEP low-latency decode at EP64-320 (optimistic), 1.7-1.9x for normal prefill at EP<=256.
ALLTOALL_SIM_MAX_FLOWS = 2**18
#: DeepEP's low-latency kernels serve decode batches up to this many tokens per rank.
LOW_LATENCY_TOKENS = 128

#: What one device of each kind is called in messages.
UNIT_NAMES: dict[str, str] = {
    "gpu": "GPU",
    "wafer_scale": "wafer",
    "dataflow": "socket",
    "lpu": "chip",
}

#: Vector FLOPs per element of the streaming ops (matches hwsim.plan.streaming's op table).
_ELEMENTWISE_FLOPS = {"rmsnorm": 5.0, "layernorm": 8.0, "softmax": 5.0, "swiglu": 6.0, "gelu": 10.0}


@runtime_checkable
class Mapper(Protocol):
    """What the serving layer needs from a device kind (see the module docstring)."""

    device: Device
    fabric: Fabric

    @property
    def kind(self) -> str: ...

    @property
    def unit(self) -> str: ...

    @property
    def capacity_bytes(self) -> float: ...

    def time(self, op: Op) -> OpTiming: ...

    def refuse_reason(self, op: Op) -> str | None: ...

    def fits(self, need_bytes: float, devices: int = 1) -> bool: ...

    def for_resident(self, resident_bytes: float) -> Mapper: ...


MapperFactory = Callable[[Device, "Cluster | None"], Mapper]
_FACTORIES: dict[str, MapperFactory] = {}
#: Modules that register the mapper of a kind when imported (issue 6 writes them).
_KIND_MODULES: dict[str, str] = {
    "wafer_scale": "hwsim.sim.wafer",
    "dataflow": "hwsim.sim.dataflow",
    "lpu": "hwsim.sim.lpu",
}


def register_mapper(kind: str, factory: MapperFactory) -> None:
    """Make ``factory(device, cluster)`` the mapper of devices of ``kind``."""
    _FACTORIES[kind] = factory


def registered_kinds() -> list[str]:
    """Kinds with a registered mapper (after trying to import the kind modules)."""
    for kind in _KIND_MODULES:
        _try_import(kind)
    return sorted(_FACTORIES)


def _try_import(kind: str) -> str | None:
    """Import the module that registers ``kind``; the reason it could not, else None."""
    module = _KIND_MODULES.get(kind)
    if kind in _FACTORIES or module is None:
        return None
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as err:
        if err.name != module:  # the module exists but is broken: say so, do not hide it
            raise
        return f"{module} not written yet"
    return None if kind in _FACTORIES else f"{module} registers no mapper"


def mapper_for(device: Device, cluster: Cluster | None = None) -> Mapper:
    """The mapper of ``device``'s kind; the roofline mapper (noted) where none is registered."""
    why = _try_import(device.kind)
    factory = _FACTORIES.get(device.kind)
    if factory is not None:
        return factory(device, cluster)
    return RooflineMapper(
        device,
        cluster,
        note=f"no {device.kind} mapper ({why or 'none registered'}): analytic roofline used",
    )


def capacity_error(what: str, need_bytes: float, mapper: Mapper, devices: int = 1) -> SpecError:
    """``KV cache of 12 GB does not fit the 230 MB SRAM of 1 chip; needs ≥ 53 chips``."""
    cap = mapper.capacity_bytes
    need = math.ceil(need_bytes / cap) if cap > 0 else 0
    unit = mapper.unit
    level = mapper.device.main_memory.name.upper()
    plural = "s" if devices != 1 else ""
    return SpecError(
        f"{what} of {human_bytes(need_bytes)} does not fit the {human_bytes(cap * devices)} "
        f"{level} of {devices} {unit}{plural}; needs ≥ {need} {unit}s"
    )


# ---------------------------------------------------------------------------------- roofline
class RooflineMapper:
    """Any device kind, timed by the hierarchical roofline (:mod:`hwsim.roofline`): an upper
    bound on speed with ideal-reuse tiling and every weight and KV byte resident in main memory
    (``streamed`` weights come from the outermost level instead)."""

    def __init__(self, device: Device, cluster: Cluster | None = None, note: str = "") -> None:
        self.device = device
        if cluster is not None:
            from hwsim.spec.cluster import for_device

            # a what-if device (2x NVLink ports) carries its ports into the node's links
            cluster = for_device(cluster, device)
        self.cluster = cluster
        self.fabric = fabric_for(device, self.cluster)
        self._notes: tuple[str, ...] = (note,) if note else ()
        self._cache: dict[Op, OpTiming] = {}
        self._topologies: dict[int, Any] = {}
        self._plans: dict[tuple[int | None, ...], Any] = {}

    @property
    def kind(self) -> str:
        return self.device.kind

    @property
    def unit(self) -> str:
        return UNIT_NAMES.get(self.device.kind, "device")

    @property
    def capacity_bytes(self) -> float:
        """Main-memory capacity of one device (HBM; SRAM on an LPU or a wafer)."""
        return self.device.level_capacity_bytes(self.device.main_memory.name)

    def fits(self, need_bytes: float, devices: int = 1) -> bool:
        return 0 <= need_bytes <= self.capacity_bytes * devices

    def refuse_reason(self, op: Op) -> str | None:
        return None

    def for_resident(self, resident_bytes: float) -> Mapper:
        """This mapper for a device that holds ``resident_bytes`` (weights and KV cache) in
        all: a spatial kind may lay each op out over more of the chip when the whole is
        larger (the wafer does). Most kinds time an op the same whatever else is resident."""
        return self

    def time(self, op: Op) -> OpTiming:
        """Time ``op`` (cached: ops are frozen and hashable)."""
        hit = self._cache.get(op)
        if hit is None:
            reason = self.refuse_reason(op)
            if reason:
                raise SpecError(reason)
            hit = self._time(op)
            if self._notes:
                hit = _with_notes(hit, self._notes)
            self._cache[op] = hit
        return hit

    def _time(self, op: Op) -> OpTiming:
        if isinstance(op, Gemm):
            return self.gemm_roofline(op)
        if isinstance(op, Attention):
            return self.attention_roofline(op)
        if isinstance(op, Elementwise):
            return self.elementwise_roofline(op)
        if isinstance(op, Collective):
            return collective_time(op, self.fabric)
        if isinstance(op, MoE):
            return combine(op.name, [self.time(p) for p in op.parts()], "composite:moe")
        raise SpecError(f"unknown op {op!r}")

    # --- analytic pieces (also the GPU mapper's fallbacks) ---
    def _result(self, k: Kernel, name: str, scale: float = 1.0) -> OpTiming:
        r = roofline(k, self.device)
        return OpTiming(
            op=name,
            time_s=r.time_s * scale,
            bound=r.bound,
            bytes_by_level={n: b * scale for n, b in r.level_bytes.items() if b > 0},
            flops=r.total_flops * scale,
            source="roofline",
        )

    def gemm_roofline(self, op: Gemm) -> OpTiming:
        k = gemm_kernel(op.m, op.n, op.k, self.device, op.dtype, name=op.name)
        if op.weights == "streamed":  # B comes from the outermost store, once
            outer = self.device.memory[-1].name
            lb = dict(k.level_bytes)
            lb[outer] = lb.get(outer, 0.0) + op.n * op.k * DTYPE_BYTES[op.dtype]
            k = Kernel(k.name, k.flops, lb, k.dtype, k.params, k.note)
        return self._result(k, op.name, op.count)

    def attention_roofline(self, op: Attention) -> OpTiming:
        s = op.shape
        dtype = "fp8" if s.dtype.startswith("fp8") else s.dtype
        k = attention_kernel(
            self.device,
            batch=s.batch,
            q_len=s.seqlen_q,
            kv_len=s.seqlen_kv,
            heads=s.heads,
            kv_heads=s.kv_heads,
            head_dim=s.head_dim,
            head_dim_v=s.dv,
            causal=s.causal and s.seqlen_q > 1,
            dtype=dtype,
            name=op.name,
        )
        return self._result(k, op.name)

    def elementwise_roofline(self, op: Elementwise) -> OpTiming:
        n = op.elements
        flops = {VECTOR: _ELEMENTWISE_FLOPS.get(op.op, 1.0) * n}
        if op.op in ("softmax", "swiglu", "gelu"):
            flops[SPECIAL] = n
        k = Kernel(op_name(op), flops, {self.device.main_memory.name: op.stream_bytes}, op.dtype)
        return self._result(k, op_name(op))


def _with_notes(t: OpTiming, notes: tuple[str, ...]) -> OpTiming:
    merged = tuple(dict.fromkeys((*t.notes, *notes)))
    return OpTiming(t.op, t.time_s, t.bound, t.bytes_by_level, t.flops, t.events, merged, t.source)


# ---------------------------------------------------------------------------------- GPU
class GpuMapper(RooflineMapper):
    """GPUs: the simpy GPU simulators, with the roofline as the noted fallback.

    Kernel times exclude host launch overhead (``kernel_s``): serving engines replay decode
    steps as CUDA graphs. Decode attention packs the query heads that share a KV head (GQA
    group, or all MLA heads on one latent) into the rows of one tile, as FlashDecoding/FlashMLA
    do, and takes the fastest of the kernels profiled for the architecture."""

    def _time(self, op: Op) -> OpTiming:
        try:
            if isinstance(op, Gemm):
                return self._gemm(op)
            if isinstance(op, Attention):
                return self._attention(op)
            if isinstance(op, Elementwise):
                return self._elementwise(op)
            if isinstance(op, Collective) and op.kind == "all-to-all" and op.traffic:
                return self._alltoall(op)
        except _Fallback as fb:
            base = super()._time(op)
            return _with_notes(base, (fb.note,))
        return super()._time(op)

    def _gemm(self, op: Gemm) -> OpTiming:
        sim = _load("hwsim.sim.gpu_gemm", "simulate_gemm")
        if op.weights == "streamed":
            raise _Fallback("GPU weights are resident in HBM; 'streamed' timed by roofline")
        # a grouped GEMM over `count` experts moves the same weights and does the same work as
        # one GEMM with `count` times the columns (one launch, tiles of all experts in waves)
        try:
            r = sim(self.device, op.m, op.n * op.count, op.k, op.dtype)
        except SpecError as err:
            raise _Fallback(f"GEMM simulator: {err}; roofline used") from None
        return OpTiming(
            op.name, r.kernel_s, r.bound, dict(r.bytes), r.flops, r.events, (), "sim:gpu_gemm"
        )

    def _elementwise(self, op: Elementwise) -> OpTiming:
        sim = _load("hwsim.sim.streaming", "simulate_op")
        try:
            r = sim(self.device, op.op, op.rows, op.cols, op.dtype)
        except SpecError as err:
            raise _Fallback(f"streaming-op simulator: {err}; roofline used") from None
        flops = _ELEMENTWISE_FLOPS.get(op.op, 1.0) * op.elements
        return OpTiming(
            op_name(op), r.kernel_s, r.bound, dict(r.bytes), flops, r.events, (), "sim:streaming"
        )

    def _attention(self, op: Attention) -> OpTiming:
        sim = _load("hwsim.sim.gpu_attention", "simulate_attention")
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
                r = sim(self.device, shape, kern)
            except SpecError as err:
                errors.append(f"{kern}: {err}")
                continue
            if best is None or r.time_s < best.time_s:
                best, best_kernel = r, kern
        if best is None:
            raise _Fallback(f"attention simulator: {'; '.join(errors)}; roofline used")
        for block_kv in self._smaller_kv_tiles(shape, best_kernel):  # the winner's tile, tuned
            r = sim(self.device, shape, best_kernel, block_kv=block_kv)
            if r.time_s < best.time_s:
                best = r
        notes = [f"kernel {best.kernel}", *best.notes]
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
        from hwsim.plan.attention import choose_blocks, onchip_budget_bytes
        from hwsim.sim.kernel_profiles import load_attention_profile

        # the kernel's own buffering depth, so every candidate fits SMEM as the plan builds it
        stages = int(load_attention_profile(kernel, self.device.arch).stages.value)
        budget, _, _ = onchip_budget_bytes(self.device)
        tiles: set[int] = set()
        while True:  # down to the smallest budget that still holds a 16x16 tile
            try:
                tiles.add(choose_blocks(shape, budget, stages)[1])
            except SpecError:
                break
            budget /= 2
        largest = max(tiles, default=0)
        return sorted(t for t in tiles if t < largest)

    def _alltoall(self, op: Collective) -> OpTiming:
        """MoE dispatch/combine routed token by token on the cluster graph (DeepEP kernels:
        low-latency for decode-sized batches across nodes, normal otherwise)."""
        tr = op.traffic
        assert tr is not None
        if self.cluster is None:
            raise _Fallback("no cluster given: all-to-all by the alpha-beta model")
        flows = op.group * min(op.group, tr.tokens_per_rank * tr.top_k)
        if flows > ALLTOALL_SIM_MAX_FLOWS:
            raise _Fallback(
                f"EP{op.group} all-to-all by the alpha-beta model (~{flows} flows, over the flow "
                f"simulator's budget of {ALLTOALL_SIM_MAX_FLOWS}; optimistic for low-latency "
                "decode kernels by up to ~1.8x; hwsim moe runs it)"
            )
        sim = _load("hwsim.sim.alltoall", "simulate_alltoall")
        plan_fn = _load("hwsim.plan.moe", "synthetic_dispatch_plan")
        topo_fn = _load("hwsim.sim.topology", "build_topology")
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
                self._topologies[nodes] = topo_fn(self.cluster, nodes, self.device)
            if key not in self._plans:
                self._plans[key] = plan_fn(
                    op.group, tr.tokens_per_rank, tr.hidden, tr.n_experts, tr.top_k,
                    tr.topk_groups, routing="deepep", gpus_per_node=min(per, op.group),
                    n_redundant=max(0, op.group - tr.n_experts),
                )[0]  # fmt: skip
            r = sim(self._topologies[nodes], self._plans[key], kernel, tr.phase, dtype=tr.dtype)
        except SpecError as err:
            raise _Fallback(f"all-to-all simulator: {err}; alpha-beta used") from None
        return OpTiming(
            op.name or op.kind,
            r.time_s,
            r.bound,
            dict(r.bytes_by_link_kind),
            0.0,
            r.events,
            (f"DeepEP {kernel} kernel, EP{op.group} on {nodes} node(s): flow simulation",),
            "sim:alltoall",
        )


class _Fallback(Exception):
    def __init__(self, note: str) -> None:
        super().__init__(note)
        self.note = note


def _load(module: str, attr: str) -> Callable[..., Any]:
    """A simulator entry point, or a fallback note if that simulator has not landed."""
    try:
        return getattr(importlib.import_module(module), attr)
    except (ModuleNotFoundError, AttributeError):
        raise _Fallback(f"{module}.{attr} not available; roofline used") from None


register_mapper("gpu", GpuMapper)
