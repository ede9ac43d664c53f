"""``hwsim roofline`` and ``hwsim report`` through the typer app (in-process, fast)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hwsim.cli import guard
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
    # attn-decode is Llama-3-70B decode attention: batch 1, 8k context, 64 heads / 8 KV heads
    # of 128, bf16. HBM bytes = K and V once, 8192 · 8 · 128 · 2 · 2 = 33,554,432, plus Q and
    # O, 64 · 128 · 2 · 2 = 32,768: 33,587,200 B. Work FLOPs 4 · 64 · 8192 · 128. Bound by HBM
    # at 3.35 TB/s: 33,587,200 / 3.35e12 = 10.03 us (rel 1e-12: one division).
    assert row["level_bytes"]["hbm"] == 33_587_200
    assert row["work_flops"] == 4 * 64 * 8192 * 128
    assert row["level_bandwidth_Bps"]["hbm"] == 3.35e12
    assert row["time_s"] == pytest.approx(33_587_200 / 3.35e12, rel=1e-12)
    assert row["time_s"] == row["level_time_s"]["hbm"] == max(row["level_time_s"].values())


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


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--kernel", "nope", "--json"], "unknown kernel 'nope' (built-in: gemm-8192"),
        (["--dtype", "fp4"], "--dtype 'fp4': expected one of fp32, tf32, bf16, fp16, fp8"),
    ],
)
def test_roofline_bad_input_is_an_error(
    args: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # bad input: exit 2 and one line that says what was wrong and what is accepted
    assert guard.run(app, ["roofline", "h100-sxm", *args]) == guard.EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err.startswith("error:") and err.count("\n") == 1, err
    assert needle in err, err


def test_help_has_examples() -> None:
    for cmd in ("roofline", "report"):
        res = runner.invoke(app, [cmd, "--help"])
        assert res.exit_code == 0 and "Example:" in res.output, cmd


#: The report's "which hardware" section for one small model on one device (the full one
#: compares two large models on seven device types: minutes, a make demo job)
LIGHT = ["--compare-models", "llama-3.1-8b", "--compare-devices", "h100-sxm"]


def test_report_writes_both_pages(tmp_path: Path) -> None:
    res = runner.invoke(app, ["report", "--out", str(tmp_path), "--json", *LIGHT])
    assert res.exit_code == 0, res.output
    files = json.loads(res.stdout)["files"]
    assert {Path(f).name for f in files} == {"roofline.html", "report.html"}
    page = (tmp_path / "report.html").read_text()
    # both pages load the one shared copy of plotly.js beside them (the folder holds it once)
    assert page.count("* plotly.js v") == 0 and 'src="plotly.min.js"' in page
    assert 'src="plotly.min.js"' in (tmp_path / "roofline.html").read_text()
    assert (tmp_path / "plotly.min.js").read_text().count("* plotly.js v") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "plotly.min.js", "report.html", "roofline.html"
    ]
    assert page.count("Plotly.newPlot") >= 2  # roofline + bound heatmap use it
    assert "What bounds each kernel" in page and "Rooflines of all devices" in page
    # the generated workload-class section: its chart and a paragraph per class
    assert "Which hardware for which workload: Llama-3.1-8B" in page
    for cls in ("chat", "low-latency", "batch"):
        assert f"For {cls}, h100-sxm is cheapest" in page or f"the {cls} SLOs" in page


def test_report_can_inline_plotly_in_each_page(tmp_path: Path) -> None:
    res = runner.invoke(
        app, ["report", "--out", str(tmp_path), "--json", "--plotly", "inline", *LIGHT]
    )
    assert res.exit_code == 0, res.output
    page = (tmp_path / "report.html").read_text()
    assert page.count("* plotly.js v") == 1  # the library's banner: inlined exactly once
    assert not (tmp_path / "plotly.min.js").exists()
    bad = ["report", "--out", str(tmp_path), "--plotly", "cdn"]
    assert guard.run(app, bad) == guard.EXIT_BAD_INPUT
