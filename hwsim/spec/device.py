"""Device specs: one pydantic model covering every device kind in the mission.

Kinds differ only in a small optional section (``mesh`` for wafer-scale, ``tiles`` for dataflow,
``lpu`` for LPUs) plus validation rules; the common parts (compute, an ordered memory hierarchy,
interconnect ports, power and price) are shared. Mappers in ``hwsim.sim`` decide how a kind uses
them. Accessors return SI floats and end in their unit (``bandwidth_Bps``, ``capacity_bytes``).
"""

from __future__ import annotations

import difflib
import itertools
import warnings
from typing import Literal

from pydantic import Field, field_validator, model_validator

from hwsim.spec.errors import FieldError, Loc, MissingEntryError, SpecWarning
from hwsim.spec.messages import SYNONYMS
from hwsim.spec.quantity import (
    Bandwidth,
    Bytes,
    Count,
    Frequency,
    Latency,
    Money,
    Power,
    Rate,
    Sourced,
    Strict,
    WholeCount,
)
from hwsim.spec.units import Dim, format_quantity

#: Device kinds and the kind-specific section a device of each must have (None: none). A
#: mapper module adds its kind (:func:`hwsim.sim.mapper.register_mapper` calls
#: :func:`register_device_kind`); the spec layer knows only names and sections.
DEVICE_KINDS: dict[str, str | None] = {
    "gpu": None,
    "wafer_scale": "mesh",
    "dataflow": "tiles",
    "lpu": "lpu",
}
#: The optional kind-specific sections of :class:`Device`.
KIND_SECTIONS: tuple[str, ...] = ("mesh", "tiles", "lpu")
#: Formats a device may list a matrix peak for: the 8-to-32-bit compute dtypes and the
#: microscaling FP6/FP4 rates of CDNA 4 and Blackwell (``fp4``: the rate the block-scaled FP4
#: dtypes run at).
DType = Literal["fp32", "tf32", "bf16", "fp16", "fp8", "int8", "fp6", "fp4"]
#: Block-scaled 4-bit formats (E2M1 values with a scale per block) a workload may use, on devices
#: whose ``compute.fp4_formats`` lists them, at the ``compute.peak.fp4`` rate. NVFP4 (NVIDIA,
#: "Introducing NVFP4 for Efficient and Accurate Low-Precision Inference", 2025): one FP8 E4M3
#: scale per 16 values plus an FP32 scale per tensor. MXFP4 (OCP Microscaling Formats
#: specification v1.0, 2023): one E8M0 (power-of-two) scale per 32 values.
FP4_DTYPES: tuple[str, ...] = ("nvfp4", "mxfp4")
#: Values per scale of each block-scaled format, and the bytes of that scale.
FP4_BLOCKS: dict[str, tuple[int, int]] = {"nvfp4": (16, 1), "mxfp4": (32, 1)}
#: Compute dtypes a workload (weights, KV cache, a kernel) may name.
DTYPES: tuple[str, ...] = ("fp32", "tf32", "bf16", "fp16", "fp8", "int8", *FP4_DTYPES)
#: Bytes per element of every storage format hwsim knows, the one table of them: compute dtypes
#: (tf32 is stored as fp32; ``fp8`` is e4m3 unless named) and the functional executor's formats.
STORAGE_BYTES: dict[str, float] = {
    "fp64": 8,
    "fp32": 4,
    "tf32": 4,
    "bf16": 2,
    "fp16": 2,
    "fp8": 1,
    "fp8_e4m3": 1,
    "fp8_e5m2": 1,
    "int8": 1,
    "fp6": 0.75,
    "fp4": 0.5,
    # 4 bits per value and the block scales: NVFP4 4 + 8/16 = 4.5 bits, MXFP4 4 + 8/32 = 4.25
    # (NVFP4's one FP32 scale per tensor is negligible)
    **{d: 0.5 + FP4_BLOCKS[d][1] / FP4_BLOCKS[d][0] for d in FP4_DTYPES},
}
#: Bytes per element of each compute dtype (:data:`DTYPES`).
DTYPE_BYTES: dict[str, float] = {d: STORAGE_BYTES[d] for d in DTYPES}
Scope = Literal["per_unit", "per_chip", "per_node", "per_system"]
PortKind = Literal[
    "nvlink",
    "xgmi",
    "pcie",
    "infiniband",
    "ethernet",
    "c2c",
    "wafer_fabric",
    "swarmx",
    "rdu_fabric",
]


