"""Tile sizes of the attention plan: the on-chip footprint of one CTA and the block-size rule
(split from :mod:`hwsim.plan.attention`, which re-exports both; bytes, tokens)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hwsim.spec.errors import SpecError

if TYPE_CHECKING:
    from hwsim.plan.attention import AttentionShape


def footprint_bytes(shape: AttentionShape, outer: int, inner: int, stages: int, bwd: bool) -> int:
    """On-chip bytes of one CTA. Forward (outer = Br): Q tile resident + ``stages`` buffers of
    K and V tiles. Backward (outer = Bc): K and V tiles resident + ``stages`` buffers of Q and
    dO tiles and their LSE/D rows + the P and dS tiles FA2 stages through shared memory."""
    e, dq, dv = shape.elem_bytes, shape.head_dim, shape.dv
    if not bwd:  # a shared latent (MLA) holds V inside the K buffer
        return outer * dq * e + stages * inner * (dq + (0 if shape.kv_shared else dv)) * e
    return outer * (dq + dv) * e + stages * inner * ((dq + dv) * e + 8) + 2 * inner * outer * e


def _round16(n: int) -> int:
    return max(16, -(-n // 16) * 16)


def choose_blocks(
    shape: AttentionShape,
    budget_bytes: float,
    stages: int = 2,
    bwd: bool = False,
    max_outer: int = 128,
    max_inner: int = 256,
) -> tuple[int, int]:
    """(outer, inner) block sizes: forward (Br, Bc), backward (Bc, Br).

    Rule (like FA2/FA3's hand-picked tables, derived instead of looked up): the outer tile is
    reused across the whole inner loop, so it gets priority: the largest of 128/64/32/16 whose
    footprint still fits with a 16-wide inner tile. The inner block then takes the rest: the
    largest multiple of 16 up to ``max_inner`` that fits. Both are clamped to the padded problem
    size (a decode query of 1 row still occupies a 16-row MMA tile). With 228 KiB (H100) and
    fp16 this gives 128×80 at d=256 (FA3 uses 128×80), 128×192 at d=128 (FA3: 128×128-176) and
    128×256 at d=64. Monotone: more SRAM never gives a smaller tile."""
    if stages < 1:
        raise SpecError(f"expected stages >= 1, got {stages}", key="stages")
    outer_len, inner_len = (
        (shape.seqlen_kv, shape.seqlen_q) if bwd else (shape.seqlen_q, shape.seqlen_kv)
    )
    for outer in (o for o in (128, 64, 32, 16) if o <= max_outer):
        if footprint_bytes(shape, outer, 16, stages, bwd) <= budget_bytes:
            break
    else:
        need = footprint_bytes(shape, 16, 16, stages, bwd)
        raise SpecError(
            f"on-chip budget {budget_bytes:.0f} B is too small for a 16×16 attention tile "
            f"(needs {need} B at head_dim {shape.head_dim}/{shape.dv}, {stages} stages)"
        )
    inner = 16
    while inner + 16 <= max_inner and footprint_bytes(shape, outer, inner + 16, stages, bwd) <= (
        budget_bytes
    ):
        inner += 16
    return min(outer, _round16(outer_len)), min(inner, _round16(inner_len))
