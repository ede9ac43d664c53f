"""Numpy executor of the attention tile plan, plus float64 naive references.

:func:`execute` runs an :class:`~hwsim.plan.attention.AttentionPlan` kernel by kernel, CTA group
by CTA group: CTAs that share an outer block (and split) run identical step sequences, so their
tiles are stacked along a leading axis (batch × heads) and every step is a handful of batched
matmuls. Python loops only over tiles. While it runs it counts the bytes it loads and stores at
each level (``global``/``onchip``, read/write) from the tiles it actually touches, plus matmul
FLOPs and exponentials; these must equal the plan's totals.

Numerics follow the kernels: operands are float32 arrays holding values of the storage dtype
(:mod:`hwsim.functional.dtypes`), matmuls accumulate in fp32, P (and dS in the backward) are
rounded to the input dtype before their GEMMs, outputs are rounded to the output dtype, LSE, D
and the dQ (and GQA dK/dV) accumulators stay fp32. ``precision="fp64"`` turns all rounding off
and computes in float64 (finite-difference gradient checks). Fully masked rows give O = 0 and
LSE = +inf (as FlashAttention-2), so the backward's ``exp(S - LSE)`` is 0, never NaN.

Layouts: ``q [B, H, Sq, Dqk]``, ``k [B, Hkv, Skv, Dqk]``, ``v [B, Hkv, Skv, Dv]``,
``o``/``do`` ``[B, H, Sq, Dv]``, ``lse [B, H, Sq]``; query head ``h`` reads KV head
``h // (H / Hkv)``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from hwsim.functional.dtypes import round_to
from hwsim.plan.attention import AttentionPlan, AttentionShape, KernelPlan
from hwsim.spec.errors import SpecError

Arr = np.ndarray


@dataclass(frozen=True)
class AttentionRun:
    """Outputs of :func:`execute` (None where the plan has no such pass) and its counters."""

    o: Arr | None
    lse: Arr | None
    dq: Arr | None
    dk: Arr | None
    dv: Arr | None
    counts: dict[tuple[str, str], int] = field(default_factory=dict)
    flops: int = 0
    exp_ops: int = 0


def _rescale(acc: Arr, row_sum: Arr, alpha: Arr) -> tuple[Arr, Arr]:
    """Online-softmax correction: scale the running O and row sum by ``exp(m_old - m_new)``.
    (A separate function so a test can break it on purpose and see the check fail.)"""
    return acc * alpha[..., None], row_sum * alpha


def _safe_max(m: Arr) -> Arr:
    """Row maxima with -inf (nothing seen yet / fully masked) replaced by 0, so that
    ``exp(s - m)`` is exp(-inf) = 0 instead of exp(-inf + inf) = NaN."""
    return np.where(np.isfinite(m), m, 0.0)


class _Exec:
    def __init__(self, plan: AttentionPlan, precision: str, scale: float) -> None:
        self.plan = plan
        self.s: AttentionShape = plan.shape
        self.exact = precision == "fp64"
        self.f = np.float64 if self.exact else np.float32
        self.dtype = self.s.dtype if self.s.dtype != "fp8" else "fp8_e4m3"
        self.out_dtype = "fp32" if self.s.dtype == "fp32" else "bf16"
        if self.s.dtype == "fp16":
            self.out_dtype = "fp16"
        self.scale = scale
        self.counts: Counter[tuple[str, str]] = Counter()
        self.flops = 0
        self.exps = 0
        self.e, self.ob = self.s.elem_bytes, self.s.out_bytes

    # ---- byte/flop accounting at the sites where data moves --------------------------------
    def load(self, tile: Arr, nbytes_per: int) -> Arr:
        """global -> onchip (TMA/cp.async)."""
        n = tile.size * nbytes_per
        self.counts["global", "read"] += n
        self.counts["onchip", "write"] += n
        return tile

    def use(self, *tiles_and_bytes: tuple[Arr, int]) -> None:
        """MMA operands read onchip -> registers."""
        for t, b in tiles_and_bytes:
            self.counts["onchip", "read"] += t.size * b

    def gread(self, tile: Arr, nbytes_per: int) -> Arr:
        """global -> registers (vector loads of small or streaming kernels)."""
        self.counts["global", "read"] += tile.size * nbytes_per
        return tile

    def store(self, tile: Arr, nbytes_per: int) -> Arr:
        """registers -> global (plain or atomic)."""
        self.counts["global", "write"] += tile.size * nbytes_per
        return tile

    def mm(self, a: Arr, b: Arr) -> Arr:
        self.flops += 2 * a.shape[0] * a.shape[1] * a.shape[2] * b.shape[2]
        return np.matmul(a, b)

    def exp(self, x: Arr) -> Arr:
        self.exps += x.size
        with np.errstate(invalid="ignore", over="ignore"):
            return np.exp(x)

    def rnd(self, x: Arr, dtype: str) -> Arr:
        return x if self.exact else round_to(x, dtype)

    # ---- helpers -----------------------------------------------------------------------------
    def group_index(self, k: KernelPlan, g: Arr) -> tuple[Arr, Arr, Arr, int, int]:
        b, h = k.cta_batch[g], k.cta_head[g]
        hk = h if k.heads_are_kv else h // self.s.group
        o0 = int(k.cta_block[g[0]]) * k.block_outer
        return b, h, hk, o0, o0 + int(k.outer_len[g[0]])

    def loop_steps(self, k: KernelPlan, g: Arr) -> list[Any]:
        return [st for st in k.iter_steps(int(g[0])) if st.phase == "loop"]

    def masked(self, x: Arr, st: Any, fill: float, pack: int = 1) -> Arr:
        if not st.partial:
            return x
        m = self.s.allowed(np.arange(*st.rows), np.arange(*st.cols))
        return np.where(np.tile(m, (pack, 1)), x, fill)  # packed rows: head-major

    # ---- forward -----------------------------------------------------------------------------
    def fwd(self, k: KernelPlan, t: dict[str, Arr], split: bool) -> None:
        for g in k.cta_groups():
            b, h, hk, r0, r1 = self.group_index(k, g)
            # GQA packing: the CTA's Q tile is the rows of its k.pack query heads, head-major
            pk = k.pack
            bq, hq = b[:, None], h[:, None] + np.arange(pk)
            qt = self.load(t["q"][bq, hq, r0:r1].reshape(len(g), -1, self.s.head_dim), self.e)
            r1 = r0 + pk * (r1 - r0)  # r1 - r0: packed rows from here on
            m = np.full((len(g), r1 - r0), -np.inf, self.f)
            lsum = np.zeros_like(m)
            acc = np.zeros((len(g), r1 - r0, self.s.dv), self.f)
            for st in self.loop_steps(k, g):
                c0, c1 = st.cols
                kt = self.load(t["k"][b, hk, c0:c1], self.e)
                if self.s.kv_shared:  # MLA latent: V is K's first dv columns, no second load
                    vt = kt[..., : self.s.dv]
                else:
                    vt = self.load(t["v"][b, hk, c0:c1], self.e)
                self.use((qt, self.e), (kt, self.e), (vt, self.e))
                sc = self.mm(qt, kt.transpose(0, 2, 1)) * self.scale
                sc = self.masked(sc, st, -np.inf, pk)
                m_new = np.maximum(m, sc.max(axis=-1))
                mu = _safe_max(m_new)
                p = self.exp(sc - mu[..., None])
                alpha = self.exp(m - mu)
                acc, lsum = _rescale(acc, lsum, alpha)
                lsum = lsum + p.sum(axis=-1)
                acc = acc + self.mm(self.rnd(p, self.dtype), vt)
                m = m_new
            with np.errstate(divide="ignore", invalid="ignore"):
                o = np.where(lsum[..., None] > 0, acc / lsum[..., None], 0.0)
                # empty rows: LSE = +inf for outputs (FA2), -inf for split partials (weight 0)
                lse = np.where(lsum > 0, m + np.log(lsum), -np.inf if split else np.inf)
            self.exps += lsum.size  # log(l) per row
            r1 = r0 + (r1 - r0) // pk
            o, lse = o.reshape(len(g), pk, r1 - r0, -1), lse.reshape(len(g), pk, r1 - r0)
            if split:
                sp = k.cta_split[g][:, None]
                t["opart"][sp, bq, hq, r0:r1] = self.store(o.astype(self.f), 4)
                t["lsepart"][sp, bq, hq, r0:r1] = self.store(lse, 4)
            else:
                t["o"][bq, hq, r0:r1] = self.store(self.rnd(o, self.out_dtype), self.ob)
                t["lse"][bq, hq, r0:r1] = self.store(lse, 4)

    def combine(self, k: KernelPlan, t: dict[str, Arr]) -> None:
        for g in k.cta_groups():
            b, h, _, r0, r1 = self.group_index(k, g)
            op = self.gread(t["opart"][:, b, h, r0:r1], 4)  # [splits, G, R, Dv]
            lp = self.gread(t["lsepart"][:, b, h, r0:r1], 4)
            lmax = lp.max(axis=0)
            w = self.exp(lp - _safe_max(lmax)[None])
            wsum = w.sum(axis=0)
            with np.errstate(divide="ignore", invalid="ignore"):
                o = np.where(wsum[..., None] > 0, (w[..., None] * op).sum(0) / wsum[..., None], 0)
                lse = np.where(wsum > 0, _safe_max(lmax) + np.log(wsum), np.inf)
            self.exps += wsum.size
            t["o"][b, h, r0:r1] = self.store(self.rnd(o, self.out_dtype), self.ob)
            t["lse"][b, h, r0:r1] = self.store(lse, 4)

    # ---- naive: S and P through global memory --------------------------------------------------
    def naive_qk(self, k: KernelPlan, t: dict[str, Arr]) -> None:
        for g in k.cta_groups():
            b, h, hk, r0, r1 = self.group_index(k, g)
            qt = self.load(t["q"][b, h, r0:r1], self.e)
            for st in self.loop_steps(k, g):
                c0, c1 = st.cols
                kt = self.load(t["k"][b, hk, c0:c1], self.e)
                self.use((qt, self.e), (kt, self.e))
                sc = self.mm(qt, kt.transpose(0, 2, 1)) * self.scale
                t["S"][b, h, r0:r1, c0:c1] = self.store(self.rnd(sc, self.out_dtype), self.ob)

    def naive_softmax(self, k: KernelPlan, t: dict[str, Arr]) -> None:
        allowed = self.s.allowed(np.arange(self.s.seqlen_q), np.arange(self.s.seqlen_kv))
        for g in k.cta_groups():
            b, h, _, r0, r1 = self.group_index(k, g)
            sc = np.where(allowed[r0:r1], self.gread(t["S"][b, h, r0:r1], self.ob), -np.inf)
            p = self.exp(sc - _safe_max(sc.max(axis=-1))[..., None])
            den = p.sum(axis=-1, keepdims=True)
            with np.errstate(divide="ignore", invalid="ignore"):
                p = np.where(den > 0, p / den, 0.0)
            t["P"][b, h, r0:r1] = self.store(self.rnd(p, self.out_dtype), self.ob)

    def naive_pv(self, k: KernelPlan, t: dict[str, Arr]) -> None:
        for g in k.cta_groups():
            b, h, hk, r0, r1 = self.group_index(k, g)
            acc = np.zeros((len(g), r1 - r0, self.s.dv), self.f)
            for st in self.loop_steps(k, g):
                c0, c1 = st.cols
                pt = self.load(t["P"][b, h, r0:r1, c0:c1], self.ob)
                vt = self.load(t["v"][b, hk, c0:c1], self.e)
                self.use((pt, self.ob), (vt, self.e))
                acc = acc + self.mm(pt, vt)
            t["o"][b, h, r0:r1] = self.store(self.rnd(acc, self.out_dtype), self.ob)

    # ---- backward (FA2: preprocess, KV-outer main loop, dQ conversion) ------------------------
    def bwd_pre(self, k: KernelPlan, t: dict[str, Arr]) -> None:
        for g in k.cta_groups():
            b, h, _, r0, r1 = self.group_index(k, g)
            o = self.gread(t["o"][b, h, r0:r1], self.ob)
            do = self.gread(t["do"][b, h, r0:r1], self.ob)
            t["D"][b, h, r0:r1] = self.store((o * do).sum(axis=-1), 4)
            t["dqacc"][b, h, r0:r1] = self.store(np.zeros((len(g), r1 - r0, self.s.head_dim)), 4)

    def bwd(self, k: KernelPlan, t: dict[str, Arr]) -> None:
        gqa = self.s.group > 1
        for g in k.cta_groups():
            b, h, hk, c0, c1 = self.group_index(k, g)
            kt = self.load(t["k"][b, hk, c0:c1], self.e)
            vt = self.load(t["v"][b, hk, c0:c1], self.e)
            dk = np.zeros((len(g), c1 - c0, self.s.head_dim), self.f)
            dv = np.zeros((len(g), c1 - c0, self.s.dv), self.f)
            for st in self.loop_steps(k, g):
                r0, r1 = st.rows
                qt = self.load(t["q"][b, h, r0:r1], self.e)
                dot = self.load(t["do"][b, h, r0:r1], self.ob)
                lse = self.load(t["lse"][b, h, r0:r1], 4)
                dd = self.load(t["D"][b, h, r0:r1], 4)
                self.use(
                    (qt, self.e), (dot, self.ob), (lse, 4), (dd, 4), (kt, self.e), (vt, self.e)
                )
                sc = self.masked(self.mm(qt, kt.transpose(0, 2, 1)) * self.scale, st, -np.inf)
                p = self.exp(sc - lse[..., None])  # LSE = +inf on empty rows -> 0
                dv = dv + self.mm(self.rnd(p, self.dtype).transpose(0, 2, 1), dot)
                dp = self.mm(dot, vt.transpose(0, 2, 1))
                ds = self.rnd(p * (dp - dd[..., None]), self.dtype)
                dk = dk + self.mm(ds.transpose(0, 2, 1), qt) * self.scale
                dq = self.mm(ds, kt) * self.scale
                t["dqacc"][b, h, r0:r1] += self.store(dq, 4)  # atomic fp32 adds
            if gqa:
                # several query heads of a group add into one KV head: unbuffered adds
                idx: Any = (b, hk, slice(c0, c1))
                np.add.at(t["dkacc"], idx, self.store(dk, 4))
                np.add.at(t["dvacc"], idx, self.store(dv, 4))
            else:
                t["dk"][b, h, c0:c1] = self.store(self.rnd(dk, self.out_dtype), self.ob)
                t["dv"][b, h, c0:c1] = self.store(self.rnd(dv, self.out_dtype), self.ob)

    def bwd_post(self, k: KernelPlan, t: dict[str, Arr]) -> None:
        for g in k.cta_groups():
            b, h, _, r0, r1 = self.group_index(k, g)
            acc = self.gread(t["dqacc"][b, h, r0:r1], 4)
            t["dq"][b, h, r0:r1] = self.store(self.rnd(acc, self.out_dtype), self.ob)

    def bwd_post_kv(self, k: KernelPlan, t: dict[str, Arr]) -> None:
        for g in k.cta_groups():
            b, hk, _, c0, c1 = self.group_index(k, g)
            for acc, out in (("dkacc", "dk"), ("dvacc", "dv")):
                a = self.gread(t[acc][b, hk, c0:c1], 4)
                t[out][b, hk, c0:c1] = self.store(self.rnd(a, self.out_dtype), self.ob)


def execute(
    plan: AttentionPlan,
    q: Arr,
    k: Arr,
    v: Arr,
    do: Arr | None = None,
    o: Arr | None = None,
    lse: Arr | None = None,
    softmax_scale: float | None = None,
    precision: str | None = None,
) -> AttentionRun:
    """Run ``plan`` on ``q, k, v`` (and ``do`` for a backward; ``o``/``lse`` from a forward
    when the plan is backward-only). ``precision``: ``None`` emulates the plan's dtype, ``"fp64"``
    computes exactly in float64 (inputs must then be float64)."""
    s = plan.shape
    want = {
        "q": (s.batch, s.heads, s.seqlen_q, s.head_dim),
        "k": (s.batch, s.kv_heads, s.seqlen_kv, s.head_dim),
        "v": (s.batch, s.kv_heads, s.seqlen_kv, s.dv),
    }
    if s.pass_ != "fwd":
        want["do"] = (s.batch, s.heads, s.seqlen_q, s.dv)
    given = {"q": q, "k": k, "v": v, "do": do}
    for name, shp in want.items():
        a = given[name]
        if a is None or tuple(np.shape(a)) != shp:
            got = None if a is None else tuple(np.shape(a))
            raise SpecError(f"expected an array of shape {shp}, got {got}", key=name)
    scale = softmax_scale if softmax_scale is not None else 1.0 / float(np.sqrt(s.head_dim))
    ex = _Exec(plan, precision or s.dtype, scale)
    f = ex.f
    bhq = (s.batch, s.heads, s.seqlen_q)
    t: dict[str, Arr] = {n: np.asarray(given[n], dtype=f) for n in want}
    roles = [kp.role for kp in plan.kernels]
    if "fwd" in roles or "fwd_split" in roles or "naive_pv" in roles:
        t["o"], t["lse"] = np.zeros((*bhq, s.dv), f), np.full(bhq, np.inf, f)
    else:
        if (o is None or lse is None) and s.pass_ == "bwd":
            raise SpecError("a backward-only plan needs the forward's o and lse", key="o")
        if o is not None and lse is not None:
            t["o"], t["lse"] = np.asarray(o, f), np.asarray(lse, f)
    if "fwd_split" in roles:
        t["opart"] = np.zeros((plan.num_splits, *bhq, s.dv), f)
        t["lsepart"] = np.full((plan.num_splits, *bhq), -np.inf, f)
    if "naive_qk" in roles:
        t["S"] = np.zeros((*bhq, s.seqlen_kv), f)
        t["P"] = np.zeros_like(t["S"])
    if "bwd" in roles:
        kvs = (s.batch, s.kv_heads, s.seqlen_kv)
        t["D"], t["dqacc"] = np.zeros(bhq, f), np.zeros((*bhq, s.head_dim), f)
        t["dq"] = np.zeros((*bhq, s.head_dim), f)
        t["dk"], t["dv"] = np.zeros((*kvs, s.head_dim), f), np.zeros((*kvs, s.dv), f)
        t["dkacc"], t["dvacc"] = np.zeros_like(t["dk"]), np.zeros_like(t["dv"])
    # tile GEMMs are small: BLAS threads only contend (6× slower on a busy 2-core machine)
    with threadpool_limits(limits=1, user_api="blas"):
        for kp in plan.kernels:
            if kp.role in ("fwd", "fwd_split"):
                ex.fwd(kp, t, split=kp.role == "fwd_split")
            else:
                getattr(ex, kp.role)(kp, t)
    return AttentionRun(
        o=t.get("o"),
        lse=t.get("lse"),
        dq=t.get("dq"),
        dk=t.get("dk"),
        dv=t.get("dv"),
        counts=dict(ex.counts),
        flops=ex.flops,
        exp_ops=ex.exps,
    )


# ---- float64 references ------------------------------------------------------------------------
def _expand(s: AttentionShape, x: Arr) -> Arr:
    return np.repeat(np.asarray(x, np.float64), s.group, axis=1)


def reference_attention(
    s: AttentionShape, q: Arr, k: Arr, v: Arr, softmax_scale: float | None = None
) -> tuple[Arr, Arr]:
    """Naive float64 attention: O [B, H, Sq, Dv] and LSE [B, H, Sq] (+inf on empty rows)."""
    scale = softmax_scale if softmax_scale is not None else 1.0 / np.sqrt(s.head_dim)
    allowed = s.allowed(np.arange(s.seqlen_q), np.arange(s.seqlen_kv))
    sc = np.einsum("bhqd,bhkd->bhqk", np.asarray(q, np.float64), _expand(s, k)) * scale
    sc = np.where(allowed, sc, -np.inf)
    m = _safe_max(sc.max(axis=-1))
    p = np.exp(sc - m[..., None])
    den = p.sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        o = np.einsum(
            "bhqk,bhkd->bhqd", np.where(den[..., None] > 0, p / den[..., None], 0.0), _expand(s, v)
        )
        lse = np.where(den > 0, m + np.log(den), np.inf)
    return o, lse


def reference_backward(
    s: AttentionShape, q: Arr, k: Arr, v: Arr, do: Arr, softmax_scale: float | None = None
) -> tuple[Arr, Arr, Arr]:
    """Analytic float64 gradients (dQ, dK, dV) of ``sum(O · dO)``; dK/dV summed over each
    KV head's query-head group."""
    scale = softmax_scale if softmax_scale is not None else 1.0 / np.sqrt(s.head_dim)
    q64, do64 = np.asarray(q, np.float64), np.asarray(do, np.float64)
    ke, ve = _expand(s, k), _expand(s, v)
    o, lse = reference_attention(s, q, k, v, softmax_scale)
    allowed = s.allowed(np.arange(s.seqlen_q), np.arange(s.seqlen_kv))
    sc = np.einsum("bhqd,bhkd->bhqk", q64, ke) * scale
    p = np.where(allowed, np.exp(sc - lse[..., None]), 0.0)
    dv = np.einsum("bhqk,bhqd->bhkd", p, do64)
    dp = np.einsum("bhqd,bhkd->bhqk", do64, ve)
    ds = p * (dp - (o * do64).sum(-1)[..., None])
    dq = np.einsum("bhqk,bhkd->bhqd", ds, ke) * scale
    dk = np.einsum("bhqk,bhqd->bhkd", ds, q64) * scale
    red = (s.batch, s.kv_heads, s.group, s.seqlen_kv)
    return dq, dk.reshape(*red, -1).sum(2), dv.reshape(*red, -1).sum(2)
