"""Synthetic routing (exponential race) and the histogram-built dispatch plan.

* The race sampler must route in the same law as drawing every score and running the
  group-limited top-k (the pre-race implementation, kept as the reference): selection
  frequencies per expert, of the top-1 expert, and the node spread per token are compared at
  5 standard deviations of the two-sample noise (deterministic seeds; a sampler that forgot the
  conditioning on the group max moves the node spread by > 30 σ, see the last test).
* Matrices built from the two histograms must equal the per-pair definition exactly (integers).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsim.plan.moe import (
    even_token_src,
    group_limited_topk,
    pair_arrays,
    plan_dispatch,
    race_topk,
    synthetic_dispatch_plan,
    synthetic_logits,
)
from hwsim.plan.moe_gating import popularity
from hwsim.plan.moe_synthetic import smallest_k

N = 20_000  # tokens per sample: per-bin frequency noise ~0.3 %


def _stats(idx: np.ndarray, e: int, q: int) -> dict[str, np.ndarray]:
    groups = idx // q
    spread = np.array([len(set(r)) for r in groups.tolist()])
    return {
        "expert": np.bincount(idx.ravel(), minlength=e) / idx.size,
        "top1": np.bincount(idx[:, 0], minlength=e) / idx.shape[0],
        "spread": np.bincount(spread, minlength=idx.shape[1] + 1) / idx.shape[0],
    }


def _close(a: dict[str, np.ndarray], b: dict[str, np.ndarray], n: int, z: float = 5.0) -> None:
    for key in a:
        p = (a[key] + b[key]) / 2
        sigma = np.sqrt(p * (1 - p) * 2 / n) + 1e-12
        worst = float(np.max(np.abs(a[key] - b[key]) / sigma))
        assert worst < z, (key, worst, a[key], b[key])


@pytest.mark.parametrize("dist", ["deepep", "zipf:1.2", "uniform"])
@pytest.mark.parametrize(
    ("e", "groups", "tg", "k"), [(32, 8, 2, 4), (64, 4, 2, 6), (256, 8, 4, 8), (16, 1, 1, 3)]
)
def test_race_matches_full_draw_in_law(dist: str, e: int, groups: int, tg: int, k: int) -> None:
    full = group_limited_topk(synthetic_logits(N, e, dist, seed=1), k, groups, tg, "max")
    race = race_topk(np.random.default_rng(2), N, popularity(e, dist, 1), k, groups, tg)
    assert race.shape == (N, k)
    assert np.all(np.sort(race, axis=1)[:, 1:] != np.sort(race, axis=1)[:, :-1])  # distinct
    assert (race // (e // groups)).max() < groups
    _close(_stats(full, e, e // groups), _stats(race, e, e // groups), N)


def test_forgetting_the_group_max_conditioning_is_caught() -> None:
    # draw the chosen groups right, but their members unconditioned: too few groups per token
    # (4 groups per token 14 % of the time instead of 49 %: ~80 σ)
    e, groups, tg, k, q = 32, 8, 4, 4, 4
    rng = np.random.default_rng(3)
    chosen = np.sort(np.argsort(rng.random((N, groups)), axis=1)[:, :tg], axis=1)
    sub = rng.random((N, tg * q))
    col = np.argsort(-sub, axis=1)[:, :k]
    wrong = np.take_along_axis(chosen, col // q, axis=1) * q + col % q
    race = race_topk(np.random.default_rng(2), N, popularity(e, "deepep"), k, groups, tg)
    with pytest.raises(AssertionError, match="spread"):
        _close(_stats(wrong, e, q), _stats(race, e, q), N, z=30.0)


def test_smallest_k_orders_and_breaks_ties_by_column() -> None:
    x = np.random.default_rng(0).random((50, 40))
    x[:, 7] = x[:, 3]  # exact ties: lower column first, as topk
    want = np.argsort(x, axis=1, kind="stable")[:, :9]
    assert np.array_equal(smallest_k(x, 9), want)


def _matrices_from_pairs(dst: np.ndarray, src: np.ndarray, r: int, g: int) -> dict:
    """The per-pair definition of every matrix (the pre-histogram implementation)."""
    pa = pair_arrays(dst, src, g)

    def mat(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.bincount(a * r + b, minlength=r * r).reshape(r, r)

    same = pa.dst // g == pa.src // g
    moved = pa.sender != pa.dst
    loc = same & (pa.src != pa.dst)
    first = np.ones(pa.token.size, dtype=bool)
    first[1:] = (pa.token[1:] != pa.token[:-1]) | (pa.dst[1:] // g != pa.dst[:-1] // g)
    n = r // g
    ok = dst >= 0
    slot_src = np.broadcast_to(src[:, None], dst.shape)
    return {
        "expert_copies": mat(slot_src[ok], dst[ok]),
        "tokens": mat(pa.src, pa.dst),
        "direct_nvl": mat(pa.src[loc], pa.dst[loc]),
        "direct_rdma": mat(pa.src[~same], pa.dst[~same]),
        "rdma_tokens": mat(pa.ib_src, pa.ib_dst),
        "nvl_tokens": mat(pa.sender[moved], pa.dst[moved]),
        "rdma_pairs": np.bincount(pa.src[first] * n + pa.dst[first] // g, minlength=r * n).reshape(
            r, n
        ),
    }


@settings(max_examples=40, deadline=None)
@given(
    st.integers(1, 20),  # tokens
    st.sampled_from([(2, 1), (4, 2), (8, 4), (6, 2), (16, 8)]),  # (ranks, gpus/node)
    st.sampled_from([1, 3, 8, 20]),  # slots per token (20: the row-sort fallback)
    st.integers(0, 10_000),
)
def test_histogram_matrices_equal_the_pair_definition(
    t: int, layout: tuple[int, int], k: int, seed: int
) -> None:
    r, g = layout
    rng = np.random.default_rng(seed)
    dst = rng.integers(-1, r, (t, k))  # -1: slots dropped by capacity
    src = rng.integers(0, r, t)
    plan = plan_dispatch(dst, src, r, g, hidden=128)
    for name, want in _matrices_from_pairs(dst, src, r, g).items():
        assert np.array_equal(getattr(plan, name), want), name  # integer counts: exact


def test_synthetic_plan_is_seeded_and_lazy() -> None:
    a, _, ia = synthetic_dispatch_plan(16, 64, 512, 64, 4, 2, "zipf:1.2", 8, 4, seed=7)
    b, _, ib = synthetic_dispatch_plan(16, 64, 512, 64, 4, 2, "zipf:1.2", 8, 4, seed=7)
    assert np.array_equal(ia, ib) and np.array_equal(a.tokens, b.tokens)
    assert "pair_arrays" not in a.__dict__  # per-pair arrays not built for the simulator
    assert a.pair_token.size == a.tokens.sum()  # ... but available on demand
    assert np.array_equal(a.token_src, even_token_src(16 * 64, 16))
