"""Plotly figures and report sections for whole-model serving (:mod:`hwsim.serve`): the device
comparison (Pareto of per-user vs per-device throughput, cost, bound), a step timeline with
compute and communication streams, the breakdown by layer kind, MoE all-to-all link loads, and
the sizing answer. Pure functions of results; only the page writer writes files."""

from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go

from hwsim.report.page import Section, html_table
from hwsim.serve.compare import Comparison, pareto_front
from hwsim.serve.size import SizingAnswer
from hwsim.serve.step import StepResult

_KIND_SYMBOL = {"gpu": "circle", "wafer_scale": "square", "dataflow": "diamond", "lpu": "star"}
_CAT_COLOUR = {
    "attention": "#1f77b4",
    "ffn": "#2ca02c",
    "moe": "#17becf",
    "norm": "#bcbd22",
    "lm_head": "#9467bd",
    "mtp": "#8c564b",
    "comm": "#d62728",
}


def pareto_figure(cmp: Comparison) -> go.Figure:
    """Tokens/s per user (x) against tokens/s per device (y), one marker per device and batch,
    with its expected error as error bars; the Pareto frontier joined by a line."""
    fig = go.Figure()
    rows = [r for r in cmp.rows if r.result is not None]
    for dev in dict.fromkeys(r.device for r in rows):
        pts = [r for r in rows if r.device == dev and r.result]
        # the error bar of each step (hwsim.sim.trust): both axes scale with 1 / step time
        err = [r.result.trust.expected_error_pct / 100 for r in pts if r.result]
        xs = [r.result.tokens_per_s_per_user for r in pts if r.result]
        ys = [r.per_device for r in pts]
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=ys,
                error_x={
                    "type": "data",
                    "array": [x * e for x, e in zip(xs, err, strict=True)],
                    "thickness": 1,
                },
                error_y={
                    "type": "data",
                    "array": [y * e for y, e in zip(ys, err, strict=True)],
                    "thickness": 1,
                },
                mode="markers+text",
                name=dev,
                text=[f"b={r.batch}" for r in pts],
                textposition="top center",
                marker={"size": 12, "symbol": _KIND_SYMBOL.get(pts[0].kind, "circle")},
                customdata=[
                    [r.result.devices, str(r.result.layout), r.result.bound, r.result.trust.band()]
                    for r in pts
                    if r.result
                ],
                hovertemplate="%{fullData.name} batch %{text}<br>%{x:.1f} tok/s/user<br>"
                "%{y:.1f} tok/s/device (expected error %{customdata[3]})<br>"
                "%{customdata[0]} devices %{customdata[1]}<br>"
                "bound: %{customdata[2]}<extra></extra>",
            )
        )
    front = sorted(
        (cmp.rows[i] for i in pareto_front(cmp.rows)),
        key=lambda r: r.result.tokens_per_s_per_user if r.result else 0.0,
    )
    if len(front) > 1:
        fig.add_trace(
            go.Scatter(
                x=[r.result.tokens_per_s_per_user for r in front if r.result],
                y=[r.per_device for r in front],
                mode="lines",
                name="Pareto frontier",
                line={"dash": "dot", "color": "grey"},
                hoverinfo="skip",
            )
        )
    fig.update_layout(
        title=f"{cmp.model} {cmp.phase}: speed per user vs throughput per device",
        xaxis={"title": "tokens/s per user", "type": "log"},
        yaxis={"title": "tokens/s per device", "type": "log"},
        height=520,
    )
    return fig


def cost_figure(cmp: Comparison) -> go.Figure:
    """Tokens per joule and dollars of hardware per token/s, per device and batch."""
    rows = [cmp.row_dict(r) for r in cmp.rows if r.result is not None]
    labels = [f"{r['device']} b={r['batch']}" for r in rows]
    fig = go.Figure()
    fig.add_trace(go.Bar(x=labels, y=[r["tokens_per_joule"] for r in rows], name="tokens / J"))
    usd = [r.get("usd_per_million_tokens_per_s") for r in rows]
    fig.add_trace(
        go.Bar(
            x=labels,
            y=[float(u) / 1e6 if isinstance(u, int | float) else None for u in usd],
            name="hardware $ per (token/s)",
            yaxis="y2",
            opacity=0.6,
        )
    )
    fig.update_layout(
        title="Energy and capital cost per token",
        yaxis={"title": "tokens per joule (TDP)", "type": "log"},
        yaxis2={"title": "$ per token/s", "overlaying": "y", "side": "right", "type": "log"},
        barmode="group",
        height=460,
    )
    return fig


def compare_table(cmp: Comparison) -> str:
    cols = ["device", "batch", "devices", "layout", "tok/s/user", "tok/s/device", "memory/device",
            "bound", "Pareto"]  # fmt: skip
    front = pareto_front(cmp.rows)
    out = []
    for i, r in enumerate(cmp.rows):
        if r.result is None:
            out.append([r.device, r.batch, "-", r.error or "", "", "", "", "", ""])
            continue
        s = r.result
        out.append(
            [r.device, r.batch, s.devices, str(s.layout), f"{s.tokens_per_s_per_user:,.1f}",
             f"{r.per_device:,.1f}", f"{s.memory_per_device_bytes / 1e9:.1f} GB", s.bound,
             "yes" if i in front else ""]
        )  # fmt: skip
    return html_table(cols, out)


