"""Pipeline schedules on synthetic chunk times (no mapper): the event log of a tiny 1F1B case
computed by hand, the published bubble formulas on uniform stages (1F1B, interleaved, ZB-H1,
DualPipe), the list schedule equal to the simpy play, DualPipe's orders complete, and the
in-flight micro-batches equal to the memory arithmetic's.

Tolerances: uniform stages with exact binary fractions (1, 2, 0.5 s) make every schedule's
times exact in float64, so equalities are checked to 1e-12 s (rounding of sums only)."""

from __future__ import annotations

import pytest

from hwsim.plan.train_memory import inflight_chunks
from hwsim.train.pipeline import PipelineSpec, simulate_pipeline
from hwsim.train.schedules import Task, dualpipe, orders

EXACT = 1e-12


def _spec(schedule: str, pp: int, m: int, vpp: int = 1, f: float = 1.0, b: float = 2.0,
          w: float = 1.0, p2p: float = 0.0) -> PipelineSpec:  # fmt: skip
    """Uniform chunks: forward ``f``, full backward ``b`` (of which ``w`` is the weight
    gradient), per chunk of ``1/vpp`` of a stage; ``p2p`` seconds per send."""

    def dur(t: Task) -> float:
        if t.kind == "F":
            return f / vpp
        if t.kind == "B":
            return (b - w) / vpp if (t.zb or schedule == "zb") else b / vpp
        if t.kind == "W":
            return w / vpp
        return (f + b) / vpp  # DualPipe's overlapped pair, no overlap gain

    return PipelineSpec(schedule, pp, vpp, m, dur, lambda pos: 1.0, p2p, 1.0, 0.0)


def test_1f1b_event_log_by_hand() -> None:
    """p = 2, m = 3, F = 1 s, B = 2 s. Rank 0 runs F0 F1 B0 F2 B1 B2 (one warm-up forward),
    rank 1 runs F0 B0 F1 B1 F2 B2; each waits for its input:

    rank 0: F0 0-1, F1 1-2, B0 4-6 (rank 1's B0 ends at 4), F2 6-7, B1 7-9, B2 10-12
    rank 1: F0 1-2, B0 2-4, F1 4-5, B1 5-7, F2 7-8, B2 8-10
    """
    r = simulate_pipeline(_spec("1f1b", 2, 3))
    log = sorted((s.rank, s.start_s, s.end_s, s.label) for s in r.spans)
    assert log == [
        (0, 0.0, 1.0, "F0"), (0, 1.0, 2.0, "F1"), (0, 4.0, 6.0, "B0"), (0, 6.0, 7.0, "F2"),
        (0, 7.0, 9.0, "B1"), (0, 10.0, 12.0, "B2"),
        (1, 1.0, 2.0, "F0"), (1, 2.0, 4.0, "B0"), (1, 4.0, 5.0, "F1"), (1, 5.0, 7.0, "B1"),
        (1, 7.0, 8.0, "F2"), (1, 8.0, 10.0, "B2"),
    ]  # fmt: skip
    assert r.makespan_s == 12.0
    assert r.bubble_fraction == pytest.approx((2 - 1) / (3 + 2 - 1), abs=EXACT)


@pytest.mark.parametrize(("pp", "m"), [(2, 3), (4, 8), (8, 32), (16, 64)])
def test_1f1b_bubble_formula(pp: int, m: int) -> None:
    r = simulate_pipeline(_spec("1f1b", pp, m))
    assert r.bubble_fraction == pytest.approx((pp - 1) / (m + pp - 1), abs=EXACT)
    g = simulate_pipeline(_spec("gpipe", pp, m))
    assert g.makespan_s == pytest.approx(r.makespan_s, abs=EXACT)  # same bubble, more memory


@pytest.mark.parametrize(("pp", "vpp", "m"), [(4, 2, 8), (4, 4, 8), (8, 2, 16)])
def test_interleaved_bubble_formula(pp: int, vpp: int, m: int) -> None:
    """Megatron's interleaved schedule: the bubble shrinks to (p − 1)(F + B)/v."""
    r = simulate_pipeline(_spec("interleaved", pp, m, vpp))
    assert r.makespan_s == pytest.approx(m * 3.0 + (pp - 1) * 3.0 / vpp, abs=EXACT)


