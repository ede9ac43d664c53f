"""The MoE dispatch plan: which token goes to which rank, by which path (placement of experts
on ranks: :mod:`hwsim.plan.moe_placement`).

* :func:`plan_dispatch` — from the destination rank of every (token, slot) build a
  :class:`DispatchPlan`: unique (token, destination rank) pairs (a token goes once to each rank
  hosting at least one of its experts), the direct path and DeepEP's two-hop path (InfiniBand
  once per (token, destination node) to the rank with the same local index, then NVLink inside
  that node), ``[ranks × ranks]`` token matrices per leg, the ``[ranks × nodes]`` RDMA pair
  matrix, bytes per token per dtype, and the exact DeepEP byte metrics. The matrices come from
  two histograms over the tokens; per-pair arrays (:class:`PairArrays`) are built on demand.
* :func:`routing_stats` — tokens per expert / rank / node and max/mean imbalance.

Combine moves the same tokens back (every matrix transposed) in BF16.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from hwsim.plan.moe_gating import imbalance
from hwsim.plan.moe_placement import Placement, place_experts, resolve_replicas
from hwsim.spec.errors import SpecError

__all__ = [  # placement lives in moe_placement; re-exported for existing imports
    "DispatchPlan",
    "Flow",
    "PairArrays",
    "Placement",
    "RoutingStats",
    "bytes_per_token",
    "even_token_src",
    "pair_arrays",
    "place_experts",
    "plan_dispatch",
    "resolve_replicas",
    "routing_stats",
]

IArr = NDArray[np.int64]
FArr = NDArray[np.float64]
Path = Literal["direct", "two_hop"]
LinkKind = Literal["nvlink", "rdma"]


def bytes_per_token(hidden: int, dtype: str) -> float:
    """Bytes one token's hidden vector occupies on the wire.

    ``fp8``: 1 byte per value plus one float32 scale per 128 values (DeepEP / DeepSeek-V3
    block quantisation): ``hidden·(1 + 4/128)`` for hidden a multiple of 128. ``bf16``: 2·hidden."""
    if dtype == "fp8":
        return float(hidden + 4 * math.ceil(hidden / 128))
    if dtype in ("bf16", "fp16"):
        return 2.0 * hidden
    if dtype == "fp32":
        return 4.0 * hidden
    raise SpecError(f"unknown dispatch dtype {dtype!r}; use fp8, bf16, fp16 or fp32", key="dtype")


# ---------------------------------------------------------------------- dispatch plan
@dataclass(frozen=True, eq=False)
class PairArrays:
    """Per-pair arrays of a plan. Unique (token, destination rank) pairs, sorted by token then
    rank: ``token``, ``src``, ``dst``, ``sender`` (the rank that delivers the token over NVLink
    in the two-hop path: the source itself inside its node, else the forwarder). Unique (token,
    remote node) InfiniBand pairs: ``ib_token``, ``ib_src``, ``ib_dst`` (forwarder = same local
    index on that node)."""

    token: IArr
    src: IArr
    dst: IArr
    sender: IArr
    ib_token: IArr
    ib_src: IArr
    ib_dst: IArr


def pair_arrays(dst_rank: IArr, token_src: IArr, gpus_per_node: int) -> PairArrays:
    """The per-pair arrays of ``dst_rank`` ``[T, k]`` (-1 dropped) and ``token_src`` ``[T]``:
    O(T·k log k), one row sort. Only the functional executor needs them; the simulator works
    from the token matrices."""
    g = gpus_per_node
    t = dst_rank.shape[0]
    srt = np.sort(dst_rank, axis=1)
    first = np.ones_like(srt, dtype=bool)
    first[:, 1:] = srt[:, 1:] != srt[:, :-1]
    keep = first & (srt >= 0)
    rows = np.broadcast_to(np.arange(t)[:, None], srt.shape)
    p_tok, p_dst = rows[keep], srt[keep]
    p_src = token_src[p_tok]
    p_node, src_node = p_dst // g, p_src // g
    # unique (token, node): pairs are sorted by (token, rank), so nodes are sorted per token
    new_node = np.ones(p_tok.size, dtype=bool)
    new_node[1:] = (p_tok[1:] != p_tok[:-1]) | (p_node[1:] != p_node[:-1])
    remote = new_node & (p_node != src_node)
    ib_src = p_src[remote]
    sender = np.where(p_node == src_node, p_src, p_node * g + p_src % g)
    return PairArrays(
        p_tok, p_src, p_dst, sender, p_tok[remote], ib_src, p_node[remote] * g + ib_src % g
    )


@dataclass(frozen=True, eq=False)
class DispatchPlan:
    """Who sends which tokens where, for the direct and the two-hop path.

    Matrices ``[ranks × ranks]`` of token counts (row = sender, column = receiver):
    ``tokens`` (direct, incl. diagonal = local), ``direct_nvl``/``direct_rdma`` (direct path
    split by link kind), ``rdma_tokens`` (two-hop IB leg), ``nvl_tokens`` (two-hop NVLink leg:
    intra-node sends plus forwards). ``rdma_pairs`` ``[ranks × nodes]`` counts (token,
    destination node) pairs including the source's own node (DeepEP's RDMA metric).
    ``expert_copies`` ``[ranks × ranks]`` counts every kept (token, slot) by its destination
    rank: one message per selected expert (DeepEP low-latency, per-expert all-to-all).

    Per-pair arrays (:class:`PairArrays`; ``pair_token``, ``pair_src``, ``pair_dst``,
    ``pair_sender``, ``ib_token``, ``ib_src``, ``ib_dst``) are built from ``dst_rank`` and
    ``token_src`` on first use (cached), unless given as ``pairs``: at EP 256 × 4096 tokens
    they are ~100 MB and a row sort that the simulator never needs."""

    n_ranks: int
    gpus_per_node: int
    hidden: int
    dispatch_dtype: str
    combine_dtype: str
    token_src: IArr
    dst_rank: IArr
    tokens: IArr
    direct_nvl: IArr
    direct_rdma: IArr
    rdma_tokens: IArr
    nvl_tokens: IArr
    rdma_pairs: IArr
    expert_copies: IArr
    pairs: PairArrays | None = None

    @functools.cached_property
    def pair_arrays(self) -> PairArrays:
        """``pairs`` if given, else built from ``dst_rank`` and ``token_src`` (once)."""
        if self.pairs is not None:
            return self.pairs
        return pair_arrays(self.dst_rank, self.token_src, self.gpus_per_node)

    @property
    def pair_token(self) -> IArr:
        return self.pair_arrays.token

    @property
    def pair_src(self) -> IArr:
        return self.pair_arrays.src

    @property
    def pair_dst(self) -> IArr:
        return self.pair_arrays.dst

    @property
    def pair_sender(self) -> IArr:
        return self.pair_arrays.sender

    @property
    def ib_token(self) -> IArr:
        return self.pair_arrays.ib_token

    @property
    def ib_src(self) -> IArr:
        return self.pair_arrays.ib_src

    @property
    def ib_dst(self) -> IArr:
        return self.pair_arrays.ib_dst

    @property
    def n_nodes(self) -> int:
        return self.n_ranks // self.gpus_per_node

    def bytes_per_token(self, phase: str = "dispatch") -> float:
        """Wire bytes per token for ``dispatch`` (default fp8) or ``combine`` (default bf16)."""
        dtype = self.dispatch_dtype if phase == "dispatch" else self.combine_dtype
        return bytes_per_token(self.hidden, dtype)

    def matrix(self, leg: str, phase: str = "dispatch") -> IArr:
        """Token matrix of a leg (``tokens``, ``direct_nvl``, ``direct_rdma``, ``rdma_tokens``,
        ``nvl_tokens``); combine returns it transposed (tokens travel back)."""
        m: IArr = getattr(self, leg)
        return m if phase == "dispatch" else m.T

    def flows(self, path: Path = "two_hop", phase: str = "dispatch") -> list[Flow]:
        """Tokens aggregated into flows per (src, dst, link kind), local copies excluded."""
        legs: tuple[tuple[str, LinkKind], ...] = (
            (("rdma_tokens", "rdma"), ("nvl_tokens", "nvlink"))
            if path == "two_hop"
            else (("direct_rdma", "rdma"), ("direct_nvl", "nvlink"))
        )
        bpt = self.bytes_per_token(phase)
        out: list[Flow] = []
        for leg, kind in legs:
            m = self.matrix(leg, phase)
            src, dst = np.nonzero(m)
            for s, d in zip(src.tolist(), dst.tolist(), strict=True):
                out.append(Flow(s, d, kind, int(m[s, d]), int(m[s, d]) * bpt))
        return out

    def deepep_rdma_bytes(self, phase: str = "dispatch") -> FArr:
        """Per rank: (token, distinct destination node) pairs, own node included, × bytes per
        token — DeepEP's internode metric numerator (divide by kernel time for GB/s)."""
        out: FArr = self.rdma_pairs.sum(axis=1) * self.bytes_per_token(phase)
        return out

    def deepep_nvl_bytes(self, phase: str = "dispatch") -> FArr:
        """Per rank: tokens it receives (once per receiving rank, own tokens included) × bytes
        per token — DeepEP's intranode metric numerator."""
        out: FArr = self.tokens.sum(axis=0) * self.bytes_per_token(phase)
        return out

    def bytes_by_link_kind(
        self, path: Path = "two_hop", phase: str = "dispatch"
    ) -> dict[str, float]:
        """Total bytes on NVLink and RDMA for a path (local copies excluded)."""
        bpt = self.bytes_per_token(phase)
        if path == "two_hop":
            return {
                "rdma": float(self.rdma_tokens.sum() * bpt),
                "nvlink": float(self.nvl_tokens.sum() * bpt),
            }
        return {
            "rdma": float(self.direct_rdma.sum() * bpt),
            "nvlink": float(self.direct_nvl.sum() * bpt),
        }


