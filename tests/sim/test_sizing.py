"""``hwsim size --traffic``: the search's answers move the right way when the device, the SLO or
the price changes (Llama-3.1-8B on H100s under the chat class, a load that needs several
replicas, 300 requests per simulation so the module runs in well under a minute)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hwsim.serve.api import make_target
from hwsim.serve.metrics import SLO
from hwsim.serve.sizing import size_for_traffic
from hwsim.serve.sizing_result import SizeAnswer
from hwsim.spec.load import load_device
from hwsim.spec.overrides import apply_overrides

MODEL, DEVICE, QPS, REQUESTS = "llama-3.1-8b", "h100-sxm", 24.0, 300
#: Steady-window throughput of two runs of the same load differs by a few tenths of a percent
#: (where the window's ends fall between iterations); cost per token inherits it.
NOISE = 0.02


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("steptime")


def _size(cache: Path, device: object = DEVICE, **kw: object) -> SizeAnswer:
    target = device if not isinstance(device, str) else make_target(device, None)
    return size_for_traffic(
        MODEL, target, "chat", qps=QPS, requests=REQUESTS, step_cache=cache, **kw  # type: ignore[arg-type]
    )


def _cost(ans: SizeAnswer) -> float:
    best = ans.best("dollars")
    assert best is not None and best.usd_per_mtok is not None, ans.why_not()
    return best.usd_per_mtok


@pytest.fixture(scope="module")
def base(cache: Path) -> SizeAnswer:
    return _size(cache)


def test_the_search_needs_several_replicas_and_reports_its_stages(base: SizeAnswer) -> None:
    best = base.best("dollars")
    assert best is not None and best.plan.devices >= 2  # the load is big enough to matter
    s = base.stages
    assert s["enumerated"] >= s["after_bounds"] >= 1 and s["simulated"] >= s["met_slo"] >= 1
    # the rental price is known: both capex and rental figures, ranked by rental
    assert best.rental_usd_per_mtok is not None and best.capex_usd_per_mtok is not None
    assert best.usd_per_mtok == best.rental_usd_per_mtok


def test_a_device_twice_as_fast_in_every_respect_never_costs_more(
    base: SizeAnswer, cache: Path
) -> None:
    dev = load_device(DEVICE)
    faster = {p: "x2" for p in (
        "compute.clock", "compute.peak.bf16", "compute.peak.fp16", "compute.peak.fp8",
        "compute.peak.int8", "compute.peak.tf32", "compute.peak.fp32", "compute.vector_fp32",
        "compute.special", "memory.smem.bandwidth", "memory.l2.bandwidth",
        "memory.hbm.bandwidth", "interconnect.nvlink.bandwidth", "interconnect.pcie.bandwidth",
    )}  # fmt: skip
    faster.update({p: "x0.5" for p in (
        "memory.smem.latency", "memory.l2.latency", "memory.hbm.latency",
        "interconnect.nvlink.latency", "interconnect.pcie.latency",
    )})  # fmt: skip
    # same key: the twice-as-fast device keeps the H100's price (its cost file entry)
    fast = make_target(apply_overrides(dev, faster), None, key=DEVICE)
    ans = _size(cache, fast)
    assert _cost(ans) <= _cost(base) * (1 + NOISE)
    best, fb = base.best("devices"), ans.best("devices")
    assert best is not None and fb is not None and fb.plan.devices <= best.plan.devices


def test_a_tighter_slo_never_gives_a_cheaper_answer(base: SizeAnswer, cache: Path) -> None:
    loose = SLO((("ttft", "p99", 2.0), ("tpot", "p99", 0.1)))
    tight = SLO((("ttft", "p99", 0.2), ("tpot", "p99", 0.012)))
    costs = [_size(cache, slo=s) for s in (loose, base.slo, tight)]
    # an SLO nothing meets has no answer: no cheaper answer either
    values = [_cost(a) if a.passing else float("inf") for a in costs]
    assert values[0] <= values[1] * (1 + NOISE) and values[1] <= values[2] * (1 + NOISE), values


@pytest.mark.parametrize("price", ["1.50 USD/h", "25000 USD"])
def test_cost_per_token_never_rises_when_the_price_falls(
    base: SizeAnswer, cache: Path, price: str
) -> None:
    cheaper = _size(cache, price=price)
    b, c = base.best("dollars"), cheaper.best("dollars")
    assert b is not None and c is not None
    if price.endswith("/h"):  # a rental below the cost file's 2.99 USD/h
        assert c.rental_usd_per_mtok is not None and b.rental_usd_per_mtok is not None
        assert c.rental_usd_per_mtok < b.rental_usd_per_mtok
    else:  # a purchase price below the device file's: capex falls (rental is then unknown)
        assert c.capex_usd_per_mtok is not None and b.capex_usd_per_mtok is not None
        assert c.capex_usd_per_mtok < b.capex_usd_per_mtok
