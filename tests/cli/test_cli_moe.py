"""``hwsim moe`` and ``hwsim topology`` through the typer app (in-process)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hwsim.cli import guard
from hwsim.cli.app import app

runner = CliRunner()
BASE = [
    "moe",
    "--cluster",
    "h800-deepseek",
    "--ep",
    "16",
    "--tokens",
    "256",
    "--hidden",
    "7168",
    "--experts",
    "256",
    "--topk",
    "8",
    "--topk-groups",
    "4",
]


def test_moe_json_contract(tmp_path: Path) -> None:
    trace = tmp_path / "out" / "moe.trace.json"
    html = tmp_path / "out" / "moe.html"
    res = runner.invoke(
        app,
        [
            *BASE,
            "--phase",
            "dispatch",
            "--dtype",
            "fp8",
            "--kernel",
            "normal",
            "--routing",
            "deepep",
            "--seed",
            "0",
            "--trace",
            str(trace),
            "--html",
            str(html),
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    for key in (
        "time_s",
        "rdma_gbps",
        "nvlink_gbps",
        "bytes_by_link_kind",
        "max_link_utilization",
        "imbalance",
        "events",
        "wall_s",
    ):
        assert key in d, key
    assert {"rdma", "nvlink"} <= set(d["bytes_by_link_kind"])
    assert 0 < d["max_link_utilization"] <= 1.0 + 1e-9
    # DeepEP's metric: (token, node) pairs incl. own node x 7168·(1+4/128) B / time; the mean
    # over ranks of per-rank values, each rank between the min and max rank time
    assert 10 < d["rdma_gbps"] < 60
    ev = json.loads(trace.read_text())["traceEvents"]
    assert any(e.get("ph") == "X" for e in ev)
    assert "plotly" in html.read_text()[:10_000_000].lower()


@pytest.mark.parametrize("kernel", ["low-latency", "nccl"])
def test_other_kernels_and_combine(kernel: str) -> None:
    res = runner.invoke(
        app, [*BASE, "--phase", "combine", "--kernel", kernel, "--routing", "zipf:1.2", "--json"]
    )
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert d["dtype"] == "bf16" and d["kernel"] == kernel and d["time_s"] > 0


def test_moe_table_output() -> None:
    res = runner.invoke(app, [*BASE, "--kernel", "normal"])
    assert res.exit_code == 0, res.output
    assert "RDMA GB/s" in res.stdout and "max link utilisation" in res.stdout


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--phase", "both"], "phase must be one of"),
        (["--kernel", "deepep"], "kernel must be one of"),
        (["--routing", "zipf:x"], "--routing must be"),
        (["--ep", "12"], "not a multiple"),
        (["--nodes", "1"], "needs at least 2 node"),
        (["--cluster", "h800-deepsek"], "did you mean 'h800-deepseek'"),
    ],
)
def test_bad_input_is_one_line_exit_2(
    extra: list[str], words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert guard.run(app, [*BASE, *extra]) == 2
    err = capsys.readouterr().err
    assert words in err and err.strip().count("\n") == 0


def test_topology_html_with_link_loads(tmp_path: Path) -> None:
    html = tmp_path / "topo.html"
    res = runner.invoke(
        app,
        [
            "topology",
            "h800-deepseek",
            "--nodes",
            "2",
            "--tokens",
            "128",
            "--html",
            str(html),
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert d["devices"] == 16 and d["weakly_connected"]
    assert d["run"]["max_link_utilization"] > 0
    text = html.read_text()
    assert "utilisation" in text and "plotly" in text.lower()


def test_topology_table_without_load() -> None:
    res = runner.invoke(app, ["topology", "groq-rack", "--nodes", "2", "--no-load"])
    assert res.exit_code == 0, res.output
    assert "c2c" in res.stdout


def test_moe_overlap_reports_exposed_and_hidden() -> None:
    res = runner.invoke(app, [*BASE, "--overlap", "--attn-us", "50", "--json"])
    assert res.exit_code == 0, res.output
    ov = json.loads(res.stdout)["overlap"]
    # exposed + hidden = all communication time; overlap never beats the compute alone
    assert ov["exposed_comm_s"] + ov["hidden_comm_s"] == pytest.approx(ov["comm_s"], rel=1e-9)
    assert ov["compute_s"] <= ov["total_s"] <= ov["serial_s"]


def test_saved_json_rebuilds_the_run_in_explain(tmp_path: Path) -> None:
    # every non-default input must survive the round trip moe --json -> explain --from
    argv = ["moe", "--cluster", "h800-deepseek", "--ep", "16", "--tokens", "64", "--hidden",
            "4096", "--experts", "128", "--topk", "6", "--topk-groups", "2", "--phase",
            "combine", "--routing", "zipf:1.2", "--seed", "3", "--json"]  # fmt: skip
    res = runner.invoke(app, argv)
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert (d["experts"], d["topk"], d["topk_groups"]) == (128, 6, 2)
    saved = tmp_path / "moe.json"
    saved.write_text(res.stdout)
    out = runner.invoke(app, ["explain", "--from", str(saved), "--json"])
    assert out.exit_code == 0, out.output
    e = json.loads(out.stdout)
    assert e["explain"] == "moe"
    want = {"cluster": "h800-deepseek", "ep": 16, "tokens": 64, "hidden": 4096, "experts": 128,
            "topk": 6, "topk_groups": 2, "phase": "combine", "dtype": "bf16",
            "kernel": "normal", "routing": "zipf:1.2", "seed": 3}  # fmt: skip
    assert {k: e["params"][k] for k in want} == want
    # same deterministic simulation: the same float (exact through JSON's repr)
    assert e["time_s"] == d["time_s"]
