"""Attention on the GPU mapper: detail modes agree, invariants hold, the model's features show."""

from __future__ import annotations

import numpy as np
import pytest

from hwsim.plan.attention import AttentionShape, flash_flops, plan_attention
from hwsim.sim.engine import Engine
from hwsim.sim.gpu import CtaLaunch, GpuRun, build_gpu, cohort_size
from hwsim.sim.gpu_attention import _padded_step, plan_for, simulate_attention
from hwsim.sim.kernel_profiles import load_attention_profile
from hwsim.sim.trace import chrome_trace
from hwsim.spec.errors import SpecError
from hwsim.spec.load import load_device

H100 = load_device("h100-sxm")
A100 = load_device("a100-sxm-80gb")


def shape(**kw: object) -> AttentionShape:
    base: dict[str, object] = dict(
        batch=1, heads=8, kv_heads=8, seqlen_q=1024, seqlen_kv=1024, head_dim=128, dtype="fp16"
    )
    base.update(kw)
    return AttentionShape(**base)  # type: ignore[arg-type]


AGREE_CASES = [
    (H100, shape(seqlen_q=2048, seqlen_kv=2048), "fa3"),
    (H100, shape(batch=2, heads=4, kv_heads=4, head_dim=64, causal=True), "fa3"),
    (H100, shape(head_dim=256, dtype="bf16"), "fa3"),
    (A100, shape(batch=2, causal=True), "fa2"),
    (H100, shape(batch=2, heads=32, seqlen_q=1, seqlen_kv=8192, dtype="bf16"), "flash-decoding"),
    (H100, shape(heads=4, kv_heads=4, dtype="bf16", pass_="fwd+bwd"), "fa3"),
]


@pytest.mark.parametrize(("dev", "sh", "kernel"), AGREE_CASES)
def test_cta_and_tile_detail_agree(dev: object, sh: AttentionShape, kernel: str) -> None:
    cta = simulate_attention(dev, sh, kernel, detail="cta")  # type: ignore[arg-type]
    tile = simulate_attention(dev, sh, kernel, detail="tile")  # type: ignore[arg-type]
    # the contract: both granularities agree within 2 %
    assert cta.time_s == pytest.approx(tile.time_s, rel=0.02)
    # the same plan moves the same bytes at every level (1e-9: float summation order)
    for lvl, b in cta.bytes.items():
        assert b == pytest.approx(tile.bytes[lvl], rel=1e-9)
    assert tile.events > cta.events  # tile detail simulates every step


@pytest.mark.parametrize(
    "sh",
    [
        shape(),
        shape(causal=True, head_dim=64, heads=16, kv_heads=16),
        shape(heads=16, kv_heads=4, seqlen_kv=4096),
        shape(seqlen_q=1, seqlen_kv=8192, heads=32, kv_heads=8, batch=8),
        shape(pass_="fwd+bwd", causal=True),
    ],
)
@pytest.mark.parametrize("kernel", ["fa3", "fa2", "naive", "flash-decoding"])
def test_invariants(sh: AttentionShape, kernel: str) -> None:
    if kernel != "fa3" and kernel != "fa2" and sh.pass_ != "fwd":
        pytest.skip("naive and flash-decoding plan the forward pass only")
    r = simulate_attention(H100, sh, kernel)
    # never faster than the roofline (its own bytes at each level's bandwidth, FLOPs at peak);
    # 1e-9 relative: float rounding in the fluid integration
    assert r.time_s >= r.roofline_time_s * (1 - 1e-9)
    assert r.time_s > 0 and r.events > 0
    # the simulator's own plan: SMEM and, for kernels with a warp count, registers bound it
    plan = plan_for(H100, sh, load_attention_profile(kernel, "hopper"))
    glob = plan.bytes_by_level()["global"]
    # bytes conserved: without multicast every global byte of the plan crosses L2 exactly once
    mc = any(k.name == "attn_fwd" for k in plan.kernels) and kernel == "fa3" and not sh.masked
    if not mc:
        assert r.bytes["l2"] == pytest.approx(glob, rel=1e-9)
    assert r.bytes["hbm"] <= r.bytes["l2"] * (1 + 1e-9)
    assert r.flops == plan.flops() and r.exp_ops == plan.exp_ops()
    assert all(0 <= u for u in r.utilization.values())


