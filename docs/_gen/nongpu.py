"""Facts for the device-kind pages (docs/devices/wafer_scale.md, dataflow.md, lpu.md): the
mappers' predictions against the speeds the vendors published, their parameters with sources,
capacity plans, the batch trade-off, and the mapping drawings (hwsim.report.mapping_figures)."""

from __future__ import annotations

import dataclasses
from typing import Any

import plotly.graph_objects as go
from scipy.optimize import brentq

from _gen import fmt
from _gen.core import Table
from hwsim.plan.model_step import StepSpec, memory_per_device
from hwsim.report.mapping_figures import Mapping, lpu_figure, rdu_figure, wafer_figure
from hwsim.serve.api import serve_step
from hwsim.serve.capacity import min_devices
from hwsim.serve.layout import Layout
from hwsim.serve.step import StepResult, simulate_step
from hwsim.sim.lpu import LpuMapper
from hwsim.sim.mapper import mapper_for
from hwsim.spec.cluster import load_cluster
from hwsim.spec.errors import SpecError
from hwsim.spec.load import load_device, read_yaml
from hwsim.spec.model import load_model_config
from hwsim.spec.profiles import profile_path

CONTEXT = 2048
#: Per-user decode speeds the vendors published at 16 bit (Cerebras, SambaNova) and 8 bit (Groq),
#: tok/s, from Artificial Analysis as tabulated by SambaNova's blog of 10 Sep 2024 ('Why
#: SambaNova's SN40L chip is the best for inference'); 405B on Cerebras from its blog of 18 Nov
#: 2024 (969 tok/s). GPU clouds in the same table: 71 (70B) and 288 (8B) tok/s.
PUBLISHED = {
    ("llama-3.1-8b", "cerebras-wse3"): 1837,
    ("llama-3.1-70b", "cerebras-wse3"): 445,
    ("llama-3.1-405b", "cerebras-wse3"): 969,
    ("llama-3.1-8b", "sambanova-sn40l"): 1042,
    ("llama-3.1-70b", "sambanova-sn40l"): 457,
    ("llama-3.1-405b", "sambanova-sn40l"): 129,
    ("llama-3.1-8b", "groq-lpu"): 751,
    ("llama-3.1-70b", "groq-lpu"): 250,
}
MODELS = ("llama-3.1-8b", "llama-3.1-70b", "llama-3.1-405b")
DTYPE = {"cerebras-wse3": "bf16", "sambanova-sn40l": "bf16", "groq-lpu": "fp8", "h100-sxm": "bf16"}


def layout_for(model_name: str, device: str, batch: int = 1) -> Layout:
    """The deployment each vendor describes: wafers pipeline layers over the fewest wafers,
    SambaNova uses one 16-socket rack, Groq the fewest chips that hold the model, GPUs TP8."""
    model = load_model_config(model_name)
    mapper = mapper_for(load_device(device))
    dt = DTYPE[device]
    spec = StepSpec("decode", batch, CONTEXT, dt, dt)
    if device == "cerebras-wse3":
        for pp in range(1, model.layers + 1):
            w, kv = memory_per_device(model, Layout(pp=pp), spec)
            if w + kv <= mapper.capacity_bytes:
                return Layout(pp=pp)
    if device == "sambanova-sn40l":
        return Layout(tp=16)
    if device == "h100-sxm":
        return Layout(tp=8)
    return min_devices(model, mapper, batch=batch, context=CONTEXT, dtype=dt, kv_dtype=dt).layout


def decode(model_name: str, device: str, batch: int = 1) -> StepResult:
    model = load_model_config(model_name)
    dt = DTYPE[device]
    lay = layout_for(model_name, device, batch)
    return simulate_step(
        model, mapper_for(load_device(device)), lay, StepSpec("decode", batch, CONTEXT, dt, dt)
    )


def _params_table(family: str) -> Table:
    data, _ = read_yaml(profile_path(family))
    sources = data.get("sources", {})
    rows = []
    for key, entry in data.items():
        if key in ("sources", "default") or not isinstance(entry, dict):
            continue
        for name, v in entry.items():
            if not isinstance(v, dict) or "value" not in v:
                continue
            why = v.get("derived") or v.get("note") or ""
            src = str(sources.get(v["source"], v["source"])).split(":")[0]
            rows.append([f"`{key}.{name}`", str(v["value"]), f"{why} ({src})"])
    return Table(["parameter", "value", "why"], rows, "lrl")


