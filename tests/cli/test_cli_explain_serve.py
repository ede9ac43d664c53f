"""``hwsim explain serve``: the winner of ``size --traffic`` and its what-ifs, each one a fresh
serving simulation (Llama-3.1-8B on one H100 at a light chat load: a few seconds)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from hwsim.cli.app import app

runner = CliRunner()
ARGS = ["explain", "serve", "--model", "llama-3.1-8b", "--device", "h100-sxm", "--traffic",
        "chat", "--qps", "4"]  # fmt: skip


def test_whatifs_are_resimulated_variants_of_the_winner() -> None:
    res = runner.invoke(app, [*ARGS, "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    win = d["winner"]
    assert win["meets_slo"] and win["devices"] >= 1
    titles = {w["whatif"]: w for w in d["whatifs"]}
    assert "one replica more" in titles
    # every what-if changes the deployment (a variant that equals the winner explains nothing)
    assert all(w["deployment"] != win["deployment"] for w in d["whatifs"])
    more = titles["one replica more"]
    assert more["replicas"] == win["replicas"] + 1
    assert more["devices"] == win["devices"] * (win["replicas"] + 1) // win["replicas"]
    # the same offered load on more devices: the served tokens/s are the load's (within the
    # simulation's 2% window noise), so the rental cost per token grows with the devices
    assert more["output_tokens_per_s"] == pytest.approx(
        win["output_tokens_per_s"], rel=0.02
    )
    assert more["usd_per_million_output_tokens"] > win["usd_per_million_output_tokens"]
    assert d["sentences"][0].startswith(win["deployment"])


def test_text_shows_the_table_and_one_line_per_whatif() -> None:
    res = runner.invoke(app, ARGS)
    assert res.exit_code == 0, res.output
    assert "what-ifs, each re-simulated" in res.stdout
    assert res.stdout.count("• ") >= 3