@dataclass(frozen=True)
class Flow:
    """Aggregated traffic from ``src`` to ``dst`` rank over one link kind."""

    src: int
    dst: int
    kind: LinkKind
    tokens: int
    nbytes: float


def _small_int(x: IArr, bound: int) -> NDArray[np.integer]:
    """``x`` in the narrowest signed dtype holding ``-1 .. bound`` (less memory traffic)."""
    for dt in (np.int8, np.int16, np.int32):
        if bound <= np.iinfo(dt).max:
            return x.astype(dt)
    return x


CHUNK_TOKENS = 1 << 16  # tokens per histogram chunk: temporaries of a few MB, reused


def _pair_histograms(dst_rank: IArr, token_src: IArr, r: int, g: int) -> tuple[IArr, IArr, IArr]:
    """Per source rank, in chunks of tokens: unique (token, rank) pairs by rank ``[R × R]``,
    unique (token, node) pairs by node ``[R × nodes]`` and all (token, slot) assignments by rank
    ``[R × R]``. Each chunk's rows are sorted (k values), so repeats of a rank — and of a node
    — are neighbours."""
    n = r // g
    tok = np.zeros(r * r + 1, dtype=np.int64)
    nod = np.zeros(r * n + 1, dtype=np.int64)
    slots = np.zeros(r * r + 1, dtype=np.int64)

    def count(acc: IArr, src: IArr, ids: NDArray[np.integer], keep: NDArray[np.bool_]) -> None:
        width = (acc.size - 1) // r
        key = np.where(keep, src * width + ids, r * width)  # dropped / repeats: a spare bin
        acc += np.bincount(key.reshape(-1), minlength=acc.size)

    for c0 in range(0, dst_rank.shape[0], CHUNK_TOKENS):
        srt = np.sort(_small_int(dst_rank[c0 : c0 + CHUNK_TOKENS], r), axis=1)
        src = token_src[c0 : c0 + CHUNK_TOKENS, None]
        keep = srt >= 0
        count(slots, src, srt, keep)
        nodes = srt // g  # floor division keeps -1 at -1
        keep_node = keep.copy()
        keep[:, 1:] &= srt[:, 1:] != srt[:, :-1]
        keep_node[:, 1:] &= nodes[:, 1:] != nodes[:, :-1]
        count(tok, src, srt, keep)
        count(nod, src, nodes, keep_node)
    return tok[: r * r].reshape(r, r), nod[: r * n].reshape(r, n), slots[: r * r].reshape(r, r)


