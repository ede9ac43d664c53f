"""Mappers: how one device kind runs the common workload vocabulary, and the registry that picks
one per device.

A mapper places an op (:mod:`hwsim.plan.workload`: :class:`Gemm`, :class:`Attention`,
:class:`Elementwise`, :class:`MoE`, :class:`Collective`) on one device and says how long it takes
(:class:`OpTiming`), or refuses it with a :class:`SpecError` that says why and what would fit
("KV cache of 12 GB does not fit the 230 MB SRAM of 1 chip; needs ≥ 53 chips"). The serving
layer (``hwsim.serve``), the CLI and the report compose whole-model steps and drawings from the
interface below and never ask which class a mapper is.

:class:`Mapper` declares the whole interface, each part with a default, and is itself a working
mapper: the hierarchical roofline (:mod:`hwsim.roofline`) on any device. A device kind
subclasses it and overrides hooks (marked ``@override``); ``docs/architecture.md`` has the
table of hooks and capabilities and who overrides which.

* **op hooks** ``gemm``, ``attention``, ``elementwise``, ``collective``, ``moe``: dispatched in
  one place (:meth:`Mapper.time`, cached per op, after :meth:`Mapper.refuse_reason`);
* **capacity**: ``capacity_bytes``, ``fits``, ``refuse_reason``, ``for_resident``;
* **network**: ``domain_devices`` (devices one hop apart), ``tp_across_domains``;
* **calibration**: ``profile`` / ``profile_key`` / ``with_profile`` (the kind's fitted
  parameters, and a copy with some of them changed for a what-if);
* **placement**: ``placement_layout`` (the layout ``hwsim map`` draws) and ``placement`` (where
  things live, as plain data for printing and figures: :mod:`hwsim.sim.placement`).

Registry::

    register_mapper(kind, factory, section=None)   # factory(device, cluster) -> Mapper
    mapper_for(device, cluster=None) -> Mapper

The built-in kinds register themselves in their modules (``gpu``: :mod:`hwsim.sim.gpu_mapper`,
``wafer_scale``: :mod:`hwsim.sim.wafer`, ``dataflow``: :mod:`hwsim.sim.dataflow`, ``lpu``:
:mod:`hwsim.sim.lpu`), which :mod:`hwsim.sim.kinds` imports; a broken module is an import
error, never a quiet fallback.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, ClassVar

from typing_extensions import override

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
from hwsim.spec.device import DTYPE_BYTES, Device, register_device_kind
from hwsim.spec.errors import SpecError
from hwsim.spec.fit import human_bytes
from hwsim.spec.override_paths import PROFILE_PREFIX

if TYPE_CHECKING:  # cluster specs are only read through their attributes
    from hwsim.plan.layout import Layout
    from hwsim.plan.model_step import StepSpec
    from hwsim.sim.placement import Placement
    from hwsim.spec.cluster import Cluster
    from hwsim.spec.model import ModelConfig
    from hwsim.spec.quantity import Strict

__all__ = [
    "Attention",
    "Collective",
    "Elementwise",
    "Gemm",
    "Mapper",
    "MoE",
    "Op",
    "OpTiming",
    "capacity_error",
    "device_profile",
    "mapper_for",
    "mapper_profile",
    "no_profile_error",
    "override",
    "profile_message",
    "register_mapper",
    "registered_kinds",
]


class Mapper:
    """A device kind's mapper: every hook and capability with its default (the module
    docstring lists them). The defaults time ops by the hierarchical roofline: an upper bound on
    speed with ideal-reuse tiling and every weight and KV byte resident in main memory
    (``streamed`` weights come from the outermost level instead)."""

    #: what one device of the kind is called in messages ("GPU", "wafer", "chip")
    unit: ClassVar[str] = "device"
    #: whether tensor parallelism may span several fast domains (:attr:`domain_devices`). TP
    #: puts two all-reduces into every layer, which only a domain's own links carry cheaply, so
    #: the capacity planner keeps TP inside one domain unless the kind says otherwise
    tp_across_domains: ClassVar[bool] = False
    #: the kind's profile family (``devices/profiles/<family>.yaml``) read by ``profile.*``
    #: what-ifs; empty where the kind has none that what-ifs may change
    profile_family: ClassVar[str] = ""

    def __init__(self, device: Device, cluster: Cluster | None = None, note: str = "") -> None:
        self.device = device
        if cluster is not None:
            from hwsim.spec.cluster import for_device

            # a what-if device (2x NVLink ports) carries its ports into the node's links
            cluster = for_device(cluster, device)
        self.cluster = cluster
        self.fabric: Fabric = fabric_for(device, self.cluster)
        self._notes: tuple[str, ...] = (note,) if note else ()
        self._cache: dict[Op, OpTiming] = {}

    # ---- identity and capacity ---------------------------------------------------------
    @property
    def kind(self) -> str:
        return self.device.kind

    @property
    def capacity_bytes(self) -> float:
        """Main-memory capacity of one device (HBM; SRAM on an LPU or a wafer)."""
        return self.device.level_capacity_bytes(self.device.main_memory.name)

    def fits(self, need_bytes: float, devices: int = 1) -> bool:
        return 0 <= need_bytes <= self.capacity_bytes * devices

    def refuse_reason(self, op: Op) -> str | None:
        """Why :meth:`time` would refuse ``op`` on one device (weights or KV that do not fit),
        without timing it; None when it runs."""
        return None

    def for_resident(self, resident_bytes: float) -> Mapper:
        """This mapper for a device that holds ``resident_bytes`` (weights and KV cache) in
        all: a spatial kind may lay each op out over more of the chip when the whole is
        larger (the wafer does). Most kinds time an op the same whatever else is resident."""
        return self

    # ---- network -----------------------------------------------------------------------
    @property
    def domain_devices(self) -> int:
        """Devices one hop apart on the kind's fast links: a GPU node (NVLink/xGMI), a
        GroqNode, a SambaRack, one wafer."""
        return max(1, int(self.fabric.devices_per_node))

    # ---- calibration profile -----------------------------------------------------------
    @property
    def profile(self) -> Strict | None:
        """The kind's parameters that are not datasheet values (fitted efficiencies and
        latencies), which ``profile.*`` what-ifs change; None for a kind without any."""
        return None

    @property
    def profile_key(self) -> str:
        """Which entry of the profile file this device uses (its architecture by default)."""
        return self.device.arch

    def with_profile(self, overrides: Sequence[str]) -> Mapper:
        """A fresh mapper whose profile has ``overrides`` (``"path=value"``) applied; a kind
        without a profile refuses (:func:`no_profile_error`)."""
        raise no_profile_error(self)

    # ---- placement (hwsim map, the report) ---------------------------------------------
    def placement_layout(
        self, model: ModelConfig, spec: StepSpec, floor: Layout
    ) -> tuple[Layout, str | None]:
        """The layout ``hwsim map`` lays out when none is given, from the capacity floor's
        (``floor``), and a line of reasoning when the kind chose another one."""
        return floor, None

    def placement(
        self, model: ModelConfig, layout: Layout, spec: StepSpec, stage_time_s: float = 0.0
    ) -> Placement:
        """Where ``model`` lives on ``layout``'s devices, as plain data: a JSON summary and
        drawings (:mod:`hwsim.sim.placement`). The default lists one layer's operators and
        one device's memory; spatial kinds draw their regions, stages or chips."""
        from hwsim.sim.placement import default_placement

        return default_placement(self, model, layout, spec, stage_time_s)

    # ---- timing ------------------------------------------------------------------------
    def time(self, op: Op) -> OpTiming:
        """Time ``op`` (cached: ops are frozen and hashable): refused with the reason, else
        dispatched to the op's hook. The one place op types are told apart."""
        hit = self._cache.get(op)
        if hit is None:
            reason = self.refuse_reason(op)
            if reason:
                raise SpecError(reason)
            hit = self._dispatch(op)
            if self._notes:
                hit = with_notes(hit, self._notes)
            self._cache[op] = hit
        return hit

    def _dispatch(self, op: Op) -> OpTiming:
        if isinstance(op, Gemm):
            return self.gemm(op)
        if isinstance(op, Attention):
            return self.attention(op)
        if isinstance(op, Elementwise):
            return self.elementwise(op)
        if isinstance(op, Collective):
            return self.collective(op)
        if isinstance(op, MoE):
            return self.moe(op)
        raise SpecError(f"unknown op {op!r}")

    def gemm(self, op: Gemm) -> OpTiming:
        """A (grouped) GEMM; default: the roofline."""
        return self.gemm_roofline(op)

    def attention(self, op: Attention) -> OpTiming:
        """An attention call (prefill or decode); default: the roofline."""
        return self.attention_roofline(op)

    def elementwise(self, op: Elementwise) -> OpTiming:
        """A streaming op (norm, activation, residual add); default: the roofline."""
        return self.elementwise_roofline(op)

    def collective(self, op: Collective) -> OpTiming:
        """A collective over ``op.group`` devices; default: alpha-beta on the fabric."""
        return collective_time(op, self.fabric)

    def moe(self, op: MoE) -> OpTiming:
        """An MoE block; default: its parts (gate, experts, all-to-alls) one after another."""
        return combine(op.name, [self.time(p) for p in op.parts()], "composite:moe")

    # ---- the roofline (the defaults, and fallbacks for kinds that need one) ------------
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
        flops = {VECTOR: op.flops}
        if op.special_ops:
            flops[SPECIAL] = op.elements
        k = Kernel(op_name(op), flops, {self.device.main_memory.name: op.stream_bytes}, op.dtype)
        return self._result(k, op_name(op))


