"""Step recipes of the attention kernels and the vectorised per-CTA cost arrays.

Each kernel *role* says what one CTA does: a prologue, a loop of steps over inner blocks and an
epilogue, each a list of :class:`Transfer` s plus matmul FLOPs and exponentials. Every quantity
is linear in the inner tile length, so the loop total of a CTA with ``n`` steps covering ``L``
inner elements is exactly ``f(L) + (n - 1)·f(0)``: per-CTA totals cost O(1) each and equal the
sum over :meth:`RoleSpec.iter_steps` exactly. Used by :mod:`hwsim.plan.attention` only.

Roles (``outer`` = what one CTA owns; O/I = outer/inner tile length in tokens; e = input bytes,
ob = output bytes, fp32 = 4):

=============  =====  ====================================================================
role           outer  per CTA
=============  =====  ====================================================================
fwd            q      load Q; per KV block: load K,V, S=QKᵀ, online softmax, O+=PV; store O,LSE
fwd_split      q      as fwd over one split's KV range; store fp32 partial O and LSE
combine        q      read every split's partial O, LSE; store O, LSE
naive_qk       q      load Q; per KV block (all of them): load K, S=QKᵀ, store S
naive_softmax  q      read the S rows, softmax (mask here), store P
naive_pv       q      per KV block (all): load P, V, O+=PV; store O
bwd_pre        q      read O, dO; store D=rowsum(dO∘O) (fp32); zero the fp32 dQ accumulator
bwd            kv     load K,V; per Q block: load Q,dO,LSE,D, recompute P, dV+=PᵀdO,
                      dP=dO Vᵀ, dS=P∘(dP-D), dK+=dSᵀQ, atomic dQ+=dS K (fp32); store dK, dV
                      (fp32 atomics into an accumulator when kv_heads < heads)
bwd_post       q      read fp32 dQ accumulator, store dQ
bwd_post_kv    kv     (GQA only; CTA per KV head) read fp32 dK, dV accumulators, store them
=============  =====  ====================================================================
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from hwsim.plan.attention import AttentionShape, KernelPlan

LEVELS = ("global", "onchip")
Num = Any  # int or int64 ndarray (broadcast together)


@dataclass(frozen=True)
class Transfer:
    """``nbytes`` of ``tensor`` moved ``src -> dst`` (levels ``global``, ``onchip``, ``reg``).
    ``atomic``: a reduction performed at L2 (fp32 accumulators)."""

    tensor: str
    src: str
    dst: str
    nbytes: Num
    atomic: bool = False


@dataclass(frozen=True)
class CtaCost:
    """Per-CTA cost arrays (int64, length n_cta): bytes read/written per level, FLOPs, exps."""

    global_read: np.ndarray
    global_write: np.ndarray
    onchip_read: np.ndarray
    onchip_write: np.ndarray
    flops: np.ndarray
    exp: np.ndarray

    @staticmethod
    def of(transfers: list[Transfer], flops: Num, exp: Num, n: int) -> CtaCost:
        def total(cond: Callable[[Transfer], bool]) -> np.ndarray:
            acc = np.zeros(n, dtype=np.int64)
            for t in transfers:
                if cond(t):
                    acc = acc + t.nbytes
            return np.broadcast_to(np.asarray(acc, dtype=np.int64), (n,)).copy()

        return CtaCost(
            global_read=total(lambda t: t.src == "global"),
            global_write=total(lambda t: t.dst == "global"),
            onchip_read=total(lambda t: t.src == "onchip"),
            onchip_write=total(lambda t: t.dst == "onchip"),
            flops=np.broadcast_to(np.asarray(flops, dtype=np.int64), (n,)).copy(),
            exp=np.broadcast_to(np.asarray(exp, dtype=np.int64), (n,)).copy(),
        )

    @staticmethod
    def sum_of(*costs: CtaCost) -> CtaCost:
        """Sum of all CTAs of all ``costs`` (1-element arrays)."""
        return CtaCost(
            **{
                f.name: np.array([sum(int(getattr(c, f.name).sum()) for c in costs)], np.int64)
                for f in fields(CtaCost)
            }
        )

    def combine(
        self, other: CtaCost, fn: Callable[[np.ndarray, np.ndarray], np.ndarray]
    ) -> CtaCost:
        return CtaCost(
            **{f.name: fn(getattr(self, f.name), getattr(other, f.name)) for f in fields(CtaCost)}
        )


@dataclass(frozen=True)
class Step:
    """One explicit step of one CTA. ``phase`` is ``prologue``, ``loop`` or ``epilogue``;
    ``rows``/``cols`` are the query/key index ranges the step touches (``(0, 0)`` when none);
    ``partial``: the tile needs an element mask (causal diagonal, window edge)."""

    kernel: str
    role: str
    cta: int
    batch: int
    head: int
    phase: str
    index: int
    q_block: int
    kv_block: int
    split: int
    rows: tuple[int, int]
    cols: tuple[int, int]
    partial: bool
    transfers: tuple[Transfer, ...]
    flops: int
    exp: int

    def bytes(self, level: str, rw: str | None = None) -> int:
        """Bytes read (``rw="read"``), written (``"write"``) or both at ``level``."""
        r = sum(int(t.nbytes) for t in self.transfers if t.src == level)
        w = sum(int(t.nbytes) for t in self.transfers if t.dst == level)
        return r if rw == "read" else w if rw == "write" else r + w


Terms = tuple[list[Transfer], Num, Num]
_NOTHING: Terms = ([], 0, 0)


def _ld(name: str, n: Num) -> Transfer:
    return Transfer(name, "global", "onchip", n)


def _rd(name: str, n: Num) -> Transfer:
    return Transfer(name, "onchip", "reg", n)


def _gr(name: str, n: Num) -> Transfer:
    return Transfer(name, "global", "reg", n)


def _st(name: str, n: Num, atomic: bool = False) -> Transfer:
    return Transfer(name, "reg", "global", n, atomic)


@dataclass(frozen=True)
class RoleSpec:
    """What one CTA of a role does; functions take (shape, outer_len, inner_len, splits)."""

    outer: str
    pairs: bool  # loop steps are (Q block, KV block) tile pairs
    prologue: Callable[[AttentionShape, Num, int], Terms]
    step: Callable[[AttentionShape, Num, Num], Terms] | None
    epilogue: Callable[[AttentionShape, Num, int], Terms]
    heads_are_kv: bool = False

    def iter_steps(self, k: KernelPlan, c: int) -> Iterator[Step]:
        sh = k.shape
        o = int(k.cta_block[c])
        olen = int(k.outer_len[c])
        o0 = o * k.block_outer
        outer_rng = (o0, o0 + olen)  # positions; a packed CTA has them for k.pack heads
        olen *= k.pack
        base: dict[str, Any] = dict(
            kernel=k.name,
            role=k.role,
            batch=int(k.cta_batch[c]),
            head=int(k.cta_head[c]),
            split=int(k.cta_split[c]),
        )

        def mk(
            phase: str, idx: int, inner: int, irng: tuple[int, int], part: bool, t: Terms
        ) -> Step:
            qb, kb = (o, inner) if self.outer == "q" else (inner, o)
            rows, cols = (outer_rng, irng) if self.outer == "q" else (irng, outer_rng)
            return Step(
                kernel=base["kernel"],
                role=base["role"],
                cta=c,
                batch=base["batch"],
                head=base["head"],
                phase=phase,
                index=idx,
                q_block=qb,
                kv_block=kb,
                split=base["split"],
                rows=rows,
                cols=cols,
                partial=part,
                transfers=tuple(
                    Transfer(x.tensor, x.src, x.dst, int(x.nbytes), x.atomic) for x in t[0]
                ),
                flops=int(t[1]),
                exp=int(t[2]),
            )

        splits = k.num_splits
        pro = self.prologue(sh, olen, splits)
        if pro[0] or pro[1] or pro[2]:
            yield mk("prologue", 0, -1, (0, 0), False, pro)
        if self.step is not None:
            inner_len_total = sh.seqlen_kv if self.outer == "q" else sh.seqlen_q
            lo, hi = int(k.inner_lo[c]), int(k.inner_hi[c])
            flo, fhi = int(k.full_lo[c]), int(k.full_hi[c])
            for n, j in enumerate(range(lo, hi)):
                i0 = j * k.block_inner
                i1 = min(i0 + k.block_inner, inner_len_total)
                part = not (flo <= j < fhi)
                yield mk("loop", n, j, (i0, i1), part, self.step(sh, olen, i1 - i0))
        epi = self.epilogue(sh, olen, splits)
        if epi[0] or epi[1] or epi[2]:
            yield mk("epilogue", 0, -1, (0, 0), False, epi)


# ---- recipes ------------------------------------------------------------------------------------
def _fwd_pro(s: AttentionShape, o: Num, _: int) -> Terms:
    return [_ld("Q", o * s.head_dim * s.elem_bytes)], 0, 0


def _fwd_step(s: AttentionShape, o: Num, i: Num) -> Terms:
    e, dq, dv = s.elem_bytes, s.head_dim, s.dv
    t = [
        _ld("K", i * dq * e),
        _ld("V", 0 if s.kv_shared else i * dv * e),  # MLA: V is the K latent's first dv
        _rd("Q", o * dq * e),
        _rd("K", i * dq * e),
        _rd("V", i * dv * e),
    ]
    # exp(S - m) per element plus exp(m_old - m_new) per row for the rescale
    return t, 2 * o * i * (dq + dv), o * i + o


def _fwd_epi(s: AttentionShape, o: Num, _: int) -> Terms:
    # log(l) per row for the LSE is one special-function op per row
    return [_st("O", o * s.dv * s.out_bytes), _st("LSE", o * 4)], 0, o


def _split_epi(s: AttentionShape, o: Num, _: int) -> Terms:
    return [_st("Opart", o * s.dv * 4), _st("LSEpart", o * 4)], 0, o


def _combine_pro(s: AttentionShape, o: Num, splits: int) -> Terms:
    return [_gr("Opart", splits * o * s.dv * 4), _gr("LSEpart", splits * o * 4)], 0, splits * o


def _naive_qk_step(s: AttentionShape, o: Num, i: Num) -> Terms:
    e, dq = s.elem_bytes, s.head_dim
    t = [_ld("K", i * dq * e), _rd("Q", o * dq * e), _rd("K", i * dq * e)]
    return [*t, _st("S", o * i * s.out_bytes)], 2 * o * i * dq, 0


def _naive_sm_pro(s: AttentionShape, o: Num, _: int) -> Terms:
    return [_gr("S", o * s.seqlen_kv * s.out_bytes)], 0, o * s.seqlen_kv


def _naive_sm_epi(s: AttentionShape, o: Num, _: int) -> Terms:
    return [_st("P", o * s.seqlen_kv * s.out_bytes)], 0, 0


def _naive_pv_step(s: AttentionShape, o: Num, i: Num) -> Terms:
    e, dv, ob = s.elem_bytes, s.dv, s.out_bytes
    t = [_ld("P", o * i * ob), _ld("V", i * dv * e), _rd("P", o * i * ob), _rd("V", i * dv * e)]
    return t, 2 * o * i * dv, 0


def _naive_pv_epi(s: AttentionShape, o: Num, _: int) -> Terms:
    return [_st("O", o * s.dv * s.out_bytes)], 0, 0


def _pre_pro(s: AttentionShape, o: Num, _: int) -> Terms:
    return [_gr("O", o * s.dv * s.out_bytes), _gr("dO", o * s.dv * s.out_bytes)], 0, 0


def _pre_epi(s: AttentionShape, o: Num, _: int) -> Terms:
    return [_st("D", o * 4), _st("dQacc", o * s.head_dim * 4)], 0, 0


def _bwd_pro(s: AttentionShape, o: Num, _: int) -> Terms:
    e = s.elem_bytes
    return [_ld("K", o * s.head_dim * e), _ld("V", o * s.dv * e)], 0, 0


def _bwd_step(s: AttentionShape, o: Num, i: Num) -> Terms:
    e, dq, dv, ob = s.elem_bytes, s.head_dim, s.dv, s.out_bytes
    loads = [("Q", i * dq * e), ("dO", i * dv * ob), ("LSE", i * 4), ("D", i * 4)]
    t = [_ld(n, b) for n, b in loads] + [_rd(n, b) for n, b in loads]
    t += [_rd("K", o * dq * e), _rd("V", o * dv * e), _st("dQacc", i * dq * 4, atomic=True)]
    # S = QKᵀ, dP = dO Vᵀ, dV += Pᵀ dO, dK += dSᵀ Q, dQ += dS K: 2·(3·dq + 2·dv) per pair
    return t, 2 * o * i * (3 * dq + 2 * dv), o * i


def _bwd_epi(s: AttentionShape, o: Num, _: int) -> Terms:
    gqa = s.group > 1
    b = 4 if gqa else s.out_bytes
    return [_st("dK", o * s.head_dim * b, gqa), _st("dV", o * s.dv * b, gqa)], 0, 0


def _post_pro(s: AttentionShape, o: Num, _: int) -> Terms:
    return [_gr("dQacc", o * s.head_dim * 4)], 0, 0


def _post_epi(s: AttentionShape, o: Num, _: int) -> Terms:
    return [_st("dQ", o * s.head_dim * s.out_bytes)], 0, 0


def _postkv_pro(s: AttentionShape, o: Num, _: int) -> Terms:
    return [_gr("dKacc", o * s.head_dim * 4), _gr("dVacc", o * s.dv * 4)], 0, 0


def _postkv_epi(s: AttentionShape, o: Num, _: int) -> Terms:
    ob = s.out_bytes
    return [_st("dK", o * s.head_dim * ob), _st("dV", o * s.dv * ob)], 0, 0


def _none(s: AttentionShape, o: Num, _: int) -> Terms:
    return _NOTHING


ROLE_SPECS: dict[str, RoleSpec] = {
    "fwd": RoleSpec("q", True, _fwd_pro, _fwd_step, _fwd_epi),
    "fwd_split": RoleSpec("q", True, _fwd_pro, _fwd_step, _split_epi),
    "combine": RoleSpec("q", False, _combine_pro, None, _fwd_epi),
    "naive_qk": RoleSpec("q", True, _fwd_pro, _naive_qk_step, _none),
    "naive_softmax": RoleSpec("q", False, _naive_sm_pro, None, _naive_sm_epi),
    "naive_pv": RoleSpec("q", True, _none, _naive_pv_step, _naive_pv_epi),
    "bwd_pre": RoleSpec("q", False, _pre_pro, None, _pre_epi),
    "bwd": RoleSpec("kv", True, _bwd_pro, _bwd_step, _bwd_epi),
    "bwd_post": RoleSpec("q", False, _post_pro, None, _post_epi),
    "bwd_post_kv": RoleSpec("kv", False, _postkv_pro, None, _postkv_epi, heads_are_kv=True),
}


# ---- block ranges (vectorised over outer blocks) ----------------------------------------------
def block_ranges(
    n_outer_len: int, b_out: int, n_inner_len: int, b_in: int, off: int, lo: int, hi: int
) -> tuple[np.ndarray, ...]:
    """For each outer block: (outer_len, inner_lo, inner_hi, full_lo, full_hi) in inner blocks.

    Pair (outer index r, inner index c) is allowed iff ``-lo <= c - r - off <= hi``. The allowed
    inner indices of an outer block form one interval (consecutive rows' intervals overlap), so
    the needed inner blocks are contiguous; fully allowed blocks are contiguous too."""
    nob = -(-n_outer_len // b_out)
    nib = -(-n_inner_len // b_in)
    o0 = np.arange(nob, dtype=np.int64) * b_out
    o1 = np.minimum(o0 + b_out, n_outer_len)
    c_lo = np.maximum(0, o0 + off - lo)
    c_hi = np.minimum(n_inner_len - 1, o1 - 1 + off + hi)
    empty = c_lo > c_hi
    j_lo = np.where(empty, 0, c_lo // b_in)
    j_hi = np.where(empty, 0, c_hi // b_in + 1)
    y = o1 - 1 + off - lo  # full needs every column >= y
    f_lo = np.maximum(0, -((-y) // b_in))
    x = o0 + off + hi  # full needs every column <= x
    f_hi = np.where(x >= n_inner_len - 1, nib, np.clip((x + 1) // b_in, 0, nib))
    return o1 - o0, j_lo, j_hi, f_lo, np.maximum(f_hi, f_lo)


def _inner_len(lo: np.ndarray, hi: np.ndarray, b: int, n: int) -> np.ndarray:
    """Tokens covered by inner blocks [lo, hi) (the last block may be short)."""
    return np.where(hi > lo, np.minimum(hi * b, n) - lo * b, 0)


def _kernel(
    KP: Any,
    name: str,
    role: str,
    s: AttentionShape,
    b_out: int,
    b_in: int,
    ranges: tuple[np.ndarray, ...],
    splits: int = 1,
    full_inner: bool = False,
    pack: int = 1,
) -> Any:
    """Per-CTA arrays in launch order: head (slowest), batch, split, outer block (fastest).
    ``pack`` > 1 (GQA packing): one CTA per KV head whose Q tile holds the rows of its ``pack``
    query heads; ``cta_head`` is the group's first query head, costs use ``pack·outer_len``."""
    spec = ROLE_SPECS[role]
    olen_b, jlo_b, jhi_b, flo_b, fhi_b = ranges
    nob = len(olen_b)
    n_heads = s.kv_heads if spec.heads_are_kv or pack > 1 else s.heads
    grid_splits = splits if role == "fwd_split" else 1  # the combine has one CTA per Q block
    h, b, sp, blk = (
        a.ravel()
        for a in np.meshgrid(
            np.arange(n_heads),
            np.arange(s.batch),
            np.arange(grid_splits),
            np.arange(nob),
            indexing="ij",
        )
    )
    n = len(blk)
    h = h * pack
    olen = olen_b[blk]
    inner_n = s.seqlen_kv if spec.outer == "q" else s.seqlen_q
    if spec.step is None:
        jlo = jhi = flo = fhi = np.zeros(n, np.int64)
    elif full_inner:  # naive: every block, no skipping; masking happens in the softmax kernel
        nib = -(-inner_n // b_in)
        jlo, flo = np.zeros(n, np.int64), np.zeros(n, np.int64)
        jhi, fhi = np.full(n, nib, np.int64), np.full(n, nib, np.int64)
    else:
        jlo, jhi, flo, fhi = jlo_b[blk], jhi_b[blk], flo_b[blk], fhi_b[blk]
        if grid_splits > 1:
            nib = -(-inner_n // b_in)
            per = -(-nib // splits)
            jlo = np.maximum(jlo, sp * per)
            jhi = np.minimum(jhi, (sp + 1) * per)
            jhi = np.maximum(jhi, jlo)
    nsteps = jhi - jlo
    nfull = np.maximum(0, np.minimum(fhi, jhi) - np.maximum(flo, jlo))
    rows = olen  # positions per head (the KernelPlan field); costs see every packed row
    olen = olen * pack
    if spec.step is None:
        loop = CtaCost.of([], 0, 0, n)
    else:
        total = CtaCost.of(*spec.step(s, olen, _inner_len(jlo, jhi, b_in, inner_n)), n)
        zero = CtaCost.of(*spec.step(s, olen, 0), n)
        # linear in the inner length: sum over steps = f(L) + (n - 1)·f(0), and 0 for n = 0
        loop = total.combine(zero, lambda t, z: np.where(nsteps > 0, t + (nsteps - 1) * z, 0))
    return KP(
        name=name,
        role=role,
        outer=spec.outer,
        block_outer=b_out,
        block_inner=b_in,
        cta_batch=b,
        cta_head=h,
        cta_block=blk,
        cta_split=sp,
        outer_len=rows,
        inner_lo=jlo,
        inner_hi=jhi,
        full_lo=flo,
        full_hi=fhi,
        n_steps=nsteps,
        n_partial=nsteps - nfull,
        prologue=CtaCost.of(*spec.prologue(s, olen, splits), n),
        loop=loop,
        epilogue=CtaCost.of(*spec.epilogue(s, olen, splits), n),
        shape=s,
        num_splits=splits,
        heads_are_kv=spec.heads_are_kv,
        pack=pack,
    )


def build_kernels(
    KP: Any,
    s: AttentionShape,
    kernel: str,
    fwd_blocks: tuple[int, int] | None,
    bwd_blocks: tuple[int, int] | None,
    splits: int,
    pack: int = 1,
) -> tuple[Any, ...]:
    """The kernel launches of one plan, in order. Blocks are (block_q, block_kv); ``pack``
    query heads per CTA in the forward attention kernels (the combine stays per query head).
    :func:`hwsim.plan.attention_size.cta_count` counts the CTAs these launches allocate."""
    left, right = s.mask_bounds
    out: list[Any] = []
    if fwd_blocks is not None:
        br, bc = fwd_blocks
        fr = block_ranges(s.seqlen_q, br, s.seqlen_kv, bc, s.offset, left, right)
        if kernel == "flash" or (kernel == "split_kv" and splits == 1):
            out.append(_kernel(KP, "attn_fwd", "fwd", s, br, bc, fr, pack=pack))
        elif kernel == "split_kv":
            kp = _kernel(KP, "attn_fwd_splitkv", "fwd_split", s, br, bc, fr, splits, pack=pack)
            out.append(kp)
            out.append(_kernel(KP, "attn_combine", "combine", s, br, bc, fr, splits))
        else:
            out.append(_kernel(KP, "naive_qk", "naive_qk", s, br, bc, fr, full_inner=True))
            out.append(_kernel(KP, "naive_softmax", "naive_softmax", s, br, bc, fr))
            out.append(_kernel(KP, "naive_pv", "naive_pv", s, br, bc, fr, full_inner=True))
    if bwd_blocks is not None:
        br, bc = bwd_blocks
        qr = block_ranges(s.seqlen_q, br, s.seqlen_kv, bc, s.offset, left, right)
        # kv-outer: r - c - (-off) in [-right, left]
        kr = block_ranges(s.seqlen_kv, bc, s.seqlen_q, br, -s.offset, right, left)
        out.append(_kernel(KP, "attn_bwd_preprocess", "bwd_pre", s, br, bc, qr))
        out.append(_kernel(KP, "attn_bwd", "bwd", s, bc, br, kr))
        out.append(_kernel(KP, "attn_bwd_convert_dq", "bwd_post", s, br, bc, qr))
        if s.group > 1:
            out.append(_kernel(KP, "attn_bwd_convert_dkv", "bwd_post_kv", s, bc, br, kr))
    return tuple(out)
