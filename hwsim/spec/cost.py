"""What a device costs to run: the cost file (``devices/costs/costs.yaml``) and the dollars and
joules per token it implies.

The file has a ``sources`` table, ``defaults`` (amortisation period, utilisation, electricity
price, PUE) and, per device name, an hourly ``rental`` price and optionally a ``purchase`` price
and a ``power`` draw (by default the device YAML's ``price`` and ``power.tdp``). Every number
is ``{value: 2.99 USD/h, source: key}`` or ``{value: ..., estimate: "why"}``.

Two costs per device-hour, reported side by side where both are known:

* **capex**: ``purchase / (amortisation × utilisation) + power × PUE × electricity``: owning the
  device, spread over the hours it serves, plus its electricity;
* **rental**: the hourly rental price (electricity included, as clouds bill it).

A device with neither price is compared on devices and power only: its dollars are ``None``,
never zero.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, model_validator

from hwsim.spec.device import Device
from hwsim.spec.errors import SpecError
from hwsim.spec.load import DEVICES_DIR, read_yaml, validate
from hwsim.spec.quantity import Strict
from hwsim.spec.units import Dim, UnitError, parse_quantity

COST_FILE = DEVICES_DIR / "costs" / "costs.yaml"
HOUR_S = 3600.0


def _leaf(dim: Dim) -> Any:
    """``{value: '2.99 USD/h', source|estimate: ...}`` → SI float (a validator)."""

    def parse(raw: Any) -> Any:
        if isinstance(raw, dict):
            if not ({"source", "estimate"} & set(raw)):
                raise ValueError("needs a 'source' key (from the sources table) or an 'estimate'")
            raw = raw.get("value")
        if isinstance(raw, int | float) and not isinstance(raw, bool) and dim is Dim.COUNT:
            return float(raw)
        try:
            return parse_quantity(raw, dim)
        except UnitError as err:
            raise ValueError(str(err)) from None

    return BeforeValidator(parse)


Seconds = Annotated[float, _leaf(Dim.TIME), Field(gt=0)]
Fraction = Annotated[float, _leaf(Dim.COUNT), Field(gt=0, le=1)]
Ratio = Annotated[float, _leaf(Dim.COUNT), Field(ge=1, le=10)]
EnergyPrice = Annotated[float, _leaf(Dim.ENERGY_PRICE), Field(ge=0)]
MoneyRate = Annotated[float, _leaf(Dim.MONEY_RATE), Field(gt=0)]
Money = Annotated[float, _leaf(Dim.MONEY), Field(gt=0)]
Watts = Annotated[float, _leaf(Dim.POWER), Field(gt=0)]


class CostDefaults(Strict):
    """Assumptions that hold for every device unless its entry says otherwise."""

    amortization: Seconds
    utilization: Fraction
    electricity: EnergyPrice
    pue: Ratio


class DeviceCost(Strict):
    """One device's prices and power (the device YAML's price and TDP unless given)."""

    rental: MoneyRate | None = None
    purchase: Money | None = None
    power: Watts | None = None
    note: str | None = None


class CostFile(Strict):
    sources: dict[str, str]
    defaults: CostDefaults
    devices: dict[str, DeviceCost]

    @model_validator(mode="before")
    @classmethod
    def _sources_exist(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        known = set(data.get("sources") or {})
        for where, entry in [("defaults", data.get("defaults"))] + [
            (f"devices.{k}", v) for k, v in (data.get("devices") or {}).items()
        ]:
            for key, leaf in (entry or {}).items() if isinstance(entry, dict) else ():
                src = leaf.get("source") if isinstance(leaf, dict) else None
                if src is not None and src not in known:
                    raise ValueError(f"{where}.{key}: source {src!r} is not in the sources table")
        return data


@functools.lru_cache(maxsize=8)
def load_costs(path: Path = COST_FILE) -> CostFile:
    """The cost file (``devices/costs/costs.yaml`` by default), validated."""
    data, node = read_yaml(path)
    return validate(CostFile, data, file=str(path), node=node)


@dataclass(frozen=True)
class Economics:
    """One device's cost per hour of service (USD; ``None`` where no price is known) and its
    power (W), with where each came from."""

    device: str
    capex_usd_per_hour: float | None
    rental_usd_per_hour: float | None
    power_W: float
    assumptions: tuple[str, ...]

    @property
    def usd_per_hour(self) -> float | None:
        """The cost used to rank deployments: rental where known, else capex."""
        return self.rental_usd_per_hour if self.rental_usd_per_hour is not None else (
            self.capex_usd_per_hour
        )  # fmt: skip


def economics(
    key: str,
    device: Device,
    *,
    price: str | None = None,
    amortization: str | None = None,
    costs: CostFile | None = None,
) -> Economics:
    """``device``'s economics from the cost file, with command-line overrides: ``price`` is a
    purchase price (``30000 USD``) or an hourly rental (``2.99 USD/h``), told apart by unit;
    ``amortization`` a time (``35064 h``, ``4 years``)."""
    c = costs or load_costs()
    entry = c.devices.get(key, DeviceCost())
    d = c.defaults
    purchase = entry.purchase if entry.purchase is not None else device.price_usd
    rental = entry.rental
    years = d.amortization
    notes = []
    if price is not None:
        try:
            rental, purchase = parse_quantity(price, Dim.MONEY_RATE), purchase
            notes.append(f"--price {price} (rental)")
        except UnitError:
            try:
                purchase, rental = parse_quantity(price, Dim.MONEY), None
                notes.append(f"--price {price} (purchase)")
            except UnitError:
                raise SpecError(
                    f"expected a purchase price such as '30000 USD' or a rental such as "
                    f"'2.99 USD/h', got {price!r}",
                    key="--price",
                ) from None
    if amortization is not None:
        try:
            years = parse_quantity(amortization, Dim.TIME)
        except UnitError as err:
            raise SpecError(str(err), key="--hours") from None
        if years <= 0:
            raise SpecError(f"must be a time > 0, got {amortization!r}", key="--hours")
    power = entry.power if entry.power is not None else device.tdp_W
    energy = power * d.pue * d.electricity * HOUR_S  # USD per hour of electricity
    capex = None
    if purchase is not None:
        capex = purchase / (years / HOUR_S * d.utilization) + energy
        notes.append(
            f"capex: {purchase:,.0f} USD over {years / HOUR_S / 8766:.1f} years at "
            f"{d.utilization:.0%} utilisation + {power:,.0f} W x PUE {d.pue:g} at "
            f"{d.electricity * 3.6e6:.3g} USD/kWh"
        )
    return Economics(
        key, capex, rental * HOUR_S if rental is not None else None, power, tuple(notes)
    )


def usd_per_million(usd_per_hour: float | None, devices: int, tokens_per_s: float) -> float | None:
    """Dollars per million output tokens of ``devices`` devices producing ``tokens_per_s``."""
    if usd_per_hour is None or tokens_per_s <= 0:
        return None
    return usd_per_hour * devices / (tokens_per_s * HOUR_S) * 1e6


def joules_per_token(power_W: float, devices: int, tokens_per_s: float) -> float | None:
    """Energy per output token at the devices' rated power (an upper estimate: TDP)."""
    return power_W * devices / tokens_per_s if tokens_per_s > 0 else None
