"""GEMM and streaming-op simulators on the engine: bounds, skinny HBM-bound GEMMs, cost
growing with waves, and simulated ≥ roofline for every row of the measured table."""

from __future__ import annotations

from pathlib import Path

import pytest

from hwsim.plan.gemm import gemm_profile, plan_gemm
from hwsim.plan.streaming import elementwise_profile
from hwsim.sim.gpu_gemm import simulate_gemm
from hwsim.sim.streaming import simulate_op
from hwsim.spec.load import list_devices, load_device
from hwsim.validate.gpu_ops import load_table

A100 = load_device("a100-sxm-80gb")
TINY = load_device(Path(__file__).parents[1] / "fixtures" / "gpu-tiny.yaml")


def test_skinny_gemm_is_hbm_bound_within_achievable_bandwidth() -> None:
    r = simulate_gemm(A100, 64, 12288, 12288, "fp16")
    prof, _ = gemm_profile(A100)
    achievable = prof.hbm_fraction.value * A100.level_bandwidth_Bps("hbm")
    assert r.bound == "hbm"
    # B alone is 12288^2 x 2 B = 302 MB; the kernel cannot beat the achievable bandwidth...
    floor = r.bytes["hbm"] / achievable
    assert r.kernel_s >= floor * (1 - 1e-9)  # 1e-9: float rounding of the fluid integration
    # ...and is bandwidth-bound: within 3 % of it (the rest: one wave's fixed CTA cost and
    # the HBM latency, ~1 us of ~160 us)
    assert r.kernel_s <= floor * 1.03
    assert r.utilization["hbm"] == pytest.approx(r.bytes["hbm"] / r.kernel_s / 2.039e12)
    # compulsory bytes only: one wave, every panel read once
    assert r.bytes["hbm"] == pytest.approx(r.bytes["compulsory"], rel=1e-12)


def test_large_gemm_is_compute_bound_at_the_profile_fraction() -> None:
    r = simulate_gemm(A100, 8192, 8192, 8192, "bf16")
    prof, _ = gemm_profile(A100)
    mu = prof.matrix_fraction_for("bf16")
    assert r.bound == "compute"
    # wave quantisation and per-CTA costs only lower the achieved fraction (≤ mu), and a
    # 19-wave GEMM stays within 10 % of it
    assert 0.9 * mu <= r.utilization["compute"] <= mu * (1 + 1e-9)


def test_events_grow_with_waves_not_k() -> None:
    # doubling K doubles tile work and bytes but not the number of CTAs or waves
    a = simulate_gemm(A100, 4096, 4096, 4096, "fp16")
    b = simulate_gemm(A100, 4096, 4096, 8192, "fp16")
    assert a.plan["waves"] == b.plan["waves"]
    assert a.events == b.events
    assert b.kernel_s > 1.8 * a.kernel_s  # ~2x the work; 1.8 leaves room for fixed costs


def test_merged_waves_cost_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    # many waves: runs of identical waves are simulated as one step x count (exact, as waves
    # run back to back); compare with simulating every wave
    p = plan_gemm(TINY, 2080, 2048, 64, "fp16", tile=(32, 32), split=1, swizzle=1)
    assert p.wave_count > 256
    import hwsim.sim.gpu_gemm as gg

    monkeypatch.setattr(gg, "plan_gemm", lambda *a, **k: p)
    merged = gg.simulate_gemm(TINY, 2080, 2048, 64, "fp16")
    monkeypatch.setattr(gg, "merged", lambda waves, limit=0: waves)
    full = gg.simulate_gemm(TINY, 2080, 2048, 64, "fp16")
    assert merged.time_s == pytest.approx(full.time_s, rel=1e-9)  # float summation order only
    assert merged.events < full.events / 10


def test_host_floor_and_launch() -> None:
    # a tiny GEMM is all overhead: the call takes at least launch + tail on the host
    prof, _ = gemm_profile(A100)
    r = simulate_gemm(A100, 16, 16, 16, "fp16")
    assert r.time_s >= prof.host_launch.value + prof.host_tail.value - 1e-15
    assert r.time_s == pytest.approx(r.launch_s + max(r.kernel_s, prof.host_tail.value))


def test_few_ctas_cannot_saturate_bandwidth() -> None:
    # one row of 4096 fp16 per CTA: 2 rows use 2 of 108 SMs, whose L2 ports cap the rate
    few = simulate_op(A100, "softmax", 2, 4096, "fp16")
    many = simulate_op(A100, "softmax", 4096, 4096, "fp16")
    bw_few = few.bytes["hbm"] / few.kernel_s
    bw_many = many.bytes["hbm"] / many.kernel_s
    assert bw_few < 0.1 * bw_many


