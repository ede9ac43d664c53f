"""``hwsim attention``: time one attention problem on a GPU (tile plan on the fluid engine)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from hwsim.cli.common import console, print_json
from hwsim.sim.kernel_profiles import KERNELS
from hwsim.spec.errors import SpecError
from hwsim.spec.units import Dim, format_quantity

if TYPE_CHECKING:
    from hwsim.sim.gpu_attention import AttentionSimResult

PASSES = ("fwd", "bwd", "fwd+bwd")


def _write(path: Path, text: str, what: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as err:
        raise SpecError(f"cannot write the {what}: {err}", file=str(path)) from None


def write_trace_file(path: Path, res: AttentionSimResult) -> None:
    """Perfetto / Chrome trace of a traced result (see :mod:`hwsim.sim.trace`)."""
    from hwsim.sim.trace import chrome_trace

    tr = res.trace
    if tr is None:
        raise SpecError("the result holds no trace; simulate with trace=True")
    data = chrome_trace(
        tr.spans,
        tr.rate_log,
        tr.link_names,
        metadata={
            "title": f"attention {res.kernel} on {res.device}",
            "traced_sms": list(tr.traced_sms),
            "time_s": res.time_s,
        },
    )
    _write(path, json.dumps(data), "trace")


def attention_cmd(
    device: Annotated[str, typer.Option("--device", "-d", help="device name or YAML path")],
    batch: Annotated[int, typer.Option(help="batch size")] = 1,
    heads: Annotated[int, typer.Option(help="query heads")] = 16,
    seqlen: Annotated[int, typer.Option(help="query length (tokens)")] = 4096,
    head_dim: Annotated[int, typer.Option("--head-dim", help="head dim of Q and K")] = 128,
    kv_heads: Annotated[
        int | None, typer.Option("--kv-heads", help="KV heads (GQA/MQA; default: heads)")
    ] = None,
    seqlen_kv: Annotated[
        int | None, typer.Option("--seqlen-kv", help="key/value length (default: seqlen)")
    ] = None,
    head_dim_v: Annotated[
        int | None, typer.Option("--head-dim-v", help="head dim of V (default: head-dim)")
    ] = None,
    causal: Annotated[bool, typer.Option("--causal", help="causal mask")] = False,
    dtype: Annotated[str, typer.Option(help="bf16, fp16, fp8 or fp32")] = "fp16",
    kernel: Annotated[str, typer.Option(help=f"kernel profile: {', '.join(KERNELS)}")] = "fa3",
    pass_: Annotated[str, typer.Option("--pass", help="fwd, bwd or fwd+bwd")] = "fwd",
    detail: Annotated[
        str, typer.Option(help="cta (analytic inner loop) or tile (every tile step)")
    ] = "cta",
    trace: Annotated[
        Path | None, typer.Option("--trace", help="write a Perfetto trace (JSON) here")
    ] = None,
    html: Annotated[
        Path | None, typer.Option("--html", help="write plotly figures (HTML) here")
    ] = None,
    trace_sms: Annotated[int, typer.Option("--trace-sms", help="SMs kept in traces")] = 8,
    json_out: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Simulate FlashAttention-style attention on a GPU: CTAs and waves over the SMs, K/V reuse
    in L2, HBM and L2 shared as fluid bandwidth, softmax on the special-function units.

    tflops uses FlashAttention's FLOP convention (forward 4·b·s²·h·d, halved when causal;
    backward 2.5x, fwd+bwd 3.5x).

    Example: hwsim attention --device h100-sxm --batch 4 --heads 16 --seqlen 4096 --causal --json
    """
    from hwsim.plan.attention import AttentionShape
    from hwsim.sim.gpu_attention import simulate_attention
    from hwsim.spec.load import load_device

    if pass_ not in PASSES:
        raise SpecError(f"expected one of {PASSES}, got {pass_!r}", key="--pass")
    shape = AttentionShape(
        batch=batch,
        heads=heads,
        kv_heads=kv_heads if kv_heads is not None else heads,
        seqlen_q=seqlen,
        seqlen_kv=seqlen_kv if seqlen_kv is not None else seqlen,
        head_dim=head_dim,
        head_dim_v=head_dim_v,
        causal=causal,
        dtype=dtype,
        pass_=pass_,
    )
    dev = load_device(device)
    want_trace = trace is not None or html is not None
    if dev.kind != "gpu":
        # wafer-scale, dataflow and LPU devices: their mapper, same result fields (issue 6)
        from hwsim.sim.spatial_attention import simulate_attention_spatial

        if want_trace:
            raise SpecError(f"--trace/--html draw GPU waves; {dev.kind} has none", key="device")
        res: Any = simulate_attention_spatial(dev, shape, device_name=device)
    else:
        res = simulate_attention(
            dev,
            shape,
            kernel,
            detail=detail,
            trace=want_trace,
            trace_sms=trace_sms,
            device_name=device,
        )
    if trace is not None:
        write_trace_file(trace, res)
    if html is not None:
        from hwsim.report.attention_figures import attention_html

        _write(html, attention_html(res, dev), "HTML report")
    if json_out:
        d = res.to_dict()
        d["trace_file"] = str(trace) if trace else None
        d["html_file"] = str(html) if html else None
        print_json(d)
        return
    _table(res)
    for path in (trace, html):
        if path is not None:
            console.print(f"wrote {path}")


def _table(res: AttentionSimResult) -> None:
    s = res.shape
    mask = " causal" if s.causal else ""
    t = Table(
        title=f"attention {res.kernel} {s.pass_}{mask} b{s.batch} h{s.heads}/{s.kv_heads} "
        f"s{s.seqlen_q}/{s.seqlen_kv} d{s.head_dim}/{s.dv} {s.dtype} on {res.device}"
    )
    t.add_column("quantity")
    t.add_column("value", justify="right")
    band = f" {res.trust.band()}" if res.trust else ""
    rows = [
        ("time", format_quantity(res.time_s, Dim.TIME) + band),
        ("TFLOP/s (FA convention)", f"{res.tflops:.1f}{band}"),
        ("roofline time", format_quantity(res.roofline_time_s, Dim.TIME)),
        ("bound", res.bound),
    ]
    if res.trust is not None:
        cal = "calibrated" if res.trust.calibrated else "not calibrated"
        rows.append(("expected error", f"{res.trust.band()} ({cal}; {res.trust.basis})"))
    if res.matrix_path is not None:
        mp = res.matrix_path
        rows.append(("matrix path", f"{mp.path}: {mp.peak_flops / 1e12:.0f} TFLOP/s ({mp.source})"))
    rows += [(f"bytes {k}", format_quantity(v, Dim.BYTES)) for k, v in res.bytes.items()]
    rows += [(f"utilization {k}", f"{v:.1%}") for k, v in res.utilization.items()]
    rows += [
        (
            f"kernel {k.name}",
            f"{format_quantity(k.time_s, Dim.TIME)}, {k.ctas} CTAs, {k.waves:.2f} waves",
        )
        for k in res.kernels
    ]
    p = res.plan
    rows += [
        ("tiles (Q x KV)", f"{p['block_q']} x {p['block_kv']}"),
        ("events / wall", f"{res.events} / {res.wall_s:.3f} s"),
    ]
    for name, v in rows:
        t.add_row(name, v)
    console.print(t)
    for n in res.notes:
        console.print(f"[yellow]note:[/] {n}")


def register(app: typer.Typer) -> None:
    app.command("attention")(attention_cmd)
