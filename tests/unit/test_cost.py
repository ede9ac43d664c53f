"""The cost model (devices/costs/costs.yaml, hwsim.spec.cost) and the comparison rows built on it
(hwsim.serve.classes): worked numbers, unknown prices never priced at zero, the JSON keys other
tools read, the Pareto front."""

from __future__ import annotations

import math

import pytest

from hwsim.serve.classes import ClassComparison, ClassRow
from hwsim.spec.cost import HOUR_S, economics, joules_per_token, load_costs, usd_per_million
from hwsim.spec.errors import SpecError
from hwsim.spec.load import load_device


def test_capex_is_purchase_over_service_hours_plus_electricity() -> None:
    """H100: 27,500 USD over 4 years (35,064 h) at 80% utilisation = 0.9803 USD/h, plus 700 W x
    PUE 1.3 x 0.08 USD/kWh = 0.0728 USD/h: 1.0531 USD/h (to 1e-9: plain arithmetic)."""
    e = economics("h100-sxm", load_device("h100-sxm"))
    assert e.capex_usd_per_hour == pytest.approx(27500 / (4 * 8766 * 0.8) + 0.7 * 1.3 * 0.08)
    assert e.rental_usd_per_hour == pytest.approx(2.99)
    assert e.usd_per_hour == e.rental_usd_per_hour  # rankings use rental where it is known


def test_a_device_without_any_price_is_never_priced_at_zero() -> None:
    e = economics("sambanova-sn40l", load_device("sambanova-sn40l"))
    assert e.capex_usd_per_hour is None and e.rental_usd_per_hour is None
    assert e.usd_per_hour is None
    assert usd_per_million(None, 16, 1000.0) is None
    assert joules_per_token(e.power_W, 16, 1000.0) == pytest.approx(16 * e.power_W / 1000.0)


@pytest.mark.parametrize(
    ("price", "rental", "capex_purchase"),
    [("1.5 USD/h", 1.5, 27500.0), ("20000 USD", None, 20000.0)],
)
def test_price_option_is_a_rental_or_a_purchase_by_its_unit(
    price: str, rental: float | None, capex_purchase: float
) -> None:
    e = economics("h100-sxm", load_device("h100-sxm"), price=price, amortization="5 years")
    assert e.rental_usd_per_hour == (None if rental is None else pytest.approx(rental))
    energy = 0.7 * 1.3 * 0.08
    assert e.capex_usd_per_hour == pytest.approx(capex_purchase / (5 * 8766 * 0.8) + energy)


@pytest.mark.parametrize("bad", ["3 EUR/h", "cheap", "30000"])
def test_a_price_without_a_money_unit_is_refused(bad: str) -> None:
    with pytest.raises(SpecError, match="--price"):
        economics("h100-sxm", load_device("h100-sxm"), price=bad)


def test_dollars_per_million_tokens() -> None:
    """2 devices at 3 USD/h making 1,000 tokens/s: 6 USD per 3.6 M tokens = 1.667 USD/Mtok."""
    assert usd_per_million(3.0, 2, 1000.0) == pytest.approx(6.0 / (1000.0 * HOUR_S) * 1e6)
    assert usd_per_million(3.0, 2, 0.0) is None


def test_every_cost_file_number_has_a_source() -> None:
    c = load_costs()
    assert c.defaults.utilization == pytest.approx(0.8)
    assert set(c.devices) >= {"h100-sxm", "h200", "b200", "mi300x", "groq-lpu"}


def _row(cls: str, device: str, usd: float | None, user: float, ok: bool = True) -> ClassRow:
    return ClassRow(
        cls, device, 1.0, ok, 4 if ok else None, 1, "tp=4", "fp8", "1 x tp=4", usd, usd, usd,
        2.0, user, 1000.0, 0.1, 0.02, "the KV cache holds 64 sequences per replica",
    )  # fmt: skip


def test_rows_carry_the_keys_other_tools_read() -> None:
    d = _row("chat", "h200", 2.5, 60.0).to_dict()
    for key in ("class", "device", "devices", "replicas", "layout", "meets_slo",
                "usd_per_million_output_tokens", "joules_per_output_token",
                "binding_constraint"):  # fmt: skip
        assert key in d
    assert d["kwh_per_million_output_tokens"] == pytest.approx(2.0 * 1e6 / 3.6e6)
    assert ClassRow.from_dict(d) == _row("chat", "h200", 2.5, 60.0)


def test_winner_and_pareto_front() -> None:
    rows = (
        _row("chat", "a", 2.0, 50.0),  # cheapest
        _row("chat", "b", 3.0, 80.0),  # faster, dearer: on the front
        _row("chat", "c", 4.0, 70.0),  # beaten by b on both: off the front
        _row("chat", "d", None, 300.0),  # no price: never the dollar winner, not on the $ front
        _row("chat", "e", 1.0, 10.0, ok=False),  # missed the SLOs
    )
    cmp = ClassComparison("m", ("chat",), tuple(r.device for r in rows), rows)
    win = cmp.winner("chat")
    assert win is not None and win.device == "a"
    assert [r.device for r in cmp.pareto("chat")] == ["a", "b"]
    assert [r.device for r in cmp.pareto("chat", "kwh_per_million_output_tokens")] == ["d"]
    only_unpriced = ClassComparison("m", ("chat",), ("d",), (rows[3],))
    w = only_unpriced.winner("chat")
    assert w is not None and w.device == "d"  # then by energy
    assert math.isclose(cmp.to_dict()["rows"][0]["usd_per_million_output_tokens"], 2.0)
