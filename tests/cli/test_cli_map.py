"""``hwsim map`` lays models out on the three non-GPU kinds (JSON and --html), and a non-GPU
attention problem answers in the GPU attention result's JSON shape."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from hwsim.cli.app import app
from hwsim.plan.attention import AttentionShape
from hwsim.sim.spatial_attention import simulate_attention_spatial
from hwsim.spec.errors import SpecError
from hwsim.spec.load import load_device

runner = CliRunner()


@pytest.mark.parametrize(
    ("device", "extra", "kind"),
    [
        ("groq-lpu", ["--dtype", "fp8", "--kv-dtype", "fp8"], "lpu"),
        ("cerebras-wse3", [], "wafer_scale"),
        ("sambanova-sn40l", ["--layout", "tp=8"], "dataflow"),
    ],
)
def test_map_json_and_html(tmp_path, device, extra, kind) -> None:  # type: ignore[no-untyped-def]
    html = tmp_path / f"{device}.html"
    args = ["map", "--model", "llama-3.1-8b", "--device", device, *extra, "--json"]
    res = runner.invoke(app, [*args, "--html", str(html)])
    assert res.exit_code == 0, res.output
    d = json.loads(res.output)
    assert d["kind"] == kind and d["placement"]["kind"] == kind
    assert d["decode"]["time_per_token_s"] > 0 and d["decode"]["fits"]
    assert any("at least" in line for line in d["capacity"]["reasoning"])
    text = html.read_text()
    assert "<html" in text and "plotly" in text.lower()


def test_wafer_drawing_holds_what_the_timing_holds() -> None:
    """70B's first wafer: the drawn regions hold its 20 layers at the density the simulator
    times (within the last pieces' rounding, 1%), never above a core's SRAM, on nearly the
    whole wafer. The band packer used to waste band ends, then squeeze the drawing to 112% of
    each core's SRAM to make it fit."""
    res = runner.invoke(app, ["map", "--model", "llama-3.1-70b", "--device", "cerebras-wse3",
                              "--json"])  # fmt: skip
    assert res.exit_code == 0, res.output
    p = json.loads(res.output)["placement"]
    assert p["stage0_drawn_fill"] <= 1.0
    assert p["stage0_drawn_fill"] == pytest.approx(p["weight_fill"], rel=0.01)
    assert p["stage0_cores_used"] >= 0.95 * p["cores_per_wafer"]
    assert p["stage0_rectangles"] >= p["stage0_regions"] == 100  # 20 layers x 5 regions


def test_map_draws_a_gpu_with_the_default_placement(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Every kind can be mapped: a GPU (no placement of its own) gets the base mapper's, one
    layer's operators and one GPU's memory, whose numbers are the layout's own."""
    html = tmp_path / "gpu.html"
    args = ["map", "--model", "llama-3.1-8b", "--device", "h100-sxm", "--html", str(html)]
    res = runner.invoke(app, [*args, "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    where = data["placement"]
    assert where["kind"] == "gpu" and where["devices"] == data["devices"] == 1
    # one H100 holds the weights it is said to hold: 8.03 B params x 2 B (bf16), all on 1 GPU
    assert where["weights_per_device_bytes"] == data["decode"]["weight_bytes_per_device"]
    assert where["capacity_per_device_bytes"] == 80e9
    assert html.exists() and "time per operator" in html.read_text()


def test_spatial_attention_has_the_gpu_json_keys() -> None:
    s = AttentionShape(1, 16, 16, 4096, 4096, 128, dtype="fp16")
    keys = {
        "device",
        "kernel",
        "profile",
        "detail",
        "shape",
        "time_s",
        "tflops",
        "flash_flops",
        "flops",
        "exp_ops",
        "bytes",
        "utilization",
        "bound",
        "roofline_time_s",
        "events",
        "wall_s",
        "kernels",
        "plan",
        "notes",
    }
    for name in ("cerebras-wse3", "groq-lpu", "sambanova-sn40l"):
        r = simulate_attention_spatial(load_device(name), s)
        d = r.to_dict()
        assert set(d) == keys
        # the time never beats the device's roofline (1e-9: float rounding)
        assert r.time_s >= r.roofline_time_s * (1 - 1e-9)
        assert 0 < r.utilization["compute"] <= 1
    with pytest.raises(SpecError, match="forward pass only"):
        simulate_attention_spatial(load_device("groq-lpu"), s.with_pass("bwd"))