def with_notes(t: OpTiming, notes: Sequence[str]) -> OpTiming:
    """``t`` with ``notes`` appended (each once)."""
    merged = tuple(dict.fromkeys((*t.notes, *notes)))
    return OpTiming(t.op, t.time_s, t.bound, t.bytes_by_level, t.flops, t.events, merged, t.source)


def no_profile_error(mapper: Mapper) -> SpecError:
    """Why ``profile.*`` what-ifs do not apply to ``mapper``'s kind, naming the kinds they do
    apply to and their profile files."""
    import hwsim.sim.kinds  # noqa: F401  (registers the built-in kinds)

    fams = {k: f for k, f in _PROFILE_FAMILIES.items() if f}
    files = ",".join(sorted(fams.values()))
    return SpecError(
        f"{PROFILE_PREFIX}* paths change the parameters of the {_and(sorted(fams))} mappers "
        f"(devices/profiles/{{{files}}}.yaml); {mapper.device.name} is a '{mapper.kind}' device"
    )


def mapper_profile(mapper: Mapper) -> Strict:
    """``mapper``'s what-if profile; the :func:`no_profile_error` for a kind without one."""
    prof = mapper.profile
    if prof is None:
        raise no_profile_error(mapper)
    return prof


def device_profile(device: Device) -> tuple[Mapper, Strict]:
    """``device``'s mapper and its what-if profile (sweep ``profile.*`` axes); a SpecError for
    a kind without one."""
    mapper = mapper_for(device)
    return mapper, mapper_profile(mapper)


