"""The plain data of a model step: the parallel degrees it is built for, what step to build
(:class:`StepSpec`), and the per-device graph it becomes (:class:`StepOp`, :class:`LayerGraph`,
:class:`StepGraph`). :mod:`hwsim.plan.model_step` builds the graph."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

from hwsim.plan.workload import CommScope, Op, Phase
from hwsim.spec.device import DTYPE_BYTES
from hwsim.spec.errors import SpecError

Category = Literal["attention", "ffn", "moe", "norm", "lm_head", "mtp", "comm"]
CATEGORIES: tuple[str, ...] = ("attention", "ffn", "moe", "norm", "lm_head", "mtp", "comm")


class Degrees(Protocol):
    """The parallel degrees (``hwsim.plan.layout.Layout`` satisfies it)."""

    @property
    def tp(self) -> int: ...
    @property
    def ep(self) -> int: ...
    @property
    def pp(self) -> int: ...
    @property
    def dp(self) -> int: ...
    @property
    def sp(self) -> int: ...


@dataclass(frozen=True)
class StepSpec:
    """What step to build. ``batch`` sequences in the whole deployment (split over DP
    replicas); ``context``: decode, tokens already in the KV cache; prefill, the prompt length.
    ``q_len``: tokens per sequence in a decode step (1, or 1 + draft tokens for MTP/speculative
    decoding). ``micro_batches``: the stage's sequences split for dual micro-batch overlap.
    ``chunk_tokens``: prompt tokens of prefills in progress that a decode step processes too
    (chunked prefill mixed with decode, Sarathi-Serve), for the whole deployment (each DP
    replica takes an even share); a step of chunks only has ``batch`` 0."""

    phase: Phase
    batch: int
    context: int
    dtype: str = "bf16"
    kv_dtype: str = "bf16"
    act_dtype: str = "bf16"
    wire_dtype: str | None = None  #: MoE dispatch wire format (default: ``dtype``)
    q_len: int = 1
    micro_batches: int = 1
    devices_per_node: int = 8
    mtp_depth: int = 0  #: MTP modules run per decode step (drafts made)
    chunk_tokens: int = 0  #: prompt tokens mixed into a decode step (chunked prefill)

    def __post_init__(self) -> None:
        if self.phase not in ("prefill", "decode"):
            raise SpecError(f"phase must be prefill or decode, got {self.phase!r}", key="phase")
        c = self.chunk_tokens
        if not isinstance(c, int) or isinstance(c, bool) or c < 0:
            raise SpecError(f"expected a whole number >= 0, got {c!r}", key="chunk_tokens")
        if c and self.phase != "decode":
            raise SpecError("prompt chunks mix into decode steps only", key="chunk_tokens")
        for k in ("batch", "context", "q_len", "micro_batches", "devices_per_node"):
            v = getattr(self, k)
            if k == "batch" and c and v == 0:
                continue  # a step of prompt chunks only
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise SpecError(f"expected a positive integer, got {v!r}", key=k)
        for k in ("dtype", "kv_dtype", "act_dtype"):
            if getattr(self, k) not in DTYPE_BYTES:
                raise SpecError(f"unknown dtype {getattr(self, k)!r}", key=k)


#: What an op of a decode step scales with: every token of the step (``tokens``: projections,
#: FFN/MoE, norms, collectives), the decode tokens only (``batch``: MLA's absorbed per-head
#: products, GEMMs over ``b·q`` rows), the decode sequences' KV caches (``decode``: attention)
#: or the prompt chunk only (``chunk``). The serving layer's step-time model evaluates each
#: part on its own grid.
Part = Literal["tokens", "batch", "decode", "chunk"]


@dataclass(frozen=True)
class StepOp:
    """One op of a layer with its breakdown category, stream and part (:data:`Part`)."""

    op: Op
    category: str
    stream: Literal["compute", "comm"] = "compute"
    part: Part = "tokens"


@dataclass(frozen=True)
class LayerGraph:
    """``repeat`` consecutive identical layers of one stage (ops for one micro-batch)."""

    name: str
    ops: tuple[StepOp, ...]
    repeat: int = 1


@dataclass(frozen=True)
class StepGraph:
    """One device's step: its stage's layers in order, plus sizes for memory and throughput."""

    spec: StepSpec
    stages: tuple[tuple[LayerGraph, ...], ...]  #: per pipeline stage
    seqs_per_replica: int  #: sequences one DP replica serves
    micro_batches: int  #: effective micro-batches (≤ sequences)
    tokens_per_step: int  #: new tokens the whole deployment processes per step
    weight_bytes_per_device: float  #: resident weights, largest stage
    kv_bytes_per_device: float  #: KV cache at the end of the step, largest stage
    notes: tuple[str, ...] = field(default=())


def scope(group: int, stride: int, per_node: int) -> CommScope:
    """Whether a group of ``group`` devices ``stride`` apart fits one node of ``per_node``."""
    return "intra" if group * stride <= per_node else "inter"