@pytest.mark.parametrize(("pp", "m"), [(4, 8), (8, 32), (16, 64)])
def test_dualpipe_bubble_matches_deepseek_table(pp: int, m: int) -> None:
    """DeepSeek-V3 report table 2: DualPipe's bubble is (PP/2 − 1)(F&B + B − 3W), with F&B the
    overlapped pair (here F + B, no overlap gain) and B the full backward."""
    r = simulate_pipeline(_spec("dualpipe", pp, m))
    f, b, w = 1.0, 2.0, 1.0
    assert r.makespan_s - m * (f + b) == pytest.approx((pp // 2 - 1) * ((f + b) + b - 3 * w),
                                                       abs=EXACT)  # fmt: skip


@pytest.mark.parametrize(("pp", "m"), [(2, 4), (4, 8), (6, 12), (8, 20)])
def test_dualpipe_orders_are_complete(pp: int, m: int) -> None:
    """Every rank runs each of its micro-batches' forward, backward and (deferred) weight
    gradient exactly once, both directions together."""
    for rank in range(pp):
        tasks = dualpipe(pp, m, rank)
        fwd = [(t.dir, t.mb) for t in tasks if t.kind == "F"] + [
            (t.dir, t.mb) for t in tasks if t.kind == "FB"
        ]
        bwd = [(t.dir, t.mb) for t in tasks if t.kind == "B"] + [
            (t.dir2, t.mb2) for t in tasks if t.kind == "FB"
        ]
        want = sorted((d, i) for d in (0, 1) for i in range(m // 2))
        assert sorted(fwd) == want and sorted(bwd) == want
        deferred = sum(t.kind == "B" and t.zb for t in tasks)
        assert sum(t.kind == "W" for t in tasks) == deferred


@pytest.mark.parametrize(("pp", "m", "b", "w"), [(4, 8, 2.0, 1.0), (8, 32, 2.0, 1.0),
                                               (4, 8, 2.0, 0.1), (8, 32, 2.0, 0.5)])  # fmt: skip
def test_zero_bubble_h1_bubble_and_memory(pp: int, m: int, b: float, w: float) -> None:
    """ZB-H1 (Qi et al. 2024): on uniform stages the bubble is (p − 1)(F + B_in − W), B_in =
    B − W the input gradient, and no rank holds more than 1F1B's peak of p micro-batches."""
    zb = simulate_pipeline(_spec("zb", pp, m, b=b, w=w))
    bubble = zb.makespan_s - m * (1.0 + b)
    assert bubble == pytest.approx((pp - 1) * (1.0 + (b - w) - w), abs=1e-9)
    assert bubble < (pp - 1) * (1.0 + b)  # 1F1B's
    assert max(zb.peak_inflight) == min(pp, m)


@pytest.mark.parametrize(
    ("schedule", "pp", "vpp", "m"),
    [("gpipe", 4, 1, 6), ("1f1b", 4, 1, 8), ("interleaved", 4, 2, 8), ("dualpipe", 4, 1, 8),
     ("1f1b", 3, 1, 5), ("zb", 4, 1, 8)],
)  # fmt: skip
def test_list_schedule_equals_simpy(schedule: str, pp: int, vpp: int, m: int) -> None:
    """The exact list schedule and the simpy play give the same event log, with sends on
    contended links (p2p of 0.7 s against chunks of 0.5-2 s)."""
    spec = _spec(schedule, pp, m, vpp, f=1.0, b=2.0, w=0.5, p2p=0.7)
    a = simulate_pipeline(spec, engine="list")
    b = simulate_pipeline(spec, engine="simpy")
    key = sorted((s.rank, s.label, s.pos, round(s.start_s, 9), round(s.end_s, 9)) for s in a.spans)
    assert key == sorted(
        (s.rank, s.label, s.pos, round(s.start_s, 9), round(s.end_s, 9)) for s in b.spans
    )
    assert a.makespan_s == pytest.approx(b.makespan_s, abs=EXACT)
    assert b.events > 0


@pytest.mark.parametrize(
    ("schedule", "pp", "vpp", "m"),
    [("gpipe", 4, 1, 6), ("1f1b", 4, 1, 8), ("1f1b", 4, 1, 2), ("interleaved", 4, 2, 8),
     ("interleaved", 4, 3, 12), ("zb", 4, 1, 8)],
)  # fmt: skip
def test_inflight_matches_memory_arithmetic(schedule: str, pp: int, vpp: int, m: int) -> None:
    """The chunks a rank holds at its peak, from the event log, equal what the memory check
    counts before simulating."""
    r = simulate_pipeline(_spec(schedule, pp, m, vpp))
    for rank in range(pp):
        assert r.peak_inflight[rank] == inflight_chunks(schedule, pp, vpp, m, rank)


def test_orders_cover_every_task() -> None:
    for pp, vpp, m in ((4, 2, 8), (2, 3, 4)):
        seen = [(t.kind, t.mb, t.pos) for o in orders("interleaved", pp, vpp, m) for t in o]
        assert len(seen) == len(set(seen)) == 2 * m * pp * vpp
