"""Traffic for ``hwsim serve`` (:mod:`hwsim.serve.traffic`): built-in profiles load and cite
every number and reproduce their published statistics; the arrival processes are what they
claim (KS tests); sampling is reproducible and uses common random numbers across rates; caps,
prefixes and closed loops keep their invariants; bad traffic files and traces fail with one
line naming the file, line or option.

The bad-input corpus for traffic lives in ``tests/bad_inputs/traffic/`` (YAML, CSV and JSONL
cases, each with a ``.expected`` holding what the user sees); it is run here. To (re)write the
expectations after checking the messages by eye:
``.venv/bin/python tests/unit/test_traffic.py --record [--force]``.
"""

from __future__ import annotations

import itertools
import math
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats

from hwsim.serve.traffic import (
    ClosedLoop,
    Conversation,
    Gamma,
    Histogram,
    Lengths,
    LogNormal,
    Offline,
    Poisson,
    Requests,
    SystemPrompt,
    Trace,
    TrafficSpec,
    closed_loop,
    list_traffic,
    load_traffic,
    resolve_arrival,
    sample,
)
from hwsim.spec.errors import SpecError, SpecWarning

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests" / "bad_inputs" / "traffic"
BUILTINS = ("mlperf-llama2-70b", "sharegpt", "splitwise-code", "splitwise-conversation")
PROPS = settings(
    max_examples=30, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)


@pytest.fixture(autouse=True)
def _at_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # messages name files relative to where hwsim runs


def _spec(**kw: object) -> TrafficSpec:
    base: dict[str, object] = {
        "name": "t",
        "prompt_tokens": Lengths(lognormal=LogNormal(median=300, sigma=0.7)),
        "output_tokens": Lengths(lognormal=LogNormal(median=120, sigma=0.6)),
    }
    base.update(kw)
    return TrafficSpec(**base)


def _quiet(fn, *a, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SpecWarning)
        return fn(*a, **kw)


# ---- built-in profiles ---------------------------------------------------------------------
def test_builtins_listed() -> None:
    assert set(BUILTINS) <= set(list_traffic())


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_loads_and_cites(name: str) -> None:
    spec = load_traffic(name)
    assert isinstance(spec, TrafficSpec) and spec.name == name and spec.description
    assert spec.citations, "every number cites a source or says why it is an estimate"
    cited = {v for v in spec.citations.values() if not v.startswith("estimate: ")}
    assert cited <= set(spec.sources)
    estimates = [k for k, v in spec.citations.items() if v.startswith("estimate: ")]
    reasons = " ".join(spec.citations[k] for k in estimates)
    assert all(s in cited or s in reasons for s in spec.sources), "a source nothing cites"
    assert all(len(spec.citations[k]) > 40 for k in estimates), "an estimate explains itself"
    assert spec.arrival is not None
    assert "prompt_tokens" in str(spec.citations) and "output_tokens" in str(spec.citations)


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_reproduces_published_stats(name: str) -> None:
    """Each stated mean/median is reproduced by the distribution and by a large sample. Medians
    within 3% (Splitwise's paper rounds 1469 to 1500), means within 4% (histogram tails)."""
    spec = load_traffic(name)
    assert isinstance(spec, TrafficSpec)
    checked = 0
    for key in ("prompt_tokens", "output_tokens"):
        lengths: Lengths = getattr(spec, key)
        if lengths.stats is None:
            continue
        draws = _quiet(sample, spec, n=200_000, arrival=Offline(), seed=7)
        got = getattr(draws, key)
        for stat, tol in (("median", 0.03), ("mean", 0.04)):
            want = getattr(lengths.stats, stat)
            if want is None:
                continue
            exact = getattr(lengths, stat)()
            drawn = float(np.median(got) if stat == "median" else got.mean())
            assert exact == pytest.approx(want, rel=tol), (key, stat)
            assert drawn == pytest.approx(want, rel=tol), (key, stat)
            checked += 1
    assert checked >= 1


