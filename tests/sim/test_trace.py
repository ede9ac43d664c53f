"""Trace-event JSON: every thread's complete events nest (viewers drop or mis-draw overlaps)."""

from __future__ import annotations

import itertools
from collections import defaultdict
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from hwsim.plan.attention import AttentionShape
from hwsim.sim.engine import TraceEvent
from hwsim.sim.gpu_attention import simulate_attention
from hwsim.sim.trace import assign_lanes, chrome_trace
from hwsim.spec.load import load_device


def _overlaps(data: dict[str, Any]) -> list[tuple[int, float, float]]:
    """(tid, previous end, next start) for every pair of X events of one thread that overlap by
    more than 1e-6 us (the file is on a whole-ns grid; 1e-6 us absorbs float printing)."""
    by_tid: dict[int, list[tuple[float, float]]] = defaultdict(list)
    for e in data["traceEvents"]:
        if e["ph"] == "X":
            by_tid[e["tid"]].append((e["ts"], e["ts"] + e["dur"]))
    bad = []
    for tid, spans in by_tid.items():
        spans.sort()
        bad += [(tid, a[1], b[0]) for a, b in itertools.pairwise(spans) if b[0] < a[1] - 1e-6]
    return bad


def test_lanes_hand_case() -> None:
    # [0,2] and [2,4] touch: one lane; [1,3] overlaps both: a second lane
    spans = [
        TraceEvent("A", "x", 0.0, 2e-6),
        TraceEvent("A", "y", 1e-6, 3e-6),
        TraceEvent("A", "z", 2e-6, 4e-6),
        TraceEvent("B", "w", 1e-6, 3e-6),
    ]
    assert assign_lanes(spans) == [
        ("A", 0, 2000),
        ("A #2", 1000, 3000),
        ("A", 2000, 4000),
        ("B", 1000, 3000),
    ]


def test_sub_ns_float_overlap_is_touching() -> None:
    # 117.3 us + 5.32 us summed in floats can end a hair after the next span starts
    a = TraceEvent("SM 000", "a", 117.32149798984916e-6, 122.64247426622197e-6)
    b = TraceEvent("SM 000", "b", 122.64247426622195e-6, 175.8576625792929e-6)
    assert {t for t, _, _ in assign_lanes([a, b])} == {"SM 000"}


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["A", "B"]), st.integers(0, 10_000), st.integers(0, 5_000)),
        max_size=40,
    )
)
def test_lanes_never_overlap(raw: list[tuple[str, int, int]]) -> None:
    spans = [TraceEvent(t, f"s{i}", s * 1e-9, (s + d) * 1e-9) for i, (t, s, d) in enumerate(raw)]
    data = chrome_trace(spans)
    assert _overlaps(data) == []
    assert sum(e["ph"] == "X" for e in data["traceEvents"]) == len(spans)  # nothing dropped


def test_h100_fa3_trace_nests() -> None:
    # FA3 causal: each SM's copy engine prefetches the next CTA's tiles while the previous CTA's
    # last loads finish, so copy spans overlap and need a second lane
    shape = AttentionShape(4, 16, 16, 4096, 4096, 128, 128, causal=True, dtype="fp16")
    r = simulate_attention(load_device("h100-sxm"), shape, "fa3", trace=True, trace_sms=2)
    assert r.trace is not None
    data = chrome_trace(r.trace.spans, r.trace.rate_log, r.trace.link_names)
    assert _overlaps(data) == []
    names = {e["args"]["name"] for e in data["traceEvents"] if e.get("name") == "thread_name"}
    assert "SM 000 · copy #2" in names
