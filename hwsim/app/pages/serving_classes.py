"""The Serving page's "Which deployment for a workload class" card: ``hwsim size --traffic``
in the browser. For the page's model and device, a workload class (chat, low-latency, batch)
and an optional load, :func:`hwsim.serve.sizing.size_for_traffic` searches deployments (the
step-time bounds, then the cheapest few simulated at the load); the card shows the winner, the
search's stage counts and why each runner-up lost (:func:`~hwsim.serve.sizing_result.
lost_because`), and the command line that gives the same answer.

A search takes seconds, so it runs on the app's job pool like the page's serving runs
(:mod:`hwsim.app.jobs`): results are cached by their inputs, and the card shows the search's
progress while it polls. Bad input is the CLI's one-line message next to the fields. The card
keeps its own records (params, command, view) here rather than in ``params.py``,
``commands.py`` and ``compute.py``: nothing else uses them.
"""

from __future__ import annotations

import math
import shlex
from dataclasses import dataclass
from typing import Any

from dash import Dash, Input, Output, dcc, html, no_update

from hwsim.app.jobs import Jobs, Progress, error_text
from hwsim.app.specs import display_name
from hwsim.app.widgets import (
    ROW,
    WAIT_S,
    command_box,
    data_value,
    dropdown,
    field,
    plain_table,
    status_line,
)
from hwsim.serve.classes import CLASSES
from hwsim.spec.errors import SpecError

#: The card's id prefix (inside the Serving page's ``srv``).
C = "srv-cls"
_CARD = {"border": "1px solid #d5d9ee", "borderRadius": "6px", "padding": "0.3em 1em 0.8em",
         "margin": "1.2em 0", "background": "#fcfcff"}  # fmt: skip


@dataclass(frozen=True)
class ClassParams:
    """The card's inputs (the key of its cached result): ``qps`` None is the class's rate."""

    model: str
    device: str
    cls: str
    qps: float | None = None


@dataclass(frozen=True)
class ClassView:
    """What the card shows of a :class:`~hwsim.serve.sizing_result.SizeAnswer`, as plain data
    (the cache keeps no serving runs): the winner, the runners-up and why each lost."""

    heading: str
    stages: dict[str, int]
    winner: dict[str, Any] | None  #: :meth:`Outcome.to_dict` of the cheapest that met the SLOs
    binding: str  #: what decides the winner's size (:func:`hwsim.serve.classes.binding`)
    runners_up: tuple[tuple[dict[str, Any], str], ...]  #: (Outcome.to_dict(), why it lost)
    notes: tuple[str, ...] = ()
    error: str = ""  #: the CLI's message when no deployment met the SLOs


def class_params(model: Any, device: Any, cls: Any, qps: Any) -> ClassParams:
    """The card's controls as the CLI options would take them (an empty QPS box: the class's
    rate; its range is the library's to check, so that the message is the CLI's)."""
    if not cls:
        raise SpecError(f"expected a workload class such as {', '.join(CLASSES)}", key="--traffic")
    if qps is None or qps == "":
        return ClassParams(str(model), str(device), str(cls))
    try:
        rate = float(qps)
    except (TypeError, ValueError):
        raise SpecError(f"expected a rate in req/s, got {qps!r}", key="--qps") from None
    return ClassParams(str(model), str(device), str(cls), rate)


def rate_text(qps: float) -> str:
    """``qps`` as the command line gives it: short where that is exact, else every digit."""
    short = f"{qps:g}"
    return short if float(short) == qps else repr(qps)


def size_command(p: ClassParams) -> str:
    """``hwsim size --traffic``: the search the card shows."""
    args = ["size", "--model", p.model, "--device", display_name(p.device), "--traffic", p.cls]
    if p.qps is not None:
        args += ["--qps", rate_text(p.qps)]
    return shlex.join(["hwsim", *args])


def class_view(p: ClassParams, progress: Progress) -> ClassView:
    """The search of ``hwsim size --traffic`` and what the CLI prints of it."""
    from hwsim.serve.classes import binding
    from hwsim.serve.sizing import decode_bound, size_for_traffic
    from hwsim.serve.sizing_result import lost_because

    progress(f"bounding deployments of {p.model} on {display_name(p.device)}")
    ans = size_for_traffic(p.model, p.device, p.cls, qps=p.qps, progress=progress)
    load = f" at {ans.qps:g} req/s" if ans.qps else " (offline)"
    slo = f", SLO {ans.slo}" if ans.slo.limits else ""
    heading = f"{ans.model} on {display_name(p.device)}, traffic {ans.traffic}{load}{slo}"
    best = ans.best("dollars") or ans.best("devices")
    notes = list(ans.economics.assumptions)
    if ans.passing and all(o.usd_per_mtok is None for o in ans.passing):
        notes.append(f"no price known for {display_name(p.device)}: ranked by devices only")
    error, why = "", ""
    if best is None:
        error = f"no deployment of {display_name(p.device)} meets the SLOs: {ans.why_not()}"
    else:
        progress("finding what binds the winner")
        kind = decode_bound(p.model, p.device, best.plan, best.plan.max_batch, ans.mean_context)
        why = binding(ans, best, kind)
    return ClassView(
        heading, dict(ans.stages), best.to_dict() if best is not None else None, why,
        tuple((o.to_dict(), reason) for o, reason in lost_because(ans)), tuple(notes), error,
    )  # fmt: skip


# ---- the card --------------------------------------------------------------------------------
def _qps_box() -> dcc.Input:
    """A number box that starts empty (the class's rate) and answers on Enter or blur."""
    return dcc.Input(id=f"{C}-qps", type="number", value=None, step="any", debounce=True,
                     placeholder="the class's", className="box")  # fmt: skip