def test_splitwise_medians_match_the_paper_and_trace() -> None:
    code, conv = load_traffic("splitwise-code"), load_traffic("splitwise-conversation")
    assert isinstance(code, TrafficSpec) and isinstance(conv, TrafficSpec)
    assert code.output_tokens.median() == 13 and conv.output_tokens.median() == pytest.approx(
        129, abs=1
    )
    assert conv.prompt_tokens.median() == 1020
    assert code.prompt_tokens.median() == pytest.approx(1469, abs=5)
    assert sum(code.prompt_tokens.histogram.weights) == 8819  # type: ignore[union-attr]
    assert sum(conv.output_tokens.histogram.weights) == 19366  # type: ignore[union-attr]


def test_mlperf_caps_and_slo() -> None:
    spec = load_traffic("mlperf-llama2-70b")
    assert isinstance(spec, TrafficSpec) and isinstance(spec.arrival, Offline)
    r = sample(spec, n=24_576, seed=0)
    assert r.prompt_tokens.max() <= 1023 and r.output_tokens.max() <= 1024
    assert r.output_tokens.mean() == pytest.approx(294.45, rel=0.02)
    assert spec.slo is not None
    assert (spec.slo.ttft_s, spec.slo.tpot_s, spec.slo.percentile) == (2.0, 0.2, 99.0)


# ---- arrival processes ---------------------------------------------------------------------
@PROPS
@given(qps=st.floats(0.05, 5000), seed=st.integers(0, 2**32))
def test_poisson_gaps_are_exponential_at_the_rate(qps: float, seed: int) -> None:
    r = sample(_spec(), n=20_000, qps=qps, seed=seed)
    gaps = np.diff(np.concatenate([[0.0], r.arrival_s]))
    assert stats.kstest(gaps, "expon", args=(0, 1 / qps)).pvalue > 1e-4
    # the offered rate is the requested rate (no truncated tail): n / T within 5 sigma
    assert len(r) / r.arrival_s[-1] == pytest.approx(qps, rel=5 / math.sqrt(len(r)))


@PROPS
@given(qps=st.floats(0.1, 1000), cv=st.floats(0.3, 4), seed=st.integers(0, 2**32))
def test_gamma_gaps_have_the_mean_and_cv(qps: float, cv: float, seed: int) -> None:
    r = sample(_spec(), n=100_000, arrival=Gamma(qps=qps, cv=cv), seed=seed)
    gaps = np.diff(np.concatenate([[0.0], r.arrival_s]))
    k = 1 / cv**2
    dist = stats.gamma(k, 0, 1 / (k * qps))
    # a bursty gamma has many near-zero gaps, below the float resolution of absolute arrival
    # times (~1e-11 s at t ~ 1e5 s): test the distribution above 1e-6 mean gaps, conditionally
    x0 = 1e-6 / qps
    tail = gaps[gaps > x0]
    f0 = dist.cdf(x0)
    assert stats.kstest(tail, lambda x: (dist.cdf(x) - f0) / (1 - f0)).pvalue > 1e-4
    assert (gaps <= x0).mean() == pytest.approx(f0, abs=5 * math.sqrt(f0 / len(gaps)) + 1e-4)
    assert gaps.mean() == pytest.approx(1 / qps, rel=6 * cv / math.sqrt(len(gaps)))
    assert gaps.std() / gaps.mean() == pytest.approx(cv, rel=0.06)


def test_offline_arrives_at_zero_and_needs_a_count() -> None:
    r = sample(_spec(), n=500, arrival=Offline())
    assert len(r) == 500 and not r.arrival_s.any()
    with pytest.raises(SpecError, match="--duration"):
        sample(_spec(), duration_s=10, arrival=Offline())


def test_duration_bounds_the_stream() -> None:
    r = sample(_spec(), duration_s=100, qps=50, seed=3)
    assert r.arrival_s.max() < 100 and len(r) == pytest.approx(5000, rel=0.1)
    both = sample(_spec(), duration_s=100, n=10, qps=50, seed=3)
    assert both.equals(r.take(slice(0, 10)))


# ---- reproducibility and common random numbers -------------------------------------------
@pytest.mark.parametrize("name", BUILTINS)
def test_same_seed_same_requests(name: str) -> None:
    spec = load_traffic(name)
    a = _quiet(sample, spec, n=3000, qps=7.0, seed=11, max_context=4096)
    b = _quiet(sample, spec, n=3000, qps=7.0, seed=11, max_context=4096)
    c = _quiet(sample, spec, n=3000, qps=7.0, seed=12, max_context=4096)
    assert a.equals(b) and not a.equals(c)


