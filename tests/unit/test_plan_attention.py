"""The attention tile plan: block sizes from SRAM, block skipping under masks, per-CTA arrays that
sum exactly to the explicit steps, and the textbook closed forms of FlashAttention's traffic."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsim.plan.attention import (
    AttentionShape,
    choose_blocks,
    flash_flops,
    footprint_bytes,
    plan_attention,
)
from hwsim.spec.errors import SpecError
from hwsim.spec.load import load_device


def _walk(plan):  # exact sums over explicit steps
    tot = {(lv, rw): 0 for lv in ("global", "onchip") for rw in ("read", "write")}
    flops = exps = 0
    for s in plan.iter_steps():
        for lv, rw in tot:
            tot[(lv, rw)] += s.bytes(lv, rw)
        flops += s.flops
        exps += s.exp
    return tot, flops, exps


@st.composite
def shapes(draw):
    h = draw(st.sampled_from([1, 2, 4]))
    kvh = draw(st.sampled_from([k for k in (1, 2, 4) if h % k == 0]))
    side = st.one_of(st.none(), st.integers(0, 20))
    window = draw(st.one_of(st.none(), st.tuples(side, side)))
    pass_ = draw(st.sampled_from(["fwd", "bwd", "fwd+bwd"]))
    return AttentionShape(
        batch=draw(st.integers(1, 2)),
        heads=h,
        kv_heads=kvh,
        seqlen_q=draw(st.integers(1, 70)),
        seqlen_kv=draw(st.integers(1, 70)),
        head_dim=16,
        head_dim_v=draw(st.sampled_from([8, 16])),
        causal=draw(st.booleans()),
        window=window,
        dtype="bf16",
        pass_=pass_,
    )


@settings(max_examples=40, deadline=None)
@given(shapes(), st.sampled_from(["flash", "naive", "split_kv"]), st.integers(1, 4))
def test_arrays_equal_steps_and_masks_are_exact(shape, kernel, splits):
    if shape.pass_ != "fwd":
        kernel = "flash"
    plan = plan_attention(shape, 10**6, kernel=kernel, block_q=16, block_kv=16, num_splits=splits)
    tot, flops, exps = _walk(plan)
    # integer bookkeeping: the O(CTA) closed-form totals must equal the step sum exactly
    assert tot == plan.bytes_rw()
    assert flops == plan.flops() and exps == plan.exp_ops()
    allowed = shape.allowed(np.arange(shape.seqlen_q), np.arange(shape.seqlen_kv))
    for k in plan.kernels:
        if k.role not in ("fwd", "fwd_split", "bwd"):
            continue
        cover = np.zeros((shape.batch, shape.heads, shape.seqlen_q, shape.seqlen_kv), int)
        for c in range(k.n_cta):
            for s in k.iter_steps(c):
                if s.phase != "loop":
                    continue
                m = allowed[s.rows[0] : s.rows[1], s.cols[0] : s.cols[1]]
                assert m.any(), "a skippable block was scheduled"
                assert s.partial == (not m.all()), "partial flag wrong"
                cover[s.batch, s.head, s.rows[0] : s.rows[1], s.cols[0] : s.cols[1]] += 1
        assert (cover[:, :, allowed] == 1).all(), "every allowed pair exactly once"
        assert cover.max() <= 1


def test_flash_forward_closed_form_traffic():
    s = AttentionShape(2, 4, 4, 1000, 1000, 64, dtype="fp16")
    p = plan_attention(s, 100 * 1024, block_q=128, block_kv=64)
    nqb = -(-1000 // 128)
    e = 2
    qo = 2 * 4 * 1000 * (64 * e + 64 * e + 4)  # Q + O once, plus the fp32 LSE
    kv = 2 * 4 * nqb * 1000 * (64 + 64) * e  # K + V once per Q block
    assert p.bytes_rw()[("global", "read")] + p.bytes_rw()[("global", "write")] == qo + kv
    assert p.flops() == flash_flops(s)  # non-causal: exact (edge tiles counted at real size)
    naive = plan_attention(s, 100 * 1024, kernel="naive", block_q=128, block_kv=64)
    # naive materialises S and P: write S, read S, write P, read P (16-bit), and has no LSE
    extra = 4 * 2 * 4 * 1000 * 1000 * 2 - 2 * 4 * 1000 * 4
    assert naive.bytes_by_level()["global"] - p.bytes_by_level()["global"] == extra


def test_causal_skips_about_half_and_flops_approach_convention():
    s = AttentionShape(1, 8, 8, 8192, 8192, 128, causal=True, dtype="bf16")
    p = plan_attention(s, load_device("h100-sxm"))
    n = -(-8192 // p.block_q)
    m = -(-8192 // p.block_kv)
    assert p.block_pairs() < 0.6 * 8 * n * m
    # whole diagonal tiles are computed: FLOPs exceed the convention by ~(Br + Bc)/seqlen
    # (~3% at 128×192 and 8k tokens), so allow 5%
    assert 1.0 < p.flops() / flash_flops(s) < 1.05


def test_more_sram_gives_bigger_tiles_monotone():
    s = AttentionShape(1, 1, 1, 8192, 8192, 128)
    prev = (0, 0)
    for kib in (24, 32, 48, 64, 96, 128, 164, 228, 256, 512):
        blocks = choose_blocks(s, kib * 1024)
        assert blocks[0] >= prev[0] and (blocks[0] > prev[0] or blocks[1] >= prev[1])
        assert blocks[0] % 16 == 0 and blocks[1] % 16 == 0
        prev = blocks
    assert choose_blocks(s, 228 * 1024) == (128, 192)
    assert choose_blocks(AttentionShape(1, 1, 1, 8192, 8192, 256), 228 * 1024) == (128, 80)


# ---- tile footprints by hand (bytes are integers: compared exactly) -------------------------
H100_SMEM = 228 * 1024  # 233,472 B per SM
MLA = AttentionShape(1, 1, 1, 4096, 4096, 192, head_dim_v=128, dtype="bf16")  # dq 192 != dv 128


def test_forward_footprint_mla_by_hand():
    """Forward CTA (outer = Br): the Q tile (Br × dq) resident, plus ``stages`` buffers of a K
    tile (Bc × dq) and a V tile (Bc × dv). MLA prefill has dq = 192 ≠ dv = 128, so reading dv
    as dq (or the reverse) changes the number.

    Br 128, Bc 64, 2 stages, bf16: 128·192·2 + 2·64·(192 + 128)·2 = 49,152 + 81,920 = 131,072.
    Block rule at 228 KiB: Br = 128 (fits with Bc = 16); Bc is the largest multiple of 16 with
    49,152 + 2·Bc·320·2 = 49,152 + 1,280·Bc ≤ 233,472, i.e. Bc ≤ 144 (exactly at the budget).
    """
    assert footprint_bytes(MLA, 128, 64, 2, bwd=False) == 131_072
    assert footprint_bytes(MLA, 128, 144, 2, bwd=False) == H100_SMEM  # fills SMEM exactly
    assert choose_blocks(MLA, H100_SMEM) == (128, 144)
    p = plan_attention(MLA, H100_SMEM)
    assert (p.block_q, p.block_kv, p.footprint_bytes) == (128, 144, H100_SMEM)
    # MLA absorbed decode (FlashMLA): V is the first dv columns of the cached latent K, so a
    # stage holds one K tile only: 128·576·2 + 2·64·576·2 = 147,456 + 147,456 = 294,912
    latent = AttentionShape(1, 128, 1, 1, 4096, 576, head_dim_v=512, kv_shared=True)
    assert footprint_bytes(latent, 128, 64, 2, bwd=False) == 294_912


def test_backward_footprint_by_hand():
    """Backward CTA (FA2, outer = Bc): K and V tiles (Bc × (dq + dv)) resident, ``stages``
    buffers of a Q and a dO tile (Br × (dq + dv)) with their LSE and D rows (2 fp32 = 8 B per
    row), and the P and dS tiles (Br × Bc each, hence the factor 2) staged through SMEM.

    d = 128, bf16, Bc 128, Br 64, 2 stages:
      128·256·2 + 2·64·(256·2 + 8) + 2·64·128·2 = 65,536 + 66,560 + 32,768 = 164,864.
    MLA 192/128, Bc 64, Br 64:
      64·320·2 + 2·64·(320·2 + 8) + 2·64·64·2 = 40,960 + 82,944 + 16,384 = 140,288.
    """
    d128 = AttentionShape(1, 1, 1, 4096, 4096, 128, dtype="bf16")
    assert footprint_bytes(d128, 128, 64, 2, bwd=True) == 164_864
    assert footprint_bytes(MLA, 64, 64, 2, bwd=True) == 140_288


def test_backward_blocks_by_hand():
    """Block rule for the backward pass at 228 KiB, 2 stages, bf16 (outer Bc, inner Br):

    d = 128: Bc = 128 fits with Br = 16 (90,368 B). Then 65,536 + Br·(2·520 + 2·128·2)
    = 65,536 + 1,552·Br ≤ 233,472 gives Br ≤ 108.2 → 96 (112 needs 239,360 B).
    MLA 192/128: Bc = 128 (110,848 B at Br = 16), then 81,920 + Br·(2·648 + 2·128·2)
    = 81,920 + 1,808·Br ≤ 233,472 gives Br ≤ 83.8 → 80.
    Without the P/dS factor 2 these would be 128 and 96: the tile shapes change silently.
    """
    d128 = AttentionShape(1, 1, 1, 4096, 4096, 128, dtype="bf16", pass_="fwd+bwd")
    assert choose_blocks(d128, H100_SMEM, bwd=True) == (128, 96)
    assert choose_blocks(MLA, H100_SMEM, bwd=True) == (128, 80)
    p = plan_attention(d128, H100_SMEM)
    assert (p.bwd_block_q, p.bwd_block_kv) == (96, 128)
    # the plan's footprint is the larger of the two passes: the forward 128×192 tile,
    # 128·128·2 + 2·192·256·2 = 32,768 + 196,608 = 229,376 B, over the backward 214,528 B
    assert p.footprint_bytes == 229_376
    mla_bwd = plan_attention(
        AttentionShape(1, 1, 1, 4096, 4096, 192, head_dim_v=128, dtype="bf16", pass_="bwd"),
        H100_SMEM,
    )
    # backward only: 128·320·2 + 2·80·648 + 2·80·128·2 = 81,920 + 103,680 + 40,960
    assert (mla_bwd.bwd_block_q, mla_bwd.bwd_block_kv) == (80, 128)
    assert mla_bwd.footprint_bytes == 226_560


def test_decode_split_kv_and_combine_bytes():
    s = AttentionShape(1, 8, 1, 1, 32768, 128, dtype="bf16")
    p = plan_attention(s, load_device("h100-sxm"), kernel="split_kv", num_splits=16)
    assert [k.name for k in p.kernels] == ["attn_fwd_splitkv", "attn_combine"]
    # MQA: the 8 query heads are packed into one CTA per split (pack_gqa); unpacked, 8 per split
    assert p.pack_gqa == 8 and p.kernels[0].n_cta == 16
    unpacked = plan_attention(
        s, load_device("h100-sxm"), kernel="split_kv", num_splits=16, pack_gqa=False
    )
    assert unpacked.kernels[0].n_cta == 8 * 16
    kv = 32768 * 128 * 2 * 2  # K + V bf16, once
    assert int(p.kernels[0].total().global_read[0]) == kv + 8 * 128 * 2 * 16  # + Q per split
    assert int(unpacked.kernels[0].total().global_read[0]) == 8 * kv + 8 * 128 * 2 * 16
    comb = p.kernels[1].total()
    # the combine reads every split's fp32 partial O (1 row × 128) and LSE per head
    assert int(comb.global_read[0]) == 8 * 16 * (128 * 4 + 4)


def test_backward_flops_and_traffic():
    s = AttentionShape(1, 4, 2, 512, 512, 64, pass_="bwd", dtype="fp16")
    p = plan_attention(s, 228 * 1024)
    names = [k.name for k in p.kernels]
    assert names[1] == "attn_bwd" and names[-1] == "attn_bwd_convert_dkv"
    # 5 matmuls of 2·d FLOPs per (q, k) pair vs the forward's 2: exactly 2.5× here
    assert p.flops() == flash_flops(s)


@pytest.mark.parametrize(
    "kw",
    [
        dict(heads=6, kv_heads=4),
        dict(seqlen_q=0),
        dict(dtype="int4"),
        dict(window=(-1, 3)),
        dict(pass_="bwd", dtype="fp8"),
    ],
)
def test_bad_shapes_raise_spec_error(kw):
    base = dict(batch=1, heads=4, kv_heads=4, seqlen_q=8, seqlen_kv=8, head_dim=16)
    with pytest.raises(SpecError):
        AttentionShape(**{**base, **kw})


def test_too_small_budget_and_bad_kernel():
    s = AttentionShape(1, 1, 1, 64, 64, 256)
    with pytest.raises(SpecError):
        plan_attention(s, 1024)
    with pytest.raises(SpecError):
        plan_attention(s, 10**6, kernel="fast")
    with pytest.raises(SpecError):
        plan_attention(AttentionShape(1, 1, 1, 8, 8, 16, pass_="bwd"), 10**6, kernel="naive")


def test_million_token_plan_is_cheap():
    s = AttentionShape(1, 8, 8, 1 << 20, 1 << 20, 128, causal=True, dtype="bf16")
    p = plan_attention(s, load_device("h100-sxm"))
    assert p.kernels[0].n_cta == 8 * (1 << 20) // p.block_q
    assert p.block_pairs() > 10**7
    assert 1.0 < p.flops() / flash_flops(s) < 1.001
