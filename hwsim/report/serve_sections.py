"""Sections of the main report from the simulators and the what-if engine: FA3 on H100 predicted
vs measured, an attention pipeline timeline, the DeepSeek-V3 all-to-all on the H800 cluster,
the DeepSeek-V3 deployment, decode across the four device kinds, and a sizing answer.

Each builder takes the report context and returns sections; a builder whose inputs are missing
(a simulator or suite not installed) returns one section that says so instead of failing the
whole report. Every figure carries a "what this shows" paragraph for students."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import plotly.graph_objects as go

from hwsim.report.page import Section, html_table
from hwsim.report.serve_figures import (
    breakdown_figure,
    compare_sections,
    link_load_figure,
    sizing_table,
    timeline_figure,
)
from hwsim.serve.api import serve_step
from hwsim.serve.compare import compare
from hwsim.serve.request import StepRequest
from hwsim.serve.size import size_cluster
from hwsim.spec.errors import SpecError

#: DeepSeek's published decode throughput per H800 node (Day-6 "inference system overview",
#: 2025-03-01: ~14.8k output tokens/s per node during decoding, 73.7k input tokens/s prefill).
DEEPSEEK_DECODE_TOKENS_PER_NODE = 14.8e3
DEEPSEEK_PREFILL_TOKENS_PER_NODE = 73.7e3
#: The four device kinds of the mission, one device each.
FOUR_KINDS = ("h200", "cerebras-wse3", "sambanova-sn40l", "groq-lpu")


def _guard(title: str, build: Callable[[], list[Section]]) -> list[Section]:
    try:
        return build()
    except Exception as err:
        kind = "" if isinstance(err, SpecError) else f"{type(err).__name__}: "
        return [Section(title=title, explanation=f"This section could not be built: {kind}{err}")]


def fa3_sections(_ctx: Any) -> list[Section]:
    """FlashAttention-3 forward on H100: the simulator against the published table."""

    def build() -> list[Section]:
        from hwsim.validate.fa3 import suite

        res = suite()
        fig = go.Figure()
        for g in dict.fromkeys(r.group for r in res.rows):
            rows = [r for r in res.rows if r.group == g]
            fig.add_trace(
                go.Scatter(
                    x=[r.measured for r in rows],
                    y=[r.predicted for r in rows],
                    mode="markers",
                    name=g,
                    text=[r.case for r in rows],
                    hovertemplate="%{text}<br>measured %{x:.0f}<br>predicted %{y:.0f}"
                    "<extra></extra>",
                )
            )
        top = max(max(r.measured, r.predicted) for r in res.rows) * 1.05
        fig.add_trace(
            go.Scatter(x=[0, top], y=[0, top], mode="lines", name="predicted = measured",
                       line={"dash": "dot", "color": "grey"})
        )  # fmt: skip
        fig.update_layout(
            xaxis={"title": f"measured ({res.rows[0].unit})"},
            yaxis={"title": f"predicted ({res.rows[0].unit})"},
            height=520,
        )
        table = html_table(
            ["group", "MAPE"], [[g, f"{m:.1%}"] for g, m in res.group_mape().items()]
        )
        return [
            Section(
                title="FlashAttention-3 on H100: predicted vs measured",
                explanation=(
                    "Each point is one FlashAttention-3 forward benchmark from the FA3 paper "
                    "(head dim, causal or not, sequence length): x is the throughput the authors "
                    "measured, y what the simulator predicts from the H100 spec and the kernel's "
                    "tile plan. Points on the diagonal are exact. Short sequences are slow for "
                    "both because the grid does not fill 132 SMs and the pipeline never reaches "
                    "steady state; long ones approach the tensor-core roof, held back by the "
                    f"softmax's exponentials. Overall MAPE {res.mape:.1%}."
                ),
                figure=fig,
                table_html=table,
            )
        ]

    return _guard("FlashAttention-3 on H100: predicted vs measured", build)


def attention_timeline_sections(_ctx: Any) -> list[Section]:
    """Tile-level spans of FA3 on two SMs: copies (TMA) overlapping matmuls and softmax."""

    def build() -> list[Section]:
        from hwsim.plan.attention import AttentionShape
        from hwsim.sim.gpu_attention import simulate_attention
        from hwsim.spec.load import load_device

        dev = load_device("h100-sxm")
        shape = AttentionShape(1, 2, 2, 1024, 1024, 128)
        r = simulate_attention(dev, shape, "fa3", detail="tile", trace=True, trace_sms=2)
        assert r.trace is not None
        fig = go.Figure()
        colours: dict[str, str] = {}
        palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2"]
        for s in r.trace.spans:
            c = colours.setdefault(s.name.split(" ")[0], palette[len(colours) % len(palette)])
            fig.add_trace(
                go.Bar(
                    x=[(s.end_s - s.start_s) * 1e6], base=[s.start_s * 1e6], y=[s.track],
                    orientation="h", marker={"color": c}, name=s.name.split(" ")[0],
                    showlegend=False, hovertemplate=f"{s.name}<br>%{{base:.2f}} µs + "
                    "%{x:.2f} µs<extra></extra>",
                )
            )  # fmt: skip
        fig.update_layout(
            xaxis={"title": "time (µs)"}, barmode="overlay", height=420,
            title=f"FA3 forward, 2 heads × 1024 tokens, d=128 on H100: {r.time_s * 1e6:.1f} µs",
        )  # fmt: skip
        return [
            Section(
                title="Inside an attention kernel: the tile pipeline",
                explanation=(
                    "The timeline of two SMs running FlashAttention-3. On each SM a copy "
                    "engine (TMA) loads the next K and V tiles from L2/HBM into shared memory "
                    "while the tensor cores multiply the current tile (QKᵀ, then PV) and the "
                    "softmax's exponentials run on the special-function units. When the bars "
                    "of the copy row sit under the compute bars the memory time is hidden: the "
                    "kernel is limited by whichever pipe is busiest. The first tile cannot be "
                    "hidden (pipeline fill), which is why short sequences run below peak."
                ),
                figure=fig,
            )
        ]

    return _guard("Inside an attention kernel: the tile pipeline", build)


def moe_alltoall_sections(_ctx: Any) -> list[Section]:
    """One DeepSeek-V3 dispatch at EP32 (4 H800 nodes, 4096 tokens per GPU), link by link."""

    def build() -> list[Section]:
        from hwsim.plan.moe import synthetic_dispatch_plan
        from hwsim.sim.alltoall import simulate_alltoall
        from hwsim.sim.topology import build_topology

        topo = build_topology("h800-deepseek", 4)
        plan = synthetic_dispatch_plan(32, 4096, 7168, 256, 8, 4, routing="deepep")[0]
        r = simulate_alltoall(topo, plan, "normal", "dispatch", dtype="fp8")
        kinds = html_table(
            ["link kind", "bytes"],
            [[k, f"{v / 1e9:.2f} GB"] for k, v in sorted(r.bytes_by_link_kind.items())],
        )
        return [
            Section(
                title="DeepSeek-V3 MoE dispatch on 4 H800 nodes (EP32): link loads",
                explanation=(
                    "Every GPU sends each of its 4096 tokens to the 8 experts its gate picked, "
                    "at most 4 nodes away (node-limited routing). DeepEP's normal kernel sends a "
                    "token once over InfiniBand to each destination node and forwards it there "
                    "over NVLink, so the 50 GB/s NIC of each GPU, not the 160 GB/s NVLink, is "
                    "the bottleneck: the RDMA links run near full utilisation while NVLink is "
                    f"half idle. Simulated time {r.time_s * 1e3:.2f} ms, "
                    f"{r.rdma_gbps:.0f} GB/s RDMA per GPU as DeepEP counts it, load imbalance "
                    f"{r.imbalance:.2f} (slowest rank / mean)."
                ),
                figure=link_load_figure(r.links, "dispatch, 32 GPUs, 4096 tokens each"),
                table_html=kinds,
            )
        ]

    return _guard("DeepSeek-V3 MoE dispatch on 4 H800 nodes (EP32): link loads", build)


def deepseek_sections(_ctx: Any) -> list[Section]:
    """DeepSeek-V3's published deployment as layouts: prefill EP32, decode EP320 on H800."""

    def build() -> list[Section]:
        pre = serve_step(
            StepRequest(
                "deepseek-v3",
                "h800",
                "prefill",
                batch=32,
                context=4096,
                layout="tp=4,dp=8,ep=32",
                dtype="fp8",
            )
        )
        dec = serve_step(
            StepRequest(
                "deepseek-v3",
                "h800",
                "decode",
                batch=320 * 32,
                context=4096,
                layout="tp=4,dp=80,ep=320",
                dtype="fp8",
                mtp=1,
                mtp_acceptance=0.85,
            )
        )
        rows = [
            ["prefill (EP32, 4 nodes)", f"{pre.ttft_s * 1e3:.0f} ms TTFT",
             f"{pre.tokens_per_s_total / (pre.devices / 8):,.0f} input tok/s/node",
             f"{DEEPSEEK_PREFILL_TOKENS_PER_NODE:,.0f}", pre.bound],
            ["decode (EP320, 40 nodes)", f"{dec.time_per_token_s * 1e3:.1f} ms/token",
             f"{dec.tokens_per_s_total / (dec.devices / 8):,.0f} output tok/s/node",
             f"{DEEPSEEK_DECODE_TOKENS_PER_NODE:,.0f}", dec.bound],
        ]  # fmt: skip
        table = html_table(["phase", "step", "simulated", "DeepSeek published", "bound"], rows)
        return [
            Section(
                title="DeepSeek-V3 as DeepSeek deploys it (H800, prefill EP32, decode EP320)",
                explanation=(
                    "DeepSeek serves V3 with attention split 4 ways (TP4) and replicated (DP) "
                    "and experts spread over 32 GPUs for prefill or 320 GPUs for decode, one "
                    "expert per GPU, with two micro-batches in flight so that one's all-to-all "
                    "hides under the other's compute. The bars show where one GPU's time goes "
                    "in each step; 'comm_exposed' is communication nothing could hide. Decode "
                    "is dominated by reading the MLA latent KV cache (attention) even though "
                    "each expert's weights are read once for all the tokens routed to it; "
                    "docs/deepseek-v3-deployment.md discusses the gap to the published figures."
                ),
                figure=breakdown_figure([pre, dec], ["prefill EP32", "decode EP320"]),
                table_html=table,
            ),
            Section(
                title="DeepSeek-V3 prefill: dual micro-batch timeline",
                explanation=(
                    "The first layers of a prefill step on one GPU, two micro-batches. Red bars "
                    "on a 'comm' row are dispatch/combine all-to-alls and TP collectives; when "
                    "they line up with compute bars of the other micro-batch, the communication "
                    "is hidden. Exposed communication appears as gaps in the compute rows."
                ),
                figure=timeline_figure(pre, layers=5),
            ),
        ]

    return _guard("DeepSeek-V3 as DeepSeek deploys it", build)


