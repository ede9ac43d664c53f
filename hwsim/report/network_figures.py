"""Plotly figures for clusters and all-to-all runs: the topology graph coloured by link load,
bytes per link kind, the busiest links and per-rank completion times."""

from __future__ import annotations

import math
from collections.abc import Sequence

import networkx as nx
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from hwsim.sim.alltoall import AllToAllResult
from hwsim.sim.network import LinkLoad
from hwsim.sim.topology import Topology

_ROLE_Y = {"memory": 4.0, "endpoint": 4.0, "switch": 3.0, "nic": 1.0, "device": 0.0}
_COLORS = {
    "device": "#1f77b4",
    "switch": "#7f7f7f",
    "nic": "#2ca02c",
    "endpoint": "#9467bd",
}


def _layout(topo: Topology) -> dict[str, tuple[float, float]]:
    """Layered positions: devices at the bottom grouped by node, their NICs above, node
    switches beside them, network switches on top (leaves, then spines/tree levels)."""
    g = topo.graph
    per = topo.per_node
    kind = topo.cluster.network.kind
    pos: dict[str, tuple[float, float]] = {}
    if kind in ("dragonfly", "mesh2d"):
        cols = max(1, math.ceil(math.sqrt(topo.nodes)))
        for i, dev in enumerate(topo.devices):
            n, j = divmod(i, per)
            cx, cy = (n % cols) * 3.0, -(n // cols) * 3.0
            ang = 2 * math.pi * j / max(per, 1)
            pos[dev] = (
                cx + math.cos(ang) if per > 1 else cx,
                cy + math.sin(ang) if per > 1 else cy,
            )
    width = per + 1.5
    for i, dev in enumerate(topo.devices):
        if dev in pos:
            continue
        n, j = divmod(i, per)
        pos[dev] = (n * width + j, 0.0)
    others = [x for x in g.nodes if x not in pos]
    tiers: dict[float, list[str]] = {}
    for x in others:
        role = g.nodes[x]["role"]
        if role == "nic":
            dev = x.rsplit(".nic", 1)[0]
            k = int(x.rsplit(".nic", 1)[1])
            dx, _ = pos[dev]
            pos[x] = (dx + 0.25 * k, 1.0)
        elif x.endswith(".sw"):
            n = int(x[1:].split(".")[0])
            pos[x] = (n * width + (per - 1) / 2, -1.2)
        else:
            y = 2.0 if x.startswith("leaf") or x.startswith("swx.0") else 3.0
            if x.startswith("swx."):
                y = 2.0 + int(x.split(".")[1])
            if role == "endpoint":
                y = max(y, 4.0)
            tiers.setdefault(y, []).append(x)
    span = max((p[0] for p in pos.values()), default=1.0)
    for y, names in tiers.items():
        names.sort(
            key=lambda s: [int(t) if t.isdigit() else t for t in s.replace(".", " ").split()]
        )
        step = span / max(len(names), 1)
        for k, x in enumerate(names):
            pos[x] = (step * (k + 0.5), y)
    return pos


def topology_figure(
    topo: Topology,
    loads: Sequence[LinkLoad] | None = None,
    title: str | None = None,
    height: int = 650,
) -> go.Figure:
    """The cluster graph. With ``loads`` (from a run) every cable is coloured by the average
    utilisation of its busier direction; hovering shows bytes and utilisation."""
    pos = _layout(topo)
    util: dict[tuple[str, str], tuple[float, float]] = {}
    if loads is not None:
        for lk in loads:
            if "->" not in lk.name:
                continue
            a, b = lk.name.split("->")
            key = (a, b) if a < b else (b, a)
            u, by = util.get(key, (0.0, 0.0))
            util[key] = (max(u, lk.utilization), by + lk.bytes)
    bins = [0.0, 0.2, 0.4, 0.6, 0.8, 1.01]
    colors = ["#c7d7e8", "#9ecae1", "#fdae6b", "#f16913", "#a50f15"]
    groups: dict[int, tuple[list[float | None], list[float | None], list[str]]] = {}
    seen: set[tuple[str, str]] = set()
    for a, b, data in topo.graph.edges(data=True):
        key = (a, b) if a < b else (b, a)
        if key in seen:
            continue
        seen.add(key)
        u, by = util.get(key, (0.0, 0.0))
        k = 0 if loads is None else min(len(bins) - 2, sum(u >= x for x in bins[1:]))
        xs, ys, txt = groups.setdefault(k, ([], [], []))
        (x0, y0), (x1, y1) = pos[a], pos[b]
        xs += [x0, x1, None]
        ys += [y0, y1, None]
        txt.append(
            f"{key[0]} ↔ {key[1]} ({data['kind']}, {data['bandwidth_Bps'] / 1e9:.0f} GB/s)"
            + (f": {u:.0%} busy, {by / 1e6:.1f} MB" if loads is not None else "")
        )
    fig = go.Figure()
    for k in sorted(groups):
        xs, ys, _ = groups[k]
        label = "links" if loads is None else f"utilisation {bins[k]:.0%}-{min(bins[k + 1], 1):.0%}"
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=ys,
                mode="lines",
                name=label,
                hoverinfo="skip",
                line={
                    "color": colors[k] if loads is not None else "#bbb",
                    "width": 1.5 + 2.5 * k / 4,
                },
            )
        )
    # invisible midpoints carry the edge hover text
    mx, my, mt = [], [], []
    for a, b in seen:
        (x0, y0), (x1, y1) = pos[a], pos[b]
        u, by = util.get((a, b), (0.0, 0.0))
        mx.append((x0 + x1) / 2)
        my.append((y0 + y1) / 2)
        mt.append(f"{a} ↔ {b}" + (f"<br>{u:.0%} busy, {by / 1e6:.1f} MB" if loads else ""))
    fig.add_trace(
        go.Scatter(
            x=mx,
            y=my,
            mode="markers",
            marker={"size": 4, "opacity": 0},
            hovertext=mt,
            hoverinfo="text",
            showlegend=False,
        )
    )
    for role in ("device", "nic", "switch", "endpoint"):
        names = [x for x, d in topo.graph.nodes(data=True) if d["role"] == role]
        if not names:
            continue
        fig.add_trace(
            go.Scatter(
                x=[pos[x][0] for x in names],
                y=[pos[x][1] for x in names],
                mode="markers",
                name=role,
                hovertext=names,
                hoverinfo="text",
                marker={
                    "size": 11 if role == "device" else 8,
                    "color": _COLORS[role],
                    "symbol": "square" if role == "switch" else "circle",
                },
            )
        )
    fig.update_layout(
        title=title or f"{topo.name}: {topo.nodes} node(s), {topo.ranks} devices",
        height=height,
        template="plotly_white",
        hovermode="closest",
        xaxis={"visible": False},
        yaxis={"visible": False},
    )
    return fig


