"""MoE plan: gating (GShard/Switch, DeepSeekMoE V1, V2, V3), expert placement, dispatch plan.

The functional executor (``hwsim.functional.moe``) and the all-to-all simulator (``hwsim.sim``)
both consume what this module produces, so they agree on every token and byte.

Gating (``hwsim.plan.moe_gating``; inputs ``logits [T, E]``, output :class:`Routing` with
``topk_idx [T, k]`` (-1 = dropped), ``topk_weight [T, k]``, ``scores [T, E]``, ``n_shared``)::

    softmax_topk(logits, top_k, capacity_factor=None, normalize=False) -> Routing
    deepseek_v1(logits, top_k, n_shared) -> Routing
    deepseek_v2(logits, top_k, n_devices, max_devices, n_shared=0, routed_scaling_factor=1.0)
    deepseek_v3(logits, top_k, n_groups=1, topk_groups=1, bias=None, n_shared=0,
                routed_scaling_factor=1.0, norm_topk_prob=True, group_score="top2_sum"|"max")
    gate_for_model(cfg: ModelConfig, logits, bias=None, n_devices=None) -> Routing
    group_limited_topk(scores, top_k, n_groups, topk_groups, group_score) -> topk_idx
    expert_capacity(tokens, n_experts, top_k, capacity_factor) -> int
    expert_balance_loss(r) ; v2_balance_losses(r, n_devices, max_devices) -> {expert, device, comm}
    v3_sequence_balance_loss(r, seq_len) ; update_bias(bias, tokens_per_expert, gamma)
    imbalance(load) -> max/mean
    synthetic_logits(tokens, n_experts, dist="uniform"|"zipf:1.2"|"deepep", seed=0, chunk=None)
    bias_dynamics(n_batches, tokens, n_experts, top_k, dist, gamma, n_groups, topk_groups, seed)

Placement and dispatch (``hwsim.plan.moe_placement``, ``hwsim.plan.moe_dispatch``)::

    place_experts(n_experts, n_ranks, gpus_per_node=8, n_redundant=0, expert_load=None,
                  same_node=False) -> Placement   # .rank_experts, .replicas, .home(), .n_nodes
    resolve_replicas(topk_idx, placement) -> dst_rank [T, k]
    even_token_src(tokens, n_ranks) -> token_src [T]
    plan_dispatch(dst_rank, token_src, n_ranks, gpus_per_node, hidden,
                  dispatch_dtype="fp8", combine_dtype="bf16") -> DispatchPlan
    make_dispatch_plan(routing, placement, hidden, token_src=None, ...) -> DispatchPlan
    DispatchPlan: .tokens/.direct_nvl/.direct_rdma/.rdma_tokens/.nvl_tokens [R, R],
                  .rdma_pairs [R, nodes], .matrix(leg, phase), .flows(path, phase) -> [Flow],
                  .pair_token/.pair_dst/.pair_sender/.ib_* (lazy, cached: .pair_arrays),
                  .bytes_per_token(phase), .bytes_by_link_kind(path, phase),
                  .deepep_rdma_bytes(phase), .deepep_nvl_bytes(phase) (per rank, bytes)
    bytes_per_token(hidden, dtype)     # fp8 = hidden·(1 + 4/128); bf16 = 2·hidden
    routing_stats(plan, topk_idx, n_experts) -> RoutingStats

Synthetic routing for the simulator (``hwsim.plan.moe_synthetic``; exact in law, a fraction of
the draws)::

    race_topk(rng, tokens, popularity, top_k, n_groups, topk_groups) -> topk_idx
    synthetic_dispatch_plan(n_ranks, tokens_per_rank, hidden, n_experts, top_k, topk_groups,
                            routing="deepep", gpus_per_node=8, n_redundant=0, seed=0,
                            dispatch_dtype="fp8") -> (DispatchPlan, Placement, topk_idx)
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from hwsim.plan.moe_dispatch import (
    DispatchPlan,
    Flow,
    IArr,
    PairArrays,
    Placement,
    RoutingStats,
    bytes_per_token,
    even_token_src,
    pair_arrays,
    place_experts,
    plan_dispatch,
    resolve_replicas,
    routing_stats,
)
from hwsim.plan.moe_gating import (
    BiasDynamics,
    FArr,
    Routing,
    apply_capacity,
    bias_dynamics,
    deepseek_v1,
    deepseek_v2,
    deepseek_v3,
    expert_balance_loss,
    expert_capacity,
    group_limited_topk,
    imbalance,
    sigmoid,
    softmax,
    softmax_topk,
    synthetic_logits,
    topk,
    update_bias,
    v2_balance_losses,
    v3_sequence_balance_loss,
)
from hwsim.plan.moe_synthetic import race_topk, synthetic_dispatch_plan
from hwsim.spec.errors import SpecError
from hwsim.spec.model import ModelConfig

__all__ = [
    "BiasDynamics",
    "DispatchPlan",
    "Flow",
    "PairArrays",
    "Placement",
    "Routing",
    "RoutingStats",
    "apply_capacity",
    "bias_dynamics",
    "bytes_per_token",
    "deepseek_v1",
    "deepseek_v2",
    "deepseek_v3",
    "even_token_src",
    "expert_balance_loss",
    "expert_capacity",
    "gate_for_model",
    "group_limited_topk",
    "imbalance",
    "make_dispatch_plan",
    "pair_arrays",
    "place_experts",
    "plan_dispatch",
    "race_topk",
    "resolve_replicas",
    "routing_stats",
    "sigmoid",
    "softmax",
    "softmax_topk",
    "synthetic_dispatch_plan",
    "synthetic_logits",
    "topk",
    "update_bias",
    "v2_balance_losses",
    "v3_sequence_balance_loss",
]


def gate_for_model(
    cfg: ModelConfig,
    logits: NDArray[np.floating],
    bias: FArr | None = None,
    n_devices: int | None = None,
) -> Routing:
    """The gate a model config describes: V3 (sigmoid, ``noaux_tc``), V2 (``group_limited_
    greedy``: groups are devices), DeepSeekMoE/Qwen (softmax, shared experts), or Mixtral/Switch
    (softmax top-k, normalised, optional capacity)."""
    m = cfg.moe
    if m is None:
        raise SpecError(f"model '{cfg.name}' has no MoE section", key="moe")
    if m.scoring == "sigmoid" or m.topk_method == "noaux_tc":
        return deepseek_v3(
            logits,
            m.top_k,
            m.n_groups,
            m.topk_groups,
            bias,
            m.n_shared_experts,
            m.routed_scaling_factor,
            m.norm_topk_prob,
        )
    if m.topk_method == "group_limited_greedy":
        return deepseek_v2(
            logits,
            m.top_k,
            n_devices or m.n_groups,
            m.topk_groups,
            m.n_shared_experts,
            m.routed_scaling_factor,
        )
    if m.capacity_factor is None and m.n_shared_experts and not m.norm_topk_prob:
        r = deepseek_v1(logits, m.top_k, m.n_shared_experts)
    else:
        r = softmax_topk(logits, m.top_k, m.capacity_factor, m.norm_topk_prob)
        r = Routing(
            r.topk_idx, r.topk_weight, r.scores, r.n_experts, m.n_shared_experts, r.capacity
        )
    if m.routed_scaling_factor != 1.0:
        r = Routing(
            r.topk_idx,
            r.topk_weight * m.routed_scaling_factor,
            r.scores,
            r.n_experts,
            r.n_shared,
            r.capacity,
        )
    return r


def make_dispatch_plan(
    routing: Routing,
    placement: Placement,
    hidden: int,
    token_src: IArr | None = None,
    dispatch_dtype: str = "fp8",
    combine_dtype: str = "bf16",
) -> DispatchPlan:
    """Routing + placement → dispatch plan. ``token_src`` defaults to an even contiguous split
    of the tokens over the placement's ranks."""
    if routing.n_experts != placement.n_experts:
        raise SpecError(
            f"routing has {routing.n_experts} experts, placement {placement.n_experts}",
            key="n_experts",
        )
    src = even_token_src(routing.tokens, placement.n_ranks) if token_src is None else token_src
    dst = resolve_replicas(routing.topk_idx, placement)
    return plan_dispatch(
        dst,
        np.asarray(src, dtype=np.int64),
        placement.n_ranks,
        placement.gpus_per_node,
        hidden,
        dispatch_dtype,
        combine_dtype,
    )
