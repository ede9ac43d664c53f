"""The numpy executor runs the tile plan: values against the float64 reference, byte counts
against the plan, gradients against finite differences, and a deliberately broken rescale."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hwsim.functional.attention as fa
from hwsim.functional.attention import execute, reference_attention
from hwsim.functional.attention_cases import attention_check, attention_inputs
from hwsim.plan.attention import AttentionShape, plan_attention


@st.composite
def cases(draw):
    h = draw(st.sampled_from([1, 2, 4]))
    kvh = draw(st.sampled_from([k for k in (1, 2, 4) if h % k == 0]))
    side = st.one_of(st.none(), st.integers(0, 24))
    pass_ = draw(st.sampled_from(["fwd", "fwd+bwd"]))
    s = AttentionShape(
        batch=draw(st.integers(1, 2)),
        heads=h,
        kv_heads=kvh,
        seqlen_q=draw(st.integers(1, 80)),
        seqlen_kv=draw(st.integers(1, 80)),
        head_dim=draw(st.sampled_from([8, 16, 24])),
        head_dim_v=draw(st.sampled_from([8, 16])),
        causal=draw(st.booleans()),
        window=draw(st.one_of(st.none(), st.tuples(side, side))),
        dtype=draw(st.sampled_from(["fp32", "bf16", "fp16"])),
        pass_=pass_,
    )
    kernel = draw(st.sampled_from(["flash", "naive", "split_kv"])) if pass_ == "fwd" else "flash"
    kw = dict(block_q=draw(st.sampled_from([16, 32])), block_kv=draw(st.sampled_from([16, 32])))
    if kernel == "split_kv":
        kw["num_splits"] = draw(st.integers(1, 4))
    return s, kernel, kw


@settings(max_examples=40, deadline=None)
@given(cases(), st.integers(0, 3))
def test_random_shapes_match_reference_and_plan_bytes(case, seed):
    s, kernel, kw = case
    results = attention_check(s, kernel, "hyp", budget=10**6, seed=seed, **kw)
    for r in results:
        # tolerance: the per-dtype table in hwsim.functional.check (≈ a few unit roundoffs)
        assert r.ok, (s, kernel, kw, r)
        assert r.bytes_match, (s, kernel, kw, r)


def test_counts_match_flash_closed_form():
    s = AttentionShape(1, 2, 2, 200, 300, 32, dtype="fp16")
    plan = plan_attention(s, 10**6, block_q=64, block_kv=64)
    d = attention_inputs(s, 0)
    run = execute(plan, d["q"], d["k"], d["v"])
    nqb = -(-200 // 64)
    # Q + O (+ fp32 LSE) once; K + V once per Q block: exact integers
    closed = 2 * 200 * (32 * 2 * 2 + 4) + 2 * nqb * 300 * 64 * 2
    assert run.counts["global", "read"] + run.counts["global", "write"] == closed


def test_split_kv_equals_flash_and_naive_costs_more_bytes():
    s = AttentionShape(1, 4, 1, 3, 500, 32, causal=True, dtype="fp32")
    d = attention_inputs(s, 1)
    flash = execute(plan_attention(s, 10**6), d["q"], d["k"], d["v"])
    split_plan = plan_attention(s, 10**6, kernel="split_kv", num_splits=4, block_kv=64)
    split = execute(split_plan, d["q"], d["k"], d["v"])
    # fp32 end to end, only summation order differs: 1e-5 relative
    np.testing.assert_allclose(split.o, flash.o, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(split.lse, flash.lse, rtol=1e-5)
    naive = execute(plan_attention(s, 10**6, kernel="naive"), d["q"], d["k"], d["v"])
    np.testing.assert_allclose(naive.o, flash.o, rtol=1e-5, atol=1e-6)
    g = lambda r: r.counts["global", "read"] + r.counts["global", "write"]  # noqa: E731
    # MQA decode-like shape: the flash plan packs the 4 query heads into one CTA (pack_gqa)
    unpacked = execute(plan_attention(s, 10**6, pack_gqa=False), d["q"], d["k"], d["v"])
    np.testing.assert_allclose(unpacked.o, flash.o, rtol=1e-5, atol=1e-6)
    # packing reads K/V (fp32, 500·(32+32)) once per KV head instead of once per query head
    assert g(unpacked) - g(flash) == (4 - 1) * 500 * 64 * 4
    # S and P (fp32, 4·3·500 each) are written and read once each; naive keeps no LSE (4·3 fp32)
    assert g(naive) - g(unpacked) == 4 * (4 * 3 * 500 * 4) - 4 * 3 * 4


def test_gqa_packing_plan_bytes_equal_executor_and_kv_read_once():
    # GQA 8:2, decode (2 query positions, window) through flash and split_kv: exact integers
    s = AttentionShape(2, 8, 2, 2, 300, 32, window=(100, 0), dtype="fp32")
    d = attention_inputs(s, 2)
    ref = execute(plan_attention(s, 10**6, pack_gqa=False), d["q"], d["k"], d["v"])
    for kernel in ("flash", "split_kv"):
        plan = plan_attention(s, 10**6, kernel=kernel, block_kv=64)
        assert plan.pack_gqa == 4 and plan.kernels[0].n_cta == 2 * 2 * plan.num_splits
        run = execute(plan, d["q"], d["k"], d["v"])
        np.testing.assert_allclose(run.o, ref.o, rtol=1e-5, atol=1e-6)  # fp32: order only
        assert dict(run.counts) == plan.bytes_rw() and run.flops == plan.flops()
    flash = plan_attention(s, 10**6, block_kv=16)
    # window keys 198..299 lie in 16-wide blocks 12..18 = tokens 192..299 (108), read once per
    # (batch, KV head): 2·2·108·(d + dv)·fp32
    kv_once = 2 * 2 * 108 * 64 * 4
    assert flash.kernels[0].loop.global_read.sum() == kv_once


def test_empty_rows_and_huge_logits_never_nan():
    # seqlen_q > seqlen_kv with causal: the first 40 queries see no key at all
    s = AttentionShape(
        1, 2, 2, 64, 24, 16, causal=True, window=(4, 0), dtype="fp32", pass_="fwd+bwd"
    )
    d = attention_inputs(s, 2, scale=300.0)  # logits ~ 300² · √16 / 4 ≈ 9e4
    run = execute(
        plan_attention(s, 10**6, block_q=16, block_kv=16), d["q"], d["k"], d["v"], d["do"]
    )
    for a in (run.o, run.lse, run.dq, run.dk, run.dv):
        assert not np.isnan(a).any()
    assert np.all(run.o[:, :, :40] == 0) and np.all(np.isinf(run.lse[:, :, :40]))
    o, _ = reference_attention(s, d["q"], d["k"], d["v"])
    # one-hot softmax rows: fp32 logits give the same argmax, error ~ fp32 roundoff of V
    np.testing.assert_allclose(run.o, o, atol=1e-4 * np.abs(o).max())


def _loss(s, plan, q, k, v, do):
    run = execute(plan, q, k, v, precision="fp64")
    return float((run.o * do).sum())


def test_gradients_match_finite_differences():
    s = AttentionShape(1, 2, 1, 5, 7, 4, 3, causal=True, window=(3, None), dtype="fp32",
                       pass_="fwd+bwd")  # fmt: skip
    rng = np.random.default_rng(0)
    q = rng.standard_normal((1, 2, 5, 4))
    k = rng.standard_normal((1, 1, 7, 4))
    v = rng.standard_normal((1, 1, 7, 3))
    do = rng.standard_normal((1, 2, 5, 3))
    plan = plan_attention(s, 10**6, block_q=16, block_kv=16)
    fplan = plan_attention(s.with_pass("fwd"), 10**6, block_q=16, block_kv=16)
    run = execute(plan, q, k, v, do, precision="fp64")
    eps = 1e-6
    for name, x, grad in (("q", q, run.dq), ("k", k, run.dk), ("v", v, run.dv)):
        fd = np.zeros_like(x)
        for idx in np.ndindex(x.shape):
            args = {"q": q, "k": k, "v": v}
            xp, xm = x.copy(), x.copy()
            xp[idx] += eps
            xm[idx] -= eps
            lp = _loss(s, fplan, **{**args, name: xp}, do=do)
            lm = _loss(s, fplan, **{**args, name: xm}, do=do)
            fd[idx] = (lp - lm) / (2 * eps)
        # central differences in float64: truncation ~eps² and cancellation ~1e-16/eps = 1e-10
        np.testing.assert_allclose(grad, fd, atol=1e-7, err_msg=name)


def test_broken_rescale_is_caught(monkeypatch):
    s = AttentionShape(1, 2, 2, 96, 200, 16, causal=False, dtype="fp32")
    ok = attention_check(s, "flash", "rescale", budget=10**6, block_q=32, block_kv=32)
    assert all(r.ok for r in ok)
    # forget the exp(m_old - m_new) correction of the running sums: every CTA with more than one
    # KV step whose row max grows gets a wrong O and LSE
    monkeypatch.setattr(fa, "_rescale", lambda acc, row_sum, alpha: (acc, row_sum))
    broken = attention_check(s, "flash", "rescale", budget=10**6, block_q=32, block_kv=32)
    assert not any(r.ok for r in broken)
    assert all(r.bytes_match for r in broken)  # the bytes are still right: only values catch it


def test_bad_arrays_raise_spec_error():
    from hwsim.spec.errors import SpecError

    s = AttentionShape(1, 2, 1, 8, 8, 16)
    p = plan_attention(s, 10**6)
    z = np.zeros((1, 2, 8, 16), np.float32)
    with pytest.raises(SpecError):
        execute(p, z, z, z)  # k has 2 heads, the shape says 1


def test_mla_shared_latent_read_once_and_matches_reference():
    # MLA absorbed decode in miniature: 16 heads on one latent (d 48 = latent 32 + rope 16),
    # V = the latent's first 32 columns; fp32 so only the summation order differs (1e-5)
    s = AttentionShape(2, 16, 1, 1, 300, 48, head_dim_v=32, dtype="fp32", kv_shared=True)
    d = attention_inputs(s, 3)
    v = np.ascontiguousarray(d["k"][..., :32])
    plan = plan_attention(s, 10**6)
    run = execute(plan, d["q"], d["k"], v)
    ref_o, _ = reference_attention(s, d["q"], d["k"], v)
    np.testing.assert_allclose(run.o, ref_o, rtol=1e-5, atol=1e-6)
    assert dict(run.counts) == plan.bytes_rw()
    # the latent (300 tokens × 48 fp32) is read once per batch: V adds no global bytes
    assert plan.kernels[0].loop.global_read.sum() == 2 * 300 * 48 * 4
