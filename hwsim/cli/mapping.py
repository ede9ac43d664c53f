"""``hwsim map``: how a model is laid out on a wafer-scale, dataflow or LPU deployment, with
the capacity reasoning, the batch-1 (or any batch) decode step it gives, and ``--html``
drawings of the wafer regions, the RDU pipeline stages or the LPU chips."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from hwsim.cli.common import console, print_json
from hwsim.spec.device import DTYPES
from hwsim.spec.errors import SpecError

if TYPE_CHECKING:
    from hwsim.plan.model_step import StepSpec
    from hwsim.serve.layout import Layout
    from hwsim.sim.wafer import WaferMapper
    from hwsim.spec.model import ModelConfig


def _wafer_layout(model: ModelConfig, mapper: WaferMapper, spec: StepSpec) -> Layout:
    """Wafers pipeline whole layers (Cerebras, Hot Chips 2024): the fewest stages that fit."""
    from hwsim.plan.model_step import memory_per_device
    from hwsim.serve.layout import Layout

    for pp in range(1, model.layers + 1):
        w, kv = memory_per_device(model, Layout(pp=pp), spec)
        if w + kv <= mapper.capacity_bytes:
            return Layout(pp=pp)
    raise SpecError(f"{model.name} does not fit {model.layers} wafers, one layer each")


def placement(model: ModelConfig, mapper: Any, layout: Layout, spec: StepSpec) -> dict[str, Any]:
    """A JSON-able summary of where things live, per device kind."""
    from hwsim.plan.model_step import memory_per_device
    from hwsim.sim.dataflow import DataflowMapper, pipeline_stages, weight_tier_bytes
    from hwsim.sim.lpu import LpuMapper, place_chips
    from hwsim.sim.wafer import WaferMapper

    if isinstance(mapper, WaferMapper):
        from hwsim.report.mapping_figures import Mapping, stage_mapper, wafer_regions

        mapper = stage_mapper(Mapping(model, layout, spec), mapper)
        items = wafer_regions(Mapping(model, layout, spec), mapper, 0)
        regions = mapper.place_regions([(label, b, t) for label, _, b, t in items], fit=True)
        used = sum(r.cores for r in regions)
        return {
            "kind": "wafer_scale",
            "wafers": layout.devices,
            "stage0_regions": len(items),
            "stage0_rectangles": len(regions),
            "stage0_cores_used": used,
            "cores_per_wafer": mapper.cores,
            "weight_fill": mapper.fill,
            "stage0_drawn_fill": sum(r.bytes for r in regions) / max(1, used) / mapper.core_bytes,
            "regions": [
                {"op": r.name, "row": r.row, "col": r.col, "rows": r.rows, "cols": r.cols}
                for r in regions[:64]
            ],
        }
    if isinstance(mapper, DataflowMapper):
        from hwsim.plan.model_step import build_step

        graph = build_step(model, layout, spec)
        stages = pipeline_stages(list(graph.stages[0][0].ops), mapper)
        w, kv = memory_per_device(model, layout, spec)
        return {
            "kind": "dataflow",
            "sockets": layout.devices,
            "fused_section": graph.stages[0][0].name,
            "stages": [
                {"op": s.op, "pcus": s.pcus, "pmus": s.pmus, "time_s": s.time_s} for s in stages
            ],
            "weights_per_socket_by_tier": weight_tier_bytes(w, mapper),
            "kv_per_socket_bytes": kv,
        }
    if isinstance(mapper, LpuMapper):
        node = int(mapper.links.domain)
        slots = place_chips(model, layout, spec, node)
        return {
            "kind": "lpu",
            "chips": len(slots),
            "nodes": slots[-1].node + 1 if slots else 0,
            "chips_per_node": node,
            "stages": layout.pp,
            "layers_per_stage": slots[0].layers[1] - slots[0].layers[0] if slots else 0,
        }
    return {"kind": mapper.kind}


def map_cmd(
    model: Annotated[str, typer.Option(help="model name (workloads/models) or HF config.json")],
    device: Annotated[str, typer.Option(help="cerebras-wse3, sambanova-sn40l, groq-lpu, …")],
    batch: Annotated[int, typer.Option(help="concurrent sequences")] = 1,
    context: Annotated[int, typer.Option(help="tokens in the KV cache")] = 2048,
    dtype: Annotated[str, typer.Option(help="weights: bf16 | fp8 (also fp16, int8)")] = "bf16",
    kv_dtype: Annotated[str, typer.Option("--kv-dtype", help="KV-cache dtype")] = "bf16",
    layout: Annotated[
        str | None, typer.Option(help="e.g. pp=4 or tp=16; default: the fewest devices")
    ] = None,
    html: Annotated[Path | None, typer.Option("--html", help="write the drawings here")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Lay a model out on a wafer-scale, dataflow or LPU deployment: capacity reasoning,
    placement (wafer regions, fused RDU pipeline stages, LPU chips) and the decode step.

    Example: hwsim map --model llama-3.1-70b --device groq-lpu --dtype fp8 --html lpu.html
    """
    from hwsim.plan.model_step import StepSpec
    from hwsim.serve.api import make_target
    from hwsim.serve.capacity import min_devices
    from hwsim.serve.layout import check_layout, parse_layout
    from hwsim.serve.step import simulate_step
    from hwsim.sim.wafer import WaferMapper
    from hwsim.spec.fit import human_bytes
    from hwsim.spec.model import load_model_config

    for d in (dtype, kv_dtype):
        if d not in DTYPES:
            raise SpecError(f"unknown dtype {d!r}; expected one of {', '.join(DTYPES)}")
    cfg = load_model_config(model)
    tgt = make_target(device)
    mapper = tgt.mapper
    spec = StepSpec("decode", batch, context, dtype, kv_dtype)
    plan = min_devices(
        cfg, mapper, batch=batch, context=context, dtype=dtype, kv_dtype=kv_dtype,
        device_name=device,
    )  # fmt: skip
    reasoning = list(plan.reasoning)
    if layout:
        lay = parse_layout(layout)
        check_layout(cfg, lay)
    elif isinstance(mapper, WaferMapper):
        lay = _wafer_layout(cfg, mapper, spec)
        reasoning.append(f"wafers pipeline whole layers over SwarmX: {lay} ({lay.devices} wafers)")
    else:
        lay = plan.layout
    r = simulate_step(cfg, mapper, lay, spec, device_name=device)
    where = placement(cfg, mapper, lay, spec)
    if html is not None:
        _write_html(html, cfg, mapper, lay, spec, r, reasoning)
    if json_out:
        print_json(
            {
                "model": cfg.name,
                "device": device,
                "kind": mapper.kind,
                "layout": lay.to_dict(),
                "layout_str": str(lay),
                "devices": lay.devices,
                "capacity": plan.to_dict() | {"reasoning": reasoning},
                "placement": where,
                "decode": r.to_dict(),
                "html_file": str(html) if html else None,
            }
        )
        return
    for line in reasoning:
        console.print(f"• {line}")
    t = Table(title=f"{cfg.name} on {lay.devices} × {device} ({lay})")
    t.add_column("quantity")
    t.add_column("value", justify="right")
    rows = [
        ("time per token (per user)", f"{r.time_per_token_s * 1e3:.3f} ms"),
        ("tokens/s per user", f"{r.tokens_per_s_per_user:,.1f}"),
        ("tokens/s per device", f"{r.tokens_per_s_total / r.devices:,.2f}"),
        ("memory per device", human_bytes(r.memory_per_device_bytes)),
        ("bound", r.bound),
    ]
    rows += [(k, str(v)) for k, v in where.items() if not isinstance(v, list | dict)]
    for k, v in rows:
        t.add_row(k, v)
    console.print(t)
    if html is not None:
        console.print(f"wrote {html}")


