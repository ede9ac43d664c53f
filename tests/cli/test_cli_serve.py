"""``hwsim decode/prefill/size/compare/whatif/capacity`` through the typer app (in-process)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hwsim.cli.app import app
from hwsim.report.browser_check import check_page, find_chromium

runner = CliRunner()


def _json(args: list[str]) -> dict:  # type: ignore[type-arg]
    res = runner.invoke(app, [*args, "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)  # type: ignore[no-any-return]


def test_decode_json_contract() -> None:
    d = _json(
        ["decode", "--model", "llama-3.1-8b", "--device", "h100-sxm", "--batch", "1",
         "--context", "1024", "--layout", "tp=1"]
    )  # fmt: skip
    for key in (
        "tokens_per_s_per_user",
        "tokens_per_s_total",
        "time_per_token_s",
        "devices",
        "memory_per_device_bytes",
        "breakdown",
        "bound",
    ):
        assert key in d, key
    assert d["devices"] == 1 and d["bound"] == "hbm"
    assert {"attention", "ffn", "lm_head"} <= set(d["breakdown"])
    # per-user and total agree at batch 1 (same number, 1e-12)
    assert (
        abs(d["tokens_per_s_total"] - d["tokens_per_s_per_user"]) <= 1e-12 * d["tokens_per_s_total"]
    )


def test_decode_auto_devices_and_table() -> None:
    res = runner.invoke(
        app, ["decode", "--model", "llama-3.1-70b", "--device", "h100-sxm", "--devices", "auto"]
    )
    assert res.exit_code == 0, res.output
    # auto keeps the fastest of 2 (capacity floor), 4 and 8 (one node) H100s: TP8
    assert "tokens/s per user" in res.output and "8 × h100-sxm" in res.output


def test_prefill_json_contract() -> None:
    d = _json(
        ["prefill", "--model", "llama-3.1-8b", "--device", "h100-sxm", "--batch", "2",
         "--context", "512", "--devices", "1"]
    )  # fmt: skip
    assert d["ttft_s"] > 0 and d["tokens_per_s"] > 0
    assert abs(d["tokens_per_s"] * d["ttft_s"] - 1024) < 1e-6  # 2 prompts × 512 tokens


def test_size_finds_a_cluster() -> None:
    d = _json(
        ["size", "--model", "llama-3.1-8b", "--device", "h100-sxm", "--tokens-per-s-per-user",
         "50", "--total-tokens-per-s", "2000", "--context", "1024", "--max-devices-per-instance",
         "1"]
    )  # fmt: skip
    best = d["by_devices"]
    assert best is not None and best["tokens_per_s_per_user"] >= 50
    assert best["tokens_per_s_total"] >= 2000
    assert d["by_price"] is not None  # the H100 spec has a price


def test_compare_and_html(tmp_path: Path) -> None:
    out = tmp_path / "cmp.html"
    d = _json(
        ["compare", "--model", "llama-3.1-8b", "--devices", "h100-sxm,h200", "--batch", "1,8",
         "--context", "512", "--html", str(out)]
    )  # fmt: skip
    assert len(d["rows"]) == 4 and any(r["pareto"] for r in d["rows"])
    assert out.exists() and "plotly" in out.read_text(encoding="utf-8")[:200000].lower()


def test_whatif_doubles_bandwidth() -> None:
    d = _json(
        ["whatif", "--device", "h100-sxm", "--set", "memory.hbm.bandwidth=x2", "--", "decode",
         "--model", "llama-3.1-8b", "--layout", "tp=1", "--context", "512"]
    )  # fmt: skip
    assert d["changed"]["memory.hbm.bandwidth"]["after"] == 2 * 3.35e12
    # a weight-streaming step gets faster, but by less than 2x (fixed latencies remain)
    change = d["deltas"]["time_per_token_s"]["change"]
    assert -0.5 <= change < -0.2


def test_whatif_relayout_shows_fewer_devices_with_more_memory() -> None:
    """Twice the SRAM per wafer: with the baseline's layout nothing changes for 70B on four
    wafers; replanned, it fits two, and each token crosses twice the layers per wafer."""
    argv = ["whatif", "--device", "cerebras-wse3", "--set", "memory.sram.capacity=x2"]
    step = ["--", "decode", "--model", "llama-3.1-70b"]
    same = _json([*argv, *step])
    assert same["deltas"]["devices"]["change"] == 0.0
    assert same["deltas"]["time_per_token_s"]["change"] == 0.0  # same cores, same regions
    new = _json([*argv, "--relayout", *step])
    assert new["deltas"]["devices"]["baseline"] == 4 and new["deltas"]["devices"]["whatif"] == 2
    assert new["deltas"]["time_per_token_s"]["change"] > 0.5  # half the cores per token


def test_whatif_profile_parameters_of_a_spatial_kind() -> None:
    """A mapper parameter that is not a datasheet value is a what-if lever too: Groq with half
    the fitted per-operator latency. The step is latency-bound, so it gets much faster but by
    less than 2x (streams and all-reduces stay)."""
    d = _json(
        ["whatif", "--device", "groq-lpu", "--set", "profile.op_latency=x0.5", "--", "decode",
         "--model", "llama-3.1-8b", "--dtype", "fp8", "--kv-dtype", "fp8"]
    )  # fmt: skip
    assert d["changed"]["profile.op_latency"] == {"before": 3.5e-6, "after": 1.75e-6}
    change = d["deltas"]["time_per_token_s"]["change"]
    assert -0.5 < change < -0.25
    res = runner.invoke(
        app, ["whatif", "--device", "h100-sxm", "--set", "profile.op_latency=x0.5", "--",
              "decode", "--model", "llama-3.1-8b"],
    )  # fmt: skip
    assert res.exit_code != 0
    assert "paths change the parameters of the dataflow, lpu and wafer_scale mappers" in str(
        res.exception
    )


def test_capacity_reasoning() -> None:
    d = _json(["capacity", "--model", "llama-3.1-70b", "--device", "h100-sxm"])
    assert d["lower_bound_devices"] == 2 and d["devices"] == 2
    assert any("141.1 GB" in line for line in d["reasoning"])


def test_bad_input_is_one_line_error() -> None:
    res = runner.invoke(
        app, ["decode", "--model", "llama-3.1-8b", "--device", "h100-sxm", "--layout", "tp=3"]
    )
    assert res.exit_code != 0
    assert "heads" in str(res.exception) or "heads" in res.output


@pytest.mark.skipif(find_chromium() is None, reason="Chromium not installed (manual check)")
def test_serve_sections_open_in_chromium(tmp_path: Path) -> None:
    # a page of the report's serving sections renders in headless Chromium without JS errors
    from hwsim.report.page import Section, write_page
    from hwsim.report.serve_figures import compare_sections, timeline_figure
    from hwsim.serve.api import serve_step
    from hwsim.serve.compare import compare
    from hwsim.serve.request import StepRequest

    cmp = compare("llama-3.1-8b", ["h100-sxm", "h200"], [1, 8], context=512)
    step = serve_step(StepRequest("llama-3.1-8b", "h100-sxm", batch=8, context=512, layout="tp=2"))
    sections = [*compare_sections(cmp), Section("timeline", "spans", timeline_figure(step))]
    page = write_page(tmp_path / "p.html", "t", "i", sections)
    r = check_page(page)
    assert r.figures == 3 and r.ok, r


def test_over_long_trace_row_is_clipped_not_sized_for(tmp_path: Path) -> None:
    """A trace row past the model's context is clipped (with a warning) after the replica is
    sized from the clipped mean: it once asked for hundreds of GPUs and failed instead."""
    trace = tmp_path / "long.csv"
    trace.write_text("arrival_s,prompt_tokens,output_tokens\n0.0,900000,10\n0.1,100,10\n")
    res = runner.invoke(app, ["serve", "--model", "llama-3.1-8b", "--device", "h100-sxm",
                              "--traffic", str(trace), "--json"])  # fmt: skip
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    # sized for the clipped rows (~65k tokens on average, a full batch of them: 32 GPUs), not
    # for the 900k-token row (no layout of 378..1576 GPUs fitted that)
    assert d["completed"] == 2 and d["devices"] <= 64, d["layout"]
