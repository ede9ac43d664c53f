"""Plans drawn for people: how a model is laid out on a wafer, an RDU and a rack of LPUs.

* :func:`wafer_figure`: the operators of one pipeline stage as rectangular regions of the
  WSE mesh (cores to scale), coloured by kind, hover: cores, bytes, time.
* :func:`rdu_figure`: one decoder layer as a fused spatial pipeline, PCUs and PMUs shared out
  in proportion to each operator's time, and what one socket keeps in SRAM, HBM and DDR.
* :func:`lpu_figure`: which chip of which node holds which layers, and a batch-1 token
  passing the pipeline stages one after another (the bubble: each stage is busy ``1/pp``).

Every function takes the same plan the simulator times (:func:`hwsim.plan.model_step.build_step`
through the kind's mapper), so the drawing and the numbers cannot disagree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from hwsim.plan.model_step import StepSpec, build_step, memory_per_device
from hwsim.plan.workload import Attention, Gemm, op_name
from hwsim.report.page import Section, html_table, render_page
from hwsim.serve.layout import Layout
from hwsim.sim.dataflow import DataflowMapper, pipeline_stages
from hwsim.sim.lpu import place_chips
from hwsim.sim.wafer import WaferMapper
from hwsim.spec.fit import human_bytes
from hwsim.spec.model import ModelConfig

#: One colour per op category (plotly's qualitative palette).
COLOURS = {
    "attention": "#636efa",
    "ffn": "#ef553b",
    "moe": "#00cc96",
    "norm": "#ab63fa",
    "lm_head": "#ffa15a",
    "mtp": "#19d3f3",
    "comm": "#7f7f7f",
}


@dataclass(frozen=True)
class Mapping:
    """What a drawing needs: the model, layout and step, plus the mapper that times them."""

    model: ModelConfig
    layout: Layout
    spec: StepSpec


def _us(t: float) -> str:
    return f"{t * 1e6:.2f} us"


# ---------------------------------------------------------------------------------- wafer
def stage_mapper(m: Mapping, mapper: WaferMapper) -> WaferMapper:
    """The wafer mapper as the simulator uses it for this deployment: packed for what one
    wafer holds (:meth:`WaferMapper.for_resident`), so drawing and timing share the regions."""
    w, kv = memory_per_device(m.model, m.layout, m.spec)
    return mapper.for_resident(w + kv)


def wafer_regions(
    m: Mapping, mapper: WaferMapper, stage: int = 0, max_layers: int | None = None
) -> list[tuple[str, str, float, float]]:
    """``(label, category, bytes, time_s)`` of every region-holding op of ``stage``, in order."""
    mapper = stage_mapper(m, mapper)
    graph = build_step(m.model, m.layout, m.spec)
    out: list[tuple[str, str, float, float]] = []
    layer = 0
    for lg in graph.stages[stage]:
        for _ in range(lg.repeat):
            if max_layers is not None and layer >= max_layers:
                return out
            for so in lg.ops:
                if not isinstance(so.op, Gemm | Attention):
                    continue
                b = mapper.region_bytes(so.op)
                if b > 0:
                    t = mapper.time(so.op).time_s
                    out.append((f"{lg.name} {layer}: {op_name(so.op)}", so.category, b, t))
            layer += 1
    return out


def wafer_figure(m: Mapping, mapper: WaferMapper, stage: int = 0) -> go.Figure:
    """Regions of one stage's operators on the wafer's mesh (cores to scale)."""
    mapper = stage_mapper(m, mapper)
    items = wafer_regions(m, mapper, stage)
    regions = mapper.place_regions([(label, b, t) for label, _, b, t in items], fit=True)
    fig = go.Figure()
    seen: set[str] = set()
    category = {label: cat for label, cat, _, _ in items}
    for r in regions:  # a region that wraps to the next band comes as two rectangles
        cat = category[r.name]
        x0, x1, y0, y1 = r.col, r.col + r.cols, r.row, r.row + r.rows
        fig.add_trace(
            go.Scatter(
                x=[x0, x1, x1, x0, x0],
                y=[y0, y0, y1, y1, y0],
                fill="toself",
                mode="lines",
                line={"width": 0.5, "color": "white"},
                fillcolor=COLOURS.get(cat, "#888"),
                name=cat,
                legendgroup=cat,
                showlegend=cat not in seen,
                hoveron="fills",
                text=(
                    f"{r.name}<br>{r.rows}×{r.cols} = {r.cores:,} cores<br>"
                    f"{human_bytes(r.bytes)} resident<br>{_us(r.time_s)} per token"
                ),
                hoverinfo="text",
            )
        )
        seen.add(cat)
    used = sum(r.cores for r in regions)
    fill = sum(r.bytes for r in regions) / max(1, used) / mapper.core_bytes
    fig.update_layout(
        title=(
            f"{m.model.name} stage {stage} on one {mapper.device.name}: {len(items)} regions, "
            f"{used:,} of {mapper.cores:,} cores ({used / mapper.cores:.0%}), each core's SRAM "
            f"{fill:.0%} full"
        ),
        xaxis={"title": "mesh column", "range": [0, mapper.mesh_cols], "constrain": "domain"},
        yaxis={
            "title": "mesh row",
            "range": [mapper.mesh_rows, 0],
            "scaleanchor": "x",
            "constrain": "domain",
        },
        height=720,
        template="plotly_white",
    )
    return fig


# ---------------------------------------------------------------------------------- dataflow
def rdu_figure(m: Mapping, mapper: DataflowMapper) -> go.Figure:
    """One decoder layer as a fused pipeline over PCUs/PMUs, and one socket's memory tiers."""
    graph = build_step(m.model, m.layout, m.spec)
    layer = graph.stages[0][0]
    stages = pipeline_stages(list(layer.ops), mapper)
    fig = make_subplots(
        rows=2,
        cols=1,
        row_heights=[0.55, 0.45],
        vertical_spacing=0.18,
        subplot_titles=(
            f"one {layer.name} fused into a spatial pipeline: units per operator ∝ its time",
            "what one socket holds (bytes) and the capacity of each tier",
        ),
    )
    for st in stages:
        for unit, n in (("PCUs", st.pcus), ("PMUs", st.pmus)):
            fig.add_trace(
                go.Bar(
                    y=[unit],
                    x=[n],
                    orientation="h",
                    name=st.op,
                    legendgroup=st.op,
                    showlegend=unit == "PCUs",
                    marker_color=COLOURS.get(st.category, "#888"),
                    marker_line={"width": 1, "color": "white"},
                    text=st.op if n > 40 else "",
                    hovertext=f"{st.op}: {n} {unit}, {_us(st.time_s)}, bound {st.bound}",
                    hoverinfo="text",
                ),
                row=1,
                col=1,
            )
    w, kv = memory_per_device(m.model, m.layout, m.spec)
    dev = mapper.device
    tiers = ["sram", "hbm", "ddr"]
    caps = [dev.level_capacity_bytes(t) for t in tiers]
    hbm_w = min(w, caps[1])
    used = [0.0, hbm_w + kv, w - hbm_w]
    fig.add_trace(
        go.Bar(x=tiers, y=caps, name="capacity", marker_color="#dddddd", showlegend=True),
        row=2,
        col=1,
    )
    fig.add_trace(
        go.Bar(
            x=tiers,
            y=used,
            name="weights + KV of this layout",
            marker_color="#636efa",
            hovertext=[human_bytes(u) for u in used],
            hoverinfo="text",
        ),
        row=2,
        col=1,
    )
    fig.update_yaxes(type="log", title_text="bytes", row=2, col=1)
    fig.update_layout(
        barmode="stack",
        title=f"{m.model.name} on {m.layout.devices} × {dev.name} ({m.layout})",
        height=720,
        template="plotly_white",
    )
    fig.update_layout(barmode="stack")
    return fig


