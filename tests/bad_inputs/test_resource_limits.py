"""Requests too large for the device, or too expensive to simulate, are refused with a clear
message - never by exhausting memory: the budget and fit helpers themselves. (The commands
that must use them are exercised by the corpus: cli/*does-not-fit*, *too-large*.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from hwsim.sim.budget import check_budget, check_memory, run_bounded
from hwsim.sim.engine import Engine
from hwsim.spec.errors import SpecError
from hwsim.spec.fit import fits, require_fits


def test_require_fits_message_has_the_numbers() -> None:
    require_fits("weights", 80e9, 80e9, "H100")  # exactly full fits
    with pytest.raises(SpecError) as err:
        require_fits("KV cache", 137.4e9, 80e9, "NVIDIA H100 SXM5 80GB", "shard over more GPUs")
    assert str(err.value) == (
        "KV cache does not fit on NVIDIA H100 SXM5 80GB: needs 137.4 GB, has 80 GB "
        "(1.72x too much); shard over more GPUs"
    )
    with pytest.raises(SpecError, match="not a finite number"):
        require_fits("weights", float("nan"), 80e9, "H100")
    assert fits(1.0, 1.0) and not fits(float("inf"), 1e30)


def test_check_budget_names_the_cheaper_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    check_budget(5_000_000)
    with pytest.raises(SpecError) as err:
        check_budget(1.2e8, cheaper_mode_hint="use --detail cta")
    assert str(err.value) == (
        "would process ~120,000,000 events (limit 5,000,000; HWSIM_MAX_EVENTS raises it); "
        "use --detail cta"
    )
    monkeypatch.setenv("HWSIM_MAX_EVENTS", "2e8")
    check_budget(1.2e8)
    monkeypatch.setenv("HWSIM_MAX_EVENTS", "lots")
    with pytest.raises(SpecError, match="HWSIM_MAX_EVENTS"):
        check_budget(1.0)


def test_check_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    check_memory(1e9)
    monkeypatch.setenv("HWSIM_MAX_MEMORY", "512 MiB")
    with pytest.raises(SpecError, match=r"would need ~1 GB of host memory \(limit 536.9 MB"):
        check_memory(1e9, cheaper_mode_hint="use --detail wave")


def test_run_bounded_stops_a_runaway_engine() -> None:
    eng = Engine()
    link = eng.link("hbm", 10.0)
    for i in range(100):
        eng.transfer(link, 10.0 + i)
    with pytest.raises(SpecError, match=r"stopped after 20 events .*; use --detail cta"):
        run_bounded(eng, 20, "use --detail cta")
    # the same run within budget finishes, and the engine is left as it was
    eng2 = Engine()
    link2 = eng2.link("hbm", 10.0)
    for i in range(100):
        eng2.transfer(link2, 10.0 + i)
    # 100 transfers of 10..109 B on one 10 B/s link: 5950 B / 10 B/s = 595 s (float sum: 1e-9)
    assert run_bounded(eng2, 10**6) == pytest.approx(595.0, rel=1e-9)
    assert "step" not in vars(eng2.env)


# The 10^7-cubed GEMM that once exhausted memory is the corpus case cli/gemm-does-not-fit,
# run under a memory cap (tests/bad_inputs/test_corpus.py: memory_headroom).


@pytest.mark.xfail(
    strict=True,
    raises=MemoryError,
    reason="hwsim/sim/topology.py builds every node, NIC and cable of a cluster before checking "
    "that the network can connect them: 30,000 nodes on a radix-64 fat tree take ~300 MB and 3 s "
    "to be refused, 10^6 nodes exhaust memory after ~50 s (a mesh2d has no radix check at all). "
    "It should refuse (fat-tree capacity) or call hwsim.sim.budget.check_memory before "
    "building. Reported to the cluster owner.",
)
def test_huge_cluster_is_refused_before_it_is_built(tmp_path: Path) -> None:
    from test_corpus import HERE, memory_headroom

    from hwsim.sim.topology import build_topology

    text = (HERE / "cluster" / "_valid.yaml").read_text(encoding="utf-8")
    huge = tmp_path / "huge.yaml"
    huge.write_text(text.replace("nodes: {value: 2,", "nodes: {value: 30000,", 1), "utf-8")
    # 100 MB is plenty for a check, not for a 30,000-node graph
    with memory_headroom(100 * 2**20), pytest.raises(SpecError, match="leaf switches"):
        build_topology(str(huge))
