"""Sourced quantities: a number with its unit parsed to SI, and the citation it came from.

In YAML every numeric spec value is written as a mapping::

    bandwidth: {value: 3.35 TB/s, source: h100-datasheet}
    peak_bf16: {value: 989.4 TFLOP/s, source: h100-whitepaper,
                derived: "132 SMs x 4096 FLOP/clk x 1.83 GHz"}

``source`` names an entry of the file's top-level ``sources:`` table (checked on load), so a
typo in a citation is an error rather than a dangling reference.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, WithJsonSchema

from hwsim.spec.units import EXAMPLES, Dim, UnitError, parse_quantity


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


def _make_parser(dim: Dim, positive: bool) -> Callable[[Any], Any]:
    def parse(raw: Any) -> Any:
        if isinstance(raw, Sourced):
            return raw
        if not isinstance(raw, dict):
            raise ValueError(
                f"expected a mapping {{value: ..., source: ...}} holding {EXAMPLES[dim]}, "
                f"got {raw!r}"
            )
        unknown = set(raw) - {"value", "source", "derived", "note"}
        if unknown:
            raise ValueError(
                f"unknown key(s) {sorted(unknown)} in a sourced value; "
                "allowed: value, source, derived, note"
            )
        if "value" not in raw:
            raise ValueError(f"missing 'value' ({EXAMPLES[dim]})")
        if not raw.get("source"):
            raise ValueError("missing 'source': every spec number cites where it comes from")
        try:
            value = parse_quantity(raw["value"], dim)
        except UnitError as err:
            raise ValueError(str(err)) from None
        if positive and value <= 0:
            raise ValueError(f"must be greater than zero, got {raw['value']!r}")
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


def sourced(dim: Dim, positive: bool = True) -> Any:
    """Annotated type for a sourced quantity of ``dim`` (> 0 unless ``positive=False``)."""
    return Annotated[
        Sourced, BeforeValidator(_make_parser(dim, positive)), WithJsonSchema(_schema(dim))
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