@PROPS
@given(
    name=st.sampled_from(BUILTINS),
    q1=st.floats(0.1, 100),
    ratio=st.floats(1.01, 50),
    seed=st.integers(0, 2**31),
    gamma=st.booleans(),
)
def test_common_random_numbers_across_rates(
    name: str, q1: float, ratio: float, seed: int, gamma: bool
) -> None:
    """A higher rate gives the same requests, in the same order, at times scaled by
    qps_old / qps_new: latency-vs-rate curves compare like with like."""
    spec = load_traffic(name)
    q2 = q1 * ratio
    arr = (lambda q: Gamma(qps=q, cv=2.0)) if gamma else (lambda q: Poisson(qps=q))
    lo = sample(spec, n=2000, arrival=arr(q1), seed=seed)
    hi = sample(spec, n=2000, arrival=arr(q2), seed=seed)
    for key in ("prompt_tokens", "output_tokens", "prefix_id", "prefix_tokens"):
        assert np.array_equal(getattr(lo, key), getattr(hi, key))
    np.testing.assert_allclose(hi.arrival_s, lo.arrival_s * (q1 / q2), rtol=1e-12)
    # bounded by duration instead, the higher rate's stream extends the lower one's
    d_lo = sample(spec, duration_s=50, arrival=arr(q1), seed=seed)
    d_hi = sample(spec, duration_s=50, arrival=arr(q2), seed=seed)
    assert len(d_hi) >= len(d_lo)
    assert np.array_equal(d_hi.prompt_tokens[: len(d_lo)], d_lo.prompt_tokens)


@pytest.mark.parametrize("name", BUILTINS)
def test_more_requests_extend_the_stream(name: str) -> None:
    spec = load_traffic(name)
    small = sample(spec, n=100, qps=3.0, seed=5)
    big = sample(spec, n=5000, qps=3.0, seed=5)
    assert small.equals(big.take(slice(0, 100)))


def test_prefixed_streams_keep_common_random_numbers() -> None:
    spec = _spec(
        prefixes=[
            SystemPrompt(fraction=0.3, groups=5, tokens=Lengths(fixed=400)),
            Conversation(fraction=0.4, turns=Lengths(fixed=3), active=4),
        ]
    )
    a = sample(spec, n=4000, qps=2.0, seed=9)
    b = sample(spec, n=4000, qps=20.0, seed=9)
    assert np.array_equal(a.prompt_tokens, b.prompt_tokens)
    assert np.array_equal(a.prefix_id, b.prefix_id)
    assert sample(spec, n=300, qps=2.0, seed=9).equals(a.take(slice(0, 300)))


# ---- lengths -------------------------------------------------------------------------------
@PROPS
@given(
    mean=st.floats(5, 5000),
    sigma=st.floats(0.1, 1.5),
    bounded=st.booleans(),
    seed=st.integers(0, 2**31),
)
def test_lognormal_reproduces_its_stated_mean(
    mean: float, sigma: float, bounded: bool, seed: int
) -> None:
    hi = int(mean * 3) if bounded else None
    try:
        d = LogNormal(mean=mean, sigma=sigma, max=hi)
    except ValueError:  # a bound too tight for that sigma is refused, not silently wrong
        assert bounded
        return
    assert d.mean_value() == pytest.approx(mean, rel=1e-9)
    x = d.sample(np.random.default_rng(seed).random(200_000))
    # the rounding to whole tokens shifts the mean by at most ~0.5
    se = x.std() / math.sqrt(len(x))
    assert abs(x.mean() - mean) < 5 * se + 0.6
    if hi is not None:
        assert x.max() <= hi


@PROPS
@given(median=st.floats(10, 3000), ratio=st.floats(1.05, 3), seed=st.integers(0, 2**31))
def test_lognormal_from_mean_and_median(median: float, ratio: float, seed: int) -> None:
    d = LogNormal(median=median, mean=median * ratio)
    assert d.median_value() == pytest.approx(median, rel=1e-6)
    assert d.mean_value() == pytest.approx(median * ratio, rel=1e-6)
    x = d.sample(np.random.default_rng(seed).random(100_000))
    assert np.median(x) == pytest.approx(median, rel=0.03, abs=1)


