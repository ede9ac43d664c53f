"""``hwsim attention`` and ``hwsim validate`` through the typer app (in-process)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hwsim.cli import guard
from hwsim.cli.app import app

runner = CliRunner()
BASE = ["attention", "--device", "h100-sxm", "--batch", "2", "--heads", "16", "--seqlen", "2048"]


def test_attention_json_contract(tmp_path: Path) -> None:
    trace = tmp_path / "out" / "trace.json"
    html = tmp_path / "out" / "attn.html"
    args = [*BASE, "--head-dim", "128", "--causal", "--dtype", "fp16", "--kernel", "fa3"]
    res = runner.invoke(
        app, [*args, "--pass", "fwd", "--trace", str(trace), "--html", str(html), "--json"]
    )
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    for key in ("time_s", "tflops", "bytes", "bound", "utilization", "events", "wall_s"):
        assert key in d, key
    assert set(d["bytes"]) >= {"hbm", "l2", "smem"}
    assert {"compute", "hbm", "l2"} <= set(d["utilization"])
    # FlashAttention's convention: 4·b·s²·h·d / 2 (causal) over the time; 1e-12: float
    flops = 4 * 2 * 2048**2 * 16 * 128 / 2
    assert d["tflops"] == pytest.approx(flops / d["time_s"] / 1e12, rel=1e-12)
    ev = json.loads(trace.read_text())["traceEvents"]
    assert any(e["ph"] == "X" and e["name"].startswith("attn_fwd") for e in ev)
    assert "plotly" in html.read_text()[:10_000_000].lower()


@pytest.mark.parametrize("pass_", ["bwd", "fwd+bwd"])
def test_backward_passes(pass_: str) -> None:
    res = runner.invoke(app, [*BASE, "--pass", pass_, "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    names = [k["name"] for k in d["kernels"]]
    assert "attn_bwd" in names and ("attn_fwd" in names) == (pass_ == "fwd+bwd")


def test_gqa_decode_and_table_output() -> None:
    res = runner.invoke(
        app,
        [
            *BASE[:-2],
            "--seqlen",
            "1",
            "--seqlen-kv",
            "8192",
            "--kv-heads",
            "2",
            "--kernel",
            "flash-decoding",
            "--dtype",
            "bf16",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "attn_combine" in res.output and "TFLOP/s" in res.output


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--kv-heads", "5"], "kv_heads"),
        (["--kernel", "fa9"], "unknown attention kernel"),
        (["--pass", "sideways"], "--pass"),
        (["--detail", "warp"], "detail"),
    ],
)
def test_bad_input_is_one_line_error(
    extra: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert guard.run(app, [*BASE, *extra]) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1


def test_help_has_example() -> None:
    for cmd in ("attention", "validate"):
        res = runner.invoke(app, [cmd, "--help"])
        assert res.exit_code == 0 and "Example:" in res.output


@pytest.mark.slow
def test_validate_fa3_suite_meets_targets() -> None:
    res = runner.invoke(app, ["validate", "--suite", "fa3-h100", "--json"])
    assert res.exit_code == 0, res.output
    (suite,) = json.loads(res.stdout)
    assert suite["suite"] == "fa3-h100" and len(suite["rows"]) == 36
    # issue 4's targets
    assert suite["mape"] <= 0.08 and suite["max_error"] <= 0.20 and suite["meets_targets"]


def test_validate_unknown_suite() -> None:
    res = runner.invoke(app, ["validate", "--suite", "nope"])
    assert res.exit_code != 0
    assert "unknown suite" in str(res.exception)
