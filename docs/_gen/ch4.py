"""Chapter 4: batch-1 decode is a memory problem, on a GPU, an LPU, a wafer and a dataflow chip
(capacity plan from hwsim.serve.capacity, one decode step from hwsim.serve.step)."""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go

from _gen import fmt
from _gen.core import Table
from hwsim.plan.layout import Layout
from hwsim.plan.model_step import StepSpec
from hwsim.serve.capacity import min_devices
from hwsim.serve.step import simulate_step
from hwsim.sim.mapper import mapper_for
from hwsim.spec.device import DTYPE_BYTES
from hwsim.spec.load import load_device
from hwsim.spec.model import load_model_config

MODEL = "llama-3.1-70b"
CONTEXT = 4096
DEVICES = ("h100-sxm", "groq-lpu", "cerebras-wse3", "sambanova-sn40l")
TARGET_TPS = 1000.0
BATCH = 16  # exercise 1: users sharing the minimal GPU layout (their KV caches still fit)


def _how_timed(notes: tuple[str, ...], kind: str) -> str:
    for n in notes:
        if "analytic roofline used" in n:
            return f"roofline (no {kind} mapper yet)"
    return "simulated"


def facts() -> dict[str, Any]:
    model = load_model_config(MODEL)
    params = model.total_params()
    wbytes = params * DTYPE_BYTES["bf16"]
    f: dict[str, Any] = {
        "model": model.name,
        "params": f"{params / 1e9:.1f} B",
        "wbytes": fmt.b(wbytes),
        "flops_tok": fmt.n(2 * model.active_params() / 1e9) + " GFLOP",
        "kv_tok": fmt.b(model.kv_cache_bytes_per_token(DTYPE_BYTES["bf16"])),
        "context": f"{CONTEXT:,}",
        "target": f"{TARGET_TPS:,.0f}",
    }
    rows, pts, fast = [], [], []
    results = {}
    for key in DEVICES:
        d = load_device(key)
        mp = mapper_for(d)
        cap = min_devices(model, mp, StepSpec("decode", 1, CONTEXT), device_name=key)
        r = simulate_step(model, mp, cap.layout, StepSpec("decode", 1, CONTEXT), strict=False)
        results[key] = (d, cap, r)
        main = d.main_memory
        agg = cap.devices * d.level_bandwidth_Bps(main.name)
        floor = (cap.weight_bytes_total + cap.kv_bytes_total) / agg
        how = _how_timed(r.notes, d.kind)
        rows.append(
            [
                f"{d.name} ({d.kind})",
                f"{main.name}, {fmt.b(d.level_capacity_bytes(main.name))}",
                f"{cap.devices:,}",
                str(cap.layout),
                fmt.bw(agg),
                fmt.t(floor),
                fmt.t(r.step_time_s),
                f"{r.tokens_per_s_per_user:,.0f}",
                r.bound,
                how,
            ]
        )
        pts.append((d.name, cap.devices, r.tokens_per_s_per_user, how))
        if r.tokens_per_s_per_user >= TARGET_TPS:
            fast.append(f"the {d.name} ({cap.devices:,} of them)")
    f["table"] = Table(
        [
            "device",
            "weights live in",
            "devices to hold the model",
            "layout",
            "their bandwidth together",
            "bytes ÷ bandwidth",
            "time per token",
            "tokens/s per user",
            "bound",
            "timed by",
        ],
        rows,
        "llrlrrrrll",
    )
    fig = go.Figure(
        go.Scatter(
            x=[p[1] for p in pts],
            y=[p[2] for p in pts],
            mode="markers+text",
            text=[p[0] for p in pts],
            textposition="top center",
            marker={"size": 14, "color": ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"]},
            hovertext=[f"{p[0]}: {p[1]:,} devices, {p[2]:,.0f} tokens/s ({p[3]})" for p in pts],
            hoverinfo="text",
        )
    )
    fig.add_hline(y=TARGET_TPS, line={"dash": "dash", "color": "#999"})
    fig.update_layout(
        title=f"Batch-1 decode of {model.name}, {CONTEXT:,} tokens of context: devices needed "
        "vs speed per user",
        xaxis={"type": "log", "title": "devices that hold the weights and KV cache"},
        yaxis={"type": "log", "title": "tokens/s for one user"},
        template="plotly_white",
        height=460,
    )
    f["figure"] = fig
    top = max(pts, key=lambda p: p[2])
    f["fastest"] = (
        f"The fastest is the {top[0]}: {top[2]:,.0f} tokens/s for one user, on {top[1]:,} devices."
    )
    f["answer"] = (
        f"Only {', '.join(fast)} reach{'es' if len(fast) == 1 else ''} {TARGET_TPS:,.0f} "
        "tokens/s for one user."
        if fast
        else f"None of them reaches {TARGET_TPS:,.0f} tokens/s for one user."
    )
    pending = [
        k for k in DEVICES if _how_timed(results[k][2].notes, results[k][0].kind) != "simulated"
    ]
    f["pending"] = (
        "The rows marked *roofline* are timed by the analytic roofline mapper because the "
        f"simulator for their kind ({', '.join(sorted({results[k][0].kind for k in pending}))}) "
        "has not landed yet; they are upper bounds on speed."
        if pending
        else "Every row is timed by its device kind's simulator."
    )
    g, gcap, gr = results["h100-sxm"]
    f["gpu_devices"] = str(gcap.devices)
    f["gpu_tps"] = f"{gr.tokens_per_s_per_user:,.0f}"
    f["gpu_bound"] = gr.bound
    f["gpu_reasoning"] = "\n".join(f"    * {line}" for line in gcap.reasoning)
    lpu, lcap, _ = results["groq-lpu"]
    f["lpu_devices"] = f"{lcap.devices:,}"
    f["lpu_sram"] = fmt.b(lpu.level_capacity_bytes(lpu.main_memory.name))
    f["lpu_reasoning"] = "\n".join(f"    * {line}" for line in lcap.reasoning)

    # exercises: batch 64 and fp8 weights on the GPU
    mp = mapper_for(g)
    f["ex1_batch"] = str(BATCH)
    b64 = simulate_step(model, mp, gcap.layout, StepSpec("decode", BATCH, CONTEXT), strict=False)
    f["ex1_user"] = f"{b64.tokens_per_s_per_user:,.0f}"
    f["ex1_total"] = f"{b64.tokens_per_s_total:,.0f}"
    f["ex1_gain"] = fmt.times(b64.tokens_per_s_total / gr.tokens_per_s_total)
    f["ex1_fits"] = "fits" if b64.fits else "does **not** fit"
    f8 = simulate_step(
        model, mp, gcap.layout, StepSpec("decode", 1, CONTEXT, dtype="fp8"), strict=False
    )
    f["ex2_tps"] = f"{f8.tokens_per_s_per_user:,.0f}"
    f["ex2_gain"] = fmt.times(f8.tokens_per_s_per_user / gr.tokens_per_s_per_user)
    one = simulate_step(model, mp, Layout(tp=8), StepSpec("decode", 1, CONTEXT), strict=False)
    f["ex3_tps"] = f"{one.tokens_per_s_per_user:,.0f}"
    f["ex3_gain"] = fmt.times(one.tokens_per_s_per_user / gr.tokens_per_s_per_user)
    f["ex3_comm"] = fmt.t(one.comm_exposed_s)
    return f