#: Matrix-instruction families (keys of ``compute.matrix_paths``): PTX ``mma.sync`` (Ampere and
#: later, warp-level, operands in registers), ``wgmma`` (Hopper, warpgroup-level, asynchronous,
#: operands from shared memory), ``tcgen05`` (Blackwell, single-thread issue, accumulator in
#: tensor memory) and AMD ``mfma`` (CDNA, wavefront-level, operands in VGPRs).
MATRIX_PATHS: tuple[str, ...] = ("mma_sync", "wgmma", "tcgen05", "mfma")
#: How a kernel moves tiles from global to shared memory: ``cp_async`` (Ampere ``cp.async``:
#: issued per thread by the compute warps), ``tma`` (Hopper+ Tensor Memory Accelerator: one
#: thread issues a whole tile, multicast to a cluster) or ``ld`` (plain loads, AMD).
DATA_MOVEMENT: tuple[str, ...] = ("cp_async", "tma", "ld")


class MatrixPath(Strict):
    """One family of matrix instructions a GPU can issue and the rate it sustains."""

    fraction: Count = Field(
        description="sustained dense rate of this instruction family as a fraction of "
        "compute.peak, for every dtype it supports (1 = the family that reaches the datasheet "
        "peak)"
    )
    dtypes: list[DType] | None = Field(
        None, description="dtypes the family issues (None: every dtype of compute.peak)"
    )
    operands: Literal["registers", "shared"] = Field(
        description="registers: every warp that uses an A/B tile loads it from shared memory "
        "into its registers (ldmatrix, ds_read), so shared-memory bandwidth also bounds the "
        "rate; shared: the matrix unit reads A/B from shared memory itself"
    )
    accumulator: Literal["registers", "tensor_memory"] = Field(
        "registers", description="where the accumulator tile lives while the K loop runs"
    )
    note: str | None = None


class Compute(Strict):
    """Compute units (SMs, CUs, cores, PCUs) and their peak rates per dtype, whole chip."""

    units: WholeCount = Field(description="number of compute units on the chip (SMs, CUs, cores)")
    unit_name: str = Field("SM", description="what a compute unit is called on this device")
    clock: Frequency
    peak: dict[DType, Rate] = Field(
        description="dense peak FLOP/s (OP/s for int8) of the matrix engines per dtype, whole chip"
    )
    vector_fp32: Rate | None = Field(
        None, description="non-matrix FP32 FLOP/s (softmax, norms, elementwise), whole chip"
    )
    special: Rate | None = Field(
        None, description="special-function (exp, rsqrt) op/s, whole chip; FA3's softmax ceiling"
    )
    matrix_paths: dict[str, MatrixPath] = Field(
        default_factory=dict,
        description="matrix-instruction families the chip issues (keys: "
        + ", ".join(MATRIX_PATHS)
        + "), its native (fastest) family first; empty: every kernel runs at compute.peak",
    )
    data_movement: list[Literal["cp_async", "tma", "ld"]] = Field(
        default_factory=list,
        description="global-to-shared copy mechanisms the chip has (cp_async, tma, ld)",
    )
    registers_per_unit: Bytes | None = Field(
        None, description="register file of one compute unit (bytes): occupancy and tile limits"
    )
    fp4_formats: list[Literal["nvfp4", "mxfp4"]] = Field(
        default_factory=list,
        description="block-scaled FP4 formats the matrix units run at compute.peak.fp4 (NVFP4: "
        "Blackwell; MXFP4: Blackwell and CDNA 4); empty: no FP4 path",
    )
    max_registers_per_thread: WholeCount | None = Field(
        None, description="32-bit registers one thread (lane) may use"
    )

    @field_validator("matrix_paths")
    @classmethod
    def _known_paths(cls, v: dict[str, MatrixPath]) -> dict[str, MatrixPath]:
        for name, path in v.items():
            if name not in MATRIX_PATHS:
                guess = difflib.get_close_matches(name, MATRIX_PATHS, n=1)
                hint = f"; did you mean '{guess[0]}'?" if guess else ""
                raise ValueError(
                    f"unknown matrix path {name!r} (known: {', '.join(MATRIX_PATHS)}){hint}"
                )
            if not 0.0 < path.fraction.value <= 1.0:
                raise ValueError(
                    f"{name}.fraction must be in (0, 1] of compute.peak, got {path.fraction.value}"
                )
        return v

    @property
    def units_count(self) -> int:
        return int(self.units.value)

    @property
    def clock_Hz(self) -> float:
        return self.clock.value