@PROPS
@given(
    edges=st.lists(st.integers(1, 10_000), min_size=2, max_size=12, unique=True).map(sorted),
    data=st.data(),
)
def test_histogram_stays_in_its_bins(edges: list[int], data: st.DataObject) -> None:
    w = data.draw(st.lists(st.floats(0, 10), min_size=len(edges) - 1, max_size=len(edges) - 1))
    if sum(w) <= 0:
        w[0] = 1.0
    h = Histogram(edges=edges, weights=w)
    x = h.sample(np.random.default_rng(0).random(20_000))
    assert x.min() >= edges[0] and x.max() <= edges[-1] - 1
    empty = [(lo, hi) for lo, hi, wi in zip(edges, edges[1:], w, strict=False) if wi == 0]
    for lo, hi in empty:
        assert not ((x >= lo) & (x < hi)).any()


@PROPS
@given(
    name=st.sampled_from(BUILTINS),
    cap=st.integers(2, 9000),
    seed=st.integers(0, 2**31),
)
def test_lengths_respect_the_context_cap(name: str, cap: int, seed: int) -> None:
    spec = load_traffic(name)
    r = _quiet(sample, spec, n=3000, qps=5.0, seed=seed, max_context=cap)
    assert (r.prompt_tokens + r.output_tokens <= cap).all()
    assert (r.prompt_tokens >= 1).all() and (r.output_tokens >= 1).all()
    assert (r.prefix_tokens <= r.prompt_tokens).all()


def test_context_overflow_clips_with_a_warning_or_refuses() -> None:
    spec = load_traffic("splitwise-code")
    with pytest.warns(
        SpecWarning,
        match=r"of 5000 requests exceed the model's context of 4096 "
        r"tokens; clipped .* --context-overflow refuse",
    ):
        sample(spec, n=5000, seed=0, max_context=4096)
    with pytest.raises(
        SpecError,
        match=r"splitwise-code.yaml: \d+ of 5000 sampled requests need "
        r"more than the model's context of 4096 tokens .*--context-overflow clip",
    ):
        sample(spec, n=5000, seed=0, max_context=4096, overflow="refuse")
    with pytest.raises(SpecError, match="--context-overflow: must be 'clip' or 'refuse'"):
        sample(spec, n=5, overflow="trim")  # type: ignore[arg-type]


# ---- prefixes ------------------------------------------------------------------------------
def test_system_prompt_groups() -> None:
    spec = _spec(
        prefixes=[
            SystemPrompt(
                fraction=0.5, groups=4, tokens=Lengths(lognormal=LogNormal(median=500, sigma=0.5))
            )
        ]
    )
    r = sample(spec, n=20_000, qps=10, seed=1)
    has = r.prefix_id >= 0
    assert has.mean() == pytest.approx(0.5, abs=0.02)
    assert set(np.unique(r.prefix_id[has])) == {0, 1, 2, 3}
    for g in range(4):
        lens = np.unique(r.prefix_tokens[r.prefix_id == g])
        assert len(lens) == 1 and lens[0] > 0  # one system prompt, one length
    assert (r.prefix_tokens[~has] == 0).all()
    assert (r.prompt_tokens > r.prefix_tokens).all()


@pytest.mark.parametrize("cap", [None, 3000])
def test_conversations_carry_their_history(cap: int | None) -> None:
    spec = _spec(prefixes=[Conversation(fraction=1.0, turns=Lengths(fixed=4), active=3)])
    r = _quiet(sample, spec, n=3000, qps=1, seed=2, max_context=cap)
    for cid in np.unique(r.prefix_id)[:200]:
        idx = np.flatnonzero(r.prefix_id == cid)
        assert 1 <= len(idx) <= 4
        assert r.prefix_tokens[idx[0]] == 0
        for a, b in itertools.pairwise(idx):  # turn k's prefix: all of turn k-1
            assert r.prefix_tokens[b] == r.prompt_tokens[a] + r.output_tokens[a]
    if cap is not None:
        assert (r.prompt_tokens + r.output_tokens <= cap).all()
    else:
        assert np.bincount(np.unique(r.prefix_id, return_counts=True)[1])[4] > 600


def test_prefix_fractions_and_kinds_are_checked() -> None:
    with pytest.raises(ValueError, match=r"add up to 1\.2"):
        _spec(
            prefixes=[
                SystemPrompt(fraction=0.6, tokens=Lengths(fixed=5)),
                SystemPrompt(fraction=0.6, tokens=Lengths(fixed=5)),
            ]
        )


