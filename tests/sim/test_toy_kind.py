"""A new device kind from the test folder alone: a YAML with ``kind: toy`` and a mapper that
overrides one hook, registered here. ``hwsim decode``, ``hwsim map`` and the report's mapping
section run on it with no package file edited (the mapper interface carries everything)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hwsim.cli.app import app
from hwsim.plan.workload import Gemm, OpTiming
from hwsim.report.mapping_figures import mapping_sections
from hwsim.serve.mapping import map_model
from hwsim.serve.request import StepRequest
from hwsim.sim.mapper import Mapper, mapper_for, override, register_mapper
from hwsim.spec.load import load_device

TOY = Path(__file__).parents[1] / "fixtures" / "toy_kind" / "toy-chip.yaml"
#: The toy's fixed cost per GEMM (a made-up dispatch), seconds.
DISPATCH_S = 2e-6


class ToyMapper(Mapper):
    """GEMMs stream their weights from HBM at full bandwidth, plus a fixed dispatch; every
    other op keeps the base mapper's default (the roofline)."""

    unit = "toy"

    @override
    def gemm(self, op: Gemm) -> OpTiming:
        hbm = self.device.level_bandwidth_Bps("hbm")
        t = op.weight_bytes / hbm + DISPATCH_S
        return OpTiming(op.name, t, "hbm", {"hbm": op.weight_bytes}, op.flops, source="toy")


@pytest.fixture(scope="module", autouse=True)
def _toy_kind() -> None:
    register_mapper("toy", ToyMapper)


runner = CliRunner()


def _json(args: list[str]) -> dict:  # type: ignore[type-arg]
    res = runner.invoke(app, [*args, "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.output)  # type: ignore[no-any-return]


def test_the_toy_kind_is_timed_by_its_own_hook() -> None:
    m = mapper_for(load_device(TOY))
    assert isinstance(m, ToyMapper) and m.kind == "toy"
    # a 1 x 4096 x 4096 bf16 GEMM: 4096 * 4096 * 2 B = 33.55 MB at 1 TB/s = 33.554 us, + 2 us
    t = m.time(Gemm(1, 4096, 4096, "bf16", name="proj"))
    assert t.time_s == pytest.approx(4096 * 4096 * 2 / 1e12 + 2e-6, rel=1e-12)
    assert t.source == "toy"


def test_decode_on_the_toy_kind() -> None:
    d = _json(["decode", "--model", "llama-3.1-8b", "--device", str(TOY), "--ops"])
    assert d["devices"] == 1 and d["fits"]
    gemms = [o for o in d["ops"] if o["source"] == "toy"]
    others = [o for o in d["ops"] if o["source"] != "toy"]
    assert gemms and others  # the hook times GEMMs; the base class everything else
    assert {o["source"] for o in others} <= {"roofline"}
    # one device, one micro-batch, no communication: the step is every op once per layer
    total = sum(o["time_s"] * o["count"] for o in d["ops"])
    assert d["step_time_s"] == pytest.approx(total, rel=1e-9)


def test_map_and_report_section_on_the_toy_kind(tmp_path: Path) -> None:
    html = tmp_path / "toy.html"
    d = _json(["map", "--model", "llama-3.1-8b", "--device", str(TOY), "--html", str(html)])
    assert d["kind"] == "toy" and d["placement"]["kind"] == "toy"
    assert d["placement"]["capacity_per_device_bytes"] == 24e9
    assert html.exists()
    m = map_model(StepRequest("llama-3.1-8b", str(TOY)))
    sections = mapping_sections(m)
    assert sections[0].title == "Summary"
    figures = [s.figure for s in sections[1:]]
    assert figures and all(f is not None and f.data for f in figures)
