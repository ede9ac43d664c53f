"""Chrome / Perfetto trace-event JSON from simulation spans and link traffic.

The result is the `Trace Event Format` (a JSON object with ``traceEvents``) that
ui.perfetto.dev and chrome://tracing open directly:

* one process "GPU" with a thread (track) per span track - ``kernels``, ``SM 003`` (CTAs),
  ``SM 003 · copy`` (its copy engine: loads), ``SM 003 · pipe`` (tile detail: fill, steps, drain)
  - as complete events (``ph: "X"``), sorted so each SM's tracks sit together;
* one process "memory" with a counter track per link (HBM, L2, …) carrying its rate in GB/s
  (``ph: "C"``), downsampled to at most ``max_counter_points`` samples per link.

Times are microseconds in the file (the format's unit), on a whole-nanosecond grid. Viewers
(Perfetto, chrome://tracing, speedscope) require the complete events of one thread to nest
properly; spans of one track that genuinely overlap - a copy engine already loading the next
CTA's tiles while the last loads of the previous one finish, or two CTAs resident on one SM - are
therefore spread over *lanes*: extra threads named ``<track> #2``, ``#3`` … next to the track.
Touching spans (one ends exactly where the next starts) share a lane; a sub-nanosecond overlap
left by floating-point sums counts as touching. This module only builds the dict; the CLI/report
layer writes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hwsim.sim.engine import TraceEvent

_GPU_PID = 1
_MEM_PID = 2


def _track_key(track: str) -> tuple[int, str]:
    """Kernels first, then SMs in order with their copy/pipe tracks right after them."""
    return (0, "") if track == "kernels" else (1, track)


def _ns(t_s: float) -> int:
    """A time on the whole-nanosecond grid the file uses (viewers store integer ns)."""
    return round(t_s * 1e9)


def assign_lanes(spans: Sequence[TraceEvent]) -> list[tuple[str, int, int]]:
    """(lane track name, start ns, end ns) for each span, in input order, such that the spans of
    one lane never overlap: greedy interval partitioning per track (spans sorted by start go to
    the first lane that is free; optimal in the number of lanes)."""
    out: list[tuple[str, int, int]] = [("", 0, 0)] * len(spans)
    order = sorted(range(len(spans)), key=lambda i: (spans[i].track, spans[i].start_s, i))
    lane_end: dict[str, list[int]] = {}
    for i in order:
        s = spans[i]
        start, end = _ns(s.start_s), max(_ns(s.end_s), _ns(s.start_s))
        ends = lane_end.setdefault(s.track, [])
        lane = next((k for k, e in enumerate(ends) if e <= start), len(ends))
        if lane == len(ends):
            ends.append(end)
        else:
            ends[lane] = end
        out[i] = (s.track if lane == 0 else f"{s.track} #{lane + 1}", start, end)
    return out


def chrome_trace(
    spans: Sequence[TraceEvent],
    rate_log: Sequence[tuple[float, Sequence[float]]] = (),
    link_names: Sequence[str] = (),
    *,
    max_counter_points: int = 4000,
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Build the trace-event JSON object (see the module docstring)."""
    events: list[dict[str, Any]] = []
    lanes = assign_lanes(spans)
    tracks = sorted({t for t, _, _ in lanes}, key=_track_key)
    tid = {t: i + 1 for i, t in enumerate(tracks)}
    events.append({"ph": "M", "pid": _GPU_PID, "name": "process_name", "args": {"name": "GPU"}})
    events.append(
        {"ph": "M", "pid": _GPU_PID, "name": "process_sort_index", "args": {"sort_index": 0}}
    )
    for t, i in tid.items():
        events.append(
            {"ph": "M", "pid": _GPU_PID, "tid": i, "name": "thread_name", "args": {"name": t}}
        )
        events.append(
            {
                "ph": "M",
                "pid": _GPU_PID,
                "tid": i,
                "name": "thread_sort_index",
                "args": {"sort_index": i},
            }
        )
    for s, (track, start_ns, end_ns) in zip(spans, lanes, strict=True):
        events.append(
            {
                "ph": "X",
                "pid": _GPU_PID,
                "tid": tid[track],
                "name": s.name,
                "ts": start_ns / 1e3,
                "dur": (end_ns - start_ns) / 1e3,
                "args": dict(s.args),
            }
        )
    if rate_log and link_names:
        events.append(
            {"ph": "M", "pid": _MEM_PID, "name": "process_name", "args": {"name": "memory"}}
        )
        events.append(
            {"ph": "M", "pid": _MEM_PID, "name": "process_sort_index", "args": {"sort_index": 1}}
        )
        step = max(1, -(-len(rate_log) // max_counter_points))
        picked = list(rate_log[::step])
        if picked[-1] is not rate_log[-1]:
            picked.append(rate_log[-1])
        for t_s, rates in picked:
            for name, r in zip(link_names, rates, strict=True):
                events.append(
                    {
                        "ph": "C",
                        "pid": _MEM_PID,
                        "name": f"{name} traffic",
                        "ts": t_s * 1e6,
                        "args": {"GB/s": r / 1e9},
                    }
                )
    out: dict[str, Any] = {"traceEvents": events, "displayTimeUnit": "ns"}
    if metadata:
        out["metadata"] = metadata
    return out
