"""Charts and generated prose for ``hwsim compare --traffic`` and the report's "Which hardware
for which workload" section: per workload class, cost per million output tokens against tokens/s
per user (one marker per device type, the Pareto front joined), and a paragraph saying what
decided the class, written from the run's numbers and the device specs, not by hand."""

from __future__ import annotations

import math
from pathlib import Path

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from hwsim.report.page import Section, html_table, write_page
from hwsim.serve.classes import ClassComparison, ClassRow
from hwsim.spec.cost import economics
from hwsim.spec.load import load_device

_SYMBOLS = ("circle", "square", "diamond", "triangle-up", "cross", "x", "star", "hexagon")


def pareto_figure(cmp: ClassComparison) -> go.Figure:
    """One panel per class: $/Mtok (log) vs tokens/s per user (log), a marker per device that
    met the SLOs, the Pareto front as a line. Devices without a price are drawn on the energy
    panel below only (kWh per million tokens), never at zero dollars."""
    n = len(cmp.classes)
    fig = make_subplots(
        rows=2, cols=n, shared_xaxes=False, vertical_spacing=0.14,
        subplot_titles=[f"{c}: $ per million output tokens" for c in cmp.classes]
        + [f"{c}: kWh per million output tokens" for c in cmp.classes],
    )  # fmt: skip
    symbol = {d: _SYMBOLS[i % len(_SYMBOLS)] for i, d in enumerate(cmp.devices)}
    shown: set[str] = set()
    for j, cls in enumerate(cmp.classes, start=1):
        for row, cost in ((1, "usd_per_million_output_tokens"),
                          (2, "kwh_per_million_output_tokens")):  # fmt: skip
            for r in cmp.of(cls):
                y = getattr(r, cost)
                if not r.meets_slo or y is None or not r.tokens_per_s_per_user:
                    continue
                fig.add_trace(
                    go.Scatter(
                        x=[r.tokens_per_s_per_user], y=[y], mode="markers", name=r.device,
                        legendgroup=r.device, showlegend=r.device not in shown,
                        marker={"symbol": symbol[r.device], "size": 11},
                        hovertext=f"{r.device}: {r.deployment}<br>{r.binding_constraint}",
                        hoverinfo="text+x+y",
                    ),
                    row=row, col=j,
                )  # fmt: skip
                shown.add(r.device)
            front = _front(cmp.of(cls), cost)
            if len(front) > 1:
                fig.add_trace(
                    go.Scatter(
                        x=[r.tokens_per_s_per_user for r in front],
                        y=[getattr(r, cost) for r in front], mode="lines",
                        line={"dash": "dot", "color": "#888"}, showlegend=False, hoverinfo="skip",
                    ),
                    row=row, col=j,
                )  # fmt: skip
            fig.update_xaxes(type="log", title_text="tokens/s per user", row=row, col=j)
            fig.update_yaxes(type="log", row=row, col=j)
    fig.update_layout(height=720, title=f"{cmp.model}: cost and speed of the cheapest deployment "
                      "meeting each class's SLOs")  # fmt: skip
    return fig


def _front(rows: list[ClassRow], cost: str) -> list[ClassRow]:
    pts = [r for r in rows if r.meets_slo and getattr(r, cost) is not None
           and r.tokens_per_s_per_user]  # fmt: skip
    out = [
        r
        for r in pts
        if not any(
            getattr(o, cost) <= getattr(r, cost)
            and (o.tokens_per_s_per_user or 0) >= (r.tokens_per_s_per_user or 0)
            and o is not r
            and (getattr(o, cost), o.tokens_per_s_per_user)
            != (getattr(r, cost), r.tokens_per_s_per_user)
            for o in pts
        )
    ]
    return sorted(out, key=lambda r: r.tokens_per_s_per_user or 0.0)


def table(cmp: ClassComparison) -> str:
    cols = ["class", "device", "meets SLO", "devices", "deployment", "$/Mtok", "kWh/Mtok",
            "tok/s/user", "binding constraint"]  # fmt: skip
    rows = []
    for r in cmp.rows:
        usd = r.usd_per_million_output_tokens
        kwh = r.kwh_per_million_output_tokens
        rows.append([
            r.cls, r.device, "yes" if r.meets_slo else "no", r.devices or "-",
            r.deployment or "-", f"{usd:,.2f}" if usd is not None else "-",
            f"{kwh:,.1f}" if kwh is not None else "-",
            f"{r.tokens_per_s_per_user:,.1f}" if r.tokens_per_s_per_user else "-",
            r.binding_constraint,
        ])  # fmt: skip
    return html_table(cols, rows)