# ---------------------------------------------------------------------------------- LPU
def lpu_figure(m: Mapping, stage_time_s: float, node_chips: int = 8) -> go.Figure:
    """Chips by node and stage, and one batch-1 token walking the pipeline stages."""
    slots = place_chips(m.model, m.layout, m.spec, node_chips)
    pp = m.layout.pp
    fig = make_subplots(
        rows=2,
        cols=1,
        row_heights=[0.6, 0.4],
        vertical_spacing=0.14,
        subplot_titles=(
            f"{len(slots)} chips: colour = pipeline stage (layers), nodes of {node_chips}",
            f"batch 1: one token visits the {pp} stages in turn; each is busy 1/{pp} of the time",
        ),
    )
    fig.add_trace(
        go.Scatter(
            x=[s.chip % node_chips for s in slots],
            y=[s.node for s in slots],
            mode="markers",
            marker={
                "symbol": "square",
                "size": max(4, min(18, 900 // max(1, len(slots) // node_chips))),
                "color": [s.stage for s in slots],
                "colorscale": "Viridis",
                "colorbar": {"title": "stage", "len": 0.55, "y": 0.75},
            },
            text=[
                f"chip {s.chip} (node {s.node})<br>stage {s.stage}, tp rank {s.tp_rank}<br>"
                f"layers {s.layers[0]}-{s.layers[1] - 1}<br>weights {human_bytes(s.weight_bytes)}, "
                f"KV {human_bytes(s.kv_bytes)}"
                for s in slots
            ],
            hoverinfo="text",
            showlegend=False,
        ),
        row=1,
        col=1,
    )
    shown = min(pp, 64)
    fig.add_trace(
        go.Bar(
            y=[f"stage {i}" for i in range(shown)],
            x=[stage_time_s * 1e6] * shown,
            base=[i * stage_time_s * 1e6 for i in range(shown)],
            orientation="h",
            marker_color="#636efa",
            name="stage busy",
            hovertext=[f"stage {i}: {_us(stage_time_s)}" for i in range(shown)],
            hoverinfo="text",
        ),
        row=2,
        col=1,
    )
    fig.update_yaxes(title_text="node", autorange="reversed", row=1, col=1)
    fig.update_xaxes(title_text="chip in node", row=1, col=1)
    fig.update_xaxes(title_text="time in one token (us)", row=2, col=1)
    fig.update_yaxes(autorange="reversed", row=2, col=1)
    fig.update_layout(
        title=f"{m.model.name} on {len(slots)} LPU chips ({m.layout})",
        height=820,
        template="plotly_white",
    )
    return fig


# ---------------------------------------------------------------------------------- page
def mapping_html(
    title: str, intro: str, figures: Sequence[tuple[str, str, go.Figure]], table: list[list[str]]
) -> str:
    """A self-contained page: a summary table, then ``(title, explanation, figure)`` sections."""
    sections = [Section("Summary", intro, table_html=html_table(["quantity", "value"], table))]
    sections += [Section(t, e, figure=f) for t, e, f in figures]
    return render_page(title, intro, sections)
