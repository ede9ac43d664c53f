"""``hwsim train``: one training step of a model on a cluster (time, breakdown, MFU, memory),
the fastest layout that fits (``--search``), the fewest GPUs for a deadline (``--target-days``)
and what-ifs (``--whatif``); ``docs/training.md``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from hwsim.cli.common import Wide, console, narrow_table, print_json, short_layout
from hwsim.spec.errors import SpecError

if TYPE_CHECKING:
    from hwsim.train.request import TrainRequest
    from hwsim.train.result import TrainResult


Opt = typer.Option
Model = Annotated[str, Opt(help="model name (workloads/models), YAML or config.json")]
Gpus = Annotated[int, Opt(help="GPUs in the job")]
Seqlen = Annotated[int, Opt(help="tokens per sequence")]
GlobalBatch = Annotated[int, Opt(help="sequences per optimizer step")]
DeviceOpt = Annotated[str | None, Opt("--device", help="device name or YAML (default: cluster's)")]
ClusterOpt = Annotated[str | None, Opt("--cluster", help="cluster name or YAML (devices/clusters)")]
LayoutOpt = Annotated[
    str | None, Opt("--layout", help="tp=..,pp=..,dp=..,ep=..,cp=.. (default: dp over every GPU)")
]
Vpp = Annotated[int | None, Opt("--vpp", help="virtual stages per GPU (interleaved 1F1B)")]
Zero = Annotated[int, Opt(help="ZeRO stage 0-3 (3 = FSDP)")]
Recompute = Annotated[str, Opt(help="none | selective | full")]
Schedule = Annotated[str, Opt(help="gpipe | 1f1b | interleaved | zb | dualpipe")]
MicroBatch = Annotated[int, Opt(help="sequences per micro-batch")]
DType = Annotated[str, Opt(help="bf16 | fp8 (FP8 linears)")]
RoutingOpt = Annotated[str, Opt("--routing", help="MoE: deepep | uniform | zipf:S | load:n1,n2,..")]
NodeLimit = Annotated[
    int | None, Opt("--node-limit", help="most nodes a token reaches (0: any; default: model's)")
]
Sp = Annotated[bool, Opt("--sp/--no-sp", help="sequence parallelism with TP")]
TpOverlap = Annotated[bool, Opt("--tp-overlap/--no-tp-overlap", help="TP comm under GEMMs")]
DpOverlap = Annotated[
    bool, Opt("--dp-overlap/--no-dp-overlap", help="gradient reduction under the backward")
]
PpSplit = Annotated[str, Opt(help="exact | balanced (layers that pp·vpp does not divide)")]
Tokens = Annotated[str | None, Opt("--tokens", help="tokens to train (15T, 2e12)")]
Price = Annotated[float | None, Opt("--price", help="USD per GPU-hour, for --tokens")]
Search = Annotated[bool, Opt("--search", help="find the fastest layout that fits")]
TargetDays = Annotated[
    float | None, Opt("--target-days", help="with --tokens: fewest GPUs that train them in D days")
]
ExecutorOpt = Annotated[str, Opt("--executor", help="--search: local | dask")]
Workers = Annotated[int, Opt("--workers", help="--search: worker processes")]
WhatIf = Annotated[
    list[str] | None,
    Opt(
        "--whatif",
        help="PATH=VALUE to compare with the baseline, repeatable: a device path "
        "(memory.hbm.bandwidth=x2), cluster.PATH (cluster.nics.bandwidth=x2), profile.PATH, or "
        "an option (schedule=dualpipe, node_limit=0)",
    ),
]
ExplainOpt = Annotated[
    bool, Opt("--explain", help="what limits the step, with 3+ re-simulated what-ifs")
]
ProfileOpt = Annotated[
    list[str] | None, Opt("--profile", help="training-profile override PATH=VALUE, repeatable")
]
TraceOpt = Annotated[Path | None, Opt("--trace", help="write a Perfetto trace of the step")]
HtmlOpt = Annotated[Path | None, Opt("--html", help="write the step's timeline as HTML")]
Json = Annotated[bool, Opt("--json", help="machine-readable output")]


def _fmt_s(t: float) -> str:
    return f"{t * 1e3:.2f} ms" if t < 1 else f"{t:.3f} s"


def _parse_tokens(text: str | None) -> float | None:
    """``15T``, ``2.5e12``, ``300B`` → tokens."""
    if text is None:
        return None
    t = text.strip().upper()
    mult = {"K": 1e3, "M": 1e6, "B": 1e9, "G": 1e9, "T": 1e12}.get(t[-1:], 1.0)
    try:
        v = float(t[:-1] if mult != 1.0 else t) * mult
    except ValueError:
        raise SpecError(
            f"expected a token count like 15T or 2e12, got {text!r}", key="--tokens"
        ) from None
    if v <= 0:
        raise SpecError(f"expected a positive token count, got {text!r}", key="--tokens")
    return v


def print_result(r: TrainResult) -> None:
    from hwsim.spec.fit import human_bytes

    t = Table(title=f"train step: {r.model} on {r.gpus} × {r.device} ({r.layout}, {r.schedule})")
    t.add_column("metric")
    t.add_column("value", justify="right")
    mem = r.memory
    rows = [
        (
            "batch",
            f"{r.global_batch} × {r.seqlen} tokens, {r.micro_batches} micro-batches of "
            f"{r.micro_batch} per replica",
        ),
        ("step time", _fmt_s(r.step_time_s) + (f" {r.trust.band()}" if r.trust else "")),
        ("tokens/s per GPU", f"{r.tokens_per_s_per_gpu:,.0f}"),
        ("model TFLOP/s per GPU", f"{r.model_tflops_per_gpu:,.1f}"),
        ("MFU / HFU", f"{r.mfu:.1%} / {r.hfu:.1%} of {r.peak_tflops:,.0f} TFLOP/s {r.dtype}"),
        ("pipeline bubble", f"{r.bubble_fraction:.1%}"),
        (
            "memory per GPU",
            f"{human_bytes(mem.total)} of {human_bytes(mem.capacity)} (params "
            f"{human_bytes(mem.params)}, grads {human_bytes(mem.grads)}, optimizer "
            f"{human_bytes(mem.optimizer)}, activations {human_bytes(mem.activations)})",
        ),
        ("GPU-hours per 1T tokens", f"{r.gpu_hours_per_trillion_tokens:,.0f}"),
    ]
    if r.days is not None:
        rows.append(("time to train", f"{r.days:,.1f} days, {r.gpu_hours:,.0f} GPU-hours"))
    if r.cost_usd is not None:
        rows.append(("cost", f"${r.cost_usd:,.0f}"))
    if r.trust is not None:
        cal = "calibrated" if r.trust.calibrated else "not calibrated"
        rows.append(("expected error", f"{r.trust.band()} ({cal}; {r.trust.basis})"))
    for k, v in rows:
        t.add_row(k, v)
    console.print(t)
    b = Table(title="step time by part (busiest pipeline rank)")
    b.add_column("part")
    b.add_column("time", justify="right")
    b.add_column("share", justify="right")
    for part, sec in r.breakdown_s.items():
        b.add_row(part, _fmt_s(sec), f"{sec / r.step_time_s:.1%}")
    console.print(b)
    for n in r.notes:
        console.print(f"[dim]note: {n}[/]")


def _request(kw: dict[str, Any]) -> TrainRequest:
    from hwsim.train.request import TrainRequest

    return TrainRequest(
        model=kw["model"], gpus=kw["gpus"], seqlen=kw["seqlen"], global_batch=kw["global_batch"],
        device=kw["device"], cluster=kw["cluster"], layout=kw["layout"], vpp=kw["vpp"],
        zero=kw["zero"], recompute=kw["recompute"], schedule=kw["schedule"],
        micro_batch=kw["micro_batch"], dtype=kw["dtype"], routing=kw["routing"],
        node_limit=kw["node_limit"], sp=kw["sp"], tp_overlap=kw["tp_overlap"],
        dp_overlap=kw["dp_overlap"], pp_split=kw["pp_split"], tokens=_parse_tokens(kw["tokens"]),
        price=kw["price"], profile=tuple(kw["profile"] or ()),
        timeline=bool(kw["trace"] or kw["html"]),
    )  # fmt: skip


def train_cmd(
    model: Model,
    gpus: Gpus,
    seqlen: Seqlen,
    global_batch: GlobalBatch,
    device: DeviceOpt = None,
    cluster: ClusterOpt = None,
    layout: LayoutOpt = None,
    vpp: Vpp = None,
    zero: Zero = 1,
    recompute: Recompute = "none",
    schedule: Schedule = "1f1b",
    micro_batch: MicroBatch = 1,
    dtype: DType = "bf16",
    routing: RoutingOpt = "uniform",
    node_limit: NodeLimit = None,
    sp: Sp = True,
    tp_overlap: TpOverlap = False,
    dp_overlap: DpOverlap = True,
    pp_split: PpSplit = "exact",
    tokens: Tokens = None,
    price: Price = None,
    search: Search = False,
    target_days: TargetDays = None,
    executor: ExecutorOpt = "local",
    workers: Workers = 1,
    whatif: WhatIf = None,
    explain: ExplainOpt = False,
    profile: ProfileOpt = None,
    trace: TraceOpt = None,
    html: HtmlOpt = None,
    json_out: Json = False,
    wide: Wide = False,
) -> None:
    """One training step under data, tensor, pipeline, context and expert parallelism: step
    time and breakdown, tokens/s and model TFLOP/s per GPU, MFU, memory per GPU, GPU-hours.

    Example: hwsim train --model llama-3.1-70b --cluster dgx-h100 --gpus 64 --layout tp=8,pp=4,dp=2
    --seqlen 8192 --global-batch 64 --recompute selective --json
    """
    kw = dict(locals())
    req = _request(kw)
    if target_days is not None:
        _target(req, target_days, executor, workers, json_out)
        return
    if search:
        _search(req, executor, workers, json_out, wide)
        return
    if whatif:
        _whatif(req, whatif, json_out)
        return
    if explain:
        _explain(req, json_out)
        return
    from hwsim.train.step import simulate_train

    r = simulate_train(req)
    _write_views(r, trace, html)
    if json_out:
        print_json(r.to_dict())
    else:
        print_result(r)


def _write_views(r: TrainResult, trace: Path | None, html: Path | None) -> None:
    from hwsim.report.train_figures import timeline_html, train_trace

    if trace is not None:
        import json

        trace.parent.mkdir(parents=True, exist_ok=True)
        trace.write_text(json.dumps(train_trace(r)), encoding="utf-8")
        console.print(f"[dim]Perfetto trace: {trace}[/]")
    if html is not None:
        html.parent.mkdir(parents=True, exist_ok=True)
        html.write_text(timeline_html(r), encoding="utf-8")
        console.print(f"[dim]timeline: {html}[/]")


def _search(
    req: TrainRequest, executor: str, workers: int, json_out: bool, wide: bool = False
) -> None:
    from hwsim.train.search import search_layouts

    ans = search_layouts(req, executor=executor, workers=workers)
    if json_out:
        print_json(ans.to_dict())
        return
    title = (f"fastest layouts of {ans.model} on {req.gpus} GPUs ({ans.simulated} simulated of "
             f"{ans.candidates} candidates, {ans.pruned_memory} did not fit, {ans.pruned_bound} "
             "pruned by bound)")  # fmt: skip
    # 80 columns: tokens/s per GPU and memory with --wide
    cols = ["layout", "schedule", "mb", "recompute", "zero", "step", "MFU"]
    if wide:
        cols = [*cols[:6], "tok/s/GPU", "MFU", "memory"]
    t = narrow_table(title, cols, text=("layout", "schedule", "recompute"), wide=wide)
    from hwsim.spec.fit import human_bytes

    for r in ans.best[:10]:
        cells = [str(r.layout) if wide else short_layout(str(r.layout)), r.schedule,
                 str(r.micro_batch), r.recompute, str(r.zero), _fmt_s(r.step_time_s)]  # fmt: skip
        if wide:
            cells += [f"{r.tokens_per_s_per_gpu:,.0f}", f"{r.mfu:.1%}", human_bytes(r.memory.total)]
        else:
            cells.append(f"{r.mfu:.1%}")
        t.add_row(*cells)
    console.print(t)
    if ans.best:
        print_result(ans.best[0])


def _target(req: TrainRequest, days: float, executor: str, workers: int, json_out: bool) -> None:
    from hwsim.train.search import fewest_gpus

    ans = fewest_gpus(req, days, executor=executor, workers=workers)
    if json_out:
        print_json(ans.to_dict())
        return
    best = ans.result
    console.print(
        f"{ans.gpus} GPUs train {req.tokens:.3g} tokens in {best.days:,.1f} days "
        f"(target {days:g}) with {best.layout}, {best.schedule}: "
        f"{best.tokens_per_s_per_gpu:,.0f} tokens/s per GPU, MFU {best.mfu:.1%}"
    )
    for n, d in ans.tried:
        console.print(f"[dim]{n} GPUs: {f'{d:.1f} days' if d else 'no layout fits'}[/]")
    print_result(best)


def _whatif(req: TrainRequest, changes: list[str], json_out: bool) -> None:
    from hwsim.train.whatif import train_whatif

    w = train_whatif(req, changes)
    if json_out:
        print_json(w.to_dict())
        return
    t = Table(title=f"what if {', '.join(changes)}: {w.baseline.model} on {req.gpus} GPUs")
    for c in ("metric", "baseline", "what-if", "change"):
        t.add_column(c, justify="left" if c == "metric" else "right")
    for name, d in w.deltas().items():
        good = (d["change"] < 0) == d["lower_is_better"]
        colour = "green" if good and d["change"] else ("red" if d["change"] else "white")
        fmt = _fmt_s if name.endswith("_s") else (lambda v: f"{v:,.4g}")
        t.add_row(name, fmt(d["baseline"]), fmt(d["whatif"]), f"[{colour}]{d['change']:+.1%}[/]")
    console.print(t)
    for line in w.explain():
        console.print(line)


def _explain(req: TrainRequest, json_out: bool) -> None:
    from hwsim.train.explain import explain_train

    e = explain_train(req)
    if json_out:
        print_json(e.to_dict())
        return
    print_result(e.result)
    for line in e.lines():
        console.print(line)


def parse_train_args(args: list[str], prog: str) -> tuple[TrainRequest, dict[str, Any]]:
    """``--model ... --gpus ...`` parsed with ``hwsim train``'s own options and defaults (for
    ``hwsim whatif -- train`` and ``hwsim explain train``): the request and the raw options."""
    import click
    import typer.main

    sub = typer.Typer()
    sub.command("train")(train_cmd)
    try:
        ctx = typer.main.get_command(sub).make_context(prog, list(args))
    except click.UsageError as err:
        raise SpecError(f"train options: {err.format_message()}") from None
    kw = dict(ctx.params)
    return _request(kw), kw


def whatif_train(device: str, args: list[str], changes: list[str], json_out: bool) -> None:
    """``hwsim whatif --device D --set PATH=VALUE -- train ...``: the train what-if with the
    ``--set`` changes on ``D`` (which the step uses unless it names its own --device)."""
    if "--device" not in args:
        args = [*args, "--device", device]
    req, _ = parse_train_args(args, "hwsim whatif ... -- train")
    _whatif(req, changes, json_out)


def explain_train_cmd(ctx: typer.Context) -> None:
    """What limits a training step, with at least three re-simulated what-ifs chosen by it
    (takes `hwsim train`'s options; the same as `hwsim train --explain`).

    Example: hwsim explain train --model deepseek-v3 --cluster h800-deepseek --gpus 2048
    --layout tp=1,pp=16,ep=64,dp=128 --seqlen 4096 --global-batch 15360 --schedule dualpipe
    """
    args = [a for a in ctx.args if a != "--json"]
    req, _ = parse_train_args(args, "hwsim explain train")
    _explain(req, "--json" in ctx.args)


def register(app: typer.Typer) -> None:
    """``hwsim train``, and ``hwsim explain train`` in the explain group."""
    from hwsim.cli.explain import explain_app

    app.command("train")(train_cmd)
    explain_app.command(
        "train", context_settings={"allow_extra_args": True, "ignore_unknown_options": True}
    )(explain_train_cmd)
