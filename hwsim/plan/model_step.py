"""The layer graph of one prefill or decode step of a whole model on one device of a layout.

:func:`build_step` turns a :class:`~hwsim.spec.model.ModelConfig`, a
:class:`~hwsim.plan.layout.Layout`-like set of degrees and a :class:`StepSpec` (phase, batch,
context, dtypes, tokens per sequence) into the ops (:mod:`hwsim.plan.workload`) one device runs,
layer by layer, for one micro-batch:

* attention: MHA/GQA (fused QKV projection, FlashAttention, output projection) or MLA (DeepSeek:
  low-rank Q and KV projections; decode uses the absorbed form, whose attention is MQA over the
  512+64 latent, prefill expands K and V per head), with the KV cache read at the context;
* a dense FFN (SwiGLU/GELU) or an MoE block (router, dispatch, the touched experts, combine,
  shared expert);
* RMSNorms and residual adds; the final norm and LM head on the last stage;
* the collectives the layout implies: TP all-reduce (or reduce-scatter + all-gather with SP)
  after attention and after a TP-split FFN, EP all-to-all for dispatch and combine, a PP
  point-to-point send between stages.

Each op is tagged with a breakdown category and a stream (``compute`` or ``comm``), so the step
simulator can overlap communication with compute. Everything is per device; bytes in bytes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from hwsim.plan.step_attention import attention_ops
from hwsim.plan.step_types import (
    CATEGORIES,
    Category,
    Degrees,
    LayerGraph,
    StepGraph,
    StepOp,
    StepSpec,
    scope,
)
from hwsim.plan.workload import Collective, Elementwise, Gemm, MoE, Op
from hwsim.spec.device import DTYPE_BYTES
from hwsim.spec.model import ModelConfig

#: The step's plain data lives in hwsim.plan.step_types; it is re-exported here, where the
#: graph is built, so callers import one module.
__all__ = [
    "CATEGORIES",
    "Category",
    "Degrees",
    "LayerGraph",
    "StepGraph",
    "StepOp",
    "StepSpec",
    "build_step",
    "head_ops",
    "kv_bytes_per_token_per_layer",
    "layer_ops",
    "memory_per_device",
    "mtp_ops",
    "shard",
    "stage_layers",
    "stage_weight_bytes",
]


def _tp_comm(
    name: str, nbytes: float, tp: int, sp: bool, per_node: int, cat: str = "comm"
) -> list[StepOp]:
    if tp <= 1:
        return []
    where = scope(tp, 1, per_node)
    if sp:
        return [
            StepOp(Collective("reduce-scatter", nbytes, tp, where, f"{name} RS"), cat, "comm"),
            StepOp(Collective("all-gather", nbytes, tp, where, f"{name} AG"), cat, "comm"),
        ]
    return [StepOp(Collective("all-reduce", nbytes, tp, where, f"{name} AR"), cat, "comm")]


def _ffn_ops(model: ModelConfig, spec: StepSpec, t: int, width: int, name: str) -> list[StepOp]:
    h, dt = model.hidden, spec.dtype
    gated = model.ffn.activation == "swiglu"
    act = "swiglu" if gated else "gelu"
    return [
        StepOp(Gemm(t, (2 if gated else 1) * width, h, dt, name=f"{name} up"), "ffn"),
        StepOp(Elementwise(act, t, width, spec.act_dtype, f"{name} act"), "ffn"),
        StepOp(Gemm(t, h, width, dt, name=f"{name} down"), "ffn"),
    ]


def _moe_ops(
    model: ModelConfig, deg: Degrees, spec: StepSpec, t: int, shard: Shard
) -> list[StepOp]:
    """Router → dispatch → experts → combine (+ shared expert); TP-split experts when ep = 1."""
    moe = model.moe
    assert moe is not None
    per_node = spec.devices_per_node
    if deg.ep > 1:
        tokens = max(1, math.ceil(t / deg.tp))  # the TP group splits its tokens (SP) to dispatch
    else:
        tokens = t
    # distinct tokens routed in the EP group: ep/tp TP groups of t tokens each. MoE's default
    # (tokens per rank x ep) counts a token once per rank when t < tp (one token split over 16
    # TP ranks is still one token): at batch 1 that read 6.4 of 16 local experts per layer on
    # each of 16 ranks instead of 1 (DeepSeek-V3 on an SN40L rack)
    distinct = max(1.0, t * deg.ep / deg.tp) if deg.ep > 1 else float(t)
    local = math.ceil(moe.n_routed_experts / deg.ep)
    p_miss = (1.0 - moe.top_k / moe.n_routed_experts) ** distinct
    block = MoE(
        tokens=tokens,
        hidden=model.hidden,
        intermediate=shard.expert_intermediate,
        n_experts=moe.n_routed_experts,
        top_k=moe.top_k,
        ep=deg.ep,
        shared_intermediate=shard.shared_intermediate,
        gated=model.ffn.activation == "swiglu",
        dtype=spec.dtype,
        wire_dtype=spec.wire_dtype or spec.dtype,
        combine_dtype=spec.act_dtype,
        topk_groups=moe.topk_groups if moe.n_groups > 1 else None,
        scope=scope(deg.ep, 1, per_node),
        touched=max(1.0, local * (1.0 - p_miss)),
        name="moe",
    )
    ops = [
        StepOp(p, "comm" if isinstance(p, Collective) else "moe", _stream(p)) for p in block.parts()
    ]
    if deg.ep == 1:
        ops += _tp_comm(
            "moe", t * model.hidden * DTYPE_BYTES[spec.act_dtype], deg.tp, False, per_node
        )
    return ops


def _stream(op: Op) -> Literal["compute", "comm"]:
    return "comm" if isinstance(op, Collective) else "compute"


@dataclass(frozen=True)
class Shard:
    """One device's share of a model (counts)."""

    heads: int
    kv_heads: int
    ffn: int
    local_experts: int
    expert_intermediate: int
    shared_intermediate: int
    layers_per_stage: int


