"""The LPU mapper (Groq TSP): everything in on-chip SRAM, a statically scheduled core, and a
statically scheduled chip-to-chip Dragonfly.

What the mapper assumes (Abts et al., ISCA 2020 "Think Fast: A Tensor Streaming Processor";
Abts et al., ISCA 2022 "A Software-defined Tensor Streaming Multiprocessor for Large-scale
Machine Learning"):

* **All weights and KV in SRAM.** A GEMM whose weights, or an attention whose KV cache, does
  not fit the chip's 230 MB is refused with the number of chips it needs; models therefore
  span hundreds of chips (layers over pipeline stages, heads and FFN columns over
  tensor-parallel chips: the layout is chosen by :mod:`hwsim.serve.capacity`).
* **Static schedule.** The compiler fixes every cycle, so an op's time is a compile-time
  quantity with no contention and no jitter: ``max`` of the MXM weight-install stream (every
  weight, and every K/V row of attention, enters the matrix unit through the stream
  registers at ``weight_stream_bandwidth``), the MXM arithmetic at ``matrix_efficiency`` of
  peak, and the vector unit (norms, softmax exponentials), plus a fixed ``op_latency`` per
  dependent operator (pipeline fill and drain, chip synchronisation: not published, fitted on
  one public Groq speed, see docs/devices/lpu.md). Identical inputs give identical times;
  there is nothing to simulate beyond that sum.
* **Chip-to-chip links** with a fixed per-hop latency (``lpu.c2c_hop_latency``): 8 chips of a
  GroqNode fully connected (one 14 GB/s link per pair), ``global_links`` per chip to other
  nodes, 3 hops (local, global, local) between nodes of a Dragonfly group. Collectives pick
  ring, direct or hierarchical algorithms (:func:`hwsim.sim.spatial.collective_on`); links
  are scheduled by the compiler, so no two transfers share a link.
* **The pipeline bubble** at batch 1 is the serving layer's business (:mod:`hwsim.serve.step`:
  one token keeps one of ``pp`` stages busy); :func:`place_chips` draws which chip holds what.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

from hwsim.plan.workload import Attention, Elementwise, Gemm, Op, OpTiming
from hwsim.sim.mapper import override, register_mapper
from hwsim.sim.spatial import (
    Links,
    SpatialMapper,
    gemm_activation_bytes,
)
from hwsim.spec.device import DTYPE_BYTES
from hwsim.spec.fit import human_bytes
from hwsim.spec.quantity import Bandwidth, Count, Latency, Strict, WholeCount

if TYPE_CHECKING:
    from hwsim.plan.layout import Layout
    from hwsim.plan.model_step import StepSpec
    from hwsim.sim.placement import Placement
    from hwsim.spec.model import ModelConfig

STATIC_NOTE = "LPU: statically scheduled, time is a compile-time sum (no contention or jitter)"


class LpuProfile(Strict):
    """Per-architecture LPU parameters (``devices/profiles/lpu.yaml``)."""

    description: str
    weight_stream_bandwidth: Bandwidth = Field(
        description="bytes/s with which weights (and K/V) enter the matrix unit when each is "
        "used once per pass: the stream-register bandwidth, below the SRAM's aggregate rate"
    )
    matrix_efficiency: Count = Field(description="fraction of the MXM peak a large GEMM sustains")
    node_chips: WholeCount = Field(description="chips fully connected in one node")
    global_links: WholeCount = Field(description="chip-to-chip links per chip to other nodes")
    node_hops: WholeCount = Field(description="C2C hops between chips of different nodes")
    op_latency: Latency = Field(
        description="seconds each dependent operator adds to a chip's critical path beyond its "
        "streaming time (fill and drain of the stream and MXM pipelines, the synchronisation "
        "the plesiochronous chips need); fitted, see docs/devices/lpu.md"
    )


class LpuMapper(SpatialMapper[LpuProfile]):
    """Groq-style LPU (see the module docstring)."""

    profile_family = "lpu"
    unit = "chip"
    #: every chip is a router of the software-scheduled Dragonfly (ISCA 2022), so a layer's
    #: tensor-parallel group may span nodes; its all-reduces pay the extra hops (collective_on)
    tp_across_domains = True

    @override
    def _setup(self) -> tuple[LpuProfile, str]:
        self._notes = (STATIC_NOTE,)
        return self.load(LpuProfile)

    # ---- capacity --------------------------------------------------------------------------
    @override
    def refuse_reason(self, op: Op) -> str | None:
        if isinstance(op, Gemm) and op.weights == "streamed":
            return (
                f"{op.name}: an LPU has no memory beyond its {self._sram_text()} SRAM to stream "
                "weights from; keep them resident and spread the model over more chips"
            )
        return super().refuse_reason(op)

    def _sram_text(self) -> str:
        return human_bytes(self.capacity_bytes)

    # ---- network ---------------------------------------------------------------------------
    @override
    def _links(self) -> Links:
        d = self.device
        prof = self.profile
        c2c = next((p for p in d.interconnect if p.kind == "c2c"), None)
        hop = d.lpu.c2c_hop_latency.value if d.lpu is not None else 0.0
        peer = c2c.bandwidth_Bps if c2c is not None else 1.0
        node = int(prof.node_chips.value)
        source = f"{d.name} C2C ports, GroqNode of {node} (profile {self.profile_key})"
        cl = self.cluster
        if cl is not None:
            node = cl.devices_per_node_count
            it = cl.intra_node
            if it is not None and it.bandwidth is not None:
                peer = it.bandwidth.value
            if it is not None and it.latency is not None:
                hop = it.latency.value
            source = f"cluster {cl.name}"
        return Links(
            peer_Bps=peer,
            inject_Bps=peer * max(1, node - 1),
            hop_latency_s=hop,
            domain=node,
            outer_Bps=peer * prof.global_links.value,
            outer_latency_s=hop * prof.node_hops.value,
            kind="c2c",
            outer_kind="c2c",
            source=source,
        )

    @override
    def placement(
        self, model: ModelConfig, layout: Layout, spec: StepSpec, stage_time_s: float = 0.0
    ) -> Placement:
        from hwsim.sim.lpu_placement import lpu_placement

        return lpu_placement(self, model, layout, spec, stage_time_s)

    # ---- ops -------------------------------------------------------------------------------
    def _sram_Bps(self) -> float:
        return self.device.level_bandwidth_Bps(self.device.main_memory.name)

    def _timing(
        self, name: str, parts: dict[str, float], level_bytes: dict[str, float], flops: float
    ) -> OpTiming:
        stream = max(parts, key=lambda k: parts[k])
        # the fixed per-operator latency is paid after the slowest stream, not overlapped with
        # it: the next operator depends on this one's last vector (static schedule, no overlap).
        # The bound is the larger term, so a batch-1 GEMV reads "latency", not "sram"
        lat = self.profile.op_latency.value
        return OpTiming(
            op=name,
            time_s=parts[stream] + lat,
            bound="latency" if lat > parts[stream] else stream,
            bytes_by_level={k: v for k, v in level_bytes.items() if v > 0},
            flops=flops,
            notes=(STATIC_NOTE,),
            source="lpu:static",
        )

    @override
    def gemm(self, op: Gemm) -> OpTiming:
        # the B operand (weights, or the second activation) is installed into the MXM once and
        # every row of A streams through it: install time vs MXM arithmetic vs vector streams
        installed = float(op.count) * op.n * op.k * DTYPE_BYTES[op.dtype]
        acts = gemm_activation_bytes(op) - (installed if op.weights == "activation" else 0.0)
        eff = self.profile.matrix_efficiency.value
        parts = {
            "sram": installed / self.profile.weight_stream_bandwidth.value,
            "compute": op.flops / (self.rate(op.dtype) * eff),
        }
        parts["sram"] = max(parts["sram"], (installed + acts) / self._sram_Bps())
        return self._timing(op.name, parts, {"sram": installed + acts}, op.flops)

    @override
    def attention(self, op: Attention) -> OpTiming:
        s = op.shape
        eff = self.profile.matrix_efficiency.value
        kv = op.kv_bytes
        exps = float(s.batch) * s.heads * s.seqlen_q * s.seqlen_kv
        if s.causal and s.seqlen_q > 1:
            exps /= 2
        special = self.device.compute.special
        exp_rate = special.value if special is not None else self.vector_rate()
        dtype = "fp8" if s.dtype.startswith("fp8") else s.dtype
        parts = {
            # K and V are the "weights" of QKᵀ and PV: they stream into the MXM once per pass
            "sram": kv / self.profile.weight_stream_bandwidth.value,
            "compute": op.flops / (self.rate(dtype) * eff),
            "vector": exps / exp_rate,
        }
        return self._timing(op.name, parts, {"sram": kv}, op.flops)

    @override
    def elementwise(self, op: Elementwise) -> OpTiming:
        fl = op.flops
        parts = {"vector": fl / self.vector_rate(), "sram": op.stream_bytes / self._sram_Bps()}
        return self._timing(op.name or op.op, parts, {"sram": op.stream_bytes}, fl)


register_mapper("lpu", LpuMapper, section="lpu")
