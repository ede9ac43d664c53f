"""Attention page: one attention problem on a device: the tile plan in shared memory, the CTAs
over the SMs, the memory traffic (K/V streaming), the run on the roofline, time, bound and
bytes per level; FA2 against FA3 on the same device; the what-if device beside it."""

from __future__ import annotations

from typing import Any

from dash import Dash, Output, dcc, html

from hwsim.app import commands
from hwsim.app.compute import AttentionView, attention_view, compare_kernel
from hwsim.app.context import AppContext
from hwsim.app.params import AttentionParams, WhatIf
from hwsim.app.specs import spec_yaml, whatif_device, whatif_filename
from hwsim.app.widgets import (
    ROW,
    Metric,
    Page,
    command_box,
    data_value,
    dropdown,
    field,
    graph,
    metrics_table,
    number,
    register_page,
    side_by_side,
    status_line,
    whatif_panel,
    whole,
)
from hwsim.sim.kernel_profiles import KERNELS
from hwsim.spec.units import Dim, format_quantity

P = "attn"
_EMPTY: dict[str, Any] = {"data": [], "layout": {}}


def layout(app_ctx: AppContext) -> html.Div:
    d = AttentionParams()
    return html.Div(
        [
            html.H2("Attention: the tile plan, the waves and the bound"),
            html.Div(
                [
                    field("device", dropdown(f"{P}-device", app_ctx.device_options(), d.device)),
                    field("kernel", dropdown(f"{P}-kernel", KERNELS, d.kernel), "9em"),
                    field("pass", dropdown(f"{P}-pass", ["fwd", "bwd", "fwd+bwd"], d.pass_), "8em"),
                    field(
                        "dtype",
                        dropdown(f"{P}-dtype", ["bf16", "fp16", "fp8", "fp32"], d.dtype),
                        "8em",
                    ),
                    field("batch", number(f"{P}-batch", d.batch), "8em"),
                    field("heads", number(f"{P}-heads", d.heads), "8em"),
                    field("KV heads", number(f"{P}-kv-heads", d.kv_heads), "8em"),
                    field("seqlen", number(f"{P}-seqlen", d.seqlen), "8em"),
                    field("head dim", number(f"{P}-head-dim", d.head_dim), "8em"),
                    dcc.Checklist(
                        id=f"{P}-causal",
                        options=[{"label": " causal", "value": "on"}],
                        value=["on"] if d.causal else [],
                    ),
                ],
                style=ROW,
            ),
            whatif_panel(P, "memory.smem.capacity=x2"),
            status_line(P),
            html.Div(id=f"{P}-summary"),
            graph(f"{P}-tiles"),
            graph(f"{P}-gantt"),
            side_by_side(graph(f"{P}-traffic"), graph(f"{P}-roofline")),
            command_box(P),
        ]
    )


def _params(device: str, kernel: str, pass_: str, dtype: str, batch: Any, heads: Any,
            kv_heads: Any, seqlen: Any, head_dim: Any, causal: list[str] | None,
            w: WhatIf) -> AttentionParams:  # fmt: skip
    return AttentionParams(
        device, whole(batch, "--batch"), whole(heads, "--heads"), whole(kv_heads, "--kv-heads"),
        whole(seqlen, "--seqlen"), whole(head_dim, "--head-dim"), bool(causal), dtype, kernel,
        pass_, w,
    )  # fmt: skip


def _t(v: float) -> str:
    return format_quantity(v, Dim.TIME, digits=4)


def summary_metrics(view: AttentionView) -> list[Metric]:
    b, n = view.baseline, view.whatif

    def row(key: str, label: str, fmt: Any) -> Metric:
        return Metric(key, label, getattr(b, key), getattr(n, key) if n else None, fmt)

    rows = [
        row("time_s", "time", _t),
        row("tflops", "TFLOP/s (FA convention)", lambda v: f"{v:.1f}"),
        row("roofline_time_s", "roofline time", _t),
        Metric("bound", "bound", b.bound, n.bound if n else None),
    ]
    for level, v in b.bytes.items():
        nv = n.bytes.get(level) if n else None
        rows.append(Metric(f"bytes-{level}", f"bytes {level}", v, nv,
                           lambda x: format_quantity(x, Dim.BYTES, digits=4)))  # fmt: skip
    plan = getattr(b, "plan", None) or {}
    if "block_q" in plan:
        nplan = (getattr(n, "plan", None) or {}) if n else {}
        tiles = f"{plan['block_q']} × {plan['block_kv']}"
        ntiles = f"{nplan['block_q']} × {nplan['block_kv']}" if "block_q" in nplan else None
        rows.append(Metric("tiles", "tiles (Q × KV)", tiles, ntiles))
    return rows


def _render(view: AttentionView, p: AttentionParams) -> list[Any]:
    parts: list[Any] = [metrics_table(P, summary_metrics(view), view.whatif is not None)]
    o = view.compare
    if o is not None:
        b = view.baseline
        faster = "faster" if o.time_s < b.time_s else "slower"
        parts.append(
            html.P(
                f"{o.kernel} on the same device: {_t(o.time_s)}, {o.tflops:.1f} TFLOP/s, "
                f"bound {o.bound} ({abs(o.time_s / b.time_s - 1):.1%} {faster} than {b.kernel})",
                id=f"{P}-compare",
                **data_value(o.time_s),
            )
        )
    parts += [html.P(f"note: {x}", className="notes") for x in view.baseline.notes]
    figs = list(view.figures) + [_EMPTY] * (4 - len(view.figures))
    return [parts, *figs]


def _command(p: AttentionParams) -> str:
    from hwsim.spec.load import load_device

    gpu = load_device(p.device).kind == "gpu"
    return commands.attention_command(p, compare_kernel(p.kernel) if gpu else None)


def register(app: Dash, app_ctx: AppContext) -> None:
    register_page(
        app,
        app_ctx.jobs,
        Page(
            prefix=P,
            controls=[
                f"{P}-{c}"
                for c in (
                    "device",
                    "kernel",
                    "pass",
                    "dtype",
                    "batch",
                    "heads",
                    "kv-heads",
                    "seqlen",
                    "head-dim",
                    "causal",
                )
            ],
            outputs=[
                Output(f"{P}-summary", "children"),
                Output(f"{P}-tiles", "figure"),
                Output(f"{P}-gantt", "figure"),
                Output(f"{P}-traffic", "figure"),
                Output(f"{P}-roofline", "figure"),
            ],
            make_params=_params,
            compute=lambda p, _progress: attention_view(p, app_ctx.folder),
            render=_render,
            command=_command,
            check_whatif=lambda p: whatif_device(p.device, list(p.whatif.overrides)),
            download=lambda p: (
                spec_yaml(whatif_device(p.device, list(p.whatif.overrides))),
                whatif_filename(p.device),
            ),
        ),
    )