# ---- records -------------------------------------------------------------------------------
def test_requests_are_frozen_arrays() -> None:
    r = sample(_spec(), n=10, qps=1)
    assert isinstance(r, Requests) and len(r) == 10
    with pytest.raises(ValueError):
        r.prompt_tokens[0] = 5
    rec = r.records()
    assert rec.dtype.names == (
        "arrival_s",
        "prompt_tokens",
        "output_tokens",
        "prefix_id",
        "prefix_tokens",
    )
    assert (r.arrival_s[1:] >= r.arrival_s[:-1]).all()


def test_vectorised_sampling_is_fast() -> None:
    spec = load_traffic("splitwise-conversation")
    sample(spec, n=1000, seed=0)  # warm up
    t0 = time.perf_counter()
    r = sample(spec, n=100_000, seed=0)
    assert len(r) == 100_000
    assert time.perf_counter() - t0 < 0.5  # typically ~20 ms; loose for a shared machine


# ---- options -------------------------------------------------------------------------------
def test_command_line_arrival_overrides() -> None:
    g = Gamma(qps=2, cv=3)
    assert resolve_arrival(g) == g
    assert resolve_arrival(g, qps=8) == Gamma(qps=8, cv=3)  # --qps keeps the burstiness
    assert resolve_arrival(Offline(), qps=8) == Poisson(qps=8)
    assert resolve_arrival(g, offline=True) == Offline()
    loop = resolve_arrival(g, concurrency=16, think_s=2.0)
    assert loop == ClosedLoop(users=16, think=2.0)
    assert resolve_arrival(None) is None  # a trace replays as recorded


QPS_MSG = "--qps: must be a number of requests per second in (0, 1e+09]"


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"qps": 0.0}, f"{QPS_MSG}, got 0.0"),
        ({"qps": -3.0}, f"{QPS_MSG}, got -3.0"),
        ({"qps": math.nan}, f"{QPS_MSG}, got nan"),
        (
            {"qps": 1.0, "offline": True},
            "choose one of --qps, --offline, --concurrency (got --qps, --offline)",
        ),
        ({"concurrency": 0}, "--concurrency: must be a whole number of users in 1..1,000,000, "
         "got 0"),
        ({"think_s": 1.0}, "--think: needs a closed loop (--concurrency C)"),
        ({"concurrency": 2, "think_s": -1.0}, "--think: must be a time >= 0, got -1.0"),
    ],
)
def test_bad_options_name_the_option(kw: dict[str, object], message: str) -> None:
    with pytest.raises(SpecError) as err:
        resolve_arrival(Poisson(qps=1), **kw)  # type: ignore[arg-type]
    assert str(err.value) == message


def test_bad_bounds_name_the_option() -> None:
    spec = _spec()
    for kw, option in (
        ({"n": 0}, "--requests"),
        ({"duration_s": -1.0}, "--duration"),
        ({"n": 5, "seed": -1}, "--seed"),
        ({"n": 5, "qps": 0.0}, "--qps"),
    ):
        with pytest.raises(SpecError, match=f"^{option}: "):
            sample(spec, **kw)
    with pytest.raises(SpecError, match="give --requests N or --duration S"):
        sample(spec, qps=1.0)
    with pytest.raises(SpecError, match="no default arrival process; pass --qps X"):
        sample(spec, n=5)
    with pytest.raises(
        SpecError,
        match=r"--requests: 3,000,001 requests is more than "
        r"max_requests = 3,000,000; raise the limit with --max-requests",
    ):
        sample(spec, n=3_000_001, qps=1.0, max_requests=3_000_000)
    with pytest.raises(
        SpecError,
        match=r"--duration: 1e\+09 s at 10 requests/s is about "
        r"10,000,000,000 requests, more than max_requests",
    ):
        sample(spec, duration_s=1e9, qps=10.0)


def test_unknown_traffic_lists_the_builtins() -> None:
    with pytest.raises(SpecError) as err:
        load_traffic("sharegtp")
    msg = str(err.value)
    assert msg.startswith("--traffic: unknown traffic 'sharegtp'; did you mean 'sharegpt'?")
    assert all(name in msg for name in BUILTINS) and ".csv/.jsonl trace" in msg
    with pytest.raises(SpecError, match=r"^nope\.yaml: traffic file not found$"):
        load_traffic("nope.yaml")
    with pytest.raises(SpecError, match=r"^nope\.csv: trace file not found$"):
        load_traffic("nope.csv")
    with pytest.raises(SpecError, match=r"^t\.json: a trace is CSV or JSON Lines"):
        load_traffic("t.json")


