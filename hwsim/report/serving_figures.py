"""``hwsim serve`` drawn: latency CDFs, throughput and batch size over time, KV blocks in use,
the latency-vs-QPS curve, and a Perfetto trace of the run (a track per replica with each
iteration, a track per request)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from hwsim.report.page import Section, html_table
from hwsim.serve.metrics import latencies
from hwsim.serve.serving import ServeResult

#: Requests drawn as their own trace track (the first ones; a long run would make the file huge).
TRACE_REQUESTS = 2000


def cdf_figure(r: ServeResult) -> go.Figure:
    """Empirical CDFs of TTFT, TPOT, end-to-end and queueing time (all completed requests)."""
    lat = latencies(r.records.requests)
    fig = make_subplots(rows=1, cols=4, subplot_titles=("TTFT", "TPOT", "end to end", "queueing"))
    for i, key in enumerate(("ttft", "tpot", "e2e", "queue"), start=1):
        v = np.sort(lat[key][np.isfinite(lat[key])])
        if not len(v):
            continue
        fig.add_trace(
            go.Scatter(x=v, y=np.arange(1, len(v) + 1) / len(v), mode="lines", name=key),
            row=1,
            col=i,
        )
        fig.update_xaxes(title_text="s", type="log" if v[0] > 0 else "linear", row=1, col=i)
    fig.update_yaxes(title_text="fraction of requests", row=1, col=1)
    title = f"{r.model} on {r.devices} × {r.device}: latency CDFs ({r.load})"
    fig.update_layout(height=360, template="plotly_white", showlegend=False, title=title)
    return fig


def timeline_figure(r: ServeResult) -> go.Figure:
    """Output tokens/s, mean decode batch and KV blocks in use over time."""
    s = r.metrics.series
    fig = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.06,
                        subplot_titles=("output tokens/s", "decode batch (mean per engine)",
                                        "KV blocks in use (mean per engine)"))  # fmt: skip
    for i, key in enumerate(("output_tokens_per_s", "batch", "kv_blocks"), start=1):
        fig.add_trace(go.Scatter(x=s["t_s"], y=s[key], mode="lines", name=key), row=i, col=1)
    lo, hi = r.metrics.window
    for i in (1, 2, 3):
        fig.add_vrect(x0=lo, x1=hi, fillcolor="#dddddd", opacity=0.3, line_width=0, row=i, col=1)
    fig.add_hline(y=r.kv_blocks_per_replica, line_dash="dot", row=3, col=1)
    fig.update_xaxes(title_text="simulated time (s); shaded: the steady-state window", row=3)
    fig.update_layout(height=640, template="plotly_white", showlegend=False)
    return fig


def qps_figure(points: Sequence[tuple[float, ServeResult]], slo: dict[str, float]) -> go.Figure:
    """p50/p99 TTFT and TPOT against offered load, with the SLO limits."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("TTFT", "TPOT"))
    qs = [q for q, _ in points]
    for col, key in enumerate(("ttft_s", "tpot_s"), start=1):
        for pct, dash in (("p50", "dot"), ("p99", "solid")):
            ys = [getattr(getattr(r.metrics, key), pct) for _, r in points]
            fig.add_trace(go.Scatter(x=qs, y=ys, name=f"{key[:4]} {pct}", line={"dash": dash}),
                          row=1, col=col)  # fmt: skip
        limit = slo.get(key[:4])
        if limit is not None:
            fig.add_hline(y=limit, line_color="red", line_dash="dash", row=1, col=col)
        fig.update_yaxes(type="log", title_text="s", row=1, col=col)
        fig.update_xaxes(title_text="offered load (req/s)", row=1, col=col)
    fig.update_layout(height=380, template="plotly_white")
    return fig


def serving_sections(r: ServeResult) -> list[Section]:
    """The report's sections for one serving run."""
    m = r.metrics
    rows = [
        ["load", r.load],
        ["deployment", f"{r.replicas} replica(s) × {r.layout} = {r.devices} devices"],
        ["completed / arrived", f"{m.completed} / {m.arrived} ({m.rejected} refused)"],
        ["output tokens/s", f"{m.output_tokens_per_s:,.0f}"],
        ["TTFT p50 / p99", f"{m.ttft_s.p50:.3f} / {m.ttft_s.p99:.3f} s"],
        ["TPOT p50 / p99", f"{m.tpot_s.p50 * 1e3:.1f} / {m.tpot_s.p99 * 1e3:.1f} ms"],
        ["goodput", f"{m.goodput_requests_per_s:.2f} req/s"],
        ["preemptions", str(m.preempted)],
    ]
    if r.max_qps is not None:
        rows.insert(0, ["highest rate meeting the SLOs", f"{r.max_qps:.3g} req/s"])
    return [
        Section(
            "Summary",
            f"{r.model} on {r.device}, traffic {r.traffic}.",
            table_html=html_table(["quantity", "value"], rows),
        ),
        Section("Latency CDFs", "Every completed request.", figure=cdf_figure(r)),
        Section(
            "Throughput, batch and KV cache over time",
            "Binned over the run; the shaded interval is the steady-state window the summary "
            "figures use (warm-up and cool-down excluded).",
            figure=timeline_figure(r),
        ),
    ]


def serving_trace(r: ServeResult) -> dict[str, Any]:
    """Perfetto / Chrome trace events: process 1 has a track per replica (engine) with every
    iteration (a run of decode iterations is one span with its count), process 2 a track per
    request (queued, prefill to the first token, decode), the first :data:`TRACE_REQUESTS`."""
    ev: list[dict[str, Any]] = []
    names: dict[str, int] = {}
    for rep, start, end, b, prompt, kv, kind, out, count in r.records.iterations:
        tid = names.setdefault(rep, len(names) + 1)
        ev.append({"ph": "X", "pid": 1, "tid": tid, "name": kind, "ts": start * 1e6,
                   "dur": max(end - start, 0.0) * 1e6,
                   "args": {"batch": b, "prompt_tokens": prompt, "kv_blocks": kv,
                            "output_tokens": out, "iterations": count}})  # fmt: skip
    for rep, tid in names.items():
        ev.append({"ph": "M", "pid": 1, "tid": tid, "name": "thread_name", "args": {"name": rep}})
    cols = r.records.requests
    for i in range(min(len(cols["arrival_s"]), TRACE_REQUESTS)):
        a, adm, f, e = (float(cols[k][i]) for k in ("arrival_s", "admit_s", "first_s", "finish_s"))
        tid = 1000 + i
        ev.append({"ph": "M", "pid": 2, "tid": tid, "name": "thread_name",
                   "args": {"name": f"request {i}"}})  # fmt: skip
        for name, t0, t1 in (("queued", a, adm), ("prefill", adm, f), ("decode", f, e)):
            if np.isfinite(t0) and np.isfinite(t1) and t1 >= t0:
                ev.append({"ph": "X", "pid": 2, "tid": tid, "name": name, "ts": t0 * 1e6,
                           "dur": (t1 - t0) * 1e6})  # fmt: skip
    ev += [
        {"ph": "M", "pid": 1, "name": "process_name", "args": {"name": "replicas"}},
        {"ph": "M", "pid": 2, "name": "process_name", "args": {"name": "requests"}},
    ]
    return {"traceEvents": ev, "displayTimeUnit": "ms"}
