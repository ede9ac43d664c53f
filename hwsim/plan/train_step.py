"""The per-device layer graph of a training step: forward, input-gradient and weight-gradient
passes of one decoder layer (and of the embedding and the LM head), as plain data in the op
vocabulary of :mod:`hwsim.plan.workload`, for one micro-batch on one GPU of a
:class:`~hwsim.plan.train_layout.TrainLayout`.

A linear layer ``Y[t, n] = X[t, k] · W[k, n]`` becomes three GEMMs: the forward, the input
gradient ``dX = dY · Wᵀ`` (``Gemm(t, k, n)``, pass ``B``) and the weight gradient
``dW = Xᵀ · dY`` (``Gemm(k, n, t)``, pass ``W``; both operands are activations). Attention's
backward is the FlashAttention-2 backward kernel (``AttentionShape.pass_ = "bwd"``); a norm's
or an activation's backward reads its input and the output gradient and writes the input
gradient, timed as two passes of the forward streaming kernel.

Communication (stream ``comm``, category ``tp``/``cp``/``ep``):

* TP without sequence parallelism: an all-reduce after the attention output projection and
  after the FFN in the forward, and after the QKV and FC1 input gradients in the backward, where
  it overlaps the weight-gradient GEMM (Megatron's asynchronous gradient all-reduce);
* TP with SP: all-gather before QKV and FC1, reduce-scatter after the output projection and
  FC2; the backward all-gathers the output gradient, re-gathers the sharded input for the weight
  gradient and reduce-scatters the input gradient (Korthikanti et al. 2022, sec. 4.2.2). With
  ``tp_overlap`` each all-gather/reduce-scatter is pipelined with its GEMM in ``tp`` chunks
  (Transformer Engine's userbuffers ring exchange);
* CP: ring attention, ``cp`` steps per layer; the key/value chunk of the next step travels while
  the current one is computed (the backward also sends the key/value gradients);
* EP: MoE dispatch and combine all-to-alls in the forward; in the backward the combine's
  gradient travels like a dispatch and the dispatch's like a combine.

Ops that may overlap share an ``overlap`` group (consecutive ops with the same non-zero id):
the group takes ``max(compute, comm) + min(compute, comm) / chunks`` (see
:mod:`hwsim.train.timing`). Recompute: ``full`` re-runs the layer's whole forward at the start
of its backward and keeps only the layer input; ``selective`` re-runs the norms, the activation
and the attention core (keeping the GEMM-feeding inputs those rebuild out of memory).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Literal

from hwsim.plan.attention import AttentionShape
from hwsim.plan.step_types import scope
from hwsim.plan.train_layout import TrainLayout
from hwsim.plan.train_ops import (
    ATTENTION,
    COMM_CATEGORIES,
    RECOMPUTE,
    Builder,
    Pass,
    Passes,
    TrainOp,
    TrainSpec,
    linear,
    norm_kind,
    stream_pair,
    tokens,
    tp_wrap,
)
from hwsim.plan.workload import Attention, Collective, Elementwise, Gemm, MoeTraffic
from hwsim.spec.device import DTYPE_BYTES
from hwsim.spec.errors import SpecError
from hwsim.spec.model import ModelConfig

#: The step's plain data lives in hwsim.plan.train_ops; re-exported here, where layers are
#: built, so callers import one module.
__all__ = [
    "ATTENTION",
    "COMM_CATEGORIES",
    "RECOMPUTE",
    "Pass",
    "Passes",
    "TrainOp",
    "TrainSpec",
    "embedding_passes",
    "head_passes",
    "layer_passes",
    "p2p_bytes",
]


def _attention_core(
    bld: Builder, model: ModelConfig, heads: int, kv_heads: int, hd: int, dv: int
) -> tuple[list[TrainOp], list[TrainOp], float]:
    """The attention core: FlashAttention forward and backward, as ``cp`` ring steps when
    context-parallel (each step's key/value chunk exchange overlaps the previous step)."""
    lay, spec = bld.lay, bld.spec
    b, s_loc, cp = spec.micro_batch, spec.seqlen // lay.cp, lay.cp
    act = spec.act_dtype

    def core(q: int, kv: int, causal: bool, p: str, name: str) -> Attention:
        shape = AttentionShape(b, heads, kv_heads, q, kv, hd, dv, causal=causal, dtype=act, pass_=p)
        return Attention(shape, "prefill", name=name)

    saved = b * s_loc * (heads * hd + kv_heads * (hd + dv) + heads * dv) * DTYPE_BYTES[act]
    saved += b * s_loc * heads * 4.0  # fp32 log-sum-exp per row and head
    if spec.attention == "unfused":
        if cp > 1:
            raise SpecError("context parallelism needs flash attention", key="--attention")
        return _unfused_core(bld, heads, hd, dv)
    if cp == 1:
        return (
            [TrainOp(core(s_loc, s_loc, True, "fwd", "attention"), "attention")],
            [TrainOp(core(s_loc, s_loc, True, "bwd", "attention bwd"), "attention")],
            saved,
        )
    kv_bytes = b * s_loc * kv_heads * (hd + dv) * DTYPE_BYTES[act]
    where = scope(cp, lay.tp, spec.devices_per_node)
    f: list[TrainOp] = []
    bw: list[TrainOp] = []
    for step in range(cp):
        # step 0: the local diagonal chunks (causal); later steps: half a chunk pair each
        # (zig-zag load balance: s_loc x s_loc/2 unmasked), so every rank does s^2/(2cp) pairs
        causal = step == 0
        kv = s_loc if causal else max(1, s_loc // 2)
        gf, gb = bld.gid(), bld.gid()
        f.append(TrainOp(core(s_loc, kv, causal, "fwd", "ring attention"), "attention", overlap=gf))
        bw.append(
            TrainOp(core(s_loc, kv, causal, "bwd", "ring attention bwd"), "attention", overlap=gb)
        )
        if step < cp - 1:
            f.append(TrainOp(Collective("p2p", kv_bytes, 2, where, "CP KV"), "cp", "comm", gf))
            bw.append(
                TrainOp(Collective("p2p", 2 * kv_bytes, 2, where, "CP KV+dKV"), "cp", "comm", gb)
            )
    return f, bw, saved


def _unfused_core(
    bld: Builder, heads: int, hd: int, dv: int
) -> tuple[list[TrainOp], list[TrainOp], float]:
    """Attention with the scores in memory (Megatron before FlashAttention): per head
    ``S = QKᵀ`` and ``O = PV`` as batched GEMMs, a fused scale-mask-softmax kernel and, with
    dropout, a dropout kernel over the ``s × s`` probabilities; the backward runs the four
    gradient GEMMs, the dropout and softmax backward. It keeps Q, K, V, the probabilities (and
    the dropout mask, one byte per score)."""
    spec = bld.spec
    b, s = spec.micro_batch, spec.seqlen
    n = b * heads
    act = spec.act_dtype
    e = DTYPE_BYTES[act]

    def g(m: int, nn: int, k: int, name: str) -> TrainOp:
        return TrainOp(Gemm(m, nn, k, act, weights="activation", count=n, name=name), "attention")

    soft = Elementwise("softmax", n * s, s, act, "softmax")
    drop = Elementwise("add", n * s, s, act, "attention dropout")
    f = [g(s, s, hd, "QK^T"), TrainOp(soft, "attention")]
    bw = [g(s, dv, s, "dV = P^T dO"), g(s, s, dv, "dP = dO V^T")]
    if spec.dropout:
        f.append(TrainOp(drop, "attention"))
        bw.append(TrainOp(replace(drop, name="attention dropout bwd"), "attention"))
    f.append(g(s, dv, s, "PV"))
    bw += [TrainOp(replace(soft, name="softmax bwd"), "attention"), g(s, hd, s, "dQ = dS K"),
           g(s, hd, s, "dK = dS^T Q")]  # fmt: skip
    saved = b * s * heads * (2 * hd + dv) * e + n * s * s * (e + (1 if spec.dropout else 0))
    return f, bw, saved


def _attention_block(
    bld: Builder, model: ModelConfig
) -> tuple[list[TrainOp], list[TrainOp], float]:
    """Projections, core and output projection of one layer (MHA/GQA, or MLA expanded per
    head as training runs it)."""
    a, h, lay = model.attention, model.hidden, bld.lay
    t, _, _ = tokens(lay, bld.spec)
    heads = a.heads // lay.tp
    f: list[TrainOp] = []
    b: list[list[TrainOp]] = []
    saved = 0.0

    def lin(name: str, n: int, k: int, col: bool, tp_comm: bool = True) -> None:
        nonlocal saved
        lf, lb, sv = linear(bld, name, t, n, k, "attention", col=col, tp_comm=tp_comm)
        f.extend(lf)
        b.append(lb)
        saved += sv

    if a.kind == "mla":
        assert a.kv_lora_rank and a.qk_rope_head_dim and a.qk_nope_head_dim
        lat, rope, nope, dv = a.kv_lora_rank, a.qk_rope_head_dim, a.qk_nope_head_dim, a.v_dim
        if a.q_lora_rank:  # the down-projections are replicated over TP (small), then split
            lin("q_a proj", a.q_lora_rank, h, True, tp_comm=lay.tp > 1)
            lin("q_b proj", heads * (nope + rope), a.q_lora_rank, False, tp_comm=False)
        else:
            lin("q proj", heads * (nope + rope), h, True)
        lin("kv_a proj", lat + rope, h, False, tp_comm=False)
        lin("kv_b proj", heads * (nope + dv), lat, False, tp_comm=False)
        cf, cb, sv = _attention_core(bld, model, heads, heads, nope + rope, dv)
        hd_v = dv
    else:
        kvh = max(1, a.kv_heads // lay.tp)
        lin("qkv proj", heads * a.head_dim + kvh * (a.head_dim + a.v_dim), h, True)
        cf, cb, sv = _attention_core(bld, model, heads, kvh, a.head_dim, a.v_dim)
        hd_v = a.v_dim
    f.extend(cf)
    b.append(cb)
    saved += sv
    of, ob, _ = linear(bld, "o proj", t, h, heads * hd_v, "attention", col=False)
    f.extend(of)
    b.append(ob)  # its input (the attention output) is already counted with the core
    return f, [o for blk in reversed(b) for o in blk], saved


def _ffn_block(bld: Builder, model: ModelConfig, width: int, name: str, cat: str,
               t: int | None = None, count: int = 1, tp_comm: bool = True
               ) -> tuple[list[TrainOp], list[TrainOp], float, list[TrainOp]]:  # fmt: skip
    """Up (gate+up for SwiGLU), activation, down; returns (fwd, bwd, saved, recomputable
    activation ops)."""
    spec = bld.spec
    tt = t if t is not None else tokens(bld.lay, spec)[0]
    gated = model.ffn.activation == "swiglu"
    act_op = Elementwise(
        "swiglu" if gated else "gelu", tt * count, width, spec.act_dtype, f"{name} act"
    )
    uf, ub, s1 = linear(bld, f"{name} up", tt, (2 if gated else 1) * width, model.hidden, cat,
                         col=True, count=count, tp_comm=tp_comm)  # fmt: skip
    df, db, s2 = linear(bld, f"{name} down", tt, model.hidden, width, cat,
                         col=False, count=count, tp_comm=tp_comm)  # fmt: skip
    saved = s1 + s2 + tt * count * (2 if gated else 1) * width * DTYPE_BYTES[spec.act_dtype]
    f = [*uf, TrainOp(act_op, cat), *df]
    b = [*db, *stream_pair(act_op, cat), *ub]
    return f, b, saved, [TrainOp(act_op, "recompute")]


def _moe_block(bld: Builder, model: ModelConfig, expert_load: float
               ) -> tuple[list[TrainOp], list[TrainOp], float, list[TrainOp]]:  # fmt: skip
    """Router, dispatch, grouped expert GEMMs (the busiest rank's load: ``expert_load`` ×
    the mean), combine, shared expert; ep = 1 splits the experts over TP like a dense FFN."""
    moe = model.moe
    assert moe is not None
    lay, spec = bld.lay, bld.spec
    h, k, e = model.hidden, moe.top_k, moe.n_routed_experts
    t, t_sp, sp = tokens(lay, spec)
    act = spec.act_dtype
    f: list[TrainOp] = [TrainOp(Gemm(t_sp, e, h, act, name="router"), "moe")]
    b: list[TrainOp] = [TrainOp(Gemm(t_sp, h, e, act, name="router dgrad"), "moe"),
                        TrainOp(Gemm(h, e, t_sp, act, weights="activation", name="router wgrad"),
                                "moe", weight_grad=True)]  # fmt: skip
    saved = 0.0
    rec: list[TrainOp] = []
    if lay.ep > 1:
        tok = t_sp  # each TP rank routes its own sequence shard
        local = e // lay.ep
        m_e = max(1, round(tok * k * lay.ep / e * expert_load))  # tokens per local expert
        wire = spec.wire_dtype or act
        where = scope(lay.ep, 1, spec.devices_per_node)
        groups = moe.topk_groups if moe.n_groups > 1 else None

        def a2a(phase: Literal["dispatch", "combine"], dtype: str, name: str) -> TrainOp:
            tr = MoeTraffic(tok, h, e, k, groups, phase, dtype)
            nbytes = tok * k * h * DTYPE_BYTES[dtype]
            return TrainOp(Collective("all-to-all", nbytes, lay.ep, where, name, tr), "ep", "comm")

        ef, eb, es, rec = _ffn_block(bld, model, moe.moe_intermediate, "experts", "moe",
                                     t=m_e, count=local, tp_comm=False)  # fmt: skip
        # token permutation before the dispatch and after it (grouped by expert), and the
        # reverse around the combine: one gather pass (read once, write once) over the routed
        # copies each, timed as the one-input streaming kernel
        perm = Elementwise("gelu", tok * k, h, act, "permute")
        unperm = Elementwise("gelu", m_e * local, h, act, "unpermute")
        f += [
            TrainOp(perm, "moe"),
            a2a("dispatch", wire, "dispatch"),
            TrainOp(unperm, "moe"),
            *ef,
            TrainOp(replace(unperm, name="permute back"), "moe"),
            a2a("combine", act, "combine"),
            TrainOp(replace(perm, name="unpermute back"), "moe"),
        ]
        # backward: the combine's gradient goes out like a dispatch, the dispatch's comes back
        b = [TrainOp(replace(perm, name="permute bwd"), "moe"), a2a("dispatch", act, "combine bwd"),
             TrainOp(replace(unperm, name="unpermute bwd"), "moe"), *eb,
             TrainOp(replace(unperm, name="permute back bwd"), "moe"),
             a2a("combine", act, "dispatch bwd"),
             TrainOp(replace(perm, name="unpermute back bwd"), "moe"), *b]  # fmt: skip
        saved += es
    else:  # experts split over TP like a dense FFN: one gather before, one reduce after
        m_e = max(1, round(t * k / e * expert_load))
        width = moe.moe_intermediate // lay.tp
        ef, eb, es, rec = _ffn_block(bld, model, width, "experts", "moe", t=m_e, count=e,
                                     tp_comm=False)  # fmt: skip
        pre, post, bpre, bpost = tp_wrap(bld, t * h * DTYPE_BYTES[act], sp)
        f += [*pre, *ef, *post]
        b = [*bpost, *eb, *bpre, *b]
        saved += es
    if moe.shared_width:
        width = moe.shared_width if lay.ep > 1 else moe.shared_width // lay.tp
        sf, sb, ss, srec = _ffn_block(bld, model, width, "shared", "moe",
                                      t=t_sp if lay.ep > 1 else t, tp_comm=lay.ep == 1)  # fmt: skip
        f += sf
        b = [*sb, *b]
        saved += ss
        rec += srec
    return f, b, saved, rec


def layer_passes(
    model: ModelConfig, lay: TrainLayout, spec: TrainSpec, moe_layer: bool, expert_load: float = 1.0
) -> Passes:
    """One decoder layer's passes for one micro-batch on one GPU (see the module docstring)."""
    bld = Builder(lay, spec)
    _, t_sp, _ = tokens(lay, spec)
    h, act = model.hidden, spec.act_dtype
    a_bytes = DTYPE_BYTES[act]
    n1 = Elementwise(norm_kind(model), t_sp, h, act, "attn norm")
    n2 = Elementwise(norm_kind(model), t_sp, h, act, "ffn norm")
    add = Elementwise("add", t_sp, h, act, "residual")
    af, ab, a_saved = _attention_block(bld, model)
    if moe_layer:
        mf, mb, m_saved, act_ops = _moe_block(bld, model, expert_load)
    else:
        mf, mb, m_saved, act_ops = _ffn_block(
            bld, model, model.ffn.intermediate // lay.tp, "ffn", "ffn"
        )
    fwd = [
        TrainOp(n1, "norm"),
        *af,
        TrainOp(add, "norm"),
        TrainOp(n2, "norm"),
        *mf,
        TrainOp(add, "norm"),
    ]
    bwd = [*mb, *stream_pair(n2, "norm"), *ab, *stream_pair(n1, "norm")]
    norms_in = 2 * t_sp * h * a_bytes  # each norm keeps its input
    saved = a_saved + m_saved + norms_in
    if spec.recompute == "full":
        # re-run the whole forward (its collectives too) when the layer's backward starts;
        # keep only the layer input
        redo = [replace(o, category="recompute") if o.stream == "compute" else o for o in fwd]
        bwd = [*_regroup(redo, bld), *bwd]
        saved = t_sp * h * a_bytes
    elif spec.recompute == "selective":
        # re-run norms, the activation and the attention core; drop what they rebuild: the
        # GEMM inputs after the norms and the activation, and the attention output
        core = [replace(o, category="recompute") if o.stream == "compute" else o
                for o in af if isinstance(o.op, Attention) or o.category == "cp"]  # fmt: skip
        redo = [TrainOp(n1, "recompute"), *core, TrainOp(n2, "recompute"), *act_ops]
        bwd = [*_regroup(redo, bld), *bwd]
        saved -= _rebuilt_bytes(model, lay, spec, moe_layer)
    name = "moe layer" if moe_layer else "dense layer"
    return Passes(name, tuple(fwd), tuple(bwd), max(saved, t_sp * h * a_bytes))


def _regroup(ops: list[TrainOp], bld: Builder) -> list[TrainOp]:
    """Copies of ``ops`` with fresh overlap-group ids (a recompute is its own group)."""
    ids: dict[int, int] = {}
    out = []
    for o in ops:
        if o.overlap:
            if o.overlap not in ids:
                ids[o.overlap] = bld.gid()
            o = replace(o, overlap=ids[o.overlap])
        out.append(o)
    return out


def _rebuilt_bytes(model: ModelConfig, lay: TrainLayout, spec: TrainSpec, moe_layer: bool) -> float:
    """Activation bytes selective recompute does not keep: the inputs of the QKV and FC1
    GEMMs (rebuilt by re-running the norms), the attention output (re-run core) and the FC2
    input (re-run activation)."""
    t, t_sp, sp = tokens(lay, spec)
    a, h, b = model.attention, model.hidden, DTYPE_BYTES[spec.act_dtype]
    rows = t_sp if sp else t
    heads = a.heads // lay.tp
    out = 2 * rows * h * b + t * heads * a.v_dim * b
    if moe_layer and model.moe is not None:
        m = model.moe
        width = m.moe_intermediate if lay.ep > 1 else m.moe_intermediate // lay.tp
        out += t_sp * m.top_k * width * b  # the experts' activation outputs (balanced)
    else:
        out += t * (model.ffn.intermediate // lay.tp) * b
    return out


def embedding_passes(model: ModelConfig, lay: TrainLayout, spec: TrainSpec) -> Passes:
    """The input embedding on the first chunk: a row gather forward, a scatter-add of the
    gradient backward (both timed as one pass of the one-input streaming kernel)."""
    t, t_sp, sp = tokens(lay, spec)
    op = Elementwise("gelu", t_sp, model.hidden, spec.act_dtype, "embedding")
    bop = replace(op, name="embedding bwd")
    # vocab-parallel: the partial lookups are summed over TP (reduce-scattered under SP)
    _, post, _, bpost = tp_wrap(
        Builder(lay, spec), t * model.hidden * DTYPE_BYTES[spec.act_dtype], sp
    )
    fwd = (TrainOp(op, "embedding"), *post)
    bwd = (*bpost, TrainOp(bop, "embedding"))
    return Passes("embedding", fwd, bwd, 0.0)


def head_passes(model: ModelConfig, lay: TrainLayout, spec: TrainSpec) -> Passes:
    """Final norm, vocab-parallel LM head and cross-entropy on the last chunk. The loss
    reads the fp32 logits once forward and once backward (a softmax pass each), and keeps
    them for the backward."""
    bld = Builder(lay, spec)
    t, t_sp, _ = tokens(lay, spec)
    vocab = math.ceil(model.vocab / lay.tp)
    norm = Elementwise(norm_kind(model), t_sp, model.hidden, spec.act_dtype, "final norm")
    hf, hb, saved = linear(bld, "lm head", t, vocab, model.hidden, "lm_head", col=True)
    loss = Elementwise("softmax", t, vocab, "fp32", "cross-entropy")
    fwd = (TrainOp(norm, "norm"), *hf, TrainOp(loss, "lm_head"))
    bwd = (*stream_pair(loss, "lm_head")[1:], *hb, *stream_pair(norm, "norm"))
    saved += t * vocab * 4.0 + t_sp * model.hidden * DTYPE_BYTES[spec.act_dtype]
    return Passes("lm head", fwd, bwd, saved)


def p2p_bytes(model: ModelConfig, lay: TrainLayout, spec: TrainSpec) -> float:
    """Bytes one GPU sends to the next pipeline stage per micro-batch: its share of the
    hidden states (SP, or Megatron's scatter/gather optimisation, splits them over TP)."""
    t, _, _ = tokens(lay, spec)
    return t * model.hidden * DTYPE_BYTES[spec.act_dtype] / lay.tp