def _published_table(device: str) -> Table:
    rows = []
    for name in MODELS:
        pub = PUBLISHED.get((name, device))
        try:
            r = decode(name, device)
        except SpecError as err:  # a refusal is a row too
            rows.append([name, "-", "-", str(err)[:80], str(pub or "-")])
            continue
        rows.append(
            [
                name,
                f"{r.devices} ({r.layout})",
                fmt.t(r.time_per_token_s),
                f"{r.tokens_per_s_per_user:,.0f}",
                f"{pub:,}" if pub else "not served",
            ]
        )
    return Table(
        ["model", "devices (layout)", "time per token", "predicted tok/s/user", "published"],
        rows,
    )


def _capacity_table(device: str) -> Table:
    mapper = mapper_for(load_device(device))
    rows = []
    for name in MODELS:
        model = load_model_config(name)
        for dt in ("bf16", "fp8"):
            p = min_devices(model, mapper, batch=1, context=CONTEXT, dtype=dt, kv_dtype=dt)
            rows.append(
                [
                    name,
                    dt,
                    fmt.b(p.weight_bytes_total + p.kv_bytes_total),
                    str(p.lower_bound_devices),
                    f"{p.devices} ({p.layout})",
                ]
            )
    return Table(["model", "dtype", "weights + KV", "⌈bytes / capacity⌉", "smallest layout"], rows)


def _batch_figure() -> go.Figure:
    """Tokens/s per user against tokens/s per device (datasheet power) over batch sizes."""
    fig = go.Figure()
    for device in ("h100-sxm", "groq-lpu", "cerebras-wse3", "sambanova-sn40l"):
        xs, ys, text = [], [], []
        watts = load_device(device).tdp_W
        for b in (1, 4, 16, 64, 256):
            try:
                r = decode("llama-3.1-70b", device, b)
            except SpecError:  # a batch that no layout holds is skipped
                continue
            xs.append(r.tokens_per_s_total / (r.devices * watts / 1e3))
            ys.append(r.tokens_per_s_per_user)
            text.append(f"batch {b}, {r.devices} devices ({r.layout})")
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", name=device, text=text))
    fig.update_layout(
        title="llama-3.1-70b decode: speed per user against throughput per kW, batch 1 to 256",
        xaxis={"title": "tokens/s per kW of datasheet power", "type": "log"},
        yaxis={"title": "tokens/s per user", "type": "log"},
        template="plotly_white",
        height=520,
    )
    return fig


def _lpu_variant(hop_s: float) -> LpuMapper:
    """The built-in LPU deployment (groq-rack cluster) with every C2C hop taking ``hop_s``."""
    mapper = LpuMapper(load_device("groq-lpu"), load_cluster("groq-rack"))
    outer = hop_s * mapper.profile.node_hops.value
    mapper.links = dataclasses.replace(mapper.links, hop_latency_s=hop_s, outer_latency_s=outer)
    return mapper


def _lpu_per_layer(name: str, mapper: LpuMapper | None = None) -> tuple[StepResult, float]:
    """Batch-1 decode on the capacity plan's chips, and the hop latency (s) that would make it
    as slow as Groq's published speed (bisection: the time grows with the hop latency)."""
    model = load_model_config(name)
    spec = StepSpec("decode", 1, CONTEXT, "fp8", "fp8")
    lay = layout_for(name, "groq-lpu")
    r = simulate_step(model, mapper or _lpu_variant(600e-9), lay, spec)
    target = PUBLISHED[(name, "groq-lpu")]
    hop = brentq(
        lambda h: simulate_step(model, _lpu_variant(h), lay, spec).tokens_per_s_per_user - target,
        0.0,
        100e-6,
        xtol=1e-9,
    )
    return r, float(hop)


def _lpu_layer_table() -> tuple[Table, list[float]]:
    """Per decoder layer at batch 1: what the model charges against Groq's published budget."""
    rows, hops = [], []
    for name in ("llama-3.1-8b", "llama-3.1-70b"):
        r, hop = _lpu_per_layer(name)
        hops.append(hop)
        layers = load_model_config(name).layers
        per = r.layout.pp / layers  # the slowest stage's busy time, spread over its layers
        comp = sum(v for k, v in r.breakdown_s.items() if k not in ("comm", "comm_exposed")) * per
        comm = r.breakdown_s.get("comm", 0.0) * per
        pub = 1.0 / PUBLISHED[(name, "groq-lpu")] / layers
        rows.append(
            [
                name,
                f"{r.devices} ({r.layout})",
                fmt.t(comp),
                fmt.t(comm),
                fmt.t(r.time_per_token_s / layers),
                fmt.t(pub),
                fmt.times(pub * layers / r.time_per_token_s),
                fmt.t(hop),
            ]
        )
    cols = [
        "model",
        "chips (layout)",
        "compute",
        "chip-to-chip",
        "model total",
        "published",
        "published / model",
        "hop latency that would close it",
    ]
    return Table(cols, rows), hops


