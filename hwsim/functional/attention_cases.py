"""Attention check cases for ``hwsim check``: plan → numpy executor → compare with the float64
naive reference, and the executor's byte/FLOP/exp counts against the plan's totals.

:func:`attention_check` is the one routine (tests use it too); the grid below registers it over
kernels (flash, naive, split-KV), passes, masks (causal, local windows incl. fully masked rows),
GQA/MQA, MLA head dims (192/128), dtypes and a large-logit case.
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from typing import Any

import numpy as np

from hwsim.functional.attention import execute, reference_attention, reference_backward
from hwsim.functional.check import CheckResult, compare, inputs, register_case
from hwsim.plan.attention import AttentionShape, plan_attention

#: On-chip budget of the check plans: H100's 228 KiB of shared memory per SM.
H100_SMEM_BYTES = 228 * 1024


def attention_inputs(s: AttentionShape, seed: int, scale: float = 1.0) -> dict:
    """Seeded q, k, v, do (quantized to the shape's dtype; dO in the output dtype)."""
    d = inputs(
        {
            "q": (s.batch, s.heads, s.seqlen_q, s.head_dim),
            "k": (s.batch, s.kv_heads, s.seqlen_kv, s.head_dim),
            "v": (s.batch, s.kv_heads, s.seqlen_kv, s.dv),
        },
        s.dtype,
        seed,
        scale,
    )
    out_dtype = "fp32" if s.dtype == "fp32" else "fp16" if s.dtype == "fp16" else "bf16"
    d["do"] = inputs((s.batch, s.heads, s.seqlen_q, s.dv), out_dtype, seed + 1)
    return d


def attention_check(
    s: AttentionShape,
    kernel: str = "flash",
    name: str = "",
    budget: float = H100_SMEM_BYTES,
    seed: int = 0,
    scale: float = 1.0,
    **plan_kw: Any,  # plan_attention keywords (block sizes, splits, pack_gqa)
) -> list[CheckResult]:
    """Run one attention case; one result per output tensor, each carrying ``bytes_match``
    (executor counts == plan totals, incl. FLOPs and exps)."""
    plan = plan_attention(s, budget, kernel=kernel, **plan_kw)
    d = attention_inputs(s, seed, scale)
    run = execute(plan, d["q"], d["k"], d["v"], d.get("do"))
    planned = {key: v for key, v in plan.bytes_rw().items() if v}
    match = run.counts == planned and run.flops == plan.flops() and run.exp_ops == plan.exp_ops()
    detail = f"{len(plan.kernels)} kernels, {plan.block_q}x{plan.block_kv} tiles"
    o, lse = reference_attention(s, d["q"], d["k"], d["v"])
    out = [compare(run.o, o, s.dtype, f"{name}:O")]
    if kernel != "naive":  # the naive kernel keeps no LSE
        # LSE is fp32 of an fp32 QKᵀ of exactly representable inputs: fp32 tolerance
        out.append(compare(run.lse, lse, "fp32", f"{name}:LSE"))
    if s.pass_ != "fwd":
        grads = reference_backward(s, d["q"], d["k"], d["v"], d["do"])
        # one error scale for all three gradients: the largest of them. A gradient can be ~0
        # by cancellation (dK, dQ with one visible key) while its terms are O(|dV|)
        gscale = max(float(np.abs(g).max()) for g in grads)
        for got, ref, n in zip((run.dq, run.dk, run.dv), grads, ("dQ", "dK", "dV"), strict=True):
            out.append(compare(got, ref, s.dtype, f"{name}:{n}", scale=gscale))
    return [replace(r, bytes_match=match, detail=detail) for r in out]


def _shape(**kw: object) -> AttentionShape:
    base: dict[str, object] = dict(batch=2, heads=4, kv_heads=2, seqlen_q=77, seqlen_kv=130)
    base.update(head_dim=64, causal=True, dtype="bf16", pass_="fwd")
    base.update(kw)
    return AttentionShape(**base)  # type: ignore[arg-type]


def _register() -> None:
    quick: list[tuple[str, AttentionShape, str, dict]] = []
    for dt in ("fp32", "bf16", "fp16", "fp8_e4m3", "fp8_e5m2"):
        quick.append((f"attn/flash/fwd/causal-gqa/{dt}", _shape(dtype=dt), "flash", {}))
    quick += [
        ("attn/naive/fwd/causal", _shape(), "naive", {}),
        (
            "attn/split-kv/decode-mqa",
            _shape(seqlen_q=1, seqlen_kv=1000, kv_heads=1, causal=False),
            "split_kv",
            {"num_splits": 5},
        ),
        (
            "attn/flash/fwd/window-empty-rows",
            _shape(seqlen_q=64, seqlen_kv=32, window=(8, 0), dtype="fp16"),
            "flash",
            {},
        ),
        (
            "attn/flash/fwd+bwd/mla-192-128",
            _shape(head_dim=192, head_dim_v=128, pass_="fwd+bwd"),
            "flash",
            {},
        ),
        ("attn/flash/fwd+bwd/gqa", _shape(dtype="fp16", pass_="fwd+bwd"), "flash", {}),
        (
            "attn/flash/fwd+bwd/window",
            _shape(dtype="fp32", pass_="fwd+bwd", window=(20, 5)),
            "flash",
            {},
        ),
    ]
    for name, s, kernel, kw in quick:
        register_case(name, partial(attention_check, s, kernel, name, **kw), quick=True)
    register_case(
        "attn/flash/fwd/large-logits",
        partial(
            attention_check,
            _shape(dtype="fp16"),
            "flash",
            "attn/flash/fwd/large-logits",
            scale=30.0,
        ),
        quick=True,
    )
    # the fuller grid: realistic head dims and lengths, all kernels and both passes
    full: list[tuple[str, AttentionShape, str, dict]] = []
    for dt in ("bf16", "fp16", "fp8_e4m3"):
        for causal in (False, True):
            s = _shape(
                batch=1,
                heads=4,
                kv_heads=4,
                seqlen_q=1024,
                seqlen_kv=1024,
                head_dim=128,
                causal=causal,
                dtype=dt,
            )
            tag = "causal" if causal else "full"
            full.append((f"attn/flash/fwd/1k-d128-{tag}/{dt}", s, "flash", {}))
            if dt != "fp8_e4m3":
                full.append(
                    (
                        f"attn/flash/fwd+bwd/1k-d128-{tag}/{dt}",
                        replace(s, pass_="fwd+bwd"),
                        "flash",
                        {},
                    )
                )
    full += [
        ("attn/naive/fwd/512-d128", _shape(seqlen_q=512, seqlen_kv=512, head_dim=128), "naive", {}),
        (
            "attn/split-kv/decode-8k",
            _shape(seqlen_q=4, seqlen_kv=8192, head_dim=128),
            "split_kv",
            {},
        ),
        (
            "attn/flash/fwd+bwd/d256",
            _shape(seqlen_q=300, seqlen_kv=300, head_dim=256, pass_="fwd+bwd"),
            "flash",
            {},
        ),
        (
            "attn/flash/fwd+bwd/mqa-window-1k",
            _shape(
                batch=1,
                heads=8,
                kv_heads=1,
                seqlen_q=1024,
                seqlen_kv=1024,
                window=(128, 0),
                pass_="fwd+bwd",
            ),
            "flash",
            {},
        ),
    ]
    for name, s, kernel, kw in full:
        register_case(name, partial(attention_check, s, kernel, name, **kw), quick=False)


_register()
