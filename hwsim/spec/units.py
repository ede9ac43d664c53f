"""The one unit parser: human quantities at the YAML edge → SI base units inside the code.

Humans write ``3.35 TB/s``, ``80 GiB``, ``1.98 GHz``, ``989 TFLOP/s``, ``900 ns``, ``400 Gb/s``.
Inside hwsim every number is in SI base units: bytes, bytes/s, FLOP/s, Hz, seconds, watts.

Rules (decimal prefixes are decimal, binary prefixes are explicit):

* ``k M G T P E`` are powers of 1000; ``Ki Mi Gi Ti Pi`` are powers of 1024.
* ``B`` is a byte, ``b`` is a bit (``400 Gb/s`` is 50e9 bytes/s).
* ``FLOP/s`` (also ``FLOPS``) and ``OP/s`` (also ``OPS``, for integer rates) are rates.
* A bare number is accepted only for dimensionless counts.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass
from enum import StrEnum


class Dim(StrEnum):
    """Physical dimension of a quantity; the value is the SI base unit it is stored in."""

    BYTES = "B"
    BANDWIDTH = "B/s"
    RATE = "FLOP/s"
    FREQUENCY = "Hz"
    TIME = "s"
    POWER = "W"
    MONEY = "USD"
    MONEY_RATE = "USD/s"
    ENERGY_PRICE = "USD/J"
    COUNT = "1"


#: What a quantity of each dimension is called in messages.
NOUNS: dict[Dim, str] = {
    Dim.BYTES: "data size",
    Dim.BANDWIDTH: "bandwidth",
    Dim.RATE: "compute rate",
    Dim.FREQUENCY: "frequency",
    Dim.TIME: "time",
    Dim.POWER: "power",
    Dim.MONEY: "price",
    Dim.MONEY_RATE: "price per time",
    Dim.ENERGY_PRICE: "price per energy",
    Dim.COUNT: "count",
}

#: Example text per dimension, used in error messages so the user sees what was expected.
EXAMPLES: dict[Dim, str] = {
    Dim.BYTES: "a data size such as '80 GiB' or '50 MB'",
    Dim.BANDWIDTH: "a bandwidth such as '3.35 TB/s' or '400 Gb/s'",
    Dim.RATE: "a compute rate such as '989 TFLOP/s' or '1979 TOP/s'",
    Dim.FREQUENCY: "a frequency such as '1.98 GHz'",
    Dim.TIME: "a time such as '900 ns' or '5 us'",
    Dim.POWER: "a power such as '700 W'",
    Dim.MONEY: "a price such as '30000 USD'",
    Dim.MONEY_RATE: "a rental price such as '2.99 USD/h'",
    Dim.ENERGY_PRICE: "an energy price such as '0.08 USD/kWh'",
    Dim.COUNT: "a plain number such as '132'",
}

_DECIMAL = {"": 1.0, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18}
_BINARY = {"Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40, "Pi": 2.0**50, "Ei": 2.0**60}
_TIME_PREFIX = {"": 1.0, "m": 1e-3, "u": 1e-6, "µ": 1e-6, "μ": 1e-6, "n": 1e-9, "p": 1e-12}

# base unit text → (dimension, factor to SI). Bits are converted to bytes here, once.
_BASE: dict[str, tuple[Dim, float]] = {
    "B": (Dim.BYTES, 1.0),
    "b": (Dim.BYTES, 1.0 / 8.0),
    "B/s": (Dim.BANDWIDTH, 1.0),
    "Bps": (Dim.BANDWIDTH, 1.0),
    "b/s": (Dim.BANDWIDTH, 1.0 / 8.0),
    "bps": (Dim.BANDWIDTH, 1.0 / 8.0),
    "FLOP/s": (Dim.RATE, 1.0),
    "FLOPS": (Dim.RATE, 1.0),
    "OP/s": (Dim.RATE, 1.0),
    "OPS": (Dim.RATE, 1.0),
    "Hz": (Dim.FREQUENCY, 1.0),
    "W": (Dim.POWER, 1.0),
    "USD": (Dim.MONEY, 1.0),
    "$": (Dim.MONEY, 1.0),
    # long times for amortisation and rental (a year is 365.25 days)
    "min": (Dim.TIME, 60.0),
    "h": (Dim.TIME, 3600.0),
    "hr": (Dim.TIME, 3600.0),
    "d": (Dim.TIME, 86400.0),
    "day": (Dim.TIME, 86400.0),
    "days": (Dim.TIME, 86400.0),
    "yr": (Dim.TIME, 365.25 * 86400.0),
    "year": (Dim.TIME, 365.25 * 86400.0),
    "years": (Dim.TIME, 365.25 * 86400.0),
    "USD/h": (Dim.MONEY_RATE, 1.0 / 3600.0),
    "USD/hr": (Dim.MONEY_RATE, 1.0 / 3600.0),
    "$/h": (Dim.MONEY_RATE, 1.0 / 3600.0),
    "$/hr": (Dim.MONEY_RATE, 1.0 / 3600.0),
    "USD/s": (Dim.MONEY_RATE, 1.0),
    "USD/kWh": (Dim.ENERGY_PRICE, 1.0 / 3.6e6),
    "$/kWh": (Dim.ENERGY_PRICE, 1.0 / 3.6e6),
    "USD/MWh": (Dim.ENERGY_PRICE, 1.0 / 3.6e9),
    "USD/J": (Dim.ENERGY_PRICE, 1.0),
}

_NUMBER = r"[-+]?(?:\d+(?:_\d+)*(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_QUANTITY_RE = re.compile(rf"^\s*(?P<num>{_NUMBER})\s*(?P<unit>[^\s\d].*?)?\s*$")


class UnitError(ValueError):
    """A quantity could not be parsed, or has the wrong dimension or sign."""


@dataclass(frozen=True)
class Quantity:
    """A parsed quantity in SI base units."""

    value: float
    dim: Dim


def _split_unit(unit: str) -> tuple[Dim, float] | None:
    """Return (dimension, SI factor) of a unit text, or None if it is unknown."""
    if unit in _BASE:
        return _BASE[unit]
    # time units: s, ms, us, µs, ns, ps
    if unit.endswith("s") and unit[:-1] in _TIME_PREFIX and "/" not in unit:
        return Dim.TIME, _TIME_PREFIX[unit[:-1]]
    for table in (_BINARY, _DECIMAL):
        for prefix, factor in table.items():
            if prefix and unit.startswith(prefix) and unit[len(prefix) :] in _BASE:
                dim, base = _BASE[unit[len(prefix) :]]
                if dim in (Dim.MONEY, Dim.MONEY_RATE, Dim.ENERGY_PRICE) or unit[len(prefix) :] in (
                    "h", "hr", "d", "day", "days", "yr", "year", "years", "min",
                ):  # fmt: skip
                    return None
                return dim, factor * base
    return None


#: Units people write for each dimension, for "did you mean" suggestions.
_COMMON: dict[Dim, tuple[str, ...]] = {
    Dim.BYTES: ("B", "KB", "KiB", "MB", "MiB", "GB", "GiB", "TB", "TiB"),
    Dim.BANDWIDTH: ("MB/s", "GB/s", "TB/s", "Gb/s", "Tb/s"),
    Dim.RATE: ("GFLOP/s", "TFLOP/s", "PFLOP/s", "TOP/s", "POP/s"),
    Dim.FREQUENCY: ("MHz", "GHz"),
    Dim.TIME: ("s", "ms", "us", "ns", "ps"),
    Dim.POWER: ("W", "kW", "MW"),
    Dim.MONEY: ("USD",),
    Dim.MONEY_RATE: ("USD/h", "USD/s"),
    Dim.ENERGY_PRICE: ("USD/kWh", "USD/MWh"),
    Dim.COUNT: (),
}
_SPELLED = {"sec": "s", "msec": "ms", "usec": "us", "nsec": "ns", "psec": "ps"}
_NON_FINITE = re.compile(r"^\s*[-+]?(nan|inf|infinity)\b", re.IGNORECASE)


def _unit_hint(unit: str, expected: Dim) -> str:
    """A "did you mean" for an unknown unit: spelled-out time units, wrong case, near misses."""
    if unit.startswith(",") and unit[1:2].isdigit():
        return "; use a decimal point, not a comma"
    if unit in _SPELLED:
        return f"; did you mean '{_SPELLED[unit]}'?"
    choices = _COMMON[expected]
    for c in choices:
        if c.lower() == unit.lower():
            return f"; did you mean '{c}'?"
    guess = difflib.get_close_matches(unit, choices, n=1, cutoff=0.6)
    return f"; did you mean '{guess[0]}'?" if guess else ""


def _bare(text: object, expected: Dim) -> UnitError:
    return UnitError(f"expected {EXAMPLES[expected]}, got the bare number {text!r}: write the unit")


def parse_quantity(text: str | int | float, expected: Dim) -> float:
    """Parse ``text`` as a quantity of dimension ``expected`` and return it in SI base units.

    Raises :class:`UnitError` with a message saying what was expected when the text is not a
    number with a known unit of the right dimension, or when it is negative, NaN or infinite.
    Zero is accepted here; fields where zero is impossible check that themselves.
    """
    if isinstance(text, bool):
        raise UnitError(f"expected {EXAMPLES[expected]}, got a boolean {text!r}")
    if isinstance(text, int | float):
        try:
            value = float(text)
        except OverflowError:  # an int beyond float range
            raise UnitError(
                f"expected a finite value, got a {len(str(text))}-digit number"
            ) from None
        if math.isfinite(value) and expected is not Dim.COUNT:
            raise _bare(text, expected)
    elif isinstance(text, str):
        if _NON_FINITE.match(text):
            raise UnitError(f"expected a finite value, got {text!r}")
        m = _QUANTITY_RE.match(text)
        if m is None:
            raise UnitError(f"expected {EXAMPLES[expected]}, got {text!r}")
        number = float(m.group("num").replace("_", ""))
        unit = (m.group("unit") or "").strip()
        if not unit:
            if expected is not Dim.COUNT:
                raise _bare(text, expected)
            value = number
        else:
            found = _split_unit(unit)
            if found is None:
                raise UnitError(
                    f"unknown unit {unit!r} in {text!r}{_unit_hint(unit, expected)}; "
                    f"expected {EXAMPLES[expected]}"
                )
            dim, factor = found
            if dim is not expected:
                raise UnitError(
                    f"wrong dimension: {text!r} is a {NOUNS[dim]} ({dim.value}), "
                    f"expected {EXAMPLES[expected]}"
                )
            value = number * factor
    else:
        raise UnitError(f"expected {EXAMPLES[expected]}, got {type(text).__name__} {text!r}")
    if math.isnan(value) or math.isinf(value):
        raise UnitError(f"expected a finite value, got {text!r}")
    if value < 0:
        raise UnitError(f"expected a non-negative value, got {text!r}")
    return value


_SHOW_PREFIX = [(1e18, "E"), (1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")]


def format_quantity(value: float, dim: Dim, digits: int = 4) -> str:
    """Format an SI value for humans with a decimal prefix (``3.35e12, BANDWIDTH`` → ``3.35 TB/s``).

    The output parses back with :func:`parse_quantity` to within ``digits`` significant digits.
    """
    if dim is Dim.COUNT:
        return f"{value:.{digits}g}"
    if dim is Dim.TIME:
        for scale, name in ((1.0, "s"), (1e-3, "ms"), (1e-6, "us"), (1e-9, "ns")):
            if abs(value) >= scale:
                return f"{value / scale:.{digits}g} {name}"
        return f"{value / 1e-12:.{digits}g} ps"
    unit = dim.value
    if dim is Dim.MONEY:
        return f"{value:.{digits}g} USD"
    if dim is Dim.MONEY_RATE:
        return f"{value * 3600:.{digits}g} USD/h"
    if dim is Dim.ENERGY_PRICE:
        return f"{value * 3.6e6:.{digits}g} USD/kWh"
    for scale, prefix in _SHOW_PREFIX:
        if abs(value) >= scale:
            return f"{value / scale:.{digits}g} {prefix}{unit}"
    return f"{value:.{digits}g} {unit}"
