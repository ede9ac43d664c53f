"""One computation per page, from its :mod:`~hwsim.app.params` record: the numbers come from
the functions the CLI commands call, the figures from :mod:`hwsim.report`.

* Device: :func:`hwsim.roofline.analytic.roofline` on the example kernels of
  :func:`hwsim.roofline.ops.example_kernels` (``hwsim roofline``), per device, so an edited spec
  gets its own tile sizes as ``hwsim roofline edited.yaml`` does.
* Model step: :func:`hwsim.serve.api.serve_step`, or :func:`hwsim.serve.whatif.whatif` (the
  ``hwsim whatif`` engine: the baseline's layout on the changed device), and the capacity
  reasoning of :func:`hwsim.serve.capacity.min_devices` (``hwsim capacity``).
* Attention: :func:`hwsim.sim.gpu_attention.simulate_attention` (GPU) or the spatial kinds'
  :func:`~hwsim.sim.spatial_attention.simulate_attention_spatial` (``hwsim attention``).
* Serving: :func:`hwsim.serve.serving.simulate_serving` (``hwsim serve``) at several rates.
* MoE: :func:`hwsim.sim.alltoall_run.run_alltoall` (``hwsim moe``).

A what-if device or cluster is written to a YAML file and loaded by path, exactly as the command
line the page shows does (a device named by a path picks its default cluster by architecture,
as the CLI does for that file).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import plotly.graph_objects as go

from hwsim.app.jobs import Progress
from hwsim.app.params import AttentionParams, DeviceParams, MoeParams, ServingParams, StepParams
from hwsim.app.specs import (
    display_name,
    spec_yaml,
    whatif_cluster,
    whatif_device,
    whatif_filename,
)
from hwsim.roofline.analytic import RooflineResult
from hwsim.spec.errors import SpecError

#: Rates of the latency-vs-QPS curve, as multiples of the page's QPS.
QPS_FACTORS = (0.25, 0.5, 1.0, 1.5, 2.0)


def write_whatif(folder: Path, key: str, text: str) -> str:
    """Save a what-if YAML under ``folder`` (one sub-folder per content) and return its path,
    named as the page's download (so a path in a message is the one the user saved)."""
    sub = folder / "whatif" / hashlib.sha256(text.encode()).hexdigest()[:12]
    sub.mkdir(parents=True, exist_ok=True)
    path = sub / whatif_filename(key)
    if not path.exists():
        path.write_text(text, encoding="utf-8")
    return str(path)


def whatif_device_path(folder: Path, key: str, overrides: tuple[str, ...]) -> str:
    """The what-if device's YAML path (validated: bad edits raise SpecError)."""
    return write_whatif(folder, key, spec_yaml(whatif_device(key, list(overrides))))


# ---- Device: rooflines -----------------------------------------------------------------------
@dataclass(frozen=True)
class RooflineView:
    baseline: tuple[RooflineResult, ...]
    whatif: tuple[RooflineResult, ...] = ()
    figures: tuple[go.Figure, ...] = ()  #: baseline, then the what-if's


def _roofline(key: str, dtype: str, kernels: tuple[str, ...]) -> tuple[RooflineResult, ...]:
    from hwsim.roofline.analytic import roofline
    from hwsim.roofline.ops import example_kernels
    from hwsim.spec.load import load_device

    dev = load_device(key)
    return tuple(roofline(k, dev, key) for k in example_kernels(dev, dtype, list(kernels) or None))


def roofline_view(p: DeviceParams, folder: Path) -> RooflineView:
    """``hwsim roofline DEVICE [WHATIF.yaml]`` as results and figures."""
    from hwsim.report.figures import DevicePanel, roofline_figure
    from hwsim.spec.device import DTYPES
    from hwsim.spec.load import load_device

    if p.dtype not in DTYPES:  # the roofline command's own check and words
        raise SpecError(f"--dtype {p.dtype!r}: expected one of {', '.join(DTYPES)}")
    base = _roofline(p.device, p.dtype, p.kernels)
    panel = DevicePanel(display_name(p.device), load_device(p.device), base)
    figs = [roofline_figure([panel], height=520)]
    new: tuple[RooflineResult, ...] = ()
    if p.whatif.active:
        path = whatif_device_path(folder, p.device, p.whatif.overrides)
        new = _roofline(path, p.dtype, p.kernels)
        new_panel = DevicePanel(whatif_filename(p.device), load_device(path), new)
        figs.append(roofline_figure([new_panel], height=520))
    return RooflineView(base, new, tuple(figs))


