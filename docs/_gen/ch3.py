"""Chapter 3: FA2 → FA3, what overlapping the softmax with the matmuls buys (attention simulator,
tile-detail traces)."""

from __future__ import annotations

import json
from typing import Any

import plotly.graph_objects as go

from _gen import fmt
from _gen.core import Table
from _gen.reference import has_command
from hwsim.plan.attention import AttentionShape, plan_attention
from hwsim.sim.gpu_attention import simulate_attention, sm_rates
from hwsim.sim.kernel_profiles import load_attention_profile
from hwsim.spec.load import load_device

DEVICE = "h100-sxm"
TRACE_URI = "learn/fa3-h100-trace.json"
TIMELINE = {"batch": 1, "heads": 4, "seq": 2048, "dim": 128}
_cache: dict[str, Any] = {}


def _shape(seq: int, dim: int, batch: int | None = None, heads: int = 16) -> AttentionShape:
    b = batch if batch is not None else max(1, 16384 // seq)
    return AttentionShape(
        batch=b, heads=heads, kv_heads=heads, seqlen_q=seq, seqlen_kv=seq, head_dim=dim,
        dtype="bf16",
    )  # fmt: skip


def _timeline_args() -> list[str]:
    t = TIMELINE
    return [
        "attention", "--device", DEVICE, "--batch", str(t["batch"]), "--heads", str(t["heads"]),
        "--seqlen", str(t["seq"]), "--head-dim", str(t["dim"]), "--dtype", "bf16",
        "--kernel", "fa3", "--pass", "fwd",
    ]  # fmt: skip


def assets() -> dict[str, str]:
    """The Perfetto trace of the timeline run, written by ``hwsim attention --trace`` when that
    command exists (it is the attention simulator's own trace writer)."""
    if not has_command("attention"):
        _cache["trace"] = None
        return {}
    import tempfile
    from pathlib import Path

    from _gen.reference import _invoke

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "trace.json"
        args = _timeline_args()
        extra = ["--detail", "tile"] if _supports("attention", "--detail") else []
        _invoke([*args, *extra, "--trace", str(path), "--json"])
        text = path.read_text(encoding="utf-8")
    json.loads(text)  # a broken trace fails the build
    _cache["trace"] = TRACE_URI
    return {TRACE_URI: text}


def _supports(command: str, option: str) -> bool:
    from _gen.reference import _commands

    cmd = _commands().get(command)
    return bool(cmd) and any(option in getattr(p, "opts", ()) for p in cmd.params)


def _gantt(runs: dict[str, Any], sms: int = 2) -> go.Figure:
    """One row per (kernel, SM, track) of the tile-detail traces: steps on the pipe, loads on the
    copy engine. Time in microseconds."""
    colors = {"step": "#1f77b4", "fill": "#ff7f0e", "drain": "#ff7f0e", "load": "#2ca02c"}
    fig = go.Figure()
    seen: set[str] = set()
    for kernel, res in runs.items():
        for e in res.trace.spans:
            if not e.track.startswith("SM ") or " · " not in e.track:
                continue
            sm = int(e.track.split()[1])
            if sm >= sms:
                continue
            part = e.track.split(" · ")[1]
            kind = e.name.split()[0]
            legend = {"step": "KV step (matmuls + softmax)", "load": "K/V tile load"}.get(
                kind, "pipeline fill / drain"
            )
            if e.end_s <= e.start_s:
                continue
            fig.add_trace(
                go.Bar(
                    x=[(e.end_s - e.start_s) * 1e6],
                    base=[e.start_s * 1e6],
                    y=[f"{kernel} · SM {sm} · {part}"],
                    orientation="h",
                    marker={"color": colors.get(kind, "#7f7f7f"), "line": {"width": 0.5}},
                    name=legend,
                    legendgroup=legend,
                    showlegend=legend not in seen,
                    hovertemplate=f"{kernel} SM {sm}: {e.name}<br>%{{base:.2f}} µs + "
                    "%{x:.2f} µs<extra></extra>",
                )
            )
            seen.add(legend)
    fig.update_layout(
        barmode="overlay",
        title="Tile-detail timeline of the first SMs (simulated): FA2 and FA3, same tiles",
        xaxis={"title": "time (µs)"},
        yaxis={"autorange": "reversed", "type": "category"},
        template="plotly_white",
        height=420,
        margin={"l": 190},
    )
    return fig


def facts() -> dict[str, Any]:
    d = load_device(DEVICE)
    f: dict[str, Any] = {"device": d.name}
    t = TIMELINE
    small = _shape(t["seq"], t["dim"], batch=t["batch"], heads=t["heads"])
    f["tl_shape"] = (
        f"batch {t['batch']}, {t['heads']} heads, {t['seq']:,} tokens, head dim {t['dim']}, bf16"
    )
    runs = {
        k: simulate_attention(d, small, k, detail="tile", trace=True, trace_sms=2)
        for k in ("fa2", "fa3")
    }
    f["timeline"] = _gantt(runs)
    f["tl_fa2"] = fmt.t(runs["fa2"].time_s)
    f["tl_fa3"] = fmt.t(runs["fa3"].time_s)
    f["tl_ctas"] = str(runs["fa3"].kernels[0].ctas)
    f["tl_sms"] = str(d.compute.units_count)

    def step_s(res: Any) -> float:
        steps = [
            e.end_s - e.start_s
            for e in res.trace.spans
            if e.track == "SM 000 · pipe" and e.name.startswith("step")
        ]
        return sorted(steps)[len(steps) // 2]

    f["step_fa2"] = fmt.t(step_s(runs["fa2"]))
    f["step_fa3"] = fmt.t(step_s(runs["fa3"]))

    # the cost of one step, from the device's rates and the kernel profiles
    p2 = load_attention_profile("fa2", d.arch)
    p3 = load_attention_profile("fa3", d.arch)
    rates, _ = sm_rates(d, "bf16", p3)
    plan = plan_attention(small, d, "flash")
    br, bc, dim = plan.block_q, plan.block_kv, t["dim"]
    t_mma = 2.0 * br * bc * (2 * dim) / rates.mma_flops
    t_exp = br * bc / rates.exp_per_s
    t_alu = br * bc * p3.softmax_valu_ops.value / rates.valu_per_s
    t_smax = t_exp + t_alu
    ov = p3.softmax_overlap.value
    f["br"], f["bc"] = str(br), str(bc)
    f["t_mma"] = fmt.t(t_mma)
    f["t_exp"] = fmt.t(t_exp)
    f["t_alu"] = fmt.t(t_alu)
    f["t_smax"] = fmt.t(t_smax)
    f["mma_eff"] = fmt.pct(p3.mma_efficiency.value)
    f["valu_ops"] = fmt.n(p3.softmax_valu_ops.value)
    f["sfu_rate"] = fmt.rate(d.compute.special.value) if d.compute.special else "—"
    f["peak"] = fmt.rate(d.peak_flops("bf16"))
    f["smax_share"] = fmt.pct(t_smax / t_mma)
    f["ov"] = fmt.n(ov, 2)
    f["mma_vs_sfu"] = (
        fmt.n(d.peak_flops("bf16") / d.compute.special.value) if d.compute.special else "—"
    )
    f["longer_part"] = "the matmul" if t_mma >= t_smax else "the softmax"
    f["fp8_gain"] = fmt.times(d.peak_flops("fp8") / d.peak_flops("bf16"))
    f["ov_fa2"] = fmt.n(p2.softmax_overlap.value, 2)
    fa2_step = t_mma + t_smax
    fa3_step = max(t_mma, t_smax) + (1 - ov) * min(t_mma, t_smax)
    ideal_step = max(t_mma, t_smax)
    f["m_fa2"] = fmt.t(fa2_step)
    f["m_fa3"] = fmt.t(fa3_step)
    f["m_ideal"] = fmt.t(ideal_step)
    f["exposed_fa3"] = fmt.pct((fa3_step - t_mma) / fa3_step)

    # FA2 vs FA3 vs ideal overlap over shapes (CTA detail)
    ideal = p3.model_copy(
        update={"softmax_overlap": p3.softmax_overlap.model_copy(update={"value": 1.0})}
    )
    rows = []
    gains = {}
    for dim_ in (64, 128, 256):
        for seq in (1024, 4096, 16384):
            s = _shape(seq, dim_)
            r2 = simulate_attention(d, s, "fa2")
            r3 = simulate_attention(d, s, "fa3")
            ri = simulate_attention(d, s, "fa3", profile=ideal)
            gains[dim_, seq] = (r3.time_s / ri.time_s, r2.time_s / r3.time_s)
            rows.append(
                [
                    str(dim_),
                    f"{s.batch} × {seq:,}",
                    f"{r2.tflops:.0f}",
                    f"{r3.tflops:.0f}",
                    fmt.times(r2.time_s / r3.time_s),
                    f"{ri.tflops:.0f}",
                    fmt.times(r3.time_s / ri.time_s),
                ]
            )
    f["sweep_table"] = Table(
        [
            "head dim",
            "batch × seqlen",
            "FA2 TFLOP/s",
            "FA3 TFLOP/s",
            "FA3 / FA2",
            "perfect overlap TFLOP/s",
            "perfect / FA3",
        ],
        rows,
        "lrrrrrr",
    )
    g16 = gains[128, 16384]
    f["gain_fa3_16k"] = fmt.times(g16[1])
    f["gain_ideal_16k"] = fmt.times(g16[0])
    short, long_ = gains[128, 1024][0], g16[0]
    f["short_vs_long"] = (
        f"Perfect overlap gains {fmt.times(short)} at 1,024 tokens against {fmt.times(long_)} at "
        "16k (head dim 128): "
        + (
            "at short sequences more of the time goes to filling the pipeline, the per-CTA "
            "overheads and the partial last wave of CTAs, which no overlap inside the loop hides."
            if short < long_
            else "the loop's steady state dominates at every length."
        )
    )
    best = max(gains.items(), key=lambda kv: kv[1][1])
    f["best_fa3_case"] = f"head dim {best[0][0]} at {best[0][1]:,} tokens ({fmt.times(best[1][1])})"

    # the Perfetto trace
    uri = _cache.get("trace")
    args = " ".join(_timeline_args())
    if uri:
        f["trace_note"] = (
            f"The FA3 run above, as a Perfetto trace: [download it]({uri.split('/')[-1]}) and "
            "open it at ui.perfetto.dev (*Open trace file*). It was written by "
            f"`hwsim {args} --trace trace.json` during this build."
        )
    else:
        f["trace_note"] = (
            "`hwsim attention ... --trace trace.json` writes the same run as a Perfetto trace "
            "(one track per SM and its copy engine, plus HBM); open it at ui.perfetto.dev. *The "
            "command is not registered in this build, so no trace file is attached here.*"
        )

    # exercises: the softmax share by head dim and on the B200
    def ratio(dev_name: str, dim_: int) -> float:
        dd = load_device(dev_name)
        pr = load_attention_profile("fa3", dd.arch)
        rr, _ = sm_rates(dd, "bf16", pr)
        pl = plan_attention(_shape(4096, dim_), dd, "flash")
        mma = 2.0 * pl.block_q * pl.block_kv * 2 * dim_ / rr.mma_flops
        sm = (
            pl.block_q
            * pl.block_kv
            * (1 / rr.exp_per_s + pr.softmax_valu_ops.value / rr.valu_per_s)
        )
        return sm / mma

    f["ex1_r64"] = fmt.pct(ratio(DEVICE, 64))
    f["ex1_r128"] = fmt.pct(ratio(DEVICE, 128))
    f["ex1_r256"] = fmt.pct(ratio(DEVICE, 256))
    f["ex2_b200"] = fmt.pct(ratio("b200", 128))
    f["ex2_h100"] = fmt.pct(ratio(DEVICE, 128))
    b2 = load_device("b200")
    f["ex2_b200_peak"] = fmt.rate(b2.peak_flops("bf16"))
    f["ex2_b200_sfu"] = fmt.rate(b2.compute.special.value) if b2.compute.special else "—"
    return f
