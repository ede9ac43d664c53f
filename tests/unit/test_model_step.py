"""Layer graph of whole-model steps, layouts and capacity planning: hand-checked numbers."""

from __future__ import annotations

import math

import pytest

from hwsim.plan.layout import Layout, check_layout, parse_layout
from hwsim.plan.model_step import StepSpec, build_step, memory_per_device, stage_layers
from hwsim.plan.workload import Attention, Collective, Gemm
from hwsim.serve.capacity import min_devices
from hwsim.serve.step import accepted_tokens
from hwsim.sim.mapper import mapper_for
from hwsim.spec.errors import SpecError
from hwsim.spec.load import load_device
from hwsim.spec.model import load_model_config


@pytest.fixture(scope="module")
def llama8b():  # type: ignore[no-untyped-def]
    return load_model_config("llama-3.1-8b")


@pytest.fixture(scope="module")
def dsv3():  # type: ignore[no-untyped-def]
    return load_model_config("deepseek-v3")


def _ops(graph):  # type: ignore[no-untyped-def]
    return [(lg, so) for st in graph.stages for lg in st for so in lg.ops]


def test_parse_layout() -> None:
    assert parse_layout("tp=8,ep=1,pp=1") == Layout(tp=8)
    assert parse_layout("tp=4, dp=80, ep=320").devices == 320
    for bad in ("tp=0", "tq=2", "tp=2,tp=4", "tp", "tp=4,sp=2", "tp=2,ep=3"):
        with pytest.raises(SpecError):
            parse_layout(bad)


def test_layout_checked_against_model(llama8b, dsv3) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SpecError, match="heads"):
        check_layout(llama8b, Layout(tp=3))
    with pytest.raises(SpecError, match="no experts"):
        check_layout(llama8b, Layout(ep=2, dp=2))
    with pytest.raises(SpecError, match="layers"):
        check_layout(llama8b, Layout(pp=33))
    sh = check_layout(dsv3, Layout(tp=4, dp=80, ep=320))
    assert sh.local_experts == 1 and sh.heads == 32 and sh.kv_heads == 1


def test_weights_add_up_to_parameters(llama8b, dsv3) -> None:  # type: ignore[no-untyped-def]
    # tp=1: one device holds every weight; the graph's weights are the parameter count (the
    # final norm, 4096 values, is the only thing not counted: relative 1e-6)
    w, _ = memory_per_device(llama8b, Layout(), StepSpec("decode", 1, 1))
    assert w == pytest.approx(llama8b.total_params() * 2, rel=1e-5)
    w, _ = memory_per_device(dsv3, Layout(), StepSpec("decode", 1, 1, "fp8"))
    # norms are counted at bf16 (2 B) while weights are fp8: 61·2·7168 extra bytes, < 1e-5
    assert w == pytest.approx(dsv3.total_params(), rel=1e-5)
    # tp=8 shards everything except the norms, copied 8 times: 7 × 32 × 2 × 4096 × 2 B = 3.7 MB
    # more than the 16.06 GB total (relative 2.3e-4)
    w8, _ = memory_per_device(llama8b, Layout(tp=8), StepSpec("decode", 1, 1))
    extra = 7 * 32 * 2 * 4096 * 2
    assert 8 * w8 == pytest.approx(llama8b.total_params() * 2 + extra, rel=1e-6)


def test_kv_cache_bytes(llama8b, dsv3) -> None:  # type: ignore[no-untyped-def]
    # Llama-3.1-8B: 32 layers × 8 KV heads × (128 + 128) × 2 B = 131072 B per token
    _, kv = memory_per_device(llama8b, Layout(), StepSpec("decode", 4, 1000))
    assert kv == 4 * 1001 * 131072
    # tp=8: one KV head per device
    _, kv8 = memory_per_device(llama8b, Layout(tp=8), StepSpec("decode", 4, 1000))
    assert kv8 == kv / 8
    # MLA: 61 layers × (512 + 64) × 2 B, replicated over TP, split over DP
    _, kvd = memory_per_device(dsv3, Layout(tp=4, dp=2, ep=8), StepSpec("decode", 8, 999))
    assert kvd == 4 * 1000 * 61 * 576 * 2


def test_moe_reads_only_touched_experts(dsv3) -> None:  # type: ignore[no-untyped-def]
    # batch 1, one token: per MoE layer exactly top-8 routed experts' weights are in the GEMMs
    g = build_step(dsv3, Layout(), StepSpec("decode", 1, 128, "fp8"))
    expert = 3 * 7168 * 2048  # gate, up, down of one expert, fp8 = 1 B each
    for lg, so in _ops(g):
        if lg.name == "moe layer" and isinstance(so.op, Gemm) and so.op.name == "experts up":
            assert so.op.count == 8 and so.op.m == 1
    per_layer = sum(
        so.op.weight_bytes
        for lg, so in _ops(g)
        if lg.name == "moe layer" and isinstance(so.op, Gemm) and so.op.name.startswith("experts")
    )
    assert per_layer == 8 * expert
    # while all 256 are resident
    w, _ = memory_per_device(dsv3, Layout(), StepSpec("decode", 1, 128, "fp8"))
    assert w > 58 * 256 * expert


