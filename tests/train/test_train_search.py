"""``--search`` and ``--target-days``: the answer fits, is at least as fast as every layout it
simulated and as the obvious ones, its counts add up, and the fewest-GPU answer is the fewest
(half as many miss the deadline)."""

from __future__ import annotations

import pytest

from hwsim.train.request import TrainRequest
from hwsim.train.search import candidate_requests, fewest_gpus, search_layouts
from hwsim.train.step import simulate_train
from hwsim.validate.training import gpt_model

SMALL = gpt_model("gpt-search", 16, 2048, 16, 32768, "test config")
REQ = TrainRequest(model=SMALL, gpus=16, seqlen=2048, global_batch=64, cluster="dgx-h100")


def test_search_finds_the_fastest_that_fits() -> None:
    ans = search_layouts(REQ)
    assert ans.best and all(r.fits for r in ans.best)
    times = [r.step_time_s for r in ans.best]
    assert times == sorted(times)
    cands = list(candidate_requests(REQ))
    assert ans.candidates == len(cands) >= 100
    # every candidate is accounted for: refused, pruned or simulated (or a cheaper variant)
    assert ans.simulated + ans.pruned_bound <= ans.candidates - ans.invalid - ans.pruned_memory
    # the answer beats hand-picked layouts (a search that missed them would be wrong)
    for layout in ("tp=1,pp=1,dp=16", "tp=2,pp=1,dp=8", "tp=2,pp=2,dp=4"):
        r = simulate_train(REQ.replace(layout=layout, zero=1))
        assert ans.best[0].step_time_s <= r.step_time_s * (1 + 1e-9)


def test_fewest_gpus_meets_the_deadline() -> None:
    """2e11 tokens in a day: one node is not enough; the answer meets the deadline and every
    smaller count tried misses it or has no layout (the batch of 64 does not split over 48
    or 56 replicas)."""
    ans = fewest_gpus(REQ.replace(tokens=2e11), days=1.0)
    assert ans.result.days is not None and ans.result.days <= 1.0
    assert ans.gpus > 8
    for n, d in ans.tried:
        if n < ans.gpus:
            assert d is None or d > 1.0


def test_target_days_needs_tokens() -> None:
    from hwsim.spec.errors import SpecError

    with pytest.raises(SpecError, match="--tokens"):
        fewest_gpus(REQ, days=1.0)
