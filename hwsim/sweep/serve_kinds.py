"""The what-if engine as a metric kind: one simulated whole-model prefill or decode step
(:func:`hwsim.serve.api.serve_step`) per unique (device, model, batch, context, layout).

It reads the layout axis (``tp``, ``ep``, ``pp``, ``dp``), so a sweep over spec overrides ×
batch × layout reproduces ``hwsim whatif``/``hwsim decode`` point by point, cached and spread over
the executor's workers. The serve layer is imported when a point is evaluated (all but the
step defaults, :data:`hwsim.serve.request.STEP_DEFAULTS`, which the options and axes share).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from hwsim.serve.request import STEP_DEFAULTS
from hwsim.spec.device import Device
from hwsim.spec.override_paths import PROFILE_PREFIX
from hwsim.sweep.kinds import MetricKind, Scalar, register_kind
from hwsim.sweep.moe_kinds import cluster_overrides, cluster_with

if TYPE_CHECKING:
    from hwsim.spec.cluster import Cluster


class ServeOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    phase: Literal["decode", "prefill"] = STEP_DEFAULTS["phase"]
    cluster: str | None = Field(
        STEP_DEFAULTS["cluster"], description="cluster name; 'default': the device's"
    )
    overlap: Literal["auto", "none", "dual"] = STEP_DEFAULTS["overlap"]
    mtp: int = Field(STEP_DEFAULTS["mtp"], ge=0, description="speculative draft tokens per step")
    mtp_acceptance: float = Field(STEP_DEFAULTS["mtp_acceptance"], ge=0.0, le=1.0)


def _target(device: Device, cluster: str | Cluster | None, params: Mapping[str, Any]) -> Any:
    """The device, or (with ``profile.<path>`` spec axes) a target whose spatial mapper has
    those profile values (SI numbers, written with their unit for the override parser)."""
    profile = {
        k[len(PROFILE_PREFIX) :]: float(v)
        for k, v in sorted(params.items())
        if k.startswith(PROFILE_PREFIX)
    }
    if not profile:
        return device
    from hwsim.serve.api import make_target, profile_target
    from hwsim.sim.mapper import mapper_profile
    from hwsim.spec.overrides import path_dim, si_text
    from hwsim.spec.units import Dim

    t = make_target(device, cluster)
    prof = mapper_profile(t.mapper)
    texts = [f"{p}={si_text(v, path_dim(prof, p) or Dim.COUNT)}" for p, v in profile.items()]
    return profile_target(t, texts)


@register_kind
class ServeStep(MetricKind):
    """A whole-model step from the serve layer (layer graph, overlap, collectives)."""

    name = "serve_step"
    description = "whole-model prefill/decode step simulated by the what-if engine (hwsim decode)"
    vectorised = False
    reads_cluster = True
    reads_profile = True
    params: ClassVar[dict[str, Scalar | None]] = {
        "model": None,
        "batch": STEP_DEFAULTS["batch"],
        "context": STEP_DEFAULTS["context"],
        "dtype": STEP_DEFAULTS["dtype"],
        "tp": 1,
        "ep": 1,
        "pp": 1,
        "dp": 1,
    }
    metrics: ClassVar[dict[str, str]] = {
        "step_time_s": "one decode round / the prefill TTFT, s",
        "time_per_token_s": "per user (decode), s",
        "tokens_per_s_per_user": "token/s",
        "tokens_per_s_total": "whole deployment, token/s",
        "bound": "dominant resource of the step",
        "devices": "devices in the layout",
        "memory_per_device_bytes": "weights + KV cache per device, B",
        "fits": "fits the device's memory",
        "comm_exposed_s": "communication not hidden under compute, s",
    }
    code_paths = (
        "hwsim/serve",
        "hwsim/sim",
        "hwsim/plan",
        "hwsim/spec",
        "hwsim/sweep/serve_kinds.py",
        "devices/profiles",
        "devices/clusters",
    )
    Options: ClassVar[type[BaseModel]] = ServeOptions
    #: everything a step reads from the device (not its price or citations)
    device_fields = (
        "kind",
        "arch",
        "compute",
        "memory",
        "interconnect",
        "power",
        "mesh",
        "tiles",
        "lpu",
    )

    def subproblem(self, params: Mapping[str, Any]) -> dict[str, Any]:
        lay = ",".join(f"{k}={int(params[k])}" for k in ("tp", "ep", "pp", "dp"))
        return {
            "model": str(params["model"]),
            "batch": int(params["batch"]),
            "context": int(params["context"]),
            "dtype": str(params["dtype"]),
            "layout": lay,
        }

    def evaluate_point(
        self, device: Device, params: Mapping[str, Any], seed: int
    ) -> dict[str, Any]:
        from hwsim.serve.api import serve_step
        from hwsim.serve.request import StepRequest

        o = self.options
        assert isinstance(o, ServeOptions)
        overrides = cluster_overrides(params)
        cluster: str | Cluster | None = o.cluster
        if overrides:  # the sweep checked that a named cluster goes with axes.cluster
            assert o.cluster not in (None, "default")
            cluster = cluster_with(o.cluster, overrides)
        target = _target(device, cluster, params)
        r = serve_step(
            StepRequest(
                params["model"],
                target,
                o.phase,
                batch=params["batch"],
                context=params["context"],
                layout=params["layout"],
                dtype=params["dtype"],
                mtp=o.mtp,
                mtp_acceptance=o.mtp_acceptance,
                overlap=o.overlap,
                cluster=cluster,
            )
        )
        return {
            "step_time_s": r.step_time_s,
            "time_per_token_s": r.time_per_token_s,
            "tokens_per_s_per_user": r.tokens_per_s_per_user,
            "tokens_per_s_total": r.tokens_per_s_total,
            "bound": r.bound,
            "devices": r.devices,
            "memory_per_device_bytes": r.memory_per_device_bytes,
            "fits": r.fits,
            "comm_exposed_s": r.comm_exposed_s,
        }


class ServingOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    cluster: str | None = Field("default", description="cluster name; 'default': the device's")
    scheduler: Literal["chunked", "prefill-first"] = "chunked"
    kv_dtype: str | None = Field(None, description="KV-cache dtype (default: the weights')")
    router: Literal["round-robin", "least-outstanding", "least-kv"] = "least-outstanding"


@register_kind
class Serving(MetricKind):
    """A request stream served by replicas of one layout (:func:`hwsim.serve.serving.
    simulate_serving`): QPS, traffic class and deployment as axes. The traffic draw depends
    only on the traffic, the load and the request count, so every device and layout of a sweep
    serves the same requests (common random numbers)."""

    name = "serving"
    description = "request stream served by continuous batching (hwsim serve): latency percentiles"
    vectorised = False
    reads_cluster = False
    seed_params = ("traffic", "qps", "requests")
    params: ClassVar[dict[str, Scalar | None]] = {
        "model": None,
        "traffic": "chat",  #: a workload class or traffic profile (workloads/traffic)
        "qps": 0.0,  #: Poisson rate, req/s; 0: the class's reference load
        "replicas": 1,
        "dtype": STEP_DEFAULTS["dtype"],
        "max_batch": 256,
        "token_budget": 8192,
        "requests": 1000,
        "tp": 1,
        "ep": 1,
        "pp": 1,
        "dp": 1,
    }
    metrics: ClassVar[dict[str, str]] = {
        "ttft_p50_s": "median time to first token, s",
        "ttft_p99_s": "p99 time to first token, s",
        "tpot_p50_s": "median time per output token, s",
        "tpot_p99_s": "p99 time per output token, s",
        "output_tokens_per_s": "whole deployment, steady state, token/s",
        "tokens_per_s_per_user": "1 / mean TPOT, token/s",
        "goodput_requests_per_s": "requests meeting every SLO, req/s",
        "meets_slo": "the traffic class's SLOs held (p99 limits)",
        "devices": "devices in all replicas",
        "usd_per_million_output_tokens": "capex from the device's price (None: no price), USD",
        "joules_per_output_token": "at the devices' TDP, J",
    }
    code_paths = (*ServeStep.code_paths, "devices/costs", "workloads/traffic")
    Options: ClassVar[type[BaseModel]] = ServingOptions
    device_fields = (*ServeStep.device_fields, "price")

    def subproblem(self, params: Mapping[str, Any]) -> dict[str, Any]:
        lay = ",".join(f"{k}={int(params[k])}" for k in ("tp", "ep", "pp", "dp"))
        out = {k: params[k] for k in ("model", "traffic", "dtype")}
        out.update({k: int(params[k]) for k in ("replicas", "max_batch", "token_budget",
                                                 "requests")})  # fmt: skip
        return {**out, "qps": float(params["qps"]), "layout": lay}

    def evaluate_point(
        self, device: Device, params: Mapping[str, Any], seed: int
    ) -> dict[str, Any]:
        from hwsim.serve.api import make_target
        from hwsim.serve.serving import ServeRequest, simulate_serving
        from hwsim.spec.cost import economics, joules_per_token, usd_per_million

        o = self.options
        assert isinstance(o, ServingOptions)
        target = make_target(device, o.cluster)
        req = ServeRequest(
            params["model"], target, params["traffic"], layout=params["layout"],
            replicas=params["replicas"], dtype=params["dtype"],
            kv_dtype=o.kv_dtype or params["dtype"], qps=params["qps"] or None,
            max_batch=params["max_batch"], token_budget=params["token_budget"],
            requests=params["requests"], scheduler=o.scheduler, router=o.router, seed=seed,
        )  # fmt: skip
        r = simulate_serving(req)
        m = r.metrics
        econ = economics(device.name, device)
        tok = m.output_tokens_per_s
        tpot = m.tpot_s.mean
        return {
            "ttft_p50_s": m.ttft_s.p50,
            "ttft_p99_s": m.ttft_s.p99,
            "tpot_p50_s": m.tpot_s.p50,
            "tpot_p99_s": m.tpot_s.p99,
            "output_tokens_per_s": tok,
            "tokens_per_s_per_user": 1.0 / tpot if tpot and tpot > 0 else float("nan"),
            "goodput_requests_per_s": m.goodput_requests_per_s,
            "meets_slo": all(m.slo_met.values()),
            "devices": r.devices,
            "usd_per_million_output_tokens": usd_per_million(
                econ.capex_usd_per_hour, r.devices, tok
            ),
            "joules_per_output_token": joules_per_token(econ.power_W, r.devices, tok),
        }
