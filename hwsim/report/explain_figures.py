"""Figures for ``hwsim explain --html``: the roofline point moving with each what-if, a stacked
bar of time by resource, bytes per memory level drawn as a pyramid, and the page that holds them.
"""

from __future__ import annotations

import math
from pathlib import Path

import plotly.graph_objects as go

from hwsim.report.explain import Explanation, Outcome, fmt_delta, fmt_time, rname
from hwsim.report.figures import KERNEL_COLORS, LEVEL_COLORS
from hwsim.report.page import Section, html_table, write_page
from hwsim.spec.units import Dim, format_quantity

LEVER_COLORS = {
    "tile/SRAM": "#2ca02c",
    "bandwidth": "#1f77b4",
    "compute": "#d62728",
    "overlap/profile": "#9467bd",
    "layout": "#ff7f0e",
    "dtype": "#17becf",
}


def _runs(e: Explanation) -> list[tuple[str, Outcome, str]]:
    """(name, outcome, colour) for the base and every what-if, fastest what-if first."""
    out = [("as given", e.base, "#333333")]
    for w in e.whatifs:
        c = w.candidate
        out.append((c.title, w.outcome, LEVER_COLORS.get(c.lever, "#7f7f7f")))
    return out


def _main_level(o: Outcome) -> str | None:
    """The outermost level that moved bytes (the classic roofline's x-axis)."""
    levels = [k for k, v in o.bytes.items() if v > 0]
    return levels[-1] if levels else None


def roofline_moves(e: Explanation) -> go.Figure | None:
    """The base run and every what-if on the base device's roofline (intensity at the outermost
    memory level vs attainable FLOP/s), with an arrow from the base to each what-if. None for
    runs without FLOPs (an all-to-all)."""
    base = e.base
    lvl = _main_level(base)
    if base.work_flops <= 0 or lvl is None:
        return None
    fig = go.Figure()
    pts = []
    for name, o, color in _runs(e):
        q = o.bytes.get(lvl, 0.0)
        if q <= 0 or o.time_s <= 0:
            continue
        x, y = o.work_flops / q, o.work_flops / o.time_s
        pts.append((name, x, y, color, o))
    xs = [p[1] for p in pts]
    lo, hi = min(xs) / 8, max(xs) * 8
    peak = base.peak_flops
    fig.add_trace(
        go.Scatter(
            x=[lo, hi],
            y=[peak, peak],
            mode="lines",
            line={"color": "#333", "width": 1.5},
            name=f"matrix peak {format_quantity(peak, Dim.RATE, 3)}",
        )
    )
    for i, (level, bw) in enumerate(base.bandwidth_Bps.items()):
        if not (bw > 0 and math.isfinite(bw)):
            continue
        fig.add_trace(
            go.Scatter(
                x=[lo, min(hi, peak / bw)],
                y=[lo * bw, min(hi * bw, peak)],
                mode="lines",
                line={"color": LEVEL_COLORS[i % len(LEVEL_COLORS)], "width": 1.5},
                name=f"{level} {format_quantity(bw, Dim.BANDWIDTH, 3)} (base device)",
            )
        )
    b_name, bx, by, _, _ = pts[0]
    for name, x, y, color, o in pts:
        is_base = name == b_name
        fig.add_trace(
            go.Scatter(
                x=[x],
                y=[y],
                mode="markers",
                marker={"size": 16 if is_base else 11, "color": color, "symbol": "circle"},
                name=name,
                hovertext=(
                    f"<b>{name}</b><br>{fmt_time(o.time_s)}, bound: {o.bound}<br>"
                    f"intensity {x:.3g} FLOP/B at {lvl}<br>"
                    f"{format_quantity(y, Dim.RATE, 3)}"
                ),
                hoverinfo="text",
            )
        )
        if not is_base:
            fig.add_annotation(
                x=math.log10(x),
                y=math.log10(y),
                ax=math.log10(bx),
                ay=math.log10(by),
                xref="x",
                yref="y",
                axref="x",
                ayref="y",
                showarrow=True,
                arrowhead=2,
                arrowcolor=color,
                opacity=0.7,
                text="",
            )
    fig.update_layout(
        title=f"The roofline point moving with each what-if ({lvl} intensity)",
        xaxis={"type": "log", "title": f"arithmetic intensity (FLOP per byte at {lvl})"},
        yaxis={"type": "log", "title": "attainable FLOP/s"},
        template="plotly_white",
        height=520,
    )
    return fig