def profile_message(text: str, mapper: Mapper) -> str:
    """An override error about a profile, naming the profile (``the lpu profile of Groq LPU
    (tsp1)``) instead of its schema class."""
    prof = mapper_profile(mapper)
    where = f"in the {mapper.profile_family} profile of {mapper.device.name} ({mapper.profile_key})"
    return text.replace(f"for {type(prof).__name__}", where)


def _and(names: Sequence[str]) -> str:
    return ", ".join(names[:-1]) + f" and {names[-1]}" if len(names) > 1 else "".join(names)


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


# ---------------------------------------------------------------------------------- registry
MapperFactory = Callable[[Device, "Cluster | None"], Mapper]
_FACTORIES: dict[str, MapperFactory] = {}
#: each kind's profile family ('' for none), for the message of Mapper.with_profile
_PROFILE_FAMILIES: dict[str, str] = {}


def register_mapper(kind: str, factory: MapperFactory, section: str | None = None) -> None:
    """Make ``factory(device, cluster)`` the mapper of devices of ``kind``, and make ``kind``
    a device kind the spec loader accepts (``section``: the kind-specific section a device of
    it must have, e.g. ``mesh``; None for none). A new kind is its YAML, its mapper module
    (which calls this) and its tests."""
    register_device_kind(kind, section)
    _FACTORIES[kind] = factory
    _PROFILE_FAMILIES[kind] = str(getattr(factory, "profile_family", ""))


def registered_kinds() -> list[str]:
    """Kinds with a registered mapper (the built-in ones and any registered since)."""
    import hwsim.sim.kinds  # noqa: F401  (registers the built-in kinds)

    return sorted(_FACTORIES)


def mapper_for(device: Device, cluster: Cluster | None = None) -> Mapper:
    """The mapper of ``device``'s kind."""
    import hwsim.sim.kinds  # noqa: F401  (registers the built-in kinds)

    factory = _FACTORIES.get(device.kind)
    if factory is None:
        raise SpecError(
            f"no mapper is registered for device kind '{device.kind}' of {device.name}; "
            f"registered: {', '.join(sorted(_FACTORIES))}"
        )
    return factory(device, cluster)
