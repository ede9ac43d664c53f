"""The wafer-scale mapper (Cerebras WSE-3): operators on rectangular regions of a 2-D mesh of
cores, weights resident in their SRAM or streamed from MemoryX, activations over the mesh.

What the mapper assumes (S. Lie, "Cerebras Architecture Deep Dive", Hot Chips 34, 2022 and IEEE
Micro 43(3), 2023; Cerebras Hot Chips 2024 inference talk: Llama-3.1-8B on one CS-3 and 70B
pipelined over four; Cerebras weight-streaming white paper; ALCF AI-testbed material):

* **Regions.** Each operator (a layer's QKV projection, its attention, its FFN …) owns a
  near-square region of ``P`` cores, sized so that each core holds ``core_data`` bytes of its
  resident data (weights, or KV cache; ``devices/profiles/wafer.yaml``), or more when the
  wafer's whole share of the model needs it (:meth:`WaferMapper.for_resident`). Layers are laid
  out one after another across the wafer (:func:`place_regions`) and the wafer runs them as a
  pipeline: region after region, a token's activations flow over the mesh.
* **Latency of one token through a region** (batch 1): each core reads its slice of the
  weights from its own SRAM and does its FMACs (``max`` of SRAM time and arithmetic time at
  ``matrix_efficiency`` of the core's peak), the input row is broadcast along the region's
  rows and the partial sums are reduced along its columns: ``(rows + cols)`` hops of
  ``mesh.hop_latency`` plus the bytes that cross the region's edge at ``mesh.link_bandwidth``
  per link.
* **Throughput.** Every region works at once on a different token, so ``m`` rows cost one row's
  latency plus ``(m - 1)/m`` of the op's FLOPs at the rate of the whole wafer
  (a balanced pipeline over all its cores). Summed over a model this gives the fill latency of
  the pipeline plus its throughput bound.
* **Weight streaming.** ``Gemm(weights="streamed")`` (or a mapper made with
  ``weight_streaming=True``): the weights flow from MemoryX over SwarmX while the whole wafer
  computes, double-buffered in chunks; the engine plays the overlap. Decode is then bound by
  the ~150 GB/s of system I/O, which is why Cerebras serves inference resident.
* **Several wafers** are a pipeline: the serving layer puts ``pp`` stages on ``pp`` wafers and
  the activation sends between them cross SwarmX/Ethernet (``Collective("p2p")``).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Self

from pydantic import Field

from hwsim.plan.workload import Attention, Elementwise, Gemm, Op, OpTiming
from hwsim.sim.engine import Engine
from hwsim.sim.mapper import override, register_mapper
from hwsim.sim.spatial import (
    ROW_REDUCTIONS,
    Links,
    SpatialMapper,
)
from hwsim.spec.device import DTYPE_BYTES, Device
from hwsim.spec.errors import SpecError
from hwsim.spec.quantity import Bytes, Count, Strict, WholeCount

if TYPE_CHECKING:
    from hwsim.plan.layout import Layout
    from hwsim.plan.model_step import StepSpec
    from hwsim.sim.placement import Placement
    from hwsim.spec.cluster import Cluster
    from hwsim.spec.model import ModelConfig

#: Chunks a streamed weight matrix is split into (double-buffered: chunk i+1 arrives while
#: chunk i is computed); more chunks only shave the first chunk's exposed transfer.
STREAM_CHUNKS = 8


class WaferProfile(Strict):
    """Per-architecture wafer parameters (``devices/profiles/wafer.yaml``)."""

    description: str
    core_data: Bytes = Field(
        description="bytes of resident data (weights or KV cache) the compiler places per core "
        "when the wafer has room to spare; more when the device holds more (for_resident)"
    )
    matrix_efficiency: Count = Field(description="fraction of the cores' FMAC peak sustained")
    stream_chunks: WholeCount | None = None


@dataclass(frozen=True)
class Region:
    """A rectangle of cores (``rows × cols``, top-left at ``row, col``) running one op."""

    name: str
    row: int
    col: int
    rows: int
    cols: int
    bytes: float
    time_s: float = 0.0

    @property
    def cores(self) -> int:
        return self.rows * self.cols


class WaferMapper(SpatialMapper[WaferProfile]):
    """Wafer-scale engine (see the module docstring)."""

    profile_family = "wafer"
    unit = "wafer"

    def __init__(
        self,
        device: Device,
        cluster: Cluster | None = None,
        weight_streaming: bool = False,
        profile_overrides: Sequence[str] = (),
    ) -> None:
        self.weight_streaming = weight_streaming
        super().__init__(device, cluster, profile_overrides)

    @override
    def _rebuild(self, profile_overrides: tuple[str, ...]) -> Self:
        return type(self)(self.device, self._cluster_arg, self.weight_streaming, profile_overrides)

    @override
    def _setup(self) -> tuple[WaferProfile, str]:
        prof, key = self.load(WaferProfile)
        d = self.device
        if d.mesh is None:
            raise SpecError(f"{d.name}: a wafer-scale device needs a 'mesh' section")
        self.cores = d.compute.units_count
        self.mesh_rows = int(d.mesh.rows.value)
        self.mesh_cols = int(d.mesh.cols.value)
        self.hop_s = d.mesh.hop_latency.value
        self.link_Bps = d.mesh.link_bandwidth.value
        sram = d.main_memory
        self.core_bytes = (
            sram.capacity_bytes if sram.scope == "per_unit" else (sram.capacity_bytes / self.cores)
        )
        self.core_Bps = d.level_bandwidth_Bps(sram.name) / self.cores
        #: bytes of a region's data per core: the profile's budget, never more than a core holds
        self.core_data_bytes = min(prof.core_data.value, self.core_bytes)
        self.eff = prof.matrix_efficiency.value
        self._resident: dict[float, WaferMapper] = {}
        if self.weight_streaming:
            self._notes = ("wafer: weight streaming from MemoryX",)
        return prof, key

    # ---- capacity --------------------------------------------------------------------------
    @property
    @override
    def capacity_bytes(self) -> float:
        """On-wafer SRAM; in weight-streaming mode the weights live in MemoryX instead."""
        if self.weight_streaming:
            return self.device.level_capacity_bytes(self.device.memory[-1].name)
        return self.device.level_capacity_bytes(self.device.main_memory.name)

    @override
    def resident_capacity_bytes(self, op: Op) -> float:
        sram = self.device.level_capacity_bytes(self.device.main_memory.name)
        if isinstance(op, Attention) or not self.weight_streaming:
            return sram  # the KV cache always stays on the wafer
        return self.capacity_bytes

    @override
    def capacity_message(self, what: str, need: float, capacity: float | None = None) -> str:
        msg = super().capacity_message(what, need, capacity)
        if what.startswith("weights") and not self.weight_streaming:
            msg += "; or stream them from MemoryX (weights='streamed')"
        return msg

    # ---- network ---------------------------------------------------------------------------
    @override
    def _links(self) -> Links:
        d = self.device
        sw = next((p for p in d.interconnect if p.kind == "swarmx"), None)
        bw = sw.total_bandwidth_Bps if sw is not None else 1.0
        lat = sw.latency.value if sw is not None else 0.0
        source = f"{d.name} SwarmX ports"
        cl = self.cluster
        if cl is not None and cl.nics is not None:
            n = cl.nics
            bw = n.per_device.value * n.bandwidth.value / n.wire_factor()
            s = getattr(cl.network, "switch_latency", None)
            lat = 2 * n.latency.value + (s.value if s is not None else 0.0)
            source = f"cluster {cl.name}"
        # one wafer per system: every collective leaves the device over system I/O
        return Links(bw, bw, lat, 1, bw, lat, "swarmx", "swarmx", source)

    # ---- regions ---------------------------------------------------------------------------
    @property
    def fill(self) -> float:
        """Fraction of each region core's SRAM its data takes."""
        return self.core_data_bytes / self.core_bytes

    @override
    def for_resident(self, resident_bytes: float) -> WaferMapper:
        """This wafer holding ``resident_bytes`` in all: regions keep the profile's bytes per
        core while the whole fits the cores that way, and pack denser when it does not (every
        core then holds ``resident / cores``), so the sum of the regions never needs more cores
        than the wafer has. Why a budget per core and not a fraction of the SRAM: a chip with
        more SRAM per core holds more of a model, but the same model on the same cores runs
        at the same speed (a fraction would shrink every region and slow it down)."""
        per_core = min(
            self.core_bytes, max(self.profile.core_data.value, resident_bytes / self.cores)
        )
        if per_core == self.core_data_bytes:
            return self
        hit = self._resident.get(per_core)
        if hit is None:
            hit = copy.copy(self)
            hit.core_data_bytes = per_core
            hit._cache = {}  # op times depend on the packing: never share the parent's
            hit._resident = {}
            self._resident[per_core] = hit
        return hit

    def region_cores(self, nbytes: float) -> int:
        """Cores holding ``nbytes`` at ``core_data_bytes`` each (at least 1, at most all)."""
        return int(min(self.cores, max(1, math.ceil(nbytes / self.core_data_bytes))))

    def region_shape(self, cores: int) -> tuple[int, int]:
        """A near-square ``rows × cols`` rectangle of at least ``cores`` cores on the mesh."""
        rows = max(1, math.isqrt(cores), math.ceil(cores / self.mesh_cols))
        rows = min(self.mesh_rows, rows)
        cols = min(self.mesh_cols, math.ceil(cores / rows))
        return rows, cols

    def region_bytes(self, op: Op) -> float:
        """The resident bytes a region is sized by: a GEMM's stationary operand, attention's
        KV cache or its weight-equivalent work (see :meth:`_attention`); 0 for streaming ops."""
        if isinstance(op, Gemm):
            return float(op.count) * op.n * op.k * DTYPE_BYTES[op.dtype]
        if isinstance(op, Attention):
            s = op.shape
            row_flops = op.flops / max(1, s.seqlen_q)
            return max(op.kv_bytes, row_flops / 2 * s.elem_bytes)
        return 0.0

    def _core_rate(self, dtype: str) -> float:
        return self.rate(dtype) / self.cores

    # ---- ops -------------------------------------------------------------------------------
    @override
    def gemm(self, op: Gemm) -> OpTiming:
        if op.weights == "streamed" or (self.weight_streaming and op.weights == "resident"):
            return self._streamed_gemm(op)
        e = DTYPE_BYTES[op.dtype]
        stationary = float(op.count) * op.n * op.k * e  # weights (or the B activation)
        p = self.region_cores(stationary)
        rows, cols = self.region_shape(p)
        row_flops = 2.0 * op.n * op.k * op.count
        t_sram = stationary / (p * self.core_Bps)
        t_fma = row_flops / (p * self._core_rate(op.dtype) * self.eff)
        t_mesh = (rows + cols) * self.hop_s + op.count * (
            op.k * e / (rows * self.link_Bps) + op.n * e / (cols * self.link_Bps)
        )
        t_share = op.flops / (self.rate(op.dtype) * self.eff)
        t_rest = (op.m - 1) / op.m * t_share
        parts = {"sram": t_sram, "compute": t_fma + t_rest, "mesh": t_mesh}
        bound = max(parts, key=lambda k: parts[k])
        act = float(op.count) * op.m * (op.k + op.n) * e
        return OpTiming(
            op.name,
            max(t_sram, t_fma) + t_mesh + t_rest,
            bound,
            {"sram": stationary * op.m + act, "mesh": act},
            op.flops,
            notes=(f"{op.name}: region of {p} cores ({rows}×{cols})",),
            source="wafer:region",
        )

    def _streamed_gemm(self, op: Gemm) -> OpTiming:
        """Weights stream from MemoryX over SwarmX, double-buffered, while the whole wafer
        computes; played on the engine."""
        w = op.weight_bytes or float(op.count) * op.n * op.k * DTYPE_BYTES[op.dtype]
        outer = self.device.memory[-1]
        bw = min(outer.bandwidth_Bps, self.links.outer_Bps)
        chunks = (
            int(self.profile.stream_chunks.value) if self.profile.stream_chunks else (STREAM_CHUNKS)
        )
        rate = self.rate(op.dtype) * self.eff
        eng = Engine()
        link = eng.link("swarmx", bw, outer.latency_s, "swarmx")
        arrived = [eng.env.event() for _ in range(chunks)]

        def stream() -> Generator[Any, Any, None]:
            for i in range(chunks):
                yield eng.transfer([link], w / chunks, label=f"chunk {i}")
                arrived[i].succeed()

        def compute() -> Generator[Any, Any, None]:
            for i in range(chunks):
                yield arrived[i]
                yield eng.compute(op.flops / chunks, rate)

        eng.env.process(stream())
        eng.env.process(compute())
        t = eng.run()
        t_io = w / bw
        return OpTiming(
            op.name,
            t,
            outer.name if t_io >= op.flops / rate else "compute",
            {outer.name: w, "sram": w},
            op.flops,
            events=eng.events,
            notes=(f"{op.name}: weights streamed from {outer.name} at {bw / 1e9:.0f} GB/s",),
            source="wafer:streaming",
        )

    @override
    def attention(self, op: Attention) -> OpTiming:
        s = op.shape
        kv = op.kv_bytes
        dtype = "fp8" if s.dtype.startswith("fp8") else s.dtype
        rate = self.rate(dtype) * self.eff
        exps = float(s.batch) * s.heads * s.seqlen_q * s.seqlen_kv
        if s.causal and s.seqlen_q > 1:
            exps /= 2
        row_flops = op.flops / max(1, s.seqlen_q)
        # the region gives each core as much work as a GEMM core at the same fill: sized by
        # the KV bytes or, when query heads share a KV head (GQA, MLA), by the FLOPs per row
        # expressed as weight-equivalent bytes (a GEMM does 2 FLOPs per weight element)
        p = self.region_cores(self.region_bytes(op))
        rows, cols = self.region_shape(p)
        # every sequence's KV sits on its own cores: one query row per sequence is read in
        # parallel; softmax max/sum and the output are reduced across the region (2 passes)
        t_sram = kv / (p * self.core_Bps)
        t_fma = row_flops / (p * rate / self.cores)
        t_mesh = 2 * (rows + cols) * self.hop_s
        t_share = op.flops / rate + exps / self.vector_rate()
        t_lat = max(t_sram, t_fma) + t_mesh
        t = max(t_lat, t_share) if op.phase == "decode" else t_lat + t_share
        parts = {"sram": t_sram, "compute": max(t_fma, t_share), "mesh": t_mesh}
        return OpTiming(
            op.name,
            t,
            max(parts, key=lambda k: parts[k]),
            {"sram": kv, "mesh": float(s.batch) * s.heads * s.seqlen_q * s.dv * s.elem_bytes},
            op.flops,
            notes=(f"{op.name}: KV cache on {p} cores ({rows}×{cols})",),
            source="wafer:region",
        )

    @override
    def elementwise(self, op: Elementwise) -> OpTiming:
        # a row of activations is spread along one mesh row; reductions cross it and back
        fl = op.flops
        width = min(self.mesh_cols, op.cols)
        core_v = self.vector_rate() / self.cores
        t_row = fl / op.rows / (width * core_v)
        t_hops = (2 * width if op.op in ROW_REDUCTIONS else 1) * self.hop_s
        t_rest = (op.rows - 1) / op.rows * fl / self.vector_rate()
        t = t_row + t_hops + t_rest
        return OpTiming(
            op.name or op.op,
            t,
            "mesh" if t_hops > t_row + t_rest else "vector",
            {"sram": op.stream_bytes},
            fl,
            source="wafer:region",
        )

    # ---- placement -------------------------------------------------------------------------
    @override
    def placement_layout(
        self, model: ModelConfig, spec: StepSpec, floor: Layout
    ) -> tuple[Layout, str | None]:
        from hwsim.sim.wafer_placement import pipeline_layout

        lay = pipeline_layout(model, self, spec)
        return lay, f"wafers pipeline whole layers over SwarmX: {lay} ({lay.devices} wafers)"

    @override
    def placement(
        self, model: ModelConfig, layout: Layout, spec: StepSpec, stage_time_s: float = 0.0
    ) -> Placement:
        from hwsim.sim.wafer_placement import wafer_placement

        return wafer_placement(self, model, layout, spec)

    def place_regions(
        self, items: list[tuple[str, float, float]], fit: bool = False
    ) -> list[Region]:
        """Pack ``(name, bytes, time_s)`` regions in order into horizontal bands of the mesh,
        left to right, bands top to bottom (the layer pipeline snakes across the wafer; a
        region may continue on the next band, so it can come back as several rectangles of
        the same name). A region larger than the wafer is a SpecError; so is a set of regions
        that needs more cores than the wafer has, unless ``fit``, which shrinks every region
        by one factor (denser SRAM use, never beyond a core's SRAM) so that the set fits."""
        cores = [self.region_cores(b) for _, b, _ in items]
        for (name, nbytes, _), p in zip(items, cores, strict=True):
            if p * self.core_data_bytes < nbytes:
                raise SpecError(
                    f"region {name!r} of {nbytes / 1e9:.1f} GB does not fit one wafer "
                    f"({self.mesh_rows}×{self.mesh_cols} cores at fill {self.fill:.0%})"
                )
        if not cores:
            return []
        band = min(self.mesh_rows, max(1, math.isqrt(sorted(cores)[len(cores) // 2])))
        # a region shrunk below this scale would hold more than its cores' SRAM
        floor = max(b / (p * self.core_bytes) for (_, b, _), p in zip(items, cores, strict=True))
        scale = 1.0
        while True:  # shrink until the bands hold every region (partial last pieces waste a little)
            out = self._bands(items, [max(1, math.ceil(p * scale)) for p in cores], band)
            if out is not None:
                return out
            if not fit or scale * 0.97 < floor:
                raise SpecError(
                    f"regions of {len(items)} ops need {sum(cores):,} cores at fill "
                    f"{self.fill:.0%}; they do not fit one wafer of {self.cores:,}"
                )
            scale *= 0.97

    def _bands(
        self, items: list[tuple[str, float, float]], cores: list[int], band: int
    ) -> list[Region] | None:
        """Snake the regions through horizontal bands of ``band`` rows, left to right, bands top
        to bottom; a region that does not fit the rest of its band continues on the next one
        (drawn as two rectangles, its bytes split in proportion), so no band end is wasted and
        the whole wafer can be used. None when the regions need more rows than the mesh has."""
        out: list[Region] = []
        row = col = 0
        for (name, nbytes, t), p in zip(items, cores, strict=True):
            need = p
            while need > 0:
                if col >= self.mesh_cols:
                    row, col = row + band, 0
                height = min(band, self.mesh_rows - row)
                if height <= 0:
                    return None
                width = min(self.mesh_cols - col, math.ceil(need / height))
                take = min(need, width * height)
                rows = math.ceil(take / width)  # the last piece may be shorter than the band
                out.append(Region(name, row, col, rows, width, nbytes * take / p, t))
                need -= take
                col += width
        return out


register_mapper("wafer_scale", WaferMapper, section="mesh")
