"""Device page: pick a built-in device or upload a YAML file, edit spec fields (sliders for the
main levers, any field by path in human units), and see the hierarchical roofline and which
example kernels change their bound. The edited spec downloads as YAML that ``hwsim show``
accepts; the command is ``hwsim roofline DEVICE [DEVICE-whatif.yaml]``."""

from __future__ import annotations

import math
from typing import Any

from dash import Dash, Input, Output, State, ctx, dcc, html, no_update

from hwsim.app import commands
from hwsim.app.compute import RooflineView, roofline_view
from hwsim.app.context import AppContext
from hwsim.app.jobs import error_text
from hwsim.app.params import DeviceParams, WhatIf
from hwsim.app.specs import (
    display_name,
    field_options,
    multiplier_text,
    set_override,
    spec_yaml,
    whatif_device,
    whatif_filename,
)
from hwsim.app.widgets import (
    ROW,
    Page,
    command_box,
    dropdown,
    field,
    graph,
    plain_table,
    register_page,
    side_by_side,
    status_line,
    text,
    whatif_panel,
)
from hwsim.roofline.ops import EXAMPLES
from hwsim.spec.device import DTYPES, Device
from hwsim.spec.errors import SpecError
from hwsim.spec.load import load_device
from hwsim.spec.units import Dim, format_quantity

P = "dev"
#: The sliders: log2 of a factor on a field, ×¼ … ×4
SLIDERS = ("bw", "peak", "cap")
_MARKS = {-2: "×¼", -1: "×½", 0: "×1", 1: "×2", 2: "×4"}


def slider_paths(device: Device, dtype: str) -> dict[str, tuple[str, str, float, Dim]]:
    """Slider → (override path, label, current SI value, dimension): the main memory's
    bandwidth, the matrix peak at the page's dtype, the innermost memory level's capacity."""
    main, inner = device.main_memory, device.memory[0]
    return {
        "bw": (f"memory.{main.name}.bandwidth", f"{main.name} bandwidth",
               main.bandwidth_Bps, Dim.BANDWIDTH),
        "peak": (f"compute.peak.{dtype}", f"{dtype} matrix peak", device.peak_flops(dtype),
                 Dim.RATE),
        "cap": (f"memory.{inner.name}.capacity",
                f"{inner.name} capacity ({str(inner.scope).replace('_', ' ')})",
                inner.capacity_bytes, Dim.BYTES),
    }  # fmt: skip


def layout(app_ctx: AppContext) -> html.Div:
    d = DeviceParams()
    sliders = [
        html.Div(
            [
                html.Div(id=f"{P}-s-{s}-label", className="lbl"),
                dcc.Slider(
                    id=f"{P}-s-{s}",
                    min=-2,
                    max=2,
                    step=0.125,
                    value=0,
                    marks=_MARKS,
                    allow_direct_input=False,
                ),
            ],
            style={"width": "18em"},
        )
        for s in SLIDERS
    ]
    return html.Div(
        [
            html.H2("Device: the hierarchical roofline of a spec you edit"),
            html.Div(
                [
                    field("device", dropdown(f"{P}-device", app_ctx.device_options(), d.device)),
                    field("dtype", dropdown(f"{P}-dtype", DTYPES, d.dtype), "8em"),
                    dcc.Upload(
                        html.Button("Upload a device YAML"), id=f"{P}-upload", accept=".yaml,.yml"
                    ),
                    html.Div(id=f"{P}-upload-error", className="error"),
                ],
                style=ROW,
            ),
            field(
                "example kernels",
                dcc.Checklist(
                    id=f"{P}-kernels", options=list(EXAMPLES), value=list(EXAMPLES), inline=True
                ),
                "100%",
            ),
            whatif_panel(P, "", on=True),
            html.Div(sliders, style=ROW),
            html.Div(
                [
                    field("any spec field", dropdown(f"{P}-field", [], None), "30em"),
                    field("new value (units, x2, +20%)", text(f"{P}-value", "", "4.8 TB/s")),
                    html.Button("Set", id=f"{P}-set", n_clicks=0),
                ],
                style=ROW,
            ),
            status_line(P),
            side_by_side(
                graph(f"{P}-graph-base"), html.Div(graph(f"{P}-graph-new"), id=f"{P}-new-box")
            ),
            html.H3("Example kernels: time and bound"),
            html.Div(id=f"{P}-table"),
            command_box(P),
        ]
    )


def _params(device: str, dtype: str, kernels: list[str] | None, w: WhatIf) -> DeviceParams:
    picked = tuple(k for k in EXAMPLES if k in (kernels or []))
    if not picked:
        raise SpecError("pick at least one example kernel", key="--kernel")
    # every kernel ticked is the CLI's default (no -k): the command stays short
    return DeviceParams(device, dtype, () if len(picked) == len(EXAMPLES) else picked, w)


def _fmt(v: float, dim: Dim) -> str:
    return format_quantity(v, dim, digits=3) if math.isfinite(v) else "—"


