"""The what-if engine as a metric kind: one simulated whole-model prefill or decode step
(:func:`hwsim.serve.api.serve_step`) per unique (device, model, batch, context, layout).

It reads the layout axis (``tp``, ``ep``, ``pp``, ``dp``), so a sweep over spec overrides ×
batch × layout reproduces ``hwsim whatif``/``hwsim decode`` point by point, cached and spread over
the executor's workers. The serve layer is imported when a point is evaluated.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from hwsim.spec.device import Device
from hwsim.spec.override_paths import PROFILE_PREFIX
from hwsim.sweep.kinds import MetricKind, Scalar, register_kind
from hwsim.sweep.moe_kinds import cluster_overrides, cluster_with

if TYPE_CHECKING:
    from hwsim.spec.cluster import Cluster


class ServeOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    phase: Literal["decode", "prefill"] = "decode"
    cluster: str | None = Field("default", description="cluster name; 'default': the device's")
    overlap: Literal["auto", "none", "dual"] = "auto"
    mtp: int = Field(0, ge=0, description="speculative draft tokens per step")
    mtp_acceptance: float = Field(0.85, ge=0.0, le=1.0)


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
        "batch": 1,
        "context": 2048,
        "dtype": "bf16",
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
