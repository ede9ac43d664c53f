"""Small-size copies of the correctness asserts in ``tests/bench`` (``make bench`` only runs
those at full size, outside ``make test``). The timing asserts stay in the benchmarks; what is
here is the part that can be wrong at any size. Each test names the benchmark it mirrors.
"""

from __future__ import annotations

import pytest

from hwsim.plan.attention import AttentionShape
from hwsim.plan.moe import synthetic_dispatch_plan
from hwsim.sim.alltoall import simulate_alltoall
from hwsim.sim.gpu_attention import simulate_attention
from hwsim.sim.mapper import Attention, mapper_for
from hwsim.sim.topology import build_topology
from hwsim.spec.load import load_device


def test_attention_events_per_cta_do_not_grow_with_seqlen() -> None:
    """bench ``test_seqlen_scaling_table`` (1k-128k): the CTA-level simulator's cost grows at
    most linearly in CTAs. Here 1k-16k, causal FA3 on H100 (~0.2 s): events per CTA at any
    length stay within 1.5x of the 1k figure (they fall: 11.1 → 3.2 per CTA today)."""
    dev = load_device("h100-sxm")
    per = []
    for s in (1024, 2048, 4096, 8192, 16384):
        r = simulate_attention(dev, AttentionShape(1, 16, 16, s, s, 128, causal=True), "fa3")
        per.append(r.events / sum(k.ctas for k in r.kernels))
    assert max(per[1:]) <= per[0] * 1.5, per


@pytest.mark.parametrize("device", ["h100-sxm", "mi300x"])
def test_mapper_attention_tuning_never_slower_than_a_default_plan(device: str) -> None:
    """bench ``test_serving_attention_mapping_cost``: the GPU mapper times each attention op
    with every profiled kernel's default plan and then tunes the winner's KV tile, keeping the
    fastest, so its time is never above the default plan of any kernel it offers (FA3 on
    Hopper only, FA2, and flash-decoding for decode). Shapes without GQA packing (MHA) so that
    the mapper and ``simulate_attention`` see the same problem: decode at batch 1 and 8 over
    2k tokens, and a causal 2k prefill. Exact comparison: the same simulator."""
    dev = load_device(device)
    mapper = mapper_for(dev)
    ops = [Attention(AttentionShape(b, 16, 16, 1, 2048, 128), "decode") for b in (1, 8)] + [
        Attention(AttentionShape(1, 16, 16, 2048, 2048, 128, causal=True), "prefill")
    ]
    for op in ops:
        kernels = (["fa3"] if dev.arch == "hopper" else []) + ["fa2"]
        kernels += ["flash-decoding"] if op.phase == "decode" else []
        default = {k: simulate_attention(dev, op.shape, k).time_s for k in kernels}
        assert mapper.time(op).time_s <= min(default.values()), (op, default)


def test_alltoall_events_follow_flows_not_tokens() -> None:
    """bench ``test_bench_scaling_8_to_1024_gpus`` (EP 64, 256-8192 tokens per rank): at a
    fixed EP the number of flows is fixed once every rank pair talks, and the events do not
    grow with tokens. Here EP 16 on two H800 nodes, 64-4096 tokens per rank (~0.2 s): 16 x 15
    = 240 flows throughout, events within 1.2x of each other (89-99 today)."""
    topo = build_topology("h800-deepseek", 2)
    events = []
    for tokens in (64, 256, 1024, 4096):
        plan, _, _ = synthetic_dispatch_plan(16, tokens, 7168, 256, 8, 4, "deepep", 8, 0, 0)
        r = simulate_alltoall(topo, plan, "normal", "dispatch")
        assert r.flows == 16 * 15, tokens
        events.append(r.events)
    assert max(events) <= 1.2 * min(events), events
