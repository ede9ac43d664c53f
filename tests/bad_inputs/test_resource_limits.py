"""Requests too large for the device, or too expensive to simulate, are refused with a clear
message - never by exhausting memory: the budget and fit helpers themselves. (The commands
that must use them are exercised by the corpus: cli/*does-not-fit*, *too-large*.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from hwsim.sim.budget import (
    Limits,
    check_budget,
    check_memory,
    current_limits,
    limits,
    parse_max_events,
    parse_max_memory,
    run_bounded,
)
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


def test_check_budget_names_the_cheaper_mode() -> None:
    check_budget(5_000_000)
    with pytest.raises(SpecError) as err:
        check_budget(1.2e8, cheaper_mode_hint="use --detail cta")
    assert str(err.value) == (
        "would process ~120,000,000 events (limit 5,000,000; --max-events raises it); "
        "use --detail cta"
    )
    with limits(max_events=parse_max_events("2e8")) as lim:
        assert lim.max_events == 200_000_000
        check_budget(1.2e8)
    with pytest.raises(SpecError, match="would process"):  # the block ended: default again
        check_budget(1.2e8)
    with pytest.raises(SpecError, match="--max-events 'lots': expected a plain number"):
        parse_max_events("lots")


def test_check_memory() -> None:
    check_memory(1e9)
    with (
        limits(max_memory_bytes=parse_max_memory("512 MiB")),
        pytest.raises(
            SpecError,
            match=r"would need ~1 GB of host memory \(limit 536.9 MB; --max-memory raises",
        ),
    ):
        check_memory(1e9, cheaper_mode_hint="use --detail wave")
    with pytest.raises(SpecError, match="--max-memory '8 GB/s': wrong dimension"):
        parse_max_memory("8 GB/s")


def test_cli_global_limits_options() -> None:
    """``--max-events``/``--max-memory`` anywhere on the line set the limits for that command
    only; a bad value is one line naming the option, exit 2."""
    from test_corpus import cli_outcome

    argv = ["attention", "--device", "h100-sxm", "--seqlen", "4096", "--detail", "tile"]
    code, err = cli_outcome([*argv[:1], "--max-events", "1e3", *argv[1:]])
    assert code == 2 and err.startswith("error: would process ~") and "limit 1,000;" in err, err
    assert cli_outcome(["devices", "--max-events=lots"]) == (
        2,
        "error: --max-events 'lots': expected a plain number such as '132', got 'lots'",
    )
    assert cli_outcome(["devices", "--max-memory"])[0] == 2
    assert current_limits() == Limits()  # nothing leaks out of the command


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


def test_huge_cluster_is_refused_before_it_is_built(tmp_path: Path) -> None:
    from test_corpus import HERE, memory_headroom

    from hwsim.sim.topology import build_topology

    text = (HERE / "cluster" / "_valid.yaml").read_text(encoding="utf-8")
    huge = tmp_path / "huge.yaml"
    huge.write_text(text.replace("nodes: {value: 2,", "nodes: {value: 30000,", 1), "utf-8")
    # 100 MB is plenty for a check, not for a 30,000-node graph
    with memory_headroom(100 * 2**20), pytest.raises(SpecError, match="leaf switches"):
        build_topology(str(huge))


def test_million_node_cluster_is_refused_by_the_memory_budget() -> None:
    """No radix to exceed (a dragonfly): 10^6 nodes are refused by the size estimate, before
    one element is built, naming the key and the numbers."""
    from test_corpus import memory_headroom

    from hwsim.sim.topology import build_topology
    from hwsim.spec.cluster import load_cluster

    mesh = load_cluster(str(Path(__file__).parents[2] / "devices/clusters/groq-rack.yaml"))
    with memory_headroom(100 * 2**20), pytest.raises(SpecError) as err:
        build_topology(mesh, 10**6)
    msg = str(err.value)
    assert "nodes: 1,000,000 nodes make a graph of ~" in msg, msg
    assert "host memory" in msg and "use fewer nodes" in msg and "\n" not in msg, msg
