"""``hwsim roofline`` and ``hwsim report`` through the typer app (in-process, fast)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from hwsim.cli.app import app

runner = CliRunner()


def test_roofline_json_keys() -> None:
    res = runner.invoke(app, ["roofline", "h100-sxm", "--kernel", "attn-decode", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    (row,) = data["results"]
    for key in (
        "kernel",
        "device",
        "dtype",
        "time_s",
        "bound",
        "bound_kind",
        "attainable_flops",
        "level_bytes",
        "level_time_s",
        "intensity_flop_per_byte",
        "ridge_flop_per_byte",
        "compute_time_s",
    ):
        assert key in row, key
    assert row["device"] == "h100-sxm" and row["bound"] == "hbm"
    assert set(row["level_bytes"]) == {"smem", "l2", "hbm"}


def test_roofline_html_written(tmp_path: Path) -> None:
    out = tmp_path / "sub" / "roofline.html"
    res = runner.invoke(
        app, ["roofline", "h100-sxm", "a100-sxm-80gb", "-k", "gemm-8192", "--html", str(out)]
    )
    assert res.exit_code == 0, res.output
    text = out.read_text()
    assert text.count("Plotly.newPlot") == 1  # one figure with a device dropdown
    assert "gemm 8192" in text and "h100-sxm" in text and "a100-sxm-80gb" in text
    assert "<script src=" not in text  # plotly inlined: works offline


def test_roofline_bad_input_is_an_error() -> None:
    res = runner.invoke(app, ["roofline", "h100-sxm", "--kernel", "nope", "--json"])
    assert res.exit_code != 0
    res = runner.invoke(app, ["roofline", "h100-sxm", "--dtype", "fp4"])
    assert res.exit_code != 0


def test_help_has_examples() -> None:
    for cmd in ("roofline", "report"):
        res = runner.invoke(app, [cmd, "--help"])
        assert res.exit_code == 0 and "Example:" in res.output, cmd


def test_report_writes_both_pages(tmp_path: Path) -> None:
    res = runner.invoke(app, ["report", "--out", str(tmp_path), "--json"])
    assert res.exit_code == 0, res.output
    files = json.loads(res.stdout)["files"]
    assert {Path(f).name for f in files} == {"roofline.html", "report.html"}
    page = (tmp_path / "report.html").read_text()
    assert page.count("* plotly.js v") == 1  # the library's banner: inlined exactly once
    assert page.count("Plotly.newPlot") >= 2  # roofline + bound heatmap use it
    assert "What bounds each kernel" in page and "Rooflines of all devices" in page