def _write_html(
    path: Path,
    cfg: ModelConfig,
    mapper: Any,
    lay: Layout,
    spec: StepSpec,
    r: Any,
    reasoning: list[str],
) -> None:
    from hwsim.report.mapping_figures import (
        Mapping,
        lpu_figure,
        mapping_html,
        rdu_figure,
        wafer_figure,
    )
    from hwsim.sim.dataflow import DataflowMapper
    from hwsim.sim.lpu import LpuMapper
    from hwsim.sim.wafer import WaferMapper

    m = Mapping(cfg, lay, spec)
    if isinstance(mapper, WaferMapper):
        figs = [
            (
                "Regions on the wafer",
                "Each rectangle is the block of cores that holds one operator's weights (or its "
                "KV cache) in their own SRAM. A token's activations enter at the first region "
                "and hop core to core across the mesh to the next: the wafer is a pipeline of "
                "layers. Hover for the cores, bytes and time of each region.",
                wafer_figure(m, mapper),
            )
        ]
    elif isinstance(mapper, DataflowMapper):
        figs = [
            (
                "RDU pipeline stages and memory tiers",
                "A decoder layer is compiled into one spatial pipeline: every operator gets its "
                "own PCUs (compute) and PMUs (SRAM) and data streams between them on chip, so "
                "nothing goes back to HBM between operators. Units are shared out in proportion "
                "to each operator's time. Below: weights and KV of this layout live in HBM; DDR "
                "is the capacity tier where inactive models and experts wait.",
                rdu_figure(m, mapper),
            )
        ]
    elif isinstance(mapper, LpuMapper):
        figs = [
            (
                "LPU chips and the batch-1 pipeline",
                "Every chip holds its share of weights and KV cache in SRAM; consecutive chips "
                "form pipeline stages. At batch 1 a token visits the stages one after another, "
                "so each stage works a fraction 1/pp of the time: the pipeline bubble.",
                lpu_figure(m, r.stage_time_s, int(mapper.links.domain)),
            )
        ]
    else:
        raise SpecError(f"hwsim map draws wafer, dataflow and LPU devices, not '{mapper.kind}'")
    table = [[line.split(":")[0], ":".join(line.split(":")[1:]).strip()] for line in reasoning]
    table += [
        ["time per token", f"{r.time_per_token_s * 1e3:.3f} ms"],
        ["tokens/s per user", f"{r.tokens_per_s_per_user:,.1f}"],
    ]
    text = mapping_html(
        f"{cfg.name} on {lay.devices} × {mapper.device.name}",
        f"Layout {lay}, batch {spec.batch}, context {spec.context}, {spec.dtype} weights.",
        figs,
        table,
    )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as err:
        raise SpecError(f"cannot write the HTML page: {err}", file=str(path)) from None


def register(app: typer.Typer) -> None:
    app.command("map")(map_cmd)
