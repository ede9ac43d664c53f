"""Chapter 2: why FlashAttention tiles. The tile plan (hwsim.plan.attention), its numpy execution
with byte counts (hwsim.functional.attention) and the attention simulator on the H100."""

from __future__ import annotations

from typing import Any

import numpy as np
import plotly.graph_objects as go

from _gen import fmt
from _gen.core import Table
from hwsim.functional.attention import execute, reference_attention
from hwsim.functional.check import inputs
from hwsim.plan.attention import AttentionShape, footprint_bytes, plan_attention
from hwsim.spec.load import load_device

DEVICE = "h100-sxm"
TOKENS = 16384  # FA3's benchmark keeps batch × seqlen = 16k tokens
HEADS, DIM = 16, 128


def shape(seqlen: int, causal: bool = False, dim: int = DIM) -> AttentionShape:
    return AttentionShape(
        batch=max(1, TOKENS // seqlen),
        heads=HEADS,
        kv_heads=HEADS,
        seqlen_q=seqlen,
        seqlen_kv=seqlen,
        head_dim=dim,
        causal=causal,
        dtype="bf16",
    )


def _simulate(device: Any, s: AttentionShape, kernel: str) -> Any:
    from hwsim.sim.gpu_attention import simulate_attention

    return simulate_attention(device, s, kernel, device_name=DEVICE)


def facts() -> dict[str, Any]:
    d = load_device(DEVICE)
    f: dict[str, Any] = {"device": d.name, "tokens": f"{TOKENS:,}", "heads": str(HEADS)}
    f["dim"] = str(DIM)
    smem = d.level("smem").capacity_bytes
    f["smem"] = fmt.b(smem)

    # 1. the tile plan at the benchmark shape
    big = shape(8192)
    pf = plan_attention(big, d, "flash")
    pn = plan_attention(big, d, "naive")
    f["br"], f["bc"] = str(pf.block_q), str(pf.block_kv)
    f["stages"] = str(pf.stages)
    f["footprint"] = fmt.b(pf.footprint_bytes)
    f["big_batch"] = str(big.batch)
    f["q_blocks"] = str(-(-big.seqlen_q // pf.block_q))
    f["naive_kernels"] = ", ".join(f"`{k.name}`" for k in pn.kernels)

    # 2. the functional core on a small problem: values and byte counts
    small = AttentionShape(
        batch=1, heads=2, kv_heads=2, seqlen_q=1024, seqlen_kv=1024, head_dim=64, dtype="bf16"
    )
    f["small"] = "batch 1, 2 heads, 1,024 tokens, head dim 64, bf16"
    x = inputs(
        {"q": (1, 2, 1024, 64), "k": (1, 2, 1024, 64), "v": (1, 2, 1024, 64)}, "bf16", seed=0
    )
    ref, _ = reference_attention(small, x["q"], x["k"], x["v"])
    rows = []
    small_global = {}
    for kern in ("naive", "flash"):
        p = plan_attention(small, d, kern)
        run = execute(p, x["q"], x["k"], x["v"])
        plan_rw = p.bytes_rw()
        same = all(run.counts.get(k, 0) == v for k, v in plan_rw.items())
        err = float(np.abs(run.o - ref).max() / np.abs(ref).max())
        g = run.counts[("global", "read")] + run.counts[("global", "write")]
        small_global[kern] = g
        rows.append(
            [
                kern,
                fmt.b(run.counts[("global", "read")]),
                fmt.b(run.counts[("global", "write")]),
                fmt.b(run.counts[("onchip", "read")] + run.counts[("onchip", "write")]),
                "yes" if same else "**no**",
                f"{err:.1e}",
            ]
        )
    f["small_table"] = Table(
        [
            "plan",
            "global read (counted)",
            "global written",
            "SMEM read + written",
            "= plan's bytes",
            "max error vs float64",
        ],
        rows,
        "lrrrcr",
    )
    f["small_ratio"] = fmt.times(small_global["naive"] / small_global["flash"])

    # 3. at scale: bytes from the plan, time from the simulator
    rows = []
    sims = {}
    for L in (1024, 4096, 16384):
        s = shape(L)
        for kern, sim_kernel in (("naive", "naive"), ("flash", "fa2")):
            p = plan_attention(s, d, kern)
            r = _simulate(d, s, sim_kernel)
            sims[L, kern] = (p, r)
            rows.append(
                [
                    f"{s.batch} × {L:,}",
                    "naive (3 kernels)" if kern == "naive" else "FlashAttention-2",
                    fmt.b(p.bytes_by_level()["global"]),
                    fmt.b(r.bytes["hbm"]),
                    fmt.t(r.time_s),
                    f"{r.tflops:.0f}",
                    r.bound,
                ]
            )
    f["scale_table"] = Table(
        [
            "batch × seqlen",
            "kernel",
            "bytes loaded + stored (plan)",
            "HBM bytes (simulated, after L2)",
            "time",
            "TFLOP/s",
            "bound",
        ],
        rows,
        "llrrrrl",
    )
    rn16 = sims[16384, "naive"][1]
    pf16, rf16 = sims[16384, "flash"]
    f["l16_speedup"] = fmt.times(rn16.time_s / rf16.time_s)
    f["l16_naive_time"] = fmt.t(rn16.time_s)
    f["l16_flash_time"] = fmt.t(rf16.time_s)
    f["l16_naive_hbm"] = fmt.b(rn16.bytes["hbm"])
    f["l16_flash_hbm"] = fmt.b(rf16.bytes["hbm"])
    f["l16_flash_l2"] = fmt.b(pf16.bytes_by_level()["global"])
    f["l16_naive_bound"] = rn16.bound
    f["l16_naive_hbm_util"] = fmt.pct(rn16.utilization.get("hbm", 0.0))
    f["l16_flash_bound"] = rf16.bound
    f["l16_flash_compute_util"] = fmt.pct(rf16.utilization.get("compute", 0.0))
    f["l16_kv_rereads"] = str(-(-16384 // pf16.block_q))

    # figure: bytes vs sequence length (plan, no execution)
    lens = [512, 1024, 2048, 4096, 8192, 16384, 32768]
    naive_b, flash_b, compulsory = [], [], []
    for L in lens:
        s = shape(L)
        naive_b.append(plan_attention(s, d, "naive").bytes_by_level()["global"])
        flash_b.append(plan_attention(s, d, "flash").bytes_by_level()["global"])
        compulsory.append(s.batch * s.heads * L * (3 * DIM * 2 + DIM * 2))
    fig = go.Figure()
    for name, ys, dash in (
        ("naive: S and P through HBM", naive_b, "solid"),
        ("FlashAttention: K, V once per Q block", flash_b, "solid"),
        ("compulsory: Q, K, V read once, O written once", compulsory, "dot"),
    ):
        fig.add_trace(
            go.Scatter(
                x=lens,
                y=ys,
                name=name,
                mode="lines+markers",
                line={"dash": dash},
                hovertemplate="seqlen %{x}<br>%{y:.3s}B<extra>" + name + "</extra>",
            )
        )
    fig.update_layout(
        title=f"Bytes loaded + stored by the kernels, {TOKENS:,} tokens per batch, "
        f"{HEADS} heads × {DIM}, bf16, {d.name}",
        xaxis={"type": "log", "title": "sequence length (tokens)"},
        yaxis={"type": "log", "title": "bytes at global memory (B)"},
        template="plotly_white",
        height=450,
        legend={"x": 0.01, "y": 0.99},
    )
    f["bytes_figure"] = fig

    # 4. SRAM size decides the tile
    rows = []
    budgets = [32 * 1024, 48 * 1024, 100 * 1024, int(smem), int(2 * smem)]
    for bud in budgets:
        p = plan_attention(big, bud, "flash")
        rows.append(
            [
                fmt.b(bud) + (" (this H100)" if bud == int(smem) else ""),
                f"{p.block_q} × {p.block_kv}",
                fmt.b(p.footprint_bytes),
                str(-(-big.seqlen_q // p.block_q)),
                fmt.b(p.bytes_by_level()["global"]),
            ]
        )
    f["sram_table"] = Table(
        [
            "SMEM per SM",
            "Q block × KV block",
            "tile footprint",
            "K/V reads per head",
            "bytes loaded + stored",
        ],
        rows,
        "lrrrr",
    )
    # the smallest budget that still holds a full-height query block with the narrowest KV tile
    full = footprint_bytes(big, pf.block_q, 16, pf.stages, bwd=False)
    f["full_q_budget"] = fmt.b(full)
    f["full_q_kib"] = f"{full / 1024:.0f} KiB"
    p32 = plan_attention(big, 32 * 1024, "flash")
    f["ex3_blocks"] = f"{p32.block_q} × {p32.block_kv}"
    f["ex3_bytes"] = fmt.b(p32.bytes_by_level()["global"])
    f["ex3_ratio"] = fmt.times(p32.bytes_by_level()["global"] / pf.bytes_by_level()["global"])

    # exercises
    s_bytes = big.batch * big.heads * big.seqlen_q * big.seqlen_kv * big.out_bytes
    f["ex1_s_bytes"] = fmt.b(s_bytes)
    f["ex1_naive_total"] = fmt.b(pn.bytes_by_level()["global"])
    f["ex1_share"] = fmt.pct(4 * s_bytes / pn.bytes_by_level()["global"])
    p256 = plan_attention(shape(8192, dim=256), d, "flash")
    f["ex2_blocks"] = f"{p256.block_q} × {p256.block_kv}"
    f["ex2_footprint"] = fmt.b(p256.footprint_bytes)
    pc = plan_attention(shape(8192, causal=True), d, "flash")
    f["ex4_pairs"] = f"{pc.block_pairs():,}"
    f["ex4_pairs_full"] = f"{pf.block_pairs():,}"
    f["ex4_share"] = fmt.pct(pc.block_pairs() / pf.block_pairs())
    return f
