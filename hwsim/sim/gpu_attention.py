"""GPU mapper for attention: times a :mod:`hwsim.plan.attention` tile plan on a GPU device.

The plan says which CTAs exist, how many KV (or Q) steps each runs and which bytes and FLOPs
each step moves; the kernel profile (:mod:`hwsim.sim.kernel_profiles`) says how the kernel
uses the SM. This module turns both into :class:`hwsim.sim.gpu.CtaLaunch` es and plays them on
the device's SMs, L2 and HBM (:mod:`hwsim.sim.gpu`).

Cost of one inner-loop step on one SM (seconds; ``R``, ``E``, ``V`` are one SM's share of the
chip's tensor FLOP/s, special-function op/s and FP32 ALU instruction/s)::

    t_mma  = matmul FLOPs of the whole (padded) tile / (R · mma_efficiency)
    t_smax = scores / E  +  scores · valu_ops / V          (+ mask ops on partial tiles)
    t_step = max(t_mma, o · t_smax) + (1 - o) · t_smax      (o = softmax_overlap)
    fill   = min(t_mma, o · t_smax)                         (first softmax / last PV, once)

a fraction ``o`` of the softmax runs beside the matmuls (FA3's ping-pong), the rest is on the
critical path; FA2 (o = 0) pays matmul plus softmax and an ideal overlap (o = 1) the larger. Tiles
are computed whole (an edge tile costs a full tile: tile quantisation), while bytes are the
plan's exact bytes (TMA does not fetch out-of-bounds rows). Each CTA also pays
``tile_overhead_cycles`` and each launch ``launch_overhead``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hwsim.plan.attention import (
    AttentionPlan,
    AttentionShape,
    KernelPlan,
    flash_flops,
)
from hwsim.plan.attention import plan_attention as _plan
from hwsim.plan.attention_size import fewer_ctas_hint, plan_cta_count
from hwsim.sim.budget import check_budget
from hwsim.sim.engine import Engine, TraceEvent
from hwsim.sim.gpu import CtaLaunch, GpuRun, build_gpu
from hwsim.sim.gpu_paths import (
    MatrixRate,
    SmRates,
    operand_bytes,
    register_limits,
    register_notes,
    sm_rates,
)
from hwsim.sim.kernel_profiles import AttentionProfile, load_attention_profile, profile_key
from hwsim.sim.trust import Trust, trust_for
from hwsim.spec.device import Device
from hwsim.spec.errors import SpecError

DETAILS = ("cta", "tile")
#: CTA detail plays at most this many lockstep cohorts per launch (a divisor of the SM count
#: CTAs each): 86k CTAs of the FA3 table in ~1 s, a 1M-token prefill in seconds; the 36-row
#: suite moves < 1 % against every CTA alone (docs/attention-sim.md)
MAX_COHORTS = 1000
#: simpy events per CTA (CTA detail) and per inner step (tile detail), for the budget check
_EVENTS_PER_CTA = 16
_EVENTS_PER_STEP = 9


@dataclass(frozen=True)
class KernelTiming:
    """One launch: its time, CTAs, waves (CTAs ÷ resident slots) and L2 reuse hits."""

    name: str
    time_s: float
    ctas: int
    waves: float
    steps: int
    reuse_hits: int


@dataclass(frozen=True)
class AttentionTrace:
    """What the trace and figure writers need: spans of the traced SMs and kernels, and the
    carried rate of every link over time."""

    spans: tuple[TraceEvent, ...]
    rate_log: tuple[tuple[float, tuple[float, ...]], ...]
    link_names: tuple[str, ...]
    link_bandwidths_Bps: tuple[float, ...]
    traced_sms: tuple[int, ...]


@dataclass(frozen=True)
class AttentionSimResult:
    """Timing of one attention problem on one device (SI units)."""

    device: str
    kernel: str
    profile: str
    detail: str
    shape: AttentionShape
    time_s: float
    flash_flops: float  #: FlashAttention benchmark convention (for ``tflops``)
    flops: float  #: matmul FLOPs the plan computes (edge tiles at their real size)
    exp_ops: float
    bytes: dict[str, float]  #: per memory level (device names)
    utilization: dict[str, float]  #: compute, special and each memory level
    bound: str
    roofline_time_s: float  #: max(flops/peak, exp/special, bytes/bandwidth per level)
    events: int
    wall_s: float
    kernels: tuple[KernelTiming, ...]
    plan: dict[str, Any]
    notes: tuple[str, ...] = ()
    trace: AttentionTrace | None = field(default=None, repr=False, compare=False)
    matrix_path: MatrixRate | None = None  #: the matrix instructions and their spec rate
    trust: Trust | None = None  #: calibrated or not, and the error to expect

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
            "matrix_path": self.matrix_path.to_dict() if self.matrix_path else None,
            **(self.trust.to_dict() if self.trust else {}),
            "notes": list(self.notes),
        }


def _padded_step(kp: KernelPlan) -> tuple[float, float]:
    """(matmul FLOPs, score elements) of one whole tile step of ``kp``: what the hardware
    computes for every step, edge tiles included. Not in the plan, which counts edge tiles at
    their real size; equal to it when the shape is a multiple of the blocks."""
    s, bo, bi = kp.shape, kp.block_outer, kp.block_inner
    if kp.pack > 1:  # GQA-packed Q tile: the group's rows padded to the 16-row MMA tile
        bo = -(-kp.pack * bo // 16) * 16
    d, dv = s.head_dim, s.dv
    per_role = {
        "fwd": (2 * bo * bi * (d + dv), bo * bi),
        "fwd_split": (2 * bo * bi * (d + dv), bo * bi),
        "bwd": (2 * bo * bi * (3 * d + 2 * dv), bo * bi),
        "naive_qk": (2 * bo * bi * d, 0),
        "naive_pv": (2 * bo * bi * dv, 0),
    }
    f, sc = per_role.get(kp.role, (0, 0))
    return float(f), float(sc)


def _inner_tokens(kp: KernelPlan) -> np.ndarray:
    n_inner = kp.shape.seqlen_kv if kp.outer == "q" else kp.shape.seqlen_q
    lo, hi = kp.inner_lo, kp.inner_hi
    return np.where(hi > lo, np.minimum(hi * kp.block_inner, n_inner) - lo * kp.block_inner, 0)


def _groups(kp: KernelPlan) -> tuple[np.ndarray, np.ndarray]:
    """Reuse group of each CTA's streamed bytes and each group's footprint (bytes)."""
    s = kp.shape
    e, ob = s.elem_bytes, s.out_bytes
    if kp.role in ("fwd", "fwd_split", "naive_qk", "naive_pv"):
        per_tok = {"naive_qk": s.head_dim * e, "naive_pv": s.dv * e}.get(
            kp.role, (s.head_dim + (0 if s.kv_shared else s.dv)) * e
        )
        kvh = kp.cta_head // s.group
        g = (kp.cta_batch * s.kv_heads + kvh) * kp.num_splits + kp.cta_split
        n = s.batch * s.kv_heads * kp.num_splits
        return g.astype(np.int64), np.full(n, s.seqlen_kv * per_tok / kp.num_splits)
    if kp.role == "bwd":
        g = kp.cta_batch * s.heads + kp.cta_head
        per_tok = s.head_dim * e + s.dv * ob + 8 + s.head_dim * 4
        return g.astype(np.int64), np.full(s.batch * s.heads, float(s.seqlen_q * per_tok))
    return np.full(kp.n_cta, -1, np.int64), np.zeros(1)


def _order(kp: KernelPlan, prof: AttentionProfile, gbytes: np.ndarray, l2_bytes: float) -> tuple:
    """(issue order, dynamic?) for the kernel's scheduler."""
    s = kp.shape
    sched = prof.scheduler
    if s.masked and prof.lpt_when_masked and kp.role in ("fwd", "fwd_split", "bwd"):
        sched = "lpt"
    if sched == "grid":  # plan order: outer block fastest, then split, batch, head
        return np.arange(kp.n_cta), True
    hb = kp.cta_batch.astype(np.int64) * s.heads + kp.cta_head
    if sched == "static":  # FA3: outer block fastest, then head, then batch
        return np.lexsort((kp.cta_block, kp.cta_split, kp.cta_head, kp.cta_batch)), False
    # lpt: heads in sections whose K/V fit the usable L2, longest CTA first within a section
    per = float(gbytes.max()) if len(gbytes) else 0.0
    fit = max(1, int(l2_bytes // per)) if per > 0 else 1
    section = (1 << int(math.log2(fit))) * (s.group if kp.role != "bwd" else 1)
    return np.lexsort((hb % section, -kp.n_steps, kp.cta_split, hb // section)), True


def _launch(
    kp: KernelPlan, prof: AttentionProfile, r: SmRates, l2_usable: float, slots: int
) -> CtaLaunch:
    s = kp.shape
    n = np.maximum(kp.n_steps, 0)
    n_safe = np.maximum(n, 1)
    pro, loop, epi = kp.prologue, kp.loop, kp.epilogue
    mma_f, scores = _padded_step(kp)
    bwd = kp.role == "bwd"
    valu_ops = (prof.bwd_valu_ops if bwd else prof.softmax_valu_ops).value
    t_mma = mma_f / (r.mma_flops_bwd if bwd else r.mma_flops)
    warps = prof.warps(s.head_dim, bwd)
    if r.path.operands == "registers" and warps is not None:  # mma.sync/MFMA: via ldmatrix
        bo = -(-kp.pack * kp.block_outer // 16) * 16 if kp.pack > 1 else kp.block_outer
        ops = operand_bytes(kp.role, bo, kp.block_inner, s.head_dim, s.dv, s.elem_bytes, warps)
        t_mma = max(t_mma, ops / r.smem_Bps)
    t_smax = scores / r.exp_per_s + scores * valu_ops / r.valu_per_s
    t_mask = scores * prof.mask_valu_ops.value / r.valu_per_s
    ov = prof.overlap(bwd)

    def step_time(t_sm: float) -> float:
        # the overlappable part of the softmax runs beside the matmuls (ping-pong), the rest
        # (row max/sum reductions the next matmul waits for) is on the critical path
        return max(t_mma, ov * t_sm) + (1 - ov) * t_sm

    full, part = step_time(t_smax), step_time(t_smax + t_mask)
    step_s = np.where(n > 0, ((n - kp.n_partial) * full + kp.n_partial * part) / n_safe, 0.0)
    fill = np.where(n > 0, min(t_mma, ov * t_smax), 0.0)
    # prologue/epilogue compute: exps on the SFU, one ALU instruction per 4 bytes moved, and
    # the softmax ALU work of kernels that have no inner loop (naive softmax, combine)
    side_exp = pro.exp + epi.exp
    side_bytes = pro.global_read + epi.global_write + pro.global_write + epi.global_read
    no_loop = _padded_step(kp)[0] == 0 and kp.role not in ("naive_qk", "naive_pv")
    side_valu = side_bytes / 4 + (valu_ops * side_exp if no_loop else 0)
    drain = side_exp / r.exp_per_s + side_valu / r.valu_per_s
    if kp.role == "naive_pv":  # only V is shared by the Q blocks of a head; P is unique
        shared = _inner_tokens(kp) * s.dv * s.elem_bytes
        unique = loop.global_read + loop.global_write - shared
    elif kp.role == "bwd":  # Q, dO, LSE, D and the dQ accumulator are shared by a head
        shared, unique = loop.global_read + loop.global_write, np.zeros(kp.n_cta)
    else:  # K/V reads are shared; loop writes (naive S) are unique
        shared, unique = loop.global_read, loop.global_write
    group, gbytes = _groups(kp)
    order, dynamic = _order(kp, prof, gbytes, l2_usable)
    mc = int(prof.kv_multicast.value)
    n_outer = int(kp.cta_block.max()) + 1 if kp.n_cta else 0
    use_mc = (
        mc > 1
        and kp.role == "fwd"
        and not s.masked
        and s.elem_bytes == 2
        and s.head_dim >= prof.multicast_min_head_dim.value
        and n_outer % mc == 0
        and prof.data_movement == "tma"  # multicast is a TMA feature (cp.async cannot)
    )
    return CtaLaunch(
        name=kp.name,
        steps=n,
        step_s=step_s,
        fill_s=fill,
        drain_s=drain,
        overhead_s=np.asarray(prof.tile_overhead_cycles.value / r.clock_Hz),
        first_bytes=pro.global_read + pro.global_write,
        step_bytes=np.where(n > 0, shared / n_safe, 0.0),
        step_unique_bytes=np.where(n > 0, unique / n_safe, 0.0),
        store_bytes=epi.global_write + epi.global_read,
        group=group,
        group_bytes=gbytes,
        order=order,
        dynamic=dynamic,
        slots_per_sm=slots,
        prefetch=prof.prefetch_next_tile,
        stages=int(prof.stages.value),
        launch_overhead_s=prof.launch_overhead_s,
        multicast=mc if use_mc else 1,
        label=_labeller(kp),
    )


def _labeller(kp: KernelPlan) -> Callable[[int], str]:
    """Trace names of the CTAs of one launch."""

    def label(i: int) -> str:
        split = f" split{kp.cta_split[i]}" if kp.num_splits > 1 else ""
        return f"{kp.name} b{kp.cta_batch[i]} h{kp.cta_head[i]} blk{kp.cta_block[i]}{split}"

    return label


def plan_for(
    device: Device, shape: AttentionShape, prof: AttentionProfile, block_kv: int | None = None
) -> AttentionPlan:
    """The kernel's tile plan (SMEM and register file bound the tile); ``block_kv`` overrides
    the KV tile (an autotuning candidate)."""
    stages = int(prof.stages.value)
    acc = register_limits(device, shape, prof)
    return _plan(
        shape, device, kernel=prof.plan_kernel, stages=stages, block_kv=block_kv, acc_budget=acc
    )


def cta_count_for(
    device: Device, shape: AttentionShape, prof: AttentionProfile, block_kv: int | None = None
) -> int:
    """The CTAs of :func:`plan_for`'s plan, in O(1) (nothing is allocated)."""
    return plan_cta_count(
        shape,
        device,
        kernel=prof.plan_kernel,
        stages=int(prof.stages.value),
        block_kv=block_kv,
        acc_budget=register_limits(device, shape, prof),
    )


def simulate_attention(
    device: Device,
    shape: AttentionShape,
    kernel: str = "fa3",
    *,
    detail: str = "cta",
    trace: bool = False,
    trace_sms: int = 8,
    profile: AttentionProfile | None = None,
    device_name: str | None = None,
    max_cohorts: int = MAX_COHORTS,
    block_kv: int | None = None,
) -> AttentionSimResult:
    """Simulate ``shape`` with ``kernel`` on ``device``. ``detail="tile"`` simulates every tile
    step (small problems); ``trace`` keeps spans of the first ``trace_sms`` SMs and the links'
    traffic over time in ``result.trace``. ``profile`` overrides the YAML (used by the fit).
    ``max_cohorts`` bounds the CTA cohorts per launch at CTA detail (0: every CTA alone).
    ``block_kv`` overrides the KV tile of the plan (default: the largest that fits SMEM)."""
    if detail not in DETAILS:
        raise SpecError(f"expected one of {DETAILS}, got {detail!r}", key="detail")
    if device.kind != "gpu":
        raise SpecError(
            f"{device.name} is a '{device.kind}' device; the attention simulator maps GPUs",
            key="device",
        )
    t_wall = time.perf_counter()
    arch = device.arch
    key = profile_key(kernel, arch) if profile is None else kernel
    prof = profile or load_attention_profile(kernel, arch)
    notes: list[str] = []
    if prof.native_archs and arch not in prof.native_archs:
        notes.append(
            f"{kernel} is written for {', '.join(prof.native_archs)}; on {arch} this is what "
            "its algorithm would achieve, not a measured implementation"
        )
    rates, more = sm_rates(device, shape.dtype, prof)
    notes += more
    # the CTA count is arithmetic: refuse before a plan of billions of CTAs is allocated
    n_ctas = cta_count_for(device, shape, prof, block_kv)
    check_budget(n_ctas * _EVENTS_PER_CTA, cheaper_mode_hint=fewer_ctas_hint(n_ctas))
    plan = plan_for(device, shape, prof, block_kv)
    n_ctas = plan.n_ctas()
    n_steps = sum(int(k.n_steps.sum()) for k in plan.kernels)
    est = n_ctas * _EVENTS_PER_CTA + (n_steps * _EVENTS_PER_STEP if detail == "tile" else 0)
    check_budget(est, cheaper_mode_hint="use --detail cta" if detail == "tile" else "")
    eng = Engine(log_rates=trace)
    fab = build_gpu(eng, device, prof.l2_bandwidth_fraction.value)
    n_sms = fab.n_sms
    traced = frozenset(range(min(trace_sms, n_sms))) if trace else frozenset()
    usable = prof.l2_usable_fraction.value
    run = GpuRun(eng, fab, l2_usable_fraction=usable, trace_sms=traced, max_cohorts=max_cohorts)
    l2_usable = fab.l2_capacity_bytes * usable
    slots = int(prof.ctas_per_sm.value)
    launches = [_launch(k, prof, rates, l2_usable, slots) for k in plan.kernels]
    notes += register_notes(device, prof, shape, plan.footprint_bytes)
    t = run.run(launches, detail)
    wall = time.perf_counter() - t_wall
    res = _summarise(device, shape, plan, prof, rates, fab, run, launches, t)
    tr = None
    if trace:
        tr = AttentionTrace(
            spans=tuple(run.spans),
            rate_log=tuple(eng.rate_log),
            link_names=tuple(lk.name for lk in eng.links),
            link_bandwidths_Bps=tuple(lk.bandwidth_Bps for lk in eng.links),
            traced_sms=tuple(sorted(traced)),
        )
    return AttentionSimResult(
        device=device_name or device.name,
        kernel=kernel,
        profile=key,
        detail=detail,
        shape=shape,
        time_s=t,
        events=eng.events,
        wall_s=wall,
        notes=tuple(notes),
        trace=tr,
        matrix_path=rates.path,
        trust=_trust(device, kernel, shape),
        **res,
    )


def _trust(device: Device, kernel: str, shape: AttentionShape) -> Trust:
    """The suite's error when (kernel, arch, pass) was calibrated, else the leave-one-out one;
    forward+backward takes the worse of the two passes."""
    passes = ("fwd", "bwd") if shape.pass_ == "fwd+bwd" else (shape.pass_,)
    parts = [trust_for("attention", device.arch, kernel, p) for p in passes]
    return max(parts, key=lambda t: (not t.calibrated, t.expected_error_pct))


def _summarise(
    device: Device,
    shape: AttentionShape,
    plan: AttentionPlan,
    prof: AttentionProfile,
    rates: SmRates,
    fab: Any,
    run: GpuRun,
    launches: list[CtaLaunch],
    t: float,
) -> dict[str, Any]:
    n_sms = fab.n_sms
    flops, exps = float(plan.flops()), float(plan.exp_ops())
    onchip = plan.level_names.get("onchip", "smem")
    by_level = {
        fab.hbm.name: fab.hbm.bytes_moved,
        fab.l2.name: fab.l2.bytes_moved,
        onchip: float(plan.bytes_by_level()["onchip"]),
    }
    peak = rates.peak_flops
    sfu = rates.exp_per_s * n_sms
    bw = {
        fab.hbm.name: fab.hbm.bandwidth_Bps,
        fab.l2.name: fab.l2.bandwidth_Bps,
        onchip: device.level_bandwidth_Bps(onchip)
        if onchip in {m.name for m in device.memory}
        else math.inf,
    }
    times = {"compute": flops / peak, "special": exps / sfu}
    times.update({lvl: by_level[lvl] / bw[lvl] for lvl in by_level})
    util = {k: v / t if t > 0 else 0.0 for k, v in times.items()}
    top = max(util, key=lambda k: util[k])
    bound = top if util[top] >= 0.5 else "latency"
    kernels = tuple(
        KernelTiming(
            r.name,
            r.time_s,
            r.ctas,
            r.ctas / (n_sms * ln.slots_per_sm),
            int(np.sum(ln.steps)),
            r.reuse_hits,
        )
        for r, ln in zip(run.results, launches, strict=True)
    )
    return {
        "flash_flops": flash_flops(shape),
        "flops": flops,
        "exp_ops": exps,
        "bytes": by_level,
        "utilization": util,
        "bound": bound,
        "roofline_time_s": max(times.values()),
        "kernels": kernels,
        "plan": plan.summary(),
    }
