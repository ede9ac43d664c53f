"""Where a model lives on a rack of LPUs: which chip of which node holds which layers, and a
batch-1 token walking the pipeline stages one after another (the bubble: each stage is busy
``1/pp`` of the time)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hwsim.plan.model_step import memory_per_device, stage_layers, stage_weight_bytes
from hwsim.sim.placement import Mark, Panel, Placement, View, us
from hwsim.spec.fit import human_bytes

if TYPE_CHECKING:
    from hwsim.plan.layout import Layout
    from hwsim.plan.model_step import StepSpec
    from hwsim.sim.lpu import LpuMapper
    from hwsim.spec.model import ModelConfig

#: Stages drawn on the timeline (a 400-chip deployment has up to 80; the rest add nothing).
TIMELINE_STAGES = 64


@dataclass(frozen=True)
class ChipSlot:
    """One chip of an LPU deployment: its node, pipeline stage, TP rank and contents."""

    chip: int
    node: int
    stage: int
    tp_rank: int
    dp_rank: int
    layers: tuple[int, int]  #: [first, last) decoder layers of its stage
    weight_bytes: float
    kv_bytes: float


def place_chips(
    model: ModelConfig, layout: Layout, spec: StepSpec, node_chips: int = 8
) -> list[ChipSlot]:
    """Which chip holds what: stages in order over consecutive chips, the ``tp·dp`` chips of a
    stage side by side (a TP group inside one node whenever ``tp ≤ node_chips``)."""
    _, kv = memory_per_device(model, layout, spec)
    out: list[ChipSlot] = []
    chip = 0
    for stage in range(layout.pp):
        lo, hi = stage_layers(model.layers, layout.pp, stage)
        w = stage_weight_bytes(model, layout, spec, stage)
        kv_stage = kv * (hi - lo) / max(1, math.ceil(model.layers / layout.pp))
        for dp in range(layout.dp):
            for tp in range(layout.tp):
                out.append(ChipSlot(chip, chip // node_chips, stage, tp, dp, (lo, hi), w, kv_stage))
                chip += 1
    return out


def lpu_placement(
    mapper: LpuMapper, model: ModelConfig, layout: Layout, spec: StepSpec, stage_time_s: float
) -> Placement:
    """The chips by node and stage, and one batch-1 token's walk through the stages."""
    node = int(mapper.links.domain)
    slots = place_chips(model, layout, spec, node)
    pp = layout.pp
    summary = {
        "kind": mapper.kind,
        "chips": len(slots),
        "nodes": slots[-1].node + 1 if slots else 0,
        "chips_per_node": node,
        "stages": pp,
        "layers_per_stage": slots[0].layers[1] - slots[0].layers[0] if slots else 0,
    }
    chips = tuple(
        Mark(
            x=s.chip % node,
            y=s.node,
            value=s.stage,
            hover=(
                f"chip {s.chip} (node {s.node})<br>stage {s.stage}, tp rank {s.tp_rank}<br>"
                f"layers {s.layers[0]}-{s.layers[1] - 1}<br>weights {human_bytes(s.weight_bytes)}, "
                f"KV {human_bytes(s.kv_bytes)}"
            ),
        )
        for s in slots
    )
    shown = min(pp, TIMELINE_STAGES)
    walk = tuple(
        Mark(
            y=f"stage {i}",
            length=stage_time_s * 1e6,
            base=i * stage_time_s * 1e6,
            series="stage busy",
            hover=f"stage {i}: {us(stage_time_s)}",
        )
        for i in range(shown)
    )
    view = View(
        title="LPU chips and the batch-1 pipeline",
        text=(
            "Every chip holds its share of weights and KV cache in SRAM; consecutive chips "
            "form pipeline stages. At batch 1 a token visits the stages one after another, "
            "so each stage works a fraction 1/pp of the time: the pipeline bubble."
        ),
        heading=f"{model.name} on {len(slots)} LPU chips ({layout})",
        panels=(
            Panel(
                "points",
                f"{len(slots)} chips: colour = pipeline stage (layers), nodes of {node}",
                chips,
                x_title="chip in node",
                y_title="node",
                y_reversed=True,
                colour_title="stage",
            ),
            Panel(
                "bars",
                f"batch 1: one token visits the {pp} stages in turn; each is busy 1/{pp} of the "
                "time",
                walk,
                x_title="time in one token (us)",
                y_reversed=True,
            ),
        ),
        height=820,
    )
    return Placement(mapper.kind, summary, (view,))
