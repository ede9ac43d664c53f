"""``hwsim whatif -- train`` and ``hwsim explain train``: the entry points issue 20 names, the
same engines as ``hwsim train --whatif`` / ``--explain`` (an 8-GPU Llama-3.1-8B step: ~1 s)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from hwsim.cli.app import app

runner = CliRunner()
STEP = ["--model", "llama-3.1-8b", "--cluster", "dgx-h100", "--gpus", "8", "--layout",
        "tp=2,dp=4", "--seqlen", "4096", "--global-batch", "32"]  # fmt: skip


def _json(argv: list[str]) -> dict:
    res = runner.invoke(app, argv)
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def test_whatif_train_equals_train_whatif() -> None:
    via_whatif = _json(["whatif", "--device", "h100-sxm", "--set", "memory.hbm.bandwidth=x2",
                        "--json", "--", "train", *STEP])  # fmt: skip
    via_train = _json(["train", *STEP, "--device", "h100-sxm", "--whatif",
                       "memory.hbm.bandwidth=x2", "--json"])  # fmt: skip
    assert via_whatif["deltas"] == via_train["deltas"]
    # more bandwidth never slows a step; this one has memory-bound parts, so it gains
    d = via_whatif["deltas"]["step_time_s"]
    assert d["whatif"] < d["baseline"]


def test_explain_train_has_three_resimulated_whatifs() -> None:
    d = _json(["explain", "train", *STEP, "--json"])
    assert len(d["whatifs"]) >= 3
    assert d["sentences"][0].startswith("what limits the step")


def test_bad_train_options_are_one_line() -> None:
    res = runner.invoke(app, ["explain", "train", "--model", "llama-3.1-8b", "--bogus", "1"])
    assert res.exit_code == 2 and "--bogus" in res.output
    res = runner.invoke(app, ["whatif", "--device", "h100-sxm", "--set", "x=1", "--", "train"])
    assert res.exit_code == 2 and "Missing option" in res.output
