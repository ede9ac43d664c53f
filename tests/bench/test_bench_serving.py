"""Benchmarks of ``hwsim serve`` (``make bench``; each prints what it measured).

* 10,000 requests of the chat profile (``sharegpt``) on one 8-GPU replica (Llama-3.1-70B, TP8
  on H100) including building the step-time model from an empty cache: under 20 s; with the
  model cached: under 5 s.
* ``--find-max-qps`` on that case: under 60 s.
* The cost follows iterations (events), not tokens × requests: twice the output tokens per
  request at the same load costs well under twice the wall time, and a run's events grow with
  requests.

Wall times are medians of three runs (the machine is shared and noisy).
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import pytest

from hwsim.serve.metrics import parse_slo
from hwsim.serve.serving import ServeRequest, find_max_qps, simulate_serving
from hwsim.serve.traffic import Lengths, TrafficSpec


def _req(cache: Path, **kw: object) -> ServeRequest:
    base: dict[str, object] = dict(
        model="llama-3.1-70b", device="h100-sxm", traffic="sharegpt", layout="tp=8",
        qps=8.0, requests=10_000, step_cache=cache,
    )  # fmt: skip
    base.update(kw)
    return ServeRequest(**base)  # type: ignore[arg-type]


def _median(fn, n: int = 3) -> float:  # type: ignore[no-untyped-def]
    walls = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        walls.append(time.perf_counter() - t0)
    return statistics.median(walls)


@pytest.mark.bench
def test_bench_ten_thousand_chat_requests(tmp_path: Path) -> None:
    cold = []
    for i in range(3):  # a fresh cache folder each time: the model is built from nothing
        t0 = time.perf_counter()
        r = simulate_serving(_req(tmp_path / f"cold{i}"))
        cold.append(time.perf_counter() - t0)
    warm = _median(lambda: simulate_serving(_req(tmp_path / "cold0")))
    cold_s = statistics.median(cold)
    print(
        f"\n10k chat requests, 70B TP8 H100: cold {cold_s:.2f} s (limit 20), warm {warm:.2f} s "
        f"(limit 5), {len(r.records.iterations)} events, {r.step_points} grid values, "
        f"{r.metrics.output_tokens_per_s:,.0f} output tok/s"
    )
    assert r.metrics.completed == 10_000
    assert cold_s < 20 and warm < 5


@pytest.mark.bench
def test_bench_find_max_qps(tmp_path: Path) -> None:
    req = _req(tmp_path, qps=None, slo=parse_slo("ttft_p99=2s,tpot_p99=50ms"))
    simulate_serving(_req(tmp_path, requests=200))  # warm the step-time model's common points
    t0 = time.perf_counter()
    found = find_max_qps(req)
    wall = time.perf_counter() - t0
    print(f"\nfind-max-qps, 10k requests per run: {wall:.1f} s (limit 60), {len(found.tried)} "
          f"runs, {found.max_qps:.3g} req/s")  # fmt: skip
    assert found.max_qps > 0 and wall < 60


@pytest.mark.bench
def test_bench_cost_follows_events_not_tokens(tmp_path: Path) -> None:
    """Output lengths 100 vs 400 tokens at the same request rate: four times the tokens, the
    same arrivals and finishes; the wall time grows far less than fourfold."""

    def fixed(out: int) -> TrafficSpec:
        return TrafficSpec(name=f"fixed {out}", prompt_tokens=Lengths(fixed=200),
                           output_tokens=Lengths(fixed=out))  # fmt: skip

    simulate_serving(_req(tmp_path, traffic=fixed(100), requests=500))  # warm the model
    simulate_serving(_req(tmp_path, traffic=fixed(400), requests=500))
    short = _median(lambda: simulate_serving(_req(tmp_path, traffic=fixed(100), requests=4000)))
    long = _median(lambda: simulate_serving(_req(tmp_path, traffic=fixed(400), requests=4000)))
    print(f"\n4000 requests x 100 tokens: {short:.2f} s; x 400 tokens: {long:.2f} s "
          f"(ratio {long / short:.2f} for 4x the tokens)")  # fmt: skip
    assert long / short < 2.0