def test_looped_reduction_reads_twice() -> None:
    short = simulate_op(A100, "layernorm", 4096, 4096, "fp16")
    long = simulate_op(A100, "layernorm", 1024, 16384, "fp16")  # same elements, longer rows
    assert short.plan["reads"] == 1 and long.plan["reads"] == 2
    assert long.bytes["hbm"] == pytest.approx(1.5 * short.bytes["hbm"], rel=1e-3)  # 6 B vs 4 B
    assert long.kernel_s > 1.4 * short.kernel_s


@pytest.mark.parametrize("op", ["softmax", "layernorm", "rmsnorm", "gelu", "swiglu", "add"])
def test_every_op_runs_and_respects_its_roofline(op: str) -> None:
    r = simulate_op(TINY, op, 256, 1024, "bf16")
    assert r.kernel_s >= r.roofline_s * (1 - 1e-12)
    assert r.events > 0 and r.time_s >= r.kernel_s


def test_simulated_at_least_roofline_every_table_row() -> None:
    # the acceptance check: every measured shape, both devices, all four operators
    devices = {}
    for row in load_table():
        dev = devices.setdefault(row.device, load_device(row.device))
        if row.op == "matmul":
            assert row.n is not None and row.k is not None
            g = simulate_gemm(dev, row.m, row.n, row.k, row.dtype)
            assert g.kernel_s >= g.roofline_s * (1 - 1e-12), row.case
        else:
            s = simulate_op(dev, row.op, row.m, row.n, row.dtype)
            assert s.kernel_s >= s.roofline_s * (1 - 1e-12), row.case


@pytest.mark.parametrize("name", [d for d in list_devices() if load_device(d).kind == "gpu"])
def test_every_gpu_device_predicts_from_spec_and_generation(name: str) -> None:
    # H100/H200/B200/MI300X have no table: they run on their generation's (inherited) profile
    dev = load_device(name)
    _, key = gemm_profile(dev)
    _, ekey = elementwise_profile(dev)
    assert key in (dev.arch, "default") and ekey in (dev.arch, "default")
    g = simulate_gemm(dev, 4096, 4096, 4096, "bf16")
    assert g.kernel_s >= g.roofline_s * (1 - 1e-12)
    assert 0 < g.utilization["compute"] <= 1
    o = simulate_op(dev, "rmsnorm", 64, 8192, "bf16")
    assert o.kernel_s >= o.roofline_s * (1 - 1e-12)


def test_trace_has_waves_and_flows() -> None:
    r = simulate_gemm(TINY, 300, 200, 1024, "fp16", trace=True)
    tracks = {e.track for e in r.trace}
    assert "SMs" in tracks and "hbm" in tracks
    assert sum(1 for e in r.trace if e.track == "SMs") == r.plan["waves"]


@pytest.mark.parametrize(
    ("dev", "m", "n", "k", "dtype"),
    [(A100, 513, 5929, 224, "fp16"), (A100, 385, 513, 525, "fp16"),
     (A100, 64, 12288, 12288, "bf16"), (TINY, 2080, 2048, 1024, "fp16"),
     (TINY, 300, 200, 4096, "fp32")],
)  # fmt: skip
def test_planner_wave_time_equals_the_simulated_kernel_time(
    dev: object, m: int, n: int, k: int, dtype: str
) -> None:
    """The planner picks by its own wave timing, so that timing must be the engine's: 1e-9 is
    float summation order (the engine adds wave times to its clock one by one)."""
    r = simulate_gemm(dev, m, n, k, dtype)  # type: ignore[arg-type]
    p = plan_gemm(dev, m, n, k, dtype)  # type: ignore[arg-type]
    assert p.estimate_s == pytest.approx(r.kernel_s, rel=1e-9)
    assert p.timed >= 1


def test_vectorised_panel_rule_equals_the_reference() -> None:
    """``panel_bytes`` (one pass) and ``wave_hbm_panel_bytes`` (loop over waves) are the same
    rule; panel sizes are whole bytes, so the sums must be equal exactly."""
    import numpy as np

    from hwsim.plan.gemm_waves import panel_bytes, wave_hbm_panel_bytes

    rng = np.random.default_rng(0)
    for fit in (False, True):
        for resident in (0.0, 300.0, 1e9):
            a_id, b_id = rng.integers(0, 20, 200), rng.integers(0, 15, 200)
            wave = np.arange(200) // 16
            a_sz, b_sz = (
                rng.integers(1, 50, 20).astype(float),
                rng.integers(1, 50, 15).astype(float),
            )
            n_w = int(wave[-1]) + 1
            ref = wave_hbm_panel_bytes(
                [np.unique(a_id[wave == w]) for w in range(n_w)],
                [np.unique(b_id[wave == w]) for w in range(n_w)],
                a_sz, b_sz, resident, fit,
            )  # fmt: skip
            got = panel_bytes(a_id, b_id, wave, n_w, a_sz, b_sz, resident, fit)
            assert got.tolist() == ref.tolist()