class MemoryLevel(Strict):
    """One level of the memory hierarchy. Capacity and bandwidth are per instance of ``scope``:
    per compute unit for ``per_unit`` (e.g. shared memory of one SM), per chip for ``per_chip``."""

    name: str
    scope: Scope
    capacity: Bytes
    bandwidth: Bandwidth
    latency: Latency
    note: str | None = None

    @property
    def capacity_bytes(self) -> float:
        return self.capacity.value

    @property
    def bandwidth_Bps(self) -> float:
        return self.bandwidth.value

    @property
    def latency_s(self) -> float:
        return self.latency.value


class Port(Strict):
    """A group of identical interconnect ports; bandwidth is per port and per direction."""

    kind: PortKind
    count: WholeCount
    bandwidth: Bandwidth
    latency: Latency
    note: str | None = None

    @property
    def bandwidth_Bps(self) -> float:
        return self.bandwidth.value

    @property
    def total_bandwidth_Bps(self) -> float:
        """All ports of this group together, one direction (bytes/s)."""
        return self.bandwidth.value * self.count.value


class PowerSpec(Strict):
    tdp: Power


class PriceSpec(Strict):
    usd: Money


class Mesh(Strict):
    """Wafer-scale 2-D mesh of cores: shape, per-hop latency and per-link bandwidth."""

    rows: WholeCount
    cols: WholeCount
    hop_latency: Latency
    link_bandwidth: Bandwidth


class Tiles(Strict):
    """Dataflow chip tiles: pattern compute units (PCUs) and pattern memory units (PMUs)."""

    pcus: WholeCount
    pmus: WholeCount


class LpuSpec(Strict):
    """LPU specifics: execution is statically scheduled, so no contention or jitter is modelled."""

    static_schedule: bool = True
    c2c_hop_latency: Latency


def register_device_kind(kind: str, section: str | None = None) -> None:
    """Accept devices of ``kind`` (with the kind-specific ``section``, one of
    :data:`KIND_SECTIONS`, or none). Re-registering a kind with the same section is a no-op."""
    if section is not None and section not in KIND_SECTIONS:
        raise ValueError(f"section {section!r}: expected one of {', '.join(KIND_SECTIONS)} or None")
    DEVICE_KINDS[kind] = section


