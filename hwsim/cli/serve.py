"""``hwsim decode``, ``prefill``, ``size``, ``compare`` and ``whatif``: whole-model serving steps
on devices and clusters (the what-if engine, :mod:`hwsim.serve`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from hwsim.cli.common import Wide, console, narrow_table, print_json, short_layout
from hwsim.serve.request import STEP_DEFAULTS
from hwsim.spec.device import DTYPES
from hwsim.spec.errors import SpecError

if TYPE_CHECKING:
    from hwsim.serve.request import StepRequest
    from hwsim.serve.size import SizedCluster
    from hwsim.serve.step import StepResult

Model = Annotated[str, typer.Option(help="model name (workloads/models) or HF config.json")]
Device = Annotated[str, typer.Option(help="device name (devices/*.yaml) or YAML path")]
Devices = Annotated[
    str, typer.Option(help="device count, or 'auto' (fastest from fewest that hold it to a node)")
]
Batch = Annotated[int, typer.Option(help="concurrent sequences in the whole deployment")]
Context = Annotated[int, typer.Option(help="decode: tokens in the KV cache; prefill: prompt")]
DType = Annotated[str, typer.Option(help="weights and GEMMs: bf16 | fp8 (also fp16, int8)")]
KvDType = Annotated[str, typer.Option("--kv-dtype", help="KV-cache dtype")]
LayoutOpt = Annotated[str | None, typer.Option(help="parallel layout, e.g. tp=8,ep=1,pp=1,dp=1")]
Mtp = Annotated[int, typer.Option(help="MTP/speculative draft tokens per step (decode)")]
MtpAcc = Annotated[float, typer.Option("--mtp-acceptance", help="draft acceptance rate")]
Overlap = Annotated[str, typer.Option(help="auto | none | dual (dual micro-batch overlap)")]
Json = Annotated[bool, typer.Option("--json", help="machine-readable output")]
Ops = Annotated[bool, typer.Option("--ops", help="include every op's timing")]


def _dtype(d: str, option: str = "--dtype") -> str:
    """``d`` if it is a known dtype; else a SpecError naming ``option`` (the flag it came from)."""
    if d not in DTYPES:
        raise SpecError(f"{option} {d!r}: expected one of {', '.join(DTYPES)}")
    return d


def _fmt_s(t: float) -> str:
    return f"{t * 1e3:.3f} ms" if t < 1 else f"{t:.3f} s"


def _print_step(r: StepResult) -> None:
    from hwsim.spec.fit import human_bytes

    trust = r.trust  # the step simulation's error bar (hwsim.sim.trust)
    band = f" {trust.band()}"

    t = Table(title=f"{r.phase}: {r.model} on {r.devices} × {r.device} ({r.layout})")
    t.add_column("metric")
    t.add_column("value", justify="right")
    rows: list[tuple[str, str]] = [
        ("batch × context", f"{r.batch} × {r.context}"),
        ("dtype", r.dtype),
    ]
    if r.phase == "decode":
        rows += [
            ("time per token (per user)", _fmt_s(r.time_per_token_s) + band),
            ("tokens/s per user", f"{r.tokens_per_s_per_user:,.1f}{band}"),
            ("tokens/s total", f"{r.tokens_per_s_total:,.1f}"),
            ("tokens/s per device", f"{r.tokens_per_s_total / r.devices:,.1f}"),
            ("accepted tokens per step", f"{r.accepted_tokens_per_step:.3f}"),
        ]
    else:
        rows += [("TTFT", _fmt_s(r.ttft_s) + band), ("tokens/s", f"{r.tokens_per_s_total:,.0f}")]
    rows += [
        ("memory per device", f"{human_bytes(r.memory_per_device_bytes)} of "
         f"{human_bytes(r.capacity_bytes)} (weights {human_bytes(r.weight_bytes_per_device)}, "
         f"KV {human_bytes(r.kv_bytes_per_device)})"),
        ("micro-batches", str(r.micro_batches)),
        ("communication exposed / hidden",
         f"{_fmt_s(r.comm_exposed_s)} / {_fmt_s(r.comm_hidden_s)}"),
        ("bound", r.bound + "  (" + ", ".join(
            f"{k} {v:.0%}" for k, v in r.bound_shares.items()) + ")"),
        ("expected error", f"{trust.band()} ("
         f"{'calibrated' if trust.calibrated else 'not calibrated'}; {trust.basis})"),
    ]  # fmt: skip
    for name, text in rows:
        t.add_row(name, text)
    console.print(t)
    b = Table(title="busy time per step, one device")
    b.add_column("category")
    b.add_column("time", justify="right")
    b.add_column("share of step", justify="right")
    for k, v in r.breakdown_s.items():
        b.add_row(k, _fmt_s(v), f"{v / r.stage_time_s:.0%}" if r.stage_time_s else "")
    console.print(b)
    for n in r.notes:
        console.print(f"[dim]note: {n}[/]")


def _request(phase: str, kw: dict[str, Any]) -> StepRequest:
    """The step request of a ``decode``/``prefill`` command line (its options by name)."""
    from hwsim.serve.request import StepRequest

    fields = {k: v for k, v in kw.items() if k in STEP_DEFAULTS or k in ("model", "device")}
    return StepRequest(phase=phase, **fields)


def _context_warning(model: str, context: int) -> str | None:
    """A warning when ``context`` exceeds the model's maximum position embeddings (the
    simulator times any length; the model was not trained for more), else None."""
    from hwsim.spec.model import load_model_config

    limit = load_model_config(model).max_position
    if limit is None or context <= limit:
        return None
    return (
        f"--context {context:,} exceeds {model}'s maximum position embeddings ({limit:,} "
        "tokens): the model cannot attend that far; the step is timed anyway"
    )


def _step(phase: str, **kw: Any) -> None:
    from hwsim.serve.api import serve_step

    r = serve_step(_request(phase, kw))
    warning = _context_warning(kw["model"], kw["context"])
    if warning:
        typer.echo(f"warning: {warning}", err=True)
    if kw["json_out"]:
        d = r.to_dict(ops=kw["ops"])
        if warning:
            d["warnings"] = [warning]
        print_json(d)
    else:
        _print_step(r)


def decode_cmd(
    model: Model,
    device: Device,
    devices: Devices = STEP_DEFAULTS["devices"],
    batch: Batch = STEP_DEFAULTS["batch"],
    context: Context = STEP_DEFAULTS["context"],
    dtype: DType = STEP_DEFAULTS["dtype"],
    kv_dtype: KvDType = STEP_DEFAULTS["kv_dtype"],
    layout: LayoutOpt = STEP_DEFAULTS["layout"],
    mtp: Mtp = STEP_DEFAULTS["mtp"],
    mtp_acceptance: MtpAcc = STEP_DEFAULTS["mtp_acceptance"],
    overlap: Overlap = STEP_DEFAULTS["overlap"],
    json_out: Json = False,
    ops: Ops = False,
) -> None:
    """One decode step of a whole model on a device or cluster: tokens/s per user and in
    total, time per token, memory per device, breakdown by layer kind, and the bound.

    Example: hwsim decode --model llama-3.1-70b --device h100-sxm --layout tp=8 --batch 1 --json
    """
    _step("decode", **locals())


def prefill_cmd(
    model: Model,
    device: Device,
    devices: Devices = STEP_DEFAULTS["devices"],
    batch: Batch = STEP_DEFAULTS["batch"],
    context: Context = STEP_DEFAULTS["context"],
    dtype: DType = STEP_DEFAULTS["dtype"],
    kv_dtype: KvDType = STEP_DEFAULTS["kv_dtype"],
    layout: LayoutOpt = STEP_DEFAULTS["layout"],
    overlap: Overlap = STEP_DEFAULTS["overlap"],
    json_out: Json = False,
    ops: Ops = False,
) -> None:
    """One prefill step (the prompts of a batch): time to first token and tokens/s.

    Example: hwsim prefill --model deepseek-v3 --device h800 --layout tp=4,dp=8,ep=32 --batch 32
    """
    _step("prefill", **locals())


def _cluster_row(c: SizedCluster, wide: bool = True) -> list[str]:
    """A sized cluster's cells: every column with ``wide``, else deployment (instances × the
    layout's degrees above 1), devices, tok/s per user, power and price (80 columns)."""
    power = f"{c.power_W / 1e3:,.1f} kW"
    price = f"${c.price_usd:,.0f}" if c.price_usd is not None else "-"
    if not wide:
        return [f"{c.instances} × {short_layout(str(c.layout))}", str(c.devices),
                f"{c.tokens_per_s_per_user:,.1f}", power, price]  # fmt: skip
    return [
        str(c.devices),
        f"{c.instances} × {c.layout}",
        str(c.batch_per_instance),
        f"{c.tokens_per_s_per_user:,.1f}",
        f"{c.tokens_per_s_total:,.0f}",
        _fmt_s(c.ttft_s),
        power,
        price,
        c.bound,
    ]


