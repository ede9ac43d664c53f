"""GEMM on a GPU, timed by the fluid engine at wave granularity.

The mapper turns a :class:`~hwsim.plan.gemm.GemmPlan` into simpy processes:

* a **host** actor: the framework's dispatch and launch (``host_launch``) before the kernel can
  start, and host work after the launch that overlaps the kernel (``host_tail``); a call can
  never return before ``host_launch + host_tail``;
* the **SMs** as one actor per wave: a wave pays the fixed per-CTA cost (prologue, pipeline
  fill, epilogue sync) once, then streams its operand bytes over ``l2`` (and the share that
  misses L2 over ``hbm``) while the busiest SM computes its padded tiles. The wave ends when both
  are done, and the next wave starts.

Links are the chip's L2 (device bandwidth) and HBM at the profile's achievable fraction of peak;
a wave's transfer is further capped by its active SMs' L2 ports (few CTAs cannot saturate the
chip). Each wave costs a few simulator events, so a prediction costs O(waves), never
O(tiles x k-steps); above ``MERGE_ABOVE`` waves, runs of identical waves are simulated as one
step of ``count`` times the work (exact, since waves run back to back), except when tracing.
All times in seconds, rates in FLOP/s and B/s.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import asdict, dataclass, field
from typing import Any

from hwsim.plan.gemm import GemmPlan, GemmProfile, gemm_profile, merged, plan_gemm
from hwsim.plan.gpu_view import GpuView, gpu_view
from hwsim.sim.calibration import Calibration, calibration, custom
from hwsim.sim.engine import Engine, TraceEvent
from hwsim.sim.trust import Trust, trust_for
from hwsim.spec.device import Device
from hwsim.spec.load import load_device

#: Merge runs of identical waves when a GEMM has more waves than this (exact; fewer events).
MERGE_ABOVE = 64


@dataclass(frozen=True)
class GemmResult:
    """Predicted time of one GEMM ``[m,k] @ [k,n]`` and where it went."""

    device: str
    arch: str
    profile: str  #: the gemm.yaml entry used (the arch, or 'default')
    m: int
    n: int
    k: int
    dtype: str
    time_s: float  #: as a framework call measures it: host launch + kernel (≥ host floor)
    kernel_s: float  #: GPU time of the kernel alone (what a CUDA graph would replay)
    launch_s: float  #: host dispatch + launch before the kernel starts
    roofline_s: float  #: max(2mnk / peak, compulsory bytes / HBM peak)
    flops: float
    tflops: float  #: 2mnk / time_s / 1e12, the reference tables' metric
    bytes: dict[str, float]  #: per memory level: hbm, l2, smem
    bound: str  #: compute | hbm | l2 | overhead: the largest share of *kernel* time
    call_bound: str  #: 'launch' when host launch/tail outweigh the kernel in time_s, else bound
    utilization: dict[str, float]  #: achieved / peak over kernel_s: compute, hbm, l2
    breakdown_s: dict[str, float]  #: compute, memory, cta_overhead, launch summed over waves
    events: int
    plan: dict[str, Any]
    trace: tuple[TraceEvent, ...] = field(default=(), repr=False)
    #: where the profile values came from: fitted on this arch, inherited, cited (see
    #: hwsim.sim.calibration); None only for results built without a profile entry
    calibration: Calibration | None = None
    trust: Trust | None = None  #: calibrated or not, and the error to expect (percent)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("trace")
        d.pop("trust")
        if self.trust is not None:
            d.update(self.trust.to_dict())
        return d


def gemm_links(eng: Engine, gv: GpuView, hbm_fraction: float) -> tuple[Any, Any]:
    """The L2 and HBM links of a GPU (HBM at its achievable bandwidth)."""
    l2 = eng.link("l2", gv.l2_Bps, 0.0, kind="l2")
    hbm = eng.link("hbm", hbm_fraction * gv.hbm_Bps, gv.hbm_latency_s, kind="hbm")
    return l2, hbm


def simulate_gemm(
    device: Device | str,
    m: int,
    n: int,
    k: int,
    dtype: str = "fp16",
    *,
    trace: bool = False,
    profile: GemmProfile | None = None,
) -> GemmResult:
    """Plan and simulate ``[m,k] @ [k,n]`` in ``dtype`` on ``device`` (a Device or a name)."""
    dev = load_device(device) if isinstance(device, str) else device
    prof, key = gemm_profile(dev) if profile is None else (profile, "custom")
    plan = plan_gemm(dev, m, n, k, dtype, prof)
    return run_plan(dev, plan, prof, key, trace=trace)


def run_plan(
    dev: Device, plan: GemmPlan, prof: GemmProfile, key: str, *, trace: bool = False
) -> GemmResult:
    """Time an existing plan on the engine."""
    gv = gpu_view(dev, prof.register_file.value)
    eta = prof.hbm_fraction.value
    unit_rate = prof.matrix_fraction_for(plan.dtype) * dev.peak_flops(plan.dtype) / gv.units
    launch, tail, cta = prof.host_launch.value, prof.host_tail.value, prof.cta_overhead.value
    eng = Engine(trace=trace)
    l2, hbm = gemm_links(eng, gv, eta)
    env = eng.env
    acc = {"compute": 0.0, "hbm": 0.0, "l2": 0.0, "cta_overhead": 0.0}
    marks: dict[str, float] = {}

    def gpu() -> Generator[Any, Any, None]:
        yield eng.delay(launch)
        marks["start"] = env.now
        # merging identical waves is exact (waves run alone); keep every wave in a trace
        for w in plan.waves if eng.tracing else merged(plan.waves, MERGE_ABOVE):
            c = w.count
            t0 = env.now
            acc["cta_overhead"] += cta * c
            port = w.active_units * gv.unit_port_Bps
            # the wave's fixed CTA cost comes first; then its bytes (after one HBM latency for
            # the first ones) and its math proceed together
            mem = eng.transfer(
                [l2, hbm],
                w.l2_bytes * c,
                weights=[1.0, w.hbm_bytes / w.l2_bytes if w.l2_bytes > 0 else 0.0],
                max_rate_Bps=port,
                latency_s=(cta + hbm.latency_s) * c,
                label=f"wave {w.index}" + (f" x{c}" if c > 1 else ""),
            )
            t_math = w.busy_flops * c / unit_rate
            t_smem = w.busy_smem_bytes * c / gv.smem_Bps
            comp = eng.delay(cta * c + max(t_math, t_smem))
            yield env.all_of([mem, comp])
            acc["compute"] += max(t_math, t_smem)
            acc["hbm"] += w.hbm_bytes * c / hbm.bandwidth_Bps
            acc["l2"] += w.l2_bytes * c / min(l2.bandwidth_Bps, port)
            if eng.tracing:
                eng.trace.append(
                    TraceEvent(
                        f"{gv.unit_name}s",
                        f"wave {w.index}" + (f" x{c}" if c > 1 else ""),
                        t0,
                        env.now,
                        {"ctas": float(w.ctas), "flops": w.flops * c},
                    )
                )
        if plan.reduction_bytes > 0:
            # split-K: partial tiles are summed by a streaming pass over the fp32 workspace
            t0 = env.now
            yield eng.transfer(
                [l2, hbm], plan.reduction_bytes, max_rate_Bps=gv.l2_Bps, label="split-k reduce"
            )
            acc["hbm"] += plan.reduction_bytes / hbm.bandwidth_Bps
            if eng.tracing:
                eng.trace.append(TraceEvent(f"{gv.unit_name}s", "split-k reduce", t0, env.now))
        marks["end"] = env.now

    def host() -> Generator[Any, Any, None]:
        yield eng.delay(launch + tail)

    env.process(gpu())
    env.process(host())
    total = eng.run()
    kernel = marks["end"] - marks["start"]
    peak = dev.peak_flops(plan.dtype)
    roof = max(plan.flops / peak, plan.compulsory_bytes / gv.hbm_Bps)
    shares = {
        "compute": acc["compute"],
        "hbm": acc["hbm"],
        "l2": acc["l2"],
        "overhead": acc["cta_overhead"],
    }
    bound = max(shares, key=lambda s: shares[s])
    call_bound = "launch" if total - kernel > kernel else bound
    ksafe = max(kernel, 1e-30)
    return GemmResult(
        device=dev.name,
        arch=dev.arch,
        profile=key,
        m=plan.m,
        n=plan.n,
        k=plan.k,
        dtype=plan.dtype,
        time_s=total,
        kernel_s=kernel,
        launch_s=launch,
        roofline_s=roof,
        flops=plan.flops,
        tflops=plan.flops / total / 1e12,
        bytes={
            "hbm": plan.hbm_bytes,
            "l2": plan.l2_read_bytes + plan.epilogue_bytes,
            "smem": sum(w.busy_smem_bytes * w.count for w in plan.waves),
            "compulsory": plan.compulsory_bytes,
        },
        bound=bound,
        call_bound=call_bound,
        utilization={
            "compute": plan.flops / (ksafe * peak),
            "hbm": plan.hbm_bytes / (ksafe * gv.hbm_Bps),
            "l2": (plan.l2_read_bytes + plan.epilogue_bytes) / (ksafe * gv.l2_Bps),
        },
        breakdown_s={
            "compute": acc["compute"],
            "hbm": acc["hbm"],
            "l2": acc["l2"],
            "cta_overhead": acc["cta_overhead"],
            "launch": launch,
        },
        events=eng.events,
        plan=plan.summary(),
        trace=tuple(eng.trace),
        calibration=custom("gemm", dev.arch) if key == "custom" else calibration("gemm", dev.arch),
        trust=trust_for("gemm", dev.arch),
    )
