"""Data parallelism and the optimizer step of a training step.

* ZeRO-0 all-reduces the fp32 gradients; ZeRO-1/2 reduce-scatter them and all-gather the
  updated bf16 parameters after the optimizer (Megatron-Core's distributed optimizer); ZeRO-3 /
  FSDP gathers each layer's parameters before its forward and its backward and reduce-scatters
  its gradients, per micro-batch (:func:`zero3_layer_exposure`).
* Gradients are reduced in buckets of ``bucket_params`` parameters (Megatron-Core
  ``--overlap-grad-reduce``, FSDP): a chunk's buckets become ready during the last backward of
  that chunk and go out one after another on the rank's data-parallel channel, so only what is
  left when the backward ends is exposed (:func:`reduce_finish`). The parameter all-gather of
  ZeRO-1/2 overlaps the next step's first forward (``--overlap-param-gather``): its first bucket
  is exposed.
* Collectives run over the data-parallel group of each weight: ``cp · dp`` GPUs ``tp`` apart for
  the dense weights, ``tp · cp · dp / ep`` GPUs ``ep`` apart for routed experts; hierarchically
  (intra-node reduce-scatter, inter-node on ``1/k`` of the bytes, intra-node all-gather) when a
  group has ``k > 1`` ranks per node, as NCCL does (:func:`_collective`).
* Adam reads fp32 master weights, gradients and both moments and writes the weights, the
  moments and the bf16 copy: 34 bytes per parameter of the optimizer shard (with the gradient
  norm), timed by the streaming-op simulator (an fp32 add moves 12 bytes per element; the
  optimizer is that kernel scaled by 34/12).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from hwsim.plan.train_layout import TrainLayout
from hwsim.plan.train_memory import GRAD_BYTES, PARAM_BYTES, StageParams
from hwsim.plan.train_step import TrainOp
from hwsim.plan.workload import Collective, Elementwise
from hwsim.train.timing import Timer

#: bytes Adam moves per parameter over the 12 bytes of an fp32 add (module docstring)
ADAM_SCALE = 34.0 / 12.0
#: elements per row of the optimizer's streaming op (a flat buffer timed as rows × cols)
_COLS = 8192


@dataclass(frozen=True)
class DpCost:
    """Seconds of one rank's data-parallel collectives per step."""

    grad_reduce_s: float  #: all-reduce (ZeRO-0) or reduce-scatter of every gradient
    param_gather_s: float  #: all-gather of the updated parameters (ZeRO-1/2)
    buckets: int


def _flat(timer: Timer, kind: str, nbytes: float, group: int, where: str) -> float:
    if group <= 1 or nbytes <= 0:
        return 0.0
    op = Collective(kind, nbytes, group, where, f"dp {kind}")  # type: ignore[arg-type]
    return timer.seconds(TrainOp(op, "dp", "comm"))


