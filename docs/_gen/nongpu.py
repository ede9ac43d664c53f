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
from hwsim.plan.layout import Layout
from hwsim.plan.model_step import StepSpec, memory_per_device
from hwsim.report.mapping_figures import view_figure
from hwsim.serve.api import serve_step
from hwsim.serve.capacity import min_devices
from hwsim.serve.request import StepRequest
from hwsim.serve.step import StepResult, simulate_step
from hwsim.sim.lpu import LpuMapper
from hwsim.sim.mapper import mapper_for
from hwsim.spec.errors import SpecError
from hwsim.spec.load import load_device, read_yaml
from hwsim.spec.model import load_model_config
from hwsim.spec.overrides import apply_overrides
from hwsim.spec.profiles import profile_path
from hwsim.validate.nongpu import Published, excluded, layout_of, load_table, predict

CONTEXT = 2048
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
    return min_devices(model, mapper, StepSpec("decode", batch, CONTEXT, dt, dt)).layout


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
    """Every row of workloads/measured/nongpu_decode_published.csv for ``device``: hwsim's
    prediction, the public number, and whether (and how) it is scored."""
    rows = []
    for rec in load_table():
        if rec.device != device:
            continue
        pred, lay = predict(rec)
        if rec.metric == "e2e_s":
            what = f"{rec.prompt_tokens:,} in + {rec.output_tokens:,} out, whole request"
            cells = [fmt.t(pred), fmt.t(rec.value)]
        else:
            what = "decode" + (f" at {rec.context:,} tokens" if rec.prompt_tokens else "")
            cells = [f"{pred:,.0f} tok/s", f"{rec.value:,.0f} tok/s"]
        status = {"fit": "fit", "check": "held out"}.get(rec.role, f"not scored ({rec.decode})")
        rows.append(
            [
                rec.model,
                what,
                f"{lay.devices} ({lay})",
                *cells,
                f"{pred / rec.value - 1:+.0%}",
                status,
                f"{rec.date}, `{rec.source}`",
            ]
        )
    cols = ["model", "request", "devices (layout)", "hwsim", "public", "error", "role", "source"]
    return Table(cols, rows, "lllrrrll")


def _excluded_table() -> Table:
    """The rows that are not scored, with the plain-decode memory bound."""
    rows = []
    for e in excluded():
        r = e.rec
        rows.append(
            [
                f"{r.model} on {r.device}",
                f"{r.value:,.0f}",
                r.decode,
                f"{e.predicted:,.0f}",
                f"{e.bound:,.0f}",
                fmt.times(r.value / e.bound) if r.value > e.bound else "below",
            ]
        )
    cols = ["row", "public tok/s", "decode", "hwsim plain decode", "memory bound", "public / bound"]
    return Table(cols, rows)


def _wse_sram_x2() -> dict[str, str]:
    """Each WSE-3 core with twice the SRAM: 8B unchanged, 70B on fewer wafers but slower."""
    big = mapper_for(apply_overrides(load_device("cerebras-wse3"), ["memory.sram.capacity=x2"]))
    base = mapper_for(load_device("cerebras-wse3"))
    spec = StepSpec("decode", 1, CONTEXT)
    m8, m70 = load_model_config("llama-3.1-8b"), load_model_config("llama-3.1-70b")
    t8 = [simulate_step(m8, mp, Layout(pp=1), spec).time_per_token_s for mp in (base, big)]
    pp = next(
        p
        for p in range(1, 9)
        if sum(memory_per_device(m70, Layout(pp=p), spec)) <= big.capacity_bytes
    )
    t70 = simulate_step(m70, big, Layout(pp=pp), spec).time_per_token_s
    return {
        "wse_8b_x2": f"{fmt.t(t8[0])} and {fmt.t(t8[1])} per token",
        "wse_70b_x2_wafers": str(pp),
        "wse_70b_x2_time": fmt.t(t70),
        "wse_70b_time": fmt.t(simulate_step(m70, base, Layout(pp=4), spec).time_per_token_s),
    }


