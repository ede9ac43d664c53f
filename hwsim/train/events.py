"""The event log of a training step: where each collective and optimizer step runs on each
pipeline rank, for the Perfetto trace and the HTML timeline (:mod:`hwsim.report.train_figures`
reads :attr:`hwsim.train.result.TrainResult.events`).

Kept apart from :mod:`hwsim.train.step` because it only records what the simulation already
timed: nothing here changes a step's time, and none of it runs unless a view is asked for
(``TrainRequest.timeline``). Three parts:

* **within a pass** (:func:`zero3_spans`): ZeRO-3's per-layer parameter all-gather and
  gradient reduce-scatter, added to a pass's :class:`~hwsim.train.timing.CommSpan` list
  (the TP/CP/EP collectives are recorded by :meth:`hwsim.train.timing.Timer.cost` itself);
* **within a task** (:func:`chunk_comm`): a chunk's layers' passes laid end to end;
* **within the step** (:func:`task_events`, :func:`dp_events`): each task's collectives
  placed at the task's start, and each rank's data-parallel buckets, optimizer step and
  parameter all-gather where :func:`hwsim.train.step.simulate_train` times them.

Units: every time is in seconds (from the start of the pass, the task, or the step, as each
function says); ``nbytes`` are the bytes each rank moves.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from hwsim.plan.train_layout import TrainLayout
from hwsim.plan.train_memory import GRAD_BYTES, PARAM_BYTES
from hwsim.train.dp import zero3_layer_comm
from hwsim.train.pipeline import PipelineResult
from hwsim.train.request import TrainRequest
from hwsim.train.result import StepEvent
from hwsim.train.schedules import Task
from hwsim.train.timing import CommSpan, PassCost, Timer

#: A chunk's distinct layers' pass costs (forward, backward, input-gradient backward, weight
#: gradient) in forward order with their repeat counts (``ChunkCosts.parts`` of one chunk).
ChunkParts = Sequence[tuple[tuple[PassCost, PassCost, PassCost, PassCost], int]]

#: Most collectives the step's event log lists one by one; past it each task's collectives
#: of one category are packed into one interval of their busy time (a trace that large would
#: not open in a browser anyway).
MAX_COMM_EVENTS = 400_000


def zero3_spans(timer: Timer, lay: TrainLayout, layer_params: float, *passes: PassCost) -> None:
    """Where ZeRO-3's per-layer collectives run in each pass (:func:`zero3_layer_exposure`):
    the next layer's parameter all-gather from the pass's start (forward), then the gradient
    reduce-scatter (backward); clipped to the pass (a zero-bubble input-gradient pass is
    shorter than the backward the exposure was charged against)."""
    ag, rs = zero3_layer_comm(timer, lay, layer_params)
    for i, pc in enumerate(passes):
        if pc.time_s <= 0:
            continue
        todo = [("ZeRO-3 param all-gather", ag, layer_params * PARAM_BYTES)]
        if i > 0:
            todo.append(("ZeRO-3 grad reduce-scatter", rs, layer_params * GRAD_BYTES))
        at = 0.0
        for name, dur, nbytes in todo:
            dur = min(dur, pc.time_s - at)
            if dur > 0:
                pc.spans.append(CommSpan("dp", name, at, dur, nbytes))
                at += dur


def chunk_comm(parts: ChunkParts, which: int) -> list[CommSpan]:
    """The collectives of one chunk's pass ``which`` (0 forward, 1 backward, 2 input-gradient
    backward, 3 weight gradient), in seconds from the task's start: its layers' passes laid
    end to end (a backward or weight gradient in reverse layer order), each pass's as
    :meth:`Timer.cost` recorded them."""
    out: list[CommSpan] = []
    at = 0.0
    for costs, n in parts if which == 0 else parts[::-1]:
        pc = costs[which]
        for _ in range(n):
            out += [sp.shifted(at) for sp in pc.spans]
            at += pc.time_s
    return out


def task_events(
    pipe: PipelineResult, task_comm: Callable[[Task], list[CommSpan]], notes: list[str]
) -> list[StepEvent]:
    """The collectives inside every pipeline task (``task_comm``: seconds from the task's
    start), placed at the task's start; past :data:`MAX_COMM_EVENTS` packed per task and
    category (and a line added to ``notes``)."""
    total = sum(len(task_comm(s.task)) for s in pipe.spans)
    packed = total > MAX_COMM_EVENTS
    if packed:
        notes.append(f"event log: {total:,} collectives, more than {MAX_COMM_EVENTS:,}; each "
                     "task's collectives of one kind are packed into one interval of their busy "
                     "time")  # fmt: skip
    out: list[StepEvent] = []
    for s in pipe.spans:
        spans = task_comm(s.task)
        if not packed:
            for c in spans:
                t0 = s.start_s + c.start_s
                out.append(StepEvent(s.rank, c.category, c.name, t0, t0 + c.dur_s, c.nbytes))
            continue
        cats: dict[str, list[CommSpan]] = {}
        for c in spans:
            cats.setdefault(c.category, []).append(c)
        for cat, cs in cats.items():
            t0 = s.start_s + cs[0].start_s
            end = min(s.end_s, t0 + sum(c.dur_s for c in cs))
            out.append(StepEvent(s.rank, cat, f"{cat} ({len(cs)} collectives, packed)", t0, end,
                                 sum(c.nbytes for c in cs)))  # fmt: skip
    return out


def dp_events(
    req: TrainRequest, rank: int, gather_s: float, buckets: list[tuple[float, float]],
    done: float, opt: float, first: float,
) -> list[StepEvent]:  # fmt: skip
    """One rank's data-parallel collectives and optimizer step, as the step's data-parallel
    phase times them (seconds from the step's start): the gradient buckets on their channel
    (:func:`hwsim.train.dp.reduce_finish`), the optimizer when they are ``done`` (``opt``
    long), the exposed ``first`` parameter all-gather after it, and the rest of the gather
    (``gather_s`` in all) where it runs in the steady state, under the first forwards (the
    previous step's)."""
    red = "grad all-reduce" if req.zero == 0 else "grad reduce-scatter"
    n = len(buckets)
    out = [StepEvent(rank, "dp", f"{red} (bucket {i + 1}/{n})", a, b)
           for i, (a, b) in enumerate(buckets)]  # fmt: skip
    if opt > 0:
        out.append(StepEvent(rank, "optimizer", "optimizer (Adam)", done, done + opt))
    if first > 0:
        out.append(StepEvent(rank, "dp", "param all-gather (exposed)", done + opt,
                             done + opt + first))  # fmt: skip
    rest = min(gather_s - first, done + opt)
    if rest > 0:
        out.append(StepEvent(rank, "dp", "param all-gather (under the first forwards)", 0.0,
                             rest))  # fmt: skip
    return out