def _collective(timer: Timer, kind: str, nbytes: float, group: int, stride: int) -> float:
    """A data-parallel collective over ``group`` ranks ``stride`` apart. When the group has
    ``k > 1`` ranks in each node and spans nodes, NCCL runs it hierarchically: the ``k`` ranks
    of a node reduce-scatter (or, last, all-gather) over the node's links, and each rank
    exchanges only its ``1/k`` share across nodes on its own NIC; a group of one rank per node
    uses the NICs alone (the flat ring)."""
    if group <= 1 or nbytes <= 0:
        return 0.0
    per_node = max(1, int(timer.mapper.fabric.devices_per_node))
    k = max(1, min(group, per_node // max(1, stride)))
    if group <= k:
        return _flat(timer, kind, nbytes, group, "intra")
    if k == 1 or group % k:
        return _flat(timer, kind, nbytes, group, "inter")
    nodes = group // k
    if kind == "all-reduce":
        return (_flat(timer, "reduce-scatter", nbytes, k, "intra")
                + _flat(timer, "all-reduce", nbytes / k, nodes, "inter")
                + _flat(timer, "all-gather", nbytes, k, "intra"))  # fmt: skip
    if kind == "reduce-scatter":
        return (_flat(timer, "reduce-scatter", nbytes, k, "intra")
                + _flat(timer, "reduce-scatter", nbytes / k, nodes, "inter"))  # fmt: skip
    return (_flat(timer, "all-gather", nbytes / k, nodes, "inter")
            + _flat(timer, "all-gather", nbytes, k, "intra"))  # fmt: skip


def dp_cost(timer: Timer, lay: TrainLayout, p: StageParams, zero: int) -> DpCost:
    """One rank's gradient reduction and parameter gather (ZeRO-3's per-layer traffic is
    charged in the passes instead: :func:`zero3_layer_exposure`)."""
    if zero >= 3:
        return DpCost(0.0, 0.0, 0)
    bucket = float(timer.params.bucket_params.value)
    groups = ((p.dense, lay.cp * lay.dp, lay.tp), (p.experts, lay.expert_dp, lay.ep))
    red = gat = 0.0
    n_buckets = 0
    kind = "all-reduce" if zero == 0 else "reduce-scatter"
    for params, group, stride in groups:
        if params <= 0 or group <= 1:
            continue
        n = max(1, math.ceil(params / bucket))
        n_buckets += n
        per = params / n
        red += n * _collective(timer, kind, per * GRAD_BYTES, group, stride)
        if zero in (1, 2):
            gat += n * _collective(timer, "all-gather", per * PARAM_BYTES, group, stride)
    return DpCost(red, gat, n_buckets)


def reduce_finish(
    windows: Sequence[tuple[float, float]], reduce_s: float, buckets: int, overlap: bool,
    after_s: float, log: list[tuple[float, float]] | None = None,
) -> float:  # fmt: skip
    """When a rank's gradient reduction ends: its chunks' buckets (``buckets`` in all, the time
    split evenly over its chunks) become ready, evenly spread, during each chunk's last backward
    ``windows[i] = (start, end)`` and go out in order on one channel; without ``overlap`` every
    bucket waits for ``after_s`` (the rank's last task). ``log`` receives each bucket's
    (start, end) on that channel."""
    if reduce_s <= 0 or not windows:
        return after_s
    per_chunk = max(1, buckets // len(windows))
    t_b = reduce_s / (per_chunk * len(windows))
    free = 0.0
    for start, end in sorted(windows, key=lambda w: w[1]):
        for i in range(per_chunk):
            ready = start + (i + 1) / per_chunk * (end - start) if overlap else after_s
            begin = max(free, ready)
            free = begin + t_b
            if log is not None:
                log.append((begin, free))
    return free


def optimizer_s(timer: Timer, lay: TrainLayout, p: StageParams, zero: int) -> float:
    """Adam over the rank's optimizer shard (module docstring)."""
    n = p.dense / (lay.cp * lay.dp) + p.experts / lay.expert_dp if zero >= 1 else p.total
    if n <= 0:
        return 0.0
    rows = max(1, math.ceil(n / _COLS))
    op = Elementwise("add", rows, _COLS, "fp32", "adam")
    return timer.seconds(TrainOp(op, "optimizer")) * ADAM_SCALE


def zero3_layer_comm(timer: Timer, lay: TrainLayout, layer_params: float) -> tuple[float, float]:
    """ZeRO-3 / FSDP per layer and micro-batch: seconds of the parameter all-gather and of the
    gradient reduce-scatter."""
    group = lay.cp * lay.dp
    ag = _collective(timer, "all-gather", layer_params * PARAM_BYTES, group, lay.tp)
    rs = _collective(timer, "reduce-scatter", layer_params * GRAD_BYTES, group, lay.tp)
    return ag, rs


def zero3_layer_exposure(
    timer: Timer, lay: TrainLayout, layer_params: float, fwd_s: float, bwd_s: float
) -> tuple[float, float]:
    """ZeRO-3 / FSDP per layer and micro-batch: exposed seconds in the forward (the parameter
    all-gather beyond the previous layer's forward, which it is prefetched under) and in the
    backward (all-gather again plus the gradient reduce-scatter, beyond the layer's backward)."""
    ag, rs = zero3_layer_comm(timer, lay, layer_params)
    return max(0.0, ag - fwd_s), max(0.0, ag + rs - bwd_s)