def compare_sections(cmp: Comparison) -> list[Section]:
    return [
        Section(
            title=f"{cmp.model} {cmp.phase} across devices",
            explanation=(
                "Each marker is one device type serving the model at one batch size, on the "
                "fewest whole nodes that hold the weights and KV cache. Right is faster for each "
                "user; up is more tokens per device (cheaper per token). At batch 1 every "
                "device streams all its weights once per token, so the chips that keep weights "
                "in SRAM (LPU, wafer) are far right but need hundreds of chips, so they sit low. "
                "Raising the batch reuses each weight byte for many users: GPUs climb steeply "
                "until the KV cache and compute start to cost. The dotted line joins the points "
                "no other point beats on both axes (the Pareto frontier)."
            ),
            figure=pareto_figure(cmp),
            table_html=compare_table(cmp),
        ),
        Section(
            title=f"{cmp.model}: cost per token",
            explanation=(
                "Tokens per joule (at TDP) and dollars of hardware per token/s of throughput. "
                "Batch size moves both by orders of magnitude because the same weight bytes are "
                "shared by more users; a device wins on cost only where it can batch."
            ),
            figure=cost_figure(cmp),
        ),
    ]


def timeline_figure(r: StepResult, layers: int = 3) -> go.Figure:
    """The first ``layers`` layers of the step: one row per (micro-batch, stream), a bar per op
    coloured by category, so that overlap of communication with compute is visible."""
    spans = [s for s in r.timeline if s.layer < layers]
    fig = go.Figure()
    seen: set[str] = set()
    for s in spans:
        row = f"mb{s.micro_batch} {s.stream}"
        fig.add_trace(
            go.Bar(
                x=[(s.end_s - s.start_s) * 1e6],
                base=[s.start_s * 1e6],
                y=[row],
                orientation="h",
                name=s.category,
                legendgroup=s.category,
                showlegend=s.category not in seen,
                marker={"color": _CAT_COLOUR.get(s.category, "#7f7f7f")},
                hovertemplate=f"{s.name} (layer {s.layer})<br>%{{base:.1f}} µs + %{{x:.1f}} µs"
                "<extra></extra>",
            )
        )
        seen.add(s.category)
    fig.update_layout(
        title=f"{r.model} {r.phase} on {r.device} ({r.layout}): first {layers} layers",
        xaxis={"title": "time (µs)"},
        barmode="overlay",
        height=320 + 40 * r.micro_batches,
    )
    return fig


def breakdown_figure(results: Sequence[StepResult], labels: Sequence[str]) -> go.Figure:
    """Stacked busy time per category (and exposed communication) per result, in ms."""
    cats = ["attention", "ffn", "moe", "norm", "lm_head", "mtp", "comm_exposed"]
    fig = go.Figure()
    for c in cats:
        vals = [r.breakdown_s.get(c, 0.0) * 1e3 for r in results]
        if any(vals):
            fig.add_trace(
                go.Bar(
                    x=list(labels),
                    y=vals,
                    name=c,
                    marker={"color": _CAT_COLOUR.get(c, _CAT_COLOUR.get(c.split("_")[0]))},
                )
            )
    fig.update_layout(barmode="stack", yaxis={"title": "ms per step, one device"}, height=460)
    return fig


def link_load_figure(links: Sequence[object], title: str) -> go.Figure:
    """Utilisation of every loaded link of an all-to-all, grouped by link kind."""
    rows = sorted(
        ((getattr(lk, "kind", ""), getattr(lk, "name", ""), getattr(lk, "utilization", 0.0),
          getattr(lk, "bytes_moved", 0.0)) for lk in links),
        key=lambda t: (t[0], -t[2]),
    )  # fmt: skip
    fig = go.Figure()
    for kind in dict.fromkeys(r[0] for r in rows):
        sel = [r for r in rows if r[0] == kind]
        fig.add_trace(
            go.Bar(
                x=[r[1] for r in sel],
                y=[r[2] for r in sel],
                name=kind,
                customdata=[r[3] / 1e6 for r in sel],
                hovertemplate="%{x}<br>utilisation %{y:.0%}<br>%{customdata:.1f} MB<extra></extra>",
            )
        )
    fig.update_layout(
        title=title,
        xaxis={"title": "link", "showticklabels": False},
        yaxis={"title": "utilisation over the phase", "tickformat": ".0%"},
        height=420,
    )
    return fig


def sizing_table(ans: SizingAnswer) -> str:
    cols = ["pick", "devices", "instances × layout", "batch/instance", "tok/s/user",
            "tok/s total", "power", "price"]  # fmt: skip
    rows = []
    for label, c in (
        ("fewest devices", ans.by_devices),
        ("least power", ans.by_power),
        ("lowest price", ans.by_price),
    ):
        if c is None:
            continue
        rows.append(
            [label, c.devices, f"{c.instances} × {c.layout}", c.batch_per_instance,
             f"{c.tokens_per_s_per_user:,.1f}", f"{c.tokens_per_s_total:,.0f}",
             f"{c.power_W / 1e3:,.1f} kW",
             f"${c.price_usd:,.0f}" if c.price_usd is not None else "-"]
        )  # fmt: skip
    return html_table(cols, rows)