# ---- Model step ------------------------------------------------------------------------------
@dataclass(frozen=True)
class StepView:
    baseline: Any  #: StepResult
    whatif: Any = None  #: StepResult of the changed device (baseline layout)
    deltas: dict[str, dict[str, float]] = field(default_factory=dict)
    capacity: tuple[str, ...] = ()  #: ``hwsim capacity``'s reasoning lines
    capacity_answer: str = ""
    figures: tuple[go.Figure, ...] = ()  #: breakdown, step timeline


def step_request(p: StepParams) -> Any:
    from hwsim.serve.request import StepRequest

    return StepRequest(
        model=p.model,
        device=p.device,
        phase=p.phase,
        batch=p.batch,
        context=p.context,
        devices="auto",
        layout=p.layout.strip() or None,
        dtype=p.dtype,
        kv_dtype=p.kv_dtype,
    )


def step_view(p: StepParams) -> StepView:
    """``hwsim decode``/``prefill`` (or ``hwsim whatif``) and ``hwsim capacity``."""
    from hwsim.plan.model_step import StepSpec
    from hwsim.report.serve_figures import breakdown_figure, timeline_figure
    from hwsim.serve.api import make_target, serve_step
    from hwsim.serve.capacity import min_devices
    from hwsim.serve.whatif import whatif
    from hwsim.spec.model import load_model_config

    req = step_request(p)
    if p.whatif.active:
        w = whatif(req, list(p.whatif.overrides))
        base, new, deltas = w.baseline, w.modified, w.deltas()
    else:
        base, new, deltas = serve_step(req), None, {}
    # as `hwsim capacity` plans it: a decode step's weights and KV cache
    spec = StepSpec("decode", p.batch, p.context, p.dtype, p.kv_dtype)
    plan = min_devices(
        load_model_config(p.model), make_target(p.device).mapper, spec, device_name=p.device
    )
    runs = [base] + ([new] if new is not None else [])
    labels = ["baseline"] + (["what-if"] if new is not None else [])
    bd = breakdown_figure(runs, labels)
    bd.update_layout(title=f"{p.phase}: busy time per layer kind, one device", height=380)
    tl = timeline_figure(base)
    return StepView(
        base,
        new,
        deltas,
        plan.reasoning,
        f"{plan.devices} × {p.device} ({plan.layout}); lower bound {plan.lower_bound_devices}",
        (bd, tl),
    )


# ---- Attention -------------------------------------------------------------------------------
@dataclass(frozen=True)
class AttentionView:
    baseline: Any  #: AttentionSimResult of the chosen kernel
    compare: Any = None  #: the other of FA2/FA3 on the same device (GPUs)
    whatif: Any = None  #: the chosen kernel on the what-if device
    figures: tuple[go.Figure, ...] = ()


def compare_kernel(kernel: str) -> str:
    """The kernel of the FA2-vs-FA3 comparison: the other one (FA3 for anything else)."""
    return "fa2" if kernel == "fa3" else "fa3"


def _attention(key: str, p: AttentionParams, kernel: str, trace: bool) -> Any:
    from hwsim.plan.attention import AttentionShape
    from hwsim.sim.gpu_attention import simulate_attention
    from hwsim.spec.load import load_device

    if p.pass_ not in ("fwd", "bwd", "fwd+bwd"):
        raise SpecError(f"expected one of ('fwd', 'bwd', 'fwd+bwd'), got {p.pass_!r}", key="--pass")
    shape = AttentionShape(
        batch=p.batch, heads=p.heads, kv_heads=p.kv_heads, seqlen_q=p.seqlen,
        seqlen_kv=p.seqlen, head_dim=p.head_dim, head_dim_v=None, causal=p.causal,
        dtype=p.dtype, pass_=p.pass_,
    )  # fmt: skip
    dev = load_device(key)
    if dev.kind != "gpu":
        from hwsim.sim.spatial_attention import simulate_attention_spatial

        return simulate_attention_spatial(dev, shape, device_name=key)
    return simulate_attention(dev, shape, kernel, trace=trace, device_name=key)