@pytest.mark.parametrize(
    ("layout", "batch", "count"),
    [
        # one token over TP16 x EP16: 16 local experts x 8/256 = 0.5, floored at one GEMM
        (Layout(tp=16, ep=16), 1, 1),
        # 4 DP replicas of TP4 with one sequence each: 4 distinct tokens in the EP16 group,
        # 16 x (1 - (1 - 8/256)^4) = 1.90 -> 2 GEMMs (counting 16 tokens gave 6.4 -> 6)
        (Layout(tp=4, dp=4, ep=16), 4, 2),
    ],
)
def test_tp_ranks_share_their_tokens_when_counting_touched_experts(  # type: ignore[no-untyped-def]
    dsv3, layout: Layout, batch: int, count: int
) -> None:
    """The ranks of a TP group hold the same tokens: the EP group routes ep/tp x (tokens per
    TP group) distinct tokens, not (tokens per rank) x ep. At batch 1 on an SN40L rack the old
    count read 6.4 of 16 local experts per layer on every rank instead of one."""
    g = build_step(dsv3, layout, StepSpec("decode", batch, 128, "fp8"))
    counts = {
        so.op.count
        for lg, so in _ops(g)
        if lg.name == "moe layer" and isinstance(so.op, Gemm) and so.op.name == "experts up"
    }
    assert counts == {count}


def test_collectives_follow_layout(dsv3, llama8b) -> None:  # type: ignore[no-untyped-def]
    g = build_step(llama8b, Layout(tp=8), StepSpec("decode", 2, 64))
    ars = [so.op for _, so in _ops(g) if isinstance(so.op, Collective)]
    assert {c.kind for c in ars} == {"all-reduce"} and len(ars) == 2  # attn + ffn, per layer
    assert ars[0].bytes == 2 * 4096 * 2 and ars[0].group == 8
    g = build_step(dsv3, Layout(tp=4, dp=8, ep=32), StepSpec("decode", 64, 64, "fp8"))
    kinds = {(c.op.kind, c.op.name) for _, c in _ops(g) if isinstance(c.op, Collective)}
    assert ("all-to-all", "dispatch") in kinds and ("all-to-all", "combine") in kinds
    g = build_step(llama8b, Layout(pp=4), StepSpec("decode", 1, 64))
    sends = [so.op for _, so in _ops(g) if isinstance(so.op, Collective) and so.op.kind == "p2p"]
    assert len(sends) == 3  # between 4 stages


def test_mla_decode_is_absorbed(dsv3) -> None:  # type: ignore[no-untyped-def]
    g = build_step(dsv3, Layout(), StepSpec("decode", 2, 100))
    att = next(so.op for _, so in _ops(g) if isinstance(so.op, Attention))
    assert att.latent_kv and att.shape.kv_heads == 1 and att.shape.head_dim == 576
    assert att.shape.dv == 512 and att.shape.seqlen_kv == 101
    # the cache read once: batch × 101 tokens × 576 × 2 B
    assert att.kv_bytes == 2 * 101 * 576 * 2


def test_stage_split() -> None:
    spans = [stage_layers(61, 4, s) for s in range(4)]
    assert spans == [(0, 16), (16, 31), (31, 46), (46, 61)]


def test_accepted_tokens() -> None:
    # one draft accepted at 85%: 1 + 0.85 tokens per step (DeepSeek's 1.8x TPS claim)
    assert accepted_tokens(1, 0.85) == pytest.approx(1.85, abs=1e-12)
    assert accepted_tokens(2, 0.5) == pytest.approx(1.75, abs=1e-12)
    assert accepted_tokens(0, 0.9) == 1.0


@pytest.mark.parametrize("name", ["llama-3.1-8b", "llama-3.1-70b", "llama-3.1-405b"])
@pytest.mark.parametrize("dtype", ["bf16", "fp8"])
def test_capacity_lower_bound_is_hand_arithmetic(name: str, dtype: str) -> None:
    cfg = load_model_config(name)
    b = 2 if dtype == "bf16" else 1
    for dev in ("h100-sxm", "groq-lpu"):
        m = mapper_for(load_device(dev))
        plan = min_devices(cfg, m, StepSpec("decode", 1, 2048, dtype))
        kv = 2049 * cfg.kv_cache_bytes_per_token(2)
        hand = math.ceil((cfg.total_params() * b + kv) / m.capacity_bytes)
        assert plan.lower_bound_devices == hand
        assert plan.devices >= hand and plan.memory_per_device_bytes <= m.capacity_bytes
        assert len(plan.reasoning) >= 4