def plan_dispatch(
    dst_rank: IArr,
    token_src: IArr,
    n_ranks: int,
    gpus_per_node: int,
    hidden: int,
    dispatch_dtype: str = "fp8",
    combine_dtype: str = "bf16",
) -> DispatchPlan:
    """Build the dispatch plan from each (token, slot)'s destination rank ([T, k], -1 dropped)
    and each token's source rank ([T]).

    Only two histograms touch the tokens (in chunks, O(T·k)): unique (token, rank) pairs by
    (source, rank) and unique (token, node) pairs by (source, node). Every leg's matrix follows
    from those
    ``[R × R]`` / ``[R × nodes]`` counts, because a pair's path depends only on its source and
    destination: direct legs split ``tokens`` by same/other node; the IB leg of the two-hop path
    carries each remote (token, node) pair to the source's local index on that node; the
    NVLink leg carries each pair from its sender (source or forwarder) unless that is the
    destination itself."""
    g = min(gpus_per_node, n_ranks)
    if n_ranks % g:
        raise SpecError(f"n_ranks ({n_ranks}) must be a multiple of gpus_per_node ({g})")
    bytes_per_token(hidden, dispatch_dtype), bytes_per_token(hidden, combine_dtype)  # validate
    dst_rank = np.asarray(dst_rank, dtype=np.int64)
    token_src = np.asarray(token_src, dtype=np.int64)
    t = dst_rank.shape[0]
    if token_src.shape != (t,):
        raise SpecError(f"token_src must have shape ({t},)", key="token_src")
    if dst_rank.size and (dst_rank.max() >= n_ranks or token_src.max() >= n_ranks):
        raise SpecError("rank id out of range", key="dst_rank")
    r, n_nodes = n_ranks, n_ranks // g
    ranks = np.arange(r)

    tokens, rdma_pairs, copies = _pair_histograms(dst_rank, token_src, r, g)
    node = ranks // g
    same = node[:, None] == node[None, :]
    offdiag = ranks[:, None] != ranks[None, :]
    # IB leg: (s, remote node m) pairs go to rank m·g + s % g
    rdma_tokens = np.zeros((r, r), dtype=np.int64)
    s_idx, m_idx = np.nonzero(rdma_pairs * (np.arange(n_nodes)[None, :] != node[:, None]))
    rdma_tokens[s_idx, m_idx * g + s_idx % g] = rdma_pairs[s_idx, m_idx]
    # NVLink leg: pair (s, d) is delivered by s inside its node, else by d's node's rank with
    # s's local index; nothing moves when that sender is d itself
    sender = np.where(same, ranks[:, None], node[None, :] * g + ranks[:, None] % g)
    moved = sender != ranks[None, :]
    nvl = np.bincount((sender * r + ranks[None, :])[moved], weights=tokens[moved], minlength=r * r)
    return DispatchPlan(
        n_ranks=n_ranks,
        gpus_per_node=g,
        hidden=hidden,
        dispatch_dtype=dispatch_dtype,
        combine_dtype=combine_dtype,
        token_src=token_src,
        dst_rank=dst_rank,
        tokens=tokens,
        direct_nvl=np.where(same & offdiag, tokens, 0),
        direct_rdma=np.where(same, 0, tokens),
        rdma_tokens=rdma_tokens,
        nvl_tokens=np.rint(nvl).astype(np.int64).reshape(r, r),  # integer counts < 2^53: exact
        rdma_pairs=rdma_pairs,
        expert_copies=copies,
    )