def attention_view(p: AttentionParams, folder: Path) -> AttentionView:
    """``hwsim attention`` with the chosen kernel, the FA2/FA3 comparison and the what-if."""
    from hwsim.app.figures import tile_figure
    from hwsim.report.attention_figures import gantt_figure, roofline_point_figure, traffic_figure
    from hwsim.spec.load import load_device

    dev = load_device(p.device)
    gpu = dev.kind == "gpu"
    base = _attention(p.device, p, p.kernel, trace=gpu)
    other = _attention(p.device, p, compare_kernel(p.kernel), trace=False) if gpu else None
    new = None
    figs: list[go.Figure] = []
    if p.whatif.active:
        path = whatif_device_path(folder, p.device, p.whatif.overrides)
        new = _attention(path, p, p.kernel, trace=False)
    if gpu:
        figs = [
            tile_figure(base, dev),
            gantt_figure(base),
            traffic_figure(base),
            roofline_point_figure(base, dev, p.device),
        ]
    return AttentionView(base, other, new, tuple(figs))


# ---- Serving ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class ServingView:
    baseline: Any  #: ServeResult at the page's QPS
    whatif: Any = None
    curve: tuple[tuple[float, Any], ...] = ()  #: (QPS, ServeResult) of the latency curve
    figures: tuple[go.Figure, ...] = ()


def curve_rates(qps: float) -> tuple[float, ...]:
    """The rates of the latency-vs-QPS curve (3 significant digits, so commands stay short)."""
    return tuple(float(f"{qps * f:.3g}") for f in QPS_FACTORS)


def serve_request(p: ServingParams, device: str, qps: float) -> Any:
    from hwsim.serve.serving import ServeRequest

    return ServeRequest(
        model=p.model, device=device, traffic=p.traffic, devices="auto",
        layout=p.layout.strip() or None, qps=qps, requests=p.requests, seed=p.seed,
    )  # fmt: skip


def serving_view(p: ServingParams, folder: Path, progress: Progress) -> ServingView:
    """``hwsim serve`` at the page's rate, at the curve's rates, and on the what-if device."""
    from hwsim.report.serving_figures import cdf_figure, qps_figure, timeline_figure
    from hwsim.serve.serving import simulate_serving
    from hwsim.serve.traffic import load_traffic

    if not p.qps > 0:
        raise SpecError(f"expected a rate > 0 req/s, got {p.qps}", key="--qps")
    rates = curve_rates(p.qps)
    curve = []
    for i, q in enumerate(rates, start=1):
        progress(f"simulating {p.requests} requests at {q:g} req/s ({i} of {len(rates)})")
        curve.append((q, simulate_serving(serve_request(p, p.device, q))))
    base = simulate_serving(serve_request(p, p.device, p.qps))  # cached steps: fast
    new = None
    if p.whatif.active:
        progress("simulating the what-if device")
        path = whatif_device_path(folder, p.device, p.whatif.overrides)
        new = simulate_serving(serve_request(p, path, p.qps))
    spec_slo = getattr(load_traffic(p.traffic), "slo", None)
    slo = {"ttft": spec_slo.ttft_s, "tpot": spec_slo.tpot_s} if spec_slo else {}
    figs = (qps_figure(curve, slo), cdf_figure(base), timeline_figure(base))
    figs[0].update_layout(title=f"latency against offered load ({p.requests} requests a point)")
    return ServingView(base, new, tuple(curve), figs)


# ---- MoE all-to-all --------------------------------------------------------------------------
@dataclass(frozen=True)
class MoeView:
    baseline: Any  #: AllToAllResult
    whatif: Any = None
    figures: tuple[go.Figure, ...] = ()


def _moe(cluster: str, p: MoeParams) -> tuple[Any, Any]:
    from hwsim.sim.alltoall_run import Routing, run_alltoall

    problem = Routing(
        cluster, p.ep, p.tokens, p.hidden, p.experts, p.topk, p.topk_groups, p.routing
    )
    topo, res, _ = run_alltoall(problem, p.phase, None, p.kernel, None, False)
    return topo, res


def moe_view(p: MoeParams, folder: Path) -> MoeView:
    """``hwsim moe`` on the cluster (and on the what-if cluster): link loads on the graph."""
    from hwsim.report.network_figures import link_load_figure, topology_figure

    topo, base = _moe(p.cluster, p)
    new = None
    figs = [topology_figure(topo, base.links)]
    if p.whatif.active:
        text = spec_yaml(whatif_cluster(p.cluster, list(p.whatif.overrides)))
        topo2, new = _moe(write_whatif(folder, p.cluster, text), p)
        fig2 = topology_figure(topo2, new.links)
        fig2.update_layout(title=f"what-if: {', '.join(p.whatif.overrides)}")
        figs.append(fig2)
    figs.append(link_load_figure(base))
    return MoeView(base, new, tuple(figs))
