"""Issue 19 through the CLI: EP-size refusal, the context warning, DeepEP low-latency
transports, error bars in --json, fixed costs in explain decode, and the new hardware."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from hwsim.cli import guard
from hwsim.cli.app import app
from hwsim.plan.moe_dispatch import bytes_per_token
from hwsim.spec.load import load_device

runner = CliRunner()
LL = ["moe", "--cluster", "h800-deepseek", "--tokens", "128", "--kernel", "low-latency"]


def _json(args: list[str]) -> dict:  # type: ignore[type-arg]
    res = runner.invoke(app, [*args, "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)  # type: ignore[no-any-return]


def test_moe_refuses_more_ranks_than_experts(capsys: pytest.CaptureFixture[str]) -> None:
    assert guard.run(app, ["moe", "--ep", "1000", "--experts", "256"]) == 2
    err = capsys.readouterr().err
    assert "--ep 1000" in err and "--redundant" in err
    # redundant copies make room for more ranks: 256 + 8 >= 264
    ok = runner.invoke(app, ["moe", "--ep", "264", "--experts", "256", "--redundant", "8",
                             "--tokens", "16", "--json"])  # fmt: skip
    assert ok.exit_code == 0, ok.output


def test_decode_warns_past_max_position() -> None:
    args = ["decode", "--model", "llama-3.1-8b", "--device", "h100-sxm", "--batch", "1"]
    res = runner.invoke(app, [*args, "--context", "100000000", "--json"])
    assert res.exit_code == 0, res.output
    assert "maximum position embeddings (131,072" in res.stderr
    assert "maximum position" in json.loads(res.stdout)["warnings"][0]
    fine = runner.invoke(app, [*args, "--context", "131072", "--json"])
    assert "warnings" not in json.loads(fine.stdout) and "warning" not in fine.stderr


@pytest.mark.parametrize("ep", [8, 16])
def test_low_latency_is_pure_rdma_by_default(ep: int) -> None:
    d = _json([*LL, "--ep", str(ep)])
    kinds = d["bytes_by_link_kind"]
    assert "nvlink" not in kinds and kinds["rdma"] > 0
    # every (token, expert) message except a rank's own crosses RDMA: the bytes are exact sums
    # of message sizes, so they agree to float rounding (1e-9)
    msg = bytes_per_token(7168, "fp8") + 16  # DeepEP's FP8 message: data, scales, 16 B header
    assert kinds["rdma"] == pytest.approx(kinds["pcie"], rel=1e-9)
    assert kinds["rdma"] % msg == pytest.approx(0.0, abs=1e-3 * msg)
    assert d["params"]["nvlink_intranode"] is False and d["args"]["ll_nvlink"] is False


def test_low_latency_nvlink_option() -> None:
    d = _json([*LL, "--ep", "8", "--ll-nvlink"])
    assert set(d["bytes_by_link_kind"]) == {"nvlink"}
    rdma = _json([*LL, "--ep", "8"])
    # one node: NVLink (160 GB/s) beats the single 50 GB/s NIC by more than 2x
    assert d["time_s"] < 0.5 * rdma["time_s"]
    assert guard.run(app, ["moe", "--ep", "8", "--ll-nvlink"]) == 2


def test_error_bars_in_json() -> None:
    base = ["attention", "--device", "h100-sxm", "--batch", "1", "--heads", "16", "--seqlen",
            "2048"]  # fmt: skip
    fa3 = _json([*base, "--kernel", "fa3"])
    fa2 = _json([*base, "--kernel", "fa2"])
    assert fa3["calibrated"] is True and fa3["expected_error_pct"] < 5
    assert fa2["calibrated"] is False and fa2["expected_error_pct"] > 20
    assert fa2["matrix_path"]["path"] == "mma_sync"
    g = _json(["gemm", "--device", "a100-sxm-80gb", "--m", "1024", "--n", "1024", "--k", "1024"])
    assert g["calibrated"] is True
    h = _json(["gemm", "--device", "h100-sxm", "--m", "1024", "--n", "1024", "--k", "1024"])
    assert h["calibrated"] is False and h["expected_error_pct"] > g["expected_error_pct"]
    step = _json(["decode", "--model", "llama-3.1-8b", "--device", "h100-sxm", "--batch", "1"])
    assert {"expected_error_pct", "calibrated"} <= set(step)
    text = runner.invoke(app, [*base, "--kernel", "fa2"]).stdout
    assert "±" in text


def test_explain_decode_shows_fixed_costs() -> None:
    res = runner.invoke(app, ["explain", "decode", "--model", "llama-3.1-8b", "--device",
                              "h100-sxm", "--batch", "1", "--context", "1024"])  # fmt: skip
    assert res.exit_code == 0, res.output
    text = " ".join(res.stdout.split())
    assert "Fixed costs that no batch size amortises" in text and "kernel gaps" in text
    assert "Expected error of this prediction" in text


def test_new_hardware() -> None:
    mi355 = load_device("mi355x")
    # CDNA 4: FP6 and FP4 at twice the FP8 rate (exact: both derived from one per-CU figure)
    # 1e-12: the YAML writes each rate in decimal TFLOP/s
    assert mi355.peak_flops("fp4") == mi355.peak_flops("fp6")
    assert mi355.peak_flops("fp4") == pytest.approx(2 * mi355.peak_flops("fp8"), rel=1e-12)
    gb = load_device("gb200")
    assert gb.peak_flops("fp4") == 2 * gb.peak_flops("fp8")
    assert load_device("mi325x").main_memory.capacity_bytes == 256e9
    assert load_device("b300").peak_flops("int8") < load_device("b200").peak_flops("int8")
    # EP72 inside one NVL72 NVLink domain never touches InfiniBand; nine DGX B200 nodes do
    nvl = _json(["moe", "--cluster", "gb200-nvl72", "--ep", "72", "--tokens", "64"])
    assert set(nvl["bytes_by_link_kind"]) == {"nvlink"} and nvl["nodes"] == 1
    ib = _json(["moe", "--cluster", "dgx-b200", "--ep", "72", "--tokens", "64"])
    assert ib["nodes"] == 9 and ib["bytes_by_link_kind"]["rdma"] > 0
    assert nvl["time_s"] < ib["time_s"]


def test_error_bars_reach_whatif_compare_and_the_pareto_chart() -> None:
    """Every step result carries its error bar: whatif's two sides, compare's rows, and the
    report's Pareto chart draws it (both axes scale with 1 / step time: same relative bar)."""
    from hwsim.report.serve_figures import pareto_figure
    from hwsim.serve.compare import compare

    w = _json(["whatif", "--device", "h100-sxm", "--set", "memory.hbm.bandwidth=x2", "--json",
               "--", "decode", "--model", "llama-3.1-8b"])  # fmt: skip
    assert w["baseline"]["expected_error_pct"] > 0 and "calibrated" in w["whatif"]
    cmp = compare("llama-3.1-8b", ["h100-sxm", "groq-lpu"], [1], context=1024)
    rows = cmp.to_dict()["rows"]
    assert all(r["expected_error_pct"] > 0 for r in rows)  # type: ignore[index]
    fig = pareto_figure(cmp)
    for trace in fig.data[: len(rows)]:
        pct = next(r for r in rows if r["device"] == trace.name)["expected_error_pct"]
        # the JSON rounds the percent to 0.01 point: a relative 1e-3 covers it at >= 10%
        assert trace.error_y.array[0] == pytest.approx(trace.y[0] * pct / 100, rel=1e-3)
        assert trace.error_x.array[0] == pytest.approx(trace.x[0] * pct / 100, rel=1e-3)
