"""The dataflow mapper (SambaNova SN40L RDU): fused spatial pipelines over PCUs/PMUs, three
memory tiers, tensor parallelism across the sockets of a rack.

What the mapper assumes (Prabhakar et al., "SambaNova SN40L: Scaling the AI Memory Wall with
Dataflow and Composition of Experts", arXiv 2405.07518 / MICRO 2024; Prabhakar et al., "Kernel
Looping: Eliminating Synchronization Boundaries for Peak Inference Performance", arXiv
2410.23668; Hot Chips 2024):

* **Fused sections, no launch boundaries.** The compiler lays a whole decoder block out as one
  spatial pipeline: every operator gets its own PCUs/PMUs and activations stream PMU → PCU on
  chip. So an op costs no launch and no synchronisation, and elementwise ops (norms, SwiGLU,
  residual adds) cost no HBM traffic at all: they run on the stream between two GEMMs
  (``fused`` in the timing's notes). Kernel looping removes even the boundary between
  consecutive decoder calls, which is why SambaNova reports > 90% of peak in decode on 8 and
  16 sockets: ``hbm_efficiency`` in ``devices/profiles/dataflow.yaml``.
* **Three tiers.** Resident weights and the KV cache stream from HBM (64 GB, 1.6 TB/s);
  ``streamed`` weights come from DDR (1.5 TB, 100 GB/s): the Composition-of-Experts case of a
  model or expert that is not cached in HBM. An MoE whose local experts exceed HBM keeps the
  fraction ``HBM / experts`` cached and reads the rest of the touched experts from DDR.
  Switching which models are cached is :mod:`hwsim.sim.dataflow_coe`.
* **Spatial time.** Inside a fused section all operators run at once; HBM, the PCU array and the
  PMU streams are shared, so the section's time is the sum of each operator's share of the
  binding resource. An op's time is therefore ``max(HBM bytes / (BW_hbm · e), FLOPs / (peak ·
  e_c), SRAM stream bytes / BW_sram)``, and the serving layer sums ops as it does for every
  device (:func:`pipeline_stages` splits the PCUs of one section by work, for the drawing).
* **Tensor parallelism over the rack.** 16 sockets on the RDU-to-RDU fabric; all-reduces pick
  the direct (two-shot) algorithm for small decode messages
  (:func:`hwsim.sim.spatial.collective_on`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import Field

from hwsim.plan.model_step import build_step, memory_per_device
from hwsim.plan.workload import Attention, Elementwise, Gemm, MoE, Op, OpTiming, combine
from hwsim.sim.mapper import override, register_mapper
from hwsim.sim.placement import Mark, Panel, Placement, View, us
from hwsim.sim.spatial import Links, SpatialMapper, gemm_activation_bytes
from hwsim.spec.fit import human_bytes
from hwsim.spec.quantity import Count, Strict, WholeCount

if TYPE_CHECKING:
    from hwsim.plan.layout import Layout
    from hwsim.plan.model_step import StepOp, StepSpec
    from hwsim.spec.model import ModelConfig

FUSED_NOTE = "dataflow: fused into the decoder's spatial pipeline (no launch, no HBM round trip)"


class DataflowProfile(Strict):
    """Per-architecture dataflow parameters (``devices/profiles/dataflow.yaml``)."""

    description: str
    hbm_efficiency: Count = Field(
        description="fraction of HBM (and DDR) peak a fused section reads"
    )
    matrix_efficiency: Count = Field(
        description="fraction of the matrix peak a large GEMM sustains"
    )
    rack_sockets: WholeCount = Field(description="sockets on one RDU fabric when no cluster given")


class DataflowMapper(SpatialMapper[DataflowProfile]):
    """SambaNova-style reconfigurable dataflow socket (see the module docstring)."""

    profile_family = "dataflow"
    unit = "socket"

    @override
    def _setup(self) -> tuple[DataflowProfile, str]:
        return self.load(DataflowProfile)

    # ---- tiers -----------------------------------------------------------------------------
    def tier_Bps(self, level: str) -> float:
        """Achievable bandwidth of ``level`` (``hbm``/``ddr``: times hbm_efficiency)."""
        bw = self.device.level_bandwidth_Bps(level)
        return bw * (self.profile.hbm_efficiency.value if level in ("hbm", "ddr") else 1.0)

    @override
    def resident_capacity_bytes(self, op: Op) -> float:
        """Experts may spill to DDR (Composition of Experts); everything else lives in HBM."""
        if isinstance(op, MoE):
            return self.capacity_bytes + self.device.level_capacity_bytes("ddr")
        return self.capacity_bytes

    # ---- network ---------------------------------------------------------------------------
    @override
    def _links(self) -> Links:
        d = self.device
        port = next((p for p in d.interconnect if p.kind == "rdu_fabric"), None)
        peer = port.bandwidth_Bps if port is not None else 1.0
        hop = port.latency.value if port is not None else 0.0
        domain = int(self.profile.rack_sockets.value)
        outer, outer_lat, outer_kind = peer, hop, "rdu_fabric"
        source = f"{d.name} rdu_fabric port, rack of {domain} (profile {self.profile_key})"
        cl = self.cluster
        if cl is not None:
            domain = cl.devices_per_node_count
            it = cl.intra_node
            if it is not None and it.bandwidth is not None:
                peer = it.bandwidth.value
            if it is not None and it.latency is not None:
                hop = it.latency.value
            if cl.nics is not None:
                n = cl.nics
                outer = n.per_device.value * n.bandwidth.value / n.wire_factor()
                sw = getattr(cl.network, "switch_latency", None)
                outer_lat = 2 * n.latency.value + (sw.value if sw is not None else 0.0)
                outer_kind = n.link_kind
            source = f"cluster {cl.name}"
        return Links(peer, peer, hop, domain, outer, outer_lat, "rdu_fabric", outer_kind, source)

    # ---- ops -------------------------------------------------------------------------------
    def _timing(
        self,
        name: str,
        parts: dict[str, float],
        level_bytes: dict[str, float],
        flops: float,
        notes: tuple[str, ...] = (),
    ) -> OpTiming:
        bound = max(parts, key=lambda k: parts[k])
        return OpTiming(
            op=name,
            time_s=parts[bound],
            bound=bound,
            bytes_by_level={k: v for k, v in level_bytes.items() if v > 0},
            flops=flops,
            notes=notes,
            source="dataflow:fused",
        )

    def _sram_Bps(self) -> float:
        return self.device.level_bandwidth_Bps("sram")

    @override
    def gemm(self, op: Gemm) -> OpTiming:
        return self._gemm_cached(op, 1.0)

    def _gemm_cached(self, op: Gemm, cached: float) -> OpTiming:
        """``cached``: fraction of the weights found in HBM (the rest come from DDR)."""
        w = op.weight_bytes
        if op.weights == "streamed":
            cached = 0.0
        acts = gemm_activation_bytes(op)
        hbm, ddr = w * cached, w * (1.0 - cached)
        parts = {
            "hbm": hbm / self.tier_Bps("hbm"),
            "compute": op.flops / (self.rate(op.dtype) * self.profile.matrix_efficiency.value),
            "sram": (w + acts) / self._sram_Bps(),
        }
        notes: tuple[str, ...] = ()
        if ddr > 0:
            parts["hbm"] += ddr / self.tier_Bps("ddr")
            if ddr / self.tier_Bps("ddr") > hbm / self.tier_Bps("hbm"):
                parts["ddr"] = parts.pop("hbm")
            notes = (
                f"{op.name}: {1 - cached:.0%} of the weights read from DDR (not cached in HBM)",
            )
        return self._timing(
            op.name, parts, {"hbm": hbm, "ddr": ddr, "sram": w + acts}, op.flops, notes
        )

    @override
    def attention(self, op: Attention) -> OpTiming:
        s = op.shape
        kv = op.kv_bytes
        exps = float(s.batch) * s.heads * s.seqlen_q * s.seqlen_kv
        if s.causal and s.seqlen_q > 1:
            exps /= 2
        special = self.device.compute.special
        exp_rate = special.value if special is not None else self.vector_rate()
        dtype = "fp8" if s.dtype.startswith("fp8") else s.dtype
        qo = float(s.batch) * s.heads * s.seqlen_q * (s.head_dim + s.dv) * s.elem_bytes
        parts = {
            "hbm": kv / self.tier_Bps("hbm"),
            "compute": op.flops / (self.rate(dtype) * self.profile.matrix_efficiency.value),
            "vector": exps / exp_rate,
            "sram": (kv + qo) / self._sram_Bps(),
        }
        return self._timing(op.name, parts, {"hbm": kv, "sram": kv + qo}, op.flops)

    @override
    def elementwise(self, op: Elementwise) -> OpTiming:
        fl = op.flops
        parts = {"vector": fl / self.vector_rate(), "sram": op.stream_bytes / self._sram_Bps()}
        return self._timing(op.name or op.op, parts, {"sram": op.stream_bytes}, fl, (FUSED_NOTE,))

    @override
    def placement(
        self, model: ModelConfig, layout: Layout, spec: StepSpec, stage_time_s: float = 0.0
    ) -> Placement:
        """One decoder layer as a fused pipeline over PCUs/PMUs, and one socket's tiers."""
        graph = build_step(model, layout, spec)
        layer = graph.stages[0][0]
        stages = pipeline_stages(list(layer.ops), self)
        w, kv = memory_per_device(model, layout, spec)
        summary = {
            "kind": self.kind,
            "sockets": layout.devices,
            "fused_section": layer.name,
            "stages": [
                {"op": s.op, "pcus": s.pcus, "pmus": s.pmus, "time_s": s.time_s} for s in stages
            ],
            "weights_per_socket_by_tier": weight_tier_bytes(w, self),
            "kv_per_socket_bytes": kv,
        }
        units = tuple(
            Mark(
                y=unit,
                length=n,
                category=st.category,
                series=st.op,
                label=st.op if n > 40 else "",
                hover=f"{st.op}: {n} {unit}, {us(st.time_s)}, bound {st.bound}",
            )
            for st in stages
            for unit, n in (("PCUs", st.pcus), ("PMUs", st.pmus))
        )
        tiers = ("sram", "hbm", "ddr")
        caps = [self.device.level_capacity_bytes(t) for t in tiers]
        hbm_w = min(w, caps[1])
        used = [0.0, hbm_w + kv, w - hbm_w]
        tier_marks = tuple(
            Mark(x=t, length=c, series="capacity", category="capacity", hover=human_bytes(c))
            for t, c in zip(tiers, caps, strict=True)
        ) + tuple(
            Mark(x=t, length=u, series="weights + KV of this layout", hover=human_bytes(u))
            for t, u in zip(tiers, used, strict=True)
        )
        view = View(
            title="RDU pipeline stages and memory tiers",
            text=(
                "A decoder layer is compiled into one spatial pipeline: every operator gets its "
                "own PCUs (compute) and PMUs (SRAM) and data streams between them on chip, so "
                "nothing goes back to HBM between operators. Units are shared out in proportion "
                "to each operator's time. Below: weights and KV of this layout live in HBM; DDR "
                "is the capacity tier where inactive models and experts wait."
            ),
            heading=f"{model.name} on {layout.devices} × {self.device.name} ({layout})",
            panels=(
                Panel(
                    "bars",
                    f"one {layer.name} fused into a spatial pipeline: units per operator ∝ its "
                    "time",
                    units,
                ),
                Panel(
                    "columns",
                    "what one socket holds (bytes) and the capacity of each tier",
                    tier_marks,
                    y_title="bytes",
                    log_y=True,
                ),
            ),
        )
        return Placement(self.kind, summary, (view,))

    @override
    def moe(self, op: MoE) -> OpTiming:
        """Parts in order; routed-expert GEMMs read the HBM-cached fraction from HBM and the
        rest from DDR (experts are cached whole, so the fraction is by expert)."""
        local = op.local_experts * op.expert_weight_bytes
        cached = min(1.0, self.capacity_bytes / local) if local > 0 else 1.0
        out = []
        for p in op.parts():
            if isinstance(p, Gemm) and p.name.startswith("experts"):
                out.append(self._gemm_cached(p, cached))
            else:
                out.append(self.time(p))
        t = combine(op.name, out, "composite:moe")
        if cached < 1.0:
            note = (
                f"Composition of Experts: {op.local_experts} local experts "
                f"({local / 1e9:.1f} GB) exceed HBM; {cached:.0%} cached, the rest read from DDR"
            )
            t = OpTiming(
                t.op,
                t.time_s,
                t.bound,
                t.bytes_by_level,
                t.flops,
                t.events,
                (*t.notes, note),
                t.source,
            )
        return t


