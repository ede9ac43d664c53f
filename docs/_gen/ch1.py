"""Chapter 1: the hierarchical roofline (hwsim.roofline) on the H100 and the B200."""

from __future__ import annotations

from typing import Any

import numpy as np

from _gen import fmt
from _gen.core import Table
from hwsim.report.figures import DevicePanel, roofline_figure
from hwsim.roofline.analytic import (
    device_bandwidths,
    device_rates,
    evaluate,
    kernel_work,
    roofline,
)
from hwsim.roofline.ops import EXAMPLES, attention_decode, example_kernels, gemm
from hwsim.spec.load import load_device

GPU = "h100-sxm"
NEXT = "b200"


def _what_if_hbm(device: Any, kernels: list[Any], scale: float) -> np.ndarray:
    """Roofline times with the main-memory bandwidth scaled (the array entry point)."""
    levels = [m.name for m in device.memory]
    flops, qbytes = kernel_work(kernels, levels)
    bws = device_bandwidths(device, levels)
    bws[levels.index(device.main_memory.name)] *= scale
    return evaluate(flops, qbytes, device_rates(device)[None], bws[None], levels).time_s


def facts() -> dict[str, Any]:
    d = load_device(GPU)
    d2 = load_device(NEXT)
    ks = example_kernels(d, "bf16")
    res = [roofline(k, d, GPU) for k in ks]
    by = {name: r for name, r in zip(EXAMPLES, res, strict=True)}
    peak = d.peak_flops("bf16")
    lv = {m.name: d.level_bandwidth_Bps(m.name) for m in d.memory}
    f: dict[str, Any] = {
        "peak": fmt.rate(peak),
        "hbm_bw": fmt.bw(lv["hbm"]),
        "l2_bw": fmt.bw(lv["l2"]),
        "smem_bw": fmt.bw(lv["smem"]),
        "smem_each": fmt.bw(d.level("smem").bandwidth_Bps),
        "smem_cap": fmt.b(d.level("smem").capacity_bytes),
        "l2_cap": fmt.b(d.level("l2").capacity_bytes),
        "units": str(d.compute.units_count),
        "ridge_hbm": fmt.n(peak / lv["hbm"]),
        "ridge_l2": fmt.n(peak / lv["l2"]),
        "ridge_smem": fmt.n(peak / lv["smem"]),
    }

    # the worked GEMM: every level's bytes and time
    g = by["gemm-8192"]
    f["g_flops"] = fmt.n(g.work_flops / 1e12) + " TFLOP"
    f["g_compute"] = fmt.t(g.compute_time_s["compute"])
    f["g_bound"] = g.bound
    f["g_time"] = fmt.t(g.time_s)
    rows = []
    for lvl in g.level_bytes:
        rows.append(
            [
                f"`{lvl}`",
                fmt.b(g.level_bytes[lvl]),
                fmt.bw(g.level_bandwidth_Bps[lvl]),
                fmt.t(g.level_time_s[lvl]),
                fmt.n(g.intensity_flop_per_byte[lvl]),
                fmt.n(g.ridge_flop_per_byte[lvl]),
            ]
        )
    rows.append(["compute (bf16)", "", fmt.rate(peak), fmt.t(g.compute_time_s["compute"]), "", ""])
    f["g_table"] = Table(
        ["resource", "bytes moved", "bandwidth", "time", "intensity (FLOP/B)", "ridge (FLOP/B)"],
        rows,
    )
    f["g_hbm_i"] = fmt.n(g.intensity_flop_per_byte["hbm"])
    f["g_l2_i"] = fmt.n(g.intensity_flop_per_byte["l2"])
    f["g_smem_i"] = fmt.n(g.intensity_flop_per_byte["smem"])
    f["g_l2_margin"] = fmt.times(g.intensity_flop_per_byte["l2"] / g.ridge_flop_per_byte["l2"])

    # the same GEMM on the next generation
    g2 = roofline(gemm(8192, 8192, 8192, d2, "bf16"), d2, NEXT)
    f["b200_peak"] = fmt.rate(d2.peak_flops("bf16"))
    f["b200_l2_bw"] = fmt.bw(d2.level_bandwidth_Bps("l2"))
    f["b200_l2_ridge"] = fmt.n(g2.ridge_flop_per_byte["l2"])
    f["b200_gemm_bound"] = g2.bound
    if g2.bound == "compute":
        f["b200_gemm_story"] = (
            f"On the {d2.name} the same GEMM stays compute-bound: its L2 ridge is "
            f"{fmt.n(g2.ridge_flop_per_byte['l2'])} FLOP/B, still below the kernel's "
            f"{fmt.n(g2.intensity_flop_per_byte['l2'])}."
        )
    else:
        f["b200_gemm_story"] = (
            f"On the {d2.name} the matrix peak grew to {fmt.rate(d2.peak_flops('bf16'))} but the "
            f"L2 only to {fmt.bw(d2.level_bandwidth_Bps('l2'))}, so the L2 ridge moved to "
            f"{fmt.n(g2.ridge_flop_per_byte['l2'])} FLOP/B, above the kernel's "
            f"{fmt.n(g2.intensity_flop_per_byte['l2'])}: the same GEMM is **{g2.bound}-bound** "
            f"there, at {fmt.pct(g2.fraction_of_peak)} of peak, although its HBM intensity is far "
            "above the HBM ridge. A single HBM roofline would have called it compute-bound."
        )

    # decode attention
    a = by["attn-decode"]
    f["a_bytes"] = fmt.b(a.level_bytes["hbm"])
    f["a_flops"] = fmt.n(a.work_flops / 1e6) + " MFLOP"
    f["a_i"] = fmt.n(a.intensity_flop_per_byte["hbm"])
    f["a_time"] = fmt.t(a.time_s)
    f["a_bound"] = a.bound
    f["a_peak"] = fmt.pct(a.fraction_of_peak, 1)

    # all kernels: table and figure
    f["kernels_table"] = Table(
        ["kernel", "what", "time", "bound", "% of bf16 peak", "I at hbm (FLOP/B)"],
        [
            [
                f"`{name}`",
                EXAMPLES[name][0],
                fmt.t(r.time_s),
                r.bound,
                fmt.pct(r.fraction_of_peak, 1),
                fmt.n(r.intensity_flop_per_byte["hbm"]),
            ]
            for name, r in by.items()
        ],
        "llrlrr",
    )
    panels = [
        DevicePanel(GPU, d, tuple(res)),
        DevicePanel(NEXT, d2, tuple(roofline(k, d2, NEXT) for k in example_kernels(d2, "bf16"))),
    ]
    f["figure"] = roofline_figure(panels, height=600)

    # the what-if: twice the HBM bandwidth
    t1 = _what_if_hbm(d, ks, 1.0)
    t2 = _what_if_hbm(d, ks, 2.0)
    rows = []
    faster, same = [], []
    for name, r, a1, a2 in zip(EXAMPLES, res, t1, t2, strict=True):
        gain = a1 / a2
        (faster if gain > 1.0005 else same).append(f"`{name}`")
        rows.append([f"`{name}`", r.bound, fmt.t(a1), fmt.t(a2), fmt.times(gain)])
    f["whatif_table"] = Table(
        ["kernel", "bound today", "time", "time with 2× HBM", "speed-up"], rows, "llrrr"
    )
    f["whatif_answer"] = (
        f"{len(faster)} of {len(rows)} kernels get faster ({', '.join(faster)}); "
        f"{', '.join(same) or 'none'} do not move at all, because HBM was never their slowest "
        "resource."
    )
    best = max(zip(EXAMPLES, t1 / t2, strict=True), key=lambda x: x[1])
    f["whatif_best"] = f"`{best[0]}` ({fmt.times(best[1])})"

    # exercises
    g2048 = by["gemm-2048"]
    others = max(
        [*g2048.compute_time_s.values()] + [v for k, v in g2048.level_time_s.items() if k != "hbm"]
    )
    f["ex1_bw"] = fmt.bw(g2048.level_bytes["hbm"] / others)
    f["ex1_ratio"] = fmt.times(lv["hbm"] / (g2048.level_bytes["hbm"] / others))
    batch = 64
    a64 = roofline(
        attention_decode(d, batch=batch, context=8192, heads=64, kv_heads=8, head_dim=128), d
    )
    g256 = roofline(gemm(256, 8192, 8192, d, "bf16"), d)
    f["ex2_batch"] = str(batch)
    f["ex2_attn_i"] = fmt.n(a64.intensity_flop_per_byte["hbm"])
    f["ex2_gemm16_i"] = fmt.n(by["gemm-decode"].intensity_flop_per_byte["hbm"])
    f["ex2_gemm256_i"] = fmt.n(g256.intensity_flop_per_byte["hbm"])
    f["ex2_gemm256_bound"] = g256.bound
    lpu = load_device("groq-lpu")
    lr = roofline(example_kernels(lpu, "bf16", ["attn-decode"])[0], lpu, "groq-lpu")
    f["ex3_bound"] = lr.bound
    f["ex3_time"] = fmt.t(lr.time_s)
    f["ex3_speedup"] = fmt.times(a.time_s / lr.time_s)
    f["ex3_sram_bw"] = fmt.bw(lpu.level_bandwidth_Bps(lpu.memory[0].name))
    f["ex3_peak"] = fmt.rate(lpu.peak_flops("bf16"))
    f["ex3_ridge"] = fmt.n(lpu.peak_flops("bf16") / lpu.level_bandwidth_Bps(lpu.memory[0].name))
    return f
