"""``hwsim map``: how a model is laid out on a deployment of any device kind, with the capacity
reasoning, the batch-1 (or any batch) decode step it gives, and ``--html`` drawings of where
things live (wafer regions, RDU pipeline stages, LPU chips; one layer's operators elsewhere).
The mapper describes its own placement; this command prints and draws what it says."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from hwsim.cli.common import console, print_json
from hwsim.serve.request import STEP_DEFAULTS


def map_cmd(
    model: Annotated[str, typer.Option(help="model name (workloads/models) or HF config.json")],
    device: Annotated[str, typer.Option(help="cerebras-wse3, sambanova-sn40l, groq-lpu, …")],
    batch: Annotated[int, typer.Option(help="concurrent sequences")] = STEP_DEFAULTS["batch"],
    context: Annotated[int, typer.Option(help="tokens in the KV cache")] = STEP_DEFAULTS["context"],
    dtype: Annotated[
        str,
        typer.Option(help="weights: bf16 | fp8 (also fp16, int8)"),
    ] = STEP_DEFAULTS["dtype"],
    kv_dtype: Annotated[
        str,
        typer.Option("--kv-dtype", help="KV-cache dtype"),
    ] = STEP_DEFAULTS["kv_dtype"],
    layout: Annotated[
        str | None, typer.Option(help="e.g. pp=4 or tp=16; default: the fewest devices")
    ] = STEP_DEFAULTS["layout"],
    html: Annotated[Path | None, typer.Option("--html", help="write the drawings here")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Lay a model out on a deployment: capacity reasoning, placement (wafer regions, fused
    RDU pipeline stages, LPU chips, or one layer's operators) and the decode step.

    Example: hwsim map --model llama-3.1-70b --device groq-lpu --dtype fp8 --html lpu.html
    """
    from hwsim.serve.mapping import map_model
    from hwsim.serve.request import StepRequest
    from hwsim.spec.fit import human_bytes

    req = StepRequest(
        model, device, batch=batch, context=context, dtype=dtype, kv_dtype=kv_dtype, layout=layout
    )
    m = map_model(req)
    r = m.step
    if html is not None:
        from hwsim.report.mapping_figures import write_mapping_page

        write_mapping_page(html, m)
    if json_out:
        print_json(m.to_dict() | {"html_file": str(html) if html else None})
        return
    for line in m.reasoning:
        console.print(f"• {line}")
    t = Table(title=f"{m.model} on {m.layout.devices} × {device} ({m.layout})")
    t.add_column("quantity")
    t.add_column("value", justify="right")
    rows = [
        ("time per token (per user)", f"{r.time_per_token_s * 1e3:.3f} ms"),
        ("tokens/s per user", f"{r.tokens_per_s_per_user:,.1f}"),
        ("tokens/s per device", f"{r.tokens_per_s_total / r.devices:,.2f}"),
        ("memory per device", human_bytes(r.memory_per_device_bytes)),
        ("bound", r.bound),
    ]
    rows += [(k, str(v)) for k, v in m.placement.summary.items() if not isinstance(v, list | dict)]
    for k, v in rows:
        t.add_row(k, v)
    console.print(t)
    if html is not None:
        console.print(f"wrote {html}")


def _value(key: str, v: object) -> str:
    """A placement summary value for people: bytes and seconds in their units."""
    from hwsim.spec.fit import human_bytes

    if isinstance(v, bool) or not isinstance(v, int | float):
        return str(v)
    if key.endswith("_bytes"):
        return human_bytes(v)
    if key.endswith("_s"):
        return f"{v * 1e3:.3f} ms"
    return f"{v:,}" if isinstance(v, int) else f"{v:.3g}"


def register(app: typer.Typer) -> None:
    app.command("map")(map_cmd)
