"""Numpy MoE executor: dispatch → expert FFN (SwiGLU) → combine on arrays split over simulated
ranks, following a :class:`~hwsim.plan.moe_dispatch.DispatchPlan` (direct or two-hop path).

Every rank holds only its own buffers: its source tokens, what it received over InfiniBand (as
a forwarder) and over NVLink, and the partial outputs it computes. A token is read out of the
*sender's* buffer, so a plan that asks a rank to forward a token it never received fails loudly.
The executor counts wire bytes per (sender, receiver) and leg while it runs; they must equal the
plan's matrices × bytes per token. The result must equal :func:`reference_moe`, a dense float64
single-device MoE.

Precision: ``dispatch_dtype`` ``fp8`` quantises each token to e4m3 with one float32 scale per
128 values (as DeepEP/DeepSeek-V3), ``bf16`` rounds to bfloat16; ``combine_dtype`` ``bf16``
rounds every partial output that crosses a link. ``None`` keeps float64 (exact comparison).
Expert math runs in float64 here; the tolerance then measures only the wire precision.

API::

    MoEWeights, random_weights(hidden, n_experts, inter, shared_inter=0, shared_gate=False, seed)
    swiglu(x, w_gate, w_up, w_down) ; reference_moe(x, routing, weights) -> y [T, H]
    execute_moe(x, routing, plan, placement, weights, path="two_hop",
                dispatch_dtype=None, combine_dtype=None) -> MoEResult
    expected_bytes(plan, path, dispatch_dtype, combine_dtype) -> {(phase, kind): [R, R]}
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from hwsim.functional.dtypes import is_fp8, max_finite, round_to
from hwsim.plan.moe_dispatch import DispatchPlan, Placement, bytes_per_token
from hwsim.plan.moe_gating import Routing
from hwsim.spec.errors import SpecError

FArr = NDArray[np.float64]
IArr = NDArray[np.int64]
Leg = tuple[str, str]  # (phase, link kind): ("dispatch"|"combine", "nvlink"|"rdma")


@dataclass(frozen=True, eq=False)
class MoEWeights:
    """Routed experts ``w_gate``/``w_up`` ``[E, H, I]``, ``w_down`` ``[E, I, H]``; optional
    shared expert (``shared_*``, width = total shared intermediate) and Qwen-style shared gate."""

    w_gate: FArr
    w_up: FArr
    w_down: FArr
    shared_gate_w: FArr | None = None
    shared_up_w: FArr | None = None
    shared_down_w: FArr | None = None
    shared_gate_vec: FArr | None = None

    @property
    def n_experts(self) -> int:
        return int(self.w_gate.shape[0])


def random_weights(
    hidden: int,
    n_experts: int,
    inter: int,
    shared_inter: int = 0,
    shared_gate: bool = False,
    seed: int = 0,
) -> MoEWeights:
    """Seeded Gaussian weights scaled by 1/sqrt(fan-in), so activations stay O(1)."""
    rng = np.random.default_rng(seed)

    def w(*shape: int) -> FArr:
        out: FArr = rng.standard_normal(shape) / np.sqrt(shape[-2])
        return out

    sg = su = sd = sv = None
    if shared_inter:
        sg, su, sd = w(hidden, shared_inter), w(hidden, shared_inter), w(shared_inter, hidden)
        if shared_gate:
            sv = rng.standard_normal(hidden) / np.sqrt(hidden)
    return MoEWeights(
        w(n_experts, hidden, inter), w(n_experts, hidden, inter), w(n_experts, inter, hidden),
        sg, su, sd, sv,
    )  # fmt: skip


def swiglu(x: FArr, w_gate: FArr, w_up: FArr, w_down: FArr) -> FArr:
    """SwiGLU FFN: ``(silu(x W_g) ⊙ x W_u) W_d``."""
    g = x @ w_gate
    out: FArr = ((g / (1.0 + np.exp(-g))) * (x @ w_up)) @ w_down
    return out


def _shared(x: FArr, w: MoEWeights) -> FArr:
    if w.shared_gate_w is None:
        return np.zeros_like(x)
    assert w.shared_up_w is not None and w.shared_down_w is not None
    y = swiglu(x, w.shared_gate_w, w.shared_up_w, w.shared_down_w)
    if w.shared_gate_vec is not None:
        y = y / (1.0 + np.exp(-(x @ w.shared_gate_vec)))[:, None]
    return y


def reference_moe(x: FArr, routing: Routing, weights: MoEWeights) -> FArr:
    """Dense single-device MoE in float64: ``y_t = shared(x_t) + Σ_j w_tj · FFN_{e_tj}(x_t)``."""
    x = np.asarray(x, dtype=np.float64)
    y = _shared(x, weights)
    for e in range(weights.n_experts):
        t, j = np.nonzero(routing.topk_idx == e)
        if t.size:
            out = swiglu(x[t], weights.w_gate[e], weights.w_up[e], weights.w_down[e])
            np.add.at(y, t, routing.topk_weight[t, j][:, None] * out)
    return y


# ---------------------------------------------------------------------- wire precision
def _wire(x: FArr, dtype: str | None) -> FArr:
    """Round values as they would travel (via :mod:`hwsim.functional.dtypes`): fp8 e4m3 with
    one fp32 scale per 128-value block (DeepEP / DeepSeek-V3 fine-grained quantisation, not the
    per-tensor scale of ``dtypes.quantize``), or bf16/fp16; None keeps float64."""
    if dtype is None:
        return x
    if not is_fp8(dtype):
        return round_to(x, dtype).astype(np.float64)
    t, h = x.shape
    pad = (-h) % 128
    xp = np.pad(x, ((0, 0), (0, pad))).reshape(t, -1, 128)
    amax = np.abs(xp).max(axis=2, keepdims=True)
    scale = np.where(amax > 0, amax / max_finite(dtype), 1.0).astype(np.float32)
    q = round_to(xp / scale, dtype).astype(np.float64) * scale
    out: FArr = q.reshape(t, -1)[:, :h]
    return out


# ---------------------------------------------------------------------- executor
@dataclass(frozen=True, eq=False)
class MoEResult:
    """Output ``y`` [T, H]; ``arrivals[t, j]`` = times slot j of token t was computed (must be 1,
    0 for dropped slots); ``bytes[(phase, kind)]`` [R, R] wire bytes counted while running."""

    y: FArr
    arrivals: IArr
    bytes: dict[Leg, FArr]


class _Buffer:
    """Token rows held by one rank, looked up by token id."""

    def __init__(self) -> None:
        self.ids: list[IArr] = []
        self.rows: list[FArr] = []
        self._ids: IArr | None = None
        self._rows: FArr | None = None

    def put(self, ids: IArr, rows: FArr) -> None:
        self.ids.append(ids)
        self.rows.append(rows)
        self._ids = None

    def get(self, ids: IArr, who: str) -> FArr:
        if self._ids is None:
            all_ids = np.concatenate(self.ids) if self.ids else np.zeros(0, np.int64)
            order = np.argsort(all_ids, kind="stable")
            self._ids = all_ids[order]
            self._rows = np.concatenate(self.rows)[order] if self.rows else np.zeros((0, 0))
        pos = np.searchsorted(self._ids, ids)
        ok = (pos < self._ids.size) & (self._ids[np.minimum(pos, self._ids.size - 1)] == ids)
        if not np.all(ok):
            raise AssertionError(f"{who} does not hold token(s) {ids[~ok][:5].tolist()}")
        assert self._rows is not None
        out: FArr = self._rows[pos]
        return out


def _groups(a: IArr, b: IArr) -> list[tuple[tuple[int, int], IArr]]:
    """Indices grouped by the pair (a, b), in sorted order: one sort instead of a mask per pair."""
    if a.size == 0:
        return []
    order = np.lexsort((b, a))
    ka, kb = a[order], b[order]
    cut = np.flatnonzero((ka[1:] != ka[:-1]) | (kb[1:] != kb[:-1])) + 1
    starts = np.r_[0, cut]
    return [
        ((int(ka[i]), int(kb[i])), idx)
        for i, idx in zip(starts.tolist(), np.split(order, cut), strict=True)
    ]


def execute_moe(
    x: FArr,
    routing: Routing,
    plan: DispatchPlan,
    placement: Placement,
    weights: MoEWeights,
    path: str = "two_hop",
    dispatch_dtype: str | None = None,
    combine_dtype: str | None = None,
) -> MoEResult:
    """Run dispatch → experts → combine rank by rank as the plan says (see module doc)."""
    if path not in ("two_hop", "direct"):
        raise SpecError(f"unknown path {path!r}; use two_hop or direct", key="path")
    x = np.asarray(x, dtype=np.float64)
    t_count, hidden = x.shape
    r_count, g = plan.n_ranks, plan.gpus_per_node
    if hidden != plan.hidden or routing.tokens != t_count:
        raise SpecError("x does not match the plan (tokens or hidden size)", key="x")
    b_disp = bytes_per_token(hidden, dispatch_dtype or "fp32")
    b_comb = bytes_per_token(hidden, combine_dtype or "fp32")
    nbytes: dict[Leg, FArr] = {
        (p, k): np.zeros((r_count, r_count))
        for p in ("dispatch", "combine")
        for k in ("nvlink", "rdma")
    }
    kind = np.where(np.arange(r_count)[:, None] // g == np.arange(r_count)[None, :] // g, 0, 1)
    kinds = ("nvlink", "rdma")

    def count(phase: str, src: IArr, dst: IArr, per: float) -> None:
        for k in (0, 1):
            sel = kind[src, dst] == k
            np.add.at(nbytes[(phase, kinds[k])], (src[sel], dst[sel]), per)

    # ---- dispatch: each rank starts with its own tokens, already in wire precision
    xw = _wire(x, dispatch_dtype)
    have = [_Buffer() for _ in range(r_count)]
    for r in range(r_count):
        own = np.flatnonzero(plan.token_src == r)
        have[r].put(own, xw[own])
    recv = [_Buffer() for _ in range(r_count)]
    if path == "two_hop":
        # leg 1: InfiniBand once per (token, remote node), to the same local index there
        for (f, src), sel in _groups(plan.ib_dst, plan.ib_src):
            ids = plan.ib_token[sel]
            have[f].put(ids, have[src].get(ids, f"rank {src}"))
        count("dispatch", plan.ib_src, plan.ib_dst, b_disp)
        sender = plan.pair_sender
    else:
        sender = plan.pair_src
    # leg 2 (or the direct send): sender → destination rank
    for (d, src), sel in _groups(plan.pair_dst, sender):
        ids = plan.pair_token[sel]
        recv[d].put(ids, have[src].get(ids, f"rank {src}"))
    moved = sender != plan.pair_dst
    count("dispatch", sender[moved], plan.pair_dst[moved], b_disp)

    # ---- experts: each rank computes its slots; partial[d] = Σ over its slots of w · FFN
    arrivals = np.zeros(routing.topk_idx.shape, dtype=np.int64)
    partial = np.zeros((plan.pair_token.size, hidden))
    pair_key = plan.pair_token * r_count + plan.pair_dst  # sorted: pairs are (token, rank) sorted
    kept_t, kept_j = np.nonzero(routing.topk_idx >= 0)
    slot_dst = plan.dst_rank[kept_t, kept_j]
    slot_e = routing.topk_idx[kept_t, kept_j]
    for (d, e), sel in _groups(slot_dst, slot_e):
        t, j = kept_t[sel], kept_j[sel]
        if e not in placement.rank_experts[d]:
            raise AssertionError(f"rank {d} got token(s) for expert {e} it does not host")
        arrivals[t, j] += 1
        rows = recv[d].get(t, f"rank {d}")
        out = swiglu(rows, weights.w_gate[e], weights.w_up[e], weights.w_down[e])
        # within one (rank, expert) group each token appears once, so plain += is safe
        partial[np.searchsorted(pair_key, t * r_count + d)] += (
            routing.topk_weight[t, j][:, None] * out
        )

    # ---- combine: partials travel back the same way, reduced at the forwarder (two-hop)
    y = _shared(x, weights)
    back = _wire(partial, combine_dtype)
    back = np.where(moved[:, None], back, partial)  # local partials never cross a link
    count("combine", plan.pair_dst[moved], sender[moved], b_comb)
    reach_src = sender == plan.pair_src
    np.add.at(y, plan.pair_token[reach_src], back[reach_src])
    if path == "two_hop":
        fwd = ~reach_src  # reduce per (token, forwarder), then one RDMA send per pair
        key = plan.pair_token[fwd] * r_count + sender[fwd]
        uniq, inv = np.unique(key, return_inverse=True)
        red = np.zeros((uniq.size, hidden))
        np.add.at(red, inv, back[fwd])
        ut, uf = uniq // r_count, uniq % r_count
        np.add.at(y, ut, _wire(red, combine_dtype))
        count("combine", uf, plan.token_src[ut], b_comb)
    return MoEResult(y, arrivals, nbytes)


def expected_bytes(
    plan: DispatchPlan,
    path: str = "two_hop",
    dispatch_dtype: str | None = None,
    combine_dtype: str | None = None,
) -> dict[Leg, FArr]:
    """The plan's wire bytes per (phase, link kind) as [R, R] matrices (sender → receiver)."""
    bd = bytes_per_token(plan.hidden, dispatch_dtype or "fp32")
    bc = bytes_per_token(plan.hidden, combine_dtype or "fp32")
    rdma, nvl = (
        ("rdma_tokens", "nvl_tokens") if path == "two_hop" else ("direct_rdma", "direct_nvl")
    )
    out: dict[Leg, FArr] = {}
    for phase, per in (("dispatch", bd), ("combine", bc)):
        out[(phase, "rdma")] = plan.matrix(rdma, phase).astype(np.float64) * per
        out[(phase, "nvlink")] = plan.matrix(nvl, phase).astype(np.float64) * per
    return out
