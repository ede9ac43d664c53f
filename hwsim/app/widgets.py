"""Controls and result blocks every page shares, and the one callback shape every page uses.

Every page has: its controls; a what-if panel (a toggle, ``PATH=VALUE`` edits separated by
``;`` in the syntax of ``hwsim whatif --set``, their error line, and a button that downloads
the edited spec as YAML); a status line with a poll timer for simulations that take longer
than a moment (:mod:`hwsim.app.jobs`); an error line; the results; and the "copy as command"
box. :func:`register_page` wires them: controls → params record → cached computation →
rendered outputs, with bad input shown as the CLI's one-line message, never a crash.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from dash import Dash, Input, Output, State, dcc, html, no_update

from hwsim.app.jobs import Jobs, Progress, error_text
from hwsim.app.params import WhatIf
from hwsim.app.specs import parse_overrides
from hwsim.spec.errors import SpecError

#: How long a callback waits for its computation before it shows progress and polls.
WAIT_S = 0.9
POLL_MS = 400

ROW = {"display": "flex", "flexWrap": "wrap", "gap": "0.8em 1.4em", "alignItems": "flex-end"}


def field(label: str, control: Any, width: str = "11em") -> html.Div:
    """A labelled control."""
    return html.Div(
        [html.Label(label, className="lbl"), control], style={"width": width}, className="field"
    )


def number(id_: str, value: float | int, step: float | str = 1) -> dcc.Input:
    """A number box that answers on Enter or when it loses focus (not on every keystroke)."""
    return dcc.Input(id=id_, type="number", value=value, step=step, debounce=True, className="box")


def text(id_: str, value: str, placeholder: str = "") -> dcc.Input:
    return dcc.Input(
        id=id_, type="text", value=value, placeholder=placeholder, debounce=True, className="box"
    )


def dropdown(id_: str, options: Sequence[Any], value: Any) -> dcc.Dropdown:
    return dcc.Dropdown(id=id_, options=list(options), value=value, clearable=False)


def whatif_panel(prefix: str, overrides: str, on: bool = False, what: str = "device") -> html.Div:
    """The what-if toggle, the edits, their error line and the YAML download."""
    return html.Div(
        [
            dcc.Checklist(
                id=f"{prefix}-whatif",
                options=[{"label": f" what-if: compare with a changed {what}", "value": "on"}],
                value=["on"] if on else [],
                className="toggle",
            ),
            html.Div(
                [
                    field(
                        "changes (PATH=VALUE; …, as hwsim whatif --set)",
                        text(f"{prefix}-overrides", overrides, "memory.hbm.bandwidth=x2"),
                        width="34em",
                    ),
                    html.Button("Download what-if YAML", id=f"{prefix}-yaml-btn", n_clicks=0),
                    dcc.Download(id=f"{prefix}-yaml"),
                ],
                style=ROW,
            ),
            html.Div(id=f"{prefix}-overrides-error", className="error"),
        ],
        className="whatif",
    )


def command_box(prefix: str) -> html.Div:
    """The "copy as command" box: the command lines and a copy button."""
    return html.Div(
        [
            html.Div(
                ["copy as command ", dcc.Clipboard(target_id=f"{prefix}-command", title="copy")],
                className="lbl",
            ),
            html.Pre(id=f"{prefix}-command", className="command"),
        ]
    )


def status_line(prefix: str) -> html.Div:
    """Progress of a running simulation, and the timer that polls for its end."""
    return html.Div(
        [
            html.Div(id=f"{prefix}-status", className="status"),
            html.Div(id=f"{prefix}-error", className="error"),
            dcc.Interval(id=f"{prefix}-poll", interval=POLL_MS, disabled=True),
        ]
    )


def graph(id_: str) -> dcc.Graph:
    return dcc.Graph(id=id_, config={"displaylogo": False}, figure={"data": [], "layout": {}})


def side_by_side(*children: Any) -> html.Div:
    return html.Div(list(children), className="pair")


def whole(v: Any, option: str) -> int:
    """A number box's value as the CLI option would take it (an empty box is refused; the
    range is the library's to check, so that its message is the CLI's)."""
    if v is None or v == "" or (isinstance(v, float) and not v.is_integer()):
        raise SpecError(f"expected a whole number, got {v!r}", key=option)
    return int(v)


# ---- result tables ---------------------------------------------------------------------------
def change_text(a: float, b: float) -> str:
    """The percentage change from ``a`` to ``b`` (as ``hwsim whatif`` prints it)."""
    if a == b:
        return "+0.0%"
    if not a or not math.isfinite(a) or not math.isfinite(b):
        return "—"
    return f"{(b - a) / a:+.1%}"


@dataclass(frozen=True)
class Metric:
    """One row of a result table: its key (element ids and tests use it), label, baseline
    and what-if values, and how to write a value."""

    key: str
    label: str
    base: float | str
    new: float | str | None = None
    fmt: Callable[[float], str] = lambda v: f"{v:.4g}"


def data_value(v: object) -> dict[str, Any]:
    """A ``data-value`` attribute holding the exact value (``repr``): tests and anyone
    reading the page's HTML get the number, not its rounded text."""
    return {"data-value": repr(v)}


