"""``hwsim gemm`` and ``hwsim op``: one GEMM or one memory-bound operator simulated on a GPU."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from hwsim.cli.common import console, print_json
from hwsim.plan.streaming import OPS
from hwsim.spec.device import DTYPES
from hwsim.spec.errors import SpecError
from hwsim.spec.units import Dim, format_quantity

if TYPE_CHECKING:
    from hwsim.sim.engine import TraceEvent
    from hwsim.sim.trust import Trust

DeviceOpt = Annotated[
    str, typer.Option("--device", "-d", help="device name (file stem) or path to a YAML file")
]
DtypeOpt = Annotated[str, typer.Option(help=f"element type: {', '.join(DTYPES)}")]
TraceOpt = Annotated[
    Path | None,
    typer.Option("--trace", help="write a Chrome/Perfetto trace (JSON) of the waves here"),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="machine-readable output")]


def write_trace(path: Path, events: tuple[TraceEvent, ...], title: str) -> None:
    """Chrome trace-event JSON (open in ui.perfetto.dev or chrome://tracing); times in us."""
    tracks = sorted({e.track for e in events})
    tid = {t: i for i, t in enumerate(tracks)}
    out: list[dict[str, Any]] = [
        {"name": "thread_name", "ph": "M", "pid": 0, "tid": tid[t], "args": {"name": t}}
        for t in tracks
    ]
    out += [
        {
            "name": e.name,
            "ph": "X",
            "pid": 0,
            "tid": tid[e.track],
            "ts": e.start_s * 1e6,
            "dur": (e.end_s - e.start_s) * 1e6,
            "args": e.args,
        }
        for e in events
    ]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"traceEvents": out, "otherData": {"title": title}}))
    except OSError as err:
        raise SpecError(f"cannot write the trace: {err}", file=str(path)) from None


def _t(s: float) -> str:
    return format_quantity(s, Dim.TIME)


def _b(x: float) -> str:
    return format_quantity(x, Dim.BYTES)


def gemm_cmd(
    device: DeviceOpt,
    m: Annotated[int, typer.Option("--m", help="rows of A and C")],
    n: Annotated[int, typer.Option("--n", help="columns of B and C")],
    k: Annotated[int, typer.Option("--k", help="inner dimension")],
    dtype: DtypeOpt = "fp16",
    trace: TraceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Simulate one GEMM, C (m x n) = A (m x k) @ B (k x n), on a GPU: tiles, waves, bytes.

    time_s is what a framework call measures (host launch + kernel); kernel_s is the kernel
    alone (what a CUDA graph replays).

    Example: hwsim gemm --device a100-sxm-80gb --m 1024 --n 12288 --k 12288 --dtype fp16 --json
    """
    from hwsim.sim.gpu_gemm import simulate_gemm

    r = simulate_gemm(device, m, n, k, dtype, trace=trace is not None)
    if trace is not None:
        write_trace(trace, r.trace, f"gemm {m}x{n}x{k} {dtype} on {r.device}")
    if json_out:
        d = r.to_dict()
        d["trace_file"] = str(trace) if trace else None
        print_json(d)
        return
    p = r.plan
    t = Table(title=f"GEMM {m}x{n}x{k} {dtype} on {r.device} (profile {r.profile})")
    t.add_column("quantity")
    t.add_column("value", justify="right")
    band = f" {r.trust.band()}" if r.trust else ""
    rows = [
        ("time (call)", _t(r.time_s) + band),
        ("kernel", _t(r.kernel_s) + band),
        ("roofline", _t(r.roofline_s)),
        ("TFLOP/s", f"{r.tflops:.1f}{band}"),
        ("bound (kernel / call)", f"{r.bound} / {r.call_bound}"),
        ("compute utilization", f"{r.utilization['compute']:.1%}"),
        ("HBM utilization", f"{r.utilization['hbm']:.1%}"),
        ("HBM bytes", _b(r.bytes["hbm"])),
        ("L2 bytes", _b(r.bytes["l2"])),
        ("tile (bm x bn x bk)", "x".join(str(v) for v in p["tile"])),
        ("split-K / swizzle", f"{p['split_k']} / {p['swizzle']}"),
        ("CTAs / waves", f"{p['ctas']} / {p['waves']} ({p['wave_efficiency']:.0%} full)"),
        ("events", str(r.events)),
    ]
    if r.trust is not None:
        rows.append(("expected error", _trust_text(r.trust)))
    for name, v in rows:
        t.add_row(name, v)
    console.print(t)
    if r.calibration is not None:
        console.print(f"calibration: {r.calibration.summary}")
    if trace is not None:
        console.print(f"wrote {trace}")


def _trust_text(trust: Trust) -> str:
    cal = "calibrated" if trust.calibrated else "not calibrated"
    return f"{trust.band()} ({cal}; {trust.basis})"


def op_cmd(
    op: Annotated[str, typer.Argument(help=f"operator: {', '.join(OPS)}")],
    device: DeviceOpt,
    m: Annotated[int, typer.Option("--m", help="rows (elementwise ops: elements if no --n)")],
    n: Annotated[int | None, typer.Option("--n", help="row length (required for row ops)")] = None,
    dtype: DtypeOpt = "fp16",
    trace: TraceOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Simulate one memory-bound operator (softmax, layernorm, rmsnorm, gelu, swiglu, add) as a
    streaming kernel: bytes per level, achievable HBM bandwidth, launch and per-CTA costs.

    Example: hwsim op softmax --device a100-sxm-80gb --m 4096 --n 4096 --dtype fp16 --json
    """
    from hwsim.sim.streaming import simulate_op
    from hwsim.sim.trust import elementwise_class, trust_for

    r = simulate_op(device, op, m, n, dtype, trace=trace is not None)
    trust = trust_for(elementwise_class(op), r.arch)
    if trace is not None:
        write_trace(trace, r.trace, f"{op} {m}x{n} {dtype} on {r.device}")
    if json_out:
        d = r.to_dict()
        d.update(trust.to_dict())
        d["trace_file"] = str(trace) if trace else None
        print_json(d)
        return
    shape = f"{m}x{n}" if n is not None else f"{m}"
    t = Table(title=f"{op} {shape} {dtype} on {r.device} (profile {r.profile})")
    t.add_column("quantity")
    t.add_column("value", justify="right")
    rows = [
        ("time (call)", f"{_t(r.time_s)} {trust.band()}"),
        ("kernel", _t(r.kernel_s)),
        ("roofline", _t(r.roofline_s)),
        ("Gelem/s", f"{r.gelems_per_s:.2f}"),
        ("bound (kernel / call)", f"{r.bound} / {r.call_bound}"),
        ("HBM utilization", f"{r.utilization['hbm']:.1%}"),
        ("HBM bytes", _b(r.bytes["hbm"])),
        ("CTAs / waves", f"{r.plan['ctas']} / {r.plan['waves']}"),
        ("row on chip / reads", f"{r.plan['fits_on_chip']} / {r.plan['reads']}"),
        ("events", str(r.events)),
        ("expected error", _trust_text(trust)),
    ]
    for name, v in rows:
        t.add_row(name, v)
    console.print(t)
    if r.calibration is not None:
        console.print(f"calibration: {r.calibration.summary}")
    if trace is not None:
        console.print(f"wrote {trace}")


def register(app: typer.Typer) -> None:
    app.command("gemm")(gemm_cmd)
    app.command("op")(op_cmd)
