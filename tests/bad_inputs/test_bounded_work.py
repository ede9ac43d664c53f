"""Issue 21: bounded work on every input. The cases the issue lists refuse in under a second
with exit 2 and what to change; limits are options; sweep sizes are computed, not expanded;
a sweep point over its budget fails alone (locally and on dask) and the sweep goes on."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from fuzz_worker import CliWorker

from hwsim.sim.engine import Engine
from hwsim.spec.errors import SpecError
from hwsim.spec.limits import LimitExceeded, Limits, format_count, limits, use
from hwsim.sweep import SweepCache, load_sweep, run_sweep
from hwsim.sweep.points import axes_of, build_points
from hwsim.sweep.run import ERROR_COLUMN, Task
from hwsim.sweep.sizing import check_points

ROOT = Path(__file__).resolve().parents[2]
CLI = ROOT / "tests" / "bad_inputs" / "cli"

#: (argv, what the one error line must say) for each case issue 21 lists (the decode case
#: belongs to the serving layer)
LISTED = [
    (
        ["sweep", str(CLI / "sweep-too-many-points.yaml"), "--no-cache"],
        "10^15 sweep points (100000 × 100000 × 100000); the limit is 10^6; sample with",
    ),
    (["sweep", str(CLI / "sweep-constraint-power-tower.yaml"), "--no-cache"], "exponent of"),
    (["moe", "--tokens", "1000000000"], "use fewer --tokens"),
    (
        ["attention", "--device", "h100-sxm", "--batch", "1000", "--seqlen", "100000000"],
        "use a smaller batch, fewer heads or a shorter sequence",
    ),
]


@pytest.fixture(scope="module")
def worker() -> Iterator[CliWorker]:
    w = CliWorker()
    yield w
    w.close()


@pytest.mark.parametrize(("argv", "says"), LISTED, ids=[a[0] + str(i) for i, (a, _) in
                                                         enumerate(LISTED)])  # fmt: skip
def test_listed_case_refuses_in_under_a_second(
    worker: CliWorker, tmp_path: Path, argv: list[str], says: str
) -> None:
    out = worker.run([*argv, *(["--out", str(tmp_path / "o.csv")] if argv[0] == "sweep" else [])],
                     30.0)  # fmt: skip
    assert out.code == 2, out
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], lines
    assert out.wall_s < 1.0, f"{out.wall_s:.2f} s: {argv}"


def test_listed_case_through_the_real_entry_point(tmp_path: Path) -> None:
    """The installed console script: exit 2, one line, no traceback (start-up included)."""
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "hwsim.cli.app", "moe", "--tokens", "1000000000"],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "host memory" in proc.stderr
    assert time.perf_counter() - t0 < 30


def test_max_points_option_raises_the_limit(worker: CliWorker, tmp_path: Path) -> None:
    """--max-points lets 10^15 points past the point limit; the memory estimate (~1 PB) then
    refuses it, still before one point exists."""
    sweep = str(CLI / "sweep-too-many-points.yaml")
    out = worker.run(["sweep", sweep, "--max-points", "1e16", "--out", str(tmp_path / "o.csv")],
                     30.0)  # fmt: skip
    assert out.code == 2 and "of host memory" in out.stderr and "--max-memory" in out.stderr
    assert out.wall_s < 1.0


def _sweep(tmp_path: Path, axes: dict[str, Any], **extra: Any) -> Any:
    data = {
        "name": "t",
        "base": {"device": "h100-sxm", "model": "llama-3.1-8b"},
        "workload": {"dtype": "bf16"},
        "axes": axes,
        "metrics": [{"kind": "fa_decode"}],
        **extra,
    }
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump(data, sort_keys=False))
    return load_sweep(p)


@pytest.mark.parametrize(
    "axes",
    [
        {"workload": {"batch": {"from": 1, "to": 10, "num": 10**15, "integer": True},
                      "context": [1024, 2048]}},
        {"workload": {"batch": {"from": 1, "to": 10**6, "num": 60, "scale": "log",
                                "integer": True}, "context": [512]}},
        {"workload": {"batch": {"from": 3, "to": 1, "num": 7, "integer": True},
                      "context": {"from": 1, "to": 9, "num": 4}}},
        {"spec": {"memory.hbm.bandwidth": ["x1", "x2", "x3"],
                  "memory.hbm.capacity": ["x1", "x2", "x4"]},
         "workload": {"context": [256]}, "zip": [["memory.hbm.bandwidth", "memory.hbm.capacity"]]},
    ],
)  # fmt: skip
def test_counted_size_equals_the_expanded_one(tmp_path: Path, axes: dict[str, Any]) -> None:
    """The O(1) count is the number of points the grid expands to (integer ranges dedupe;
    10^15 grid values over ten integers are ten points)."""
    sweep = _sweep(tmp_path, axes)
    kinds = sweep.kinds()
    counted = check_points(sweep, axes_of(sweep), [None] * len(axes_of(sweep)), len(kinds))
    assert counted == build_points(sweep, kinds).total


def test_device_variants_are_limited(tmp_path: Path) -> None:
    sweep = _sweep(tmp_path, {"spec": {"memory.hbm.bandwidth": {"from": "x1", "to": "x2",
                                                                 "num": 300}}})  # fmt: skip
    with limits(max_points=10_000), pytest.raises(LimitExceeded, match="300 device/cluster"):
        build_points(sweep, sweep.kinds())


def test_format_count() -> None:
    assert [format_count(n) for n in (999_999, 10**6, 10**15, 2.5e7, 10**400)] == [
        "999,999", "10^6", "10^15", "2.5×10^7", "10^400"
    ]  # fmt: skip


# ---- failed points ------------------------------------------------------------------------------
FAIL_AXES = {"workload": {"batch": [1, 4096], "context": [1024]}}


def _failing_sweep(tmp_path: Path) -> Any:
    data = {
        "name": "fail-some",
        "base": {"device": "h100-sxm", "model": "llama-3.1-8b"},
        "workload": {"dtype": "bf16"},
        "axes": FAIL_AXES,
        "metrics": [{"kind": "attention_sim"}, {"kind": "fa_decode"}],
    }
    p = tmp_path / "fail.yaml"
    p.write_text(yaml.safe_dump(data, sort_keys=False))
    return load_sweep(p)


def _check_one_failed(r: Any) -> None:
    err = r.columns[ERROR_COLUMN].tolist()
    assert err[0] == "" and err[1].startswith("attention_sim: would process ~524,288 events")
    assert r.stats.failed == 1 and r.stats.kinds[0].failed == 1
    t = r.columns["attention_sim.time_s"]
    assert t[0] > 0 and np.isnan(t[1])
    assert np.all(r.columns["fa_decode.time_s"] > 0)  # the other kind ran on both points


def test_point_over_budget_fails_alone_and_is_not_cached(tmp_path: Path) -> None:
    """batch 4096 needs 32,768 CTAs (524,288 events) > 10^5: that point fails, the sweep goes
    on; the failed unit is not cached, so a larger budget computes it."""
    sweep = _failing_sweep(tmp_path)
    with limits(max_events=100_000), SweepCache(tmp_path / "c.sqlite") as c:
        _check_one_failed(run_sweep(sweep, cache=c))
    with SweepCache(tmp_path / "c.sqlite") as c:
        r = run_sweep(sweep, cache=c)
    assert ERROR_COLUMN not in r.columns and r.stats.failed == 0
    assert r.stats.kinds[0].cache_hits == 1 and r.stats.kinds[0].computed == 1


def test_all_points_failing_refuses_the_sweep(tmp_path: Path) -> None:
    sweep = _failing_sweep(tmp_path)
    with limits(max_events=10), pytest.raises(SpecError, match="failed on every point"):
        run_sweep(sweep)


class FreshWorker:
    """An executor whose tasks run as in a new worker process: under the default limits,
    whatever the driver's are; it records the limits each task brings."""

    name = "fresh"
    workers = 1

    def __init__(self) -> None:
        self.seen: list[Limits] = []

    def map_unordered(self, fn: Any, tasks: Any) -> Iterator[tuple[int, Any]]:
        for i, t in enumerate(tasks):
            self.seen.append(t.limits)
            with use(Limits()):  # a worker's own context knows nothing of the driver
                yield i, fn(t)

    def close(self) -> None:
        pass

    def describe(self) -> str:
        return "fresh worker"


