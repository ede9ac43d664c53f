"""The unit parser: textbook conversions, round trips and garbage rejection (hypothesis)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsim.spec.units import Dim, UnitError, format_quantity, parse_quantity


@pytest.mark.parametrize(
    ("text", "dim", "si"),
    [
        ("3.35 TB/s", Dim.BANDWIDTH, 3.35e12),
        ("400 Gb/s", Dim.BANDWIDTH, 50e9),
        ("80 GiB", Dim.BYTES, 80 * 2**30),
        ("50 MB", Dim.BYTES, 50e6),
        ("228 KiB", Dim.BYTES, 228 * 1024),
        ("1.98 GHz", Dim.FREQUENCY, 1.98e9),
        ("989 TFLOP/s", Dim.RATE, 989e12),
        ("1979 TOP/s", Dim.RATE, 1979e12),
        ("900 ns", Dim.TIME, 900e-9),
        ("5 us", Dim.TIME, 5e-6),
        ("2 ms", Dim.TIME, 2e-3),
        ("700 W", Dim.POWER, 700.0),
        ("132", Dim.COUNT, 132.0),
        (132, Dim.COUNT, 132.0),
    ],
)
def test_textbook(text: str, dim: Dim, si: float) -> None:
    assert parse_quantity(text, dim) == pytest.approx(si, rel=1e-12)


@pytest.mark.parametrize(
    ("text", "dim", "si"),
    [
        # ``b`` is a bit, ``B`` a byte, in sizes as well as in rates (docs/architecture.md:
        # bits are converted to bytes in the parser and nowhere else)
        ("8 b", Dim.BYTES, 1.0),
        ("1 b", Dim.BYTES, 0.125),
        ("1 kb", Dim.BYTES, 125.0),
        ("512 Mb", Dim.BYTES, 64e6),
        ("1 Gb", Dim.BYTES, 125e6),
        ("1 Gib", Dim.BYTES, 2**30 / 8),
        ("1.2 Tb/s", Dim.BANDWIDTH, 150e9),  # Cerebras CS-3 system I/O = 150 GB/s
        ("100 Gbps", Dim.BANDWIDTH, 12.5e9),
        ("8 b/s", Dim.BANDWIDTH, 1.0),
    ],
)
def test_bits_are_an_eighth_of_a_byte(text: str, dim: Dim, si: float) -> None:
    # rel 1e-12: one multiplication by 1/8 (exact in binary) and a decimal prefix
    assert parse_quantity(text, dim) == pytest.approx(si, rel=1e-12)


_PREFIXES = ["", "k", "M", "G", "T", "Ki", "Mi", "Gi", "Ti"]


@settings(max_examples=200)
@given(
    st.floats(min_value=1e-6, max_value=1e9, allow_nan=False),
    st.sampled_from(_PREFIXES),
    st.sampled_from([(Dim.BYTES, ""), (Dim.BANDWIDTH, "/s")]),
)
def test_a_byte_is_eight_bits(value: float, prefix: str, dim_suffix: tuple[Dim, str]) -> None:
    dim, suffix = dim_suffix
    in_bytes = parse_quantity(f"{value!r} {prefix}B{suffix}", dim)
    in_bits = parse_quantity(f"{value!r} {prefix}b{suffix}", dim)
    # 8 × (bits) == bytes up to one rounding of each product (rel 1e-12)
    assert 8 * in_bits == pytest.approx(in_bytes, rel=1e-12)


@pytest.mark.parametrize(
    ("text", "dim", "fragment"),
    [
        ("3.35 TB", Dim.BANDWIDTH, "wrong dimension"),
        ("80 GB/s", Dim.BYTES, "wrong dimension"),
        ("5 furlongs", Dim.TIME, "unknown unit"),
        ("-3 GB", Dim.BYTES, "non-negative"),
        ("nan GB", Dim.BYTES, "expected"),
        ("inf TB/s", Dim.BANDWIDTH, "expected"),
        ("", Dim.BYTES, "expected"),
        ("3.35", Dim.BANDWIDTH, "write the unit"),
        (True, Dim.COUNT, "boolean"),
    ],
)
def test_rejects(text: str, dim: Dim, fragment: str) -> None:
    with pytest.raises(UnitError, match=fragment):
        parse_quantity(text, dim)


_DIMS = [Dim.BYTES, Dim.BANDWIDTH, Dim.RATE, Dim.FREQUENCY, Dim.TIME, Dim.POWER]


@settings(max_examples=300)
@given(st.floats(min_value=1e-12, max_value=1e21, allow_nan=False), st.sampled_from(_DIMS))
def test_round_trip(value: float, dim: Dim) -> None:
    text = format_quantity(value, dim, digits=12)
    assert parse_quantity(text, dim) == pytest.approx(value, rel=1e-10)


@settings(max_examples=300)
@given(st.text(max_size=20), st.sampled_from(_DIMS))
def test_garbage_is_unit_error_or_valid(text: str, dim: Dim) -> None:
    """Any string either parses to a finite non-negative number or raises UnitError: never
    another exception type and never NaN."""
    try:
        v = parse_quantity(text, dim)
    except UnitError:
        return
    assert math.isfinite(v) and v >= 0