def four_kinds_sections(_ctx: Any) -> list[Section]:
    """Llama-3.1-70B and DeepSeek-V3 decode on one device of each kind, batch 1 and 64."""

    def build() -> list[Section]:
        out: list[Section] = []
        for model, dtype in (("llama-3.1-70b", "bf16"), ("deepseek-v3", "fp8")):
            cmp = compare(model, list(FOUR_KINDS), [1, 64], context=4096, dtype=dtype)
            out += compare_sections(cmp)[:1]
        return out

    return _guard("Decode across the four device kinds", build)


def sizing_sections(_ctx: Any) -> list[Section]:
    """How many H200s serve DeepSeek-V3 at 50 tok/s/user and 100k tok/s in total."""

    def build() -> list[Section]:
        ans = size_cluster(
            "deepseek-v3", "h200", tokens_per_s_per_user=50, total_tokens_per_s=100_000,
            context=4096, max_ttft_s=1.0, dtype="fp8", max_devices_per_instance=64,
            layouts_per_size=2,
        )  # fmt: skip
        best = ans.by_devices
        summary = (
            f"The answer: {best.devices} H200s as {best.instances} × ({best.layout}) with "
            f"{best.batch_per_instance} sequences each."
            if best
            else "No cluster up to 64 GPUs per replica meets the SLO."
        )
        return [
            Section(
                title="Sizing: DeepSeek-V3 on H200 at 50 tokens/s per user, 100k tokens/s",
                explanation=(
                    "hwsim size searches model replicas (layouts over 8 to 64 GPUs), finds for "
                    "each the largest batch that still gives every user 50 tokens/s with 4k "
                    "tokens of context and a first token within 1 s, and counts the replicas "
                    "needed for 100k tokens/s. Bigger replicas spread the experts thinner, so "
                    "more memory is left for KV cache and a larger batch: throughput per GPU "
                    f"rises with the replica size until communication dominates. {summary} "
                    f"({ans.evaluated} steps simulated.)"
                ),
                table_html=sizing_table(ans),
            )
        ]

    return _guard("Sizing: DeepSeek-V3 on H200", build)
