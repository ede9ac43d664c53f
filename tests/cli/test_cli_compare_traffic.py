"""``hwsim compare --traffic`` and ``hwsim size --traffic`` through the CLI: the JSON rows other
tools read, the same answer from a local process and a dask LocalCluster, and tables that fit
80 columns."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from hwsim.cli.app import app

runner = CliRunner()
#: One small model, one device, the offline class (one simulation per search): seconds.
ARGS = ["compare", "--model", "llama-3.1-8b", "--traffic", "batch", "--devices", "h100-sxm"]


def _rows(*extra: str) -> list[dict[str, object]]:
    res = runner.invoke(app, [*ARGS, "--json", *extra])
    assert res.exit_code == 0, res.output
    return list(json.loads(res.stdout))


def test_compare_rows_carry_the_documented_keys_and_dask_gives_the_same_answer() -> None:
    pytest.importorskip("distributed")
    local = _rows("--workers", "1")
    dask = _rows("--executor", "dask", "--workers", "1")
    (row,) = local
    for key in ("class", "device", "devices", "replicas", "layout", "meets_slo",
                "usd_per_million_output_tokens", "joules_per_output_token",
                "binding_constraint"):  # fmt: skip
        assert key in row, key
    assert row["class"] == "batch" and row["meets_slo"] is True
    drop = ("wall_s",)
    assert [{k: v for k, v in r.items() if k not in drop} for r in dask] == [
        {k: v for k, v in r.items() if k not in drop} for r in local
    ]


def test_compare_table_fits_80_columns() -> None:
    res = runner.invoke(app, ARGS, env={"COLUMNS": "80"}, terminal_width=80)
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert lines and max(len(line) for line in lines) <= 80
    assert "…" not in res.stdout  # no cell cut short
    assert "h100-sxm" in res.stdout and "$/Mtok" in res.stdout
