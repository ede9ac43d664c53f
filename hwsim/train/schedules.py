"""Pipeline schedules as per-rank task orders, the way the frameworks issue them.

A :class:`Task` is one chunk of work of one micro-batch on one rank: ``F`` (forward), ``B``
(backward; with ``zb`` the input gradient only, its weight gradient deferred), ``W`` (a deferred
weight gradient) or ``FB`` (DualPipe: a forward and a backward of two micro-batches overlapped).
``pos`` is the pipeline position (model chunk) in the micro-batch's direction.

* GPipe: every forward, then every backward.
* 1F1B (PipeDream-flush, Narayanan et al. 2021): ``pp − r − 1`` warm-up forwards on rank ``r``,
  then one forward one backward, then the cool-down backwards.
* Interleaved 1F1B (Megatron-Core ``forward_backward_pipelining_with_interleaving``): ``vpp``
  chunks per rank, micro-batches in groups of ``pp``; warm-up ``(pp − r − 1)·2 + (vpp − 1)·pp``
  forwards; the k-th forward runs chunk ``(k // pp) % vpp`` of micro-batch
  ``(k // (pp·vpp))·pp + k % pp``, the k-th backward the chunks in reverse.
* ZB-H1 (Qi et al., "Zero Bubble Pipeline Parallelism", ICLR 2024): 1F1B's order of forwards
  and input-gradient backwards (``B``), with each weight gradient (``W``) deferred: rank ``r``
  keeps up to ``r`` of them pending and runs the oldest when it has more, then one after each
  cool-down ``B`` and the rest at the end. Rank ``r`` then holds at most ``(pp − r) + r = pp``
  micro-batches, 1F1B's peak, and on uniform stages the bubble is the paper's ZB-H1 bubble
  ``(pp − 1)(F + B − W)`` (``B`` the input gradient; ``tests/train`` check it).
* DualPipe (DeepSeek-V3 technical report sec. 3.2.1; the step order of deepseek-ai/DualPipe's
  ``DualPipe.step``): ``pp`` ranks run micro-batches from both ends; rank ``r`` holds stage ``r``
  of direction 0 and stage ``pp − 1 − r`` of direction 1; in the steady state a forward of one
  direction is overlapped with a backward of the other (``FB``), and weight gradients are
  deferred (``W``) around the edges.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

#: schedules decided while the simulation runs (none: every built-in one has a static order)
DYNAMIC: tuple[str, ...] = ()


@dataclass(frozen=True)
class Task:
    """One chunk of work on one rank (see the module docstring)."""

    kind: str  #: F | B | W | FB
    mb: int
    pos: int
    dir: int = 0
    zb: bool = False
    #: FB only: the backward's micro-batch, position and direction
    mb2: int = -1
    pos2: int = -1
    dir2: int = 0

    @property
    def label(self) -> str:
        if self.kind == "FB":
            return f"F{self.mb}|B{self.mb2}"
        return f"{self.kind}{self.mb}"


def gpipe(pp: int, m: int, rank: int) -> list[Task]:
    return [Task("F", i, rank) for i in range(m)] + [Task("B", i, rank) for i in range(m)]


def one_f_one_b(pp: int, m: int, rank: int) -> list[Task]:
    warm = min(pp - rank - 1, m)
    out = [Task("F", i, rank) for i in range(warm)]
    for i in range(m - warm):
        out += [Task("F", warm + i, rank), Task("B", i, rank)]
    out += [Task("B", i, rank) for i in range(m - warm, m)]
    return out


def zb_h1(pp: int, m: int, rank: int) -> list[Task]:
    """ZB-H1's order for ``rank`` (module docstring)."""
    warm = min(pp - rank - 1, m)
    out = [Task("F", i, rank) for i in range(warm)]
    pending: deque[int] = deque()
    for i in range(m - warm):
        out += [Task("F", warm + i, rank), Task("B", i, rank, zb=True)]
        pending.append(i)
        while len(pending) > rank:
            out.append(Task("W", pending.popleft(), rank))
    for i in range(m - warm, m):
        out.append(Task("B", i, rank, zb=True))
        pending.append(i)
        out.append(Task("W", pending.popleft(), rank))
    out += [Task("W", j, rank) for j in pending]
    return out


