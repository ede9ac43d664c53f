"""The common workload vocabulary every mapper times: GEMM, attention, elementwise/norm, MoE
and collectives, as frozen (hashable) dataclasses, plus :class:`OpTiming`, what a mapper returns.

Every device kind maps every item or refuses it with a clear reason (:class:`SpecError`). Ops are
plain data in SI units (bytes, elements, FLOPs); they describe the work of *one device* (one
rank of a parallel layout), so a tensor-parallel GEMM is already the local shard.

* :class:`Gemm` ``C[m,n] = A[m,k] @ B[k,n]``; ``B`` is a weight (``resident`` in main memory,
  or ``streamed`` from an outer store, e.g. Cerebras MemoryX) or an ``activation``;
  ``count`` identical independent GEMMs (a grouped GEMM over experts).
* :class:`Attention` an :class:`~hwsim.plan.attention.AttentionShape` in a ``prefill`` or
  ``decode`` phase; ``latent_kv`` marks MLA, whose V is a slice of the cached K latent.
* :class:`Elementwise` a streaming operator (``rmsnorm``, ``layernorm``, ``softmax``, ``swiglu``,
  ``gelu``, ``add``) over ``rows × cols`` elements.
* :class:`MoE` one MoE block on one expert-parallel rank: gate → dispatch → expert FFN →
  combine (+ shared expert); :meth:`MoE.parts` splits it into the other ops.
* :class:`Collective` ``all-reduce | all-gather | reduce-scatter | all-to-all | p2p`` of
  ``bytes`` per rank over a group of ``group`` devices, ``intra`` or ``inter`` node.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from hwsim.plan.attention import AttentionShape
from hwsim.plan.streaming import OPS as STREAM_OPS
from hwsim.spec.device import DTYPE_BYTES, DTYPES
from hwsim.spec.errors import SpecError

Phase = Literal["prefill", "decode"]
WeightPlace = Literal["resident", "streamed", "activation"]
CollectiveKind = Literal["all-reduce", "all-gather", "reduce-scatter", "all-to-all", "p2p"]
CommScope = Literal["intra", "inter"]
COLLECTIVE_KINDS: tuple[str, ...] = (
    "all-reduce",
    "all-gather",
    "reduce-scatter",
    "all-to-all",
    "p2p",
)
#: Streaming ops a step can contain (the table and its FLOPs per element: hwsim.plan.streaming).
ELEMENTWISE_OPS: tuple[str, ...] = tuple(STREAM_OPS)


def _check_dtype(dtype: str, what: str) -> None:
    if dtype not in DTYPES:
        raise SpecError(f"{what}: unknown dtype {dtype!r}; expected one of {', '.join(DTYPES)}")


def _check_pos(what: str, **vals: float) -> None:
    for k, v in vals.items():
        if not (isinstance(v, int | float) and math.isfinite(v) and v >= 1):
            raise SpecError(f"{what}: {k} must be a positive number, got {v!r}", key=k)


@dataclass(frozen=True)
class Gemm:
    """``count`` GEMMs ``[m,k] @ [k,n]`` at ``dtype`` (weights and activations stored at it)."""

    m: int
    n: int
    k: int
    dtype: str = "bf16"
    weights: WeightPlace = "resident"
    count: int = 1
    name: str = "gemm"

    def __post_init__(self) -> None:
        _check_pos(self.name, m=self.m, n=self.n, k=self.k, count=self.count)
        _check_dtype(self.dtype, self.name)

    @property
    def flops(self) -> float:
        return 2.0 * self.m * self.n * self.k * self.count

    @property
    def weight_bytes(self) -> float:
        """Bytes of the ``B`` operands when they are weights (0 for activation × activation)."""
        if self.weights == "activation":
            return 0.0
        return float(self.count) * self.n * self.k * DTYPE_BYTES[self.dtype]

    @property
    def compulsory_bytes(self) -> float:
        """A, B and C once each (the least any device must move from main memory)."""
        b = DTYPE_BYTES[self.dtype]
        return float(self.count) * (self.m * self.k + self.k * self.n + self.m * self.n) * b


@dataclass(frozen=True)
class Attention:
    """Attention of one device's heads. ``latent_kv``: MLA, the cache holds one latent of
    ``head_dim`` per token that serves as K and (its first ``head_dim_v``) as V."""

    shape: AttentionShape
    phase: Phase
    latent_kv: bool = False
    name: str = "attention"

    @property
    def kv_bytes(self) -> float:
        """KV-cache bytes this op reads from main memory (once)."""
        s = self.shape
        per_token = s.head_dim if self.latent_kv else s.head_dim + s.dv
        return float(s.batch) * s.kv_heads * s.seqlen_kv * per_token * s.elem_bytes

    @property
    def flops(self) -> float:
        s = self.shape
        causal = 0.5 if (s.causal and s.seqlen_q > 1) else 1.0
        return 2.0 * s.batch * s.heads * s.seqlen_q * s.seqlen_kv * (s.head_dim + s.dv) * causal


@dataclass(frozen=True)
class Elementwise:
    """A streaming operator over ``rows × cols`` elements (SwiGLU: the output shape)."""

    op: str
    rows: int
    cols: int
    dtype: str = "bf16"
    name: str = ""

    def __post_init__(self) -> None:
        if self.op not in ELEMENTWISE_OPS:
            raise SpecError(
                f"unknown elementwise op {self.op!r}; expected one of {', '.join(ELEMENTWISE_OPS)}"
            )
        _check_pos(self.name or self.op, rows=self.rows, cols=self.cols)
        _check_dtype(self.dtype, self.name or self.op)

    @property
    def elements(self) -> float:
        return float(self.rows) * self.cols

    @property
    def stream_bytes(self) -> float:
        """Bytes read and written once (inputs + output; SwiGLU reads gate and up)."""
        spec = STREAM_OPS[self.op]
        return (spec.inputs + spec.outputs) * self.elements * DTYPE_BYTES[self.dtype]

    @property
    def flops(self) -> float:
        """Vector FLOPs (the per-element count of :data:`hwsim.plan.streaming.OPS`)."""
        return STREAM_OPS[self.op].flops * self.elements

    @property
    def special_ops(self) -> float:
        """Special-function evaluations (exp, tanh, rsqrt) of the op."""
        return STREAM_OPS[self.op].special * self.elements


@dataclass(frozen=True)
class MoeTraffic:
    """What an MoE all-to-all carries, so that a mapper with a cluster can route it token by
    token (:func:`hwsim.plan.moe.synthetic_dispatch_plan`): ``tokens_per_rank`` tokens of
    ``hidden`` values, each sent to its ``top_k`` of ``n_experts`` experts within
    ``topk_groups`` node groups; ``phase`` dispatch or combine, on the wire at ``dtype``."""

    tokens_per_rank: int
    hidden: int
    n_experts: int
    top_k: int
    topk_groups: int | None
    phase: Literal["dispatch", "combine"]
    dtype: str = "fp8"


@dataclass(frozen=True)
class Collective:
    """A collective over ``group`` devices. ``bytes`` per rank: the tensor reduced (all-reduce,
    reduce-scatter input), the gathered output (all-gather), what each rank sends (all-to-all,
    p2p)."""

    kind: CollectiveKind
    bytes: float
    group: int
    scope: CommScope = "intra"
    name: str = ""
    traffic: MoeTraffic | None = None  #: MoE dispatch/combine routing, when known

    def __post_init__(self) -> None:
        if self.kind not in COLLECTIVE_KINDS:
            raise SpecError(
                f"unknown collective {self.kind!r}; expected one of {', '.join(COLLECTIVE_KINDS)}"
            )
        if not (math.isfinite(self.bytes) and self.bytes >= 0):
            raise SpecError(f"collective bytes must be >= 0, got {self.bytes!r}")
        _check_pos(self.name or self.kind, group=self.group)


@dataclass(frozen=True)
class MoE:
    """One MoE block on one expert-parallel rank. ``tokens`` enter the layer on this rank; the
    EP group of ``ep`` ranks holds ``n_experts`` routed experts (``n_experts / ep`` each); each
    token picks ``top_k``. ``touched`` (distinct local experts that receive a token) defaults to
    the expectation under uniform routing, ``local · (1 − (1 − k/E)^(tokens·ep))``."""

    tokens: int
    hidden: int
    intermediate: int
    n_experts: int
    top_k: int
    ep: int = 1
    shared_intermediate: int = 0
    gated: bool = True
    dtype: str = "bf16"
    wire_dtype: str = "bf16"
    combine_dtype: str = "bf16"
    topk_groups: int | None = None
    scope: CommScope = "intra"
    touched: float | None = None
    name: str = "moe"

    def __post_init__(self) -> None:
        _check_pos(
            self.name,
            tokens=self.tokens,
            hidden=self.hidden,
            intermediate=self.intermediate,
            n_experts=self.n_experts,
            top_k=self.top_k,
            ep=self.ep,
        )
        if self.top_k > self.n_experts:
            raise SpecError(f"{self.name}: top_k ({self.top_k}) > n_experts ({self.n_experts})")
        _check_dtype(self.dtype, self.name)
        _check_dtype(self.wire_dtype, self.name)

    @property
    def local_experts(self) -> int:
        return math.ceil(self.n_experts / self.ep)

    @property
    def routed_tokens(self) -> float:
        """Token-expert assignments this rank computes (balanced routing: tokens · k)."""
        return float(self.tokens) * self.top_k

    @property
    def touched_experts(self) -> float:
        """Distinct local experts that receive at least one token this step."""
        if self.touched is not None:
            return min(float(self.touched), float(self.local_experts))
        p_miss = (1.0 - self.top_k / self.n_experts) ** (self.tokens * self.ep)
        return max(1.0, self.local_experts * (1.0 - p_miss))

    @property
    def expert_weight_bytes(self) -> float:
        """Weight bytes of one routed expert."""
        mats = 3 if self.gated else 2
        return float(mats) * self.hidden * self.intermediate * DTYPE_BYTES[self.dtype]

    def parts(self) -> list[Gemm | Elementwise | Collective]:
        """gate → dispatch → expert FFNs → combine, then the shared expert, in order."""
        t, h, i = self.tokens, self.hidden, self.intermediate
        touched = self.touched_experts
        m_e = max(1, round(self.routed_tokens / touched))  # tokens per touched expert
        count = max(1, round(touched))
        up = (2 if self.gated else 1) * i
        act = "swiglu" if self.gated else "gelu"
        wire = self.routed_tokens * h * DTYPE_BYTES[self.wire_dtype]
        back = self.routed_tokens * h * DTYPE_BYTES[self.combine_dtype]

        def traffic(phase: Literal["dispatch", "combine"], dtype: str) -> MoeTraffic:
            return MoeTraffic(t, h, self.n_experts, self.top_k, self.topk_groups, phase, dtype)

        out: list[Gemm | Elementwise | Collective] = [
            Gemm(t, self.n_experts, h, self.dtype, name="router")
        ]
        if self.ep > 1:
            out.append(
                Collective(
                    "all-to-all",
                    wire,
                    self.ep,
                    self.scope,
                    "dispatch",
                    traffic("dispatch", self.wire_dtype),
                )
            )
        out += [
            Gemm(m_e, up, h, self.dtype, count=count, name="experts up"),
            Elementwise(act, count * m_e, i, self.dtype, name="experts act"),
            Gemm(m_e, h, i, self.dtype, count=count, name="experts down"),
        ]
        if self.ep > 1:
            out.append(
                Collective(
                    "all-to-all",
                    back,
                    self.ep,
                    self.scope,
                    "combine",
                    traffic("combine", self.combine_dtype),
                )
            )
        if self.shared_intermediate:
            s = self.shared_intermediate
            out += [
                Gemm(t, (2 if self.gated else 1) * s, h, self.dtype, name="shared up"),
                Elementwise(act, t, s, self.dtype, name="shared act"),
                Gemm(t, h, s, self.dtype, name="shared down"),
            ]
        return out


Op = Gemm | Attention | Elementwise | MoE | Collective


def op_name(op: Op) -> str:
    """A short label for tables and timelines."""
    if isinstance(op, Elementwise):
        return op.name or op.op
    if isinstance(op, Collective):
        return op.name or op.kind
    return op.name


@dataclass(frozen=True)
class OpTiming:
    """How long one op takes on one device and why (SI units).

    ``bound``: the limiting resource (``compute``, a memory level name, a link kind,
    ``latency``/``overhead``); ``bytes_by_level``: bytes moved per memory level, or per link kind
    for collectives; ``source``: which model timed it (``sim:gpu_gemm``, ``roofline``, ...);
    ``notes``: fallbacks and caveats, for the user to read."""

    op: str
    time_s: float
    bound: str
    bytes_by_level: Mapping[str, float] = field(default_factory=dict)
    flops: float = 0.0
    events: int = 0
    notes: tuple[str, ...] = ()
    source: str = "roofline"

    def to_dict(self) -> dict[str, object]:
        return {
            "op": self.op,
            "time_s": self.time_s,
            "bound": self.bound,
            "bytes_by_level": dict(self.bytes_by_level),
            "flops": self.flops,
            "events": self.events,
            "notes": list(self.notes),
            "source": self.source,
        }


def combine(name: str, timings: list[OpTiming], source: str = "composite") -> OpTiming:
    """Sequential composition: times add, bytes and FLOPs add, the bound of the longest part."""
    if not timings:
        return OpTiming(name, 0.0, "none", source=source)
    lvl: dict[str, float] = {}
    for t in timings:
        for k, v in t.bytes_by_level.items():
            lvl[k] = lvl.get(k, 0.0) + v
    longest = max(timings, key=lambda t: t.time_s)
    notes = tuple(dict.fromkeys(n for t in timings for n in t.notes))
    return OpTiming(
        op=name,
        time_s=sum(t.time_s for t in timings),
        bound=longest.bound,
        bytes_by_level=lvl,
        flops=sum(t.flops for t in timings),
        events=sum(t.events for t in timings),
        notes=notes,
        source=source,
    )
