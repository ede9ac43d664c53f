"""Chapter 6: sizing a cluster for DeepSeek-V3 (capacity arithmetic from hwsim.spec.model and
hwsim.serve.capacity, decode steps from hwsim.serve.step, the search of hwsim.serve.size)."""

from __future__ import annotations

import re
from typing import Any

import plotly.graph_objects as go

from _gen import fmt
from _gen.core import Table
from hwsim.plan.model_step import StepSpec
from hwsim.serve.api import make_target
from hwsim.serve.capacity import min_devices
from hwsim.serve.size import size_cluster
from hwsim.serve.step import simulate_step
from hwsim.spec.device import DTYPE_BYTES
from hwsim.spec.model import load_model_config
from hwsim.spec.units import Dim

MODEL = "deepseek-v3"
DEVICE = "h800"
OTHERS = ("h200", "b200", "mi300x")
CONTEXT = 4096
PER_USER = 20.0  # tokens/s every user must see
TOTAL = 100_000.0  # tokens/s the service must produce
#: The sizing search is bounded so that the docs build stays fast; `hwsim.serve.size` can search
#: larger instances (the answer may then use fewer devices).
MAX_PER_INSTANCE = 16


def facts() -> dict[str, Any]:
    cfg = load_model_config(MODEL)
    params = cfg.total_params()
    w = params * DTYPE_BYTES["fp8"]
    kv_tok = cfg.kv_cache_bytes_per_token(DTYPE_BYTES["bf16"])
    f: dict[str, Any] = {
        "model": cfg.name,
        "params": f"{params / 1e9:.0f} B",
        "active": f"{cfg.active_params() / 1e9:.1f} B",
        "wbytes": fmt.b(w),
        "kv_tok": fmt.b(kv_tok),
        "kv_user": fmt.b(kv_tok * CONTEXT),
        "context": f"{CONTEXT:,}",
        "per_user": f"{PER_USER:.0f}",
        "total": f"{TOTAL:,.0f}",
        "layers": str(cfg.layers),
        "max_inst": str(MAX_PER_INSTANCE),
    }
    # 1. capacity on several devices
    rows = []
    plans = {}
    for key in (DEVICE, *OTHERS):
        tgt = make_target(key)  # the device with its built-in cluster, as `hwsim size` uses it
        d, mp = tgt.device, tgt.mapper
        cap = min_devices(cfg, mp, StepSpec("decode", 1, CONTEXT, "fp8"), device_name=key)
        plans[key] = (d, mp, cap)
        hbm = d.level_capacity_bytes(d.main_memory.name)
        free = cap.devices * hbm - w
        rows.append(
            [
                d.name,
                fmt.b(hbm),
                str(cap.lower_bound_devices),
                str(cap.devices),
                str(cap.layout),
                f"{max(0.0, free) / (kv_tok * CONTEXT):,.0f}",
            ]
        )
    f["capacity_table"] = Table(
        [
            "device",
            "HBM per device",
            "weights + KV ÷ HBM",
            "fewest that fit",
            "layout",
            f"users of {CONTEXT:,} tokens in the rest (ideal)",
        ],
        rows,
        "lrrrlr",
    )
    d, mp, cap = plans[DEVICE]
    f["h800_min"] = str(cap.devices)
    f["h800_layout"] = str(cap.layout)
    f["h800_reasoning"] = "\n".join(f"    * {line}" for line in cap.reasoning)

    # 2. the sizing search on the H800
    ans = size_cluster(
        cfg,
        DEVICE,
        tokens_per_s_per_user=PER_USER,
        total_tokens_per_s=TOTAL,
        context=CONTEXT,
        dtype="fp8",
        max_devices_per_instance=MAX_PER_INSTANCE,
        layouts_per_size=1,
        max_batch=2048,
        target=make_target(DEVICE),
    )
    best = ans.by_devices
    if best is None:
        f["size_table"] = "_No layout up to this size meets the target._"
        f["answer"] = (
            f"No instance of up to {MAX_PER_INSTANCE} {d.name}s meets {PER_USER:.0f} tokens/s "
            "per user."
        )
        f["best_layout"] = f["best_batch"] = f["best_devices"] = "—"
        best_lay = cap.layout
    else:
        f["size_table"] = Table(
            [
                "layout (one instance)",
                "devices per instance",
                "users per instance",
                "tokens/s per user",
                "instances",
                "devices",
                "tokens/s total",
                "bound",
            ],
            [
                [
                    str(c.layout),
                    str(c.devices_per_instance),
                    f"{c.batch_per_instance:,}",
                    f"{c.tokens_per_s_per_user:.1f}",
                    str(c.instances),
                    f"{c.devices:,}",
                    f"{c.tokens_per_s_total:,.0f}",
                    c.bound,
                ]
                for c in ans.candidates
            ],
            "lrrrrrrl",
        )
        f["answer"] = (
            f"{best.devices:,} GPUs ({d.name}): {best.instances} instances of "
            f"{best.devices_per_instance} GPUs ({best.layout}), each decoding "
            f"{best.batch_per_instance:,} users at "
            f"{best.tokens_per_s_per_user:.1f} tokens/s, {best.tokens_per_s_total:,.0f} tokens/s "
            f"in total; {fmt.q(best.power_W, Dim.POWER)} of GPU TDP."
        )
        f["best_layout"] = str(best.layout)
        f["best_batch"] = f"{best.batch_per_instance:,}"
        f["best_devices"] = f"{best.devices:,}"
        best_lay = best.layout
    f["evaluated"] = str(ans.evaluated)
    f["size_notes"] = " ".join(f"{n}." for n in ans.notes)

    # 3. batch vs speed on the chosen instance layout: why the batch stops where it does
    batches = [best_lay.dp * b for b in (1, 8, 64, 256)]
    if best is not None:
        batches.append(best.batch_per_instance)
    batches = sorted(set(batches))
    user, total, fits, notes = [], [], [], set()
    for b in batches:
        r = simulate_step(cfg, mp, best_lay, StepSpec("decode", b, CONTEXT, dtype="fp8"),
                          strict=False)  # fmt: skip
        user.append(r.tokens_per_s_per_user)
        total.append(r.tokens_per_s_total)
        fits.append(r.fits)
        # one line per kind of caveat: the numbers in brackets change with the batch
        notes.update(re.sub(r"\s*\([^)]*\d[^)]*\)", "", n) for n in r.notes)
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=batches, y=user, name="tokens/s per user", mode="lines+markers"))
    fig.add_trace(
        go.Scatter(
            x=batches, y=total, name="tokens/s per instance", mode="lines+markers", yaxis="y2"
        )
    )
    fig.add_hline(y=PER_USER, line={"dash": "dash", "color": "#999"})
    fig.update_layout(
        title=f"One instance ({best_lay}, {best_lay.devices} × {d.name}): batch vs speed",
        xaxis={"type": "log", "title": "users decoding at once"},
        yaxis={"title": "tokens/s per user", "rangemode": "tozero"},
        yaxis2={"title": "tokens/s per instance", "overlaying": "y", "side": "right"},
        template="plotly_white",
        height=440,
        legend={"x": 0.4, "y": 1.0},
    )
    f["batch_figure"] = fig
    f["caveats"] = "\n".join(f"* {n}" for n in sorted(notes)) or "* none"

    # exercises
    d8, mp8, _ = plans[DEVICE]
    hbm = d8.level_capacity_bytes(d8.main_memory.name)
    long_ctx = 32768
    f["ex1_ctx"] = f"{long_ctx:,}"
    f["ex1_user"] = fmt.b(kv_tok * long_ctx)
    cap32 = min_devices(cfg, mp8, StepSpec("decode", 64, long_ctx, "fp8"), device_name=DEVICE)
    f["ex1_devices"] = str(cap32.devices)
    f["ex1_kv_total"] = fmt.b(cap32.kv_bytes_total)
    f["ex2_bf16"] = fmt.b(params * DTYPE_BYTES["bf16"])
    capbf = min_devices(cfg, mp8, StepSpec("decode", 1, CONTEXT, "bf16"), device_name=DEVICE)
    f["ex2_devices"] = str(capbf.devices)
    f["ex2_hbm"] = fmt.b(hbm)
    b2, _, capb = plans["b200"]
    f["ex3_devices"] = str(capb.devices)
    f["ex3_hbm"] = fmt.b(b2.level_capacity_bytes(b2.main_memory.name))
    return f
