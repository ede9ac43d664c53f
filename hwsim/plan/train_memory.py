"""Memory per GPU and FLOP counts of a training step, as plain arithmetic on the model config,
the layout and the activation bytes of :mod:`hwsim.plan.train_step`.

Memory (mixed-precision Adam, as Megatron-Core's distributed optimizer and ZeRO count it):

* parameters 2 B (bf16; FP8 training keeps bf16 weights too), gradients 4 B (fp32
  accumulation), optimizer states 12 B (fp32 master weights, Adam m and v) per parameter;
* ZeRO-1 shards the optimizer states over the data-parallel group, ZeRO-2 the gradients too,
  ZeRO-3 / FSDP also the parameters (plus the two layers gathered at a time). The routed
  experts' data-parallel group is ``tp · cp · dp / ep``; the dense weights' is ``cp · dp``;
* activations: the bytes one layer keeps per micro-batch under the recompute policy, times the
  layers of a chunk, times the chunks a stage holds in flight under the schedule (1F1B: ``pp −
  s`` on stage ``s``; ZB-H1: ``pp`` on every stage (weight gradients pending); GPipe: every
  micro-batch; interleaved: Megatron-Core's warm-up count + 1; DualPipe: ``pp + 1``), plus
  the LM head's fp32 logits on the last stage;
* DualPipe keeps two copies of its parameters and gradients (each rank runs a stage of each
  direction); the optimizer updates one.

FLOPs (per micro-batch, all GPUs together), Megatron-Core's ``num_floating_point_operations``
convention: 2 FLOPs per multiply-add of every weight matrix a token passes through (top-k routed
experts only), the attention scores and values over the full ``s × s`` square (no causal
halving), the LM head, and three passes (forward and two backward). The recompute-inclusive
figure adds the forward FLOPs of what the policy recomputes.
"""

from __future__ import annotations

from dataclasses import dataclass

from hwsim.plan.train_layout import TrainLayout, chunk_layers
from hwsim.spec.model import ModelConfig

PARAM_BYTES = 2.0
GRAD_BYTES = 4.0
OPTIMIZER_BYTES = 12.0
ZERO_STAGES = (0, 1, 2, 3)


@dataclass(frozen=True)
class StageParams:
    """Parameters one GPU of a pipeline stage holds (counts): dense (replicated over DP) and
    routed experts (replicated over the expert-DP group)."""

    dense: float
    experts: float
    layers: int  #: decoder layers on the GPU (all its chunks)

    @property
    def total(self) -> float:
        return self.dense + self.experts


def layer_param_split(model: ModelConfig, lay: TrainLayout, i: int) -> tuple[float, float]:
    """(dense, expert) parameters of decoder layer ``i`` on one GPU."""
    attn = model.attention_params() / lay.tp
    norms = 2.0 * model.hidden
    if not model.is_moe_layer(i):
        return attn + model.ffn_params() / lay.tp + norms, 0.0
    m = model.moe
    assert m is not None
    router = model.hidden * m.n_routed_experts
    shared = model.ffn_params(m.shared_width) if m.shared_width else 0.0
    if lay.ep > 1:
        return attn + router + shared + norms, m.n_routed_experts / lay.ep * model.expert_params()
    return (attn + router + shared / lay.tp + norms,
            m.n_routed_experts * model.expert_params() / lay.tp)  # fmt: skip


def stage_chunks(lay: TrainLayout, stage: int, schedule: str) -> list[int]:
    """Model chunks (of ``pp · vpp``) one GPU of ``stage`` holds: interleaved stage ``s`` has
    ``s, s + pp, …``; DualPipe's rank ``r`` runs stage ``r`` of one direction and ``pp − 1 − r``
    of the other."""
    if schedule == "dualpipe":
        return sorted({stage, lay.pp - 1 - stage})
    return [stage + v * lay.pp for v in range(lay.vpp)]


def stage_params(model: ModelConfig, lay: TrainLayout, stage: int, schedule: str) -> StageParams:
    """Parameters on one GPU of ``stage`` (embedding on the first chunk, LM head on the last;
    DualPipe: both its stages' copies)."""
    dense = experts = 0.0
    n = 0
    chunks = stage_chunks(lay, stage, schedule)
    copies = 2 if (schedule == "dualpipe" and len(chunks) == 1) else 1  # middle: same stage twice
    for c in chunks:
        lo, hi = chunk_layers(model.layers, lay.chunks, c)
        d, e = _range_params(model, lay, lo, hi)
        dense, experts, n = dense + d * copies, experts + e * copies, n + (hi - lo) * copies
        table = model.vocab * model.hidden / lay.tp
        if c == 0:
            dense += table * copies
        if c == lay.chunks - 1:
            dense += (table if not model.tied_embeddings or lay.chunks > 1 else 0.0) * copies
            dense += model.hidden * copies  # final norm
    return StageParams(dense, experts, n)


