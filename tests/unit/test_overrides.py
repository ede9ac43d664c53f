"""Spec overrides (hwsim.spec.overrides): dotted paths, values, provenance and errors."""

from __future__ import annotations

import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsim.roofline.analytic import roofline
from hwsim.roofline.ops import attention_decode
from hwsim.spec.cluster import load_cluster
from hwsim.spec.device import Device
from hwsim.spec.errors import SpecError, SpecWarning
from hwsim.spec.load import load_device
from hwsim.spec.overrides import (
    OVERRIDE_SOURCE,
    apply_overrides,
    canonical_path,
    get_value,
    override_paths,
    parse_assignment,
    path_dim,
    spec_fingerprint,
)
from hwsim.spec.units import Dim


@pytest.fixture(scope="module")
def h100() -> Device:
    return load_device("h100-sxm")


def test_paths_name_every_sourced_number(h100: Device) -> None:
    paths = override_paths(h100)
    wanted = ["memory.hbm.bandwidth", "memory.smem.capacity", "compute.peak.bf16"]
    wanted += ["compute.units", "interconnect.nvlink.bandwidth", "power.tdp", "price.usd"]
    for p in wanted:
        assert p in paths
    # kind-specific sections are never offered on a GPU
    assert not any(p.startswith(("mesh.", "tiles.", "lpu.")) for p in paths)


def test_multiplier_and_absolute(h100: Device) -> None:
    d = apply_overrides(
        h100,
        {
            "memory.hbm.bandwidth": "x2",
            "memory.smem.capacity": "×2",
            "compute.peak.bf16": "2 PFLOP/s",
            "memory.l2.latency": "-10%",
        },
    )
    # exact: x2 of a float is exact and the SI text round-trips through repr
    assert d.level("hbm").bandwidth_Bps == 2 * h100.level("hbm").bandwidth_Bps
    assert d.level("smem").capacity_bytes == 2 * h100.level("smem").capacity_bytes
    assert d.compute.peak["bf16"].value == 2e15
    # a percentage multiplies by (1 - 0.1); float rounding of 0.9 only (1e-12 relative)
    assert d.level("l2").latency_s == pytest.approx(0.9 * h100.level("l2").latency_s, rel=1e-12)
    # untouched numbers are the same objects' values, the base spec is unchanged
    assert d.level("hbm").capacity_bytes == h100.level("hbm").capacity_bytes
    assert h100.level("hbm").bandwidth.source != OVERRIDE_SOURCE


def test_provenance_recorded(h100: Device) -> None:
    d = apply_overrides(h100, ["memory.hbm.bandwidth=x2"])
    q = d.level("hbm").bandwidth
    assert q.source == OVERRIDE_SOURCE and q.derived == "x2 of 3.35 TB/s"
    assert "was 3.35 TB/s" in (q.note or "")
    assert "memory.hbm.bandwidth = x2 (was 3.35 TB/s)" in d.sources[OVERRIDE_SOURCE]
    # a second round appends to the provenance
    d2 = apply_overrides(d, ["memory.l2.capacity=256MiB"])
    assert "x2" in d2.sources[OVERRIDE_SOURCE] and "256MiB" in d2.sources[OVERRIDE_SOURCE]


def test_path_forms(h100: Device) -> None:
    for form in ("memory.hbm.bandwidth", "memory[hbm].bandwidth", "memory.2.bandwidth",
                 "hbm.bandwidth", " memory . hbm . bandwidth "):  # fmt: skip
        assert canonical_path(h100, form) == "memory.hbm.bandwidth"
    assert path_dim(h100, "hbm.capacity") is Dim.BYTES
    assert get_value(h100, "compute.units") == 132.0


def test_level_with_unit_picks_the_field() -> None:
    groq = load_device("groq-lpu")
    d = apply_overrides(groq, ["sram=256MiB"])
    assert d.level("sram").capacity_bytes == 256 * 2**20
    d = apply_overrides(groq, {"sram": "100 TB/s"})
    assert d.level("sram").bandwidth_Bps == 100e12


