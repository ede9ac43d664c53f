"""``hwsim train`` from the command line: the JSON the issue names, the Perfetto trace and the
timeline page, what-ifs, and every bad input of issue 20 refused in one line with exit 2."""

from __future__ import annotations

import json
import shlex

import pytest
from typer.testing import CliRunner

from hwsim.cli import guard
from hwsim.cli.app import app

runner = CliRunner()
BASE = ("train --model llama-3.1-8b --cluster dgx-h100 --gpus 16 --seqlen 4096 "
        "--global-batch 32 --layout tp=2,pp=2,dp=4")  # fmt: skip


def test_json_keys_and_views(tmp_path) -> None:  # type: ignore[no-untyped-def]
    trace, page = tmp_path / "t.json", tmp_path / "t.html"
    res = runner.invoke(app, [*shlex.split(BASE), "--json", "--tokens", "1T", "--price", "2.5",
                              "--trace", str(trace), "--html", str(page)])  # fmt: skip
    assert res.exit_code == 0, res.output
    d = json.loads(res.output[res.output.index("{") :])
    for k in ("step_time_s", "tokens_per_s_per_gpu", "model_tflops_per_gpu", "mfu",
              "memory_per_gpu_bytes", "bubble_fraction", "breakdown",
              "gpu_hours_per_trillion_tokens", "layout", "wall_s"):  # fmt: skip
        assert k in d
    # 1T tokens: GPU-hours are the per-trillion figure, cost at 2.5 USD per GPU-hour
    assert d["gpu_hours"] == pytest.approx(d["gpu_hours_per_trillion_tokens"], rel=1e-12)
    assert d["cost_usd"] == pytest.approx(2.5 * d["gpu_hours"], rel=1e-12)
    events = json.loads(trace.read_text())["traceEvents"]
    ranks = {e["tid"] for e in events if e.get("ph") == "X" and e["pid"] == 1}
    assert ranks == {0, 1}
    assert any(e.get("cat") == "p2p" for e in events)
    assert "plotly" in page.read_text().lower()


def test_whatif_faster_network() -> None:
    res = runner.invoke(app, [*shlex.split(BASE), "--whatif", "cluster.nics.bandwidth=x2",
                              "--whatif", "schedule=zb", "--json"])  # fmt: skip
    assert res.exit_code == 0, res.output
    d = json.loads(res.output)
    assert d["deltas"]["step_time_s"]["change"] < 0
    assert d["whatif"]["schedule"] == "zb"


BAD = [
    # layout product is not the GPU count
    ("--layout tp=2,pp=2,dp=2", "tp·cp·pp·dp = 2·1·2·2 = 8, expected the 16 GPUs of --gpus"),
    # TP that does not divide the heads (32 heads)
    ("--gpus 12 --layout tp=3,pp=1,dp=4", "tp=3 does not divide the 32 attention heads"),
    # a global batch that is not a multiple of dp × micro-batch
    ("--global-batch 30", "global batch 30 is not a multiple of dp × micro-batch = 4 × 1 = 4"),
    ("--micro-batch 3", "global batch 32 is not a multiple of dp × micro-batch = 4 × 3 = 12"),
    ("--recompute some", "--recompute: expected one of none, selective, full"),
    ("--zero 4", "--zero: expected 0, 1, 2 or 3"),
    ("--schedule pipedream", "--schedule: expected one of gpipe, 1f1b, interleaved, zb, dualpipe"),
    ("--routing zipf:-1", "--routing must be deepep, uniform or zipf:S"),
    ("--layout tp=2,pp=2,dp=4,ep=2", "ep=2: Llama-3.1-8B has no experts"),
    # bounded work: 10^8 micro-batches per pipeline are refused before anything is played
    ("--global-batch 400000000", "--max-events raises it"),
]  # fmt: skip


def _run(argv: list[str]) -> tuple[int, str]:
    """Exit code and stderr of ``hwsim ARGV`` run in-process through the CLI guard."""
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = guard.run(app, argv)
    return code, err.getvalue()


@pytest.mark.parametrize(("extra", "expected"), BAD)
def test_bad_input_is_one_line_and_exit_2(extra: str, expected: str | None) -> None:
    code, err = _run([*shlex.split(BASE), *shlex.split(extra)])
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    if expected is not None:
        assert expected in lines[0]


def test_pp_not_dividing_layers_says_how_to_split() -> None:
    code, err = _run([*shlex.split(BASE), "--gpus", "12", "--layout", "tp=1,pp=12,dp=1",
                      "--global-batch", "12"])  # fmt: skip
    assert code == 2 and "pp=12 does not divide the 32 layers" in err
    assert "--pp-split balanced" in err


def test_layout_that_does_not_fit_shows_the_arithmetic() -> None:
    code, err = _run(
        shlex.split(
            "train --model llama-3.1-70b --cluster dgx-h100 --gpus 8 "
            "--seqlen 4096 --global-batch 8 --layout tp=8,pp=1,dp=1"
        )
    )
    assert code == 2
    line = err.strip()
    assert line.count("\n") == 0
    for part in ("does not fit", "params", "grads", "optimizer", "activations", "> 80 GB"):
        assert part in line, line


def test_ep_not_dividing_experts() -> None:
    code, err = _run(
        shlex.split(
            "train --model qwen3-30b-a3b --cluster dgx-h100 --gpus 24 "
            "--seqlen 2048 --global-batch 24 --layout tp=1,pp=1,dp=24,ep=3"
        )
    )
    assert code == 2 and "ep=3 does not divide the 128 experts of Qwen3-30B-A3B" in err


def test_explain_gives_three_resimulated_whatifs() -> None:
    res = runner.invoke(app, [*shlex.split(BASE), "--explain", "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.output)
    assert len(d["whatifs"]) >= 3
    assert d["sentences"][0].startswith("what limits the step")
    for w in d["whatifs"]:  # each one a simulated step, not a guess
        assert w["whatif"]["step_time_s"] > 0 and w["changes"]
