"""The pipeline of a training step: tasks of stages × micro-batches
(:mod:`hwsim.train.schedules`) played one process per pipeline rank on simpy, with activations
and their gradients sent between ranks over point-to-point links.

A rank runs its tasks one at a time in its schedule's order; a task waits for its inputs: a
forward for the previous position's activations, a backward for the next position's gradient
(the last position's for its own forward). A directed link between two ranks carries one send
at a time, first come first served, each taking ``bytes / bandwidth`` plus the link latency
(NCCL's point-to-point sends on one channel). Cost grows with ranks × micro-batches × chunks,
never with layers or tokens: a task's duration is its chunk's pass cost, computed once
(:mod:`hwsim.train.timing`).

Static orders also run as an exact list schedule of the same semantics, without events (the
default: ~10x faster; ``tests/train`` hold the two players equal), as
:func:`hwsim.serve.step.stage_schedule` does for serving stages.

The result keeps an event log of every task (rank, kind, micro-batch, position, start, end),
every transfer, each rank's busy time and peak in-flight activation bytes, and when each
rank's last backward of each chunk ran (the gradients data parallelism then reduces).
Activations: a forward keeps its chunk's, a full backward frees them, a zero-bubble
input-gradient backward frees all but what its deferred weight gradient needs and the ``W``
frees that (:mod:`hwsim.train.memory` counts the same before the step is played).
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

import simpy

from hwsim.sim.engine import CountingEnvironment
from hwsim.spec.errors import SpecError
from hwsim.train.schedules import DYNAMIC, Task, orders


@dataclass(frozen=True)
class Span:
    """One task on one rank (seconds from the start of the step)."""

    rank: int
    task: Task
    start_s: float
    end_s: float

    @property
    def kind(self) -> str:
        return self.task.kind

    @property
    def label(self) -> str:
        return self.task.label

    @property
    def pos(self) -> int:
        return self.task.pos


@dataclass(frozen=True)
class Transfer:
    """One point-to-point send between ranks."""

    src: int
    dst: int
    kind: str  #: activation | gradient
    start_s: float
    end_s: float
    nbytes: float


@dataclass(frozen=True)
class PipelineSpec:
    """What to play: ``pp`` ranks, ``vpp`` chunks each, ``m`` micro-batches per replica;
    ``duration(task)`` in seconds; ``saved(pos)`` activation bytes a forward keeps; ``p2p``
    bytes per send over links of ``p2p_Bps`` and ``p2p_latency_s``; ``w_saved(pos)`` the
    bytes a deferred weight gradient keeps from its input-gradient backward until its ``W``
    (None: all the forward kept)."""

    schedule: str
    pp: int
    vpp: int
    m: int
    duration: Callable[[Task], float]
    saved: Callable[[int], float]
    p2p_bytes: float
    p2p_Bps: float
    p2p_latency_s: float
    keep_log: bool = True  #: keep every task and transfer (the timeline); off for searches
    w_saved: Callable[[int], float] | None = None


@dataclass
class PipelineResult:
    makespan_s: float
    spans: list[Span]
    transfers: list[Transfer]
    busy_s: list[float]  #: per rank
    end_s: list[float]  #: per rank: when its last task ended
    peak_activation_bytes: list[float]  #: per rank
    peak_inflight: list[int]  #: per rank: most micro-batch chunks between forward and freeing
    #: per rank: {chunk position: (start, end) of the task that finished its weight gradients}
    last_grad: list[dict[int, tuple[float, float]]] = field(default_factory=list)
    events: int = 0

    @property
    def bubble_fraction(self) -> float:
        """Idle share of the busiest rank over the pipeline's makespan."""
        if self.makespan_s <= 0:
            return 0.0
        return max(0.0, 1.0 - max(self.busy_s) / self.makespan_s)


def rank_of(schedule: str, pp: int, pos: int, direction: int) -> int:
    """The rank that runs pipeline position ``pos`` of direction ``direction``."""
    if schedule == "dualpipe":
        return pos if direction == 0 else pp - 1 - pos
    return pos % pp