def _argonne_facts() -> dict[str, str]:
    """What the Argonne SN40L rows say: the HBM fraction the 70B request needed, and how the
    time per output token of the MHA model grows from its 1,024- to its 2,048-token request."""
    rows = {
        (r.model, r.prompt_tokens): r
        for r in load_table()
        if r.source == "argonne-llm-inference-bench"
    }
    big = rows[("llama-3.1-70b", 2048)]
    model = load_model_config(big.model)
    dev = load_device(big.device)
    lay = layout_of(big, model, mapper_for(dev))
    assert big.prompt_tokens is not None and big.output_tokens is not None
    prefill = simulate_step(model, mapper_for(dev), lay, big.spec(big.prompt_tokens, "prefill"))
    per_token = (big.value - prefill.step_time_s) / big.output_tokens
    w, kv = memory_per_device(model, lay, big.spec())
    need = (w + kv) / per_token / dev.level_bandwidth_Bps(dev.main_memory.name)
    small, large = rows[("llama-2-7b", 1024)], rows[("llama-2-7b", 2048)]

    def growth(a: float, b: float) -> str:
        assert small.output_tokens and large.output_tokens
        return fmt.pct(b / large.output_tokens / (a / small.output_tokens) - 1)

    return {
        "rdu_70b_hbm_needed": fmt.pct(need),
        "rdu_mha_growth_measured": growth(small.value, large.value),
        "rdu_mha_growth_hwsim": growth(predict(small)[0], predict(large)[0]),
    }


def _capacity_table(device: str) -> Table:
    mapper = mapper_for(load_device(device))
    rows = []
    for name in MODELS:
        model = load_model_config(name)
        for dt in ("bf16", "fp8"):
            p = min_devices(model, mapper, StepSpec("decode", 1, CONTEXT, dt, dt))
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


def _lpu_variant(hop_s: float, op_s: float | None = None) -> LpuMapper:
    """The groq-lpu mapper as the suite builds it (its own C2C ports) with every C2C hop taking
    ``hop_s`` and, if given, ``op_s`` per dependent operator instead of the fitted value."""
    mapper = LpuMapper(load_device("groq-lpu"))
    if op_s is not None:
        mapper = mapper.with_profile([f"op_latency={op_s!r} s"])
    outer = hop_s * mapper.profile.node_hops.value
    mapper.links = dataclasses.replace(mapper.links, hop_latency_s=hop_s, outer_latency_s=outer)
    return mapper


def _groq_rows() -> list[Published]:
    """The scored Groq rows, one per model (the latest date wins)."""
    rows: dict[str, Published] = {}
    for rec in load_table():
        if rec.device == "groq-lpu" and rec.scored:
            rows[rec.model] = rec
    return list(rows.values())


def _hop_needed(rec: Published) -> float:
    """Without the per-operator latency: the C2C hop latency (s) that would make hwsim as slow
    as ``rec`` (bisection; the time grows with the hop latency)."""
    return float(
        brentq(lambda h: predict(rec, _lpu_variant(h, 0.0))[0] - rec.value, 0.0, 100e-6, xtol=1e-9)
    )