def time_by_resource(e: Explanation) -> go.Figure:
    """One stacked bar per run. When the resources partition the time (a model step: time in
    ops bound by each), every resource is a segment; when they overlap (a kernel: the tensor
    cores and HBM are busy at the same time), the bar is the bounding resource's busy time plus
    the rest of the run, and the hover lists every resource's busy share."""
    runs = _runs(e)
    names = [r[0] for r in runs]
    partition = all(abs(sum(o.busy_s.values()) - o.time_s) <= 0.02 * o.time_s for _, o, _ in runs)
    fig = go.Figure()
    if partition:
        resources: list[str] = []
        for _, o, _ in runs:
            resources += [r for r in o.busy_s if r not in resources]
        for i, res in enumerate(resources):
            fig.add_trace(
                go.Bar(
                    y=names,
                    x=[o.busy_s.get(res, 0.0) * 1e6 for _, o, _ in runs],
                    orientation="h",
                    name=rname(res),
                    marker={"color": KERNEL_COLORS[i % len(KERNEL_COLORS)]},
                    hovertemplate=f"{rname(res)}: %{{x:.4g}} µs<extra>%{{y}}</extra>",
                )
            )
    else:
        bound_t, rest_t, hover = [], [], []
        for _, o, _ in runs:
            b = o.busy_s.get(o.bound, 0.0) if o.bound in o.busy_s else 0.0
            bound_t.append(b * 1e6)
            rest_t.append(max(o.time_s - b, 0.0) * 1e6)
            hover.append("<br>".join(f"{rname(r)}: {100 * s:.0f}% busy" for r, s in o.ranked()[:6]))
        fig.add_trace(
            go.Bar(
                y=names,
                x=bound_t,
                orientation="h",
                name="the bounding resource busy",
                marker={"color": "#d62728"},
                text=[o.bound for _, o, _ in runs],
                textposition="inside",
                hovertext=hover,
                hoverinfo="text+x",
            )
        )
        fig.add_trace(
            go.Bar(
                y=names,
                x=rest_t,
                orientation="h",
                name="rest of the run (waiting, fill, overhead)",
                marker={"color": "#c7c7c7"},
                hovertext=hover,
                hoverinfo="text+x",
            )
        )
    fig.update_layout(
        barmode="stack",
        title="Time by resource, as given and for each what-if (µs)",
        xaxis={"title": "time (µs)"},
        yaxis={"autorange": "reversed"},
        template="plotly_white",
        height=140 + 45 * len(runs),
        margin={"l": 260},
    )
    return fig


def bytes_pyramid(e: Explanation) -> go.Figure:
    """Bytes per memory level (or link kind) as a pyramid: the outermost level at the bottom,
    bar width proportional to bytes, the base run and the best what-if side by side."""
    runs = [("as given", e.base)]
    if e.top is not None:
        runs.append((e.top.candidate.title, e.top.outcome))
    fig = go.Figure()
    for j, (name, o) in enumerate(runs):
        levels = list(o.bytes)
        widths = [o.bytes[k] for k in levels]
        top = max(widths) if widths else 1.0
        offset = j * 1.1 * top
        fig.add_trace(
            go.Bar(
                y=[f"{k}" for k in levels],
                x=widths,
                base=[offset - w / 2 for w in widths],
                orientation="h",
                name=name,
                marker={"color": "#1f77b4" if j == 0 else "#ff7f0e"},
                text=[format_quantity(w, Dim.BYTES, 3) for w in widths],
                textposition="inside",
                hovertemplate="%{y}: %{text}<extra>" + name + "</extra>",
            )
        )
    fig.update_layout(
        title="Bytes moved at each memory level (innermost at the top): as given | best what-if",
        barmode="overlay",
        xaxis={"visible": False},
        yaxis={"autorange": "reversed", "title": ""},
        template="plotly_white",
        height=120 + 60 * max(1, len(e.base.bytes)),
    )
    return fig


def whatif_table(e: Explanation) -> str:
    rows = [["as given", "", fmt_time(e.base.time_s), "", e.base.bound, ""]]
    for w in e.whatifs:
        c = w.candidate
        rows.append(
            [
                c.title,
                c.lever,
                fmt_time(w.outcome.time_s),
                fmt_delta(w.delta),
                w.outcome.bound,
                c.change.describe(),
            ]
        )
    return html_table(
        ["what-if", "lever", "time", "vs. as given", "bound", "re-simulated with"], rows
    )


def write_explanation_page(path: Path, e: Explanation) -> Path:
    """The story and its figures as one self-contained HTML page."""
    sections = [
        Section(
            title="Where the time goes",
            explanation=" ".join(e.sentences[: len(e.sentences) - len(e.whatifs)]),
            table_html=whatif_table(e),
        )
    ]
    roof = roofline_moves(e)
    if roof is not None:
        sections.append(
            Section(
                title="The roofline point, moved by each what-if",
                explanation=(
                    "Each marker is one simulated run: its FLOPs per byte at the outermost memory "
                    "level against the FLOP/s it attains. The lines are the base device's "
                    "ceilings; a what-if that changes the device moves the ceilings too, so a "
                    "point may rise above them."
                ),
                figure=roof,
            )
        )
    sections.append(
        Section(
            title="Time by resource",
            explanation=(
                "How much of each run the bounding resource is busy, and the rest; hover a bar "
                "for every resource's busy share."
            ),
            figure=time_by_resource(e),
        )
    )
    sections.append(
        Section(
            title="Bytes per memory level",
            explanation=(
                "The bytes each level serves, innermost at the top. Reuse makes the pyramid "
                "stand on its head: inner levels serve the same bytes many times."
            ),
            figure=bytes_pyramid(e),
        )
    )
    return write_page(path, f"hwsim explain: {e.label}", e.sentences[0], sections)
