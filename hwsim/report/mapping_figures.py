"""Placements drawn for people: any device kind's :class:`~hwsim.sim.placement.Placement` as
plotly figures and a self-contained page.

The mapper describes where things live (wafer regions, RDU pipeline stages, LPU chips, or the
default: one layer's operators and one device's memory) as generic panels of marks; this module
draws each panel form the same way for every kind (:func:`view_figure`) and never asks which
kind it draws. The description comes from the mapper that times the step, so the drawing and
the numbers cannot disagree.
"""

from __future__ import annotations

from pathlib import Path

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from hwsim.report.page import Section, html_table, write_page
from hwsim.serve.mapping import MapResult
from hwsim.sim.placement import Panel, Placement, View
from hwsim.spec.errors import SpecError

#: One colour per op category (plotly's qualitative palette); "capacity" is the grey of room.
COLOURS = {
    "attention": "#636efa",
    "ffn": "#ef553b",
    "moe": "#00cc96",
    "norm": "#ab63fa",
    "lm_head": "#ffa15a",
    "mtp": "#19d3f3",
    "comm": "#7f7f7f",
    "capacity": "#dddddd",
}
#: Marks without a category (a timeline, bytes used).
DEFAULT_COLOUR = "#636efa"


def _colour(category: str) -> str:
    return COLOURS.get(category, "#888" if category else DEFAULT_COLOUR)


def _add_panel(fig: go.Figure, panel: Panel, row: int) -> None:
    """Draw ``panel``'s marks into subplot ``row`` (see :mod:`hwsim.sim.placement`)."""
    seen: set[str] = set()
    if panel.form == "points":
        ys = {m.y for m in panel.marks}
        fig.add_trace(
            go.Scatter(
                x=[m.x for m in panel.marks],
                y=[m.y for m in panel.marks],
                mode="markers",
                marker={
                    "symbol": "square",
                    "size": max(4, min(18, 900 // max(1, len(ys)))),
                    "color": [m.value for m in panel.marks],
                    "colorscale": "Viridis",
                    "colorbar": {"title": panel.colour_title, "len": 0.55, "y": 0.75},
                },
                text=[m.hover for m in panel.marks],
                hoverinfo="text",
                showlegend=False,
            ),
            row=row,
            col=1,
        )
        return
    for m in panel.marks:
        legend = m.series or m.category
        if panel.form == "rects":
            x0, x1, y0, y1 = float(m.x), m.x1, float(m.y), m.y1
            trace: go.Scatter | go.Bar = go.Scatter(
                x=[x0, x1, x1, x0, x0],
                y=[y0, y0, y1, y1, y0],
                fill="toself",
                mode="lines",
                line={"width": 0.5, "color": "white"},
                fillcolor=_colour(m.category),
                name=legend,
                legendgroup=legend,
                showlegend=legend not in seen,
                hoveron="fills",
                text=m.hover,
                hoverinfo="text",
            )
        elif panel.form == "bars":
            trace = go.Bar(
                y=[m.y],
                x=[m.length],
                base=None if m.base is None else [m.base],
                orientation="h",
                name=legend,
                legendgroup=legend,
                showlegend=legend not in seen,
                marker_color=_colour(m.category),
                marker_line={"width": 1, "color": "white"},
                text=m.label,
                hovertext=m.hover,
                hoverinfo="text",
            )
        else:  # columns: side by side per series (the figure stacks bars within a group)
            trace = go.Bar(
                x=[m.x],
                y=[m.length],
                name=legend,
                legendgroup=legend,
                offsetgroup=legend,
                showlegend=legend not in seen,
                marker_color=_colour(m.category),
                hovertext=m.hover,
                hoverinfo="text",
            )
        seen.add(legend)
        fig.add_trace(trace, row=row, col=1)


def _axes(fig: go.Figure, panel: Panel, row: int) -> None:
    xa: dict[str, object] = {"title_text": panel.x_title}
    ya: dict[str, object] = {"title_text": panel.y_title}
    if panel.x_range is not None:
        xa["range"] = list(panel.x_range)
    if panel.y_range is not None:
        lo, hi = panel.y_range
        ya["range"] = [hi, lo] if panel.y_reversed else [lo, hi]
    elif panel.y_reversed:
        ya["autorange"] = "reversed"
    if panel.equal_aspect:
        ya["scaleanchor"] = "x"
        xa["constrain"] = ya["constrain"] = "domain"
    if panel.log_y:
        ya["type"] = "log"
    fig.update_xaxes(row=row, col=1, **xa)
    fig.update_yaxes(row=row, col=1, **ya)


def view_figure(view: View) -> go.Figure:
    """One view's panels, stacked top to bottom in one figure."""
    n = len(view.panels)
    fig = make_subplots(
        rows=n,
        cols=1,
        vertical_spacing=0.18 if n > 1 else 0.05,
        subplot_titles=[p.title for p in view.panels]
        if any(p.title for p in view.panels)
        else None,
    )
    for i, panel in enumerate(view.panels, start=1):
        _add_panel(fig, panel, i)
        _axes(fig, panel, i)
    fig.update_layout(
        barmode="stack", title=view.heading, height=view.height, template="plotly_white"
    )
    return fig


def placement_sections(placement: Placement) -> list[Section]:
    """A report section per view of ``placement`` (title, explanation, figure)."""
    return [Section(v.title, v.text, figure=view_figure(v)) for v in placement.views]


def mapping_sections(m: MapResult) -> list[Section]:
    """The report's sections for a mapped model: the capacity reasoning and decode step as a
    table, then the placement's views."""
    table = [[line.split(":")[0], ":".join(line.split(":")[1:]).strip()] for line in m.reasoning]
    table += [
        ["time per token", f"{m.step.time_per_token_s * 1e3:.3f} ms"],
        ["tokens/s per user", f"{m.step.tokens_per_s_per_user:,.1f}"],
    ]
    intro = (
        f"Layout {m.layout}, batch {m.step.batch}, context {m.step.context}, {m.step.dtype} "
        "weights."
    )
    summary = Section("Summary", intro, table_html=html_table(["quantity", "value"], table))
    return [summary, *placement_sections(m.placement)]


def write_mapping_page(path: Path, m: MapResult) -> Path:
    """Write :func:`mapping_sections` as a self-contained page (``hwsim map --html``)."""
    sections = mapping_sections(m)
    title = f"{m.model} on {m.layout.devices} × {m.step.device}"
    try:
        return write_page(path, title, sections[0].explanation, sections)
    except OSError as err:
        raise SpecError(f"cannot write the HTML page: {err}", file=str(path)) from None
