"""``axes.zip``: axes that advance together instead of forming a grid (an HBM generation's
bandwidth with its capacity, an InfiniBand generation's NIC with its switch links)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from hwsim.spec.errors import SpecError
from hwsim.sweep.run import run_sweep
from hwsim.sweep.spec import load_sweep

# HBM2e -> HBM3 -> HBM3e: bandwidth and capacity move together; batch is a plain grid axis
AXES: dict[str, Any] = {
    "spec": {
        "memory.hbm.bandwidth": ["2 TB/s", "3.35 TB/s", "4.8 TB/s"],
        "memory.hbm.capacity": ["80 GB", "80 GB", "141 GB"],
    },
    "workload": {"batch": [1, 8], "context": [1024, 4096, 8192]},
    "zip": [["memory.hbm.bandwidth", "memory.hbm.capacity"]],
}


def _file(tmp_path: Path, axes: dict[str, Any], **extra: Any) -> Path:
    data = {
        "name": "z",
        "base": {"device": "h100-sxm", "model": "llama-3.1-8b"},
        "axes": axes,
        "metrics": [{"kind": "fa_decode"}],
        **extra,
    }
    path = tmp_path / "z.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def test_zip_pairs_values_on_a_grid(tmp_path: Path) -> None:
    r = run_sweep(load_sweep(_file(tmp_path, AXES)))
    assert r.n == 3 * 2 * 3  # the zipped pair counts once, not 3 x 3
    pairs = set(zip(r.columns["memory.hbm.bandwidth"].tolist(),
                    r.columns["memory.hbm.capacity"].tolist(), strict=True))  # fmt: skip
    assert pairs == {(2e12, 80e9), (3.35e12, 80e9), (4.8e12, 141e9)}
    # every (batch, context) combination meets every generation exactly once
    combos = {tuple(r.columns[c][i] for c in ("memory.hbm.bandwidth", "batch", "context"))
              for i in range(r.n)}  # fmt: skip
    assert len(combos) == r.n


def test_zip_axes_stay_paired_when_sampled(tmp_path: Path) -> None:
    r = run_sweep(load_sweep(_file(tmp_path, AXES, sampling={"method": "random", "n": 40})))
    bw, cap = r.columns["memory.hbm.bandwidth"], r.columns["memory.hbm.capacity"]
    assert np.all((bw == 4.8e12) == (cap == 141e9))
    assert len(set(bw.tolist())) == 3  # 40 draws over 3 generations hit each


def test_sensitivity_reports_a_zip_group_once(tmp_path: Path) -> None:
    r = run_sweep(load_sweep(_file(tmp_path, AXES, sensitivity=["fa_decode.time_s"])))
    inputs = [e.input for e in r.sensitivity]
    assert "memory.hbm.capacity" not in inputs  # collinear with the bandwidth: no own slope
    bw = next(e for e in r.sensitivity if e.input == "memory.hbm.bandwidth")
    # decode attention from HBM: time ~ 1/bandwidth (0.02: the latency terms of small batches)
    assert bw.local_median == pytest.approx(-1.0, abs=0.02)


@pytest.mark.parametrize(
    ("zip_", "match"),
    [
        ([["memory.hbm.bandwidth", "batch"]], r"axes\.zip\[0\]: .*equal lengths.*, batch: 2"),
        ([["memory.hbm.bandwidth", "batchh"]], r"'batchh' is not an axis; did you mean 'batch'"),
        ([["memory.hbm.bandwidth"]], r"at least two axes"),
        ([["memory.hbm.bandwidth", "memory.hbm.capacity"], ["memory.hbm.capacity", "context"]],
         r"axes\.zip\[1\]: 'memory.hbm.capacity' is in two zip groups"),
    ],
)  # fmt: skip
def test_zip_errors(tmp_path: Path, zip_: list[list[str]], match: str) -> None:
    with pytest.raises(SpecError, match=match):
        load_sweep(_file(tmp_path, {**AXES, "zip": zip_}))


def test_zip_refuses_ranges(tmp_path: Path) -> None:
    axes = {**AXES, "workload": {"batch": {"from": 1, "to": 8, "num": 3}, "context": [1, 2, 3]}}
    axes["zip"] = [["batch", "context"]]
    with pytest.raises(SpecError, match="'batch' is a range; zip takes listed values"):
        load_sweep(_file(tmp_path, axes))


def test_lockstep_inputs_are_dropped_but_continuous_samples_are_not() -> None:
    from hwsim.sweep.sensitivity import elasticities

    rng = np.random.default_rng(0)
    bw = np.repeat([1.0, 2.0, 4.0], 4)
    cap = np.repeat([8.0, 8.0, 16.0], 4)  # a function of bw: the zip group's second axis
    batch = np.tile([1.0, 2.0, 4.0, 8.0], 3)
    y = batch**0.5 / bw
    names = [e.input for e in elasticities({"bw": bw, "cap": cap, "b": batch, "y": y}, "y",
                                           ["bw", "cap", "b"])]  # fmt: skip
    assert sorted(names) == ["b", "bw"]
    # continuous samples: every value distinct, both inputs kept and the exponents recovered
    u, v = rng.uniform(1, 10, 50), rng.uniform(1, 10, 50)
    got = {e.input: e.elasticity for e in elasticities({"u": u, "v": v, "y": u**2 / v}, "y",
                                                       ["u", "v"])}  # fmt: skip
    assert got == pytest.approx({"u": 2.0, "v": -1.0}, abs=1e-9)  # exact power law: lstsq exact
