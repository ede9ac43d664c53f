"""How big an attention plan is, by arithmetic: its CTA count and the host memory of its
per-CTA arrays, known before :func:`hwsim.plan.attention_kernels.build_kernels` allocates them
(O(1) in the shape), so a plan of billions of CTAs is refused in microseconds
(``--max-memory``; simulators also check their event budget with the count)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hwsim.plan.attention_kernels import ROLE_SPECS
from hwsim.spec.limits import check_memory, format_count

if TYPE_CHECKING:
    from hwsim.plan.attention import AttentionShape


#: Host memory of one CTA of a plan (bytes): its index, range and cost arrays. tracemalloc
#: peaks of plan_attention measured 219-360 B per CTA over 33k-5M CTAs.
BYTES_PER_CTA = 400


def _launches(
    s: AttentionShape,
    kernel: str,
    fwd_blocks: tuple[int, int] | None,
    bwd_blocks: tuple[int, int] | None,
    splits: int,
    pack: int,
) -> list[tuple[str, int, int, int]]:
    """(role, outer block, grid splits, pack) of each launch :func:`build_kernels` makes."""
    out: list[tuple[str, int, int, int]] = []
    if fwd_blocks is not None:
        br = fwd_blocks[0]
        if kernel == "flash" or (kernel == "split_kv" and splits == 1):
            out.append(("fwd", br, 1, pack))
        elif kernel == "split_kv":
            out += [("fwd_split", br, splits, pack), ("combine", br, 1, 1)]
        else:
            out += [(r, br, 1, 1) for r in ("naive_qk", "naive_softmax", "naive_pv")]
    if bwd_blocks is not None:
        br, bc = bwd_blocks
        out += [("bwd_pre", br, 1, 1), ("bwd", bc, 1, 1), ("bwd_post", br, 1, 1)]
        if s.group > 1:
            out.append(("bwd_post_kv", bc, 1, 1))
    return out


def cta_count(
    s: AttentionShape,
    kernel: str,
    fwd_blocks: tuple[int, int] | None,
    bwd_blocks: tuple[int, int] | None,
    splits: int,
    pack: int = 1,
) -> int:
    """CTAs of all launches of a plan, by arithmetic (O(1) in the shape): heads × batch ×
    splits × outer blocks per launch, exactly what :func:`build_kernels` allocates."""
    total = 0
    for role, b_out, grid_splits, pk in _launches(s, kernel, fwd_blocks, bwd_blocks, splits, pack):
        spec = ROLE_SPECS[role]
        n_heads = s.kv_heads if spec.heads_are_kv or pk > 1 else s.heads
        outer_len = s.seqlen_q if spec.outer == "q" else s.seqlen_kv
        total += n_heads * s.batch * grid_splits * -(-outer_len // b_out)
    return total


def fewer_ctas_hint(n_cta: int) -> str:
    """What to change when a plan has too many CTAs."""
    return (
        f"the plan has {format_count(n_cta)} CTAs (heads × batch × query blocks); use a "
        "smaller batch, fewer heads or a shorter sequence"
    )


def check_plan_memory(n_cta: int) -> None:
    """Refuse (``--max-memory``) a plan whose per-CTA arrays would not fit."""
    check_memory(n_cta * BYTES_PER_CTA, cheaper_mode_hint=fewer_ctas_hint(n_cta))


def plan_cta_count(
    shape: AttentionShape,
    device_or_sram_bytes: Any,
    kernel: str = "flash",
    num_splits: int | None = None,
    block_q: int | None = None,
    block_kv: int | None = None,
    stages: int = 2,
    units: int | None = None,
    pack_gqa: bool = True,
    acc_budget: tuple[float | None, float | None] = (None, None),
) -> int:
    """The CTAs :func:`hwsim.plan.attention.plan_attention` with these arguments would plan,
    in O(1): simulators check their event budget with it before a plan is allocated."""
    from hwsim.plan.attention import _layout  # the planner's own tile choice (it imports us)

    lay = _layout(
        shape,
        device_or_sram_bytes,
        kernel,
        num_splits,
        block_q,
        block_kv,
        stages,
        units,
        pack_gqa,
        acc_budget,
    )
    return cta_count(
        shape, kernel, lay["fwd_blocks"], lay["bwd_blocks"], lay["splits"], lay["pack"]
    )
