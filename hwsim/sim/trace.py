"""Chrome / Perfetto trace-event JSON from simulation spans and link traffic.

The result is the `Trace Event Format` (a JSON object with ``traceEvents``) that
ui.perfetto.dev and chrome://tracing open directly:

* one process "GPU" with a thread (track) per span track - ``kernels``, ``SM 003`` (CTAs),
  ``SM 003 · copy`` (its copy engine: loads), ``SM 003 · pipe`` (tile detail: fill, steps, drain)
  - as complete events (``ph: "X"``), sorted so each SM's tracks sit together;
* one process "memory" with a counter track per link (HBM, L2, …) carrying its rate in GB/s
  (``ph: "C"``), downsampled to at most ``max_counter_points`` samples per link.

Times are microseconds in the file (the format's unit). This module only builds the dict; the
CLI/report layer writes it.
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
    tracks = sorted({s.track for s in spans}, key=_track_key)
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
    for s in spans:
        events.append(
            {
                "ph": "X",
                "pid": _GPU_PID,
                "tid": tid[s.track],
                "name": s.name,
                "ts": s.start_s * 1e6,
                "dur": max(s.end_s - s.start_s, 0.0) * 1e6,
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
