"""Where a model lives on a wafer: the operators of one pipeline stage as rectangular regions of
the WSE mesh (:meth:`hwsim.sim.wafer.WaferMapper.place_regions`), cores to scale, from the same
mapper (packed for what the wafer holds) that times them, so drawing and numbers agree."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hwsim.plan.layout import Layout
from hwsim.plan.model_step import build_step, memory_per_device
from hwsim.plan.workload import Attention, Gemm, op_name
from hwsim.sim.placement import Mark, Panel, Placement, View, us
from hwsim.spec.errors import SpecError
from hwsim.spec.fit import human_bytes

if TYPE_CHECKING:
    from hwsim.plan.model_step import StepSpec
    from hwsim.sim.wafer import WaferMapper
    from hwsim.spec.model import ModelConfig


def stage_mapper(
    mapper: WaferMapper, model: ModelConfig, layout: Layout, spec: StepSpec
) -> WaferMapper:
    """The wafer mapper as the step simulator uses it for this deployment: packed for what one
    wafer holds (:meth:`WaferMapper.for_resident`)."""
    w, kv = memory_per_device(model, layout, spec)
    return mapper.for_resident(w + kv)


def stage_regions(
    mapper: WaferMapper,
    model: ModelConfig,
    layout: Layout,
    spec: StepSpec,
    stage: int = 0,
    max_layers: int | None = None,
) -> list[tuple[str, str, float, float]]:
    """``(label, category, bytes, time_s)`` of every region-holding op of ``stage``, in order
    (``mapper`` already packed by :func:`stage_mapper`)."""
    graph = build_step(model, layout, spec)
    out: list[tuple[str, str, float, float]] = []
    layer = 0
    for lg in graph.stages[stage]:
        for _ in range(lg.repeat):
            if max_layers is not None and layer >= max_layers:
                return out
            for so in lg.ops:
                if not isinstance(so.op, Gemm | Attention):
                    continue
                b = mapper.region_bytes(so.op)
                if b > 0:
                    t = mapper.time(so.op).time_s
                    out.append((f"{lg.name} {layer}: {op_name(so.op)}", so.category, b, t))
            layer += 1
    return out


def pipeline_layout(model: ModelConfig, mapper: WaferMapper, spec: StepSpec) -> Layout:
    """Wafers pipeline whole layers (Cerebras, Hot Chips 2024): the fewest stages that fit."""
    for pp in range(1, model.layers + 1):
        w, kv = memory_per_device(model, Layout(pp=pp), spec)
        if w + kv <= mapper.capacity_bytes:
            return Layout(pp=pp)
    raise SpecError(f"{model.name} does not fit {model.layers} wafers, one layer each")


def wafer_placement(
    mapper: WaferMapper, model: ModelConfig, layout: Layout, spec: StepSpec, stage: int = 0
) -> Placement:
    """Stage ``stage``'s regions on one wafer: the JSON summary and the mesh drawing."""
    packed = stage_mapper(mapper, model, layout, spec)
    items = stage_regions(packed, model, layout, spec, stage)
    regions = packed.place_regions([(label, b, t) for label, _, b, t in items], fit=True)
    used = sum(r.cores for r in regions)
    fill = sum(r.bytes for r in regions) / max(1, used) / packed.core_bytes
    summary = {
        "kind": mapper.kind,
        "wafers": layout.devices,
        "stage0_regions": len(items),
        "stage0_rectangles": len(regions),
        "stage0_cores_used": used,
        "cores_per_wafer": packed.cores,
        "weight_fill": packed.fill,
        "stage0_drawn_fill": fill,
        "regions": [
            {"op": r.name, "row": r.row, "col": r.col, "rows": r.rows, "cols": r.cols}
            for r in regions[:64]
        ],
    }
    category = {label: cat for label, cat, _, _ in items}
    # a region that wraps to the next band comes as two rectangles
    marks = tuple(
        Mark(
            x=r.col,
            x1=r.col + r.cols,
            y=r.row,
            y1=r.row + r.rows,
            category=category[r.name],
            hover=(
                f"{r.name}<br>{r.rows}×{r.cols} = {r.cores:,} cores<br>"
                f"{human_bytes(r.bytes)} resident<br>{us(r.time_s)} per token"
            ),
        )
        for r in regions
    )
    view = View(
        title="Regions on the wafer",
        text=(
            "Each rectangle is the block of cores that holds one operator's weights (or its "
            "KV cache) in their own SRAM. A token's activations enter at the first region "
            "and hop core to core across the mesh to the next: the wafer is a pipeline of "
            "layers. Hover for the cores, bytes and time of each region."
        ),
        heading=(
            f"{model.name} stage {stage} on one {mapper.device.name}: {len(items)} regions, "
            f"{used:,} of {packed.cores:,} cores ({used / packed.cores:.0%}), each core's SRAM "
            f"{fill:.0%} full"
        ),
        panels=(
            Panel(
                "rects",
                "",
                marks,
                x_title="mesh column",
                y_title="mesh row",
                x_range=(0, packed.mesh_cols),
                y_range=(0, packed.mesh_rows),
                y_reversed=True,
                equal_aspect=True,
            ),
        ),
    )
    return Placement(mapper.kind, summary, (view,))