class _State:
    """Bookkeeping shared by both players: the log, memory, the links' FIFO occupancy."""

    def __init__(self, spec: PipelineSpec) -> None:
        self.spec = spec
        pp = spec.pp
        self.last = pp * spec.vpp - 1 if spec.schedule != "dualpipe" else pp - 1
        self.res = PipelineResult(0.0, [], [], [0.0] * pp, [0.0] * pp, [0.0] * pp, [0] * pp,
                                  [{} for _ in range(pp)])  # fmt: skip
        self.mem = [0.0] * pp
        self.live = [0] * pp
        self.link_free: dict[tuple[int, int], float] = {}
        self.forwards = 0

    def deps(self, t: Task) -> list[tuple[object, ...]]:
        """Keys of the inputs ``t`` waits for."""
        out: list[tuple[object, ...]] = []
        if t.kind in ("F", "FB") and t.pos > 0:
            out.append(("act", t.dir, t.mb, t.pos))
        if t.kind == "B":
            out.append(self._grad_key(t.dir, t.mb, t.pos))
        if t.kind == "FB":
            out.append(self._grad_key(t.dir2, t.mb2, t.pos2))
        return out

    def _grad_key(self, d: int, mb: int, pos: int) -> tuple[object, ...]:
        return ("grad", d, mb, pos) if pos < self.last else ("fdone", d, mb, pos)

    def send_time(self, src: int, dst: int, t_end: float) -> tuple[float, float]:
        """(start, arrival) of a send issued at ``t_end``: a directed link carries one send at
        a time, first come first served, ``bytes / bandwidth`` each, plus the latency."""
        spec = self.spec
        if src == dst or spec.p2p_bytes <= 0:
            return t_end, t_end
        start = max(t_end, self.link_free.get((src, dst), 0.0))
        busy = spec.p2p_bytes / spec.p2p_Bps
        self.link_free[(src, dst)] = start + busy
        return start, start + busy + spec.p2p_latency_s

    def finish(self, rank: int, t: Task, start: float, end: float
               ) -> list[tuple[tuple[object, ...], int, float]]:  # fmt: skip
        """Log ``t`` and return its outputs: (key, consumer rank, arrival time)."""
        spec, res = self.spec, self.res
        pp = spec.pp
        if spec.keep_log:
            res.spans.append(Span(rank, t, start, end))
        self.forwards += t.kind in ("F", "FB")
        res.busy_s[rank] += end - start
        res.end_s[rank] = end
        out: list[tuple[tuple[object, ...], int, float]] = []
        parts = [("F", t.mb, t.pos, t.dir)] if t.kind in ("F", "FB") else []
        if t.kind in ("B", "W"):
            parts.append((t.kind, t.mb, t.pos, t.dir))
        if t.kind == "FB":
            parts.append(("B", t.mb2, t.pos2, t.dir2))
        for kind, mb, pos, d in parts:
            if kind == "F":
                self.mem[rank] += spec.saved(pos)
                self.live[rank] += 1
                self._peak(rank)
                res.peak_inflight[rank] = max(res.peak_inflight[rank], self.live[rank])
                if pos < self.last:
                    dst = rank_of(spec.schedule, pp, pos + 1, d)
                    out.append(
                        (("act", d, mb, pos + 1), dst, self._send(rank, dst, end, "activation"))
                    )
                else:
                    out.append((("fdone", d, mb, pos), rank, end))
            elif kind == "B":
                if pos > 0:
                    dst = rank_of(spec.schedule, pp, pos - 1, d)
                    out.append(
                        (("grad", d, mb, pos - 1), dst, self._send(rank, dst, end, "gradient"))
                    )
                if not (t.kind == "B" and t.zb):  # a full backward frees its activations
                    self._free(rank, pos, start, end, spec.saved(pos))
                else:  # all but what the deferred weight gradient needs
                    self.mem[rank] += self._w_saved(pos) - spec.saved(pos)
                    self._peak(rank)
            else:  # W: the deferred weight gradient frees the rest
                self._free(rank, pos, start, end, self._w_saved(pos))
        return out

    def _w_saved(self, pos: int) -> float:
        w = self.spec.w_saved
        return self.spec.saved(pos) if w is None else w(pos)

    def _peak(self, rank: int) -> None:
        peak = self.res.peak_activation_bytes
        peak[rank] = max(peak[rank], self.mem[rank])

    def _send(self, src: int, dst: int, t_end: float, kind: str) -> float:
        start, arrival = self.send_time(src, dst, t_end)
        if src != dst and self.spec.p2p_bytes > 0 and self.spec.keep_log:
            self.res.transfers.append(Transfer(src, dst, kind, start, arrival, self.spec.p2p_bytes))
        return arrival

    def _free(self, rank: int, pos: int, start: float, end: float, nbytes: float) -> None:
        self.mem[rank] -= nbytes
        self.live[rank] -= 1
        self.res.last_grad[rank][pos] = (start, end)

    def check(self, engine_events: int) -> PipelineResult:
        spec, res = self.spec, self.res
        res.events = engine_events
        done = self.forwards
        expect = spec.m * (spec.pp * spec.vpp if spec.schedule != "dualpipe" else spec.pp)
        if done != expect:  # a schedule that deadlocks leaves tasks unplayed
            raise SpecError(
                f"the {spec.schedule} schedule stalled after {done} of {expect} forwards"
            )
        res.makespan_s = max(res.end_s)
        return res


