"""Sourced quantities: a number with its unit parsed to SI, and the citation it came from.

In YAML every numeric spec value is written as a mapping::

    bandwidth: {value: 3.35 TB/s, source: h100-datasheet}
    peak_bf16: {value: 989.4 TFLOP/s, source: h100-whitepaper,
                derived: "132 SMs x 4096 FLOP/clk x 1.83 GHz"}

``source`` names an entry of the file's top-level ``sources:`` table (checked on load), so a
typo in a citation is an error rather than a dangling reference.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, WithJsonSchema

from hwsim.spec.units import EXAMPLES, NOUNS, Dim, UnitError, format_quantity, parse_quantity

#: Largest plausible value of one spec number per dimension. Anything above is a unit slip
#: (``80 PB`` for ``80 GB``) or an overflow in waiting; the limits leave room for whole clusters
#: (100k chips x 3.35 TB/s is 3.4e17 B/s, 100k x 2 PFLOP/s is 2e20 FLOP/s).
PLAUSIBLE_MAX: dict[Dim, float] = {
    Dim.BYTES: 1e21,  # 1 ZB
    Dim.BANDWIDTH: 1e19,  # 10 EB/s
    Dim.RATE: 1e22,  # 10 ZFLOP/s
    Dim.FREQUENCY: 1e12,  # 1 THz
    Dim.TIME: 1e6,  # 11.6 days, for a latency or duration
    Dim.POWER: 1e10,  # 10 GW
    Dim.MONEY: 1e13,  # 10 trillion USD
    Dim.COUNT: 1e15,
}


class Strict(BaseModel):
    """Base for every spec model: frozen, and unknown keys are errors (typos never pass)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Sourced(Strict):
    """A spec number in SI base units, with the text it was written as and its source."""

    value: float
    dim: Dim
    text: str
    source: str
    derived: str | None = None
    note: str | None = None


_SOURCED_KEYS = ("value", "source", "derived", "note")


def _make_parser(dim: Dim, positive: bool, integer: bool = False) -> Callable[[Any], Any]:
    def parse(raw: Any) -> Any:
        if isinstance(raw, Sourced):
            return raw
        if not isinstance(raw, dict):
            raise ValueError(
                f"expected a mapping {{value: ..., source: ...}} holding {EXAMPLES[dim]}, "
                f"got {raw!r}"
            )
        unknown = sorted(str(k) for k in set(raw) - set(_SOURCED_KEYS))
        if unknown:
            guess = difflib.get_close_matches(unknown[0], _SOURCED_KEYS, n=1)
            hint = f"; did you mean '{guess[0]}'?" if guess else ""
            raise ValueError(
                f"unknown key '{unknown[0]}' in a sourced value{hint} "
                f"(allowed: {', '.join(_SOURCED_KEYS)})"
            )
        if "value" not in raw:
            raise ValueError(f"missing 'value' ({EXAMPLES[dim]})")
        if not raw.get("source"):
            raise ValueError("missing 'source': every spec number cites where it comes from")
        if not isinstance(raw["source"], str):
            raise ValueError(
                f"'source' must be a key of the sources table (text), got {raw['source']!r}"
            )
        for key in ("derived", "note"):
            if raw.get(key) is not None and not isinstance(raw[key], str | int | float):
                raise ValueError(f"'{key}' must be text, got {raw[key]!r}")
        try:
            value = parse_quantity(raw["value"], dim)
        except (UnitError, OverflowError) as err:  # OverflowError: an int too big for a float
            raise ValueError(str(err) or f"expected a finite value, got {raw['value']!r}") from None
        if positive and value <= 0:
            raise ValueError(f"must be greater than zero, got {raw['value']!r}")
        if value > PLAUSIBLE_MAX[dim]:
            raise ValueError(
                f"{raw['value']!r} is implausibly large for a {NOUNS[dim]} "
                f"(limit {format_quantity(PLAUSIBLE_MAX[dim], dim)}); check the unit"
            )
        if integer and value != int(value):
            raise ValueError(f"expected a whole number, got {raw['value']!r}")
        return {
            "value": value,
            "dim": dim,
            "text": str(raw["value"]),
            "source": str(raw["source"]),
            "derived": raw.get("derived"),
            "note": raw.get("note"),
        }

    return parse


def _schema(dim: Dim) -> dict[str, Any]:
    """JSON Schema of the YAML form, so editors autocomplete the human-facing shape."""
    value: dict[str, Any] = {"type": "string", "description": EXAMPLES[dim]}
    if dim is Dim.COUNT:
        value = {"type": ["number", "string"], "description": EXAMPLES[dim]}
    return {
        "type": "object",
        "properties": {
            "value": value,
            "source": {"type": "string", "description": "key into the file's sources table"},
            "derived": {"type": "string", "description": "the arithmetic, for derived values"},
            "note": {"type": "string"},
        },
        "required": ["value", "source"],
        "additionalProperties": False,
    }


def sourced(dim: Dim, positive: bool = True, integer: bool = False) -> Any:
    """Annotated type for a sourced quantity of ``dim`` (> 0 unless ``positive=False``; a whole
    number if ``integer``)."""
    return Annotated[
        Sourced,
        BeforeValidator(_make_parser(dim, positive, integer)),
        WithJsonSchema(_schema(dim)),
    ]


Bytes = sourced(Dim.BYTES)
Bandwidth = sourced(Dim.BANDWIDTH)
Rate = sourced(Dim.RATE)
Frequency = sourced(Dim.FREQUENCY)
Latency = sourced(Dim.TIME, positive=False)
Duration = sourced(Dim.TIME)
Power = sourced(Dim.POWER)
Money = sourced(Dim.MONEY)
Count = sourced(Dim.COUNT)
#: A count that must be a whole number (compute units, ports, mesh rows): ``132.5 SMs`` is a typo.
WholeCount = sourced(Dim.COUNT, integer=True)
