"""The functional executor runs the attention plans of the wafer-scale, LPU and dataflow
mappers, whose tiles are sized from each device's own SRAM (48 KiB per WSE core, 11 MiB per
TSP superlane, 500 KB per SN40L PCU), and counts exactly the bytes, FLOPs and exponentials the
plan promises; the values match the float64 reference."""

from __future__ import annotations

import pytest

from hwsim.functional.attention import execute, reference_attention
from hwsim.functional.attention_cases import attention_inputs
from hwsim.functional.check import compare
from hwsim.plan.attention import AttentionShape, footprint_bytes
from hwsim.sim.mapper import Attention, mapper_for
from hwsim.spec.load import load_device

DEVICES = ("cerebras-wse3", "groq-lpu", "sambanova-sn40l")
SHAPES = [
    AttentionShape(2, 4, 2, 77, 130, 64, causal=True, dtype="bf16"),  # prefill, GQA, edges
    AttentionShape(3, 8, 1, 1, 300, 64, dtype="fp16"),  # decode, MQA
    AttentionShape(1, 2, 2, 40, 40, 96, 64, dtype="fp32"),  # MLA-like dims
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape", SHAPES, ids=["prefill-gqa", "decode-mqa", "dqk96-dv64"])
@pytest.mark.parametrize("kernel", ["flash", "split_kv"])
def test_executor_counts_equal_plan(device: str, shape: AttentionShape, kernel: str) -> None:
    mapper = mapper_for(load_device(device))
    plan = mapper.attention_plan(shape, kernel)
    d = attention_inputs(shape, seed=1)
    run = execute(plan, d["q"], d["k"], d["v"])
    planned = {k: v for k, v in plan.bytes_rw().items() if v}
    # exact integers: the executor counts the tiles it touches
    assert run.counts == planned
    assert run.flops == plan.flops() and run.exp_ops == plan.exp_ops()
    o, _ = reference_attention(shape, d["q"], d["k"], d["v"])
    # tolerance: the per-dtype table of hwsim.functional.check (a few unit roundoffs)
    assert compare(run.o, o, shape.dtype, f"{device}:O").ok


def test_tiles_come_from_each_devices_sram() -> None:
    s = AttentionShape(1, 8, 8, 4096, 4096, 128, causal=True, dtype="bf16")
    plans = {d: mapper_for(load_device(d)).attention_plan(s) for d in DEVICES}
    # a WSE-3 core holds 48 KiB: the tile (Q block + 2 stages of K/V) must fit it
    wse = plans["cerebras-wse3"]
    assert wse.budget_bytes == 48 * 1024
    assert footprint_bytes(s, wse.block_q, wse.block_kv, 2, bwd=False) <= 48 * 1024
    # the LPU and RDU budgets are far larger: the tile rule's caps (128 x 256) apply
    for d in ("groq-lpu", "sambanova-sn40l"):
        assert (plans[d].block_q, plans[d].block_kv) == (128, 256)
    # the wafer's inner (K/V) tile is the smaller: 48 KiB leaves room for few K/V rows
    assert wse.block_kv < plans["groq-lpu"].block_kv
    # the plan names the device's own levels
    assert plans["sambanova-sn40l"].level_names == {"global": "hbm", "onchip": "sram"}
    assert plans["cerebras-wse3"].level_names["onchip"] == "sram"


@pytest.mark.parametrize("device", DEVICES)
def test_decode_plan_reads_the_kv_cache_the_mapper_charges(device: str) -> None:
    # MHA decode, one query block per head: the plan's main-memory reads are K and V once plus
    # Q, which is what the mapper charges as KV traffic (plus the tiny Q)
    s = AttentionShape(2, 4, 4, 1, 512, 64, dtype="bf16")
    mapper = mapper_for(load_device(device))
    plan = mapper.attention_plan(s)
    op = Attention(s, "decode")
    q_bytes = 2 * 4 * 1 * 64 * 2
    assert plan.bytes_rw()[("global", "read")] == op.kv_bytes + q_bytes
    assert mapper.time(op).time_s > 0
