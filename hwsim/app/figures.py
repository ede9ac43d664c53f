"""The one figure the report has no counterpart for: an attention tile plan in one SM's shared
memory (Q tile, the K/V stage buffers, what is left of the budget), with the grid of CTAs and
waves over the SMs in the title. Every number is the simulated plan's
(:attr:`~hwsim.sim.gpu_attention.AttentionSimResult.plan`); the split of a forward tile into
Q, K and V follows :func:`hwsim.plan.attention_blocks.footprint_bytes`."""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go

from hwsim.spec.device import Device
from hwsim.spec.units import Dim, format_quantity

_COLOURS = {"Q tile": "#1f77b4", "K buffers": "#ff7f0e", "V buffers": "#2ca02c",
            "tiles": "#9467bd", "free": "#dddddd"}  # fmt: skip


def tile_parts(res: Any) -> dict[str, float]:
    """Bytes of one CTA's shared memory by use (forward: Q, K and V stages; else one block)."""
    plan, s = res.plan, res.shape
    footprint, budget = float(plan["footprint_bytes"]), float(plan["budget_bytes"])
    e, stages = s.elem_bytes, int(plan.get("stages", 1))
    bq, bkv = int(plan["block_q"]), int(plan["block_kv"])
    if plan.get("kernel") == "flash" and s.pass_ == "fwd":
        parts = {
            "Q tile": bq * s.head_dim * e,
            "K buffers": stages * bkv * s.head_dim * e,
            "V buffers": 0.0 if s.kv_shared else stages * bkv * s.dv * e,
        }
        if abs(sum(parts.values()) - footprint) > 1:  # another layout: show it whole
            parts = {"tiles": footprint}
    else:
        parts = {"tiles": footprint}
    parts["free"] = max(0.0, budget - footprint)
    return parts


def tile_figure(res: Any, device: Device) -> go.Figure:
    """One CTA's shared memory as a stacked bar, and the CTA grid in the title."""
    fig = go.Figure()
    for name, b in tile_parts(res).items():
        fig.add_trace(
            go.Bar(
                x=[b / 1024],
                y=["one CTA"],
                orientation="h",
                name=f"{name} {format_quantity(b, Dim.BYTES)}",
                marker={"color": _COLOURS[name]},
                hovertemplate=f"{name}: %{{x:.1f}} KiB<extra></extra>",
            )
        )
    plan = res.plan
    k = res.kernels[0] if res.kernels else None
    grid = (
        f"; {k.ctas} CTAs in {k.waves:.2f} waves over {device.compute.units_count} SMs" if k else ""
    )
    fig.update_layout(
        barmode="stack",
        height=230,
        template="plotly_white",
        title=(
            f"Tile plan: {plan['block_q']}×{plan['block_kv']} blocks, {plan.get('stages', 1)} "
            f"K/V stages in {format_quantity(float(plan['budget_bytes']), Dim.BYTES)} of shared "
            f"memory{grid}"
        ),
        xaxis_title="KiB of shared memory per CTA",
        margin={"t": 60, "b": 40},
    )
    return fig