def link_load_figure(res: AllToAllResult, top: int = 20, height: int = 480) -> go.Figure:
    """Bytes per link kind, the ``top`` busiest cables, and each rank's completion time."""
    fig = make_subplots(
        rows=1,
        cols=3,
        column_widths=[0.22, 0.43, 0.35],
        subplot_titles=(
            "bytes per link kind (GB)",
            f"{top} busiest links (avg utilisation)",
            "completion time per rank (us)",
        ),
    )
    kinds = sorted(res.bytes_by_link_kind)
    fig.add_trace(
        go.Bar(
            x=kinds,
            y=[res.bytes_by_link_kind[k] / 1e9 for k in kinds],
            name="bytes",
            showlegend=False,
        ),
        row=1,
        col=1,
    )
    busy = sorted((lk for lk in res.links if lk.kind != "sm"), key=lambda lk: -lk.utilization)
    busy = busy[:top]
    fig.add_trace(
        go.Bar(
            y=[lk.name for lk in busy][::-1],
            x=[lk.utilization for lk in busy][::-1],
            orientation="h",
            name="utilisation",
            showlegend=False,
            hovertext=[f"{lk.kind}: {lk.bytes / 1e6:.1f} MB" for lk in busy][::-1],
        ),
        row=1,
        col=2,
    )
    fig.add_trace(
        go.Bar(
            x=list(range(len(res.rank_time_s))),
            y=[t * 1e6 for t in res.rank_time_s],
            name="rank time",
            showlegend=False,
        ),
        row=1,
        col=3,
    )
    fig.update_xaxes(tickformat=".0%", row=1, col=2)
    fig.update_layout(
        title=f"{res.kernel} {res.phase} on {res.cluster}, EP {res.ep}: "
        f"{res.time_s * 1e6:.0f} us, RDMA {res.rdma_gbps:.1f} GB/s, NVLink "
        f"{res.nvlink_gbps:.1f} GB/s",
        height=height,
        template="plotly_white",
    )
    return fig


def graph_summary(topo: Topology) -> dict[str, object]:
    """Counts of elements and links, and bandwidth per link kind (for ``--json``)."""
    roles: dict[str, int] = {}
    for _, d in topo.graph.nodes(data=True):
        roles[d["role"]] = roles.get(d["role"], 0) + 1
    kinds: dict[str, dict[str, float]] = {}
    for lk in topo.links:
        k = kinds.setdefault(
            lk.kind, {"links": 0, "bandwidth_Bps_min": math.inf, "bandwidth_Bps_max": 0.0}
        )
        k["links"] += 1
        k["bandwidth_Bps_min"] = min(k["bandwidth_Bps_min"], lk.bandwidth_Bps)
        k["bandwidth_Bps_max"] = max(k["bandwidth_Bps_max"], lk.bandwidth_Bps)
    return {
        "cluster": topo.name,
        "nodes": topo.nodes,
        "devices": topo.ranks,
        "device": topo.cluster.device,
        "elements": roles,
        "directed_links": len(topo.links),
        "link_kinds": kinds,
        "weakly_connected": nx.is_weakly_connected(topo.graph),
    }
