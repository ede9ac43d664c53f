"""``hwsim gemm`` and ``hwsim op`` through the typer app (in-process, fast)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hwsim.cli import guard
from hwsim.cli.app import app

runner = CliRunner()


def test_gemm_json_contract(tmp_path: Path) -> None:
    trace = tmp_path / "t" / "gemm.json"
    args = ["gemm", "--device", "a100-sxm-80gb", "--m", "1024", "--n", "12288", "--k", "12288"]
    res = runner.invoke(app, [*args, "--dtype", "fp16", "--trace", str(trace), "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    for key in ("time_s", "tflops", "bytes", "bound", "utilization", "events", "kernel_s"):
        assert key in d, key
    assert d["bound"] == "compute" and d["events"] > 0
    # the table's A100 measurement is 257.9 TFLOP/s; the fitted model is within 8 %
    assert d["tflops"] == pytest.approx(257.9, rel=0.08)
    assert d["tflops"] == pytest.approx(2 * 1024 * 12288 * 12288 / d["time_s"] / 1e12)
    ev = json.loads(trace.read_text())["traceEvents"]
    assert any(e.get("name", "").startswith("wave") for e in ev)


@pytest.mark.parametrize("op", ["softmax", "layernorm", "rmsnorm", "gelu"])
def test_op_json_contract(op: str) -> None:
    res = runner.invoke(
        app,
        ["op", op, "--device", "mi210", "--m", "4096", "--n", "1024", "--dtype", "fp16", "--json"],
    )
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    for key in ("time_s", "bytes", "bound", "utilization", "events", "gelems_per_s"):
        assert key in d, key
    assert d["elements"] == 4096 * 1024


def test_gelu_without_n_counts_elements() -> None:
    res = runner.invoke(app, ["op", "gelu", "-d", "a100-sxm-80gb", "--m", "1048576", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["elements"] == 1048576


def test_tables_print() -> None:
    res = runner.invoke(app, ["gemm", "-d", "mi210", "--m", "64", "--n", "4096", "--k", "4096"])
    assert res.exit_code == 0 and "TFLOP/s" in res.output
    res = runner.invoke(app, ["op", "softmax", "-d", "mi210", "--m", "64", "--n", "4096"])
    assert res.exit_code == 0 and "Gelem/s" in res.output


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["gemm", "-d", "a100-sxm-80gb", "--m", "0", "--n", "8", "--k", "8"], "positive"),
        (
            ["gemm", "-d", "a100-sxm-80gb", "--m", "8", "--n", "8", "--k", "8", "--dtype", "x"],
            "dtype",
        ),
        (["op", "softmax", "-d", "a100-sxm-80gb", "--m", "8"], "--n"),
        (["op", "conv", "-d", "a100-sxm-80gb", "--m", "8", "--n", "8"], "unknown operator"),
        (["gemm", "-d", "no-such-gpu", "--m", "8", "--n", "8", "--k", "8"], "no-such-gpu"),
    ],
)
def test_bad_input_is_one_line_exit_2(
    argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert guard.run(app, argv) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1


def test_help_has_example() -> None:
    for cmd in ("gemm", "op"):
        res = runner.invoke(app, [cmd, "--help"])
        assert res.exit_code == 0 and "Example:" in res.output