def _per_dollar(device: str) -> tuple[float, float, float] | None:
    """(main-memory bytes/s, bf16 FLOP/s, memory bytes) per USD/h of ``device``; None if
    unpriced."""
    dev = load_device(device)
    usd = economics(device, dev).usd_per_hour
    if usd is None:
        return None
    return (dev.main_memory.bandwidth_Bps / usd, dev.peak_flops("bf16") / usd,
            dev.level_capacity_bytes(dev.main_memory.name) / usd)  # fmt: skip


def _decider(win: ClassRow) -> str:
    """The device property behind the winner's binding constraint: what sizes its KV cache
    (capacity), what its decode step waits on (bandwidth or FLOP/s, per dollar), what a first
    token waits on (prefill: FLOP/s), or the links between chips."""
    b = win.binding_constraint
    if b.startswith(("the KV cache", "on-chip memory")):
        return "memory capacity per chip"
    if b.startswith("TTFT"):
        return "FLOP/s per dollar"
    if "communication" in b or "network" in b or "link" in b:
        return "the interconnect"
    if "compute-bound" in b:
        return "FLOP/s per dollar"
    if ("-bound decode" in b and "latency-bound" not in b) or b.startswith("TPOT"):
        return "memory bandwidth per dollar"
    return "the latency of a decode step"


def class_paragraph(cmp: ClassComparison, cls: str) -> str:
    """What decides ``cls``: the winner, the runner-up and by how much, the binding
    constraint, the spec figure behind it, and who could not meet the SLOs and why."""
    rows = cmp.of(cls)
    win = cmp.winner(cls)
    failed = [r for r in rows if not r.meets_slo]
    parts: list[str] = []
    if win is None:
        parts.append(f"No device type meets the {cls} SLOs for {cmp.model} at this load.")
    else:
        usd = win.usd_per_million_output_tokens
        cost = f"${usd:,.2f} per million output tokens" if usd is not None else "no known price"
        parts.append(
            f"For {cls}, {win.device} is cheapest: {cost} on {win.devices} "
            f"device{'s' * (win.devices != 1)} "
            f"({win.deployment}), {win.tokens_per_s_per_user or math.nan:,.0f} tokens/s per user."
        )
        others = sorted(
            (r for r in rows if r.meets_slo and r is not win
             and r.usd_per_million_output_tokens is not None),
            key=lambda r: r.usd_per_million_output_tokens or math.inf,
        )  # fmt: skip
        if others and usd:
            nxt = others[0]
            ratio = (nxt.usd_per_million_output_tokens or 0) / usd
            parts.append(f"Next is {nxt.device} at {ratio:.2g}x the cost.")
        decider = _decider(win)
        parts.append(f"What binds the winner: {win.binding_constraint}; so {decider} decides.")
        if decider in ("memory bandwidth per dollar", "FLOP/s per dollar"):
            # only the devices that met the SLOs, cheapest first: a chip with the most GB/s per
            # dollar-hour can still lose when its small memory forces many chips per replica
            k = 0 if decider.startswith("memory") else 1
            unit = ("GB/s", 1e9) if k == 0 else ("TFLOP/s", 1e12)
            shown = [(r.device, v[k]) for r in [win, *others[:2]] if (v := _per_dollar(r.device))]
            if shown:
                parts.append(
                    f"{unit[0]} per dollar-hour of the cheapest that met the SLOs: "
                    + ", ".join(f"{d} {v / unit[1]:,.0f}" for d, v in shown)
                    + "."
                )
    if failed:
        why = [f"{r.device} ({r.binding_constraint.split(': ', 1)[-1]})" for r in failed[:4]]
        parts.append("Cannot meet the SLOs at any size searched: " + "; ".join(why) + ".")
    unpriced = [r.device for r in rows if r.meets_slo and r.usd_per_million_output_tokens is None]
    if unpriced:
        parts.append(
            f"{', '.join(unpriced)} met the SLOs but has no public price: compared on devices "
            "and energy only."
        )
    return " ".join(parts)


def compare_sections(cmp: ClassComparison) -> list[Section]:
    """The chart, one paragraph per class, and the table."""
    text = " ".join(class_paragraph(cmp, c) for c in cmp.classes)
    return [
        Section(
            title=f"Which hardware for which workload: {cmp.model}",
            explanation=text,
            figure=pareto_figure(cmp),
            table_html=table(cmp),
        )
    ]


def write_compare_page(path: Path, cmp: ClassComparison, plotly_js: str = "inline") -> Path:
    return write_page(
        path, f"hwsim compare: {cmp.model}",
        "The cheapest deployment of each device type meeting each workload class's SLOs.",
        compare_sections(cmp), plotly_js,
    )  # fmt: skip
