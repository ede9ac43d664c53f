"""One attention problem on a wafer-scale, dataflow or LPU device, in the result shape of the
GPU attention simulator (:class:`hwsim.sim.gpu_attention.AttentionSimResult`), so that
``hwsim attention --device cerebras-wse3 …`` answers with the same JSON contract as a GPU.

The time is the kind's mapper timing of :class:`hwsim.plan.workload.Attention` (prefill when
the query is longer than one token, decode otherwise); the tile plan, sized from the device's
own SRAM, is reported as on GPUs (it is the plan the functional executor runs). Only the
forward pass is mapped: these devices serve inference.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from hwsim.plan.attention import AttentionShape, flash_flops, plan_attention
from hwsim.plan.workload import Attention
from hwsim.sim.mapper import mapper_for
from hwsim.spec.device import Device
from hwsim.spec.errors import SpecError


@dataclass(frozen=True)
class SpatialKernel:
    """One mapped op, in the place of a GPU kernel launch."""

    name: str
    time_s: float
    ctas: int
    waves: float


@dataclass(frozen=True)
class SpatialAttentionResult:
    """Same fields and ``to_dict`` keys as the GPU attention result (SI units)."""

    device: str
    kernel: str
    profile: str
    detail: str
    shape: AttentionShape
    time_s: float
    flash_flops: float
    flops: float
    exp_ops: float
    bytes: dict[str, float]
    utilization: dict[str, float]
    bound: str
    roofline_time_s: float
    events: int
    wall_s: float
    kernels: tuple[SpatialKernel, ...]
    plan: dict[str, Any]
    notes: tuple[str, ...] = ()
    trace: None = field(default=None, repr=False, compare=False)

    @property
    def tflops(self) -> float:
        return self.flash_flops / self.time_s / 1e12

    def to_dict(self) -> dict[str, Any]:
        s = self.shape
        return {
            "device": self.device,
            "kernel": self.kernel,
            "profile": self.profile,
            "detail": self.detail,
            "shape": {
                "batch": s.batch,
                "heads": s.heads,
                "kv_heads": s.kv_heads,
                "seqlen_q": s.seqlen_q,
                "seqlen_kv": s.seqlen_kv,
                "head_dim": s.head_dim,
                "head_dim_v": s.dv,
                "causal": s.causal,
                "dtype": s.dtype,
                "pass": s.pass_,
            },
            "time_s": self.time_s,
            "tflops": self.tflops,
            "flash_flops": self.flash_flops,
            "flops": self.flops,
            "exp_ops": self.exp_ops,
            "bytes": self.bytes,
            "utilization": self.utilization,
            "bound": self.bound,
            "roofline_time_s": self.roofline_time_s,
            "events": self.events,
            "wall_s": self.wall_s,
            "kernels": [k.__dict__ for k in self.kernels],
            "plan": self.plan,
            "notes": list(self.notes),
        }


def simulate_attention_spatial(
    device: Device,
    shape: AttentionShape,
    *,
    device_name: str | None = None,
    kernel: str = "",
    profile_overrides: Sequence[str] = (),
) -> SpatialAttentionResult:
    """Time ``shape`` (forward) on a non-GPU ``device`` through its mapper (with its profile
    changed by ``profile_overrides``, ``"path=value"``, for a what-if)."""
    if device.kind == "gpu":
        raise SpecError(f"{device.name} is a GPU: use hwsim.sim.gpu_attention", key="device")
    if shape.pass_ != "fwd":
        raise SpecError(
            f"{device.name} ('{device.kind}') is mapped for inference: forward pass only, got "
            f"{shape.pass_!r}",
            key="--pass",
        )
    t0 = time.perf_counter()
    mapper = mapper_for(device)
    if profile_overrides:
        mapper = mapper.with_profile(profile_overrides)
    op = Attention(shape, "decode" if shape.seqlen_q == 1 else "prefill")
    t = mapper.time(op)  # raises SpecError (with the devices needed) when the KV cache won't fit
    plan = plan_attention(shape, device)  # tiles from the device's own SRAM, as the mapper's
    s = shape
    exps = float(s.batch) * s.heads * s.seqlen_q * s.seqlen_kv / (2 if s.causal else 1)
    dtype = "fp8" if s.dtype.startswith("fp8") else s.dtype
    peak = device.peak_flops(dtype)
    util = {"compute": t.flops / (t.time_s * peak)}
    roof = t.flops / peak
    for level, b in t.bytes_by_level.items():
        try:
            bw = device.level_bandwidth_Bps(level)
        except SpecError:
            continue  # a link kind (the wafer's mesh), not a memory level
        util[level] = b / (t.time_s * bw)
        roof = max(roof, b / bw)
    summary = plan.summary()
    notes = list(t.notes)
    if kernel:
        notes.append(f"--kernel {kernel} names a GPU kernel profile; {device.kind} uses its mapper")
    return SpatialAttentionResult(
        device=device_name or device.name,
        kernel=f"{device.kind}-mapper",
        profile=mapper.profile_key,
        detail="op",
        shape=shape,
        time_s=t.time_s,
        flash_flops=flash_flops(shape),
        flops=t.flops,
        exp_ops=exps,
        bytes=dict(t.bytes_by_level),
        utilization=util,
        bound=t.bound,
        roofline_time_s=roof,
        events=t.events,
        wall_s=time.perf_counter() - t0,
        kernels=(SpatialKernel(op.phase, t.time_s, 0, 0.0),),
        plan={
            "block_q": plan.block_q,
            "block_kv": plan.block_kv,
            "budget_bytes": plan.budget_bytes,
            "footprint_bytes": summary["footprint_bytes"],
            "level_names": plan.level_names,
            "bytes": summary["bytes"],
            "source": t.source,
        },
        notes=tuple(notes),
    )
