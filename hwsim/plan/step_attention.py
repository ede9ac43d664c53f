"""The attention ops of one decoder layer in a model step: projections, the attention core and
the output projection, for MHA/GQA or MLA (DeepSeek: low-rank Q and KV projections; decode uses
the absorbed form, whose attention is MQA over the 512+64 latent, prefill expands K and V per
head), with the KV cache read at the context.

A decode step may also carry ``chunk`` prompt tokens of a prefill in progress (chunked prefill
mixed with decode): the projections run on every token of the step, and the chunk gets its own
causal attention over itself, as a prefill of ``chunk`` tokens. Its attention to earlier chunks
of the same prompt is not charged (the step-time grid has no axis for it): for prompts of 1-8k
tokens that is 2-15% of a chunk's attention FLOPs, which are themselves a few percent of its
projection FLOPs at model widths of 4k and more (``docs/serving.md``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hwsim.plan.attention import AttentionShape
from hwsim.plan.step_types import StepOp, StepSpec
from hwsim.plan.workload import Attention, Elementwise, Gemm

if TYPE_CHECKING:
    from hwsim.plan.step_types import Degrees
    from hwsim.spec.model import ModelConfig


def attention_ops(
    model: ModelConfig,
    deg: Degrees,
    spec: StepSpec,
    seqs: int,
    heads: int,
    kv_heads: int,
    chunk: int = 0,
) -> list[StepOp]:
    """Projections, attention core and output projection of one layer for ``seqs`` sequences
    (and, in a decode step, ``chunk`` prompt tokens; see the module docstring)."""
    a, h = model.attention, model.hidden
    dt, kvdt = spec.dtype, spec.kv_dtype
    decode = spec.phase == "decode"
    q = spec.q_len if decode else spec.context
    kv_len = spec.context + spec.q_len if decode else spec.context
    t = seqs * q + (chunk if decode else 0)
    ops: list[StepOp] = []
    if a.kind == "mla":
        assert a.kv_lora_rank and a.qk_rope_head_dim and a.qk_nope_head_dim
        lat, rope, nope, dv = a.kv_lora_rank, a.qk_rope_head_dim, a.qk_nope_head_dim, a.v_dim
        qk = nope + rope
        if a.q_lora_rank:
            ops += [
                StepOp(Gemm(t, a.q_lora_rank, h, dt, name="q_a proj"), "attention"),
                StepOp(Elementwise("rmsnorm", t, a.q_lora_rank, spec.act_dtype, "q norm"), "norm"),
                StepOp(Gemm(t, heads * qk, a.q_lora_rank, dt, name="q_b proj"), "attention"),
            ]
        else:
            ops.append(StepOp(Gemm(t, heads * qk, h, dt, name="q proj"), "attention"))
        ops += [
            StepOp(Gemm(t, lat + rope, h, dt, name="kv_a proj"), "attention"),
            StepOp(Elementwise("rmsnorm", t, lat, spec.act_dtype, "kv norm"), "norm"),
        ]
        if decode and seqs:  # absorbed: q_nope·W_UK per head, MQA over the latent, then ·W_UV
            td = seqs * q
            shape = AttentionShape(seqs, heads, 1, q, kv_len, lat + rope, lat, dtype=kvdt)
            mla = Attention(shape, "decode", latent_kv=True, name="mla attention")
            q_abs = Gemm(td, lat, nope, dt, count=heads, name="q absorb")
            v_abs = Gemm(td, dv, lat, dt, count=heads, name="v absorb")
            ops += [
                StepOp(q_abs, "attention", part="batch"),
                StepOp(mla, "attention", part="decode"),
                StepOp(v_abs, "attention", part="batch"),
            ]
        n, s = (1, chunk) if decode else (seqs, spec.context)
        if s:  # prefill (or a chunk): expand the latent into per-head K (nope part) and V
            shape = AttentionShape(n, heads, heads, s, s, qk, dv, causal=True, dtype=kvdt)
            name = "mla chunk attention" if decode else "mla attention"
            ops += [
                StepOp(Gemm(n * s, heads * (nope + dv), lat, dt, name="kv_b proj"), "attention",
                       part="chunk"),
                StepOp(Attention(shape, "prefill", name=name), "attention", part="chunk"),
            ]  # fmt: skip
        ops.append(StepOp(Gemm(t, h, heads * dv, dt, name="o proj"), "attention"))
        return ops
    hd, dv = a.head_dim, a.v_dim
    ops = [StepOp(Gemm(t, heads * hd + kv_heads * (hd + dv), h, dt, name="qkv proj"), "attention")]
    if seqs:
        shape = AttentionShape(
            seqs, heads, kv_heads, q, kv_len, hd, dv, causal=not decode, dtype=kvdt
        )
        ops.append(
            StepOp(Attention(shape, spec.phase, name="attention"), "attention", part="decode")
        )
    if decode and chunk:
        shape = AttentionShape(1, heads, kv_heads, chunk, chunk, hd, dv, causal=True, dtype=kvdt)
        core = Attention(shape, "prefill", name="chunk attention")
        ops.append(StepOp(core, "attention", part="chunk"))
    ops.append(StepOp(Gemm(t, h, heads * dv, dt, name="o proj"), "attention"))
    return ops
