"""Engine invariants and hand-computed fluid-sharing cases."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsim.sim.engine import Engine, TraceEvent, class_rates, max_min_rates


def test_two_transfers_share_one_link_by_hand() -> None:
    # link 10 B/s; A = 100 B and B = 50 B start together at 5 B/s each.
    # B ends at 50/5 = 10 s; A has 50 B left, now alone at 10 B/s: ends at 10 + 5 = 15 s.
    eng = Engine()
    link = eng.link("hbm", 10.0)
    log: list[tuple[str, float]] = []

    def proc(name: str, nbytes: float):  # type: ignore[no-untyped-def]
        yield eng.transfer(link, nbytes)
        log.append((name, eng.env.now))

    eng.env.process(proc("A", 100.0))
    eng.env.process(proc("B", 50.0))
    assert eng.run() == pytest.approx(15.0, rel=1e-12)
    assert log == [("B", pytest.approx(10.0)), ("A", pytest.approx(15.0))]
    assert link.bytes_moved == pytest.approx(150.0, rel=1e-12)
    assert link.peak_rate_Bps == pytest.approx(10.0)


def test_latency_is_added_before_the_flow() -> None:
    # 1 s latency then 20 B at 10 B/s: arrival at exactly 3 s.
    eng = Engine()
    link = eng.link("nic", 10.0, latency_s=1.0)
    done = eng.transfer(link, 20.0)
    eng.run()
    assert done.processed and eng.env.now == pytest.approx(3.0)


def test_max_min_textbook_case() -> None:
    # Links: L0 cap 10 shared by f0,f1; L1 cap 4 used by f1,f2.
    # L1 is the bottleneck: f1 = f2 = 2; then f0 takes the rest of L0: 8.
    rates = max_min_rates([np.array([0]), np.array([0, 1]), np.array([1])], np.array([10.0, 4.0]))
    assert rates == pytest.approx([8.0, 2.0, 2.0])


def test_own_rate_cap() -> None:
    rates = max_min_rates([np.array([0]), np.array([0])], np.array([10.0]), np.array([1.0, np.inf]))
    assert rates == pytest.approx([1.0, 9.0])


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(1.0, 1e6), min_size=1, max_size=12),
    st.lists(st.floats(0.0, 5.0), min_size=1, max_size=12),
    st.integers(0, 2**31 - 1),
)
def test_fluid_invariants(sizes: list[float], starts: list[float], seed: int) -> None:
    """Bytes are conserved per link, no link exceeds its bandwidth, time ≥ bytes/bandwidth."""
    rng = np.random.default_rng(seed)
    eng = Engine()
    links = [eng.link(f"l{i}", float(rng.uniform(1.0, 100.0))) for i in range(3)]
    expected = np.zeros(3)

    def proc(delay: float, path: list[int], nbytes: float):  # type: ignore[no-untyped-def]
        yield eng.env.timeout(delay)
        yield eng.transfer([links[i] for i in path], nbytes)

    for i, nbytes in enumerate(sizes):
        path = sorted(set(rng.integers(0, 3, size=int(rng.integers(1, 4))).tolist()))
        expected[path] += nbytes
        eng.env.process(proc(starts[i % len(starts)], path, nbytes))
    t = eng.run()
    assert np.isfinite(t) and t > 0
    for lk, exp in zip(links, expected, strict=True):
        assert lk.bytes_moved == pytest.approx(exp, rel=1e-9, abs=1e-6)
        assert lk.peak_rate_Bps <= lk.bandwidth_Bps * (1 + 1e-9)
        assert t >= exp / lk.bandwidth_Bps * (1 - 1e-9)


def test_deterministic() -> None:
    def once() -> tuple[float, int]:
        eng = Engine()
        a, b = eng.link("a", 3.0), eng.link("b", 7.0)
        for i in range(20):
            eng.transfer([a, b] if i % 2 else [b], 10.0 + i)
        return eng.run(), eng.events

    assert once() == once()


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(1, 10), st.integers(1, 4))
def test_class_solver_matches_per_flow_reference(seed: int, n_flows: int, n_links: int) -> None:
    """The engine's per-class solver gives every flow the per-flow reference rate."""
    rng = np.random.default_rng(seed)
    caps = rng.uniform(1.0, 100.0, size=n_links)
    paths = [
        np.array(sorted(set(rng.integers(0, n_links, size=int(rng.integers(1, 3))).tolist())))
        for _ in range(n_flows)
    ]
    own = np.where(rng.random(n_flows) < 0.3, rng.uniform(1.0, 50.0, size=n_flows), np.inf)
    ref = max_min_rates(paths, caps, own)
    classes: dict[tuple[tuple[int, ...], float], list[int]] = {}
    for i, p in enumerate(paths):
        classes.setdefault((tuple(p.tolist()), float(own[i])), []).append(i)
    keys = list(classes)
    got = class_rates(
        [(k[0], [float(len(classes[k]))] * len(k[0]), k[1]) for k in keys], caps.tolist()
    )
    for k, r in zip(keys, got, strict=True):
        for i in classes[k]:
            # same progressive filling in other arithmetic order: 1e-9 relative
            assert r == pytest.approx(ref[i], rel=1e-9)