def _lpu_layer_table() -> Table:
    """Per decoder layer at batch 1: streaming, per-operator latency and C2C, against public."""
    rows = []
    for rec in _groq_rows():
        model = load_model_config(rec.model)
        fitted = mapper_for(load_device("groq-lpu"))
        lay = layout_of(rec, model, fitted)
        full = simulate_step(model, fitted, lay, rec.spec())
        bare = simulate_step(model, _lpu_variant(fitted.links.hop_latency_s, 0.0), lay, rec.spec())
        per = lay.pp / model.layers  # the slowest stage's busy time, spread over its layers
        comm = full.breakdown_s.get("comm", 0.0) * per
        busy = sum(v for k, v in full.breakdown_s.items() if k not in ("comm", "comm_exposed"))
        bare_busy = sum(v for k, v in bare.breakdown_s.items() if k not in ("comm", "comm_exposed"))
        rows.append(
            [
                f"{rec.model} ({'fit' if rec.role == 'fit' else 'held out'})",
                f"{lay.devices} ({lay})",
                fmt.t(bare_busy * per),
                fmt.t((busy - bare_busy) * per),
                fmt.t(comm),
                fmt.t(full.time_per_token_s / model.layers),
                fmt.t(1.0 / rec.value / model.layers),
            ]
        )
    cols = [
        "model",
        "chips (layout)",
        "streams (SRAM, MXM, vector)",
        "per-operator latency",
        "chip-to-chip",
        "hwsim per layer",
        "public per layer",
    ]
    return Table(cols, rows)


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
    wse_lay = layout_for("llama-3.1-70b", "cerebras-wse3")
    f["wse_fig"] = view_figure(wse.placement(m70, wse_lay, spec16).views[0])
    rdu = mapper_for(load_device("sambanova-sn40l"))
    f["rdu_fig"] = view_figure(rdu.placement(m70, Layout(tp=16), spec16).views[0])
    lpu_lay = layout_for("llama-3.1-70b", "groq-lpu")
    r = decode("llama-3.1-70b", "groq-lpu")
    spec8 = StepSpec("decode", 1, CONTEXT, "fp8", "fp8")
    lpu = mapper_for(load_device("groq-lpu"))
    f["lpu_fig"] = view_figure(lpu.placement(m70, lpu_lay, spec8, r.stage_time_s).views[0])
    # 64 users in flight: micro-batches fill the 7-stage pipeline (as hwsim decode plays it)
    r64 = serve_step(
        StepRequest(
            m70, "groq-lpu", batch=64, context=CONTEXT, layout=lpu_lay, dtype="fp8", kv_dtype="fp8"
        ),
        strict=False,
        timeline=False,
    )
    f["lpu_70b_b64"] = f"{r64.tokens_per_s_per_user:,.0f}"
    fit_row = next(r for r in load_table() if r.role == "fit")
    f["lpu_fit_row"] = f"{fit_row.model} at {fit_row.value:g} tok/s per user ({fit_row.date})"
    lpu = LpuMapper(load_device("groq-lpu"))
    f["lpu_op_latency"] = fmt.t(lpu.profile.op_latency.value)
    f["lpu_op_cycles"] = f"{lpu.profile.op_latency.value * lpu.device.compute.clock_Hz:,.0f}"
    held = [
        abs(predict(r)[0] / r.value - 1)
        for r in load_table()
        if r.device == "groq-lpu" and r.role == "check"
    ]
    f["lpu_heldout_max"] = fmt.pct(max(held))
    sep = [r for r in _groq_rows() if r.model in ("llama-3.1-8b", "llama-3.1-70b")]
    ratios = [predict(r, _lpu_variant(lpu.links.hop_latency_s, 0.0))[0] / r.value for r in sep]
    f["lpu_ratio"] = f"{min(ratios):.1f}-{max(ratios):.1f}×"
    f["lpu_layer_table"] = _lpu_layer_table()
    hops = [_hop_needed(r) for r in sep]
    f["lpu_hop_needed"] = f"{fmt.t(min(hops))} to {fmt.t(max(hops))}"
    f["lpu_hop_ratio"] = f"{min(hops) / 0.6e-6:.0f}-{max(hops) / 0.6e-6:.0f}×"
    m8 = load_model_config("llama-3.1-8b")
    tp8 = simulate_step(
        m8,
        _lpu_variant(600e-9, 0.0),
        Layout(tp=8, pp=8),
        StepSpec("decode", 1, CONTEXT, "fp8", "fp8"),
    )
    f["lpu_8b_tp8"] = fmt.t(tp8.time_per_token_s / m8.layers)
    f["excluded_table"] = _excluded_table()
    ds = next(e for e in excluded() if e.rec.model == "deepseek-v3")
    f["rdu_dsv3"] = f"{ds.predicted:,.0f}"
    f.update(_argonne_facts())
    f.update(_wse_sram_x2())
    wse2 = mapper_for(
        apply_overrides(
            load_device("cerebras-wse3"), ["compute.peak.bf16=x0.5", "compute.peak.fp16=x0.5"]
        )
    )
    r2 = simulate_step(
        load_model_config("llama-3.1-8b"), wse2, Layout(pp=1), StepSpec("decode", 1, 4096)
    )
    f["wse2_8b"] = f"{r2.tokens_per_s_per_user:,.0f}"
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