Traffic = Annotated[
    str | None,
    typer.Option(help="workload class (chat, low-latency, batch) or traffic YAML: size for it"),
]
Qps = Annotated[float | None, typer.Option(help="--traffic: requests/s (default: the class's)")]
Price = Annotated[
    str | None, typer.Option(help="'30000 USD' (purchase) or '2.99 USD/h' (rental)")
]
Hours = Annotated[str | None, typer.Option(help="amortisation period, e.g. '4 years', '35064 h'")]
Costs = Annotated[
    Path | None, typer.Option(help="cost file instead of devices/costs/costs.yaml")
]


def size_cmd(
    model: Model,
    device: Device,
    tokens_per_s_per_user: Annotated[
        float | None, typer.Option(help="step SLO: output tokens/s per user")
    ] = None,
    total_tokens_per_s: Annotated[
        float | None, typer.Option(help="step SLO: output tokens/s in total")
    ] = None,
    traffic: Traffic = None,
    qps: Qps = None,
    price: Price = None,
    hours: Hours = None,
    costs: Costs = None,
    wide: Wide = False,
    context: Context = 4096,
    max_ttft: Annotated[float | None, typer.Option(help="SLO: max time to first token, s")] = None,
    dtype: DType = STEP_DEFAULTS["dtype"],
    kv_dtype: KvDType = STEP_DEFAULTS["kv_dtype"],
    mtp: Mtp = STEP_DEFAULTS["mtp"],
    mtp_acceptance: MtpAcc = STEP_DEFAULTS["mtp_acceptance"],
    max_devices_per_instance: Annotated[int, typer.Option(help="largest model replica")] = 512,
    json_out: Json = False,
) -> None:
    """Cheapest deployments of one device type that meet a serving SLO: for a workload class
    at a load (--traffic, --qps: simulated), or for a per-user speed and total throughput
    (steady steps): by devices, by power and by $ where prices are known.

    Example: hwsim size --model llama-3.1-70b --device h200 --traffic chat --qps 10

    Example: hwsim size --model deepseek-v3 --device h200 --tokens-per-s-per-user 50
    --total-tokens-per-s 100000 --max-ttft 1.0
    """
    if traffic is not None:
        from hwsim.cli.classes import size_traffic

        size_traffic(model, device, traffic, qps, price, hours, costs, wide, json_out)
        return
    if tokens_per_s_per_user is None or total_tokens_per_s is None:
        raise SpecError(
            "give --traffic CLASS (and --qps) to size for traffic, or both "
            "--tokens-per-s-per-user and --total-tokens-per-s to size for steady steps"
        )
    from hwsim.serve.size import size_cluster

    ans = size_cluster(
        model, device, tokens_per_s_per_user=tokens_per_s_per_user,
        total_tokens_per_s=total_tokens_per_s, context=context, max_ttft_s=max_ttft,
        dtype=_dtype(dtype), kv_dtype=_dtype(kv_dtype, "--kv-dtype"), mtp=mtp,
        mtp_acceptance=mtp_acceptance,
        max_devices_per_instance=max_devices_per_instance,
    )  # fmt: skip
    if json_out:
        print_json(ans.to_dict())
        return
    if not ans.candidates:
        raise SpecError(
            f"no cluster of {device} up to {max_devices_per_instance} devices per replica meets "
            f"{tokens_per_s_per_user} tokens/s per user for {ans.model}"
        )
    title = f"{ans.model} on {device}: clusters meeting the SLO (best first)"
    if wide:
        cols = ["pick", "devices", "instances × layout", "batch/inst", "tok/s/user",
                "tok/s total", "TTFT", "power", "price", "bound"]  # fmt: skip
        t = narrow_table(title, cols, text=("pick", "instances × layout", "bound"), wide=True)
        best = [("fewest devices", ans.by_devices), ("least power", ans.by_power),
                ("lowest price", ans.by_price)]  # fmt: skip
    else:  # 80 columns: TTFT, batch per instance, total tok/s and the bound with --wide
        cols = ["pick", "deployment", "devices", "tok/s/user", "power", "price"]
        t = narrow_table(title, cols, text=("pick", "deployment"))
        best = [("devices", ans.by_devices), ("power", ans.by_power), ("price", ans.by_price)]
    for label, pick in best:
        if pick is not None:
            t.add_row(label, *_cluster_row(pick, wide))
    t.add_section()
    for cand in ans.candidates[:10]:
        t.add_row("", *_cluster_row(cand, wide))
    console.print(t)
    if not wide:
        console.print("[dim]pick: fewest devices, least power, lowest price; --wide: TTFT, "
                      "batch per instance, total tok/s, bound[/]")  # fmt: skip
    console.print(f"[dim]{ans.evaluated} steps simulated[/]")
    for n in ans.notes:
        console.print(f"[dim]note: {n}[/]")


