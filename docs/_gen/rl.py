"""Facts for docs/roofline.md: the textbook answers (H100 square GEMM, batch-1 decode attention),
the exp-versus-tensor-core gap, the tile sizes the L2 rule uses, the B200 caveat, the MoE layer
that "runs" on an LPU, and the speed of the array entry point, all computed from
:mod:`hwsim.roofline` and the device files."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from _gen import fmt
from hwsim.roofline.analytic import (
    device_bandwidths,
    device_rates,
    evaluate,
    kernel_work,
    level_union,
    roofline,
)
from hwsim.roofline.ops import (
    REGISTER_TILE,
    SOFTMAX_VECTOR_FLOPS_PER_SCORE,
    example_kernels,
)
from hwsim.spec.load import list_devices, load_device

GPU = "h100-sxm"


def _speed() -> tuple[int, float]:
    """(points, seconds) of one ``evaluate`` call on 100,000 random kernel/device points: the
    example kernels of every built-in device, scaled by random factors (best of 3)."""
    devices = [load_device(k) for k in list_devices()]
    kernels = [k for d in devices for k in example_kernels(d, "bf16")]
    levels = level_union(devices)
    flops, qbytes = kernel_work(kernels, levels)
    rates = np.stack([device_rates(d) for d in devices])
    bws = np.stack([device_bandwidths(d, levels) for d in devices])
    rng = np.random.default_rng(0)
    n = 100_000
    ki = rng.integers(0, len(kernels), n)
    di = rng.integers(0, len(devices), n)
    scale = rng.uniform(0.5, 2.0, (n, 1))
    f, q = flops[ki] * scale, qbytes[ki] * scale
    r, bw = rates[di], bws[di]
    best = np.inf
    for _ in range(3):
        t0 = time.perf_counter()
        evaluate(f, q, r, bw, levels)
        best = min(best, time.perf_counter() - t0)
    return n, best


def _bound(name: str) -> str:
    """A bound as prose writes it: memory levels in capitals (HBM, L2), compute as it is."""
    return name.upper() if name in ("hbm", "l2", "smem", "sram") else name


def facts() -> dict[str, Any]:
    d = load_device(GPU)
    ks = {k.name: k for k in example_kernels(d, "bf16")}
    by = {name: roofline(k, d, GPU) for name, k in ks.items()}
    out: dict[str, Any] = {}

    # exp throughput against the tensor cores (FlashAttention-3's observation)
    special = d.compute.special.value if d.compute.special is not None else float("nan")
    peak = d.peak_flops("bf16")
    out["h100_special"] = fmt.rate(special)
    out["h100_bf16"] = fmt.rate(peak)
    out["exp_gap"] = f"~{peak / special:.0f}×"
    pre = next(r for n, r in by.items() if "prefill" in n)
    ratio = pre.compute_time_s["special"] / pre.compute_time_s["compute"]
    out["prefill_exp_share"] = fmt.times(ratio)

    # the tile rule's capacities
    smem = next(m for m in d.memory if m.scope == "per_unit")
    out["h100_smem"] = f"{smem.capacity_bytes / 2**10:.0f} KiB"
    out["h100_l2"] = f"{d.level_capacity_bytes('l2') / 2**20:.0f} MiB"
    out["register_tile"] = f"{REGISTER_TILE} × {REGISTER_TILE}"
    out["softmax_flops"] = str(SOFTMAX_VECTOR_FLOPS_PER_SCORE)

    # textbook answer 1: H100 square bf16 GEMM, N = 8192
    g = next(r for n, r in by.items() if n.startswith("gemm") and "8192" in n)
    n = 8192
    hbm, l2 = d.main_memory.name, "l2"
    out["gemm_compulsory_intensity"] = fmt.n(2 * n**3 / (3 * n * n * 2))
    out["gemm_hbm_intensity"] = fmt.n(g.intensity_flop_per_byte[hbm])
    out["gemm_hbm_ridge"] = fmt.n(g.ridge_flop_per_byte[hbm])
    out["h100_hbm_bw"] = fmt.bw(d.level_bandwidth_Bps(hbm))
    out["gemm_l2_intensity"] = fmt.n(g.intensity_flop_per_byte[l2])
    out["gemm_l2_ridge"] = fmt.n(g.ridge_flop_per_byte[l2])
    out["h100_l2_bw"] = fmt.bw(d.level_bandwidth_Bps(l2))
    out["gemm_bound"] = _bound(g.bound)
    out["gemm_time"] = fmt.t(g.time_s)

    # textbook answer 2: decode attention, batch 1, 8k context
    a = next(r for n, r in by.items() if "decode" in n and "attn" in n)
    out["decode_kv"] = fmt.b(a.level_bytes[hbm])
    out["decode_mflop"] = f"{a.work_flops / 1e6:.0f} MFLOP"
    out["decode_intensity"] = fmt.n(a.intensity_flop_per_byte[hbm], 2)
    out["decode_bound"] = _bound(a.bound)
    out["decode_time"] = fmt.t(a.time_s)
    out["decode_pct"] = fmt.pct(a.fraction_of_peak, 1)

    # B200: tiles sized by shared memory alone
    b = load_device("b200")
    gb = next(roofline(k, b, "b200") for k in example_kernels(b, "bf16") if k.name == g.kernel)
    out["b200_gemm_bound"] = _bound(gb.bound)
    out["b200_gemm_pct"] = fmt.pct(gb.fraction_of_peak)
    out["b200_l2_bw"] = fmt.bw(b.level_bandwidth_Bps("l2"))

    # capacity is not checked: the MoE kernel on the LPU
    lpu = load_device("groq-lpu")
    moe = next(k for k in example_kernels(lpu, "bf16") if "moe" in k.name)
    main = lpu.main_memory
    out["moe_bytes"] = fmt.b(moe.level_bytes.get(main.name, 0.0))
    out["lpu_capacity"] = fmt.b(lpu.level_capacity_bytes(main.name))

    points, secs = _speed()
    out["speed_points"] = f"{points:,}"
    out["speed_s"] = fmt.t(secs)
    out["speed_rate"] = f"{points / secs / 1e6:.1f} million points/s"
    return out