def check_size(pp: int, vpp: int, m: int) -> None:
    """Refuse a pipeline no run should wait for (every task is one event, and a send or two):
    :class:`~hwsim.spec.limits.LimitExceeded` past the event budget."""
    from hwsim.spec.limits import check_budget

    tasks = 3 * m * pp * vpp
    check_budget(tasks, cheaper_mode_hint="fewer micro-batches (a larger --micro-batch) or stages")


def simulate_pipeline(spec: PipelineSpec, engine: str = "auto") -> PipelineResult:
    """Play every rank's tasks (module docstring). Static orders run as an exact list schedule
    by default (``engine="list"``: each rank's tasks in order, each starting when the rank is
    free and its inputs have arrived) and ``engine="simpy"`` plays the same on simpy (a test
    holds the two equal); a schedule that decides as tasks become ready runs on simpy."""
    check_size(spec.pp, spec.vpp, spec.m)
    if spec.schedule in DYNAMIC or engine == "simpy":
        return _play_simpy(spec)
    return _play_list(spec)


def _play_list(spec: PipelineSpec) -> PipelineResult:
    """Static orders, event-free: ranks advance until an input is missing; an arriving input
    wakes the rank waiting for it."""
    st = _State(spec)
    order = orders(spec.schedule, spec.pp, spec.vpp, spec.m)
    ptr = [0] * spec.pp
    free = [0.0] * spec.pp
    avail: dict[tuple[object, ...], float] = {}
    waiting: dict[tuple[object, ...], int] = {}
    todo = list(range(spec.pp - 1, -1, -1))
    while todo:
        r = todo.pop()
        tasks = order[r]
        while ptr[r] < len(tasks):
            t = tasks[ptr[r]]
            ready = free[r]
            missing = None
            for k in st.deps(t):
                at = avail.get(k)
                if at is None:
                    missing = k
                    break
                ready = max(ready, at)
            if missing is not None:
                waiting[missing] = r
                break
            end = ready + spec.duration(t)
            for key, _, at in st.finish(r, t, ready, end):
                avail[key] = at
                w = waiting.pop(key, None)
                if w is not None:
                    todo.append(w)
            free[r] = end
            ptr[r] += 1
    return st.check(0)


def _play_simpy(spec: PipelineSpec) -> PipelineResult:
    """One simpy process per rank; inputs are simpy events that fire on arrival."""
    st = _State(spec)
    env = CountingEnvironment()
    pp, m = spec.pp, spec.m
    ready: dict[tuple[object, ...], simpy.Event] = {}
    wake = [env.event() for _ in range(pp)]

    def ev(key: tuple[object, ...]) -> simpy.Event:
        e = ready.get(key)
        if e is None:
            e = ready[key] = env.event()
        return e

    def deliver(key: tuple[object, ...], rank: int, at: float) -> None:
        def fire(_: Any = None) -> None:
            e = ev(key)
            if not e.triggered:
                e.succeed()
            if not wake[rank].triggered:
                wake[rank].succeed()

        if at <= env.now:
            fire()
        else:
            env.timeout(at - env.now).callbacks.append(fire)

    def run(rank: int, t: Task) -> Generator[Any, Any, None]:
        start = env.now
        yield env.timeout(spec.duration(t))
        for key, dst, at in st.finish(rank, t, start, env.now):
            deliver(key, dst, at)

    def static(rank: int, tasks: list[Task]) -> Generator[Any, Any, None]:
        for t in tasks:
            for k in st.deps(t):
                e = ev(k)
                if not e.triggered:
                    yield e
            yield from run(rank, t)

    for r, tasks in enumerate(orders(spec.schedule, pp, spec.vpp, m)):
        env.process(static(r, tasks))
    env.run()
    return st.check(env.events_processed)