class Device(Strict):
    """A device (one chip, wafer or socket) as written in ``devices/<name>.yaml``."""

    name: str = Field(description="display name, e.g. 'NVIDIA H100 SXM5 80GB'")
    kind: str = Field(description="device kind: a key of DEVICE_KINDS (gpu, wafer_scale, …)")
    vendor: str
    arch: str = Field(description="architecture generation; keys the kernel profiles")
    description: str | None = None
    sources: dict[str, str] = Field(description="citation table: key → datasheet, paper or URL")
    compute: Compute
    memory: list[MemoryLevel] = Field(description="ordered innermost (registers) → outermost")
    interconnect: list[Port] = Field(default_factory=list)
    power: PowerSpec
    price: PriceSpec | None = None
    mesh: Mesh | None = None
    tiles: Tiles | None = None
    lpu: LpuSpec | None = None

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, v: str) -> str:
        if v not in DEVICE_KINDS:
            names = [f"'{k}'" for k in DEVICE_KINDS]
            listed = ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else names[0]
            synonym = SYNONYMS.get(v.lower())
            guess = (
                [synonym]
                if synonym in DEVICE_KINDS
                else difflib.get_close_matches(v, list(DEVICE_KINDS), n=1)
            )
            hint = f"; did you mean '{guess[0]}'?" if guess else ""
            raise ValueError(f"got {v!r}, expected one of {listed}{hint}")
        return v

    @model_validator(mode="after")
    def _check(self) -> Device:
        # FieldError names the offending key, so the loader reports that key's YAML line
        names = [m.name for m in self.memory]
        if not names:
            raise FieldError(("memory",), "at least one level is required")
        for i, n in enumerate(names):
            if n in names[:i]:
                raise FieldError(
                    ("memory", i, "name"),
                    f"level names must be unique: '{n}' is also level {names.index(n)}",
                )
        for loc, q in _walk_locs(self, ()):
            if q.source not in self.sources:
                guess = difflib.get_close_matches(q.source, list(self.sources), n=1)
                hint = f"; did you mean '{guess[0]}'?" if guess else ""
                raise FieldError(
                    (*loc, "source"),
                    f"{q.source!r} is not in the sources table{hint} "
                    f"(known: {', '.join(sorted(self.sources)) or 'none'})",
                )
        if not {"bf16", "fp16"} & set(self.compute.peak):
            raise FieldError(
                ("compute", "peak"),
                "needs a bf16 or fp16 rate: the other dtypes fall back to it "
                f"(given: {', '.join(self.compute.peak) or 'none'})",
            )
        section = DEVICE_KINDS[self.kind]
        if section and getattr(self, section) is None:
            raise FieldError(
                ("kind",), f"a device of kind '{self.kind}' needs a '{section}' section"
            )
        for s in KIND_SECTIONS:
            if getattr(self, s) is not None and s != section:
                raise FieldError((s,), f"a '{s}' section does not apply to kind '{self.kind}'")
        if self.kind == "lpu":
            for i, n in enumerate(names):
                if n in ("hbm", "dram", "ddr"):
                    raise FieldError(
                        ("memory", i, "name"),
                        f"an 'lpu' keeps everything in on-chip SRAM: remove level '{n}'",
                    )
        if self.kind == "dataflow":
            missing = {"sram", "hbm", "ddr"} - set(names)
            if missing:
                raise FieldError(
                    ("memory",), f"a 'dataflow' device has three tiers; missing {sorted(missing)}"
                )
        self._warn_order()
        return self

    def _warn_order(self) -> None:
        """Inner levels should be smaller and faster (per chip); warn, never fail, if not."""
        index = {m.name: i for i, m in enumerate(self.memory)}
        chip = [m for m in self.memory if m.scope in ("per_unit", "per_chip")]
        for inner, outer in itertools.pairwise(chip):
            # a per-unit scratchpad under a cache is compared one unit at a time: summed over
            # its units it may exceed the cache (MI355X: 256 x 160 KiB LDS = 40 MiB > 32 MiB L2)
            per_unit = inner.scope == "per_unit" and outer.name != self.main_memory.name
            inner_b = inner.capacity_bytes if per_unit else self.level_capacity_bytes(inner.name)
            outer_b = self.level_capacity_bytes(outer.name)
            if inner_b > outer_b:
                warnings.warn(
                    SpecWarning(
                        f"memory level '{inner.name}' ({format_quantity(inner_b, Dim.BYTES)} per "
                        f"chip) is larger than the outer level '{outer.name}' "
                        f"({format_quantity(outer_b, Dim.BYTES)}); levels are listed innermost "
                        "first",
                        ("memory", index[inner.name], "capacity"),
                    ),
                    stacklevel=2,
                )
            inner_bw = self.level_bandwidth_Bps(inner.name)
            outer_bw = self.level_bandwidth_Bps(outer.name)
            if inner_bw < outer_bw:
                warnings.warn(
                    SpecWarning(
                        f"memory level '{inner.name}' "
                        f"({format_quantity(inner_bw, Dim.BANDWIDTH)} per chip) is slower than "
                        f"the outer level '{outer.name}' "
                        f"({format_quantity(outer_bw, Dim.BANDWIDTH)}); levels are listed "
                        "innermost first",
                        ("memory", index[inner.name], "bandwidth"),
                    ),
                    stacklevel=2,
                )

    # ---- accessors (SI floats) -------------------------------------------------------------
    def iter_sourced(self) -> list[tuple[str, Sourced]]:
        """Every sourced number in the spec, with its dotted path (for ``hwsim show``)."""
        return _walk_sourced(self, "")

    def level(self, name: str) -> MemoryLevel:
        for m in self.memory:
            if m.name == name:
                return m
        raise MissingEntryError(
            f"{self.name} has no memory level {name!r} (has {[m.name for m in self.memory]})"
        )

    def level_instances(self, name: str) -> int:
        """How many instances of a level one chip has (compute units for ``per_unit``)."""
        return self.compute.units_count if self.level(name).scope == "per_unit" else 1

    def level_capacity_bytes(self, name: str) -> float:
        """Capacity of a level summed over one chip's instances (bytes)."""
        return self.level(name).capacity_bytes * self.level_instances(name)

    def level_bandwidth_Bps(self, name: str) -> float:
        """Bandwidth of a level summed over one chip's instances (bytes/s)."""
        return self.level(name).bandwidth_Bps * self.level_instances(name)

    def peak_flops(self, dtype: str) -> float:
        """Dense matrix peak FLOP/s for ``dtype``; falls back to the widest supported dtype that
        can hold it (fp8 → fp16/bf16, int8 → fp8 → fp16) because hardware without a native fp8
        path runs fp8 data through its 16-bit units."""
        if dtype in FP4_DTYPES:  # no fallback: a chip without the format cannot run it
            if dtype in self.compute.fp4_formats and "fp4" in self.compute.peak:
                return self.compute.peak["fp4"].value
            runs = ", ".join(self.compute.fp4_formats) or "no FP4 format"
            raise MissingEntryError(
                f"{self.name} does not run {dtype} (compute.fp4_formats: {runs}; it needs the "
                "format listed there and a compute.peak.fp4 rate)"
            )
        order = {
            "fp8": ["fp8", "bf16", "fp16"],
            "int8": ["int8", "fp8", "fp16", "bf16"],
            "bf16": ["bf16", "fp16"],
            "fp16": ["fp16", "bf16"],
            "tf32": ["tf32", "fp32"],
            "fp32": ["fp32", "tf32"],
            "fp6": ["fp6", "fp8", "bf16", "fp16"],
            "fp4": ["fp4", "fp6", "fp8", "bf16", "fp16"],
        }[dtype]
        for d in order:
            if d in self.compute.peak:
                return self.compute.peak[d].value
        raise MissingEntryError(
            f"{self.name} lists no peak rate usable for {dtype} "
            f"(compute.peak has {', '.join(self.compute.peak)}; add {order[0]})"
        )

    @property
    def main_memory(self) -> MemoryLevel:
        """The level that holds weights and KV cache: HBM where there is one (GPUs, SN40L, whose
        DDR sits behind it as a capacity tier), else the outermost on-chip level (LPU SRAM)."""
        for m in self.memory:
            if m.name == "hbm":
                return m
        return self.on_chip_levels[-1]

    @property
    def on_chip_levels(self) -> list[MemoryLevel]:
        return [m for m in self.memory if m.scope in ("per_unit", "per_chip")]

    @property
    def tdp_W(self) -> float:
        return self.power.tdp.value

    @property
    def price_usd(self) -> float | None:
        return self.price.usd.value if self.price else None


def _walk_locs(obj: object, loc: Loc) -> list[tuple[Loc, Sourced]]:
    """Every sourced number with its key path as written in YAML (list items by index)."""
    if isinstance(obj, Sourced):
        return [(loc, obj)]
    out: list[tuple[Loc, Sourced]] = []
    if isinstance(obj, Strict):
        for name in type(obj).model_fields:
            out += _walk_locs(getattr(obj, name), (*loc, name))
    elif isinstance(obj, dict):
        for k, v in obj.items():
            out += _walk_locs(v, (*loc, str(k)))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _walk_locs(v, (*loc, i))
    return out


def _walk_sourced(obj: object, path: str) -> list[tuple[str, Sourced]]:
    out: list[tuple[str, Sourced]] = []
    if isinstance(obj, Sourced):
        return [(path, obj)]
    if isinstance(obj, Strict):
        for name in type(obj).model_fields:
            out += _walk_sourced(getattr(obj, name), f"{path}.{name}" if path else name)
    elif isinstance(obj, dict):
        for k, v in obj.items():
            out += _walk_sourced(v, f"{path}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            label = getattr(v, "name", None) or getattr(v, "kind", None) or str(i)
            out += _walk_sourced(v, f"{path}[{label}]")
    return out
