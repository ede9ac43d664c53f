"""Model step page: a model's decode or prefill step on a device and layout: speed, memory,
the busy time by layer kind, the bound, the step's timeline and the capacity reasoning (why
this many devices). The what-if is ``hwsim whatif``: the baseline's layout on the changed
device (``profile.*`` edits change a wafer/dataflow/LPU mapper's parameters)."""

from __future__ import annotations

from typing import Any

from dash import Dash, Output, html

from hwsim.app import commands
from hwsim.app.compute import StepView, step_view
from hwsim.app.context import AppContext
from hwsim.app.params import StepParams, WhatIf
from hwsim.app.specs import spec_overrides, spec_yaml, whatif_device, whatif_filename
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
    register_page,
    status_line,
    text,
    whatif_panel,
    whole,
)
from hwsim.spec.device import DTYPES
from hwsim.spec.model import list_models
from hwsim.spec.override_paths import PROFILE_PREFIX
from hwsim.spec.units import Dim, format_quantity

P = "step"


def layout(app_ctx: AppContext) -> html.Div:
    d = StepParams()
    return html.Div(
        [
            html.H2("Model step: one decode or prefill step of a whole model"),
            html.Div(
                [
                    field("model", dropdown(f"{P}-model", list_models(), d.model), "13em"),
                    field("device", dropdown(f"{P}-device", app_ctx.device_options(), d.device)),
                    field("phase", dropdown(f"{P}-phase", ["decode", "prefill"], d.phase), "8em"),
                    field("layout (empty: auto)", text(f"{P}-layout", d.layout, "tp=8,pp=1")),
                    field("batch", number(f"{P}-batch", d.batch), "8em"),
                    field("context", number(f"{P}-context", d.context), "8em"),
                    field("dtype", dropdown(f"{P}-dtype", DTYPES, d.dtype), "8em"),
                    field("KV dtype", dropdown(f"{P}-kv-dtype", DTYPES, d.kv_dtype), "8em"),
                ],
                style=ROW,
            ),
            whatif_panel(P, "memory.hbm.bandwidth=x2"),
            status_line(P),
            html.Div(id=f"{P}-summary"),
            graph(f"{P}-breakdown"),
            graph(f"{P}-timeline"),
            html.H3("Capacity: why this many devices"),
            html.Div(id=f"{P}-capacity"),
            command_box(P),
        ]
    )


def _params(model: str, device: str, phase: str, layout: str | None, batch: Any, context: Any,
            dtype: str, kv_dtype: str, w: WhatIf) -> StepParams:  # fmt: skip
    return StepParams(
        model, device, phase, (layout or "").strip(), whole(batch, "--batch"),
        whole(context, "--context"), dtype, kv_dtype, w,
    )  # fmt: skip


def _s(v: float) -> str:
    return format_quantity(v, Dim.TIME, digits=4)


def _b(v: float) -> str:
    return format_quantity(v, Dim.BYTES, digits=4)


def _n(v: float) -> str:
    return f"{v:,.1f}"


def summary_metrics(view: StepView) -> list[Metric]:
    """The rows of the step table (the same names as ``hwsim whatif``'s deltas)."""
    b, n = view.baseline, view.whatif

    def row(key: str, label: str, fmt: Any) -> Metric:
        return Metric(key, label, getattr(b, key), getattr(n, key) if n else None, fmt)

    rows = [
        row("devices", "devices", lambda v: f"{v:.0f}"),
        Metric("layout", "layout", str(b.layout), str(n.layout) if n else None),
        row("time_per_token_s", "time per token (per user)", _s),
        row("tokens_per_s_per_user", "tokens/s per user", _n),
        row("tokens_per_s_total", "tokens/s total", _n),
        row("ttft_s", "TTFT (prefill) / step time", _s),
        row("memory_per_device_bytes", "memory per device", _b),
        row("comm_exposed_s", "communication exposed", _s),
        Metric("bound", "bound", b.bound, n.bound if n else None),
    ]
    return rows


def _render(view: StepView, p: StepParams) -> list[Any]:
    notes = [
        html.Li(x) for x in (*view.baseline.notes, *((view.whatif.notes) if view.whatif else ()))
    ]
    fits = (
        [html.P("the what-if device no longer holds the model with this layout", className="error")]
        if view.whatif is not None and not view.whatif.fits
        else []
    )
    summary = [metrics_table(P, summary_metrics(view), view.whatif is not None), *fits,
               html.Ul(notes, className="notes")]  # fmt: skip
    capacity = [
        html.Ul([html.Li(line) for line in view.capacity]),
        html.P(view.capacity_answer, id=f"{P}-capacity-answer"),
    ]
    return [summary, view.figures[0], view.figures[1], capacity]


def _check(p: StepParams) -> None:
    # the spec edits are checked here; profile.* edits are checked by the what-if itself
    spec = [o for o in p.whatif.overrides if not o.startswith(PROFILE_PREFIX)]
    whatif_device(p.device, spec)


def _download(p: StepParams) -> tuple[str, str]:
    return (
        spec_yaml(whatif_device(p.device, spec_overrides(list(p.whatif.overrides)))),
        whatif_filename(p.device),
    )


def register(app: Dash, app_ctx: AppContext) -> None:
    register_page(
        app,
        app_ctx.jobs,
        Page(
            prefix=P,
            controls=[
                f"{P}-{c}"
                for c in (
                    "model",
                    "device",
                    "phase",
                    "layout",
                    "batch",
                    "context",
                    "dtype",
                    "kv-dtype",
                )
            ],
            outputs=[
                Output(f"{P}-summary", "children"),
                Output(f"{P}-breakdown", "figure"),
                Output(f"{P}-timeline", "figure"),
                Output(f"{P}-capacity", "children"),
            ],
            make_params=_params,
            compute=lambda p, _progress: step_view(p),
            render=_render,
            command=commands.step_command,
            check_whatif=_check,
            download=_download,
        ),
    )