def interleaved(pp: int, vpp: int, m: int, rank: int) -> list[Task]:
    """Megatron-Core's interleaved 1F1B order for ``rank`` (``m`` a multiple of ``pp``)."""
    total = m * vpp
    warm = min((pp - rank - 1) * 2 + (vpp - 1) * pp, total)

    def fwd(k: int) -> Task:
        chunk = (k // pp) % vpp
        return Task("F", (k // (pp * vpp)) * pp + k % pp, chunk * pp + rank)

    def bwd(k: int) -> Task:
        chunk = vpp - 1 - (k // pp) % vpp
        return Task("B", (k // (pp * vpp)) * pp + k % pp, chunk * pp + rank)

    out = [fwd(k) for k in range(warm)]
    for i in range(total - warm):
        out += [fwd(warm + i), bwd(i)]
    out += [bwd(k) for k in range(total - warm, total)]
    return out


def dualpipe(pp: int, m: int, rank: int) -> list[Task]:
    """DualPipe's order for ``rank`` of ``pp`` (even) with ``m`` micro-batches (even, ≥ 2·pp;
    half from each end). Phase 0 is direction 0 on the first half of the ranks and direction 1
    on the second half."""
    half = pp // 2
    h = min(rank, pp - 1 - rank)
    second = 1 if rank >= half else 0
    middle = rank in (half - 1, half)
    nf = [0, 0]
    nb = [0, 0]
    weights: deque[Task] = deque()
    out: list[Task] = []

    def pos(phase: int) -> tuple[int, int]:
        d = phase ^ second
        return d, (rank if d == 0 else pp - 1 - rank)

    def f(phase: int) -> Task:
        d, p = pos(phase)
        nf[phase] += 1
        return Task("F", nf[phase] - 1, p, d)

    def b(phase: int, zb: bool = False) -> Task:
        d, p = pos(phase)
        nb[phase] += 1
        t = Task("B", nb[phase] - 1, p, d, zb=zb)
        if zb:
            weights.append(t)
        return t

    def w() -> Task:
        t = weights.popleft()
        return Task("W", t.mb, t.pos, t.dir)

    def fb(phase_f: int, phase_b: int) -> Task:
        x, y = f(phase_f), b(phase_b)
        return Task("FB", x.mb, x.pos, x.dir, mb2=y.mb, pos2=y.pos, dir2=y.dir)

    out += [f(0) for _ in range((half - h - 1) * 2)]  # 1: nF0
    for _ in range(h + 1):  # 2: nF0F1
        out += [f(0), f(1)]
    for _ in range(half - h - 1):  # 3: nB1W1F1, zero bubble
        out.append(b(1, zb=True))
        out += [w(), f(1)]
    for i in range(m // 2 - pp + h + 1):  # 4: nF0B1F1B0, the overlapped steady state
        if i == 0 and middle:
            out += [f(0), b(1)]  # not overlapped, to keep the bubble small
        else:
            out.append(fb(0, 1))
        out.append(fb(1, 0))
    for _ in range(half - h - 1):  # 5: nB1F1B0
        out += [b(1), fb(1, 0)]
    zb = False
    s6 = h + 1
    for i in range(s6):  # 6: nB1B0, the second half with zero bubble
        if i == s6 // 2 and h % 2 == 1:
            zb = True
        out.append(b(1, zb))
        if i == s6 // 2 and h % 2 == 0:
            zb = True
        out.append(b(0, zb))
    for _ in range(half - h - 1):  # 7: nWB0
        out.append(w())
        out.append(b(0, zb=True))
    out += [w() for _ in range(h + 1)]  # 8: nW
    while weights:
        out.append(w())
    return out


def rank_order(schedule: str, pp: int, vpp: int, m: int, rank: int) -> list[Task]:
    """One rank's static order (empty for a dynamic schedule)."""
    if schedule == "gpipe":
        return gpipe(pp, m, rank)
    if schedule == "1f1b":
        return one_f_one_b(pp, m, rank)
    if schedule == "interleaved":
        return interleaved(pp, vpp, m, rank)
    if schedule == "zb":
        return zb_h1(pp, m, rank)
    if schedule == "dualpipe":
        return dualpipe(pp, m, rank)
    return []


def orders(schedule: str, pp: int, vpp: int, m: int) -> list[list[Task]]:
    """Every rank's static order (empty lists for a dynamic schedule)."""
    return [rank_order(schedule, pp, vpp, m, r) for r in range(pp)]
