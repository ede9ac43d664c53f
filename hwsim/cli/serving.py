"""``hwsim serve``: request streams on a deployment, continuously batched, with latency
percentiles, throughput, goodput and (``--find-max-qps``) the highest rate that meets the SLOs.
See ``docs/serving.md``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from hwsim.cli.common import console, print_json
from hwsim.serve.request import STEP_DEFAULTS
from hwsim.spec.errors import SpecError

if TYPE_CHECKING:
    from hwsim.serve.serving import ServeResult

err_console = Console(stderr=True)
#: Requests when neither --requests nor --duration is given.
DEFAULT_REQUESTS = 1000


def serve_cmd(
    model: Annotated[str, typer.Option(help="model name (workloads/models) or HF config.json")],
    device: Annotated[str, typer.Option(help="device name (devices/*.yaml) or YAML path")],
    traffic: Annotated[
        str, typer.Option(help="built-in profile (sharegpt, …), traffic YAML, or .csv/.jsonl trace")
    ],
    devices: Annotated[str, typer.Option(help="devices per replica, or 'auto'")] = "auto",
    layout: Annotated[str | None, typer.Option(help="one replica: tp=..,pp=..,ep=..,dp=..")] = None,
    replicas: Annotated[int, typer.Option(help="replicas behind the router")] = 1,
    dtype: Annotated[
        str,
        typer.Option(help="weights: bf16 | fp8 (also fp16, int8)"),
    ] = STEP_DEFAULTS["dtype"],
    kv_dtype: Annotated[
        str,
        typer.Option("--kv-dtype", help="KV cache: bf16 | fp8"),
    ] = STEP_DEFAULTS["kv_dtype"],
    qps: Annotated[float | None, typer.Option(help="Poisson arrivals at this rate, req/s")] = None,
    offline: Annotated[bool, typer.Option("--offline", help="every request at t = 0")] = False,
    concurrency: Annotated[int | None, typer.Option(help="closed loop of C users")] = None,
    think: Annotated[float | None, typer.Option(help="closed loop: think time, s")] = None,
    requests: Annotated[int | None, typer.Option(help="requests to send")] = None,
    duration: Annotated[float | None, typer.Option(help="send requests for this long, s")] = None,
    scheduler: Annotated[str, typer.Option(help="chunked | prefill-first")] = "chunked",
    max_batch: Annotated[int, typer.Option(help="sequences in flight per replica")] = 256,
    token_budget: Annotated[int, typer.Option(help="tokens per iteration")] = 8192,
    router: Annotated[str, typer.Option(help="round-robin | least-outstanding | least-kv")] = (
        "least-outstanding"
    ),
    disaggregate: Annotated[
        str | None, typer.Option(help="prefill=N,decode=M replicas (DistServe/Splitwise style)")
    ] = None,
    slo: Annotated[str | None, typer.Option(help="e.g. ttft_p99=2s,tpot_p99=200ms")] = None,
    find_max_qps: Annotated[
        bool, typer.Option("--find-max-qps", help="bisect the highest Poisson rate meeting --slo")
    ] = False,
    mtp: Annotated[
        int,
        typer.Option(help="MTP/speculative draft tokens per step"),
    ] = STEP_DEFAULTS["mtp"],
    mtp_acceptance: Annotated[
        float,
        typer.Option("--mtp-acceptance"),
    ] = STEP_DEFAULTS["mtp_acceptance"],
    seed: Annotated[int, typer.Option(help="random seed of the traffic")] = 0,
    context_overflow: Annotated[
        str, typer.Option(help="requests longer than the model's context: clip | refuse")
    ] = "clip",
    step_cache: Annotated[
        Path | None, typer.Option(help="folder of cached step-time models")
    ] = None,
    max_requests: Annotated[
        int, typer.Option(help="refuse traces or streams with more requests than this")
    ] = 2_000_000,
    trace: Annotated[Path | None, typer.Option("--trace", help="write a Perfetto JSON")] = None,
    html: Annotated[Path | None, typer.Option("--html", help="write plotly charts")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Simulate serving a request stream: continuous batching, paged KV cache, chunked prefill,
    replicas behind a router or disaggregated prefill/decode, on any device kind.

    Example: hwsim serve --model llama-3.1-70b --device h100-sxm --layout tp=8 --traffic sharegpt
    --qps 8 --requests 2000
    """
    import time

    from hwsim.serve.metrics import parse_slo
    from hwsim.serve.serving import (
        ServeRequest,
        parse_disaggregate,
        simulate_serving,
    )
    from hwsim.serve.serving import (
        find_max_qps as search,
    )
    from hwsim.serve.steptime import default_cache_dir

    if requests is None and duration is None:
        requests = DEFAULT_REQUESTS
    req = ServeRequest(
        model=model, device=device, traffic=traffic, devices=_devices(devices), layout=layout,
        replicas=replicas, dtype=dtype, kv_dtype=kv_dtype, mtp=mtp,
        mtp_acceptance=mtp_acceptance, qps=qps, offline=offline, concurrency=concurrency,
        think_s=think, requests=requests, duration_s=duration, scheduler=scheduler,
        max_batch=max_batch, token_budget=token_budget, router=router,
        disaggregate=parse_disaggregate(disaggregate) if disaggregate else None,
        slo=parse_slo(slo) if slo else None, seed=seed, context_overflow=context_overflow,
        step_cache=step_cache or default_cache_dir(), max_requests=max_requests,
    )  # fmt: skip
    t0 = time.perf_counter()
    status = err_console.status("simulating…") if sys.stderr.isatty() else None
    if status is not None:
        status.start()
    try:
        if find_max_qps:
            found = search(req, progress=lambda m: _say(status, m))
            if found.result is None:
                tried = ", ".join(f"{q:.3g}" for q, _ in found.tried)
                raise SpecError(
                    f"no rate meets the SLOs on this deployment (tried {tried} req/s); add "
                    "replicas or devices, or relax --slo",
                    key="--find-max-qps",
                )
            result = found.result
        else:
            result = simulate_serving(req)
    finally:
        if status is not None:
            status.stop()
    result_wall = time.perf_counter() - t0
    if trace is not None:
        _write(trace, json.dumps(_trace(result)))
    if html is not None:
        _html(html, result)
    data = result.to_dict() | {"wall_s": result_wall}
    if json_out:
        print_json(data)
        return
    _print(result, result_wall)