# ---------------------------------------------------------------------------------- placement
@dataclass(frozen=True)
class Stage:
    """One operator of a fused section and the PCUs/PMUs it gets (proportional to its time)."""

    op: str
    category: str
    time_s: float
    pcus: int
    pmus: int
    bound: str


def pipeline_stages(ops: list[StepOp], mapper: DataflowMapper) -> list[Stage]:
    """Split one fused section (a decoder layer's compute ops) over the socket's PCUs and PMUs
    in proportion to each operator's time, as a balanced spatial pipeline would (every op gets
    at least one unit); communication ops stay outside the section."""
    tiles = mapper.device.tiles
    pcus = int(tiles.pcus.value) if tiles is not None else mapper.device.compute.units_count
    pmus = int(tiles.pmus.value) if tiles is not None else pcus
    timed = [(so, mapper.time(so.op)) for so in ops if so.stream == "compute"]
    total = sum(t.time_s for _, t in timed) or 1.0
    out = []
    for so, t in timed:
        share = t.time_s / total
        out.append(
            Stage(
                t.op,
                so.category,
                t.time_s,
                max(1, round(share * pcus)),
                max(1, round(share * pmus)),
                t.bound,
            )
        )
    return out


def weight_tier_bytes(weights_per_socket: float, mapper: DataflowMapper) -> dict[str, float]:
    """Where one socket keeps ``weights_per_socket``: HBM up to its capacity, DDR beyond."""
    hbm = min(weights_per_socket, mapper.capacity_bytes)
    return {"hbm": hbm, "ddr": weights_per_socket - hbm}


register_mapper("dataflow", DataflowMapper, section="tiles")
