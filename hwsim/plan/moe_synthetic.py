"""Synthetic routing for the all-to-all simulator, sampled exactly without drawing every score.

DeepEP's test routing draws ``tokens × experts`` scores (``abs(randn) + 1``), picks each
token's ``topk_groups`` nodes by per-node max score, then its top-k experts inside them. At
EP 256 × 4096 tokens that is 268 M scores and a partial sort per token: seconds of CPU for a
plan the simulator then reduces to a few thousand flows. This module draws the same routing
*in law* from a fraction of the numbers, with an exponential race:

* Selection depends only on the order of the scores. Scores ``log p_e + Gumbel`` (``uniform``
  and ``zipf:S``; ``deepep``'s iid ``abs(randn)+1`` has the order of iid scores, i.e. uniform
  ``p``) order experts as the arrival times ``X_e ~ Exp(rate p_e)`` in reverse: top-k = the k
  earliest arrivals (``-log X_e`` is Gumbel with location ``log p_e``).
* A group's first arrival is ``Exp(P_g)`` with ``P_g = Σ_group p_e``, independent of which
  expert it is (∝ p_e). So the chosen groups are the ``topk_groups`` earliest of ``n_groups``
  draws ``τ_g`` — the per-group max score of the full draw.
* Inside a chosen group, draw fresh times ``Y_e ~ Exp(p_e)`` and shift them so that their
  first arrival lands on ``τ_g``: ``X_e = τ_g + Y_e − min Y``. By memorylessness the argmin is
  ∝ p_e and the others are ``τ_g`` plus independent ``Exp(p_e)``: exactly the conditional law
  of the group's times given its first arrival. Unchosen groups are never drawn.

Per token that is ``n_groups + topk_groups × experts/n_groups`` draws (EP 256: 64 instead of
256). With uniform popularity two shortcuts cut it further: groups larger than k need only
their first k arrivals (spacings ``Exp/(q-1)``, ``Exp/(q-2)``, …; the experts' identities are
a uniformly random ordered choice; EP 64: 8 + 4 × 8 draws instead of 256), and without a group
limit the top-k is a uniformly random ordered k-subset (k draws). The top-k of the race is one
SIMD row sort of keys that carry the column index in the last bits of the float64 time
(:func:`smallest_k`). Each rank ``r`` draws from the stream ``default_rng([seed, r])``, so the
plan is bit-identical for a seed. ``tests/unit/test_plan_moe_synthetic.py`` checks the law
against the full draw.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from hwsim.plan.moe_dispatch import (
    DispatchPlan,
    IArr,
    Placement,
    even_token_src,
    place_experts,
    plan_dispatch,
    resolve_replicas,
)
from hwsim.plan.moe_gating import FArr, check_groups, popularity
from hwsim.spec.limits import check_memory, format_count

__all__ = ["check_plan_size", "race_topk", "smallest_k", "synthetic_dispatch_plan"]

#: Host memory per routed (token, expert) slot of a plan (bytes): top-k indices, destinations
#: and their histograms. tracemalloc peaks of `hwsim moe` measured 17.6-21 B at 0.5-4 M slots
#: and 57 B at 1 M (fixed costs); 40 B stays above every measurement.
BYTES_PER_SLOT = 40
#: Per-rank scratch of the routing race, per token and expert (float64 times + sort keys).
BYTES_PER_TOKEN_EXPERT = 16
#: Rank-by-rank matrices of the plan and the simulator's flow set (~40 float64/int64 ones).
BYTES_PER_RANK_PAIR = 320


def check_plan_size(n_ranks: int, tokens_per_rank: int, n_experts: int, top_k: int) -> None:
    """Refuse, before one number is drawn, a plan whose estimated host memory is over
    ``--max-memory`` (:class:`~hwsim.spec.limits.LimitExceeded`); O(1) in the sizes."""
    slots = n_ranks * tokens_per_rank * top_k
    need = (
        slots * BYTES_PER_SLOT
        + tokens_per_rank * n_experts * BYTES_PER_TOKEN_EXPERT
        + n_ranks * n_ranks * BYTES_PER_RANK_PAIR
    )
    check_memory(
        need,
        cheaper_mode_hint=f"the plan routes {format_count(slots)} (token, expert) slots over "
        f"{n_ranks:,} ranks (--ep × --tokens × --topk); use fewer --tokens or a smaller --ep",
    )


Work = dict[str, np.ndarray]


def _buf(work: Work | None, name: str, shape: tuple[int, ...], dtype: type) -> np.ndarray:
    """A scratch array reused across ranks: every rank has the same shapes, and fresh
    multi-MB allocations cost page faults (glibc returns them to the OS on free)."""
    if work is None:
        return np.empty(shape, dtype)
    b = work.get(name)
    if b is None or b.shape != shape or b.dtype != dtype:
        b = work[name] = np.empty(shape, dtype)
    return b


def smallest_k(
    x: FArr, k: int, out: IArr | None = None, keys: NDArray[np.uint64] | None = None
) -> IArr:
    """Columns of the ``k`` smallest entries of each row of a non-negative float64 array, in
    ascending order of value (``out``/``keys``: optional ``[T, k]`` int64 / ``x``-shaped uint64
    scratch).

    The column index replaces the lowest ``ceil(log2(width))`` mantissa bits (non-negative
    IEEE doubles order like their bit patterns), so a plain row sort — vectorised in numpy, ~3×
    faster than ``argpartition`` on rows of 32-256 — yields the order and the index at once.
    Values closer than ~2^-44 relative (8 index bits) count as ties, broken by lower column."""
    t, w = x.shape
    nbits = max(1, (w - 1).bit_length())
    low = np.uint64((1 << nbits) - 1)
    keys = np.empty((t, w), np.uint64) if keys is None else keys
    np.bitwise_and(np.ascontiguousarray(x, dtype=np.float64).view(np.uint64), ~low, out=keys)
    keys |= np.arange(w, dtype=np.uint64)
    keys.sort(axis=1)
    res: IArr = np.empty((t, k), np.int64) if out is None else out
    np.bitwise_and(keys[:, :k], low, out=res, casting="unsafe")  # < 2^16: exact in int64
    return res


def _row_min(y: FArr, out: FArr) -> FArr:
    """Min over the last (short) axis into ``out``, by an elementwise loop (numpy's reduction
    over a short inner axis is several times slower)."""
    if y.shape[-1] > 32:
        y.min(axis=-1, out=out)
        return out
    np.copyto(out, y[..., 0])
    for i in range(1, y.shape[-1]):
        np.minimum(out, y[..., i], out=out)
    return out


def _first_in_row(a: NDArray[np.integer]) -> NDArray[np.bool_]:
    """``[k, T]`` mask of the first occurrence of each value in each column (a token's ``k``
    slots): pairwise compares of ``k`` contiguous rows, O(k²·T), cheaper than sorting for the
    small ``k`` where :func:`_distinct_tuples` is used."""
    keep = np.ones(a.shape, dtype=bool)
    for j in range(1, a.shape[0]):
        for i in range(j):
            keep[j] &= a[j] != a[i]
    return keep


def _distinct_tuples(rng: np.random.Generator, tokens: int, n: int, k: int) -> IArr:
    """Uniformly random ordered k-tuples of distinct values in ``0..n-1`` (one per token): iid
    tuples, rows with a repeat redrawn (accepted with probability ``n!/((n-k)! n^k) ≥ 1/2``
    where used). The law of an unlimited top-k of iid scores, from k draws instead of n."""
    out: IArr = rng.integers(0, n, (tokens, k))
    bad = np.flatnonzero(~_first_in_row(np.ascontiguousarray(out.T)).all(axis=0))
    while bad.size:
        out[bad] = rng.integers(0, n, (bad.size, k))
        bad = bad[~_first_in_row(np.ascontiguousarray(out[bad].T)).all(axis=0)]
    return out


def _race_spacings(
    rng: np.random.Generator, tau: FArr, chosen: IArr, q: int, k: int, work: Work | None
) -> IArr:
    """Uniform popularity, groups larger than k: only each chosen group's first ``k``
    arrivals matter. After the first (at ``τ``), the group's other ``q - 1`` unit-rate clocks
    ring after spacings ``Exp/(q-1)``, ``Exp/(q-2)``, … (memorylessness), and which expert
    rings j-th is a uniformly random ordered choice, independent of the times: the identities
    of the selected slots are iid positions redrawn until distinct within each group."""
    t, tg = chosen.shape
    times = _buf(work, "times", (t, tg, k), np.float64)
    rng.standard_exponential(out=times)  # column 0 is overwritten by τ (kept contiguous)
    times[:, :, 1:] /= np.arange(q - 1, q - k, -1, dtype=np.float64)
    times[:, :, 0] = np.take_along_axis(tau, chosen, axis=1)
    for j in range(1, k):
        times[:, :, j] += times[:, :, j - 1]
    col = smallest_k(times.reshape(t, tg * k), k, keys=_buf(work, "kt", (t, tg * k), np.uint64))
    grp = col // k  # which chosen group each selected slot comes from
    pos = rng.integers(0, q, (t, k))
    bad = np.flatnonzero(~_first_in_row(np.ascontiguousarray((grp * q + pos).T)).all(axis=0))
    while bad.size:
        pos[bad] = rng.integers(0, q, (bad.size, k))
        again = ~_first_in_row(np.ascontiguousarray((grp[bad] * q + pos[bad]).T)).all(axis=0)
        bad = bad[again]
    out: IArr = np.take_along_axis(chosen, grp, axis=1) * q + pos
    return out


def race_topk(
    rng: np.random.Generator,
    tokens: int,
    pop: FArr,
    top_k: int,
    n_groups: int = 1,
    topk_groups: int = 1,
    work: Work | None = None,
) -> IArr:
    """Group-limited top-k experts ``[tokens, top_k]`` (descending score) of scores
    ``log pop_e + Gumbel``, groups ranked by their max score, drawn by the exponential race of
    the module docstring: the same law as :func:`hwsim.plan.moe_gating.group_limited_topk` with
    ``group_score="max"`` on :func:`hwsim.plan.moe_gating.synthetic_logits`. Without a group
    limit and with uniform ``pop`` the answer is a uniformly random ordered k-subset, drawn
    directly (:func:`_distinct_tuples`). ``work``: scratch arrays kept between calls."""
    e = pop.size
    check_groups(e, top_k, n_groups, topk_groups)
    uniform = bool(np.all(pop == pop[0]))
    if topk_groups >= n_groups and uniform and math.perm(e, top_k) >= e**top_k / 2:
        return _distinct_tuples(rng, tokens, e, top_k)
    if topk_groups >= n_groups:  # no group limit: one race over every expert
        x = _buf(work, "x", (tokens, e), np.float64)
        rng.standard_exponential(out=x)
        if not uniform:
            x /= pop
        return smallest_k(x, top_k, keys=_buf(work, "kx", x.shape, np.uint64))
    q = e // n_groups
    tau = _buf(work, "tau", (tokens, n_groups), np.float64)
    rng.standard_exponential(out=tau)
    tau /= pop.reshape(n_groups, q).sum(axis=1) if not uniform else q  # uniform: rate 1/expert
    chosen = smallest_k(  # [T, tg], earliest group first
        tau,
        topk_groups,
        out=_buf(work, "chosen", (tokens, topk_groups), np.int64),
        keys=_buf(work, "ktau", tau.shape, np.uint64),
    )
    if uniform and q > top_k:
        return _race_spacings(rng, tau, chosen, q, top_k, work)
    y = _buf(work, "y", (tokens, topk_groups, q), np.float64)
    rng.standard_exponential(out=y)
    if not uniform:
        y /= pop.reshape(n_groups, q)[chosen]
    shift = _row_min(y, _buf(work, "m", (tokens, topk_groups), np.float64))
    shift -= np.take_along_axis(tau, chosen, axis=1)
    y -= shift[:, :, None]  # each chosen group's first arrival lands on its τ
    col = smallest_k(
        y.reshape(tokens, topk_groups * q),
        top_k,
        keys=_buf(work, "ky", (tokens, topk_groups * q), np.uint64),
    )
    out: IArr = np.take_along_axis(chosen, col // q, axis=1) * q + col % q
    return out


def synthetic_dispatch_plan(
    n_ranks: int,
    tokens_per_rank: int,
    hidden: int,
    n_experts: int,
    top_k: int,
    topk_groups: int | None = None,
    routing: str = "deepep",
    gpus_per_node: int = 8,
    n_redundant: int = 0,
    seed: int = 0,
    dispatch_dtype: str = "fp8",
) -> tuple[DispatchPlan, Placement, IArr]:
    """DeepEP-style test routing for the all-to-all simulator.

    Experts are spread evenly over ranks; groups are nodes. Each rank draws its own seeded
    routing (``deepep``: ``abs(randn)+1`` scores; ``uniform``; ``zipf:S`` hot experts), picking
    at most ``min(nodes, topk_groups)`` nodes by per-node max score, then its top-k experts
    inside them (as DeepEP's ``test_internode.py``), sampled by :func:`race_topk`. Returns the
    plan, the placement and ``topk_idx`` ``[ranks × tokens_per_rank, top_k]``. A plan over
    ``--max-memory`` is refused first (:func:`check_plan_size`)."""
    check_plan_size(n_ranks, tokens_per_rank, n_experts, top_k)
    g = min(gpus_per_node, n_ranks)
    n_nodes = max(1, n_ranks // g)
    groups = n_nodes if n_experts % n_nodes == 0 else 1
    tg = groups if topk_groups is None else max(1, min(groups, topk_groups))
    pop = popularity(n_experts, routing, seed)  # deepep: iid scores, uniform popularity
    idx = np.empty((n_ranks * tokens_per_rank, top_k), dtype=np.int64)
    work: Work = {}
    for r in range(n_ranks):  # one rank at a time: memory ~ tokens_per_rank × experts / groups
        rng = np.random.default_rng([seed, r])
        sl = slice(r * tokens_per_rank, (r + 1) * tokens_per_rank)
        idx[sl] = race_topk(rng, tokens_per_rank, pop, top_k, groups, tg, work)
    load = np.bincount(idx.reshape(-1), minlength=n_experts)
    placement = place_experts(n_experts, n_ranks, g, n_redundant, load)
    dst = resolve_replicas(idx, placement)
    src = even_token_src(idx.shape[0], n_ranks)
    return plan_dispatch(dst, src, n_ranks, g, hidden, dispatch_dtype), placement, idx
