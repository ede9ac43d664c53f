"""The Perfetto trace of a training step (issue 20: "a timeline of one step (stages ×
micro-batches, communication tracks) ... as a Perfetto trace"): besides the stage and
point-to-point tracks, per stage a TP, CP, EP and DP track with every collective where the
simulation timed it.

A small MoE job (Qwen3-30B-A3B on 16 H100s, TP2 PP2 DP4 EP8, 4 micro-batches) covers TP, EP and
DP; a small dense GPT with CP2 and ZeRO-3 covers the CP track and ZeRO-3's per-layer
collectives. Each step takes about a second.

Tolerances: event times are sums of float seconds, so bounds are checked to
``OVERLAP_TOL_S`` (1 ns) and busy-time identities to a relative 1e-9."""

from __future__ import annotations

from collections import defaultdict
from itertools import pairwise
from typing import Any

import pytest

from hwsim.report.train_figures import OVERLAP_TOL_S, timeline_figure, train_trace
from hwsim.train.request import TrainRequest
from hwsim.train.result import TrainResult
from hwsim.train.step import simulate_train
from hwsim.validate.training import gpt_model

SUM_TOL = 1e-9
TOL_US = OVERLAP_TOL_S * 1e6


def _moe(schedule: str = "1f1b", **kw: Any) -> TrainResult:
    req = TrainRequest(model="qwen3-30b-a3b", cluster="dgx-h100", gpus=16,
                       layout="tp=2,pp=2,dp=4,ep=8", seqlen=2048, global_batch=16,
                       schedule=schedule, timeline=True, **kw)  # fmt: skip
    return simulate_train(req)


def _threads(trace: dict[str, Any]) -> dict[tuple[int, int], str]:
    return {
        (e["pid"], e["tid"]): e["args"]["name"]
        for e in trace["traceEvents"]
        if e["ph"] == "M" and e["name"] == "thread_name"
    }


def _by_thread(trace: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    names = _threads(trace)
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in trace["traceEvents"]:
        if e["ph"] == "X":
            out[names[(e["pid"], e["tid"])]].append(e)
    return out


def _check_tracks(r: TrainResult, trace: dict[str, Any]) -> None:
    """Every event has ts, dur ≥ 0 and ends within the step; on each communication track the
    events do not overlap, so their busy time is at most the step."""
    step_us = r.step_time_s * 1e6
    for name, evs in _by_thread(trace).items():
        for e in evs:
            assert e["ts"] >= 0 and e["dur"] >= 0, (name, e)
            assert e["ts"] + e["dur"] <= step_us + TOL_US, (name, e)
        if "->" in name or (name.startswith("stage") and name.count(" ") == 1):
            continue  # stage and link tracks: covered by the pipeline's own tests
        evs = sorted(evs, key=lambda e: e["ts"])
        for a, b in pairwise(evs):
            assert b["ts"] >= a["ts"] + a["dur"] - TOL_US, (name, a, b)
        assert sum(e["dur"] for e in evs) <= step_us


@pytest.mark.parametrize("schedule", ["1f1b", "dualpipe"])
def test_moe_trace_has_tp_ep_dp_tracks(schedule: str) -> None:
    r = _moe(schedule)
    trace = train_trace(r)
    names = set(_threads(trace).values())
    for rank in (0, 1):
        for kind in ("TP", "EP", "DP grad", "DP param"):
            assert f"stage {rank} {kind}" in names, (kind, sorted(names))
    procs = {e["args"]["name"] for e in trace["traceEvents"] if e["name"] == "process_name"}
    assert any(p.startswith("TP ") for p in procs)
    assert any(p.startswith("EP all-to-all") for p in procs)
    assert any(p.startswith("DP gradient") for p in procs)
    _check_tracks(r, trace)


@pytest.mark.parametrize("schedule", ["1f1b", "dualpipe"])
def test_comm_tracks_are_the_simulated_comm_time(schedule: str) -> None:
    """The busiest rank's TP and EP events add up to the communication busy time the step
    reports for it (each collective once, as timed), and the DP gradient buckets end where the
    breakdown's exposed DP time says."""
    r = _moe(schedule)
    busy: dict[str, float] = defaultdict(float)
    last_bucket = 0.0
    for e in r.events:
        if e.rank == r.busiest_rank and e.category in ("tp", "ep"):
            busy[e.category] += e.end_s - e.start_s
        if e.category == "dp" and "grad" in e.name:
            last_bucket = max(last_bucket, e.end_s)
    for k in ("tp", "ep"):
        assert busy[k] == pytest.approx(r.comm_s[k], rel=SUM_TOL), k
    makespan = r.pipeline.makespan_s if r.pipeline else 0.0
    exposed = max(0.0, last_bucket - makespan)
    assert exposed == pytest.approx(r.breakdown_s["dp_exposed"], rel=SUM_TOL, abs=1e-12)
    opt = [e for e in r.events if e.category == "optimizer"]
    assert len(opt) == r.layout.pp


def test_cp_and_zero3_tracks() -> None:
    """Context parallelism's key/value exchanges get their track; ZeRO-3's per-layer parameter
    all-gathers and gradient reduce-scatters land on the DP tracks."""
    model = gpt_model("gpt-test", 12, 2048, 16, 32768, "test config")
    req = TrainRequest(model=model, cluster="dgx-h100", gpus=16, layout="tp=2,pp=2,dp=2,cp=2",
                       seqlen=8192, global_batch=16, zero=3, timeline=True)  # fmt: skip
    r = simulate_train(req)
    trace = train_trace(r)
    names = set(_threads(trace).values())
    for kind in ("TP", "CP", "DP grad", "DP param"):
        assert f"stage 0 {kind}" in names, (kind, sorted(names))
    zero3 = [e for e in r.events if e.name.startswith("ZeRO-3")]
    assert zero3 and all(e.nbytes > 0 for e in zero3)
    _check_tracks(r, trace)


def test_html_timeline_has_communication_rows() -> None:
    r = _moe()
    rows = list(timeline_figure(r).layout.yaxis.categoryarray)
    assert rows[:2] == ["stage 0", "stage 0 TP"]
    assert {"stage 1 EP", "stage 1 DP grad"} <= set(rows)


def test_a_huge_log_is_packed_per_task(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past ``MAX_COMM_EVENTS`` each task's collectives of one kind become one interval of
    their busy time, still inside the task, and the notes say so."""
    import hwsim.train.events as events

    full = _moe()
    monkeypatch.setattr(events, "MAX_COMM_EVENTS", 10)
    r = _moe()
    assert any("packed" in n for n in r.notes)
    assert len(r.events) < len(full.events)
    busy: dict[str, float] = defaultdict(float)
    for e in r.events:
        if e.rank == r.busiest_rank and e.category in ("tp", "ep"):
            busy[e.category] += e.end_s - e.start_s
    for k in ("tp", "ep"):
        assert busy[k] == pytest.approx(r.comm_s[k], rel=SUM_TOL), k
    _check_tracks(r, train_trace(r))
