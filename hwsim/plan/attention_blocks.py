"""Tile sizes of the attention plan: the on-chip footprint of one CTA and the block-size rule
(split from :mod:`hwsim.plan.attention`, which re-exports both; bytes, tokens)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from hwsim.spec.errors import SpecError

if TYPE_CHECKING:
    from hwsim.plan.attention import AttentionShape


#: Memory-level names that denote a register file (never a tile's scratchpad).
_REGISTER_NAMES = {"reg", "regs", "registers", "rf", "register_file"}


def onchip_budget_bytes(device_or_sram_bytes: Any) -> tuple[float, dict[str, str], int | None]:
    """(bytes per compute unit, level-name map, units) from a Device or a plain byte budget.

    For a Device: the innermost ``per_unit`` level that is not a register file (``smem`` on
    GPUs); if none, the innermost on-chip level divided by the number of units."""
    if isinstance(device_or_sram_bytes, int | float | np.integer | np.floating):
        if device_or_sram_bytes <= 0:
            raise SpecError(f"expected a positive byte budget, got {device_or_sram_bytes!r}")
        return float(device_or_sram_bytes), {"global": "global", "onchip": "onchip"}, None
    dev = device_or_sram_bytes
    units = int(dev.compute.units_count)
    names = {"global": dev.main_memory.name}
    for m in dev.memory:
        if m.scope == "per_unit" and m.name.lower() not in _REGISTER_NAMES:
            names["onchip"] = m.name
            return float(m.capacity_bytes), names, units
    on = [m for m in dev.on_chip_levels if m.name.lower() not in _REGISTER_NAMES]
    if not on:
        raise SpecError(f"{dev.name} has no on-chip memory level to hold attention tiles")
    names["onchip"] = on[0].name
    return dev.level_capacity_bytes(on[0].name) / units, names, units


def footprint_bytes(shape: AttentionShape, outer: int, inner: int, stages: int, bwd: bool) -> int:
    """On-chip bytes of one CTA. Forward (outer = Br): Q tile resident + ``stages`` buffers of
    K and V tiles. Backward (outer = Bc): K and V tiles resident + ``stages`` buffers of Q and
    dO tiles and their LSE/D rows + the P and dS tiles FA2 stages through shared memory."""
    e, dq, dv = shape.elem_bytes, shape.head_dim, shape.dv
    if not bwd:  # a shared latent (MLA) holds V inside the K buffer
        return outer * dq * e + stages * inner * (dq + (0 if shape.kv_shared else dv)) * e
    return outer * (dq + dv) * e + stages * inner * ((dq + dv) * e + 8) + 2 * inner * outer * e


def accumulator_bytes(shape: AttentionShape, outer: int, inner: int, bwd: bool) -> int:
    """FP32 accumulator bytes one CTA keeps in registers across its inner loop. Forward: the O
    tile (outer × dv) and the S tile of the current step (outer × inner). Backward (outer =
    KV rows): the dK and dV tiles (outer × (d + dv)) and the S and dP tiles of the step."""
    if not bwd:
        return 4 * outer * (shape.dv + inner)
    return 4 * outer * (shape.head_dim + shape.dv) + 2 * 4 * outer * inner


def _round16(n: int) -> int:
    return max(16, -(-n // 16) * 16)


def choose_blocks(
    shape: AttentionShape,
    budget_bytes: float,
    stages: int = 2,
    bwd: bool = False,
    max_outer: int = 128,
    max_inner: int = 256,
    acc_budget_bytes: float | None = None,
) -> tuple[int, int]:
    """(outer, inner) block sizes: forward (Br, Bc), backward (Bc, Br).

    Rule (like FA2/FA3's hand-picked tables, derived instead of looked up): the outer tile is
    reused across the whole inner loop, so it gets priority: the largest of 128/64/32/16 whose
    footprint still fits with a 16-wide inner tile. The inner block then takes the rest: the
    largest multiple of 16 up to ``max_inner`` that fits. Both are clamped to the padded problem
    size (a decode query of 1 row still occupies a 16-row MMA tile). With 228 KiB (H100) and
    fp16 this gives 128×80 at d=256 (FA3 uses 128×80), 128×192 at d=128 (FA3: 128×128-176) and
    128×256 at d=64. Monotone: more SRAM never gives a smaller tile.

    ``acc_budget_bytes`` (None: unlimited) bounds the FP32 accumulators the CTA's threads hold
    in registers (:func:`accumulator_bytes`): the register file limits the tile too, which is
    why FA2 (4 warps at d ≤ 128) uses 128×64 at d=128 where SMEM alone would allow 128×192."""

    outer_len, inner_len = (
        (shape.seqlen_kv, shape.seqlen_q) if bwd else (shape.seqlen_q, shape.seqlen_kv)
    )

    def fits(outer: int, inner: int) -> bool:
        if footprint_bytes(shape, outer, inner, stages, bwd) > budget_bytes:
            return False
        # registers hold the rows the tile really has (a decode Q tile is 16 rows, not 128)
        rows = min(outer, _round16(outer_len))
        return acc_budget_bytes is None or (
            accumulator_bytes(shape, rows, inner, bwd) <= acc_budget_bytes
        )

    if stages < 1:
        raise SpecError(f"expected stages >= 1, got {stages}", key="stages")
    for outer in (o for o in (128, 64, 32, 16) if o <= max_outer):
        if fits(outer, 16):
            break
    else:
        need = footprint_bytes(shape, 16, 16, stages, bwd)
        acc = accumulator_bytes(shape, 16, 16, bwd)
        raise SpecError(
            f"on-chip budget {budget_bytes:.0f} B (registers for accumulators: "
            f"{'unlimited' if acc_budget_bytes is None else f'{acc_budget_bytes:.0f} B'}) is "
            f"too small for a 16×16 attention tile (needs {need} B of SMEM and {acc} B of "
            f"accumulators at head_dim {shape.head_dim}/{shape.dv}, {stages} stages)"
        )
    inner = 16
    while inner + 16 <= max_inner and fits(outer, inner + 16):
        inner += 16
    return min(outer, _round16(outer_len)), min(inner, _round16(inner_len))