def test_deterministic_and_no_negative_times() -> None:
    sh = shape(causal=True)
    a = simulate_attention(H100, sh, "fa3", trace=True)
    b = simulate_attention(H100, sh, "fa3", trace=True)
    assert (a.time_s, a.events, a.bytes) == (b.time_s, b.events, b.bytes)
    assert a.trace is not None and b.trace is not None
    assert a.trace.spans == b.trace.spans
    assert all(0 <= s.start_s <= s.end_s <= a.time_s * (1 + 1e-12) for s in a.trace.spans)
    assert all(t >= 0 and min(rates) >= 0 for t, rates in a.trace.rate_log)


def test_l2_reuse_reads_kv_from_hbm_once_per_head() -> None:
    sh = shape(batch=2, seqlen_q=4096, seqlen_kv=4096)
    r = simulate_attention(H100, sh, "fa3")
    unique = 4 * sh.batch * sh.heads * sh.seqlen_q * sh.head_dim * 2  # Q, K, V, O in fp16
    lse = sh.batch * sh.heads * sh.seqlen_q * 4
    # every Q block of a head re-reads K/V, but only the first read reaches HBM
    assert r.bytes["hbm"] == pytest.approx(unique + lse, rel=1e-9)
    assert r.bytes["l2"] > 3 * r.bytes["hbm"]


def test_wave_quantisation() -> None:
    # 132 equal CTAs fill one wave of the 132 SMs; 133 need a second, almost idle wave
    one = simulate_attention(
        H100, shape(heads=132, kv_heads=132, seqlen_q=128, seqlen_kv=8192), "fa2"
    )
    two = simulate_attention(
        H100, shape(heads=133, kv_heads=133, seqlen_q=128, seqlen_kv=8192), "fa2"
    )
    assert one.kernels[0].waves == pytest.approx(1.0)
    # the 133rd CTA runs alone after the first wave: close to twice the time (±15 %: fill,
    # launch and the shorter contention of a lone CTA)
    assert two.time_s / one.time_s == pytest.approx(2.0, rel=0.15)


def test_causal_lpt_beats_launch_order() -> None:
    """FA3's longest-first persistent scheduler balances causal CTAs better than a grid."""
    sh = shape(batch=1, heads=4, kv_heads=4, seqlen_q=8192, seqlen_kv=8192, causal=True)
    prof = load_attention_profile("fa3", "hopper")
    lpt = simulate_attention(H100, sh, "fa3", profile=prof)
    grid = simulate_attention(
        H100, sh, "fa3", profile=prof.model_copy(update={"lpt_when_masked": False})
    )
    assert lpt.time_s < grid.time_s


def test_softmax_exp_throughput_matters() -> None:
    """d=64 spends as long on exps (SFU) as on matmuls, so it reaches a lower fraction of the
    tensor peak than d=256, and FA3's overlap helps it more than FA2's synchronous softmax."""
    d64 = simulate_attention(
        H100, shape(head_dim=64, heads=32, kv_heads=32, seqlen_q=8192, seqlen_kv=8192), "fa3"
    )
    d256 = simulate_attention(
        H100, shape(head_dim=256, heads=8, kv_heads=8, seqlen_q=8192, seqlen_kv=8192), "fa3"
    )
    assert d64.tflops < d256.tflops
    assert d64.utilization["special"] > d256.utilization["special"]
    fa2 = simulate_attention(
        H100, shape(head_dim=64, heads=32, kv_heads=32, seqlen_q=8192, seqlen_kv=8192), "fa2"
    )
    assert fa2.tflops < d64.tflops


def test_trends_of_the_fa3_table() -> None:
    """d=256 > d=128 > d=64; causal below non-causal at 512 tokens and within 10 % at 16k."""

    def tf(d: int, s: int, causal: bool) -> float:
        sh = shape(
            batch=16384 // s,
            heads=2048 // d,
            kv_heads=2048 // d,
            seqlen_q=s,
            seqlen_kv=s,
            head_dim=d,
            causal=causal,
        )
        return simulate_attention(H100, sh, "fa3").tflops

    for s in (512, 16384):
        assert tf(256, s, False) > tf(128, s, False) > tf(64, s, False)
    short = [tf(d, 512, True) / tf(d, 512, False) for d in (64, 128)]
    long = [tf(d, 16384, True) / tf(d, 16384, False) for d in (64, 128)]
    assert all(x < 0.8 for x in short)
    assert all(x > 0.9 for x in long)


