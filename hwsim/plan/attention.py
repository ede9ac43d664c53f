"""Tile plan for attention (FlashAttention-style, naive and split-KV): the one description of the
work that both the numpy executor (``hwsim.functional.attention``) and the simpy timing model
(``hwsim.sim``) consume, so that their bytes and FLOPs agree by construction.

API (stable; other layers code against it)
------------------------------------------
* :class:`AttentionShape` - frozen problem shape; ``validate`` raises :class:`SpecError`.
* :func:`plan_attention` ``(shape, device_or_sram_bytes, kernel="flash"|"naive"|"split_kv",
  num_splits=None, block_q=None, block_kv=None, stages=2, units=None, pack_gqa=True)
  -> AttentionPlan``. GQA packing (decode): a forward CTA per KV head computes its ``pack``
  query heads (``KernelPlan.pack``; ``outer_len`` stays in positions, costs count every row).
* :class:`AttentionPlan` - ``kernels`` (tuple of :class:`KernelPlan`, launched in order),
  ``block_q``, ``block_kv``, ``num_splits``, ``loop_order``, ``footprint_bytes``,
  ``budget_bytes``, ``level_names``; totals ``bytes_by_level()``, ``bytes_rw()``, ``flops()``,
  ``exp_ops()``, ``block_pairs()``, ``n_ctas()``; ``iter_steps()`` (every kernel/CTA, small
  problems only).
* :class:`KernelPlan` - one kernel launch. Per-CTA numpy arrays (length ``n_cta``, launch
  order): ``cta_batch``, ``cta_head`` (query head), ``cta_block`` (outer block index: Q block for
  ``outer == "q"``, KV block for ``outer == "kv"``), ``cta_split``, ``inner_lo``/``inner_hi``
  (inner block range), ``n_steps``, ``n_partial`` (steps needing an element mask), ``outer_len``
  (rows/cols of the outer tile, smaller at the edge), and three :class:`CtaCost` s: ``prologue``
  (before the loop), ``loop`` (summed over all the CTA's steps, exact incl. edge blocks) and
  ``epilogue``. A CTA-level simulator uses ``loop.x / n_steps`` as the mean step; ``iter_steps
  (cta)`` yields explicit :class:`Step` records for tile-detail simulation and the executor.
* :func:`flash_flops` - FLOPs by FlashAttention's benchmark convention (for reported TFLOP/s).

Memory levels: generic names ``"global"`` (main memory: HBM on GPUs; the kernel's loads and
stores; L2 is the simulator's business) and ``"onchip"`` (the per-unit scratchpad: SMEM, SRAM).
``plan.level_names`` maps them to the device's level names when planned from a :class:`Device`.
Every byte moved is a :class:`Transfer` ``src -> dst`` over ``global | onchip | reg``; it counts
as a read at ``src`` and a write at ``dst`` (registers are not counted). Loads go global->onchip
(TMA/cp.async), MMA operands are read onchip->reg once per step, stores go reg->global directly,
and ``atomic`` stores (fp32 ``dQ`` accumulation, GQA ``dK``/``dV``) are reductions done at L2,
counted as global writes of fp32 bytes. Accumulators (O, m, l, dK, dV) live in registers.

Masks: query ``i`` may attend key ``j`` iff ``j - i - (seqlen_kv - seqlen_q)`` lies in
``[-left, right]`` (FlashAttention >= 2.1 bottom-right alignment); ``causal`` sets ``right = 0``,
``window=(left, right)`` bounds both sides (``None`` = unbounded). Blocks with no allowed pair
are skipped; blocks with some masked pair are "partial" (the kernel computes the whole tile and
masks it). FLOPs are counted on whole computed tiles (masked elements included, edge tiles at
their real size), which is what the executor computes; :func:`flash_flops` is the convention.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hwsim.plan.attention_blocks import (
    _round16,
    accumulator_bytes,
    choose_blocks,
    footprint_bytes,
    onchip_budget_bytes,
)
from hwsim.plan.attention_kernels import (
    ROLE_SPECS,
    CtaCost,
    Step,
    Transfer,
    build_kernels,
)
from hwsim.plan.attention_size import check_plan_memory, cta_count
from hwsim.spec.device import STORAGE_BYTES
from hwsim.spec.errors import SpecError

__all__ = [
    "AttentionPlan",
    "AttentionShape",
    "CtaCost",
    "KernelPlan",
    "Step",
    "Transfer",
    "choose_blocks",
    "flash_flops",
    "footprint_bytes",
    "onchip_budget_bytes",
    "plan_attention",
]

#: Bytes per element of each input dtype attention takes (fp8 = e4m3 unless named).
ELEM_BYTES: dict[str, int] = {
    d: int(STORAGE_BYTES[d]) for d in ("fp32", "bf16", "fp16", "fp8", "fp8_e4m3", "fp8_e5m2")
}
PASSES = ("fwd", "bwd", "fwd+bwd")
KERNELS = ("flash", "naive", "split_kv")


#: Largest size of each dimension (log2): a CTA's FLOPs (4 · 128 · seqlen · head_dim) stay
#: below 2^63 in int64 (2 billion tokens, far past any context; batch and heads alike).
MAX_LOG2 = {"batch": 31, "heads": 20, "kv_heads": 20, "seqlen_q": 31, "seqlen_kv": 31,
            "head_dim": 16}  # fmt: skip


@dataclass(frozen=True)
class AttentionShape:
    """One attention problem. ``head_dim_v`` defaults to ``head_dim`` (MLA uses 192/128);
    ``window=(left, right)`` in tokens, ``None`` on a side = unbounded; ``dtype`` of Q/K/V."""

    batch: int
    heads: int
    kv_heads: int
    seqlen_q: int
    seqlen_kv: int
    head_dim: int
    head_dim_v: int | None = None
    causal: bool = False
    window: tuple[int | None, int | None] | None = None
    dtype: str = "bf16"
    pass_: str = "fwd"
    #: MLA absorbed decode: V is the first ``head_dim_v`` columns of K (one cached latent), so
    #: the kernel loads K tiles only and reads V from the same on-chip buffer (FlashMLA).
    kv_shared: bool = False

    def __post_init__(self) -> None:
        if self.head_dim_v is None:
            object.__setattr__(self, "head_dim_v", self.head_dim)
        self.validate()

    def validate(self) -> None:
        for name in ("batch", "heads", "kv_heads", "seqlen_q", "seqlen_kv", "head_dim"):
            v = getattr(self, name)
            if not isinstance(v, int | np.integer) or isinstance(v, bool) or v < 1:
                raise SpecError(f"expected a positive integer, got {v!r}", key=name)
            if v > 2 ** MAX_LOG2[name]:  # per-CTA byte and FLOP counts stay exact in int64
                raise SpecError(
                    f"{v} is larger than the 2^{MAX_LOG2[name]} this simulator supports", key=name
                )
        if self.dv < 1:
            raise SpecError(
                f"expected a positive integer, got {self.head_dim_v!r}", key="head_dim_v"
            )
        if self.heads % self.kv_heads:
            raise SpecError(
                f"heads ({self.heads}) must be a multiple of kv_heads ({self.kv_heads})",
                key="kv_heads",
            )
        if self.dtype not in ELEM_BYTES:
            raise SpecError(
                f"expected one of {sorted(ELEM_BYTES)}, got {self.dtype!r}", key="dtype"
            )
        if self.pass_ not in PASSES:
            raise SpecError(f"expected one of {PASSES}, got {self.pass_!r}", key="pass")
        if self.window is not None:
            if len(self.window) != 2 or any(
                w is not None and (not isinstance(w, int | np.integer) or w < 0)
                for w in self.window
            ):
                raise SpecError(
                    f"expected (left, right) with ints >= 0 or None, got {self.window!r}",
                    key="window",
                )
        if self.kv_shared and (self.dv > self.head_dim or self.pass_ != "fwd"):
            raise SpecError(
                f"a shared latent KV needs head_dim_v <= head_dim and the forward pass, got "
                f"{self.dv} > {self.head_dim} or pass {self.pass_!r}",
                key="kv_shared",
            )
        if self.pass_ != "fwd" and self.elem_bytes == 1:
            raise SpecError(
                "fp8 backward is not supported (FlashAttention-3 has an fp8 forward only)",
                key="dtype",
            )

    # ---- derived (ints) ---------------------------------------------------------------------
    @property
    def dv(self) -> int:
        return int(self.head_dim_v if self.head_dim_v is not None else self.head_dim)

    @property
    def group(self) -> int:
        """Query heads per KV head (1 = MHA, heads = MQA)."""
        return self.heads // self.kv_heads

    @property
    def elem_bytes(self) -> int:
        """Bytes per Q/K/V/dO element."""
        return ELEM_BYTES[self.dtype]

    @property
    def out_bytes(self) -> int:
        """Bytes per O/dQ/dK/dV/S/P element: fp32 stays fp32, 16-bit and fp8 inputs give bf16/
        fp16 (FA3's fp8 forward writes a 16-bit O)."""
        return 4 if self.dtype == "fp32" else 2

    @property
    def offset(self) -> int:
        """``seqlen_kv - seqlen_q``: query ``i`` is aligned with key ``i + offset``."""
        return self.seqlen_kv - self.seqlen_q

    @property
    def mask_bounds(self) -> tuple[int, int]:
        """(left, right) as finite ints: key ``j`` allowed for query ``i`` iff
        ``-left <= j - i - offset <= right``; 'unbounded' is a value no pair reaches."""
        inf = self.seqlen_q + self.seqlen_kv + 1
        left, right = self.window if self.window is not None else (None, None)
        left_i = inf if left is None else int(left)
        right_i = inf if right is None else int(right)
        if self.causal:
            right_i = min(right_i, 0)
        return left_i, right_i

    @property
    def masked(self) -> bool:
        return self.causal or self.window is not None

    def allowed(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Boolean mask for query indices ``rows`` (column vector) × key indices ``cols``."""
        left, right = self.mask_bounds
        d = np.asarray(cols)[None, :] - np.asarray(rows)[:, None] - self.offset
        return (d >= -left) & (d <= right)

    def with_pass(self, pass_: str) -> AttentionShape:
        from dataclasses import replace

        return replace(self, pass_=pass_)


def flash_flops(shape: AttentionShape) -> float:
    """FLOPs by FlashAttention's benchmark convention (``hopper/benchmark_attn.py``): forward
    ``2·b·h·sq·skv·(d_qk + d_v)`` (= ``4·b·s²·h·d`` for equal dims), halved when causal;
    backward 2.5×, forward+backward 3.5× the forward. Windows are not discounted (the
    benchmark's causal rule is the only one the reference table uses)."""
    s = shape
    fwd = 2.0 * s.batch * s.heads * s.seqlen_q * s.seqlen_kv * (s.head_dim + s.dv)
    if s.causal:
        fwd /= 2.0
    return fwd * {"fwd": 1.0, "bwd": 2.5, "fwd+bwd": 3.5}[s.pass_]


# ---- tile sizes ---------------------------------------------------------------------------------
# ---- plans --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class KernelPlan:
    """One kernel launch: per-CTA arrays (launch order = blockIdx.x fastest = outer block, then
    split, batch, head) and costs. ``role`` selects the step recipe (see attention_kernels)."""

    name: str
    role: str
    outer: str  # "q" or "kv": what the outer (per-CTA) block indexes; "" if no blocks
    block_outer: int
    block_inner: int
    cta_batch: np.ndarray
    cta_head: np.ndarray
    cta_block: np.ndarray
    cta_split: np.ndarray
    outer_len: np.ndarray
    inner_lo: np.ndarray
    inner_hi: np.ndarray
    full_lo: np.ndarray
    full_hi: np.ndarray
    n_steps: np.ndarray
    n_partial: np.ndarray
    prologue: CtaCost
    loop: CtaCost
    epilogue: CtaCost
    shape: AttentionShape = field(repr=False)
    num_splits: int = 1
    heads_are_kv: bool = False  # cta_head indexes KV heads (GQA dK/dV conversion)
    pack: int = 1  # query heads per CTA (GQA packing: cta_head is the group's first head)

    @property
    def n_cta(self) -> int:
        return len(self.cta_batch)

    def total(self) -> CtaCost:
        """Whole-kernel totals (each field a 1-element int64 array)."""
        return CtaCost.sum_of(self.prologue, self.loop, self.epilogue)

    def iter_steps(self, cta: int) -> Iterator[Step]:
        """Explicit steps of one CTA: prologue, loop steps in order, epilogue."""
        yield from ROLE_SPECS[self.role].iter_steps(self, int(cta))

    def cta_groups(self) -> list[np.ndarray]:
        """CTA indices grouped by (outer block, split): CTAs of one group run identical step
        sequences (only batch/head differ), so an executor can batch them."""
        key = self.cta_block.astype(np.int64) * (self.num_splits + 1) + self.cta_split
        order = np.argsort(key, kind="stable")
        _, starts = np.unique(key[order], return_index=True)
        return np.split(order, starts[1:])


@dataclass(frozen=True)
class AttentionPlan:
    """The tile plan of one attention problem on one on-chip budget (see the module docstring)."""

    shape: AttentionShape
    kernel: str
    block_q: int
    block_kv: int
    bwd_block_q: int
    bwd_block_kv: int
    stages: int
    num_splits: int
    budget_bytes: float
    footprint_bytes: int
    loop_order: str
    level_names: dict[str, str]
    kernels: tuple[KernelPlan, ...]
    pack_gqa: int = 1  # query heads sharing a KV head packed into one forward CTA

    def _sum(self, attr: str) -> int:
        return int(sum(int(getattr(k.total(), attr)[0]) for k in self.kernels))

    def bytes_rw(self) -> dict[tuple[str, str], int]:
        """Bytes by (level, "read"|"write") over all kernels."""
        return {
            ("global", "read"): self._sum("global_read"),
            ("global", "write"): self._sum("global_write"),
            ("onchip", "read"): self._sum("onchip_read"),
            ("onchip", "write"): self._sum("onchip_write"),
        }

    def bytes_by_level(self) -> dict[str, int]:
        """Bytes read + written at each level (``"global"``, ``"onchip"``)."""
        rw = self.bytes_rw()
        return {lvl: rw[(lvl, "read")] + rw[(lvl, "write")] for lvl in ("global", "onchip")}

    def flops(self) -> int:
        """Matmul FLOPs actually computed (whole tiles, masked elements included)."""
        return self._sum("flops")

    def exp_ops(self) -> int:
        """Exponentials (special-function ops) computed."""
        return self._sum("exp")

    def n_ctas(self) -> int:
        return sum(k.n_cta for k in self.kernels)

    def block_pairs(self) -> int:
        """(Q block, KV block) tile pairs computed by the attention kernels."""
        return int(sum(int(k.n_steps.sum()) for k in self.kernels if ROLE_SPECS[k.role].pairs))

    def iter_steps(self) -> Iterator[Step]:
        """Every step of every CTA of every kernel: only for small problems."""
        for k in self.kernels:
            for c in range(k.n_cta):
                yield from k.iter_steps(c)

    def summary(self) -> dict[str, Any]:
        """JSON-friendly description."""
        return {
            "kernel": self.kernel,
            "block_q": self.block_q,
            "block_kv": self.block_kv,
            "stages": self.stages,
            "num_splits": self.num_splits,
            "pack_gqa": self.pack_gqa,
            "loop_order": self.loop_order,
            "budget_bytes": self.budget_bytes,
            "footprint_bytes": self.footprint_bytes,
            "kernels": [(k.name, k.n_cta, int(k.n_steps.sum())) for k in self.kernels],
            "bytes": self.bytes_by_level(),
            "flops": self.flops(),
            "exp_ops": self.exp_ops(),
            "flash_flops": flash_flops(self.shape),
        }


def _default_splits(
    shape: AttentionShape, n_blocks_q: int, n_kv_blocks: int, units: int | None, pack: int = 1
) -> int:
    """flash-decoding heuristic: split the KV loop until the CTAs fill every unit once
    (FA2's ``num_splits_heuristic`` aims at ~one full wave), never more splits than KV blocks."""
    ctas = shape.batch * (shape.heads // pack) * n_blocks_q
    target = units if units is not None else 128
    splits = max(1, -(-target // ctas))
    return int(min(splits, n_kv_blocks, 128))


def _layout(
    shape: AttentionShape,
    device_or_sram_bytes: Any,
    kernel: str,
    num_splits: int | None,
    block_q: int | None,
    block_kv: int | None,
    stages: int,
    units: int | None,
    pack_gqa: bool,
    acc_budget: tuple[float | None, float | None] = (None, None),
) -> dict[str, Any]:
    """Tiles, splits and GQA packing of a plan (arithmetic only: nothing per CTA yet); the
    keyword arguments of :func:`plan_attention`."""
    if kernel not in KERNELS:
        raise SpecError(f"expected one of {KERNELS}, got {kernel!r}", key="kernel")
    if kernel != "flash" and shape.pass_ != "fwd":
        raise SpecError(
            f"kernel {kernel!r} plans the forward pass only; use kernel 'flash' for backward",
            key="pass",
        )
    budget, names, dev_units = onchip_budget_bytes(device_or_sram_bytes)
    units = units if units is not None else dev_units
    for key, v in (("block_q", block_q), ("block_kv", block_kv), ("num_splits", num_splits)):
        if v is not None and (not isinstance(v, int | np.integer) or v < 1):
            raise SpecError(f"expected a positive integer, got {v!r}", key=key)
    has_fwd, has_bwd = shape.pass_ in ("fwd", "fwd+bwd"), shape.pass_ in ("bwd", "fwd+bwd")
    br, bc = choose_blocks(shape, budget, stages, acc_budget_bytes=acc_budget[0])
    fwd_blocks = (block_q or br, block_kv or bc)
    # FA2/FA3 backward kernels keep the inner Q block at <= 128 rows (dS/P tiles are Br×Bc)
    bc_b, br_b = choose_blocks(
        shape, budget, stages, bwd=True, max_inner=128, acc_budget_bytes=acc_budget[1]
    )
    bwd_blocks = (block_q or br_b, block_kv or bc_b)
    fp = footprint_bytes(shape, *fwd_blocks, stages, bwd=False) if has_fwd else 0
    if has_bwd:
        fp = max(fp, footprint_bytes(shape, bwd_blocks[1], bwd_blocks[0], stages, bwd=True))
    br, bc = fwd_blocks if has_fwd else bwd_blocks
    rows = _round16(shape.group * shape.seqlen_q)
    fits = 1 < shape.group and rows <= 128 and block_q is None
    fits = fits and footprint_bytes(shape, rows, 16, stages, bwd=False) <= budget
    acc = acc_budget[0]  # the packed rows' accumulators must fit the registers too
    fits = fits and (acc is None or accumulator_bytes(shape, rows, 16, False) <= acc)
    pack = shape.group if pack_gqa and fits and kernel != "naive" and has_fwd else 1
    if pack > 1:  # one packed Q tile: every position of the group's heads
        br = shape.seqlen_q
        while acc is not None and bc > 16 and accumulator_bytes(shape, rows, bc, False) > acc:
            bc -= 16
        fwd_blocks = (br, bc)
        fp = max(fp, footprint_bytes(shape, _round16(pack * br), bc, stages, bwd=False))
    splits = 1
    if kernel == "split_kv":
        n_qb, n_kb = -(-shape.seqlen_q // br), -(-shape.seqlen_kv // bc)
        splits = min(num_splits or _default_splits(shape, n_qb, n_kb, units, pack), n_kb)
    return {
        "fwd_blocks": fwd_blocks if has_fwd else None,
        "bwd_blocks": bwd_blocks if has_bwd else None,
        "splits": splits,
        "pack": pack,
        "br": br,
        "bc": bc,
        "fp": fp,
        "budget": budget,
        "names": names,
    }


def plan_attention(
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
) -> AttentionPlan:
    """Plan ``shape`` on a Device (its per-unit SMEM/SRAM) or a plain per-unit byte budget.

    ``kernel``: ``flash`` (FA2/FA3 forward; FA2 backward with recomputation), ``naive``
    (three kernels: S = QKᵀ to global, softmax S -> P, O = PV; forward only) or ``split_kv``
    (flash-decoding: ``num_splits`` CTAs per query block, then a combine kernel). ``block_q``/
    ``block_kv`` override the rule of :func:`choose_blocks`; ``units`` (compute units) feeds the
    split heuristic when a plain budget is given. ``pack_gqa``: when the query rows of a KV
    head's group fit one Q tile (``group·seqlen_q <= 128``: decode), one forward CTA computes
    all of them (FA2 ``seqlenq_ngroups_swapped``, FA3 ``pack_gqa``, FlashInfer), so K/V are
    read once per KV head instead of once per query head (flash and split_kv kernels).
    ``acc_budget`` bounds the forward and backward accumulator bytes a CTA holds in registers
    (None: unlimited; :func:`choose_blocks`).
    A plan whose per-CTA arrays would exceed ``--max-memory`` is refused before allocation."""
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
    splits, pack, fp = lay["splits"], lay["pack"], lay["fp"]
    budget, names, br, bc = lay["budget"], lay["names"], lay["br"], lay["bc"]
    bwd_blocks = lay["bwd_blocks"]
    check_plan_memory(cta_count(shape, kernel, lay["fwd_blocks"], bwd_blocks, splits, pack))
    kernels = build_kernels(KernelPlan, shape, kernel, lay["fwd_blocks"], bwd_blocks, splits, pack)
    order = {
        "fwd": "outer Q blocks, inner KV blocks",
        "bwd": "outer KV blocks, inner Q blocks (FA2)",
        "fwd+bwd": "fwd: outer Q, inner KV; bwd: outer KV, inner Q (FA2)",
    }[shape.pass_]
    return AttentionPlan(
        shape=shape,
        kernel=kernel,
        block_q=br,
        block_kv=bc,
        bwd_block_q=bwd_blocks[0] if bwd_blocks else 0,
        bwd_block_kv=bwd_blocks[1] if bwd_blocks else 0,
        stages=stages,
        num_splits=splits,
        budget_bytes=budget,
        footprint_bytes=int(fp),
        loop_order=order,
        level_names=names,
        kernels=kernels,
        pack_gqa=pack,
    )
