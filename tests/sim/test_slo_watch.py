"""Stopping a run once its SLO is lost (:mod:`hwsim.serve.watch`) never changes a verdict: the
threshold is exact for numpy's percentiles, and a watched run reaches the same pass/fail as the
full run (and, when it passes, the same figures)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsim.serve.metrics import SLO
from hwsim.serve.serving import ServeRequest, simulate_serving
from hwsim.serve.watch import lost_after


@settings(max_examples=300, deadline=None)
@given(n=st.integers(1, 2000), q=st.sampled_from([50.0, 90.0, 99.0, 99.9]))
def test_lost_after_is_exact_for_numpy_percentiles(n: int, q: float) -> None:
    """With ``lost_after(n, q)`` values over the limit the percentile is over it whatever the
    rest are (here: the rest exactly at the limit, the worst case); with one fewer it can stay
    under (the rest far below, the others just over)."""
    k = lost_after(n, q)
    assert 1 <= k <= n
    limit, eps = 1.0, 1e-9
    worst = np.r_[np.full(n - k, limit), np.full(k, limit + eps)]
    assert np.percentile(worst, q) > limit
    if k > 1:
        best = np.r_[np.zeros(n - k + 1), np.full(k - 1, limit + eps)]
        assert np.percentile(best, q) <= limit


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("steptime")


@pytest.mark.parametrize("qps", [4.0, 30.0])
def test_a_watched_run_reaches_the_full_runs_verdict(cache: Path, qps: float) -> None:
    """Llama-3.1-8B on one H100 under ShareGPT traffic at a light and an overloading rate,
    with a TTFT limit the heavy rate misses: the same verdict with and without the watch; the
    light run, not stopped, has identical figures; the heavy one stops early."""
    slo = SLO((("ttft", "p99", 0.5), ("tpot", "p99", 0.05)))
    base = dict(
        model="llama-3.1-8b", device="h100-sxm", traffic="sharegpt", layout="tp=1", qps=qps,
        requests=500, max_batch=64, token_budget=2048, step_cache=cache, slo=slo,
    )  # fmt: skip
    full = simulate_serving(ServeRequest(**base))  # type: ignore[arg-type]
    watched = simulate_serving(ServeRequest(**base, stop_when_lost=True))  # type: ignore[arg-type]
    verdict = all(full.metrics.slo_met.values())
    assert all(watched.metrics.slo_met.values()) == verdict
    if verdict:
        assert not watched.metrics.stopped
        assert watched.metrics.to_dict() == full.metrics.to_dict()
    else:
        assert watched.metrics.stopped.startswith("ttft_p99")
        # stopping saves work: fewer iterations than the full run
        assert len(watched.records.iterations) < len(full.records.iterations) / 2
    assert verdict == (qps == 4.0)
