"""Stop a serving run as soon as its SLO is certainly lost.

A search (``hwsim size``, ``hwsim compare``, the QPS search) only needs to know *whether* a
deployment meets its percentile limits. Once more of the steady-state requests have missed a
limit than the percentile allows, no later event can rescue it, and simulating the rest of an
overloaded run (whose queue, and so its iterations, only grow) is wasted work.

The test is exact, not a heuristic. With ``n`` values and numpy's linear interpolation, the
``q``-th percentile lies at sorted position ``pos = q (n - 1)`` and is at least the value at
``floor(pos)``; so if ``k >= n - floor(pos)`` values exceed the limit, the percentile does too.
That threshold never falls as ``n`` grows, so using the most requests the steady window can hold
(every steady request, though some may be refused or have one output token and so no TPOT)
never stops a run that could still pass. Requests outside the steady window
(:func:`hwsim.serve.metrics.steady_window`) are not counted: they are not in the statistics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from hwsim.serve.metrics import SLO, WARMUP_FRACTION


def lost_after(n: int, percentile: float) -> int:
    """Values over a limit (out of at most ``n``) that put the ``percentile``-th percentile
    (0-100) over it, whatever the others are."""
    return n - math.floor(percentile / 100.0 * (n - 1))


@dataclass
class SloWatch:
    """Counts steady-window requests over each percentile limit of ``slo`` as their first token
    and last token arrive; ``lost`` names the first limit that can no longer be met."""

    slo: SLO
    requests: int  #: requests of the open-loop run, ids ``0 .. requests-1`` in arrival order
    lost: str = ""
    _over: dict[str, int] = field(default_factory=dict)
    _need: dict[str, int] = field(default_factory=dict)
    _limit: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = self.requests
        self.lo = int(WARMUP_FRACTION * n)
        self.hi = max(int((1 - WARMUP_FRACTION) * n) - 1, 0)
        steady = self.hi - self.lo + 1
        for metric, stat, value in self.slo.limits:
            if not stat.startswith("p"):
                continue  # a mean can still be rescued by later requests
            key = f"{metric}_{stat}"
            self._need[key] = lost_after(steady, float(stat[1:]))
            self._limit[key] = value
            self._over[key] = 0

    def _count(self, rid: int, metric: str, value: float) -> None:
        if not self.lo <= rid <= self.hi:
            return
        for key, limit in self._limit.items():
            if key.startswith(metric + "_") and value > limit:
                self._over[key] += 1
                if self._over[key] >= self._need[key] and not self.lost:
                    self.lost = (
                        f"{key} over {limit * 1e3:.3g} ms for {self._over[key]} steady "
                        "requests already (run stopped)"
                    )

    def first(self, rid: int, ttft_s: float) -> None:
        self._count(rid, "ttft", ttft_s)

    def finished(self, rid: int, tpot_s: float) -> None:
        self._count(rid, "tpot", tpot_s)
