"""Memory per GPU of a training step: the busiest stage's parameters, gradients, optimizer
states (ZeRO-sharded), activations of the micro-batch chunks it holds in flight under the
schedule, the LM head's logits and the framework's reserve (:mod:`hwsim.plan.train_memory`
has the arithmetic); and the one-line refusal of a layout that does not fit."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hwsim.plan.train_layout import TrainLayout
from hwsim.plan.train_memory import (
    MemoryBreakdown,
    inflight_chunks,
    stage_chunks,
    stage_params,
    state_bytes,
)
from hwsim.spec.errors import SpecError
from hwsim.spec.fit import human_bytes
from hwsim.spec.model import ModelConfig
from hwsim.train.request import TrainRequest

if TYPE_CHECKING:
    from hwsim.spec.device import Device
    from hwsim.train.step import LayerSet


def memory_per_gpu(
    model: ModelConfig, lay: TrainLayout, req: TrainRequest, m: int, layers: LayerSet,
    capacity: float, reserved: float,
) -> MemoryBreakdown:  # fmt: skip
    """Bytes on one GPU of the busiest stage (see :mod:`hwsim.plan.train_memory`)."""
    best: MemoryBreakdown | None = None
    stages = sorted({0, lay.pp - 1, min(1, lay.pp - 1)})
    for s in stages:
        p = stage_params(model, lay, s, req.schedule)
        st = state_bytes(p, lay, req.zero, req.schedule)
        chunk_saved = []
        for c in stage_chunks(lay, s, req.schedule):
            chunk_saved.append(
                sum(
                    ps.saved_bytes * n
                    for ps, n in layers.chunk(model, lay.chunks, c)
                    if ps is not layers.head
                )
            )
        per_chunk = max(chunk_saved)
        n_in = inflight_chunks(req.schedule, lay.pp, lay.vpp, m, s)
        act = per_chunk * n_in
        logits = layers.head.saved_bytes * (min(n_in, 2) if s == lay.pp - 1 else 0)
        arith = (f"{n_in} micro-batch chunk(s) × {human_bytes(per_chunk)}"
                 f" ({req.recompute} recompute)")  # fmt: skip
        mb = MemoryBreakdown(s, st.params, st.grads, st.optimizer, act, logits, reserved,
                             capacity, arith)  # fmt: skip
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