def shard(model: ModelConfig, deg: Degrees) -> Shard:
    """What one device holds: heads, KV heads (replicated past their count; one MLA latent),
    dense FFN width, local experts and their width, shared-expert width, layers per stage."""
    a, tp = model.attention, deg.tp
    moe = model.moe
    if moe is None:
        le = ei = si = 0
    elif deg.ep > 1:
        le = math.ceil(moe.n_routed_experts / deg.ep)  # spare slots: redundant copies
        ei, si = moe.moe_intermediate, moe.shared_width
    else:
        le = moe.n_routed_experts
        ei = max(1, moe.moe_intermediate // tp)
        si = moe.shared_width // tp if moe.shared_width else 0
    return Shard(
        heads=max(1, a.heads // tp),
        kv_heads=1 if a.kind == "mla" else max(1, a.kv_heads // tp),
        ffn=max(1, model.ffn.intermediate // tp),
        local_experts=le,
        expert_intermediate=ei,
        shared_intermediate=si,
        layers_per_stage=math.ceil(model.layers / deg.pp),
    )


def layer_ops(
    model: ModelConfig, deg: Degrees, spec: StepSpec, seqs: int, moe_layer: bool, chunk: int = 0
) -> list[StepOp]:
    """All ops of one decoder layer for ``seqs`` sequences of one DP replica (and ``chunk``
    prompt tokens mixed into a decode step)."""
    sh = shard(model, deg)
    decode = spec.phase == "decode"
    t = seqs * (spec.q_len if decode else spec.context) + (chunk if decode else 0)
    sp = deg.sp > 1
    act = spec.act_dtype
    norm_rows = max(1, math.ceil(t / deg.tp)) if sp else t
    per_node = spec.devices_per_node
    tp_bytes = t * model.hidden * DTYPE_BYTES[act]
    ops = [StepOp(Elementwise("rmsnorm", norm_rows, model.hidden, act, "attn norm"), "norm")]
    ops += attention_ops(model, deg, spec, seqs, sh.heads, sh.kv_heads, chunk)
    ops += _tp_comm("attn", tp_bytes, deg.tp, sp, per_node)
    ops += [
        StepOp(Elementwise("add", norm_rows, model.hidden, act, "residual"), "norm"),
        StepOp(Elementwise("rmsnorm", norm_rows, model.hidden, act, "ffn norm"), "norm"),
    ]
    if moe_layer:
        ops += _moe_ops(model, deg, spec, t, sh)
    else:
        ops += _ffn_ops(model, spec, t, sh.ffn, "ffn")
        ops += _tp_comm("ffn", tp_bytes, deg.tp, sp, per_node)
    ops.append(StepOp(Elementwise("add", norm_rows, model.hidden, act, "residual"), "norm"))
    return ops


def head_ops(
    model: ModelConfig, deg: Degrees, spec: StepSpec, seqs: int, chunk: int = 0
) -> list[StepOp]:
    """Final norm and LM head (vocab split over TP) for the tokens that need logits: every
    decode token, a prompt's last token (a chunk: one, for the prompt it may finish)."""
    t = seqs * (spec.q_len if spec.phase == "decode" else 1) + (1 if chunk else 0)
    vocab = math.ceil(model.vocab / deg.tp)
    return [
        StepOp(Elementwise("rmsnorm", t, model.hidden, spec.act_dtype, "final norm"), "norm"),
        StepOp(Gemm(t, vocab, model.hidden, spec.dtype, name="lm head"), "lm_head"),
    ]


def mtp_ops(model: ModelConfig, deg: Degrees, spec: StepSpec, seqs: int) -> list[StepOp]:
    """One DeepSeek MTP module: two norms, the 2h → h projection, one decoder layer (MoE like
    the last layer) and the shared LM head, on the step's tokens."""
    t = seqs * spec.q_len
    h = model.hidden
    ops = [
        StepOp(Elementwise("rmsnorm", 2 * t, h, spec.act_dtype, "mtp norms"), "mtp"),
        StepOp(Gemm(t, h, 2 * h, spec.dtype, name="mtp proj"), "mtp"),
    ]
    last = model.is_moe_layer(model.layers - 1)
    ops += [
        StepOp(o.op, "mtp" if o.stream == "compute" else "comm", o.stream)
        for o in layer_ops(model, deg, spec, seqs, last)
    ]
    ops += [StepOp(o.op, "mtp", o.stream) for o in head_ops(model, deg, spec, seqs)]
    return ops


#: _layer_weights results keyed by (model JSON, tp, ep, dtype, act dtype, MoE layer)
_LAYER_WEIGHTS: dict[tuple[object, ...], float] = {}


def _layer_weights(model: ModelConfig, deg: Degrees, spec: StepSpec, moe_layer: bool) -> float:
    """Resident weight bytes of one decoder layer on one device (every local expert); cached,
    because the capacity search asks for thousands of layouts."""
    key = (_model_key(model), deg.tp, deg.ep > 1, spec.dtype, spec.act_dtype, moe_layer)
    hit = _LAYER_WEIGHTS.get(key)
    if hit is None:  # everything but the routed experts depends on ep only through ep > 1
        hit = _LAYER_WEIGHTS[key] = _layer_weights_uncached(model, deg, spec, moe_layer)
    if moe_layer:
        sh = shard(model, deg)
        per_expert = model.ffn.matrices * model.hidden * sh.expert_intermediate
        hit += sh.local_experts * per_expert * DTYPE_BYTES[spec.dtype]
    return hit


_MODEL_KEYS: dict[int, tuple[ModelConfig, str]] = {}


def _model_key(model: ModelConfig) -> str:
    """A hashable identity of a model config (its shapes, not its citations); the config is
    kept alive with its key so that its id is never reused while cached."""
    hit = _MODEL_KEYS.get(id(model))
    if hit is None or hit[0] is not model:
        key = model.model_dump_json(exclude={"citations", "sources", "description"})
        hit = _MODEL_KEYS[id(model)] = (model, key)
    return hit[1]


def _layer_weights_uncached(
    model: ModelConfig, deg: Degrees, spec: StepSpec, moe_layer: bool
) -> float:
    one = StepSpec("decode", 1, 1, spec.dtype, devices_per_node=spec.devices_per_node)
    total = 2 * model.hidden * DTYPE_BYTES[spec.act_dtype]  # the two norm weight vectors
    for o in layer_ops(model, deg, one, 1, moe_layer):
        if isinstance(o.op, Gemm) and not o.op.name.startswith("experts"):
            total += o.op.weight_bytes
    return total


def stage_layers(layers: int, pp: int, stage: int) -> tuple[int, int]:
    """Layers ``[lo, hi)`` of ``stage``: an even split, the larger stages first."""
    base, extra = divmod(layers, pp)
    lo = stage * base + min(stage, extra)
    return lo, lo + base + (1 if stage < extra else 0)


def _moe_layers_in(model: ModelConfig, lo: int, hi: int) -> int:
    m = model.moe
    if m is None:
        return 0
    fk, freq = m.first_k_dense, m.layer_freq
    first = fk + -(-(max(lo, fk) - fk) // freq) * freq  # first MoE layer at or after lo
    return 0 if first >= hi else (hi - 1 - first) // freq + 1


def stage_weight_bytes(model: ModelConfig, deg: Degrees, spec: StepSpec, stage: int) -> float:
    """Resident weight bytes of one device of ``stage``."""
    b = DTYPE_BYTES[spec.dtype]
    lo, hi = stage_layers(model.layers, deg.pp, stage)
    n_moe = _moe_layers_in(model, lo, hi)
    total = 0.0
    for kind, count in ((True, n_moe), (False, hi - lo - n_moe)):
        if count:
            total += _layer_weights(model, deg, spec, kind) * count
    table = math.ceil(model.vocab / deg.tp) * model.hidden * b
    if stage == 0:
        total += table  # input embedding
    if stage == deg.pp - 1:
        total += 0 if (model.tied_embeddings and deg.pp == 1) else table
        if spec.mtp_depth and model.mtp_layers:
            last = model.is_moe_layer(model.layers - 1)
            proj = 2 * model.hidden * model.hidden * b
            total += model.mtp_layers * (_layer_weights(model, deg, spec, last) + proj)
    return total


def kv_bytes_per_token_per_layer(model: ModelConfig, kv_heads_local: int, kv_dtype: str) -> float:
    """KV-cache bytes one token adds to one layer on one device."""
    a = model.attention
    b = DTYPE_BYTES[kv_dtype]
    if a.kind == "mla":
        assert a.kv_lora_rank and a.qk_rope_head_dim
        return float((a.kv_lora_rank + a.qk_rope_head_dim) * b)
    return float(kv_heads_local * (a.head_dim + a.v_dim) * b)


def memory_per_device(model: ModelConfig, deg: Degrees, spec: StepSpec) -> tuple[float, float]:
    """(resident weight bytes, KV-cache bytes) of one device of the largest stage, without
    building the op graph of every stage (the capacity search calls this many times)."""
    sh = shard(model, deg)
    seqs_rep = math.ceil(spec.batch / deg.dp)
    decode = spec.phase == "decode"
    kv_tok = kv_bytes_per_token_per_layer(model, sh.kv_heads, spec.kv_dtype)
    kv_len = spec.context + (spec.q_len if decode else 0)
    chunk_rep = math.ceil(spec.chunk_tokens / deg.dp)  # prompt tokens cached by this step
    kv = (seqs_rep * kv_len + chunk_rep) * kv_tok * sh.layers_per_stage
    stages = {0, deg.pp - 1} | ({1} if deg.pp > 2 else set())
    return max(stage_weight_bytes(model, deg, spec, s) for s in stages), kv


def build_step(model: ModelConfig, deg: Degrees, spec: StepSpec) -> StepGraph:
    """The per-device layer graph of one step (see the module docstring)."""
    seqs_rep = math.ceil(spec.batch / deg.dp)
    mb = max(1, min(spec.micro_batches, seqs_rep))
    seqs = math.ceil(seqs_rep / mb)
    chunk = math.ceil(math.ceil(spec.chunk_tokens / deg.dp) / mb)  # per replica, micro-batch
    decode = spec.phase == "decode"
    notes: list[str] = []
    if spec.batch % deg.dp:
        notes.append(f"batch {spec.batch} does not split evenly over dp={deg.dp}; busiest replica")
    stages: list[tuple[LayerGraph, ...]] = []
    for s in range(deg.pp):
        lo, hi = stage_layers(model.layers, deg.pp, s)
        groups: list[LayerGraph] = []
        i = lo
        while i < hi:
            kind = model.is_moe_layer(i)
            j = i
            while j < hi and model.is_moe_layer(j) == kind:
                j += 1
            ops = tuple(layer_ops(model, deg, spec, seqs, kind, chunk))
            groups.append(LayerGraph("moe layer" if kind else "dense layer", ops, j - i))
            i = j
        if s < deg.pp - 1:
            t = seqs * (spec.q_len if decode else spec.context) + chunk
            send = Collective(
                "p2p",
                t * model.hidden * DTYPE_BYTES[spec.act_dtype],
                2,
                scope(2, deg.tp * deg.dp, spec.devices_per_node),
                "pp send",
            )
            groups.append(LayerGraph("pp send", (StepOp(send, "comm", "comm"),)))
        else:
            groups.append(LayerGraph("head", tuple(head_ops(model, deg, spec, seqs, chunk))))
            if decode and seqs and spec.mtp_depth and model.mtp_layers:
                groups.append(
                    LayerGraph("mtp", tuple(mtp_ops(model, deg, spec, seqs)), spec.mtp_depth)
                )
        stages.append(tuple(groups))
    if decode and spec.mtp_depth and not model.mtp_layers:
        notes.append(
            f"{model.name} has no MTP module: draft tokens cost nothing here (an external "
            "draft model is not modelled)"
        )
    weights, kv = memory_per_device(model, deg, spec)
    per_seq = spec.q_len if decode else spec.context
    return StepGraph(
        spec=spec,
        stages=tuple(stages),
        seqs_per_replica=seqs_rep,
        micro_batches=mb,
        tokens_per_step=spec.batch * per_seq,
        weight_bytes_per_device=weights,
        kv_bytes_per_device=kv,
        notes=tuple(notes),
    )