def card() -> html.Div:
    """The card's controls, progress and error lines, results and command box."""
    return html.Div(
        [
            html.H3("Which deployment for a workload class"),
            html.P(
                [
                    "The cheapest deployment of the model above on the device above that meets "
                    "the class's latency limits at the load: deployments bounded by the "
                    "step-time model, the cheapest few simulated (",
                    html.Code("hwsim size --traffic"),
                    ").",
                ],
                className="notes",
            ),
            html.Div(
                [
                    field("workload class", dropdown(f"{C}-class", CLASSES, CLASSES[0]), "12em"),
                    field("QPS (empty: the class's)", _qps_box(), "12em"),
                ],
                style=ROW,
            ),
            status_line(C),
            html.Div(id=f"{C}-result"),
            command_box(C),
        ],
        style=_CARD,
    )


def _usd(v: float | None) -> str:
    return "-" if v is None else f"${v:,.2f}"


def _ms(v: float | None) -> str:
    return "-" if v is None or math.isnan(v) else f"{v * 1e3:,.3g} ms"


def _winner(w: dict[str, Any], binds: str) -> html.Table:
    """The winner, one row per figure; each cell has an id and its exact value (data-value)."""
    usd = w["usd_per_million_output_tokens"]
    rows: list[tuple[str, str, Any, str]] = [
        ("deployment", "deployment", w["deployment"], w["deployment"]),
        ("devices", "devices", w["devices"], str(w["devices"])),
        ("usd_per_mtok", "$ per million output tokens", usd, _usd(usd)),
        ("tokens_per_s_per_user", "tokens/s per user", w["tokens_per_s_per_user"],
         f"{w['tokens_per_s_per_user']:,.1f}"),
        ("ttft_p99", "TTFT p99", w["ttft_p99_s"], _ms(w["ttft_p99_s"])),
        ("tpot_p99", "TPOT p99", w["tpot_p99_s"], _ms(w["tpot_p99_s"])),
        ("binding", "what binds it", binds, binds),
    ]  # fmt: skip
    body = [
        html.Tr([html.Td(label), html.Td(shown, id=f"{C}-winner-{key}", **data_value(v))])
        for key, label, v, shown in rows
    ]
    return html.Table(
        [html.Thead(html.Tr([html.Th(""), html.Th("winner")])), html.Tbody(body)],
        className="data", id=f"{C}-winner",
    )  # fmt: skip


def render(v: ClassView) -> list[Any]:
    """The card's results: heading, stage counts, winner, runners-up and notes."""
    s = v.stages
    stages = (
        f"candidates: {s['enumerated']} enumerated, {s['after_bounds']} after bounds, "
        f"{s['simulated']} simulated, {s['met_slo']} met the SLOs"
    )
    out: list[Any] = [html.P(v.heading), html.P(stages, id=f"{C}-stages", **data_value(s))]
    if v.winner is not None:
        head = html.H4("The cheapest deployment that meets the SLOs")
        out += [head, _winner(v.winner, v.binding)]
    if v.runners_up:  # a run stopped when it lost its SLO has a partial rate, not a cost
        rows = [
            [d["deployment"], d["devices"],
             _usd(d["usd_per_million_output_tokens"]) if d["meets_slo"] else "-",
             _ms(d["ttft_p99_s"]), _ms(d["tpot_p99_s"]), why]
            for d, why in v.runners_up
        ]  # fmt: skip
        cols = ["deployment", "devices", "$/Mtok", "TTFT p99", "TPOT p99", "why it lost"]
        title = "Runners-up" if v.winner is not None else "Deployments simulated"
        out += [html.H4(title), plain_table(cols, rows, f"{C}-runners-up")]
    out += [html.P(n, className="notes") for n in v.notes]
    return out


def update(jobs: Jobs, model: Any, device: Any, cls: Any, qps: Any, wait_s: float = WAIT_S
           ) -> list[Any]:  # fmt: skip
    """The card's callback: (results, command, error line, status line, poll disabled). As
    the pages' callback (:func:`hwsim.app.widgets.register_page`): bad input is the CLI's
    message and the last good result stays; a running search shows its progress and polls."""
    try:
        p = class_params(model, device, cls, qps)
        command = size_command(p)
    except Exception as err:  # bad input (or a bug) is a message, never a dead page
        return [no_update, no_update, error_text(err), "", True]
    state = jobs.get(p, lambda progress: class_view(p, progress), wait_s)
    if not state.done:
        return [no_update, command, "", f"⏳ {state.progress}", False]
    if state.error is not None:
        return [no_update, command, state.error, "", True]
    view: ClassView = state.value
    took = f"computed in {state.elapsed_s * 1e3:.0f} ms"
    return [render(view), command, view.error, took, True]


def register(app: Dash, jobs: Jobs, page_prefix: str) -> None:
    """The card's callback; the model and device are the page's own controls."""

    @app.callback(
        Output(f"{C}-result", "children"),
        Output(f"{C}-command", "children"),
        Output(f"{C}-error", "children"),
        Output(f"{C}-status", "children"),
        Output(f"{C}-poll", "disabled"),
        Input(f"{page_prefix}-model", "value"),
        Input(f"{page_prefix}-device", "value"),
        Input(f"{C}-class", "value"),
        Input(f"{C}-qps", "value"),
        Input(f"{C}-poll", "n_intervals"),
    )
    def _update(model: Any, device: Any, cls: Any, qps: Any, _n: Any) -> list[Any]:
        return update(jobs, model, device, cls, qps)