# ---- closed loop ---------------------------------------------------------------------------
def test_closed_loop_user_streams() -> None:
    spec = load_traffic("sharegpt")
    u8 = closed_loop(spec, 8, think_s=3.0, seed=4)
    u4 = closed_loop(spec, 4, think_s=3.0, seed=4)
    first = u8.requests(2, 10)
    assert len(first) == 10 and np.isnan(first.arrival_s).all()
    assert u8.requests(2, 500).take(slice(0, 10)).equals(first)  # extending keeps the start
    assert np.array_equal(u4.requests(2, 10).prompt_tokens, first.prompt_tokens)  # more users
    assert not np.array_equal(u8.requests(3, 10).prompt_tokens, first.prompt_tokens)
    think = u8.think_times(1, 50_000)
    assert think.mean() == pytest.approx(3.0, rel=0.03)
    assert np.array_equal(u8.think_times(1, 10), think[:10])
    fixed = closed_loop(spec, 2, think_s=1.5, think_dist="fixed")
    assert (fixed.think_times(0, 5) == 1.5).all()
    with pytest.raises(SpecError, match=r"^--concurrency: "):
        closed_loop(spec, 0)
    with pytest.raises(SpecError, match="closed_loop"):
        sample(spec, n=10, arrival=ClosedLoop(users=4))


def test_closed_loop_checks_the_context_up_front() -> None:
    spec = load_traffic("splitwise-code")
    with pytest.warns(SpecWarning, match="exceed the model's context of 4096 tokens; clipped"):
        loop = closed_loop(spec, 4, max_context=4096)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # requests() does not warn again mid-run
        r = loop.requests(3, 2000)
    assert (r.prompt_tokens + r.output_tokens <= 4096).all()
    with pytest.raises(SpecError, match="sampled requests need more than the model's context"):
        closed_loop(spec, 4, max_context=4096, overflow="refuse")


def test_closed_loop_conversations_stay_with_their_user() -> None:
    spec = _spec(prefixes=[Conversation(fraction=1.0, turns=Lengths(fixed=3))])
    loop = closed_loop(spec, 5, seed=1)
    r = loop.requests(4, 9)
    assert len(np.unique(r.prefix_id)) == 3  # three 3-turn conversations, in order
    assert (r.prefix_id % 5 == 4).all()  # ids are unique per user
    assert r.prefix_tokens[1] == r.prompt_tokens[0] + r.output_tokens[0]


def test_closed_loop_over_a_trace_round_robins(tmp_path: Path) -> None:
    f = tmp_path / "t.csv"
    f.write_text(
        "arrival_s,prompt_tokens,output_tokens\n"
        + "".join(f"{i},{10 + i},{5}\n" for i in range(10))
    )
    loop = closed_loop(load_traffic(str(f)), 3)
    assert list(loop.requests(1, 10).prompt_tokens) == [11, 14, 17]


# ---- traces --------------------------------------------------------------------------------
def test_valid_csv_trace_replays() -> None:
    trace = load_traffic("tests/bad_inputs/traffic/_valid.csv")
    assert isinstance(trace, Trace)
    r = sample(trace)
    assert list(r.arrival_s) == [0.0, 0.5, 0.5, 1.25]
    assert list(r.prompt_tokens) == [512, 700, 300, 1024]
    assert list(r.prefix_id) == [0, -1, 0, 1]
    # no prefix_tokens column: a group shares at most its shortest prompt
    assert list(r.prefix_tokens) == [300, 0, 300, 1024]
    assert list(trace.lines) == [3, 4, 5, 6]
    doubled = sample(trace, qps=2 * 3 / 1.25)  # rescaled to twice the recorded rate
    np.testing.assert_allclose(doubled.arrival_s, r.arrival_s / 2)
    assert not sample(trace, arrival=Offline()).arrival_s.any()
    assert len(sample(trace, n=2)) == 2 and len(sample(trace, duration_s=0.6)) == 3