def facts() -> dict[str, Any]:
    f: dict[str, Any] = {}
    for device, key in (("cerebras-wse3", "wse"), ("sambanova-sn40l", "rdu"), ("groq-lpu", "lpu")):
        f[f"{key}_published"] = _published_table(device)
        f[f"{key}_capacity"] = _capacity_table(device)
    f["wse_params"] = _params_table("wafer")
    f["rdu_params"] = _params_table("dataflow")
    f["lpu_params"] = _params_table("lpu")
    gpu = decode("llama-3.1-70b", "h100-sxm")
    f["gpu_70b"] = fmt.t(gpu.time_per_token_s)
    f["gpu_70b_tps"] = f"{gpu.tokens_per_s_per_user:,.0f}"
    f["batch_fig"] = _batch_figure()
    m70 = load_model_config("llama-3.1-70b")
    wse = mapper_for(load_device("cerebras-wse3"))
    spec16 = StepSpec("decode", 1, CONTEXT)
    f["wse_fig"] = wafer_figure(
        Mapping(m70, layout_for("llama-3.1-70b", "cerebras-wse3"), spec16), wse
    )  # type: ignore[arg-type]
    rdu = mapper_for(load_device("sambanova-sn40l"))
    f["rdu_fig"] = rdu_figure(Mapping(m70, Layout(tp=16), spec16), rdu)  # type: ignore[arg-type]
    lpu_lay = layout_for("llama-3.1-70b", "groq-lpu")
    r = decode("llama-3.1-70b", "groq-lpu")
    spec8 = StepSpec("decode", 1, CONTEXT, "fp8", "fp8")
    f["lpu_fig"] = lpu_figure(Mapping(m70, lpu_lay, spec8), r.stage_time_s)
    # 64 users in flight: micro-batches fill the 7-stage pipeline (as hwsim decode plays it)
    r64 = serve_step(
        m70, "groq-lpu", batch=64, context=CONTEXT, layout=lpu_lay, dtype="fp8", kv_dtype="fp8",
        strict=False, timeline=False,
    )  # fmt: skip
    f["lpu_70b_b64"] = f"{r64.tokens_per_s_per_user:,.0f}"
    ratios = [
        decode(n, "groq-lpu").tokens_per_s_per_user / PUBLISHED[(n, "groq-lpu")]
        for n in ("llama-3.1-8b", "llama-3.1-70b")
    ]
    f["lpu_ratio"] = f"{min(ratios):.1f}-{max(ratios):.1f}×"
    per_layer = [
        decode(n, "groq-lpu").time_per_token_s / load_model_config(n).layers
        for n in ("llama-3.1-8b", "llama-3.1-70b")
    ]
    f["lpu_per_layer"] = f"{fmt.t(min(per_layer))} to {fmt.t(max(per_layer))}"
    m8 = load_model_config("llama-3.1-8b")
    tp8 = simulate_step(
        m8, _lpu_variant(600e-9), Layout(tp=8, pp=8), StepSpec("decode", 1, CONTEXT, "fp8", "fp8")
    )
    f["lpu_8b_tp8"] = fmt.t(tp8.time_per_token_s / m8.layers)
    table, hops = _lpu_layer_table()
    f["lpu_layer_table"] = table
    f["lpu_hop_needed"] = f"{fmt.t(min(hops))} to {fmt.t(max(hops))}"
    f["lpu_hop_ratio"] = f"{min(hops) / 0.6e-6:.0f}-{max(hops) / 0.6e-6:.0f}×"
    rdu_mtp = simulate_step(
        m70,
        rdu,
        Layout(tp=16),
        StepSpec("decode", 1, CONTEXT, q_len=4, mtp_depth=3),
        mtp_acceptance=0.85,
    )
    f["rdu_70b_mtp3"] = f"{rdu_mtp.tokens_per_s_per_user:,.0f}"
    sram = load_device("sambanova-sn40l").level_capacity_bytes("sram")
    f["rdu_sram_share"] = fmt.pct(16 * sram / (m70.total_params() * 2), 1)
    f["lpu_70b_chips"] = str(r.devices)
    f["lpu_70b_layout"] = str(r.layout)
    f["lpu_70b_stage"] = fmt.t(r.stage_time_s)
    return f