def _devices(text: str) -> int | str:
    if text == "auto":
        return text
    if not text.isdigit() or int(text) < 1:
        raise SpecError(f"expected a positive integer or 'auto', got {text!r}", key="--devices")
    return int(text)


def _say(status: Any, message: str) -> None:
    if status is not None:
        status.update(message)


def _trace(r: ServeResult) -> dict[str, Any]:
    from hwsim.report.serving_figures import serving_trace

    return serving_trace(r)


def _html(path: Path, r: ServeResult) -> None:
    from hwsim.report.page import write_page
    from hwsim.report.serving_figures import serving_sections

    try:
        write_page(path, f"hwsim serve: {r.model} on {r.device}", r.load, serving_sections(r))
    except OSError as err:
        raise SpecError(f"cannot write the HTML page: {err}", file=str(path)) from None


def _write(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as err:
        raise SpecError(f"cannot write the trace: {err}", file=str(path)) from None


def _print(r: ServeResult, wall_s: float) -> None:
    m = r.metrics
    t = Table(title=f"{r.model} on {r.devices} × {r.device}: {r.load}")
    t.add_column("metric")
    for c in ("p50", "p90", "p99", "mean"):
        t.add_column(c, justify="right")
    for name, st, scale, unit in (
        ("TTFT", m.ttft_s, 1.0, "s"), ("TPOT", m.tpot_s, 1e3, "ms"),
        ("end to end", m.e2e_s, 1.0, "s"), ("queueing", m.queue_s, 1.0, "s"),
    ):  # fmt: skip
        t.add_row(
            f"{name} ({unit})",
            *(f"{getattr(st, c) * scale:.3g}" for c in ("p50", "p90", "p99", "mean")),
        )
    console.print(t)
    if r.max_qps is not None:
        console.print(f"highest rate meeting the SLOs: [bold]{r.max_qps:.3g} req/s[/]")
    console.print(
        f"output {m.output_tokens_per_s:,.0f} tok/s, total {m.total_tokens_per_s:,.0f} tok/s, "
        f"{m.requests_per_s:.2f} req/s, goodput {m.goodput_requests_per_s:.2f} req/s"
    )
    console.print(
        f"{m.completed} completed, {m.rejected} refused, {m.preempted} preemptions; "
        f"{r.replicas} replica(s) × {r.layout}; KV pool {r.kv_blocks_per_replica:,} blocks "
        f"per replica"
    )
    for b in r.busy:
        console.print(
            f"[dim]{b['replica']}: decode {b['decode']:.0%}, mixed {b['mixed']:.0%}, "
            f"prefill {b['prefill']:.0%}, idle {b['idle']:.0%}[/]"
        )
    slo = ", ".join(f"{k} {'met' if v else 'missed'}" for k, v in m.slo_met.items())
    if slo:
        console.print(f"SLOs: {slo}")
    for n in r.notes:
        console.print(f"[dim]note: {n}[/]")
    console.print(f"[dim]{wall_s:.2f} s wall, {r.step_points} step-time grid values[/]")


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_cmd)
