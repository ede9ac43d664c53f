"""MoE gating, one function per generation, vectorised in numpy over tokens.

All gates take router ``logits`` of shape ``[tokens, experts]`` and return a :class:`Routing`
(expert ids and combine weights per token, ``-1``/``0`` where a capacity limit dropped the slot).

* :func:`softmax_topk` — GShard/Switch: softmax, top-k, optional capacity factor with dropping.
* :func:`deepseek_v1` — DeepSeekMoE: fine-grained routed experts + always-on shared experts.
* :func:`deepseek_v2` — device-limited routing: experts only on the ``max_devices`` devices with
  the highest per-device max affinity; :func:`v2_balance_losses` gives expert/device/comm losses.
* :func:`deepseek_v3` — sigmoid scores, per-expert bias for *selection only*, node-limited
  selection of ``topk_groups`` of ``n_groups`` (group score = sum of its top-2 biased scores, or
  DeepEP's per-group max), normalised top-k weights × routed scaling factor;
  :func:`v3_sequence_balance_loss`, :func:`update_bias` (bias += γ·sign(mean − load)).
* :func:`synthetic_logits` — seeded router inputs: ``uniform``, ``zipf:S`` (hot experts),
  ``deepep`` (``abs(randn)+1`` as in DeepEP's tests).
* :func:`bias_dynamics` — imbalance over N batches with the V3 bias update on skewed inputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from hwsim.spec.errors import SpecError

FArr = NDArray[np.float64]
IArr = NDArray[np.int64]
GroupScore = Literal["top2_sum", "max"]


@dataclass(frozen=True, eq=False)
class Routing:
    """Routing of ``T`` tokens to ``k`` of ``n_experts`` routed experts.

    ``topk_idx[t, j]`` is the expert of slot ``j`` (``-1`` if dropped by capacity), sorted by
    descending selection score; ``topk_weight[t, j]`` its combine weight (0 if dropped);
    ``scores`` the ``[T, E]`` affinities (softmax probabilities or sigmoid scores, no bias).
    Shared experts (``n_shared``) process every token with weight 1 and are not listed."""

    topk_idx: IArr
    topk_weight: FArr
    scores: FArr
    n_experts: int
    n_shared: int = 0
    capacity: int | None = None
    meta: dict[str, float] = field(default_factory=dict)

    @property
    def tokens(self) -> int:
        return int(self.topk_idx.shape[0])

    @property
    def top_k(self) -> int:
        return int(self.topk_idx.shape[1])

    @property
    def dropped(self) -> int:
        """Number of (token, slot) assignments dropped by the capacity limit."""
        return int((self.topk_idx < 0).sum())

    def tokens_per_expert(self) -> IArr:
        """Assignments per routed expert (a token counts once per selected expert)."""
        idx = self.topk_idx[self.topk_idx >= 0]
        return np.bincount(idx, minlength=self.n_experts).astype(np.int64)


# ---------------------------------------------------------------------- primitives
def softmax(x: NDArray[np.floating]) -> FArr:
    """Row softmax in float64 (max-subtracted, so large logits never overflow)."""
    z = np.asarray(x, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    out: FArr = e / e.sum(axis=-1, keepdims=True)
    return out


def sigmoid(x: NDArray[np.floating]) -> FArr:
    out: FArr = 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, dtype=np.float64)))
    return out


def topk(x: NDArray[np.floating], k: int) -> IArr:
    """Indices of the ``k`` largest entries per row, sorted by descending value. Ties inside
    the top-k are ordered by index; a tie across the k-th place is broken arbitrarily but
    deterministically (as ``torch.topk``)."""
    n = x.shape[1]
    if k >= n:
        part = np.broadcast_to(np.arange(n), x.shape)
    else:
        part = np.argpartition(-x, k - 1, axis=1)[:, :k]
    vals = np.take_along_axis(x, part, axis=1)
    order = np.lexsort((part, -vals), axis=1) if part.size else part
    out: IArr = np.take_along_axis(part, order, axis=1).astype(np.int64)
    return out


def group_limited_topk(
    scores: NDArray[np.floating],
    top_k: int,
    n_groups: int,
    topk_groups: int,
    group_score: GroupScore = "top2_sum",
) -> IArr:
    """Top-k restricted to ``topk_groups`` of ``n_groups`` contiguous expert groups per token.

    ``top2_sum`` ranks groups by the sum of their two best scores (DeepSeek-V3 ``noaux_tc``);
    ``max`` by their best score (DeepSeek-V2 ``group_limited_greedy`` and DeepEP's tests)."""
    t, e = scores.shape
    check_groups(e, top_k, n_groups, topk_groups)
    if n_groups == 1 or topk_groups == n_groups:
        return topk(scores, top_k)
    g = scores.reshape(t, n_groups, e // n_groups)
    if group_score == "max" or g.shape[2] < 2:
        gs = _group_max(g)
    else:
        gs = np.partition(g, g.shape[2] - 2, axis=2)[:, :, -2:].sum(axis=2)
    per = e // n_groups
    # gather only the chosen groups (ascending, so column order follows expert ids and ties
    # still break by index), then top-k over topk_groups × per columns instead of all experts
    chosen = np.sort(topk(gs, topk_groups), axis=1)
    sub = np.take_along_axis(g, chosen[:, :, None], axis=1).reshape(t, topk_groups * per)
    col = topk(sub, top_k)
    out: IArr = np.take_along_axis(chosen, col // per, axis=1) * per + col % per
    return out


def _group_max(g: NDArray[np.floating]) -> NDArray[np.floating]:
    """Max over the last (small) axis; an elementwise loop over it is ~6× faster than
    ``g.max(axis=2)`` for groups of a few experts (numpy reduces short inner axes slowly)."""
    if g.shape[2] > 32:
        return g.max(axis=2)
    m = g[:, :, 0].copy()
    for i in range(1, g.shape[2]):
        np.maximum(m, g[:, :, i], out=m)
    return m


def check_groups(e: int, k: int, n_groups: int, topk_groups: int) -> None:
    """SpecError unless ``k`` experts fit in ``topk_groups`` of ``n_groups`` equal groups."""
    if not 1 <= k <= e:
        raise SpecError(f"top_k must be in 1..{e} (experts), got {k}", key="top_k")
    if n_groups < 1 or e % n_groups:
        raise SpecError(f"experts ({e}) must be divisible by n_groups ({n_groups})", key="n_groups")
    if not 1 <= topk_groups <= n_groups:
        raise SpecError(
            f"topk_groups must be in 1..{n_groups}, got {topk_groups}", key="topk_groups"
        )
    if k > topk_groups * (e // n_groups):
        raise SpecError(
            f"top_k ({k}) exceeds the experts in topk_groups ({topk_groups} × {e // n_groups})",
            key="top_k",
        )


def apply_capacity(topk_idx: IArr, n_experts: int, capacity: int) -> IArr:
    """Drop assignments beyond ``capacity`` tokens per expert (GShard order: every token's first
    choice has priority over any second choice, then token order). Dropped slots become -1."""
    t, k = topk_idx.shape
    flat = topk_idx.T.reshape(-1)  # slot-major: all first choices, then all second choices
    order = np.argsort(flat, kind="stable")
    sorted_e = flat[order]
    starts = np.searchsorted(sorted_e, np.arange(n_experts))
    rank_in_expert = np.empty_like(order)
    rank_in_expert[order] = np.arange(flat.size) - starts[sorted_e]
    keep = (rank_in_expert < capacity).reshape(k, t).T
    out: IArr = np.where(keep, topk_idx, -1)
    return out


def expert_capacity(tokens: int, n_experts: int, top_k: int, capacity_factor: float) -> int:
    """GShard/Switch expert capacity: ``ceil(capacity_factor × tokens × k / experts)``."""
    # the epsilon keeps e.g. 1.25 × 96 × 2 / 8 = 30 from rounding up to 31 through fp error
    return math.ceil(capacity_factor * tokens * top_k / n_experts - 1e-9)


# ---------------------------------------------------------------------- gates
def softmax_topk(
    logits: NDArray[np.floating],
    top_k: int,
    capacity_factor: float | None = None,
    normalize: bool = False,
) -> Routing:
    """GShard/Switch gate: softmax over experts, top-k, optional capacity with token dropping.

    ``normalize`` renormalises the kept top-k probabilities to sum to 1 (GShard top-2, Mixtral);
    Switch (k = 1) keeps the raw probability."""
    probs = softmax(logits)
    t, e = probs.shape
    check_groups(e, top_k, 1, 1)
    idx = topk(probs, top_k)
    w = np.take_along_axis(probs, idx, axis=1)
    if normalize:
        w = w / w.sum(axis=1, keepdims=True)
    cap = None
    if capacity_factor is not None:
        if capacity_factor <= 0:
            raise SpecError("capacity_factor must be > 0", key="capacity_factor")
        cap = expert_capacity(t, e, top_k, capacity_factor)
        idx = apply_capacity(idx, e, cap)
        w = np.where(idx >= 0, w, 0.0)
    return Routing(idx, w, probs, e, capacity=cap)


def deepseek_v1(logits: NDArray[np.floating], top_k: int, n_shared: int) -> Routing:
    """DeepSeekMoE (V1): softmax affinities over fine-grained routed experts, top-k gates kept
    unnormalised; ``n_shared`` shared experts see every token."""
    probs = softmax(logits)
    check_groups(probs.shape[1], top_k, 1, 1)
    idx = topk(probs, top_k)
    return Routing(idx, np.take_along_axis(probs, idx, axis=1), probs, probs.shape[1], n_shared)


def deepseek_v2(
    logits: NDArray[np.floating],
    top_k: int,
    n_devices: int,
    max_devices: int,
    n_shared: int = 0,
    routed_scaling_factor: float = 1.0,
) -> Routing:
    """DeepSeek-V2 device-limited routing: experts are spread in contiguous blocks over
    ``n_devices``; each token first picks the ``max_devices`` (M) devices holding its highest
    affinities, then its top-k experts among those. Gates are the softmax affinities (not
    renormalised) × ``routed_scaling_factor``."""
    probs = softmax(logits)
    idx = group_limited_topk(probs, top_k, n_devices, max_devices, "max")
    w = np.take_along_axis(probs, idx, axis=1) * routed_scaling_factor
    return Routing(idx, w, probs, probs.shape[1], n_shared, meta={"n_devices": n_devices})


def deepseek_v3(
    logits: NDArray[np.floating],
    top_k: int,
    n_groups: int = 1,
    topk_groups: int = 1,
    bias: FArr | None = None,
    n_shared: int = 0,
    routed_scaling_factor: float = 1.0,
    norm_topk_prob: bool = True,
    group_score: GroupScore = "top2_sum",
) -> Routing:
    """DeepSeek-V3 gate: ``s = sigmoid(logits)``; selection on ``s + bias`` restricted to
    ``topk_groups`` of ``n_groups`` node groups; combine weights from ``s`` only (bias never
    enters the weights), normalised over the top-k and × ``routed_scaling_factor``."""
    s = sigmoid(logits)
    e = s.shape[1]
    b = np.zeros(e) if bias is None else np.asarray(bias, dtype=np.float64)
    if b.shape != (e,):
        raise SpecError(f"bias must have shape ({e},), got {b.shape}", key="bias")
    idx = group_limited_topk(s + b, top_k, n_groups, topk_groups, group_score)
    w = np.take_along_axis(s, idx, axis=1)
    if norm_topk_prob:
        w = w / (w.sum(axis=1, keepdims=True) + 1e-20)
    return Routing(idx, w * routed_scaling_factor, s, e, n_shared, meta={"n_groups": n_groups})


# ---------------------------------------------------------------------- balance losses
def expert_balance_loss(r: Routing) -> float:
    """Switch/DeepSeek expert-level balance loss ``Σ f_i P_i`` (unweighted):
    ``f_i = E/(K·T) · count_i``, ``P_i`` = mean affinity of expert i. Uniform routing gives 1."""
    e, k, t = r.n_experts, r.top_k, r.tokens
    f = e / (k * t) * r.tokens_per_expert()
    p = r.scores.mean(axis=0)
    return float((f * p).sum())


def v2_balance_losses(r: Routing, n_devices: int, max_devices: int) -> dict[str, float]:
    """DeepSeek-V2's three balance losses, unweighted (multiply by α1, α2, α3):

    * ``expert``: ``Σ_i f_i P_i`` with ``f_i = N/(K T) Σ_t 1(t → i)``
    * ``device``: ``Σ_d f'_d P'_d`` with ``f'_d`` the mean ``f`` of device d's experts
    * ``comm``: ``Σ_d f''_d P''_d`` with ``f''_d = D/(M T) Σ_t 1(t sent to device d)``
    where ``P'_d = P''_d`` = sum of mean affinities of device d's experts."""
    e, k, t = r.n_experts, r.top_k, r.tokens
    per = e // n_devices
    f = e / (k * t) * r.tokens_per_expert()
    p = r.scores.mean(axis=0)
    p_dev = p.reshape(n_devices, per).sum(axis=1)
    f_dev = f.reshape(n_devices, per).mean(axis=1)
    valid = r.topk_idx >= 0
    dev = np.where(valid, r.topk_idx // per, n_devices)
    hit = np.zeros((t, n_devices + 1), dtype=bool)
    np.put_along_axis(hit, dev, True, axis=1)
    f_comm = n_devices / (max_devices * t) * hit[:, :n_devices].sum(axis=0)
    return {
        "expert": float((f * p).sum()),
        "device": float((f_dev * p_dev).sum()),
        "comm": float((f_comm * p_dev).sum()),
    }


def v3_sequence_balance_loss(r: Routing, seq_len: int) -> float:
    """DeepSeek-V3 sequence-wise balance loss ``Σ_i f_i P_i`` (unweighted, times α in training),
    averaged over sequences of ``seq_len`` consecutive tokens: ``f_i = N_r/(K_r T) Σ_t 1(i ∈
    topk_t)``, ``P_i = mean_t s'_{i,t}`` with ``s'`` the sigmoid scores normalised per token."""
    t, e, k = r.tokens, r.n_experts, r.top_k
    if seq_len < 1 or t % seq_len:
        raise SpecError(f"tokens ({t}) must be a multiple of seq_len ({seq_len})", key="seq_len")
    n_seq = t // seq_len
    sn = r.scores / r.scores.sum(axis=1, keepdims=True)
    p = sn.reshape(n_seq, seq_len, e).mean(axis=1)
    onehot = np.zeros((t, e + 1))
    np.put_along_axis(onehot, np.where(r.topk_idx >= 0, r.topk_idx, e), 1.0, axis=1)
    f = e / (k * seq_len) * onehot[:, :e].reshape(n_seq, seq_len, e).sum(axis=1)
    return float((f * p).sum(axis=1).mean())


def update_bias(bias: FArr, tokens_per_expert: NDArray[np.integer], gamma: float) -> FArr:
    """DeepSeek-V3 aux-loss-free update between batches: ``b_i += γ·sign(mean_load − load_i)``
    (overloaded experts get a lower bias, underloaded a higher one)."""
    load = np.asarray(tokens_per_expert, dtype=np.float64)
    out: FArr = np.asarray(bias, dtype=np.float64) + gamma * np.sign(load.mean() - load)
    return out


def imbalance(load: NDArray[np.number]) -> float:
    """max / mean of a load vector (1.0 is perfect balance; 0 load → 1.0)."""
    arr = np.asarray(load, dtype=np.float64)
    mean = arr.mean() if arr.size else 0.0
    return float(arr.max() / mean) if mean > 0 else 1.0


# ---------------------------------------------------------------------- synthetic inputs
def _popularity(n_experts: int, dist: str, rng: np.random.Generator) -> FArr:
    """Per-expert popularity for a routing distribution name (hot experts at random ids)."""
    if dist in ("uniform", "deepep"):
        return np.full(n_experts, 1.0 / n_experts)
    if dist.startswith("zipf:"):
        try:
            s = float(dist.split(":", 1)[1])
        except ValueError:
            raise SpecError(f"bad zipf exponent in {dist!r}; use e.g. 'zipf:1.2'") from None
        if s < 0:
            raise SpecError(f"zipf exponent must be >= 0, got {s}")
        w = 1.0 / np.arange(1, n_experts + 1, dtype=np.float64) ** s
        w = w[rng.permutation(n_experts)]
        out: FArr = w / w.sum()
        return out
    raise SpecError(f"unknown routing distribution {dist!r}; use uniform, deepep or zipf:<s>")


def popularity(n_experts: int, dist: str = "uniform", seed: int = 0) -> FArr:
    """Per-expert popularity (sums to 1) that :func:`synthetic_logits` uses for ``seed``."""
    return _popularity(n_experts, dist, np.random.default_rng(seed))


def synthetic_logits(
    tokens: int,
    n_experts: int,
    dist: str = "uniform",
    seed: int = 0,
    chunk: int | None = None,
    dtype: type[np.floating] = np.float64,
) -> NDArray[np.floating]:
    """Seeded router logits ``[tokens, experts]``.

    * ``deepep``: ``abs(randn) + 1`` (DeepEP's test scores; fed to the gates as-is).
    * ``uniform`` / ``zipf:S``: ``log p_e + Gumbel`` noise, so plain top-k selection samples
      experts without replacement in proportion to popularity ``p`` (uniform, or Zipf with
      exponent S over a random permutation of expert ids: a few hot experts).

    ``chunk`` (e.g. the source rank) draws independent noise per chunk while the popularity,
    which depends on ``seed`` only, stays the same hot experts for every chunk. ``dtype``
    float32 halves memory and time for selection-only uses (the all-to-all simulator)."""
    p = _popularity(n_experts, dist, np.random.default_rng(seed))
    rng = np.random.default_rng(seed if chunk is None else [seed, chunk])
    shape = (tokens, n_experts)
    if dist == "deepep":
        out = np.abs(rng.standard_normal(shape, dtype=dtype))
        out += 1.0
        return out
    tiny = np.finfo(dtype).tiny
    out = -np.log(-np.log(rng.random(shape, dtype=dtype) + tiny) + tiny)
    out += np.log(p).astype(dtype)[None, :]
    return out


@dataclass(frozen=True, eq=False)
class BiasDynamics:
    """Per-batch load, bias and imbalance (max/mean tokens per expert) of the V3 bias update."""

    load: IArr  # [batches, experts]
    bias: FArr  # [batches, experts] bias used for each batch
    imbalance: FArr  # [batches]
    gamma: float


def bias_dynamics(
    n_batches: int,
    tokens: int,
    n_experts: int,
    top_k: int,
    dist: str = "zipf:1.2",
    gamma: float = 0.001,
    n_groups: int = 1,
    topk_groups: int = 1,
    seed: int = 0,
) -> BiasDynamics:
    """Route ``n_batches`` batches of skewed logits through :func:`deepseek_v3`, updating the
    bias after each with :func:`update_bias`; the expert popularity stays fixed across batches
    (same hot experts), only the noise is redrawn."""
    rng = np.random.default_rng(seed)
    p = _popularity(n_experts, dist, rng)
    bias = np.zeros(n_experts)
    loads, biases, imb = [], [], []
    for _ in range(n_batches):
        gumbel = -np.log(-np.log(rng.random((tokens, n_experts)) + 1e-300) + 1e-300)
        # sigmoid is monotone, so these logits select like log p + Gumbel; scaled down so the
        # scores sit in sigmoid's sensitive range, where a bias of O(γ·steps) matters
        logits = 0.25 * (np.log(p)[None, :] + gumbel)
        r = deepseek_v3(logits, top_k, n_groups, topk_groups, bias=bias)
        load = r.tokens_per_expert()
        loads.append(load)
        biases.append(bias)
        imb.append(imbalance(load))
        bias = update_bias(bias, load, gamma)
    return BiasDynamics(np.array(loads), np.array(biases), np.array(imb), gamma)