def _cell(prefix: str, m: Metric, which: str, v: float | str | None) -> html.Td:
    if v is None:
        return html.Td("")
    shown = v if isinstance(v, str) else m.fmt(v)
    return html.Td(shown, id=f"{prefix}-{m.key}-{which}", **data_value(v))


def metrics_table(prefix: str, metrics: Sequence[Metric], whatif: bool) -> html.Table:
    """Baseline (and what-if with the change) per metric."""
    head = ["", "baseline"] + (["what-if", "change"] if whatif else [])
    rows = []
    for m in metrics:
        cells = [html.Td(m.label), _cell(prefix, m, "base", m.base)]
        if whatif:
            change = (
                change_text(float(m.base), float(m.new))
                if isinstance(m.base, float | int) and isinstance(m.new, float | int)
                else ("changed" if m.new != m.base else "")
            )
            cells += [_cell(prefix, m, "new", m.new), html.Td(change, className="chg")]
        rows.append(html.Tr(cells))
    return html.Table(
        [html.Thead(html.Tr([html.Th(h) for h in head])), html.Tbody(rows)], className="data"
    )


def plain_table(columns: Sequence[str], rows: Sequence[Sequence[Any]], id_: str) -> html.Table:
    return html.Table(
        [
            html.Thead(html.Tr([html.Th(c) for c in columns])),
            html.Tbody([html.Tr([html.Td(str(v)) for v in r]) for r in rows]),
        ],
        className="data",
        id=id_,
    )


# ---- the page callback -----------------------------------------------------------------------
@dataclass(frozen=True)
class Page:
    """How a page turns its controls into outputs (see :func:`register_page`)."""

    prefix: str
    controls: list[str]  #: ids whose ``value`` are the page's inputs, in ``make_params`` order
    outputs: list[Output]  #: what ``render`` fills
    make_params: Callable[..., Any]  #: control values (then the WhatIf) → params record
    compute: Callable[[Any, Progress], Any]  #: params → view (runs on the job pool)
    render: Callable[[Any, Any], list[Any]]  #: (view, params) → one value per output
    command: Callable[[Any], str]  #: params → the copy-as-command text
    check_whatif: Callable[[Any], object]  #: raises SpecError for bad edits (fast)
    download: Callable[[Any], tuple[str, str]]  #: params → (YAML text, file name)


def whatif_of(toggle: list[str] | None, overrides: str | None) -> WhatIf:
    return WhatIf(
        on=bool(toggle) and "on" in (toggle or []), overrides=tuple(parse_overrides(overrides))
    )


def register_page(app: Dash, jobs: Jobs, page: Page) -> None:
    """One callback for the page's results, one for its YAML download."""
    pre = page.prefix
    inputs = [Input(c, "value") for c in page.controls] + [
        Input(f"{pre}-whatif", "value"),
        Input(f"{pre}-overrides", "value"),
        Input(f"{pre}-poll", "n_intervals"),
    ]
    fixed = [
        Output(f"{pre}-command", "children"),
        Output(f"{pre}-error", "children"),
        Output(f"{pre}-overrides-error", "children"),
        Output(f"{pre}-status", "children"),
        Output(f"{pre}-poll", "disabled"),
    ]
    n_out = len(page.outputs)

    @app.callback(*page.outputs, *fixed, *inputs)
    def _update(*values: Any) -> list[Any]:
        *controls, toggle, overrides, _ = values
        skip = [no_update] * n_out
        try:
            params = page.make_params(*controls, whatif_of(toggle, overrides))
            command = page.command(params)
        except Exception as err:  # bad input (or a bug) is a message, never a dead page
            return [*skip, no_update, error_text(err), "", "", True]
        edit_err = ""
        if params.whatif.active:
            try:
                page.check_whatif(params)
            except Exception as err:  # show the baseline, and the edit's message by the edits
                edit_err = error_text(err)
                params = replace(params, whatif=WhatIf(False, params.whatif.overrides))
                command = page.command(params)
        # without an active what-if, its edits do not change the result: one cache entry
        key = params if params.whatif.active else replace(params, whatif=WhatIf())
        state = jobs.get(key, lambda progress: page.compute(key, progress), WAIT_S)
        if not state.done:
            return [*skip, command, "", edit_err, f"⏳ {state.progress}", False]
        if state.error is not None:
            return [*skip, command, state.error, edit_err, "", True]
        took = f"computed in {state.elapsed_s * 1e3:.0f} ms"
        return [*page.render(state.value, params), command, "", edit_err, took, True]

    @app.callback(
        Output(f"{pre}-yaml", "data"),
        Output(f"{pre}-overrides-error", "children", allow_duplicate=True),
        Input(f"{pre}-yaml-btn", "n_clicks"),
        [State(c, "value") for c in page.controls],
        State(f"{pre}-overrides", "value"),
        prevent_initial_call=True,
    )
    def _download(_n: int, *values: Any) -> tuple[Any, Any]:
        *controls, overrides = values
        try:
            params = page.make_params(*controls, whatif_of(["on"], overrides))
            body, name = page.download(params)
        except Exception as err:  # bad input (or a bug) is a message, never a dead page
            return no_update, error_text(err)
        return {"content": body, "filename": name}, ""
