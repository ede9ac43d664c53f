"""The shared numerics helpers (dtype emulation, compare, case registry) and ``hwsim check``."""

from __future__ import annotations

import json

import ml_dtypes
import numpy as np
import pytest
from typer.testing import CliRunner

from hwsim.cli.app import app
from hwsim.functional import check
from hwsim.functional.check import CheckResult, compare, inputs, register_case, run_cases
from hwsim.functional.dtypes import max_finite, quantize, quantize_scaled, round_to, unit_roundoff


def test_rounding_is_real_and_representable():
    x = np.random.default_rng(0).standard_normal(1000) * 10
    for dt, storage in (("bf16", ml_dtypes.bfloat16), ("fp16", np.float16)):
        r = round_to(x, dt)
        assert r.dtype == np.float32
        # exactly representable: a round trip through the storage type changes nothing
        assert np.array_equal(r.astype(storage).astype(np.float32), r)
        # round to nearest: error ≤ u·|x| (normal range, exact bound, no tolerance)
        assert np.all(np.abs(r - x) <= unit_roundoff(dt) * np.abs(x) * (1 + 1e-6))
    # fp8 conversion saturates (ml_dtypes alone would give NaN for e4m3 overflow)
    assert round_to([1e6, -1e6], "fp8_e4m3").tolist() == [448.0, -448.0]
    assert max_finite("fp8_e5m2") == 57344.0


def test_fp8_per_tensor_scale():
    x = np.random.default_rng(1).standard_normal((64, 64)) * 1e-3
    q, s = quantize_scaled(x, "fp8_e4m3")
    assert np.abs(q).max() == 448.0  # amax maps to the largest finite e4m3 value
    assert np.array_equal(round_to(q, "fp8_e4m3"), q)
    # dequantized values are within e4m3's relative rounding of x (2^-4), subnormals aside
    big = np.abs(x) > 2**-6 * s
    deq = quantize(x, "fp8_e4m3")
    assert np.all(np.abs(deq - x)[big] <= 2**-4 * np.abs(x)[big] * 1.001)


def test_inputs_are_seeded():
    a = inputs({"q": (2, 3), "k": (4,)}, "bf16", 7)
    b = inputs({"q": (2, 3), "k": (4,)}, "bf16", 7)
    assert all(np.array_equal(a[n], b[n]) for n in a)
    assert not np.array_equal(inputs((5,), "fp32", 1), inputs((5,), "fp32", 2))


def test_compare_semantics():
    r = compare([1.0, np.inf], [1.001, np.inf], "bf16")
    assert r.ok and r.max_abs == pytest.approx(1e-3)  # equal infinities count as exact
    assert not compare([np.nan, 1.0], [1.0, 1.0], "bf16").ok
    assert not compare([1.1], [1.0], "fp16").ok  # 10% ≫ fp16 tolerance (3e-3)
    # a scale override lets a near-zero reference use the magnitude of its terms
    assert compare([1e-6], [0.0], "fp32", scale=1.0).ok
    assert not compare(np.zeros(3), np.zeros(4), "fp32").ok


def test_registry_runs_and_contains_failures(monkeypatch):
    monkeypatch.setattr(check, "_CASES", {})
    monkeypatch.setattr(check, "CASE_MODULES", ())
    register_case("t/ok", lambda: compare([1.0], [1.0], "fp32").with_bytes(True), quick=True)
    register_case("t/slow", lambda: [compare([1.0], [1.0], "fp32")], quick=False)

    def boom() -> CheckResult:
        raise RuntimeError("bug")

    register_case("t/boom", boom, quick=True)
    quick = run_cases(quick=True)
    assert [r.case for r in quick] == ["t/ok", "t/boom"]
    assert quick[0].passed and not quick[1].passed and "bug" in quick[1].detail
    assert len(run_cases(quick=False)) == 3


def test_cli_check_quick_json_and_failure_exit(monkeypatch):
    runner = CliRunner()
    res = runner.invoke(app, ["check", "--quick", "--match", "attn/flash/fwd/causal", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["passed"] and data["n_cases"] == 10
    monkeypatch.setattr(check, "_CASES", {})
    monkeypatch.setattr(check, "CASE_MODULES", ())
    register_case("t/bad", lambda: compare([2.0], [1.0], "fp32"), quick=True)
    res = runner.invoke(app, ["check", "--quick"])
    assert res.exit_code == 1 and "FAIL" in res.output