def _range_params(model: ModelConfig, lay: TrainLayout, lo: int, hi: int) -> tuple[float, float]:
    """Layers ``[lo, hi)`` summed by kind (MoE and dense layers are each alike): O(1)."""
    n_moe = 0 if model.moe is None else _moe_count(model, lo, hi)
    n_dense = hi - lo - n_moe
    d = e = 0.0
    if n_moe:
        first = next(i for i in range(lo, hi) if model.is_moe_layer(i))
        dd, ee = layer_param_split(model, lay, first)
        d, e = d + dd * n_moe, e + ee * n_moe
    if n_dense:
        first = next(i for i in range(lo, hi) if not model.is_moe_layer(i))
        dd, _ = layer_param_split(model, lay, first)
        d += dd * n_dense
    return d, e


def _moe_count(model: ModelConfig, lo: int, hi: int) -> int:
    m = model.moe
    assert m is not None
    fk, freq = m.first_k_dense, m.layer_freq
    first = fk + -(-(max(lo, fk) - fk) // freq) * freq
    return 0 if first >= hi else (hi - 1 - first) // freq + 1


@dataclass(frozen=True)
class StateBytes:
    """Weight-side bytes on one GPU: parameters, gradients, optimizer states."""

    params: float
    grads: float
    optimizer: float

    @property
    def total(self) -> float:
        return self.params + self.grads + self.optimizer


def state_bytes(p: StageParams, lay: TrainLayout, zero: int, schedule: str) -> StateBytes:
    """Parameter, gradient and optimizer bytes of one GPU under ZeRO stage ``zero``."""
    dp_dense, dp_exp = lay.cp * lay.dp, lay.expert_dp

    def shard(x_dense: float, x_exp: float, on: bool) -> float:
        return x_dense / dp_dense + x_exp / dp_exp if on else x_dense + x_exp

    opt_scale = 0.5 if schedule == "dualpipe" else 1.0  # two parameter copies, one optimizer
    params = shard(p.dense, p.experts, zero >= 3) * PARAM_BYTES
    if zero >= 3 and p.layers:  # two layers gathered at a time (the current one, the prefetch)
        params += 2 * p.total / p.layers * PARAM_BYTES
    grads = shard(p.dense, p.experts, zero >= 2) * GRAD_BYTES
    opt = shard(p.dense, p.experts, zero >= 1) * OPTIMIZER_BYTES * opt_scale
    return StateBytes(params, grads, opt)


def inflight_chunks(schedule: str, pp: int, vpp: int, m: int, stage: int) -> int:
    """Micro-batch chunks whose activations one GPU of ``stage`` holds at the peak."""
    if schedule == "gpipe":
        return m * vpp
    if schedule == "1f1b":
        return min(pp - stage, m)
    if schedule == "zb":  # pp − s between F and B, plus s weight gradients pending
        return min(pp, m)
    if schedule == "interleaved":
        warm = min((pp - stage - 1) * 2 + (vpp - 1) * pp, m * vpp)
        return min(warm + 1, m * vpp)
    if schedule == "dualpipe":
        return min(pp + 1, m)
    raise ValueError(schedule)


@dataclass(frozen=True)
class MemoryBreakdown:
    """Bytes on one GPU of the busiest stage."""

    stage: int
    params: float
    grads: float
    optimizer: float
    activations: float
    logits: float
    reserved: float
    capacity: float
    arithmetic: str  #: how the activations were counted, for messages

    @property
    def total(self) -> float:
        return (
            self.params
            + self.grads
            + self.optimizer
            + self.activations
            + self.logits
            + self.reserved
        )

    @property
    def fits(self) -> bool:
        return self.total <= self.capacity

    def to_dict(self) -> dict[str, float]:
        return {
            k: getattr(self, k)
            for k in ("params", "grads", "optimizer", "activations", "logits", "reserved", "total")
        }


def model_flops_per_token(model: ModelConfig, seqlen: int) -> float:
    """Model FLOPs of one token, forward + backward (Megatron-Core convention; module
    docstring)."""
    fwd = 0.0
    a = model.attention
    core = 2.0 * seqlen * a.heads * (a.head_dim + a.v_dim)
    for moe, count in ((True, model.moe_layers), (False, model.layers - model.moe_layers)):
        if not count:
            continue
        i = next(j for j in range(model.layers) if model.is_moe_layer(j) == moe)
        fwd += count * (2.0 * model.layer_params(i, active=True) + core)
    fwd += 2.0 * model.hidden * model.vocab
    return 3.0 * fwd


def recompute_flops_per_token(model: ModelConfig, seqlen: int, recompute: str) -> float:
    """Extra forward FLOPs of one token that the recompute policy adds."""
    a = model.attention
    core = 2.0 * seqlen * a.heads * (a.head_dim + a.v_dim) * model.layers
    if recompute == "selective":
        return core
    if recompute == "full":
        return model_flops_per_token(model, seqlen) / 3.0 - 2.0 * model.hidden * model.vocab
    return 0.0
