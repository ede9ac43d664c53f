"""The bounded expression evaluator (hwsim.sweep.expr): float64 arithmetic, caps on length,
parts, nesting and exponents, and every failure one SpecError with its reason."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsim.spec.errors import SpecError
from hwsim.sweep import expr

COLS = {
    "a": np.array([1, 2, 3], dtype=np.int64),
    "big": np.array([2**62, 1, 0], dtype=np.int64),
    "dtype": np.array(["bf16", "fp8", "bf16"], dtype=object),
    "ok": np.array([True, False, True]),
}


def ev(text: str) -> list[bool]:
    return expr.evaluate(text, COLS, 3).tolist()


def test_arithmetic_is_float64_so_towers_cannot_grow() -> None:
    # a Python-int evaluator would build a 370-million-digit integer here
    t0 = time.perf_counter()
    with pytest.raises(SpecError, match=r"exponent of 3\.8742e"):
        ev("9**9**9 > 1")
    assert time.perf_counter() - t0 < 0.1
    assert ev("10**400 > 1") == [True] * 3  # float64: inf, in microseconds
    assert ev("big * big > 0") == [True, True, False]  # no int64 wrap-around
    assert ev("1 / 0 > 1") == [True] * 3 and ev("1 % 0 == 1") == [False] * 3


def test_existing_semantics_kept() -> None:
    assert ev("a * 2 <= 4 and not a == 3") == [True, True, False]
    assert ev("max(a, 2) == 2") == [True, True, False]
    assert ev("min(a, 2, 1.5) == 1.5") == [False, True, True]
    assert ev("dtype == 'bf16' or ok") == [True, False, True]
    assert ev("log2(a) < 1") == [True, False, False]
    assert expr.names("log10(a) > memory[hbm].bandwidth") == {"a", "memory.hbm.bandwidth"}


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("-" * 3000 + "a > 0", "3,005 characters long; the limit is 2,000"),
        (" + ".join(["a"] * 300) + " > 0", "parts; the limit is 500"),
        ("-" * 40 + "a > 0", "nests deeper than 32"),
        ("1" * 5000 + " > 0", "characters long"),
        ("1e999 > a", "not a finite float64"),
        ("a ** 2000 > 1", "exponent of 2000 is over the limit"),
        ("a ** (a * 1000) > 1", "exponent of 3000"),
        ("dtype * 3 > 1", "text can only be compared"),
        ("dtype < 3", "cannot be evaluated"),
        ("log(dtype) > 1", "cannot be evaluated"),
        ("min() > 1", r"min\(\) takes 1 to 16 arguments"),
        ("sqrt(a, a) > 1", r"sqrt\(\) takes one argument"),
        ("a.__class__", "not allowed"),
        ("x if a else a", "'IfExp' is not allowed"),
        ("a << 3 > 1", "'LShift' is not allowed"),
        ("None", "'Constant' is not allowed"),
        ("open('f')", "only the functions"),
    ],
)
def test_refused_with_the_reason(text: str, match: str) -> None:
    with pytest.raises(SpecError, match=match):
        ev(text)


NUMBERS = st.one_of(
    st.integers(0, 400).map(str),
    st.floats(-3, 400).map(lambda e: f"1e{e:.0f}"),
    st.sampled_from(["a", "big", "ok", "9", "0", "'bf16'", "dtype"]),
)
EXPRS = st.recursive(
    NUMBERS,
    lambda c: st.one_of(
        st.tuples(c, st.sampled_from(["+", "-", "*", "/", "//", "%", "**", "<", "and"]), c).map(
            lambda t: f"({t[0]} {t[1]} {t[2]})"
        ),
        st.tuples(st.sampled_from(["min", "max", "abs", "log", "sqrt"]), c).map(
            lambda t: f"{t[0]}({t[1]})"
        ),
        c.map(lambda x: f"-{x}"),
    ),
    max_leaves=16,
)


@settings(max_examples=300, derandomize=True, deadline=None)
@given(EXPRS)
def test_every_expression_is_fast_or_refused(text: str) -> None:
    """Random nested expressions over the columns: a boolean column or a SpecError, never
    another exception, in well under a millisecond per row."""
    cols = {k: np.resize(v, 10_000) for k, v in COLS.items()}
    t0 = time.perf_counter()
    try:
        out = expr.evaluate(f"{text} > 0", cols, 10_000)
    except SpecError as err:
        assert "\n" not in str(err)
    else:
        assert out.dtype == bool and out.shape == (10_000,)
    assert time.perf_counter() - t0 < 0.5  # 10,000 rows: < 50 µs per row even on a busy box
