"""``hwsim size --traffic`` and ``hwsim compare --traffic``: the cheapest deployment that meets a
workload class's SLOs, on one device type or across several (:mod:`hwsim.serve.sizing`,
:mod:`hwsim.serve.classes`). Called by the ``size`` and ``compare`` commands when
``--traffic`` is given; tables fit an 80-column terminal unless ``--wide``."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from hwsim.cli.common import console, print_json
from hwsim.spec.errors import SpecError

if TYPE_CHECKING:
    from hwsim.serve.classes import ClassComparison, ClassRow
    from hwsim.serve.sizing_result import Outcome

err_console = Console(stderr=True)


def _usd(v: float | None) -> str:
    return "-" if v is None else (f"${v:,.2f}" if v < 100 else f"${v:,.0f}")


def _num(v: float | None, fmt: str = "{:,.0f}") -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else fmt.format(v)


def _ms(v: float | None) -> str:
    return "-" if v is None or math.isnan(v) else f"{v * 1e3:,.0f} ms"


def size_traffic(
    model: str,
    device: str,
    traffic: str,
    qps: float | None,
    price: str | None,
    hours: str | None,
    costs: Path | None,
    wide: bool,
    json_out: bool,
) -> None:
    """``hwsim size --traffic``: search, then the winners by devices, power and dollars and
    why each runner-up lost."""
    from hwsim.serve.sizing import size_for_traffic
    from hwsim.serve.sizing_result import lost_because

    def note(text: str) -> None:  # progress for a person watching, not for logs or pipes
        if not json_out and err_console.is_terminal:
            err_console.print(f"[dim]{text}[/]")

    ans = size_for_traffic(
        model, device, traffic, qps=qps, price=price, amortization=hours, progress=note,
        costs=costs,
    )  # fmt: skip
    if json_out:
        print_json(ans.to_dict())
        return
    if not ans.passing:
        raise SpecError(f"no deployment of {device} meets the SLOs: {ans.why_not()}")
    s = ans.stages
    console.print(
        f"{ans.model} on {device}, traffic {ans.traffic}"
        + (f" at {ans.qps:g} req/s" if ans.qps else " (offline)")
        + (f", SLO {ans.slo}" if ans.slo.limits else "")
    )
    console.print(
        f"candidates: {s['enumerated']} enumerated, {s['after_bounds']} after bounds, "
        f"{s['simulated']} simulated, {s['met_slo']} met the SLOs"
    )
    t = Table(title="cheapest deployments")
    cols = ["pick", "deployment", "devices", "$/Mtok", "tok/s/user"]
    if wide:
        cols += ["capex $/Mtok", "rental $/Mtok", "J/token", "TTFT p99", "TPOT p99"]
    for c in cols:
        t.add_column(c, justify="left" if c in ("pick", "deployment") else "right")
    for label, key in (("dollars", "dollars"), ("devices", "devices"), ("power", "power")):
        o = ans.best(key)
        if o is not None:
            t.add_row(label, *_outcome_cells(o, wide))
    console.print(t)
    lost = lost_because(ans)
    if lost:
        console.print("runners-up:")
        for o, why in lost:
            console.print(f"  {o.plan}: {why}")
    for a in ans.economics.assumptions:
        console.print(f"[dim]{a}[/]")
    if all(o.usd_per_mtok is None for o in ans.passing):
        console.print(f"[dim]no price known for {device}: ranked by devices and power only[/]")


def _outcome_cells(o: Outcome, wide: bool) -> list[str]:
    cells = [str(o.plan), str(o.plan.devices), _usd(o.usd_per_mtok),
             _num(o.tokens_per_s_per_user, "{:,.1f}")]  # fmt: skip
    if wide:
        m = o.result.metrics
        cells += [_usd(o.capex_usd_per_mtok), _usd(o.rental_usd_per_mtok),
                  _num(o.joules_per_token, "{:,.2f}"), _ms(m.ttft_s.p99),
                  _ms(m.tpot_s.p99)]  # fmt: skip
    return cells


def compare_traffic(
    model: str,
    devices: str,
    traffic: str,
    qps: float | None,
    price: str | None,
    hours: str | None,
    costs: Path | None,
    wide: bool,
    html: Path | None,
    json_out: bool,
    executor: str,
    workers: int | None,
    scheduler: str | None,
) -> None:
    """``hwsim compare --traffic``: one table per class, the binding constraint of each row,
    and (``--html``) the Pareto chart."""
    from hwsim.serve.classes import compare_classes, parse_classes
    from hwsim.sweep.executors import make_executor

    classes = parse_classes(traffic)
    names = [d.strip() for d in devices.split(",") if d.strip()]
    if not names:
        raise SpecError(f"--devices {devices!r}: expected device names, like h200,groq-lpu")
    if price is not None and len(names) > 1:
        raise SpecError("--price applies to one device: give one --devices name with it")

    def done(r: ClassRow) -> None:
        if not json_out and err_console.is_terminal:
            verdict = "meets" if r.meets_slo else "cannot meet the SLOs"
            err_console.print(f"[dim]{r.cls} on {r.device}: {verdict} ({r.wall_s:.1f} s)[/]")

    with make_executor(executor, workers=workers, scheduler=scheduler) as ex:
        cmp = compare_classes(
            model, classes, names, qps=qps, price=price, hours=hours, costs=costs,
            map_fn=ex.map_unordered, progress=done,
        )  # fmt: skip
    data = cmp.to_dict()
    if html is not None:
        from hwsim.report.class_figures import write_compare_page

        write_compare_page(html, cmp)
        data["html"] = str(html)
    if json_out:
        print_json(data["rows"] if html is None else data)
        return
    print_comparison(cmp, wide)
    if html is not None:
        console.print(f"wrote {html}")


def print_comparison(cmp: ClassComparison, wide: bool) -> None:
    """One table per class (80 columns), then each row's binding constraint."""
    for cls in cmp.classes:
        rows = cmp.of(cls)
        win = cmp.winner(cls)
        load = f" at {rows[0].qps:g} req/s" if rows and rows[0].qps else ""
        t = Table(title=f"{cmp.model}: {cls}{load}")
        cols = ["device", "devices", "$/Mtok", "kWh/Mtok", "tok/s/user"]
        if wide:
            cols += ["deployment", "capex $/Mtok", "rental $/Mtok", "TTFT p99", "TPOT p99",
                     "binding constraint"]  # fmt: skip
        left = ("device", "deployment", "binding constraint")
        for c in cols:
            t.add_column(c, justify="left" if c in left else "right")
        front = {r.device for r in cmp.pareto(cls)}
        for r in rows:
            mark = (" *" if win is not None and r is win else "") + (
                " ●" if r.device in front else ""
            )
            if not r.meets_slo:
                cells = [r.device + mark, "-", "-", "-", "-"]
            else:
                cells = [r.device + mark, str(r.devices), _usd(r.usd_per_million_output_tokens),
                         _num(r.kwh_per_million_output_tokens, "{:,.1f}"),
                         _num(r.tokens_per_s_per_user, "{:,.1f}")]  # fmt: skip
            if wide:
                cells += [r.deployment or "-", _usd(r.capex_usd_per_million_output_tokens),
                          _usd(r.rental_usd_per_million_output_tokens), _ms(r.ttft_p99_s),
                          _ms(r.tpot_p99_s), r.binding_constraint]  # fmt: skip
            t.add_row(*cells)
        console.print(t)
        if not wide:
            for r in rows:
                console.print(f"  {r.device}: {r.binding_constraint}", overflow="fold")
    console.print(
        "[dim]* cheapest meeting the SLOs  ● on the Pareto front (tok/s per user vs $/Mtok)  "
        "$/Mtok: rental where known, else capex; '-': no price[/]"
    )


