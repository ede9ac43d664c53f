"""Every page's "copy as command" box runs through the CLI (in-process, typer's CliRunner on
``hwsim.cli.app.app``) and gives the page's numbers: the baseline and the what-if, whose YAML
is saved where the box says."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from hwsim.app import commands
from hwsim.app.compute import attention_view, moe_view, roofline_view, serving_view, step_view
from hwsim.app.params import (
    AttentionParams,
    DeviceParams,
    MoeParams,
    ServingParams,
    StepParams,
    WhatIf,
)
from hwsim.app.specs import spec_yaml, whatif_cluster, whatif_device, whatif_filename
from hwsim.cli.app import app

runner = CliRunner()
HBM_X2 = WhatIf(True, ("memory.hbm.bandwidth=x2",))
#: the next InfiniBand generation: NIC, switch links and PCIe host link together
IB_X2 = ("nics.bandwidth=x2", "network.link_bandwidth=x2", "nics.host_link.bandwidth=x2")


def _run(args: list[str]) -> dict[str, Any]:
    res = runner.invoke(app, [*args, "--json"])
    assert res.exit_code == 0, res.output
    out: dict[str, Any] = json.loads(res.stdout)
    return out


def _save_whatif(text: str, name: str, folder: Path) -> None:
    """What the user does when the box says 'save ... as NAME'."""
    (folder / name).write_text(text, encoding="utf-8")


@pytest.fixture
def cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_roofline_command_reproduces_both_rooflines(cwd: Path) -> None:
    p = DeviceParams("h100-sxm", "bf16", ("gemm-512", "attn-decode"), HBM_X2)
    view = roofline_view(p, cwd / "app")
    box = commands.roofline_command(p)
    assert box.splitlines()[0].startswith("# what-if: save")
    _save_whatif(
        spec_yaml(whatif_device(p.device, list(HBM_X2.overrides))), "h100-sxm-whatif.yaml", cwd
    )
    (args,) = commands.command_lines(box)
    got = _run(args)["results"]
    want = [*view.baseline, *view.whatif]
    assert [(r["kernel"], r["bound"]) for r in got] == [(r.kernel, r.bound) for r in want]
    for g, w in zip(got, want, strict=True):
        assert g["time_s"] == pytest.approx(w.time_s, rel=1e-12)
        assert g["attainable_flops"] == pytest.approx(w.attainable_flops, rel=1e-12)
    # doubling HBM bandwidth halves the time of the HBM-bound decode attention
    assert view.whatif[1].time_s == pytest.approx(view.baseline[1].time_s / 2, rel=1e-9)


def test_decode_and_whatif_commands_reproduce_the_step() -> None:
    p = StepParams("llama-3.1-8b", "h100-sxm", "decode", "tp=1", 4, 1024)
    view = step_view(p)
    (args,) = commands.command_lines(commands.step_command(p))
    assert args[:3] == ["decode", "--model", "llama-3.1-8b"]
    d = _run(args)
    assert d["time_per_token_s"] == pytest.approx(view.baseline.time_per_token_s, rel=1e-12)
    assert d["bound"] == view.baseline.bound
    pw = StepParams("llama-3.1-8b", "h100-sxm", "decode", "tp=1", 4, 1024, whatif=HBM_X2)
    wview = step_view(pw)
    (wargs,) = commands.command_lines(commands.step_command(pw))
    assert wargs[:5] == ["whatif", "--device", "h100-sxm", "--set", "memory.hbm.bandwidth=x2"]
    w = _run(wargs)
    for name, delta in w["deltas"].items():
        assert delta["whatif"] == pytest.approx(wview.deltas[name]["whatif"], rel=1e-12), name
    assert wview.capacity and "h100-sxm" in wview.capacity_answer


def test_attention_commands_reproduce_kernels_and_whatif(cwd: Path) -> None:
    p = AttentionParams("h100-sxm", 1, 8, 8, 1024, 128, True, "fp16", "fa3", "fwd",
                        WhatIf(True, ("memory.smem.capacity=x2",)))  # fmt: skip
    view = attention_view(p, cwd / "app")
    _save_whatif(
        spec_yaml(whatif_device(p.device, list(p.whatif.overrides))), whatif_filename(p.device), cwd
    )
    runs = [_run(a) for a in commands.command_lines(commands.attention_command(p, "fa2"))]
    assert [r["kernel"] for r in runs] == ["fa3", "fa2", "fa3"]
    for r, v in zip(runs, (view.baseline, view.compare, view.whatif), strict=True):
        assert r["time_s"] == pytest.approx(v.time_s, rel=1e-12)
        assert r["bound"] == v.bound
    assert len(view.figures) == 4


@pytest.mark.slow
def test_serve_command_reproduces_the_run(cwd: Path) -> None:
    p = ServingParams("llama-3.1-8b", "h100-sxm", "tp=1", "sharegpt", 2.0, 40, 0, HBM_X2)
    view = serving_view(p, cwd / "app", lambda _msg: None)
    _save_whatif(
        spec_yaml(whatif_device(p.device, list(HBM_X2.overrides))), whatif_filename(p.device), cwd
    )
    runs = [_run(a) for a in commands.command_lines(commands.serve_command(p))]
    for r, v in zip(runs, (view.baseline, view.whatif), strict=True):
        assert r["output_tokens_per_s"] == pytest.approx(v.metrics.output_tokens_per_s, rel=1e-9)
        assert r["ttft_s"]["p50"] == pytest.approx(v.metrics.ttft_s.p50, rel=1e-9)
    assert [q for q, _ in view.curve] == [0.5, 1.0, 2.0, 3.0, 4.0]


def test_moe_command_reproduces_the_run(cwd: Path) -> None:
    p = MoeParams("h800-deepseek", 16, 256, 7168, 256, 8, 4, "dispatch", "normal", "deepep",
                  WhatIf(True, IB_X2))  # fmt: skip
    view = moe_view(p, cwd / "app")
    _save_whatif(spec_yaml(whatif_cluster(p.cluster, list(IB_X2))), whatif_filename(p.cluster), cwd)
    runs = [_run(a) for a in commands.command_lines(commands.moe_command(p))]
    for r, v in zip(runs, (view.baseline, view.whatif), strict=True):
        assert r["time_s"] == pytest.approx(v.time_s, rel=1e-12)
    assert view.whatif.time_s < view.baseline.time_s  # a faster InfiniBand path, a faster dispatch


def test_command_lines_skip_comments_and_the_program_name() -> None:
    text = "# a note\nhwsim decode --model 'my model' --device x\n"
    assert commands.command_lines(text) == [["decode", "--model", "my model", "--device", "x"]]