def test_add_missing_entries() -> None:
    mi210 = load_device("mi210")
    assert "fp8" not in mi210.compute.peak
    d = apply_overrides(mi210, ["compute.peak.fp8=400 TFLOP/s"])
    assert d.peak_flops("fp8") == 400e12
    with pytest.raises(SpecError, match="not set"):
        apply_overrides(mi210, ["compute.peak.fp8=x2"])


def test_si_numbers(h100: Device) -> None:
    d = apply_overrides(h100, {"memory.hbm.bandwidth": 5e12}, si_numbers=True)
    assert d.level("hbm").bandwidth_Bps == 5e12
    assert d.level("hbm").bandwidth.text == "5 TB/s"
    with pytest.raises(SpecError, match="bare number"):
        apply_overrides(h100, {"memory.hbm.bandwidth": 5e12})


def test_no_overrides_returns_same(h100: Device) -> None:
    assert apply_overrides(h100, {}) is h100


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("memory.hbm.bandwith=x2", r"did you mean 'memory.hbm.bandwidth'\?.*settable paths: "),
        ("memroy.hbm.bandwidth=x2", r"did you mean 'memory.hbm.bandwidth'"),
        ("memory.hbm=x2", r"whole section; name one of its numbers \(memory.hbm.capacity"),
        ("memory.hbm.bandwidth=4.8", r"memory.hbm.bandwidth: .*bare number '4.8': write the unit"),
        ("memory.hbm.bandwidth=3 GHz", r"wrong dimension"),
        ("memory.hbm.bandwidth=-1TB/s", r"non-negative"),
        ("compute.units=x1.003", r"compute.units: expected a whole number"),
        ("memory.hbm.bandwidth=x0", r"greater than zero"),
        ("nonsense", r"write PATH=VALUE"),
    ],
)
def test_errors_name_the_path(h100: Device, text: str, match: str) -> None:
    with pytest.raises(SpecError, match=match):
        apply_overrides(h100, [text])


def test_same_field_twice_refused(h100: Device) -> None:
    with pytest.raises(SpecError, match="overridden twice"):
        apply_overrides(h100, ["hbm.bandwidth=x2", "memory.hbm.bandwidth=4 TB/s"])


def test_spec_warnings_still_raised(h100: Device) -> None:
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        apply_overrides(h100, ["memory.l2.capacity=100 GB"])  # L2 larger than HBM
    assert any(isinstance(w.message, SpecWarning) for w in got)


def test_parse_assignment() -> None:
    assert parse_assignment("memory.hbm.bandwidth=x2") == ("memory.hbm.bandwidth", "x2")
    assert parse_assignment("sram: 256 MiB") == ("sram", "256 MiB")


def test_cluster_overrides() -> None:
    c = load_cluster("dgx-h100")
    paths = override_paths(c)
    assert "nodes" in paths
    c2 = apply_overrides(c, ["nodes=x4"])
    assert c2.default_nodes == 4 * c.default_nodes


def test_fingerprint_changes_with_numbers(h100: Device) -> None:
    assert spec_fingerprint(h100) == spec_fingerprint(load_device("h100-sxm"))
    assert spec_fingerprint(apply_overrides(h100, ["hbm.bandwidth=x2"])) != spec_fingerprint(h100)


@settings(max_examples=30, deadline=None)
@given(k=st.floats(min_value=0.1, max_value=2.5))
def test_hbm_bound_kernel_scales_with_bandwidth(k: float) -> None:
    """An HBM-bound decode kernel's roofline time scales as 1/k when HBM bandwidth is x k,
    while it stays HBM-bound: above x2.9 HBM (9.8 TB/s) passes L2, which then bounds it."""
    h100 = load_device("h100-sxm")
    d = apply_overrides(h100, {"memory.hbm.bandwidth": f"x{k!r}"})
    shape = {"batch": 1, "context": 8192, "heads": 64, "kv_heads": 8}
    t0 = roofline(attention_decode(h100, **shape), h100).time_s
    t1 = roofline(attention_decode(d, **shape), d)
    assert t1.bound == "hbm"
    assert t1.time_s == pytest.approx(t0 / k, rel=1e-12)  # pure float arithmetic
