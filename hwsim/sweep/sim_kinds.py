"""Simulator-backed metric kinds: one simulated sub-problem per unique (device, shape).

The simulators are imported when a point is evaluated, so the analytic sweep path works (and
imports fast) without them. :meth:`subproblem` maps a point's workload parameters to the exact
problem the simulator sees (heads per device under TP, ``seq_len`` expanded), so points that
differ only in parameters the simulator ignores share one simulation.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict

from hwsim.spec.device import Device
from hwsim.spec.errors import SpecError
from hwsim.sweep.kinds import _ATTN_PARAMS, MetricKind, Scalar, register_kind

_SIM_CODE = (
    "hwsim/sim",
    "hwsim/plan",
    "hwsim/spec",
    "hwsim/sweep/sim_kinds.py",
    "devices/profiles",
)

#: what the GPU simulators read: compute units and rates, the memory hierarchy, the arch
_SIM_DEVICE = ("kind", "arch", "compute", "memory")


class AttentionSimOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    kernel: str = "fa3"  #: kernel profile (devices/profiles/attention.yaml)
    detail: Literal["cta", "tile"] = "cta"


@register_kind
class AttentionSim(MetricKind):
    """Attention timed by the GPU attention simulator (:func:`hwsim.sim.gpu_attention.
    simulate_attention`): tile plan, SMs, L2 and HBM on the fluid engine."""

    name = "attention_sim"
    description = "attention time from the GPU attention simulator (one run per unique shape)"
    vectorised = False
    params: ClassVar[dict[str, Scalar | None]] = {**_ATTN_PARAMS, "causal": False}
    metrics: ClassVar[dict[str, str]] = {
        "time_s": "simulated kernel time, s",
        "bound": "resource with the highest utilisation (or 'latency')",
        "tflops": "FlashAttention-convention TFLOP/s",
        "roofline_time_s": "the simulator's own roofline time, s",
    }
    code_paths = _SIM_CODE
    device_fields = _SIM_DEVICE
    Options: ClassVar[type[BaseModel]] = AttentionSimOptions

    def subproblem(self, params: Mapping[str, Any]) -> dict[str, Any]:
        tp = int(params["tp"])
        seq = int(params["seq_len"])
        heads, kv_heads = int(params["heads"]), int(params["kv_heads"])
        if heads % tp:
            raise SpecError(f"attention_sim: heads ({heads}) must be divisible by tp ({tp})")
        head_dim = int(params["head_dim"])
        dv = int(params["head_dim_v"] or 0) or head_dim
        return {
            "batch": int(params["batch"]),
            "heads": heads // tp,
            "kv_heads": max(kv_heads // tp, 1),
            "seqlen_q": seq if seq > 0 else int(params["q_len"]),
            "seqlen_kv": seq if seq > 0 else int(params["context"]),
            "head_dim": head_dim,
            "head_dim_v": dv,
            "causal": bool(params["causal"]),
            "dtype": str(params["dtype"]),
        }

    def evaluate_point(
        self, device: Device, params: Mapping[str, Any], seed: int
    ) -> dict[str, Any]:
        from hwsim.plan.attention import AttentionShape
        from hwsim.sim.gpu_attention import simulate_attention

        opts = self.options
        assert isinstance(opts, AttentionSimOptions)
        res = simulate_attention(device, AttentionShape(**params), opts.kernel, detail=opts.detail)
        return {
            "time_s": res.time_s,
            "bound": res.bound,
            "tflops": res.tflops,
            "roofline_time_s": res.roofline_time_s,
        }


@register_kind
class GemmSim(MetricKind):
    """GEMM timed by the GPU GEMM simulator (:func:`hwsim.sim.gpu_gemm.simulate_gemm`);
    ``tp`` splits n."""

    name = "gemm_sim"
    description = "GEMM time from the GPU GEMM simulator (one run per unique shape)"
    vectorised = False
    params: ClassVar[dict[str, Scalar | None]] = {
        "m": None,
        "n": None,
        "k": None,
        "dtype": "bf16",
        "tp": 1,
    }
    metrics: ClassVar[dict[str, str]] = {
        "time_s": "call time (host launch + kernel), s",
        "kernel_s": "kernel time alone, s",
        "bound": "compute | hbm | l2 | overhead",
        "tflops": "2mnk / time_s / 1e12",
    }
    code_paths = _SIM_CODE
    device_fields = _SIM_DEVICE

    def subproblem(self, params: Mapping[str, Any]) -> dict[str, Any]:
        tp, n = int(params["tp"]), int(params["n"])
        if n % tp:
            raise SpecError(f"gemm_sim: n ({n}) must be divisible by tp ({tp})")
        return {
            "m": int(params["m"]),
            "n": n // tp,
            "k": int(params["k"]),
            "dtype": str(params["dtype"]),
        }

    def evaluate_point(
        self, device: Device, params: Mapping[str, Any], seed: int
    ) -> dict[str, Any]:
        from hwsim.sim.gpu_gemm import simulate_gemm

        res = simulate_gemm(device, params["m"], params["n"], params["k"], params["dtype"])
        return {
            "time_s": res.time_s,
            "kernel_s": res.kernel_s,
            "bound": res.bound,
            "tflops": res.tflops,
        }