def even_token_src(tokens: int, n_ranks: int) -> IArr:
    """Source rank of each token when ``tokens`` are split evenly (contiguously) over ranks."""
    if tokens % n_ranks:
        raise SpecError(f"tokens ({tokens}) must be a multiple of ranks ({n_ranks})", key="tokens")
    return np.repeat(np.arange(n_ranks, dtype=np.int64), tokens // n_ranks)


# ---------------------------------------------------------------------- statistics
@dataclass(frozen=True, eq=False)
class RoutingStats:
    """Load per expert (assignments), per rank (assignments and tokens received) and per node
    (tokens received, once per node), with max/mean imbalance of each."""

    tokens_per_expert: IArr
    assignments_per_rank: IArr
    tokens_per_rank: IArr
    tokens_per_node: IArr
    imbalance_expert: float
    imbalance_rank: float
    imbalance_node: float


def routing_stats(plan: DispatchPlan, topk_idx: IArr, n_experts: int) -> RoutingStats:
    """Routing statistics for the simulator (load imbalance shows up as the slowest rank)."""
    valid = topk_idx >= 0
    per_expert = np.bincount(topk_idx[valid], minlength=n_experts).astype(np.int64)
    per_rank_assign = np.bincount(plan.dst_rank[valid], minlength=plan.n_ranks).astype(np.int64)
    per_rank = plan.tokens.sum(axis=0)
    per_node = plan.rdma_pairs.sum(axis=0)
    return RoutingStats(
        per_expert,
        per_rank_assign,
        per_rank,
        per_node,
        imbalance(per_expert),
        imbalance(per_rank_assign),
        imbalance(per_node),
    )
