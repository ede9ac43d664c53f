"""Plotly figures of a sweep table: parallel coordinates, a Pareto front, a heatmap and the
elasticities bar chart. Inputs are numpy columns (from :func:`hwsim.report.sweep_io.read_table`
or a :class:`~hwsim.sweep.run.SweepResult`); strings (``bound``, ``device``) become categories.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
from numpy.typing import NDArray

from hwsim.spec.units import Dim, format_quantity
from hwsim.sweep.sensitivity import Elasticity, pareto_mask

Columns = Mapping[str, NDArray[Any]]
_QUALITATIVE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2"]


def is_numeric(col: NDArray[Any]) -> bool:
    return np.issubdtype(col.dtype, np.number) and col.dtype != bool


def _spans_decades(col: NDArray[Any]) -> bool:
    """Log axes for positive columns that span more than a decade."""
    if not is_numeric(col):
        return False
    v = col[np.isfinite(col)]
    return v.size > 0 and bool(np.all(v > 0)) and float(v.max() / v.min()) > 10.0


def _codes(col: NDArray[Any]) -> tuple[NDArray[np.float64], list[str]]:
    """Categorical column → integer codes and the labels in first-seen order."""
    labels = list(dict.fromkeys(str(v) for v in col.tolist()))
    lookup = {s: i for i, s in enumerate(labels)}
    return np.array([lookup[str(v)] for v in col.tolist()], dtype=float), labels


def _short(name: str) -> str:
    return name if len(name) <= 28 else "…" + name[-27:]


def parallel_coordinates(
    columns: Columns, dims: Sequence[str], color: str | None = None, title: str = ""
) -> go.Figure:
    """One vertical axis per column in ``dims`` (constant columns dropped), one line per
    point, coloured by ``color``."""
    dimensions = []
    for name in dims:
        col = np.asarray(columns[name])
        if col.size and np.unique(col.astype(str)).size < 2:
            continue
        if is_numeric(col):
            vals = col.astype(float)
            if _spans_decades(col):
                logs = np.log10(vals)
                ticks = np.arange(np.floor(logs.min()), np.ceil(logs.max()) + 1)
                dimensions.append(
                    {
                        "label": f"log10 {_short(name)}",
                        "values": logs,
                        "tickvals": ticks,
                        "ticktext": [f"1e{int(t)}" for t in ticks],
                    }
                )
            else:
                dimensions.append({"label": _short(name), "values": vals})
        else:
            codes, labels = _codes(col)
            dimensions.append(
                {
                    "label": _short(name),
                    "values": codes,
                    "tickvals": list(range(len(labels))),
                    "ticktext": labels,
                }
            )
    line: dict[str, Any] = {}
    if color is not None:
        c = np.asarray(columns[color])
        if is_numeric(c):
            vals = np.log10(c.astype(float)) if _spans_decades(c) else c.astype(float)
            prefix = "log10 " if _spans_decades(c) else ""
            line = {"color": vals, "colorscale": "Viridis", "showscale": True,
                    "colorbar": {"title": prefix + _short(color)}}  # fmt: skip
        else:
            codes, labels = _codes(c)
            n = max(len(labels) - 1, 1)
            scale = [[i / n, _QUALITATIVE[i % len(_QUALITATIVE)]] for i in range(len(labels))]
            line = {"color": codes, "colorscale": scale if len(labels) > 1 else "Viridis",
                    "showscale": True, "colorbar": {"title": _short(color),
                    "tickvals": list(range(len(labels))), "ticktext": labels}}  # fmt: skip
    fig = go.Figure(go.Parcoords(dimensions=dimensions, line=line))
    fig.update_layout(title=title or "Parallel coordinates", height=520, margin={"l": 80, "r": 80})
    return fig


def pareto_figure(
    columns: Columns,
    x: str,
    y: str,
    *,
    color: str | None = None,
    x_goal: str = "min",
    y_goal: str = "max",
    title: str = "",
) -> tuple[go.Figure, NDArray[np.bool_]]:
    """All points of ``y`` against ``x`` and the Pareto front (best by ``x_goal``/``y_goal``)
    as a line; returns the figure and the front mask."""
    xs = np.asarray(columns[x], dtype=float)
    ys = np.asarray(columns[y], dtype=float)
    front = pareto_mask(xs, ys, x_goal, y_goal)
    hover = _hover(columns, [c for c in columns if c not in (x, y)][:12])
    fig = go.Figure()
    groups = _groups(columns, color)
    for label, sel in groups:
        fig.add_trace(
            go.Scatter(
                x=xs[sel], y=ys[sel], mode="markers", name=label,
                marker={"size": 7, "opacity": 0.55}, text=[hover[i] for i in np.flatnonzero(sel)],
                hovertemplate="%{text}<extra></extra>",
            )
        )  # fmt: skip
    order = np.flatnonzero(front)[np.argsort(xs[front])]
    fig.add_trace(
        go.Scatter(
            x=xs[order], y=ys[order], mode="lines+markers", name="Pareto front",
            line={"color": "black", "width": 2}, marker={"symbol": "diamond", "size": 10},
            text=[hover[i] for i in order], hovertemplate="%{text}<extra>front</extra>",
        )
    )  # fmt: skip
    fig.update_layout(
        title=title or f"Pareto front: {y} ({y_goal}) vs {x} ({x_goal})",
        xaxis={"title": x, "type": "log" if _spans_decades(xs) else "linear"},
        yaxis={"title": y, "type": "log" if _spans_decades(ys) else "linear"},
        height=520,
    )
    return fig, front


def _groups(columns: Columns, color: str | None) -> list[tuple[str, NDArray[np.bool_]]]:
    n = len(next(iter(columns.values())))
    if color is None:
        return [("points", np.ones(n, dtype=bool))]
    c = np.asarray(columns[color])
    if is_numeric(c) and np.unique(c).size > 12:  # continuous: bin into quantile groups
        edges = np.unique(np.quantile(c[np.isfinite(c)], np.linspace(0, 1, 6)))
        out = []
        for lo, hi in itertools.pairwise(edges):
            sel = (c >= lo) & ((c <= hi) if hi == edges[-1] else (c < hi))
            out.append((f"{color} {lo:.3g}–{hi:.3g}", sel))
        return out
    return [(f"{color}={v}", c.astype(str) == str(v)) for v in dict.fromkeys(c.astype(str))]


def _num(v: Any) -> str:
    return f"{v:.4g}"


def _hover(columns: Columns, names: Sequence[str]) -> list[str]:
    n = len(next(iter(columns.values())))
    parts = []
    for name in names:
        col = np.asarray(columns[name])
        fmt: Callable[[Any], str] = _num if is_numeric(col) else str
        parts.append([f"{name}={fmt(v)}" for v in col.tolist()])
    return ["<br>".join(p[i] for p in parts) for i in range(n)]


def heatmap_figure(
    columns: Columns, x: str, y: str, z: str, *, agg: str = "median", title: str = ""
) -> go.Figure:
    """``z`` over the grid of ``x`` × ``y`` values, aggregated over the other inputs
    (``median``, ``min``, ``max`` or ``mean``; a categorical ``z`` takes the most common)."""
    xs, ys, zs = (np.asarray(columns[c]) for c in (x, y, z))
    xv = sorted(set(xs.tolist()), key=_sort_key)
    yv = sorted(set(ys.tolist()), key=_sort_key)
    xi = {v: i for i, v in enumerate(xv)}
    yi = {v: i for i, v in enumerate(yv)}
    cells: dict[tuple[int, int], list[Any]] = {}
    for a, b, c in zip(xs.tolist(), ys.tolist(), zs.tolist(), strict=True):
        cells.setdefault((yi[b], xi[a]), []).append(c)
    numeric = is_numeric(zs)
    labels: list[str] = []
    if not numeric:
        _, labels = _codes(zs)
    grid = np.full((len(yv), len(xv)), np.nan)
    text = [["" for _ in xv] for _ in yv]
    funcs: dict[str, Any] = {"median": np.median, "min": np.min, "max": np.max, "mean": np.mean}
    fn = funcs[agg]
    for (r, c), vals in cells.items():
        if numeric:
            grid[r, c] = float(fn(np.asarray(vals, dtype=float)))
            text[r][c] = f"{grid[r, c]:.3g}"
        else:
            common = max(set(map(str, vals)), key=lambda s: [str(v) for v in vals].count(s))
            grid[r, c] = labels.index(common)
            text[r][c] = common
    log = numeric and _spans_decades(grid[np.isfinite(grid)])
    trace: dict[str, Any] = {
        "z": np.log10(grid) if log else grid,
        "x": [_fmt_tick(v, x) for v in xv],
        "y": [_fmt_tick(v, y) for v in yv],
        "text": text,
        "texttemplate": "%{text}",
        "hovertemplate": f"{x}=%{{x}}<br>{y}=%{{y}}<br>{z}=%{{text}}<extra></extra>",
    }
    if numeric:
        trace.update(
            colorscale="Viridis", colorbar={"title": ("log10 " if log else "") + _short(z)}
        )
    else:
        n = max(len(labels) - 1, 1)
        trace.update(
            colorscale=[[i / n, _QUALITATIVE[i % len(_QUALITATIVE)]] for i in range(len(labels))]
            if len(labels) > 1
            else [[0, _QUALITATIVE[0]], [1, _QUALITATIVE[0]]],
            zmin=0, zmax=max(len(labels) - 1, 1),
            colorbar={"title": _short(z), "tickvals": list(range(len(labels))), "ticktext": labels},
        )  # fmt: skip
    fig = go.Figure(go.Heatmap(**trace))
    aggtxt = "" if numeric else " (most common)"
    fig.update_layout(
        title=title
        or f"{z}{aggtxt} over {x} × {y}" + (f" ({agg} over other inputs)" if numeric else ""),
        xaxis={"title": x, "type": "category"},
        yaxis={"title": y, "type": "category"},
        height=480,
    )
    return fig


def _sort_key(v: Any) -> tuple[int, Any]:
    return (0, float(v)) if isinstance(v, int | float) else (1, str(v))


#: column-name endings → the dimension their SI values have (for readable ticks)
_DIMS: tuple[tuple[str, Dim], ...] = (
    (".capacity", Dim.BYTES), ("_bytes", Dim.BYTES), (".bandwidth", Dim.BANDWIDTH),
    ("_Bps", Dim.BANDWIDTH), (".latency", Dim.TIME), ("_s", Dim.TIME), ("_flops", Dim.RATE),
    (".clock", Dim.FREQUENCY), (".tdp", Dim.POWER), ("_W", Dim.POWER), (".usd", Dim.MONEY),
)  # fmt: skip


def dim_of(name: str) -> Dim | None:
    """The dimension of a column from its name (``memory.l2.capacity`` → bytes), or None."""
    if name.startswith("compute.peak.") or name.endswith((".vector_fp32", ".special")):
        return Dim.RATE
    return next((d for suffix, d in _DIMS if name.endswith(suffix)), None)


def _fmt_tick(v: Any, name: str = "") -> str:
    if isinstance(v, float):
        dim = dim_of(name)
        if dim is Dim.BYTES and v >= 1024 and v % 1024 == 0:  # sizes written in KiB/MiB/GiB
            for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
                if v >= scale:
                    return f"{v / scale:.4g} {unit}"
        return format_quantity(v, dim) if dim is not None else f"{v:.4g}"
    return str(v)


def elasticity_figure(items: Sequence[Elasticity], title: str = "") -> go.Figure:
    """Horizontal bars: global elasticity per input, with the local range as error bars."""
    items = list(items)
    names = [e.input for e in items][::-1]
    vals = np.array([e.elasticity for e in items][::-1])
    lo = np.array([e.local_min for e in items][::-1])
    hi = np.array([e.local_max for e in items][::-1])
    fig = go.Figure(
        go.Bar(
            x=vals,
            y=names,
            orientation="h",
            marker={"color": ["#d62728" if v < 0 else "#1f77b4" for v in vals]},
            error_x={
                "type": "data",
                "symmetric": False,
                "array": np.nan_to_num(np.maximum(hi - vals, 0)),
                "arrayminus": np.nan_to_num(np.maximum(vals - lo, 0)),
            },
            hovertemplate="%{y}: %{x:.3f}<extra></extra>",
        )
    )
    metric = items[0].metric if items else ""
    r2 = items[0].r2 if items else float("nan")
    fig.update_layout(
        title=title
        or f"Elasticity of {metric} (d ln y / d ln x; fit R² = {r2:.2f}; bars: local range)",
        xaxis={"title": "elasticity", "zeroline": True},
        height=120 + 40 * len(items),
    )
    return fig