def explain_serve_cmd(
    model: Annotated[str, typer.Option(help="model name (workloads/models) or HF config.json")],
    device: Annotated[str, typer.Option(help="device name (devices/*.yaml)")],
    traffic: Annotated[str, typer.Option(help="workload class (chat, ...) or traffic YAML")],
    qps: Annotated[float | None, typer.Option(help="requests/s (default: the class's)")] = None,
    price: Annotated[str | None, typer.Option(help="'30000 USD' or '2.99 USD/h'")] = None,
    hours: Annotated[str | None, typer.Option(help="amortisation period, e.g. '4 years'")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Why the cheapest deployment meeting a workload class's SLOs won: the search of
    `hwsim size --traffic`, then what-ifs around the winner (one replica fewer or more, the
    other KV-cache dtype, bf16 weights, disaggregated or not), each re-simulated.

    Example: hwsim explain serve --model llama-3.1-8b --device h100-sxm --traffic chat --qps 8
    """
    from hwsim.report.explain_serve import explain_serve

    def note(text: str) -> None:
        if not json_out and err_console.is_terminal:
            err_console.print(f"[dim]{text}[/]")

    e = explain_serve(model, device, traffic, qps=qps, price=price, hours=hours, on_step=note)
    if json_out:
        print_json(e.to_dict())
        return
    for s in e.sentences[:2]:
        console.print(s, highlight=False, soft_wrap=True)
    t = Table(title="what-ifs, each re-simulated")
    for c in ("what-if", "devices", "meets", "$/Mtok", "TTFT p99", "TPOT p99"):
        t.add_column(c, justify="left" if c == "what-if" else "right", overflow="fold")
    rows = [("the winner", e.winner)] + [(w.title, w.outcome) for w in e.whatifs]
    for title, o in rows:
        m = o.result.metrics
        usd = _usd(o.usd_per_mtok) if o.meets else "-"  # a stopped run's partial rate is no cost
        t.add_row(title, str(o.plan.devices), "yes" if o.meets else "no", usd,
                  _ms(m.ttft_s.p99), _ms(m.tpot_s.p99))  # fmt: skip
    console.print(t)
    for s in e.sentences[2:]:
        console.print(f"• {s}", highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    """``hwsim explain serve`` joins the explain group."""
    from hwsim.cli.explain import explain_app

    explain_app.command("serve")(explain_serve_cmd)
