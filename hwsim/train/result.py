"""The answer of ``hwsim train``: step time and its breakdown, rates, FLOPs, MFU, memory, and
the time, GPU-hours and cost of training a number of tokens.

FLOP definitions (stated in every result, ``flops_definition``):

* **model FLOPs** (``model_tflops_per_gpu``, ``mfu``): Megatron-Core's
  ``num_floating_point_operations``: weight matrices a token passes through (top-k experts),
  attention scores and values over the full ``s × s`` square (no causal halving), the LM head,
  forward + backward (3 passes); no recompute;
* **recompute-inclusive** (``hfu``): model FLOPs plus the forward FLOPs the recompute policy
  repeats (full: every layer's forward; selective: the attention core);
* ``mfu`` divides by the device's dense peak at ``--dtype`` (bf16, or fp8 for FP8 runs).

Breakdown (seconds of one step; they add up to ``step_time_s``): compute by category on the
busiest pipeline rank, exposed TP/CP/EP communication (what overlap did not hide), the pipeline
bubble (idle time of the busiest rank, point-to-point waits included), exposed data-parallel
communication, the optimizer, the exposed parameter all-gather, and the per-step overhead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hwsim.plan.train_layout import TrainLayout
from hwsim.plan.train_memory import (
    MemoryBreakdown,
    model_flops_per_token,
    recompute_flops_per_token,
)
from hwsim.plan.train_step import TrainSpec
from hwsim.sim.trust import Trust, trust_for
from hwsim.train.pipeline import PipelineResult
from hwsim.train.request import TrainRequest
from hwsim.train.timing import PassCost

if TYPE_CHECKING:
    from hwsim.sim.mapper import Mapper
    from hwsim.spec.device import Device
    from hwsim.spec.model import ModelConfig


@dataclass(frozen=True)
class StepEvent:
    """One interval of a step on a pipeline rank besides its tasks (seconds from the step's
    start): a collective (``category`` ``tp``, ``cp``, ``ep`` or ``dp``) where the simulation
    timed it, or the optimizer (``optimizer``); ``nbytes`` each rank moves."""

    rank: int
    category: str
    name: str
    start_s: float
    end_s: float
    nbytes: float = 0.0


FLOPS_DEFINITION = (
    "model FLOPs per Megatron-Core num_floating_point_operations: every weight matrix a token "
    "passes (top-k experts), attention over the full s x s square (no causal halving), LM head, "
    "x3 passes, no recompute; mfu against the dense peak at --dtype; hfu adds recomputed forwards"
)
SECONDS_PER_DAY = 86400.0


@dataclass(frozen=True)
class TrainResult:
    """One training step (SI units; per GPU unless named)."""

    model: str
    device: str
    gpus: int
    layout: TrainLayout
    schedule: str
    zero: int
    recompute: str
    dtype: str
    seqlen: int
    global_batch: int
    micro_batch: int
    micro_batches: int
    step_time_s: float
    tokens_per_step: float
    tokens_per_s_per_gpu: float
    model_tflops_per_gpu: float
    hw_tflops_per_gpu: float  #: recompute-inclusive
    mfu: float
    hfu: float
    peak_tflops: float
    bubble_fraction: float
    breakdown_s: dict[str, float]
    comm_s: dict[str, float]  #: communication busy time per category, busiest rank
    compute_s: dict[str, float]  #: compute busy time per op category, busiest rank
    busiest_rank: int  #: pipeline rank with the most busy time
    busiest_flops: float  #: hardware FLOPs that rank's GPU runs per step (simulator counts)
    memory: MemoryBreakdown
    simulated_peak_activation_bytes: float
    gpu_hours_per_trillion_tokens: float
    tokens: float | None
    days: float | None
    gpu_hours: float | None
    cost_usd: float | None
    wall_s: float
    notes: tuple[str, ...] = ()
    pipeline: PipelineResult | None = field(default=None, repr=False)
    #: with ``timeline``: every collective and optimizer step of each rank (the trace's
    #: communication tracks), in the order of the pipeline's tasks
    events: tuple[StepEvent, ...] = field(default=(), repr=False)
    #: how far to trust the step time: the training suite's MAPE on this architecture's rows,
    #: else the GEMM leave-one-out error (hwsim.sim.trust, devices/profiles/trust.yaml)
    trust: Trust | None = field(default=None, repr=False)

    @property
    def fits(self) -> bool:
        return self.memory.fits

    def to_dict(self) -> dict[str, Any]:
        """The JSON of ``hwsim train --json`` (keys the issue names, plus details)."""
        return {
            "model": self.model,
            "device": self.device,
            "gpus": self.gpus,
            "layout": {**self.layout.to_dict(), "str": str(self.layout)},
            "schedule": self.schedule,
            "zero": self.zero,
            "recompute": self.recompute,
            "dtype": self.dtype,
            "seqlen": self.seqlen,
            "global_batch": self.global_batch,
            "micro_batch": self.micro_batch,
            "micro_batches": self.micro_batches,
            "step_time_s": self.step_time_s,
            "tokens_per_step": self.tokens_per_step,
            "tokens_per_s_per_gpu": self.tokens_per_s_per_gpu,
            "model_tflops_per_gpu": self.model_tflops_per_gpu,
            "hw_tflops_per_gpu": self.hw_tflops_per_gpu,
            "mfu": self.mfu,
            "hfu": self.hfu,
            "peak_tflops": self.peak_tflops,
            "flops_definition": FLOPS_DEFINITION,
            "bubble_fraction": self.bubble_fraction,
            "breakdown": dict(self.breakdown_s),
            "comm_busy": dict(self.comm_s),
            "compute_by_category": dict(self.compute_s),
            "busiest_rank": self.busiest_rank,
            "busiest_gpu_flops": self.busiest_flops,
            "memory_per_gpu_bytes": self.memory.total,
            "memory": {**self.memory.to_dict(), "stage": self.memory.stage,
                       "capacity": self.memory.capacity, "fits": self.memory.fits,
                       "simulated_peak_activations": self.simulated_peak_activation_bytes},
            "gpu_hours_per_trillion_tokens": self.gpu_hours_per_trillion_tokens,
            "tokens": self.tokens,
            "days": self.days,
            "gpu_hours": self.gpu_hours,
            "cost_usd": self.cost_usd,
            "wall_s": self.wall_s,
            "notes": list(self.notes),
            **(self.trust.to_dict() if self.trust is not None else {}),
        }  # fmt: skip


def make_result(
    *, req: TrainRequest, model: ModelConfig, device: Device, mapper: Mapper, layout: TrainLayout,
    m: int, spec: TrainSpec, mem: MemoryBreakdown, pipe: PipelineResult, busiest: int,
    rank_cost: PassCost, dp_exposed_s: float, optimizer_s: float, param_gather_s: float,
    overhead_s: float, notes: list[str], wall_s: float, events: list[StepEvent] | None = None,
) -> TrainResult:  # fmt: skip
    """Compose the result (module docstring)."""
    breakdown: dict[str, float] = {"compute": rank_cost.compute_s}
    for k in ("tp", "cp", "ep", "dp"):
        if rank_cost.exposed.get(k, 0.0) > 0:
            breakdown[f"{k}_exposed"] = rank_cost.exposed[k]
    breakdown["pipeline_bubble"] = max(0.0, pipe.makespan_s - pipe.busy_s[busiest])
    breakdown["dp_exposed"] = breakdown.get("dp_exposed", 0.0) + dp_exposed_s
    breakdown["optimizer"] = optimizer_s
    breakdown["param_gather_exposed"] = param_gather_s
    breakdown["overhead"] = overhead_s
    step = pipe.makespan_s + dp_exposed_s + optimizer_s + param_gather_s + overhead_s
    tokens = float(req.global_batch * req.seqlen)
    per_gpu = tokens / step / req.gpus
    mflops = model_flops_per_token(model, req.seqlen) * tokens
    hflops = mflops + recompute_flops_per_token(model, req.seqlen, req.recompute) * tokens
    peak = device.peak_flops(req.dtype)
    gh_per_t = 1e12 / per_gpu / 3600.0
    days = gpu_hours = cost = None
    if req.tokens is not None:
        days = req.tokens / (per_gpu * req.gpus) / SECONDS_PER_DAY
        gpu_hours = req.tokens / per_gpu / 3600.0
        cost = gpu_hours * req.price if req.price is not None else None
    comm = dict(rank_cost.comm)
    return TrainResult(
        model=model.name, device=device.name, gpus=req.gpus, layout=layout,
        schedule=req.schedule, zero=req.zero, recompute=req.recompute, dtype=req.dtype,
        seqlen=req.seqlen, global_batch=req.global_batch, micro_batch=req.micro_batch,
        micro_batches=m, step_time_s=step, tokens_per_step=tokens, tokens_per_s_per_gpu=per_gpu,
        model_tflops_per_gpu=mflops / step / req.gpus / 1e12,
        hw_tflops_per_gpu=hflops / step / req.gpus / 1e12,
        mfu=mflops / step / req.gpus / peak, hfu=hflops / step / req.gpus / peak,
        peak_tflops=peak / 1e12, bubble_fraction=pipe.bubble_fraction,
        breakdown_s=breakdown, comm_s=comm, compute_s=dict(sorted(rank_cost.compute.items())),
        busiest_rank=busiest, busiest_flops=rank_cost.flops,
        memory=mem,
        simulated_peak_activation_bytes=max(pipe.peak_activation_bytes),
        gpu_hours_per_trillion_tokens=gh_per_t, tokens=req.tokens, days=days,
        gpu_hours=gpu_hours, cost_usd=cost, wall_s=wall_s, notes=tuple(notes),
        pipeline=pipe if req.timeline else None, events=tuple(events or ()),
        trust=trust_for("train", device.arch),
    )  # fmt: skip
