"""``hwsim sweep`` and ``hwsim plot`` through the typer app, and the dask executor on a
LocalCluster over loopback against the local process pool."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from hwsim.cli.app import app
from hwsim.report.sweep_io import read_table

runner = CliRunner()


def _sweep(tmp_path: Path, *args: str) -> dict[str, Any]:
    res = runner.invoke(app, ["sweep", *args, "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def test_sweep_writes_table_and_reruns_from_cache(tmp_path: Path) -> None:
    out = tmp_path / "ci.parquet"
    first = _sweep(tmp_path, "ci-small", "--out", str(out))
    s = first["stats"]
    assert s["points"] == 20 and s["dropped_by_constraints"] == 4
    assert s["cache_hits"] == 0 and s["computed"] == s["units"] == 40
    assert "fa_decode.time_s" in first["metrics"] and "memory.hbm.bandwidth" in first["inputs"]
    assert first["sensitivity"] and first["sensitivity"][0]["metric"] == "fa_decode.time_s"
    again = _sweep(tmp_path, "ci-small", "--out", str(out))
    assert again["stats"]["hit_rate"] == 1.0 and again["stats"]["computed"] == 0
    cols, meta = read_table(out)
    assert meta["name"] == "ci-small" and meta["stats"]["hit_rate"] == 1.0
    assert len(cols["fa_decode.time_s"]) == 20


def test_sweep_csv_and_no_cache(tmp_path: Path) -> None:
    out = tmp_path / "ci.csv"
    data = _sweep(tmp_path, "workloads/sweeps/ci-small.yaml", "--out", str(out), "--no-cache")
    assert data["cache"] is None and data["stats"]["cache_hits"] == 0
    cols, meta = read_table(out)
    assert meta["inputs"][0] == "device" and cols["fa_decode.bound"].dtype == object


def test_list_kinds() -> None:
    res = runner.invoke(app, ["sweep", "x", "--list-kinds", "--json"])
    assert res.exit_code == 0, res.output
    names = {k["name"] for k in json.loads(res.stdout)}
    assert {
        "fa_decode",
        "attention",
        "gemm",
        "decode_roofline",
        "attention_sim",
        "gemm_sim",
    } <= names


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["ci-small", "--executor", "mpi"], "unknown executor 'mpi'"),
        (["ci-small", "--scheduler", "tcp://x:1"], "--scheduler needs --executor dask"),
        (["ci-small", "--workers", "0"], "--workers must be at least 1"),
        (["ci-smal"], "did you mean 'ci-small'"),
        (["ci-small", "--out", "x.txt"], "expected a .parquet or .csv"),
    ],
)
def test_sweep_bad_options(tmp_path: Path, args: list[str], match: str) -> None:
    args = [a.replace("x.txt", str(tmp_path / "x.txt")) for a in args]
    if "--out" not in args:
        args += ["--out", str(tmp_path / "o.parquet")]
    res = runner.invoke(app, ["sweep", *args])
    assert res.exit_code != 0
    assert match in str(res.exception) + res.output


def test_plot_page_pareto_and_sensitivity(tmp_path: Path) -> None:
    out = tmp_path / "ci.parquet"
    _sweep(tmp_path, "ci-small", "--out", str(out))
    html = tmp_path / "fig.html"
    res = runner.invoke(app, ["plot", str(out), "--x", "tokens_per_s_per_device", "--y",
                              "decode_roofline.tokens_per_s_total", "--color", "fa_decode.bound",
                              "--html", str(html), "--json"])  # fmt: skip
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["x"] == "decode_roofline.tokens_per_s_per_device"  # resolved from its suffix
    assert data["pareto"] and data["pareto_points"] == len(data["pareto"])
    assert data["heatmap"]["z"] == "fa_decode.bound"
    sens = {e["input"]: e["elasticity"] for e in data["sensitivity"]}
    # decode at these batches is HBM-bound: throughput scales with HBM bandwidth (float fit)
    assert sens["memory.hbm.bandwidth"] == pytest.approx(1.0, abs=1e-6)
    text = html.read_text()
    assert "Pareto front" in text and "Parallel coordinates" in text and "Heatmap" in text


def test_plot_bad_column(tmp_path: Path) -> None:
    out = tmp_path / "ci.parquet"
    _sweep(tmp_path, "ci-small", "--out", str(out))
    res = runner.invoke(app, ["plot", str(out), "--y", "tokens_per_s_totl"])
    assert res.exit_code != 0
    assert "did you mean 'decode_roofline.tokens_per_s_total'" in str(res.exception)


DASK_SWEEP = {
    "name": "dask-vs-local",
    "base": {"device": "h100-sxm", "model": "llama-3.1-8b"},
    "workload": {"n": 4096, "k": 4096},
    "axes": {
        "spec": {"memory.hbm.bandwidth": ["3.35 TB/s", "x2"]},
        "workload": {"batch": [1, 8, 64], "context": [1024, 8192], "m": [16, 128]},
    },
    "metrics": [{"kind": "fa_decode"}, {"kind": "gemm"}, {"kind": "gemm_sim"}],
    "sampling": {"method": "grid"},
}


def test_dask_localcluster_equals_local_pool(tmp_path: Path) -> None:
    """The same sweep on a dask LocalCluster (2 worker processes over tcp://127.0.0.1) and on
    the local process pool gives bit-identical tables; both split the work into several tasks."""
    pytest.importorskip("distributed")
    sweep = tmp_path / "s.yaml"
    sweep.write_text(yaml.safe_dump(DASK_SWEEP))
    common = [str(sweep), "--no-cache", "--chunk-size", "3", "--workers", "2"]
    local = _sweep(tmp_path, *common, "--out", str(tmp_path / "local.parquet"))
    t0 = time.perf_counter()
    dask = _sweep(tmp_path, *common, "--executor", "dask", "--out", str(tmp_path / "dask.parquet"))
    wall = time.perf_counter() - t0
    assert dask["stats"]["executor"].startswith("dask LocalCluster at tcp://127.0.0.1:")
    assert dask["stats"]["workers"] == 2
    assert all(k["tasks"] > 1 for k in dask["stats"]["kinds"])  # really distributed
    # fa_decode ignores m; the GEMMs ignore batch and context: 2 devices x 2 m = 4 units
    assert [k["units"] for k in dask["stats"]["kinds"]] == [12, 4, 4]
    a, _ = read_table(tmp_path / "local.parquet")
    b, _ = read_table(tmp_path / "dask.parquet")
    assert list(a) == list(b)
    for name in a:
        assert np.array_equal(a[name], b[name]), name  # exact: same code, same inputs
    assert local["stats"]["points"] == dask["stats"]["points"] == 24
    assert wall < 60  # LocalCluster start-up on a loaded 2-core machine; typically ~10 s