def compare_cmd(
    model: Model,
    devices: Annotated[str, typer.Option(help="comma-separated device names")],
    traffic: Annotated[
        str | None,
        typer.Option(help="workload classes (chat,low-latency,batch): size each on each device"),
    ] = None,
    qps: Qps = None,
    price: Price = None,
    hours: Hours = None,
    costs: Costs = None,
    wide: Wide = False,
    executor: Annotated[str, typer.Option(help="--traffic: local | dask")] = "local",
    workers: Annotated[int | None, typer.Option(help="--traffic: parallel searches")] = None,
    scheduler: Annotated[
        str | None, typer.Option(help="--traffic: dask scheduler address (tcp://host:8786)")
    ] = None,
    batch: Annotated[str, typer.Option(help="comma-separated batch sizes")] = "1,64",
    context: Context = STEP_DEFAULTS["context"],
    phase: Annotated[str, typer.Option(help="decode | prefill")] = STEP_DEFAULTS["phase"],
    dtype: DType = STEP_DEFAULTS["dtype"],
    count: Annotated[str, typer.Option(help="devices each: node | auto | N")] = "node",
    html: Annotated[Path | None, typer.Option(help="write plotly charts here")] = None,
    json_out: Json = False,
) -> None:
    """The same model on several device types side by side. With --traffic: the cheapest
    deployment of each device type meeting each workload class's SLOs, $ and energy per
    million tokens, what binds it, the Pareto chart with --html. Without: steady steps,
    tokens/s per user vs total, cost and the bound.

    Example: hwsim compare --model llama-3.1-70b --traffic chat,low-latency,batch
    --devices h100-sxm,h200,groq-lpu

    Example: hwsim compare --model llama-3.1-70b --devices h200,mi300x,groq-lpu --batch 1,64
    """
    if traffic is not None:
        from hwsim.cli.classes import compare_traffic

        compare_traffic(model, devices, traffic, qps, price, hours, costs, wide, html, json_out,
                        executor, workers, scheduler)  # fmt: skip
        return
    from hwsim.serve.compare import compare

    try:
        batches = [int(b) for b in batch.split(",") if b.strip()]
    except ValueError:
        raise SpecError(f"--batch {batch!r}: expected integers like 1,64") from None
    if not batches:
        raise SpecError(f"--batch {batch!r}: expected at least one batch size, like 1,64")
    names = [d.strip() for d in devices.split(",") if d.strip()]
    if not names:
        raise SpecError(
            f"--devices {devices!r}: expected at least one device name, like h200,mi300x"
        )
    n: int | str = int(count) if count.isdigit() else count
    cmp = compare(
        model, names, batches, phase=phase,
        context=context, dtype=_dtype(dtype), count=n,
    )  # fmt: skip
    data = cmp.to_dict()
    if html is not None:
        from hwsim.report.page import Section, write_page
        from hwsim.report.serve_figures import compare_sections

        sections: list[Section] = compare_sections(cmp)
        write_page(html, f"hwsim compare: {cmp.model}", "Devices side by side.", sections)
        data["html"] = str(html)
    if json_out:
        print_json(data)
        return
    title = f"{cmp.model} {phase}, context {context}, {dtype}"
    rows: list[dict[str, Any]] = data["rows"]  # type: ignore[assignment]
    if wide:
        cols = ["device", "batch", "devices", "layout", "tok/s/user", "tok/s total",
                "tok/s/device", "tok/J", "$ / (tok/s)", "bound", "Pareto"]  # fmt: skip
        t = narrow_table(title, cols, text=("device", "layout", "bound"), wide=True)
    else:  # 80 columns: the layout, tok/s per device and tok/J with --wide
        cols = ["devices", "batch", "tok/s/user", "tok/s\ntotal", "$ /\n(tok/s)", "bound"]
        t = narrow_table(title, cols, text=("devices", "bound"))
    errors = []
    for row in rows:
        if "error" in row:
            if wide:
                t.add_row(row["device"], str(row["batch"]), "-", row["error"][:60], *[""] * 7)
            else:
                t.add_row(row["device"], str(row["batch"]), *["-"] * 4)
                errors.append(f"{row['device']} at batch {row['batch']}: {row['error']}")
            continue
        usd = row.get("usd_per_million_tokens_per_s")
        cost = f"{usd / 1e6:,.0f}" if usd is not None else "-"
        per_user = f"{row['tokens_per_s_per_user']:,.1f}"
        total = f"{row['tokens_per_s_total']:,.0f}"
        if not wide:
            pareto = " ●" if row["pareto"] else ""
            t.add_row(f"{row['devices']} × {row['device']}{pareto}", str(row["batch"]),
                      per_user, total, cost, row["bound"])  # fmt: skip
            continue
        t.add_row(
            row["device"], str(row["batch"]), str(row["devices"]), row["layout"],
            per_user, total,
            f"{row['tokens_per_s_per_device']:,.1f}", f"{row['tokens_per_joule']:.3f}",
            cost, row["bound"], "●" if row["pareto"] else "",
        )  # fmt: skip
    console.print(t)
    for line in errors:
        console.print(f"[red]{line}[/]")
    if not wide:
        console.print("[dim]● on the Pareto front (tok/s per user vs total); --wide: layout, "
                      "tok/s per device, tok/J[/]")  # fmt: skip
    if html is not None:
        console.print(f"wrote {html}")


