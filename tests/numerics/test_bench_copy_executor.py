"""Small-size copy of the correctness assert in ``tests/bench/test_bench_functional.py``
(``make bench`` runs it at seqlen 4096 × 8 heads, outside ``make test``): the numpy executor
run on the H100 tile plan moves exactly the bytes and does exactly the FLOPs the plan says,
forward and FA2 backward, causal and not."""

from __future__ import annotations

import pytest

from hwsim.functional.attention import execute
from hwsim.functional.attention_cases import H100_SMEM_BYTES, attention_inputs
from hwsim.plan.attention import AttentionShape, plan_attention


@pytest.mark.parametrize("causal", [True, False])
def test_executor_counts_equal_the_plan_fwd_bwd(causal: bool) -> None:
    # 640 tokens: H100 tiles (128 × 192 forward, 96-row Q blocks backward) leave partial edge
    # blocks on both axes and, causal, partial diagonal blocks; integers compared exactly
    s = AttentionShape(1, 2, 2, 640, 640, 128, causal=causal, dtype="bf16", pass_="fwd+bwd")
    plan = plan_attention(s, H100_SMEM_BYTES)
    assert 640 % plan.block_kv and 640 % plan.bwd_block_q  # edge blocks are exercised
    d = attention_inputs(s, 0)
    run = execute(plan, d["q"], d["k"], d["v"], d["do"])
    planned = {k: v for k, v in plan.bytes_rw().items() if v}
    assert run.counts == planned
    assert run.flops == plan.flops()
