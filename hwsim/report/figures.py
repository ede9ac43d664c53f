"""Plotly figures for the hierarchical roofline.

One panel per device: log-log axes of arithmetic intensity (FLOP/B) against attainable FLOP/s,
a flat ceiling per dtype (dtypes with the same peak share one line) plus the vector and
special-function ceilings, a diagonal per memory level (bandwidth × intensity), and each kernel as
one marker per memory level at that level's intensity, joined by a dotted line, so the level that
limits it is the one whose diagonal it sits on. Several devices share one figure with a dropdown.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import plotly.graph_objects as go

from hwsim.roofline.analytic import (
    RooflineResult,
    matrix_rate_flops,
    special_rate_flops,
    vector_rate_flops,
)
from hwsim.spec.device import DTYPES, Device
from hwsim.spec.units import Dim, format_quantity

KERNEL_COLORS = (
    "#1f77b4",
    "#d62728",
    "#2ca02c",
    "#9467bd",
    "#ff7f0e",
    "#17becf",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
)
LEVEL_COLORS = ("#66a61e", "#e7298a", "#7570b3", "#d95f02", "#1b9e77", "#a6761d", "#666666")
LEVEL_SYMBOLS = ("circle", "square", "diamond", "triangle-up", "cross", "x", "star")


@dataclass(frozen=True)
class DevicePanel:
    """What one roofline panel shows: a device (``key`` is its file stem) and kernel results."""

    key: str
    device: Device
    results: tuple[RooflineResult, ...]


def _fmt(value: float, dim: Dim) -> str:
    return format_quantity(value, dim, digits=3) if math.isfinite(value) else "—"


def _ceilings(device: Device) -> list[tuple[str, float, str]]:
    """(label, FLOP/s, dash) for the flat ceilings: matrix peaks per dtype, vector and special;
    ceilings at the same rate share one line and one label. A dtype without a listed peak is
    left out rather than shown at its fallback rate."""
    lines: list[tuple[str, float, str]] = [
        (f"{dtype} matrix", matrix_rate_flops(device, dtype), "solid")
        for dtype in DTYPES
        if dtype in device.compute.peak
    ]
    lines.append(("vector fp32", vector_rate_flops(device), "dot"))
    if device.compute.special is not None:
        lines.append(("special fn (exp)", special_rate_flops(device), "dashdot"))
    merged: dict[float, tuple[list[str], str]] = {}
    for label, rate, dash in lines:
        if 0 < rate < math.inf:
            merged.setdefault(rate, ([], dash))[0].append(label)
    return [
        (f"{' = '.join(labels)} {_fmt(rate, Dim.RATE)}", rate, dash)
        for rate, (labels, dash) in sorted(merged.items(), reverse=True)
    ]


def _x_range(panel: DevicePanel, top: float) -> tuple[float, float]:
    """Intensity range (FLOP/B) that shows every ridge point and every kernel marker."""
    xs = [top / panel.device.level_bandwidth_Bps(m.name) for m in panel.device.memory]
    for r in panel.results:
        xs += [v for v in r.intensity_flop_per_byte.values() if math.isfinite(v) and v > 0]
    lo, hi = min(xs), max(xs)
    return min(lo / 4.0, 0.5), hi * 4.0


def _y_range(panel: DevicePanel, top: float, x_lo: float) -> tuple[float, float]:
    ys = [top]
    ys += [r.attainable_flops for r in panel.results if r.attainable_flops > 0]
    ys += [x_lo * panel.device.level_bandwidth_Bps(m.name) for m in panel.device.memory]
    return min(ys) / 2.0, top * 3.0


def _panel_traces(panel: DevicePanel, legend_group: str) -> list[go.Scatter]:
    d = panel.device
    ceilings = _ceilings(d)
    top = max(c[1] for c in ceilings)
    x_lo, x_hi = _x_range(panel, top)
    traces: list[go.Scatter] = []
    for label, rate, dash in ceilings:
        traces.append(
            go.Scatter(
                x=[x_lo, x_hi],
                y=[rate, rate],
                mode="lines+text",
                line={"color": "#333333", "dash": dash, "width": 1.5},
                text=["", label],
                textposition="top left",
                textfont={"size": 11},
                name=label,
                legendgroup=f"{legend_group}-ceil",
                legendgrouptitle_text="compute ceilings",
                hovertemplate=f"{label}<extra>{panel.key}</extra>",
            )
        )
    dtype = panel.results[0].dtype if panel.results else "bf16"
    dtype_peak = matrix_rate_flops(d, dtype) or top
    for i, m in enumerate(d.memory):
        bw = d.level_bandwidth_Bps(m.name)
        ridge = dtype_peak / bw  # where this level meets the kernels' dtype roof
        label = f"{m.name} {_fmt(bw, Dim.BANDWIDTH)}"
        traces.append(
            go.Scatter(
                x=[x_lo, top / bw],
                y=[x_lo * bw, top],
                mode="lines+text",
                line={"color": LEVEL_COLORS[i % len(LEVEL_COLORS)], "width": 2},
                text=[label, ""],
                textposition="bottom right",
                textfont={"size": 11, "color": LEVEL_COLORS[i % len(LEVEL_COLORS)]},
                name=f"{label} (ridge {ridge:.3g} FLOP/B at {dtype})",
                legendgroup=f"{legend_group}-mem",
                legendgrouptitle_text="memory levels",
                hovertemplate=(
                    f"{m.name}: {_fmt(bw, Dim.BANDWIDTH)} × intensity<br>"
                    f"ridge ({dtype}) at {ridge:.3g} FLOP/B<extra>{panel.key}</extra>"
                ),
            )
        )
    level_index = {m.name: i for i, m in enumerate(d.memory)}
    for j, r in enumerate(panel.results):
        color = KERNEL_COLORS[j % len(KERNEL_COLORS)]
        pts = [
            (lvl, x)
            for lvl, x in r.intensity_flop_per_byte.items()
            if math.isfinite(x) and x > 0 and r.attainable_flops > 0
        ]
        if not pts:
            continue
        hover = [
            f"<b>{r.kernel}</b> ({r.dtype}) at <b>{lvl}</b><br>"
            f"intensity {x:.3g} FLOP/B, {_fmt(r.level_bytes[lvl], Dim.BYTES)} moved<br>"
            f"attainable {_fmt(r.attainable_flops, Dim.RATE)} "
            f"({100 * r.fraction_of_peak:.0f}% of {r.dtype} peak)<br>"
            f"time {_fmt(r.time_s, Dim.TIME)}, bound: <b>{r.bound}</b>"
            for lvl, x in pts
        ]
        traces.append(
            go.Scatter(
                x=[x for _, x in pts],
                y=[r.attainable_flops] * len(pts),
                mode="lines+markers",
                line={"color": color, "dash": "dot", "width": 1},
                marker={
                    "size": 12,
                    "color": color,
                    "symbol": [
                        LEVEL_SYMBOLS[level_index[lvl] % len(LEVEL_SYMBOLS)] for lvl, _ in pts
                    ],
                    "line": {
                        "width": 2,
                        "color": [
                            LEVEL_COLORS[level_index[lvl] % len(LEVEL_COLORS)] for lvl, _ in pts
                        ],
                    },
                },
                name=f"{r.kernel} — {r.bound}-bound",
                legendgroup=f"{legend_group}-kern",
                legendgrouptitle_text="kernels (one marker per level)",
                hovertext=hover,
                hoverinfo="text",
            )
        )
    return traces


def _axis_ranges(panel: DevicePanel) -> dict[str, list[float]]:
    top = max(c[1] for c in _ceilings(panel.device))
    x_lo, x_hi = _x_range(panel, top)
    y_lo, y_hi = _y_range(panel, top, x_lo)
    return {
        "x": [math.log10(x_lo), math.log10(x_hi)],
        "y": [math.log10(y_lo), math.log10(y_hi)],
    }


def _title(panel: DevicePanel) -> str:
    return f"Hierarchical roofline — {panel.device.name} ({panel.key}, {panel.device.kind})"


def roofline_figure(panels: Sequence[DevicePanel], height: int = 650) -> go.Figure:
    """A roofline figure for one or more devices; with several, a dropdown picks the device."""
    if not panels:
        raise ValueError("roofline_figure needs at least one device panel")
    fig = go.Figure()
    owner: list[int] = []
    for p_i, panel in enumerate(panels):
        for tr in _panel_traces(panel, legend_group=panel.key):
            tr.visible = p_i == 0
            fig.add_trace(tr)
            owner.append(p_i)
    first = _axis_ranges(panels[0])
    fig.update_layout(
        title=_title(panels[0]),
        height=height,
        template="plotly_white",
        hovermode="closest",
        legend={"groupclick": "toggleitem", "font": {"size": 11}},
        margin={"t": 110, "r": 20},
    )
    fig.update_xaxes(
        type="log",
        title="arithmetic intensity (FLOP per byte at the level)",
        range=first["x"],
        exponentformat="SI",
    )
    # explicit decade labels: plotly's SI exponent format stops at T, and these reach P and E
    y_lo = min(math.floor(_axis_ranges(p)["y"][0]) for p in panels)
    y_hi = max(math.ceil(_axis_ranges(p)["y"][1]) for p in panels)
    decades = [10.0**e for e in range(y_lo, y_hi + 1)]
    fig.update_yaxes(
        type="log",
        title="attainable FLOP/s",
        range=first["y"],
        tickvals=decades,
        ticktext=[format_quantity(v, Dim.RATE, digits=3) for v in decades],
    )
    if len(panels) > 1:
        buttons = []
        for p_i, panel in enumerate(panels):
            rng = _axis_ranges(panel)
            buttons.append(
                {
                    "label": panel.key,
                    "method": "update",
                    "args": [
                        {"visible": [o == p_i for o in owner]},
                        {
                            "title": _title(panel),
                            "xaxis.range": rng["x"],
                            "yaxis.range": rng["y"],
                        },
                    ],
                }
            )
        fig.update_layout(
            updatemenus=[
                {  # above the legend, clear of the title
                    "buttons": buttons,
                    "direction": "down",
                    "x": 1.02,
                    "xanchor": "left",
                    "y": 1.12,
                    "yanchor": "top",
                    "showactive": True,
                }
            ],
            annotations=[
                {
                    "text": "pick a device:",
                    "x": 1.02,
                    "xref": "paper",
                    "xanchor": "left",
                    "y": 1.13,
                    "yref": "paper",
                    "yanchor": "bottom",
                    "showarrow": False,
                }
            ],
        )
    return fig


def results_table(results: Sequence[RooflineResult]) -> tuple[list[str], list[list[str]]]:
    """Column names and formatted rows of a roofline results table (for rich or HTML): one
    intensity column (FLOP/B) per memory level found in any result, "—" where a device lacks
    the level or moves no bytes there."""
    depth: dict[str, float] = {}  # innermost first, by relative depth in each device's list
    for r in results:
        n = max(len(r.level_bytes) - 1, 1)
        for i, lvl in enumerate(r.level_bytes):
            depth[lvl] = min(depth.get(lvl, i / n), i / n)
    levels = sorted(depth, key=lambda lvl: depth[lvl])
    cols = [
        "kernel",
        "device",
        "time",
        "bound",
        "FLOP/s",
        "% peak",
        *(f"I {lvl}" for lvl in levels),
    ]
    rows = []
    for r in results:
        inten = [r.intensity_flop_per_byte.get(lvl, math.inf) for lvl in levels]
        rows.append(
            [
                r.kernel,
                r.device,
                _fmt(r.time_s, Dim.TIME),
                r.bound,
                _fmt(r.attainable_flops, Dim.RATE).replace("FLOP/s", "").strip(),
                f"{100 * r.fraction_of_peak:.1f}",
                *(f"{v:.3g}" if math.isfinite(v) else "—" for v in inten),
            ]
        )
    return cols, rows


def bound_heatmap(results: Sequence[RooflineResult], height: int = 420) -> go.Figure:
    """Kernels × devices: colour is the fraction of the matrix peak attained, text the bound."""
    kernels = list(dict.fromkeys(r.kernel for r in results))
    devices = list(dict.fromkeys(r.device for r in results))
    by = {(r.kernel, r.device): r for r in results}
    z, text, hover = [], [], []
    for k in kernels:
        # log colour: 0.4% and 5% of peak are different stories, and both are "dark" on a linear
        z.append(
            [
                math.log10(max(100 * by[k, d].fraction_of_peak, 0.01)) if (k, d) in by else None
                for d in devices
            ]
        )
        text.append(
            [
                f"{by[k, d].bound}<br>{100 * by[k, d].fraction_of_peak:.3g}%"
                if (k, d) in by
                else ""
                for d in devices
            ]
        )
        hover.append(
            [
                (
                    f"{k} on {d}<br>time {_fmt(by[k, d].time_s, Dim.TIME)}<br>"
                    f"{_fmt(by[k, d].attainable_flops, Dim.RATE)}, bound: {by[k, d].bound}"
                )
                if (k, d) in by
                else ""
                for d in devices
            ]
        )
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=devices,
            y=kernels,
            text=text,
            texttemplate="%{text}",
            hovertext=hover,
            hoverinfo="text",
            colorscale="Viridis",
            zmin=-1,
            zmax=2,
            colorbar={
                "title": "% of peak",
                "tickvals": [-1, 0, 1, 2],
                "ticktext": ["0.1%", "1%", "10%", "100%"],
            },
        )
    )
    fig.update_layout(
        title="Which resource bounds each kernel (colour: % of the matrix peak, log scale)",
        height=height,
        template="plotly_white",
        yaxis={"autorange": "reversed"},
        margin={"l": 160},
    )
    return fig
