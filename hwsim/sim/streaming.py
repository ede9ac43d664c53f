"""Memory-bound operators (softmax, norms, activations, residual add) timed on the fluid engine.

Same actors as the GEMM mapper (:mod:`hwsim.sim.gpu_gemm`): a host actor (dispatch + launch, and
post-launch host work that overlaps the kernel) and the SMs, one process step per wave of
resident CTAs. A wave pays the per-CTA fixed cost, then streams its bytes over L2 and HBM at the
achievable bandwidth (capped by its active SMs' L2 ports; a looped reduction further by
``looped_fraction``) while its vector/special-function work runs; the wave ends when both end.
Times in seconds, bytes in bytes.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import asdict, dataclass, field
from typing import Any

from hwsim.plan.gpu_view import gpu_view
from hwsim.plan.streaming import (
    OPS,
    ElementwiseProfile,
    StreamPlan,
    elementwise_profile,
    plan_stream,
)
from hwsim.sim.calibration import Calibration, calibration, custom
from hwsim.sim.engine import Engine, TraceEvent
from hwsim.sim.gpu_gemm import gemm_links
from hwsim.spec.device import Device
from hwsim.spec.load import load_device


@dataclass(frozen=True)
class OpResult:
    """Predicted time of one memory-bound operator."""

    device: str
    arch: str
    profile: str
    op: str
    m: int
    n: int
    dtype: str
    elements: int
    time_s: float  #: as a framework call measures it: host launch + kernel (≥ host floor)
    kernel_s: float
    launch_s: float
    roofline_s: float  #: compulsory bytes / HBM peak
    gelems_per_s: float  #: elements / time_s / 1e9 (the reference tables' metric)
    bytes: dict[str, float]
    bound: str  #: hbm | compute | overhead: the largest share of *kernel* time
    call_bound: str  #: 'launch' when host launch/tail outweigh the kernel in time_s, else bound
    utilization: dict[str, float]
    events: int
    plan: dict[str, Any]
    trace: tuple[TraceEvent, ...] = field(default=(), repr=False)
    #: where the profile values came from: fitted on this arch, inherited, cited (see
    #: hwsim.sim.calibration); None only for results built without a profile entry
    calibration: Calibration | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("trace")
        return d


def simulate_op(
    device: Device | str,
    op: str,
    m: int,
    n: int | None = None,
    dtype: str = "fp16",
    *,
    trace: bool = False,
    profile: ElementwiseProfile | None = None,
) -> OpResult:
    """Plan and simulate ``op`` on an ``[m, n]`` tensor (``m`` elements for elementwise ops when
    ``n`` is None) on ``device``."""
    dev = load_device(device) if isinstance(device, str) else device
    prof, key = elementwise_profile(dev) if profile is None else (profile, "custom")
    kp = prof.for_op(op) if op in OPS else None  # plan_stream reports unknown ops
    row = kp.row_on_chip.value if kp is not None and kp.row_on_chip is not None else None
    plan = plan_stream(dev, op, m, n, dtype, row)
    return run_stream(dev, plan, prof, key, trace=trace)


def run_stream(
    dev: Device, plan: StreamPlan, prof: ElementwiseProfile, key: str, *, trace: bool = False
) -> OpResult:
    kp = prof.for_op(plan.op)
    gv = gpu_view(dev, 0.0)
    eta = kp.hbm_fraction.value
    launch, tail, cta = kp.host_launch.value, kp.host_tail.value, kp.cta_overhead.value
    vec = dev.compute.vector_fp32.value if dev.compute.vector_fp32 else dev.peak_flops("fp32")
    spec = dev.compute.special.value if dev.compute.special else vec / 4
    eng = Engine(trace=trace)
    l2, hbm = gemm_links(eng, gv, eta)
    env = eng.env
    acc = {"hbm": 0.0, "compute": 0.0, "overhead": 0.0}
    marks: dict[str, float] = {}
    loop_cap = kp.looped_fraction.value * hbm.bandwidth_Bps if plan.reads > 1 else float("inf")

    def gpu() -> Generator[Any, Any, None]:
        yield eng.delay(launch)
        marks["start"] = env.now
        for w in plan.waves:
            c = w.count
            t0 = env.now
            cap = min(w.active_units * gv.unit_port_Bps, loop_cap)
            mem = eng.transfer(
                [l2, hbm],
                w.l2_bytes * c,
                weights=[1.0, w.hbm_bytes / w.l2_bytes],
                max_rate_Bps=cap,
                # resident CTAs overlap: only the first bytes of the kernel wait an HBM latency
                latency_s=hbm.latency_s if w.index == 0 else 0.0,
                label=f"wave {w.index}",
            )
            t_cmp = max(w.flops / vec, w.special / spec) * c
            # resident CTAs overlap one another's fixed costs with streaming: a wave lasts
            # as long as the longest of its fixed cost, its bytes and its vector work
            yield env.all_of([mem, eng.delay(t_cmp), eng.delay(cta * c)])
            acc["overhead"] += cta * c
            acc["hbm"] += (
                max(w.hbm_bytes / hbm.bandwidth_Bps, w.l2_bytes / min(l2.bandwidth_Bps, cap)) * c
            )
            acc["compute"] += t_cmp
            if eng.tracing:
                eng.trace.append(
                    TraceEvent(
                        f"{gv.unit_name}s",
                        f"wave {w.index}" + (f" x{c}" if c > 1 else ""),
                        t0,
                        env.now,
                        {"ctas": float(w.ctas)},
                    )
                )
        marks["end"] = env.now

    def host() -> Generator[Any, Any, None]:
        yield eng.delay(launch + tail)

    env.process(gpu())
    env.process(host())
    total = eng.run()
    kernel = marks["end"] - marks["start"]
    ks = max(kernel, 1e-30)
    bound = max(acc, key=lambda s: acc[s])
    call_bound = "launch" if total - kernel > kernel else bound
    return OpResult(
        device=dev.name,
        arch=dev.arch,
        profile=key,
        op=plan.op,
        m=plan.m,
        n=plan.n,
        dtype=plan.dtype,
        elements=plan.elements,
        time_s=total,
        kernel_s=kernel,
        launch_s=launch,
        roofline_s=max(plan.compulsory_bytes / gv.hbm_Bps, plan.flops / vec),
        gelems_per_s=plan.elements / total / 1e9,
        bytes={"hbm": plan.hbm_bytes, "l2": plan.l2_bytes, "compulsory": plan.compulsory_bytes},
        bound=bound,
        call_bound=call_bound,
        utilization={
            "hbm": plan.hbm_bytes / (ks * gv.hbm_Bps),
            "vector": plan.flops / (ks * vec),
        },
        events=eng.events,
        plan=plan.summary(),
        trace=tuple(eng.trace),
        calibration=(
            custom("elementwise", dev.arch)
            if key == "custom"
            else calibration("elementwise", dev.arch, OPS[plan.op].profile)
        ),
    )
