"""Engine invariants and hand-computed fluid-sharing cases."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsim.sim.engine import Engine, max_min_rates


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