def test_padded_step_matches_plan_flops_for_whole_tiles() -> None:
    sh = shape(seqlen_q=1024, seqlen_kv=1024, head_dim=64, heads=2, kv_heads=2)
    plan = plan_attention(sh, 128 * 1024, block_q=128, block_kv=128)
    kp = plan.kernels[0]
    f, scores = _padded_step(kp)
    assert f * kp.n_steps.sum() == plan.flops()  # whole tiles: padded = real, exactly
    assert scores == 128 * 128
    assert flash_flops(sh) == plan.flops()


def test_other_gpus_run_from_their_specs() -> None:
    for name in ("a100-sxm-80gb", "h800", "h200", "b200", "mi300x"):
        dev = load_device(name)
        r = simulate_attention(dev, shape(seqlen_q=4096, seqlen_kv=4096), "fa2")
        assert 0 < r.tflops < dev.peak_flops("fp16") / 1e12
    a100 = simulate_attention(A100, shape(seqlen_q=4096, seqlen_kv=4096), "fa3")
    assert any("hopper" in n for n in a100.notes)  # FA3 is a Hopper kernel: said so


def test_bad_inputs_are_spec_errors() -> None:
    with pytest.raises(SpecError, match="unknown attention kernel"):
        simulate_attention(H100, shape(), "fa9")
    with pytest.raises(SpecError, match="detail"):
        simulate_attention(H100, shape(), "fa3", detail="warp")
    with pytest.raises(SpecError, match="events"):
        simulate_attention(H100, shape(seqlen_q=65536, seqlen_kv=65536), "fa3", detail="tile")


def test_cohorts_keep_whole_waves_and_bytes() -> None:
    assert cohort_size(100, 132, 1200) == 1
    k = cohort_size(65536, 132, 1200)
    assert 132 % k == 0 and -(-65536 // k) <= 1200
    sh = shape(batch=4, seqlen_q=4096, seqlen_kv=4096, heads=16, kv_heads=16)
    alone = simulate_attention(H100, sh, "fa3", max_cohorts=0)
    grouped = simulate_attention(H100, sh, "fa3", max_cohorts=300)
    # lockstep cohorts conserve bytes exactly and move the time by well under 1 %
    assert grouped.bytes["hbm"] == pytest.approx(alone.bytes["hbm"], rel=1e-9)
    assert grouped.time_s == pytest.approx(alone.time_s, rel=0.01)
    assert grouped.events < alone.events


def test_gpu_run_two_equal_ctas_by_hand() -> None:
    """Two CTAs on a 1-SM slice: compute-bound, so time = 2 × (fill + steps·step + drain +
    overhead) + the first tile's load; the second CTA's first tile is prefetched during the
    first CTA's last step (stages - 1 = 1 step before the end), drain and overhead: hidden."""
    eng = Engine()
    fab = build_gpu(eng, H100)
    fab.n_sms = 1
    ln = CtaLaunch(
        "k",
        steps=np.array([4, 4]),
        step_s=np.array(1e-6),
        fill_s=np.array(0.5e-6),
        drain_s=np.array(0.25e-6),
        overhead_s=np.array(0.25e-6),
        first_bytes=np.array(0.0),
        step_bytes=np.array(1000.0),
        store_bytes=np.array(0.0),
        group=np.array([-1, -1]),
        group_bytes=np.zeros(1),
        order=np.arange(2),
        prefetch=True,
    )
    t = GpuRun(eng, fab).run([ln])
    per_cta = 0.5e-6 + 4e-6 + 0.5e-6
    first = fab.l2.latency_s + fab.hbm.latency_s + 1000.0 / fab.sm_port_Bps
    assert first < 1e-6 + 0.5e-6  # the prefetch window: last step + drain + overhead
    # 1e-9 relative: float rounding of the event times
    assert t == pytest.approx(2 * per_cta + first, rel=1e-9)


def test_chrome_trace_shape() -> None:
    r = simulate_attention(H100, shape(), "fa3", trace=True, trace_sms=2)
    assert r.trace is not None
    data = chrome_trace(r.trace.spans, r.trace.rate_log, r.trace.link_names)
    ev = data["traceEvents"]
    names = {e["args"]["name"] for e in ev if e.get("name") == "thread_name"}
    assert {"kernels", "SM 000", "SM 000 · copy", "SM 001"} <= names
    assert any(e["ph"] == "C" and e["name"] == "hbm traffic" for e in ev)
    assert all(e["dur"] >= 0 for e in ev if e["ph"] == "X")