def _sub_args(args: list[str]) -> tuple[str, dict[str, Any]]:
    """Parse ``decode|prefill --model ... --batch ...`` after ``--`` with the ``decode`` and
    ``prefill`` commands' own options and defaults (``--device`` is the what-if's)."""
    import click
    import typer.main

    if not args or args[0] not in ("decode", "prefill"):
        raise SpecError(
            "after '--' give the step to compare: decode ..., prefill ... or train ..."
        )
    sub = typer.Typer()
    sub.command(args[0])(decode_cmd if args[0] == "decode" else prefill_cmd)
    cmd = typer.main.get_command(sub)
    rest = list(args[1:])
    if "--device" not in rest:  # the what-if names the device; the step needs one to parse
        rest += ["--device", "-"]
    try:
        ctx = cmd.make_context(f"hwsim whatif ... -- {args[0]}", rest)
    except click.UsageError as err:
        raise SpecError(f"step options: {err.format_message()}") from None
    kw = {k: v for k, v in ctx.params.items() if k not in ("json_out", "ops")}
    kw.pop("device", None)
    return args[0], kw


def _fmt_count(v: float) -> str:
    return f"{v:,.0f}"


def whatif_cmd(
    device: Device,
    step: Annotated[list[str], typer.Argument(help="-- decode|prefill|train and its options")],
    set_: Annotated[
        list[str],
        typer.Option(
            "--set",
            help="PATH=VALUE spec change, repeatable (x2, +20%); profile.PATH=VALUE changes a "
            "wafer/dataflow/LPU mapper parameter (profile.op_latency=x0.5)",
        ),
    ],
    relayout: Annotated[
        bool,
        typer.Option(
            "--relayout",
            help="plan the what-if device's layout on its own (e.g. fewer devices with more "
            "memory) instead of reusing the baseline's",
        ),
    ] = False,
    json_out: Json = False,
) -> None:
    """Change device spec fields on the fly and compare a decode, prefill or training step
    with the baseline (same layout, or its own with --relayout). For train, --set also takes
    cluster.PATH, profile.PATH and train options (schedule=dualpipe), as `train --whatif` does.

    Example: hwsim whatif --device h100-sxm --set hbm.bandwidth=x2 -- decode --model llama-3.1-70b

    Example: hwsim whatif --device h100-sxm --set memory.hbm.bandwidth=x2 -- train --model
    llama-3.1-8b --gpus 8 --layout tp=2,dp=4 --seqlen 4096 --global-batch 32
    """
    from hwsim.serve.whatif import whatif
    from hwsim.spec.fit import human_bytes

    if "--json" in step:  # given after '--' it still means this command's --json
        step = [a for a in step if a != "--json"]
        json_out = True
    if step and step[0] == "train":
        from hwsim.cli.train import whatif_train

        whatif_train(device, step[1:], set_, json_out)
        return
    phase, kw = _sub_args(step)
    w = whatif(_request(phase, {**kw, "device": device}), set_, relayout=relayout)
    if json_out:
        print_json(w.to_dict())
        return
    lay = str(w.baseline.layout)
    if w.modified.layout != w.baseline.layout:
        lay += f" -> {w.modified.layout}"
    t = Table(title=f"what if {device}: {', '.join(set_)} ({phase}, {lay})")
    for c in ("metric", "baseline", "what-if", "change"):
        t.add_column(c, justify="left" if c == "metric" else "right")
    for name, d in w.deltas().items():
        good = (d["change"] < 0) == d["lower_is_better"]
        colour = "green" if good and d["change"] else ("red" if d["change"] else "white")
        fmt = _fmt_s if name.endswith("_s") else (
            human_bytes if name.endswith("bytes") else _fmt_count if name == "devices" else (
                lambda v: f"{v:,.1f}"))  # fmt: skip
        t.add_row(name, fmt(d["baseline"]), fmt(d["whatif"]), f"[{colour}]{d['change']:+.1%}[/]")
    t.add_row("bound", w.baseline.bound, w.modified.bound, "")
    t.add_row("expected error", w.baseline.trust.band(), w.modified.trust.band(), "")
    console.print(t)
    console.print(f"[dim]expected error: {w.baseline.trust.basis}[/]")
    if not w.modified.fits:
        console.print("[red]the what-if device no longer holds the model with this layout[/]")