def _render(view: RooflineView, p: DeviceParams) -> list[Any]:
    new = {r.kernel: r for r in view.whatif}
    cols = ["kernel", "time", "bound", "FLOP/s", "% peak"]
    if new:
        cols += ["what-if time", "what-if bound", "change"]
    rows = []
    for r in view.baseline:
        row = [r.kernel, _fmt(r.time_s, Dim.TIME), r.bound, _fmt(r.attainable_flops, Dim.RATE),
               f"{100 * r.fraction_of_peak:.1f}"]  # fmt: skip
        n = new.get(r.kernel)
        if n is not None:
            moved = f"{r.bound} → {n.bound}" if n.bound != r.bound else n.bound
            row += [_fmt(n.time_s, Dim.TIME), moved, f"{(n.time_s - r.time_s) / r.time_s:+.1%}"]
        rows.append(row)
    changed = [
        r.kernel for r in view.baseline if r.kernel in new and new[r.kernel].bound != r.bound
    ]
    note = html.P(
        f"bound changes: {', '.join(changed)}" if changed else
        ("no kernel changes its bound" if new else ""), id=f"{P}-bound-changes")  # fmt: skip
    fig_new = view.figures[1] if len(view.figures) > 1 else {"data": [], "layout": {}}
    box = {"display": "block"} if new else {"display": "none"}
    return [view.figures[0], fig_new, box, [plain_table(cols, rows, f"{P}-kernels-table"), note]]


def _download(p: DeviceParams) -> tuple[str, str]:
    return spec_yaml(whatif_device(p.device, list(p.whatif.overrides))), whatif_filename(p.device)


def register(app: Dash, app_ctx: AppContext) -> None:
    register_page(
        app,
        app_ctx.jobs,
        Page(
            prefix=P,
            controls=[f"{P}-device", f"{P}-dtype", f"{P}-kernels"],
            outputs=[
                Output(f"{P}-graph-base", "figure"),
                Output(f"{P}-graph-new", "figure"),
                Output(f"{P}-new-box", "style"),
                Output(f"{P}-table", "children"),
            ],
            make_params=_params,
            compute=lambda p, _progress: roofline_view(p, app_ctx.folder),
            render=_render,
            command=commands.roofline_command,
            check_whatif=lambda p: whatif_device(p.device, list(p.whatif.overrides)),
            download=_download,
        ),
    )

    @app.callback(
        Output(f"{P}-overrides", "value"),
        Output(f"{P}-whatif", "value"),
        *[Output(f"{P}-s-{s}", "value") for s in SLIDERS],
        *[Output(f"{P}-s-{s}-label", "children") for s in SLIDERS],
        Output(f"{P}-field", "options"),
        Input(f"{P}-device", "value"),
        Input(f"{P}-dtype", "value"),
        *[Input(f"{P}-s-{s}", "value") for s in SLIDERS],
        Input(f"{P}-set", "n_clicks"),
        State(f"{P}-overrides", "value"),
        State(f"{P}-field", "value"),
        State(f"{P}-value", "value"),
    )
    def _edit(device: str, dtype: str, *rest: Any) -> list[Any]:
        """Sliders and the field picker write their edits into the changes box (the one
        source of truth, which the command repeats); a new device starts from no edits."""
        *pos, _n, overrides, path, value = rest
        trig = ctx.triggered_id
        try:
            dev = load_device(device)
        except SpecError:
            return [no_update] * (2 + 2 * len(SLIDERS) + 1)
        paths = slider_paths(dev, dtype)
        out_pos: list[Any] = [no_update] * len(SLIDERS)
        new_text: Any = no_update
        toggle: Any = no_update
        if trig == f"{P}-device":
            new_text, out_pos, pos = "", [0] * len(SLIDERS), [0] * len(SLIDERS)
        elif isinstance(trig, str) and trig.startswith(f"{P}-s-"):
            s = trig.removeprefix(f"{P}-s-")
            new_text = set_override(overrides, paths[s][0], multiplier_text(pos[SLIDERS.index(s)]))
            toggle = ["on"]
        elif trig == f"{P}-set" and path and value:
            new_text, toggle = set_override(overrides, path, str(value)), ["on"]
        labels = []
        for s, v in zip(SLIDERS, pos, strict=True):
            _, label, si, dim = paths[s]
            f = 2.0 ** float(v or 0)
            labels.append(f"{label}: {_fmt(si, dim)} × {f:.3g} = {_fmt(si * f, dim)}")
        return [new_text, toggle, *out_pos, *labels, field_options(dev)]

    @app.callback(
        Output(f"{P}-device", "options"),
        Output(f"{P}-device", "value"),
        Output(f"{P}-upload-error", "children"),
        Input(f"{P}-upload", "contents"),
        State(f"{P}-upload", "filename"),
        prevent_initial_call=True,
    )
    def _upload(contents: str | None, filename: str | None) -> tuple[Any, Any, str]:
        if not contents:
            return no_update, no_update, ""
        try:
            key = app_ctx.add_upload(filename or "device.yaml", contents)
        except SpecError as err:  # the CLI's message for this file
            return no_update, no_update, error_text(err)
        return app_ctx.device_options(), key, f"loaded {display_name(key)}"
