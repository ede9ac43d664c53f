"""Serving page: a request stream on a deployment (``hwsim serve``): latency against offered
load, the TTFT/TPOT CDFs, throughput, batch and KV blocks in use over time; the what-if device
at the same rate. A serving run takes seconds, so it runs off the request thread and the page
shows which rate it is simulating. Below, the card that sizes a deployment for a workload
class (``hwsim size --traffic``) lives in :mod:`hwsim.app.pages.serving_classes`."""

from __future__ import annotations

from typing import Any

from dash import Dash, Output, html

from hwsim.app import commands
from hwsim.app.compute import ServingView, curve_rates, serving_view
from hwsim.app.context import AppContext
from hwsim.app.pages import serving_classes
from hwsim.app.params import ServingParams, WhatIf
from hwsim.app.specs import spec_yaml, whatif_device, whatif_filename
from hwsim.app.widgets import (
    ROW,
    Metric,
    Page,
    command_box,
    dropdown,
    field,
    graph,
    metrics_table,
    number,
    plain_table,
    register_page,
    status_line,
    text,
    whatif_panel,
    whole,
)
from hwsim.serve.traffic import list_traffic
from hwsim.spec.errors import SpecError
from hwsim.spec.model import list_models

P = "srv"


def layout(app_ctx: AppContext) -> html.Div:
    d = ServingParams()
    return html.Div(
        [
            html.H2("Serving: a request stream, continuously batched"),
            html.Div(
                [
                    field("model", dropdown(f"{P}-model", list_models(), d.model), "13em"),
                    field("device", dropdown(f"{P}-device", app_ctx.device_options(), d.device)),
                    field("layout (empty: auto)", text(f"{P}-layout", d.layout, "tp=2")),
                    field("traffic", dropdown(f"{P}-traffic", list_traffic(), d.traffic), "13em"),
                    field("QPS (req/s)", number(f"{P}-qps", d.qps, "any"), "8em"),
                    field("requests", number(f"{P}-requests", d.requests), "8em"),
                    field("seed", number(f"{P}-seed", d.seed), "8em"),
                ],
                style=ROW,
            ),
            whatif_panel(P, "memory.hbm.bandwidth=x2"),
            status_line(P),
            html.Div(id=f"{P}-summary"),
            graph(f"{P}-qps-graph"),
            graph(f"{P}-cdf"),
            graph(f"{P}-timeline"),
            command_box(P),
            serving_classes.card(),
        ]
    )


def _params(model: str, device: str, layout: str | None, traffic: str, qps: Any,
            requests: Any, seed: Any, w: WhatIf) -> ServingParams:  # fmt: skip
    if qps is None or qps == "":
        raise SpecError(f"expected a rate in req/s, got {qps!r}", key="--qps")
    return ServingParams(model, device, (layout or "").strip(), traffic, float(qps),
                         whole(requests, "--requests"), whole(seed, "--seed"), w)  # fmt: skip


def summary_metrics(view: ServingView) -> list[Metric]:
    b, n = view.baseline, view.whatif
    bm, nm = b.metrics, (n.metrics if n else None)

    def row(key: str, label: str, get: Any, fmt: Any) -> Metric:
        return Metric(key, label, get(bm), get(nm) if nm else None, fmt)

    s, ms = (lambda v: f"{v:.3g} s"), (lambda v: f"{v * 1e3:.3g} ms")
    return [
        Metric(
            "deployment",
            "deployment",
            f"{b.replicas} × {b.layout} = {b.devices} devices",
            f"{n.replicas} × {n.layout} = {n.devices} devices" if n else None,
        ),
        row(
            "output_tokens_per_s",
            "output tokens/s",
            lambda m: m.output_tokens_per_s,
            lambda v: f"{v:,.0f}",
        ),
        row("ttft_p50", "TTFT p50", lambda m: m.ttft_s.p50, s),
        row("ttft_p99", "TTFT p99", lambda m: m.ttft_s.p99, s),
        row("tpot_p50", "TPOT p50", lambda m: m.tpot_s.p50, ms),
        row("tpot_p99", "TPOT p99", lambda m: m.tpot_s.p99, ms),
        row("completed", "completed", lambda m: m.completed, lambda v: f"{v:.0f}"),
        row("preempted", "preemptions", lambda m: m.preempted, lambda v: f"{v:.0f}"),
        Metric(
            "kv_blocks",
            "KV blocks per replica",
            b.kv_blocks_per_replica,
            n.kv_blocks_per_replica if n else None,
            lambda v: f"{v:,.0f}",
        ),
    ]


def _render(view: ServingView, p: ServingParams) -> list[Any]:
    curve_rows = [
        [f"{q:g}", f"{r.metrics.output_tokens_per_s:,.0f}", f"{r.metrics.ttft_s.p50:.3g}",
         f"{r.metrics.ttft_s.p99:.3g}", f"{r.metrics.tpot_s.p50 * 1e3:.3g}",
         f"{r.metrics.tpot_s.p99 * 1e3:.3g}"]
        for q, r in view.curve
    ]  # fmt: skip
    summary = [
        metrics_table(P, summary_metrics(view), view.whatif is not None),
        html.H3("Latency against offered load"),
        plain_table(
            [
                "req/s",
                "output tok/s",
                "TTFT p50 (s)",
                "TTFT p99 (s)",
                "TPOT p50 (ms)",
                "TPOT p99 (ms)",
            ],
            curve_rows,
            f"{P}-curve",
        ),
        *[html.P(f"note: {x}", className="notes") for x in view.baseline.notes],
    ]
    return [summary, *view.figures]


def register(app: Dash, app_ctx: AppContext) -> None:
    serving_classes.register(app, app_ctx.jobs, P)
    register_page(
        app,
        app_ctx.jobs,
        Page(
            prefix=P,
            controls=[
                f"{P}-{c}"
                for c in ("model", "device", "layout", "traffic", "qps", "requests", "seed")
            ],
            outputs=[
                Output(f"{P}-summary", "children"),
                Output(f"{P}-qps-graph", "figure"),
                Output(f"{P}-cdf", "figure"),
                Output(f"{P}-timeline", "figure"),
            ],
            make_params=_params,
            compute=lambda p, progress: serving_view(p, app_ctx.folder, progress),
            render=_render,
            command=lambda p: commands.serve_command(p, curve_rates(p.qps)),
            check_whatif=lambda p: whatif_device(p.device, list(p.whatif.overrides)),
            download=lambda p: (
                spec_yaml(whatif_device(p.device, list(p.whatif.overrides))),
                whatif_filename(p.device),
            ),
        ),
    )
