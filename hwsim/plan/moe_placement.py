"""Expert placement on EP ranks and the destination rank of every (token, slot).

* :func:`place_experts` — experts in contiguous blocks over EP ranks (``gpus_per_node`` per
  node), plus ``n_redundant`` copies of the hottest experts on the least-loaded ranks
  (DeepSeek-V3 deployment).
* :func:`resolve_replicas` — sends each replicated expert's tokens to its replicas by
  water-filling (least-loaded replica first).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from hwsim.spec.errors import SpecError
from hwsim.spec.limits import check_budget

#: Simpy-event equivalents (~12 µs) per expert or rank scanned while placing one redundant copy
#: (measured ~1.5 µs: 7,936 copies of 256 experts over 32 ranks in 3.3 s).
PLACEMENT_EVENTS_PER_ITEM = 1.5 / 12

IArr = NDArray[np.int64]
FArr = NDArray[np.float64]


@dataclass(frozen=True, eq=False)
class Placement:
    """Experts on EP ranks. ``rank_experts[r]`` lists the logical experts with a copy on rank r
    (``rank_experts[r][j]`` is local slot j); ``replicas[e]`` the ranks holding expert e."""

    n_experts: int
    n_ranks: int
    gpus_per_node: int
    rank_experts: tuple[tuple[int, ...], ...]
    replicas: tuple[tuple[int, ...], ...]

    @property
    def n_nodes(self) -> int:
        return self.n_ranks // self.gpus_per_node

    @property
    def n_redundant(self) -> int:
        return sum(len(r) for r in self.replicas) - self.n_experts

    def home(self) -> IArr:
        """Primary rank of each expert ([E])."""
        return np.array([r[0] for r in self.replicas], dtype=np.int64)

    def slot_of(self, expert: int, rank: int) -> int:
        """Local slot index of ``expert`` on ``rank``."""
        return self.rank_experts[rank].index(expert)


def place_experts(
    n_experts: int,
    n_ranks: int,
    gpus_per_node: int = 8,
    n_redundant: int = 0,
    expert_load: NDArray[np.number] | None = None,
    same_node: bool = False,
) -> Placement:
    """Contiguous blocks of experts per rank, then ``n_redundant`` extra copies: repeatedly copy
    the expert with the highest load per copy onto the least-loaded rank that lacks it
    (``same_node``: only ranks of the expert's home node, which keeps node-limited routing
    within its node budget). ``expert_load`` defaults to uniform."""
    if n_ranks < 1 or n_experts < 1:
        raise SpecError("n_experts and n_ranks must be >= 1", key="n_ranks")
    g = min(gpus_per_node, n_ranks)
    if n_ranks % g:
        raise SpecError(
            f"EP ranks ({n_ranks}) must be a multiple of gpus_per_node ({gpus_per_node})",
            key="n_ranks",
        )
    most = n_experts * ((g if same_node else n_ranks) - 1)  # every expert on every rank
    if n_redundant > most:
        raise SpecError(
            f"{n_redundant:,} redundant copies: at most {most:,} fit ({n_experts:,} experts, "
            f"each on at most {g if same_node else n_ranks:,} ranks)",
            key="n_redundant",
        )
    # each copy scans the experts and ranks in Python (~1.5 µs per expert or rank)
    check_budget(
        n_redundant * (n_experts + n_ranks) * PLACEMENT_EVENTS_PER_ITEM,
        cheaper_mode_hint="place fewer redundant expert copies",
    )
    hosts: list[list[int]] = [list(b) for b in np.array_split(np.arange(n_experts), n_ranks)]
    reps: list[list[int]] = [[] for _ in range(n_experts)]
    for r, es in enumerate(hosts):
        for e in es:
            reps[e].append(r)
    load = np.ones(n_experts) if expert_load is None else np.asarray(expert_load, float)
    if load.shape != (n_experts,):
        raise SpecError(f"expert_load must have shape ({n_experts},)", key="expert_load")
    for _ in range(n_redundant):
        n_rep = np.array([len(x) for x in reps], dtype=float)
        per_copy = load / n_rep
        rank_load = np.array([sum(per_copy[e] for e in es) for es in hosts])
        for e in np.argsort(-per_copy, kind="stable"):
            cand = [r for r in range(n_ranks) if r not in reps[e]]
            if same_node:
                cand = [r for r in cand if r // g == reps[e][0] // g]
            if cand:
                best = min(cand, key=lambda r: (rank_load[r], len(hosts[r]), r))
                hosts[best].append(int(e))
                reps[int(e)].append(best)
                break
        else:
            raise SpecError("no rank can take another redundant expert", key="n_redundant")
    return Placement(
        n_experts,
        n_ranks,
        g,
        tuple(tuple(int(e) for e in h) for h in hosts),
        tuple(tuple(x) for x in reps),
    )


def _waterfill(loads: FArr, n: int) -> IArr:
    """Integer split of ``n`` items over bins with current ``loads``, filling the least-loaded
    first (the result evens out ``loads + share`` as far as integers allow)."""
    order = np.argsort(loads, kind="stable")
    ls = loads[order]
    m = 1
    while m < len(ls) and (n + ls[: m + 1].sum()) / (m + 1) > ls[m]:
        m += 1
    level = (n + ls[:m].sum()) / m
    share = np.zeros(len(ls), dtype=np.int64)
    share[:m] = np.floor(level - ls[:m]).astype(np.int64)
    share[: n - int(share.sum())] += 1  # remainder to the least loaded
    out = np.empty_like(share)
    out[order] = share
    return out


def resolve_replicas(topk_idx: IArr, placement: Placement) -> IArr:
    """Destination rank of every (token, slot) ([T, k], ``-1`` for dropped slots).

    Experts with one copy go to it. Tokens of a replicated expert are split over its copies by
    water-filling against the load already assigned to those ranks (hottest experts first), in
    contiguous runs of token order; this is "route to the least-loaded replica" at batch level."""
    if topk_idx.size and topk_idx.max() >= placement.n_experts:
        raise SpecError("expert id out of range for the placement", key="topk_idx")
    home = placement.home()
    multi = [e for e, r in enumerate(placement.replicas) if len(r) > 1]
    if not multi and (topk_idx.size == 0 or topk_idx.min() >= 0):
        out: IArr = home[topk_idx]  # one gather: no dropped slots, no replicas
        return out
    dst = np.where(topk_idx >= 0, home[np.maximum(topk_idx, 0)], -1)
    if not multi:
        return dst
    valid = topk_idx >= 0
    counts = np.bincount(topk_idx[valid], minlength=placement.n_experts)
    single = np.array([len(r) == 1 for r in placement.replicas])
    rank_load = np.bincount(
        dst[valid & single[np.maximum(topk_idx, 0)]], minlength=placement.n_ranks
    ).astype(float)
    flat_e = topk_idx.reshape(-1)
    flat_dst = dst.reshape(-1)
    for e in sorted(multi, key=lambda x: -counts[x]):
        ranks = np.array(placement.replicas[e])
        share = _waterfill(rank_load[ranks], int(counts[e]))
        rank_load[ranks] += share
        where = np.flatnonzero(flat_e == e)
        flat_dst[where] = np.repeat(ranks, share)
    return flat_dst.reshape(dst.shape)