def test_jsonl_trace_with_prefix_lengths(tmp_path: Path) -> None:
    f = tmp_path / "t.jsonl"
    f.write_text(
        '{"arrival_s": 100.0, "prompt_tokens": 900, "output_tokens": 20, '
        '"prefix_id": 7, "prefix_tokens": 800}\n'
        '{"arrival_s": 101.5, "prompt_tokens": 950, "output_tokens": 30, '
        '"prefix_id": 7, "prefix_tokens": 800, "user": "x"}\n'
    )
    r = sample(load_traffic(str(f)))
    assert list(r.arrival_s) == [0.0, 1.5] and list(r.prefix_tokens) == [800, 800]


def test_trace_overflow_refusal_names_the_line(tmp_path: Path) -> None:
    f = tmp_path / "t.csv"
    f.write_text("arrival_s,prompt_tokens,output_tokens\n0,100,10\n1,4000,200\n2,10,10\n")
    with pytest.raises(SpecError) as err:
        sample(load_traffic(str(f)), max_context=4096, overflow="refuse")
    assert str(err.value) == (
        f"{f}:3: prompt_tokens + output_tokens = 4200 exceeds the model's context of 4096 "
        "tokens (1 such rows); pass --context-overflow clip to clip them"
    )
    with pytest.warns(SpecWarning, match="1 of 3 requests exceed"):
        r = sample(load_traffic(str(f)), max_context=4096)
    assert list(r.output_tokens) == [10, 96, 10]


def test_big_trace_is_streamed_or_refused(tmp_path: Path) -> None:
    f = tmp_path / "big.csv"
    with f.open("w") as out:
        out.write("arrival_s,prompt_tokens,output_tokens\n")
        out.writelines(f"{i * 0.01:.2f},100,10\n" for i in range(50_001))
    t0 = time.perf_counter()
    head = load_traffic(str(f), first=100)
    assert isinstance(head, Trace) and len(head.requests) == 100 and head.truncated
    assert time.perf_counter() - t0 < 0.5  # stopped early, never read the rest
    with pytest.raises(SpecError) as err:
        load_traffic(str(f), max_requests=50_000)
    assert str(err.value) == (
        f"{f}:50002: more than max_requests = 50,000 requests; hwsim reads traces streaming up "
        "to that limit: raise it with --max-requests, or replay the first N with --requests N"
    )
    blob = tmp_path / "blob.csv"  # one endless line: refused at its first 4 KiB
    blob.write_bytes(b"arrival_s," + b"9" * 1_000_000)
    with pytest.raises(SpecError, match=r"blob.csv:1: line longer than 4096 bytes"):
        load_traffic(str(blob))


# ---- the bad-input corpus ------------------------------------------------------------------
def _corpus_cases() -> list[Path]:
    return sorted(
        p
        for p in CORPUS.iterdir()
        if p.suffix in (".yaml", ".csv", ".jsonl") and not p.name.startswith("_")
    )


def _outcome(case: Path) -> str:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            traffic = load_traffic(case.relative_to(ROOT).as_posix())
            if isinstance(traffic, Trace):
                sample(traffic)
        except SpecError as err:
            return f"error: {err}"
    lines = [f"warning: {w.message}" for w in caught if issubclass(w.category, SpecWarning)]
    return "\n".join(lines) if lines else "loaded without error or warning"


@pytest.mark.parametrize("base", ["_valid.yaml", "_valid.csv"])
def test_corpus_base_loads_cleanly(base: str) -> None:
    assert _outcome(CORPUS / base) == "loaded without error or warning"


@pytest.mark.parametrize("case", _corpus_cases(), ids=lambda p: p.name)
def test_corpus_case(case: Path) -> None:
    expected = case.with_suffix(".expected").read_text(encoding="utf-8").rstrip("\n")
    got = _outcome(case)
    assert got == expected
    assert "\n" not in got and got.startswith("error: tests/bad_inputs/traffic/" + case.name)


if __name__ == "__main__":  # --record [--force]: write missing .expected files
    import os

    os.chdir(ROOT)
    if "--record" in sys.argv:
        for case in _corpus_cases():
            out = case.with_suffix(".expected")
            if out.exists() and "--force" not in sys.argv:
                continue
            out.write_text(_outcome(case) + "\n", encoding="utf-8")
            print(f"{out.relative_to(ROOT)}: {out.read_text(encoding='utf-8').strip()}")
