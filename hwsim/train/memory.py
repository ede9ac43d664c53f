"""Memory per GPU of a training step: the busiest stage's parameters, gradients, optimizer
states (ZeRO-sharded; :mod:`hwsim.plan.train_memory` has that arithmetic), the activations of
the micro-batch chunks it holds at its peak under the schedule, the LM head's logits and the
framework's reserve; and the one-line refusal of a layout that does not fit.

Activations follow a micro-batch chunk through its rank's tasks exactly as the pipeline
simulation does (:mod:`hwsim.train.pipeline`), so the count and the simulated peak agree
(``tests/train``):

* a forward (``F``) keeps the chunk's activations: every layer's saved bytes under the
  recompute policy, and on the last chunk the LM head's (its fp32 logits);
* a full backward (``B``) frees them;
* a zero-bubble input-gradient backward (``B`` of ZB-H1 and DualPipe) frees all but what the
  deferred weight gradient needs: both operands of each weight-gradient GEMM (the input the
  forward saved, the output gradient the backward made); its ``W`` frees that.

A rank's memory only changes at its own tasks, so its peak depends on its task order alone,
not on timing: :func:`inflight_states` walks one rank's order once (cached per schedule,
stages, micro-batches and rank) and keeps the in-flight compositions that can be the peak.
GPipe then holds every micro-batch on every stage, 1F1B ``pp − s`` on stage ``s``, ZB-H1
``pp − s`` forwards plus up to ``s`` pending weight gradients, and interleaved and DualPipe
what their orders give per chunk.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from hwsim.plan.train_layout import TrainLayout
from hwsim.plan.train_memory import MemoryBreakdown, stage_params, state_bytes
from hwsim.plan.train_step import Passes
from hwsim.plan.workload import Gemm
from hwsim.spec.device import DTYPE_BYTES
from hwsim.spec.errors import SpecError
from hwsim.spec.fit import human_bytes
from hwsim.spec.model import ModelConfig
from hwsim.train.pipeline import check_size
from hwsim.train.request import TrainRequest
from hwsim.train.schedules import rank_order

if TYPE_CHECKING:
    from hwsim.spec.device import Device
    from hwsim.train.step import LayerSet


def wgrad_keep_bytes(passes: Passes) -> float:
    """Bytes a deferred weight gradient keeps between its input-gradient backward and its
    ``W`` pass: both operands of every weight-gradient GEMM (``dW = Xᵀ · dY``: the input ``X``
    and the output gradient ``dY``, at the GEMM's dtype)."""
    out = 0.0
    for o in passes.wgrad:
        g = o.op
        if isinstance(g, Gemm):
            out += g.count * (g.m * g.k + g.k * g.n) * DTYPE_BYTES[g.dtype]
    return out


@dataclass(frozen=True)
class ChunkBytes:
    """Activation bytes of one micro-batch on one model chunk: what its forward keeps and what
    a deferred weight gradient keeps, each without and with only the LM head."""

    saved: float
    head: float
    w_saved: float
    w_head: float

    @property
    def forward(self) -> float:
        """All a forward keeps (the simulation's ``saved``)."""
        return self.saved + self.head

    @property
    def deferred(self) -> float:
        """All a pending weight gradient keeps (the simulation's ``w_saved``)."""
        return self.w_saved + self.w_head


def chunk_bytes(model: ModelConfig, lay: TrainLayout, layers: LayerSet, pos: int) -> ChunkBytes:
    """The activation bytes of model chunk ``pos`` (its layers' counts times their repeats)."""
    saved = head = w = wh = 0.0
    for ps, n in layers.chunk(model, lay.chunks, pos):
        if ps is layers.head:
            head += ps.saved_bytes * n
            wh += wgrad_keep_bytes(ps) * n
        else:
            saved += ps.saved_bytes * n
            w += wgrad_keep_bytes(ps) * n
    return ChunkBytes(saved, head, w, wh)


@lru_cache(maxsize=4096)
def inflight_states(
    schedule: str, pp: int, vpp: int, m: int, rank: int
) -> tuple[tuple[int, ...], tuple[tuple[int, ...], ...]]:
    """The chunk positions ``rank`` runs and the in-flight compositions that can be its
    memory peak: ``(forwards held per position..., weight gradients pending per
    position...)``, every state the rank passes through that no other state covers (module
    docstring; the same rules as :class:`hwsim.train.pipeline._State`).

    GPipe holds every forward (``m``). 1F1B and ZB-H1 reach all their states once the rank is
    in its steady state (``m ≥ pp``: 1F1B ``pp − r`` forwards; ZB-H1 ``pp − r`` forwards and
    ``r`` pending weight gradients, or ``pp − r − 1`` and ``r + 1``), so their orders are
    walked with at most ``2·pp`` micro-batches; interleaved and DualPipe orders are walked in
    full, within the pipeline's event budget."""
    if schedule == "gpipe" and vpp == 1:
        return (rank,), ((m, 0),)
    if schedule in ("1f1b", "zb"):
        return walk_states(schedule, pp, vpp, min(m, 2 * pp), rank)
    check_size(pp, vpp, m)
    return walk_states(schedule, pp, vpp, m, rank)


def walk_states(
    schedule: str, pp: int, vpp: int, m: int, rank: int
) -> tuple[tuple[int, ...], tuple[tuple[int, ...], ...]]:
    """:func:`inflight_states` by walking the rank's whole order."""
    tasks = rank_order(schedule, pp, vpp, m, rank)
    positions = sorted({t.pos for t in tasks} | {t.pos2 for t in tasks if t.kind == "FB"})
    idx = {p: i for i, p in enumerate(positions)}
    k = len(positions)
    state = [0] * (2 * k)
    seen: set[tuple[int, ...]] = set()
    for t in tasks:
        parts = [("F", t.pos)] if t.kind in ("F", "FB") else []
        if t.kind in ("B", "W"):
            parts.append((t.kind, t.pos))
        if t.kind == "FB":
            parts.append(("B", t.pos2))
        for kind, pos in parts:
            i = idx[pos]
            if kind == "F":
                state[i] += 1
                seen.add(tuple(state))
            elif kind == "B":
                state[i] -= 1
                if t.kind == "B" and t.zb:  # the weight gradient stays pending
                    state[k + i] += 1
                    seen.add(tuple(state))
            else:
                state[k + i] -= 1
    ranked = sorted(seen, key=sum, reverse=True)
    keep: list[tuple[int, ...]] = []
    for s in ranked:
        if not any(all(a >= b for a, b in zip(o, s, strict=True)) for o in keep):
            keep.append(s)
    return tuple(positions), tuple(keep)


@dataclass(frozen=True)
class ActivationPeak:
    """One rank's activation peak: total bytes, the LM head's share (logits), and how it is
    made up (``(count, bytes each, what)`` terms, for messages)."""

    total: float
    logits: float
    terms: tuple[tuple[int, float, str], ...]

    @property
    def activations(self) -> float:
        return self.total - self.logits


def activation_peak(
    model: ModelConfig, lay: TrainLayout, schedule: str, m: int, layers: LayerSet, stage: int
) -> ActivationPeak:
    """The activation bytes one GPU of ``stage`` holds at its peak (module docstring)."""
    positions, states = inflight_states(schedule, lay.pp, lay.vpp, m, stage)
    cb = [chunk_bytes(model, lay, layers, p) for p in positions]
    k = len(positions)
    best: ActivationPeak | None = None
    for s in states:
        total = sum(s[i] * cb[i].forward + s[k + i] * cb[i].deferred for i in range(k))
        if best is not None and total <= best.total:
            continue
        logits = sum(s[i] * cb[i].head + s[k + i] * cb[i].w_head for i in range(k))
        terms = []
        for i, p in enumerate(positions):
            where = f" of chunk {p}" if k > 1 else ""
            if s[i]:
                terms.append((s[i], cb[i].saved, f"forward{where}"))
            if s[k + i]:
                terms.append((s[k + i], cb[i].w_saved, f"pending weight gradient{where}"))
        best = ActivationPeak(total, logits, tuple(terms))
    return best if best is not None else ActivationPeak(0.0, 0.0, ())


def stage_memory(
    model: ModelConfig, lay: TrainLayout, req: TrainRequest, m: int, layers: LayerSet,
    capacity: float, reserved: float, stage: int,
) -> MemoryBreakdown:  # fmt: skip
    """Bytes on one GPU of pipeline stage (rank) ``stage``."""
    p = stage_params(model, lay, stage, req.schedule)
    st = state_bytes(p, lay, req.zero, req.schedule)
    peak = activation_peak(model, lay, req.schedule, m, layers, stage)
    arith = " + ".join(f"{n} {what} × {human_bytes(b)}" for n, b, what in peak.terms) or "none"
    arith = f"{arith} ({req.recompute} recompute)"
    return MemoryBreakdown(stage, st.params, st.grads, st.optimizer, peak.activations,
                           peak.logits, reserved, capacity, arith)  # fmt: skip


def memory_per_gpu(
    model: ModelConfig, lay: TrainLayout, req: TrainRequest, m: int, layers: LayerSet,
    capacity: float, reserved: float,
) -> MemoryBreakdown:  # fmt: skip
    """Bytes on one GPU of the busiest stage (the one with the most in total)."""
    best: MemoryBreakdown | None = None
    for s in range(lay.pp):
        mb = stage_memory(model, lay, req, m, layers, capacity, reserved, s)
        if best is None or mb.total > best.total:
            best = mb
    assert best is not None
    return best


def fit_error(
    mem: MemoryBreakdown, lay: TrainLayout, req: TrainRequest, device: Device
) -> SpecError:
    """The one-line refusal of a layout that does not fit, with its arithmetic."""
    hb = human_bytes
    return SpecError(
        f"layout {lay} does not fit: stage {mem.stage} needs {hb(mem.total)} per GPU (params "
        f"{hb(mem.params)} + grads {hb(mem.grads)} + optimizer {hb(mem.optimizer)} [ZeRO-"
        f"{req.zero}] + activations {mem.arithmetic} = {hb(mem.activations)} + logits "
        f"{hb(mem.logits)} + reserved {hb(mem.reserved)}) > {hb(mem.capacity)} of "
        f"{device.name}; try more pp/tp, ZeRO-3, --recompute full or a smaller --micro-batch",
        key="--layout",
    )
