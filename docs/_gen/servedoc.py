"""Facts for docs/serving.md: the worked example (Llama-3.1-70B on 8 H100s under the chat
profile, latency against offered load, where it bends and why), the step-time model's grid and
accuracy, and the engine profile's fitted overhead."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import plotly.graph_objects as go

from _gen import fmt
from _gen.core import Table
from hwsim.report.serving_figures import qps_figure
from hwsim.serve.metrics import parse_slo
from hwsim.serve.profile import engine_profile
from hwsim.serve.serving import ServeRequest, ServeResult, find_max_qps, simulate_serving
from hwsim.serve.steptime import default_cache_dir
from hwsim.spec.load import load_device

MODEL, DEVICE, LAYOUT, TRAFFIC = "llama-3.1-70b", "h100-sxm", "tp=8", "sharegpt"
#: The worked example's latency limits (MLPerf's interactive-style: first token, per token).
SLO_TEXT = "ttft_p99=2s,tpot_p99=50ms"
LOADS = (1.0, 4.0, 8.0, 12.0, 16.0, 20.0, 24.0, 28.0, 30.0, 32.0, 34.0, 36.0)
REQUESTS = 2000


def _req(**kw: Any) -> ServeRequest:
    base: dict[str, Any] = dict(
        model=MODEL, device=DEVICE, traffic=TRAFFIC, layout=LAYOUT, requests=REQUESTS,
        slo=parse_slo(SLO_TEXT), step_cache=default_cache_dir(),
    )  # fmt: skip
    base.update(kw)
    return ServeRequest(**base)


def _curve() -> list[tuple[float, ServeResult]]:
    return [(q, simulate_serving(_req(qps=q))) for q in LOADS]


def _mean_batch(r: ServeResult) -> float:
    """Decode batch averaged over time (iterations weighted by their duration)."""
    its = r.records.iterations
    busy = sum(e - s for _, s, e, *_ in its)
    return sum((e - s) * b for _, s, e, b, *_ in its) / busy if busy > 0 else 0.0


def facts() -> dict[str, Any]:
    f: dict[str, Any] = {}
    curve = _curve()
    rows = []
    for q, r in curve:
        m = r.metrics
        rows.append(
            [
                f"{q:g}",
                f"{m.output_tokens_per_s:,.0f}",
                fmt.t(m.ttft_s.p50),
                fmt.t(m.ttft_s.p99),
                fmt.t(m.tpot_s.p50),
                fmt.t(m.tpot_s.p99),
                f"{_mean_batch(r):.0f}",
                str(m.preempted),
            ]
        )
    f["curve_table"] = Table(
        ["req/s", "output tok/s", "TTFT p50", "TTFT p99", "TPOT p50", "TPOT p99", "batch",
         "preempted"],
        rows,
        "rrrrrrrr",
    ).markdown()  # fmt: skip
    slo = {k: v for k, _, v in parse_slo(SLO_TEXT).limits}
    fig: go.Figure = qps_figure(curve, slo)
    fig.update_layout(title=f"{MODEL} on 8 × {DEVICE} ({LAYOUT}), {TRAFFIC} traffic")
    f["curve_fig"] = fig
    found = find_max_qps(_req(qps=None, requests=None, duration_s=300.0))
    f["max_qps"] = f"{found.max_qps:.3g}"
    f["max_tok"] = f"{found.result.metrics.output_tokens_per_s:,.0f}" if found.result else "—"
    light, heavy = curve[0][1].metrics, curve[-1][1].metrics
    f["tpot_light"] = fmt.t(light.tpot_s.p50)
    f["tpot_heavy"] = fmt.t(heavy.tpot_s.p50)
    f["ttft_light"] = fmt.t(light.ttft_s.p50)
    f["overhead"] = fmt.t(engine_profile(load_device(DEVICE)).iteration_overhead.value)
    f["slo"] = SLO_TEXT
    f["cache_dir"] = str(default_cache_dir()).replace(str(Path.home()), "~")
    return f
