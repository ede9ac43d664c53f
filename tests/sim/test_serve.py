"""Whole-model steps through the mappers: hand-checked bounds and the behaviour of overlap,
pipelines, MTP and capacity refusals."""

from __future__ import annotations

import pytest

from hwsim.serve.api import make_target, serve_step
from hwsim.serve.compare import compare, pareto_front
from hwsim.serve.request import StepRequest
from hwsim.spec.errors import SpecError


@pytest.fixture(scope="module")
def h100():  # type: ignore[no-untyped-def]
    return make_target("h100-sxm")


def test_decode_batch1_is_weight_bandwidth_bound(h100) -> None:  # type: ignore[no-untyped-def]
    # Llama-3.1-8B on one H100 at batch 1: every weight byte is read once per token, so the
    # time per token is at least weights / HBM peak (16.06 GB / 3.35 TB/s = 4.79 ms) and, the
    # KV cache and launch-free kernels adding little, at most 1.4x that (kernels reach 70-95%
    # of HBM peak on weight-streaming GEMMs)
    r = serve_step(StepRequest("llama-3.1-8b", h100, batch=1, context=1024, layout="tp=1"))
    floor = r.weight_bytes_per_device / h100.device.level_bandwidth_Bps("hbm")
    assert floor == pytest.approx(16.06e9 / 3.35e12, rel=1e-3)
    assert floor <= r.time_per_token_s <= 1.4 * floor
    assert r.bound == "hbm" and r.comm_s == 0


def test_decode_tp_adds_exposed_comm(h100) -> None:  # type: ignore[no-untyped-def]
    # 8-way TP: weights / 8 per GPU, plus the all-reduces (2 per layer), all exposed at batch 1.
    # Upper bound 1.7x (not TP1's 1.4x): each GPU's per-layer GEMMs shrink 8x to 17-117 MB, so
    # the fixed cost of the ~7 small kernels per layer (attention over 2k tokens ~9 us, norms,
    # residual ~1 us each, x 80 layers ~ 1 ms) weighs 8x more against the 5.3 ms weight floor.
    r = serve_step(StepRequest("llama-3.1-70b", h100, batch=1, context=2048, layout="tp=8"))
    floor = r.weight_bytes_per_device / h100.device.level_bandwidth_Bps("hbm")
    assert r.comm_exposed_s == pytest.approx(r.comm_s, rel=1e-9)  # nothing to hide behind
    assert floor + r.comm_exposed_s <= r.time_per_token_s <= 1.7 * floor + r.comm_exposed_s
    assert r.devices == 8 and r.tokens_per_s_total == pytest.approx(1 / r.time_per_token_s)


def test_prefill_reports_ttft(h100) -> None:  # type: ignore[no-untyped-def]
    r = serve_step(
        StepRequest("llama-3.1-8b", h100, "prefill", batch=2, context=1024, layout="tp=1")
    )
    # 2 × 1024 tokens × 2 × 8.03e9 FLOPs ≈ 32.9 TFLOP at 989 TFLOP/s bf16 = 33 ms at best
    assert r.ttft_s >= 2 * 1024 * 2 * 8.03e9 / 989e12
    assert r.tokens_per_s_total == pytest.approx(2048 / r.ttft_s, rel=1e-12)


def test_dual_microbatch_hides_moe_comm() -> None:
    r = serve_step(
        StepRequest(
            "deepseek-v3",
            "h800",
            "prefill",
            batch=16,
            context=1024,
            layout="tp=4,dp=8,ep=32",
            dtype="fp8",
            overlap="dual",
        )
    )
    assert r.micro_batches == 2
    assert r.comm_hidden_s > 0
    # exposed + hidden = all communication (float sums: 1e-9)
    assert r.comm_exposed_s + r.comm_hidden_s == pytest.approx(r.comm_s, rel=1e-9)
    one = serve_step(
        StepRequest(
            "deepseek-v3",
            "h800",
            "prefill",
            batch=16,
            context=1024,
            layout="tp=4,dp=8,ep=32",
            dtype="fp8",
            overlap="none",
        )
    )
    assert one.comm_exposed_s == pytest.approx(one.comm_s, rel=1e-9)
    assert r.comm_exposed_s < one.comm_exposed_s