def test_weighted_flow_by_hand() -> None:
    # link 10 B/s; A (100 B, weight 1) and B (100 B, weight 0.25) progress at one rate r:
    # 1.25 r = 10 → r = 8 B/s, both end at 12.5 s; the link carries 100 + 25 = 125 B.
    eng = Engine()
    link = eng.link("hbm", 10.0)
    a = eng.transfer(link, 100.0)
    b = eng.transfer([link], 100.0, weights=[0.25])
    assert eng.run() == pytest.approx(12.5, rel=1e-12)
    assert a.processed and b.processed
    assert link.bytes_moved == pytest.approx(125.0, rel=1e-12)
    assert link.peak_rate_Bps == pytest.approx(10.0, rel=1e-12)  # rates sum to the bandwidth


def _random_run(seed: int) -> tuple[float, int, list[float], list[TraceEvent]]:
    rng = np.random.default_rng(seed)
    eng = Engine(trace=True)
    links = [eng.link(f"l{i}", float(rng.uniform(1.0, 100.0)), 0.01 * i) for i in range(3)]
    sums: list[float] = []

    def proc(i: int):  # type: ignore[no-untyped-def]
        for _ in range(5):
            yield eng.delay(float(rng.uniform(0.0, 1.0)))
            path = [links[j] for j in sorted(set(rng.integers(0, 3, size=2).tolist()))]
            w = rng.uniform(0.1, 1.0, size=len(path)).tolist()
            yield eng.transfer(path, float(rng.uniform(1.0, 50.0)), weights=w, label=f"p{i}")
            # while flows run, the carried rate never exceeds a link's bandwidth
            sums.extend(lk.rate_Bps / lk.bandwidth_Bps for lk in links)

    for i in range(6):
        eng.env.process(proc(i))
    return eng.run(), eng.events, sums, eng.trace


def test_deterministic_with_seed_and_no_negative_times() -> None:
    t1, ev1, sums, trace = _random_run(7)
    t2, ev2, _, trace2 = _random_run(7)
    assert (t1, ev1) == (t2, ev2) and trace == trace2
    assert max(sums) <= 1 + 1e-9  # rates sum to at most the bandwidth (1e-9: rounding)
    assert all(0 <= e.start_s <= e.end_s <= t1 for e in trace)


def test_saturated_link_rates_sum_to_bandwidth() -> None:
    # three flows on one 30 B/s link, one capped at 4 B/s: 4 + 13 + 13 = 30 B/s exactly.
    eng = Engine()
    link = eng.link("l2", 30.0)
    eng.transfer(link, 100.0, max_rate_Bps=4.0)
    eng.transfer(link, 100.0)
    eng.transfer(link, 100.0)
    eng.run(until=1.0)
    assert link.rate_Bps == pytest.approx(30.0, rel=1e-12)
    assert link.bytes_moved == pytest.approx(30.0, rel=1e-12)