def test_task_carries_the_limits_of_its_driver(tmp_path: Path) -> None:
    assert Task("fa_decode", {}, (), np.zeros(0, np.intp)).limits == Limits()
    ex = FreshWorker()
    with limits(max_events=100_000):
        r = run_sweep(_failing_sweep(tmp_path), executor=ex)
    assert {lim.max_events for lim in ex.seen} == {100_000}
    _check_one_failed(r)  # the worker applied the task's limit, not its own default


def test_dask_worker_reports_the_failed_point(tmp_path: Path) -> None:
    """The same sweep on a dask LocalCluster: the worker applies the driver's --max-events,
    reports the point as failed with the reason, and the table says which."""
    pytest.importorskip("distributed")
    from hwsim.sweep.executors import DaskExecutor

    sweep = _failing_sweep(tmp_path)
    with limits(max_events=100_000), DaskExecutor(workers=1) as ex:
        r = run_sweep(sweep, executor=ex)
    assert r.stats.executor.startswith("dask")
    _check_one_failed(r)


# ---- safety nets and file limits ----------------------------------------------------------------
def test_every_engine_stops_past_the_event_limit() -> None:
    with limits(max_events=50):
        eng = Engine()
    link = eng.link("hbm", 10.0)
    for i in range(100):
        eng.transfer(link, 10.0 + i)
    with pytest.raises(LimitExceeded, match="stopped after 50 events"):
        eng.run()


def test_hf_config_is_sized_before_it_is_read(tmp_path: Path) -> None:
    from hwsim.spec.model import from_hf_config

    big = tmp_path / "config.json"
    big.write_text('{"x": "' + "y" * 3_000_000 + '"}')
    with pytest.raises(SpecError, match="model configs are limited to 2,000,000 bytes"):
        from_hf_config(big)
    with pytest.raises(SpecError, match=r"not a regular file|limited to"):
        from_hf_config("/dev/zero")
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(SpecError, match="JSON nested too deeply"):
        from_hf_config(deep)


def test_yaml_is_sized_before_it_is_read(tmp_path: Path) -> None:
    from hwsim.spec.load import read_yaml

    p = tmp_path / "big.yaml"
    p.write_text("a: 1\n" + "#" * 3_000_000)
    with pytest.raises(SpecError, match="specs are limited to 2000000"):
        read_yaml(p)
    with pytest.raises(SpecError, match="not a regular file"):
        read_yaml(Path("/dev/zero"))
