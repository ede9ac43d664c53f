"""Hierarchical roofline: hand-worked cases, textbook answers, vectorised == scalar,
monotonicity."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsim.roofline.analytic import (
    device_bandwidths,
    device_rates,
    evaluate,
    kernel_work,
    roofline,
    roofline_grid,
)
from hwsim.roofline.ops import (
    EXAMPLES,
    Kernel,
    attention_decode,
    attention_prefill,
    attention_traffic_bytes,
    example_kernels,
    gemm,
    gemm_traffic_bytes,
    moe_experts,
)
from hwsim.spec.device import Device
from hwsim.spec.errors import SpecError
from hwsim.spec.load import list_devices, load_device, validate


def _q(v: str) -> dict[str, str]:
    return {"value": v, "source": "t"}


def tiny_device(hbm_bw: str = "0.25 TB/s") -> Device:
    """Round numbers for hand computation: 4 units, 100 TFLOP/s bf16, 1 MiB SRAM per unit at
    1 TB/s each (4 TB/s chip), HBM at ``hbm_bw``."""
    data = {
        "name": "tiny",
        "kind": "gpu",
        "vendor": "test",
        "arch": "test",
        "sources": {"t": "hand-made test device"},
        "compute": {
            "units": _q("4"),
            "clock": _q("1 GHz"),
            "peak": {"bf16": _q("100 TFLOP/s"), "fp32": _q("10 TFLOP/s")},
            "vector_fp32": _q("10 TFLOP/s"),
            "special": _q("1 TFLOP/s"),
        },
        "memory": [
            {
                "name": "sram",
                "scope": "per_unit",
                "capacity": _q("1 MiB"),
                "bandwidth": _q("1 TB/s"),
                "latency": _q("10 ns"),
            },
            {
                "name": "hbm",
                "scope": "per_chip",
                "capacity": _q("16 GiB"),
                "bandwidth": _q(hbm_bw),
                "latency": _q("500 ns"),
            },
        ],
        "power": {"tdp": _q("100 W")},
    }
    return validate(Device, data, file="<test>")


H100 = load_device("h100-sxm")


def _level(name: str, scope: str, cap: str, bw: str) -> dict[str, object]:
    return {
        "name": name,
        "scope": scope,
        "capacity": _q(cap),
        "bandwidth": _q(bw),
        "latency": _q("10 ns"),
    }


def kind_device(kind: str) -> Device:
    """Minimal LPU (SRAM only) and dataflow (SRAM/HBM/DDR) devices: no level is called hbm on
    the LPU, and the dataflow DDR sits outside main memory."""
    base = tiny_device().model_dump(mode="python")
    raw: dict[str, object] = {
        k: v for k, v in base.items() if k not in ("compute", "memory", "power", "kind")
    }
    raw["compute"] = {
        "units": _q("4"),
        "clock": _q("1 GHz"),
        "peak": {"fp16": _q("100 TFLOP/s"), "int8": _q("400 TOP/s")},
    }
    raw["power"] = {"tdp": _q("100 W")}
    raw["kind"] = kind
    if kind == "lpu":
        raw["memory"] = [_level("sram", "per_chip", "230 MB", "80 TB/s")]
        raw["lpu"] = {"static_schedule": True, "c2c_hop_latency": _q("100 ns")}
    else:
        raw["memory"] = [
            _level("sram", "per_unit", "512 KiB", "1 TB/s"),
            _level("hbm", "per_chip", "64 GB", "2 TB/s"),
            _level("ddr", "per_chip", "1.5 TB", "200 GB/s"),
        ]
        raw["tiles"] = {"pcus": _q("4"), "pmus": _q("4")}
    return validate(Device, raw, file="<test>")


@pytest.mark.parametrize("kind", ["lpu", "dataflow"])
def test_other_device_kinds_use_their_own_levels(kind: str) -> None:
    d = kind_device(kind)
    for k in example_kernels(d):
        r = roofline(k, d)
        assert set(r.level_bytes) == {m.name for m in d.memory}
        assert r.level_bytes[d.main_memory.name] > 0
        assert math.isfinite(r.time_s) and r.time_s > 0
    if kind == "dataflow":  # weights live in HBM; the DDR capacity tier moves nothing here
        assert roofline(example_kernels(d, names=["moe-decode"])[0], d).level_bytes["ddr"] == 0
    # bf16 work on a device listing only fp16 runs at the fp16 peak (the device's fallback)
    r = roofline(gemm(8192, 8192, 8192, d), d)
    assert r.peak_flops == pytest.approx(100e12, rel=1e-12)  # exact spec value


def test_hand_worked_gemm_on_tiny_device() -> None:
    # GEMM 1024³ bf16 (2 B/elem) on the tiny device, by hand:
    #   FLOPs = 2·1024³ = 2.147e9 → compute 2.147e9 / 100e12 = 21.47 us.
    #   sram serves the registers (128×128 register tile): A and B each re-read 1024/128 = 8
    #     times → (8+8)·1024²·2 B + C 1024²·2 B = 34·1024² = 35_651_584 B → / 4 TB/s = 8.9 us.
    #   hbm serves sram tiles of 1 MiB / 2 B = 524288 elements (edge 1024/√2): A and B re-read √2
    #     times → (2√2 + 1)·1024²·2 B = 8_028_732 B → / 0.25 TB/s = 32.11 us  ← the maximum.
    d = tiny_device()
    r = roofline(gemm(1024, 1024, 1024, d), d)
    flops = 2 * 1024**3
    hbm_bytes = (2 * math.sqrt(2) + 1) * 1024**2 * 2
    sram_bytes = 34 * 1024**2
    # rel 1e-12: the same closed form evaluated in a different order (float rounding only)
    assert r.level_bytes["hbm"] == pytest.approx(hbm_bytes, rel=1e-12)
    assert r.level_bytes["sram"] == pytest.approx(sram_bytes, rel=1e-12)
    assert r.compute_time_s["compute"] == pytest.approx(flops / 100e12, rel=1e-12)
    assert r.bound == "hbm" and r.bound_kind == "memory"
    assert r.time_s == pytest.approx(hbm_bytes / 0.25e12, rel=1e-12)  # 32.11 us
    assert r.attainable_flops == pytest.approx(flops / (hbm_bytes / 0.25e12), rel=1e-12)
    # ridge of hbm = 100e12 / 0.25e12 = 400 FLOP/B (exact in binary floating point)
    assert r.ridge_flop_per_byte["hbm"] == pytest.approx(400.0, rel=1e-12)
    # with 4 TB/s of HBM the same GEMM is compute-bound: 8.03 us < 21.47 us
    fast = tiny_device("4 TB/s")
    assert roofline(gemm(1024, 1024, 1024, fast), fast).bound == "compute"


def test_custom_kernel_from_raw_counts() -> None:
    # 1e12 matrix FLOPs (1e12/100e12 = 10 ms), 1e10 exps (1e10/1e12 = 10 ms), 1e9 B of HBM
    # (1e9 / 0.25e12 = 4 ms): a tie between compute and special resolves to compute (listed first).
    d = tiny_device()
    k = Kernel("raw", flops={"matrix": 1e12, "special": 1e10}, level_bytes={"hbm": 1e9})
    r = roofline(k, d)
    assert r.time_s == pytest.approx(0.01, rel=1e-12)  # float rounding only
    assert r.bound == "compute"
    k2 = Kernel("raw2", flops={"matrix": 1e12, "special": 2e10}, level_bytes={"hbm": 1e9})
    assert roofline(k2, d).bound == "special"
    assert roofline(k2, d).time_s == pytest.approx(0.02, rel=1e-12)


def test_kernel_rejects_bad_input() -> None:
    with pytest.raises(SpecError, match="compute kind"):
        Kernel("x", flops={"tensor": 1.0}, level_bytes={})
    with pytest.raises(SpecError, match=">= 0"):
        Kernel("x", flops={"matrix": -1.0}, level_bytes={})
    with pytest.raises(SpecError, match="does not have"):
        roofline(Kernel("x", flops={"matrix": 1.0}, level_bytes={"ddr": 5.0}), tiny_device())
    with pytest.raises(SpecError, match="unknown kernel"):
        example_kernels(H100, "bf16", ["gemm-819"])


def test_h100_square_gemm_8192_is_compute_bound() -> None:
    # textbook: HBM intensity = 2N³ / (3N²·2 B) ≈ N/3 = 2731 FLOP/B ≫ H100 ridge 989/3.35 = 295
    r = roofline(gemm(8192, 8192, 8192, H100), H100)
    assert r.bound == "compute"
    assert r.intensity_flop_per_byte["hbm"] > 5 * r.ridge_flop_per_byte["hbm"]
    # compute-bound means time = FLOPs / peak; rel 1e-12: float rounding only
    assert r.time_s == pytest.approx(2 * 8192**3 / H100.peak_flops("bf16"), rel=1e-12)


def test_h100_decode_attention_is_hbm_bound() -> None:
    # batch 1, 8k context, 64 heads / 8 KV heads of 128 (Llama-3-70B): KV = 2·8·8192·128·2 B
    # = 33.5 MB read once; 4·64·8192·128 = 268 MFLOP → intensity ≈ 8 FLOP/B ≪ ridge 295.
    k = attention_decode(H100, batch=1, context=8192, heads=64, kv_heads=8, head_dim=128)
    r = roofline(k, H100)
    assert r.bound == "hbm"
    kv_bytes = 2 * 8 * 8192 * 128 * 2
    q_o_bytes = 2 * 64 * 128 * 2
    # rel 1e-12: KV once plus Q and O once, exactly
    assert r.level_bytes["hbm"] == pytest.approx(kv_bytes + q_o_bytes, rel=1e-12)
    assert r.time_s == pytest.approx((kv_bytes + q_o_bytes) / 3.35e12, rel=1e-3)  # spec 3.35 TB/s


def test_prefill_is_compute_bound_and_moe_decode_reads_touched_experts() -> None:
    pre = roofline(attention_prefill(H100, batch=2, seq_len=8192, heads=16), H100)
    assert pre.bound in ("compute", "special")
    # MoE, 1 token top-8 of 256: exactly 8 experts touched; weights 8·3·7168·2048·2 B dominate
    k = moe_experts(H100, tokens=1, d_model=7168, d_ff=2048, experts=256, top_k=8)
    weights = 8 * 3 * 7168 * 2048 * 2
    # rel 2e-3: activations (8 experts x (7168 + 4096 + 2048 + 7168) elems) add ~0.1% to weights
    assert k.level_bytes["hbm"] == pytest.approx(weights, rel=2e-3)
    assert roofline(k, H100).bound == "hbm"


@pytest.mark.parametrize("name", list_devices())
def test_every_example_runs_on_every_device(name: str) -> None:
    d = load_device(name)
    for k in example_kernels(d):
        assert set(k.level_bytes) == {m.name for m in d.memory}  # uses the device's own levels
        r = roofline(k, d, name)
        assert r.time_s > 0 and math.isfinite(r.time_s)
        assert r.bound in ("compute", "vector", "special", *k.level_bytes)
        main = d.main_memory.name
        assert r.level_bytes[main] > 0
        d_ = r.to_dict()
        assert d_["device"] == name and "intensity_flop_per_byte" in d_


def test_vectorised_equals_scalar() -> None:
    devices = [load_device(n) for n in list_devices()]
    kernels = [k for d in devices for k in example_kernels(d)]
    names = {m.name for d in devices for m in d.memory}
    grid = roofline_grid(kernels, devices)
    assert grid.time_s.shape == (len(kernels), len(devices))
    for i, k in enumerate(kernels):
        for j, d in enumerate(devices):
            if any(
                v > 0 and lvl not in {m.name for m in d.memory} for lvl, v in k.level_bytes.items()
            ):
                assert math.isnan(grid.time_s[i, j])  # a level the device lacks: not applicable
                continue
            s = roofline(k, d)
            # rel 1e-12: same formulas, numpy vs Python float order of operations
            assert grid.time_s[i, j] == pytest.approx(s.time_s, rel=1e-12)
            assert grid.attainable_flops[i, j] == pytest.approx(s.attainable_flops, rel=1e-12)
            assert grid.bound()[i, j] == s.bound
    assert names  # at least one level seen


def _raw_kernel(m: float, v: float, s: float, b0: float, b1: float) -> Kernel:
    return Kernel(
        "k", flops={"matrix": m, "vector": v, "special": s}, level_bytes={"sram": b0, "hbm": b1}
    )


pos = st.floats(min_value=0.0, max_value=1e15, allow_nan=False)


@settings(max_examples=50, deadline=None)
@given(m=pos, v=pos, s=pos, b0=pos, b1=pos, scale=st.floats(min_value=1.0, max_value=100.0))
def test_more_bandwidth_is_never_slower(
    m: float, v: float, s: float, b0: float, b1: float, scale: float
) -> None:
    d = tiny_device()
    k = _raw_kernel(m, v, s, b0, b1)
    flops, qbytes = kernel_work([k], ["sram", "hbm"])
    rates = device_rates(d)
    bw = device_bandwidths(d, ["sram", "hbm"])
    base = evaluate(flops, qbytes, rates, bw).time_s[0]
    for lvl in range(2):
        faster = bw.copy()
        faster[lvl] *= scale
        assert evaluate(flops, qbytes, rates, faster).time_s[0] <= base
    assert evaluate(flops, qbytes, rates * scale, bw).time_s[0] <= base
    r = roofline(k, d)
    # rel 1e-12: independent scalar implementation of the same max
    assert r.time_s == pytest.approx(base, rel=1e-12, abs=0.0)


def test_evaluate_broadcasts_kernels_against_devices() -> None:
    # 3 kernels x 4 bandwidth variants of the tiny device → (3, 4) results
    d = tiny_device()
    ks = [gemm(n, n, n, d) for n in (256, 1024, 4096)]
    flops, qbytes = kernel_work(ks, ["sram", "hbm"])
    bw = device_bandwidths(d, ["sram", "hbm"])[None, :] * np.array([[1], [2], [4], [8]])
    out = evaluate(flops[:, None], qbytes[:, None], device_rates(d), bw[None], ["sram", "hbm"])
    assert out.time_s.shape == (3, 4)
    assert np.all(np.diff(out.time_s, axis=1) <= 0)  # more bandwidth, never slower
    assert out.intensity_flop_per_byte.shape == (3, 4, 2)
    assert out.resources == ("compute", "vector", "special", "sram", "hbm")


def test_examples_registry_is_documented() -> None:
    for name, (desc, factory) in EXAMPLES.items():
        assert desc and callable(factory), name


def test_traffic_closed_forms_work_on_arrays() -> None:
    # sweeps vary the on-chip capacity: the array form must equal the scalar form, and a bigger
    # tile never moves more bytes
    tiles = np.array([1e3, 1e4, 1e5, 1e6, 1e7, 1e9])
    arr = gemm_traffic_bytes(4096.0, 4096.0, 4096.0, tiles, 2, 2)
    assert isinstance(arr, np.ndarray)
    scal = [gemm_traffic_bytes(4096.0, 4096.0, 4096.0, float(t), 2, 2) for t in tiles]
    np.testing.assert_allclose(arr, scal, rtol=1e-12)  # same formula; rounding only
    assert np.all(np.diff(arr) <= 0)
    assert arr[-1] == 3 * 4096**2 * 2  # tile covers everything: A+B+C once, exactly
    rows = np.array([1.0, 128.0, 4096.0])
    att = attention_traffic_bytes(10.0, 100.0, rows, 128.0, causal=True)
    # 1 and 128 rows: one block → 10 + 100; 4096 rows: 32 blocks, causal share (1 + 1/32)/2
    expected = [110.0, 110.0, 10.0 + 100.0 * 32 * 0.5 * (1 + 1 / 32)]
    np.testing.assert_allclose(att, expected, rtol=1e-12)  # exact arithmetic up to rounding