def test_mtp_raises_tokens_per_step() -> None:
    h200 = make_target("h200")
    base = serve_step(
        StepRequest("deepseek-v3", h200, batch=8, context=512, dtype="fp8", layout="tp=8,ep=8")
    )
    mtp = serve_step(
        StepRequest(
            "deepseek-v3",
            h200,
            batch=8,
            context=512,
            dtype="fp8",
            layout="tp=8,ep=8",
            mtp=1,
            mtp_acceptance=0.85,
        )
    )
    assert mtp.accepted_tokens_per_step == pytest.approx(1.85)
    assert mtp.tokens_per_s_per_user > base.tokens_per_s_per_user


def test_pipeline_bubble_at_batch1(h100) -> None:  # type: ignore[no-untyped-def]
    # pp=2 at batch 1: one micro-batch, each token crosses both stages in turn
    r = serve_step(StepRequest("llama-3.1-8b", h100, batch=1, context=512, layout="pp=2"))
    assert r.step_time_s == pytest.approx(2 * r.stage_time_s, rel=1e-12)
    assert any("bubble" in n for n in r.notes)


def test_capacity_refusal_names_numbers() -> None:
    # 70B at bf16 = 141 GB on one 80 GB H100: needs 2 (the KV cache adds 0.17 GB)
    with pytest.raises(SpecError, match="needs ≥ 2 GPUs"):
        serve_step(StepRequest("llama-3.1-70b", "h100-sxm", batch=1, context=512, layout="tp=1"))
    with pytest.raises(SpecError, match="does not fit 1"):
        serve_step(StepRequest("llama-3.1-70b", "h100-sxm", batch=1, context=512, devices=1))


def test_compare_ranks_and_pareto() -> None:
    c = compare("llama-3.1-70b", ["h100-sxm", "h200"], [1, 16], context=512)
    assert len(c.rows) == 4 and all(r.result is not None for r in c.rows)
    front = pareto_front(c.rows)
    assert front  # some row is never dominated
    # the H200 has 1.43x the HBM bandwidth of the H100: faster per user on the same node
    by = {(r.device, r.batch): r.result for r in c.rows}
    h100, h200 = by[("h100-sxm", 1)], by[("h200", 1)]
    assert h100 is not None and h200 is not None and h100.devices == h200.devices == 8
    assert h200.tokens_per_s_per_user > h100.tokens_per_s_per_user


def test_list_schedule_equals_engine() -> None:
    # the fast list schedule and the simpy engine play the same stage identically (1e-12)
    from hwsim.plan.layout import parse_layout
    from hwsim.plan.model_step import StepSpec
    from hwsim.serve.step import simulate_step
    from hwsim.spec.model import load_model_config

    m = load_model_config("deepseek-v3")
    tgt = make_target("h800")
    spec = StepSpec("decode", 320 * 8, 2048, "fp8", q_len=2, micro_batches=2, mtp_depth=1)
    lay = parse_layout("tp=4,dp=80,ep=320")
    a = simulate_step(m, tgt.mapper, lay, spec, strict=False)
    b = simulate_step(m, tgt.mapper, lay, spec, strict=False, engine=True)
    assert a.step_time_s == pytest.approx(b.step_time_s, rel=1e-12)
    assert a.comm_exposed_s == pytest.approx(b.comm_exposed_s, rel=1e-9, abs=1e-15)
    # same spans (the engine records them as they end, the schedule as they start)
    ends_a = [x for s in sorted(a.timeline, key=_key) for x in (s.start_s, s.end_s)]
    ends_b = [x for s in sorted(b.timeline, key=_key) for x in (s.start_s, s.end_s)]
    assert ends_a == pytest.approx(ends_b, rel=1e-12, abs=1e-15)


def _key(s):  # type: ignore[no-untyped-def]
    return (s.micro_batch, s.layer, s.start_s, s.name)
