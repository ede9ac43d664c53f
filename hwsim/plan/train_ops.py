"""The plain data of a training step's layer graph and its building blocks: what one
micro-batch is (:class:`TrainSpec`), one op of a pass with its category, stream and overlap group
(:class:`TrainOp`), one layer's forward and backward (:class:`Passes`), and a TP-split linear
layer's three GEMMs with the tensor-parallel collectives around them (:func:`linear`).
:mod:`hwsim.plan.train_step` composes them into layers (see its docstring for the conventions).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Literal

from hwsim.plan.step_types import scope
from hwsim.plan.train_layout import TrainLayout
from hwsim.plan.workload import Collective, Elementwise, Gemm, Op
from hwsim.spec.device import DTYPE_BYTES
from hwsim.spec.errors import SpecError
from hwsim.spec.model import ModelConfig

Pass = Literal["F", "B", "W"]
RECOMPUTE = ("none", "selective", "full")
ATTENTION = ("flash", "unfused")
COMM_CATEGORIES = ("tp", "cp", "ep")


@dataclass(frozen=True)
class TrainSpec:
    """What one micro-batch is: ``micro_batch`` sequences of ``seqlen`` tokens; GEMMs at
    ``dtype`` (bf16, or fp8 linears as Transformer Engine runs them), everything else at
    ``act_dtype``; MoE dispatch on the wire at ``wire_dtype`` (default ``act_dtype``)."""

    seqlen: int
    micro_batch: int = 1
    dtype: str = "bf16"
    act_dtype: str = "bf16"
    recompute: str = "none"
    sp: bool = True  #: sequence parallelism (used when tp > 1)
    tp_overlap: bool = False  #: pipeline TP all-gather/reduce-scatter with the GEMMs
    devices_per_node: int = 8
    wire_dtype: str | None = None
    #: ``flash`` (FlashAttention forward/backward kernels) or ``unfused`` (scores written to
    #: memory: batched GEMMs and a softmax kernel, as Megatron ran attention before 2022)
    attention: str = "flash"
    dropout: bool = False  #: attention dropout on the scores (unfused attention only)

    def __post_init__(self) -> None:
        if self.attention not in ATTENTION:
            raise SpecError(
                f"expected one of {', '.join(ATTENTION)}, got {self.attention!r}", key="--attention"
            )
        if self.recompute not in RECOMPUTE:
            raise SpecError(
                f"expected one of {', '.join(RECOMPUTE)}, got {self.recompute!r}", key="--recompute"
            )
        for k in ("dtype", "act_dtype"):
            if getattr(self, k) not in DTYPE_BYTES:
                raise SpecError(
                    f"unknown dtype {getattr(self, k)!r}", key=f"--{k.replace('_', '-')}"
                )
        for k in ("seqlen", "micro_batch", "devices_per_node"):
            v = getattr(self, k)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise SpecError(f"expected a positive integer, got {v!r}", key=f"--{k}")


@dataclass(frozen=True)
class TrainOp:
    """One op of a pass: its breakdown category, stream and overlap group (0: none)."""

    op: Op
    category: str
    stream: Literal["compute", "comm"] = "compute"
    overlap: int = 0
    chunks: int = 1  #: pipelining depth of the overlap group (ring-exchange chunks)
    weight_grad: bool = False  #: a weight-gradient GEMM (the ``W`` pass of zero-bubble)


@dataclass(frozen=True)
class Passes:
    """One layer (or the embedding, or the LM head) for one micro-batch: the forward ops, the
    backward ops in order (recompute first, weight gradients where autograd runs them),
    and the activation bytes kept between forward and backward."""

    name: str
    fwd: tuple[TrainOp, ...]
    bwd: tuple[TrainOp, ...]
    saved_bytes: float
    notes: tuple[str, ...] = field(default=())

    @property
    def bgrad(self) -> tuple[TrainOp, ...]:
        """The ``B`` pass of a zero-bubble schedule: the backward without weight gradients."""
        return tuple(o for o in self.bwd if not o.weight_grad)

    @property
    def wgrad(self) -> tuple[TrainOp, ...]:
        """The ``W`` pass: the weight-gradient GEMMs alone."""
        return tuple(replace(o, overlap=0) for o in self.bwd if o.weight_grad)


class Builder:
    """Appends ops, hands out overlap-group ids and counts saved activation bytes."""

    def __init__(self, lay: TrainLayout, spec: TrainSpec) -> None:
        self.lay, self.spec = lay, spec
        self.f: list[TrainOp] = []
        self.b: list[TrainOp] = []  # built in forward order, reversed per block at the end
        self.saved = 0.0
        self._gid = 0

    def gid(self) -> int:
        self._gid += 1
        return self._gid


def tokens(lay: TrainLayout, spec: TrainSpec) -> tuple[int, int, bool]:
    """(tokens of a micro-batch on one GPU, rows of the SP-split ops, SP on)."""
    t = spec.micro_batch * (spec.seqlen // lay.cp)
    sp = spec.sp and lay.tp > 1
    return t, (max(1, math.ceil(t / lay.tp)) if sp else t), sp


def tp_scope(lay: TrainLayout, spec: TrainSpec) -> Literal["intra", "inter"]:
    return scope(lay.tp, 1, spec.devices_per_node)


def norm_kind(model: ModelConfig) -> str:
    return "layernorm" if model.norm == "layernorm" else "rmsnorm"


def stream_pair(op: Elementwise, cat: str) -> list[TrainOp]:
    """A streaming op's backward: two passes of its forward kernel (input and output gradient
    read, input gradient written)."""
    return [TrainOp(op, cat), TrainOp(replace(op, name=f"{op.name} bwd"), cat)]


def linear(
    bld: Builder,
    name: str,
    t: int,
    n: int,
    k: int,
    cat: str,
    *,
    col: bool,
    count: int = 1,
    tp_comm: bool = True,
) -> tuple[list[TrainOp], list[TrainOp], float]:
    """A (TP-split) linear layer: forward ops, backward ops and the bytes it saves.
    ``col``: column-parallel (input all-gathered under SP, input gradient reduced), else
    row-parallel (output reduced). ``tp_comm`` False for layers outside TP (experts)."""
    lay, spec = bld.lay, bld.spec
    dt, act = spec.dtype, DTYPE_BYTES[spec.act_dtype]
    _, t_sp, sp = tokens(lay, spec)
    tp = lay.tp if tp_comm else 1
    where = tp_scope(lay, spec)
    fwd_g = Gemm(t, n, k, dt, count=count, name=name)
    dgrad = Gemm(t, k, n, dt, count=count, name=f"{name} dgrad")
    wgrad = Gemm(k, n, t, dt, weights="activation", count=count, name=f"{name} wgrad")
    ring = spec.tp_overlap and sp and tp > 1
    chunks = tp if ring else 1
    full = t * (k if col else n) * act  # the tensor a TP collective moves (all rows)
    f: list[TrainOp] = []
    b: list[TrainOp] = []
    # the input kept for the weight gradient: FP8 linears keep their fp8 copy (1 byte)
    keep = DTYPE_BYTES[dt] if dt.startswith("fp8") else act
    saved = (t_sp if (sp and col and tp > 1) else t) * k * keep * count
    if dt.startswith("fp8"):
        # FP8 linears (Transformer Engine): a cast-transpose of the input before the forward
        # GEMM and of the output gradient before the backward GEMMs; each reads bf16 and
        # writes two fp8 copies (4 bytes per element, timed as a one-pass streaming kernel)
        f.append(
            TrainOp(Elementwise("gelu", t * count, k, spec.act_dtype, f"{name} fp8 cast"), cat)
        )
        b.append(
            TrainOp(Elementwise("gelu", t * count, n, spec.act_dtype, f"{name} fp8 cast dY"), cat)
        )
    if tp <= 1:
        f.append(TrainOp(fwd_g, cat))
        b += [TrainOp(dgrad, cat), TrainOp(wgrad, cat, weight_grad=True)]
        return f, b, saved
    g = bld.gid() if ring else 0

    def tpc(kind: str, nbytes: float, label: str, gid: int = 0, ch: int = 1) -> TrainOp:
        op = Collective(kind, nbytes, tp, where, f"{name} {label}")  # type: ignore[arg-type]
        return TrainOp(op, "tp", "comm", gid, ch)

    if col:
        dx = t * k * act
        if sp:
            f += [
                tpc("all-gather", full, "AG", g, chunks),
                TrainOp(fwd_g, cat, overlap=g, chunks=chunks),
            ]
            g1, g2 = (bld.gid() if ring else 0), bld.gid()
            b += [
                # re-gather the sharded input for the weight gradient, under the dgrad GEMM
                tpc("all-gather", full, "AG input", g1, chunks),
                TrainOp(dgrad, cat, overlap=g1, chunks=chunks),
                tpc("reduce-scatter", dx, "RS dgrad", g2),
                TrainOp(wgrad, cat, overlap=g2, weight_grad=True),
            ]
        else:
            f.append(TrainOp(fwd_g, cat))
            g2 = bld.gid()
            b += [
                TrainOp(dgrad, cat),
                tpc("all-reduce", dx, "AR dgrad", g2),
                TrainOp(wgrad, cat, overlap=g2, weight_grad=True),
            ]
    else:
        kind = "reduce-scatter" if sp else "all-reduce"
        f += [TrainOp(fwd_g, cat, overlap=g, chunks=chunks), tpc(kind, full, kind[:6], g, chunks)]
        if sp:
            g1 = bld.gid() if ring else 0
            b += [
                tpc("all-gather", full, "AG dY", g1, chunks),
                TrainOp(dgrad, cat, overlap=g1, chunks=chunks),
                TrainOp(wgrad, cat, weight_grad=True),
            ]
        else:
            b += [TrainOp(dgrad, cat), TrainOp(wgrad, cat, weight_grad=True)]
    return f, b, saved


def tp_wrap(
    bld: Builder, nbytes: float, sp: bool
) -> tuple[list[TrainOp], list[TrainOp], list[TrainOp], list[TrainOp]]:
    """TP collectives around a block that is not built of TP linears (experts split over TP,
    the embedding): forward (before, after) and backward (before, after) in autograd order."""
    lay = bld.lay
    if lay.tp <= 1:
        return [], [], [], []
    where = tp_scope(lay, bld.spec)

    def c(kind: str, name: str) -> TrainOp:
        return TrainOp(Collective(kind, nbytes, lay.tp, where, name), "tp", "comm")  # type: ignore[arg-type]

    if sp:
        return (
            [c("all-gather", "gather in")],
            [c("reduce-scatter", "scatter out")],
            [c("reduce-scatter", "scatter in grad")],
            [c("all-gather", "gather out grad")],
        )
    return [], [c("all-reduce", "reduce out")], [c("all-reduce", "reduce in grad")], []