def capacity_cmd(
    model: Model,
    device: Device,
    batch: Batch = STEP_DEFAULTS["batch"],
    context: Context = STEP_DEFAULTS["context"],
    dtype: DType = STEP_DEFAULTS["dtype"],
    kv_dtype: KvDType = STEP_DEFAULTS["kv_dtype"],
    json_out: Json = False,
) -> None:
    """The fewest devices that hold a model's weights and KV cache, with the reasoning.

    Example: hwsim capacity --model llama-3.1-70b --device groq-lpu --dtype fp8
    """
    from hwsim.plan.model_step import StepSpec
    from hwsim.serve.api import make_target
    from hwsim.serve.capacity import min_devices
    from hwsim.spec.model import load_model_config

    tgt = make_target(device)
    step = StepSpec("decode", batch, context, _dtype(dtype), _dtype(kv_dtype, "--kv-dtype"))
    plan = min_devices(load_model_config(model), tgt.mapper, step, device_name=device)
    if json_out:
        print_json(plan.to_dict())
        return
    for line in plan.reasoning:
        console.print(f"• {line}")
    console.print(
        f"[bold]{plan.devices} × {device}[/] ({plan.layout}); "
        f"lower bound {plan.lower_bound_devices}"
    )


def register(app: typer.Typer) -> None:
    app.command("decode")(decode_cmd)
    app.command("prefill")(prefill_cmd)
    app.command("size")(size_cmd)
    app.command("compare")(compare_cmd)
    app.command("whatif")(whatif_cmd)
    app.command("capacity")(capacity_cmd)
