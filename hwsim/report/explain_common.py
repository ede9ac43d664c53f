"""Helpers shared by the subjects ``hwsim explain`` takes apart (:mod:`hwsim.report.explain_gemm`,
:mod:`~hwsim.report.explain_attention`, :mod:`~hwsim.report.explain_moe`,
:mod:`~hwsim.report.explain_decode`): which matrix peak a dtype uses, the narrower-dtype lever,
the "2× bandwidth at a level" candidate, topping up the candidate list, and device names as
simulator JSON records them.
"""

from __future__ import annotations

from typing import Any

from hwsim.report.explain import Candidate, Change, Outcome, compute_rate_title, rname
from hwsim.spec.device import Device
from hwsim.spec.errors import SpecError
from hwsim.spec.load import load_device

#: A dtype one step narrower (the "dtype" lever): half the bytes, and more FLOP/s where the
#: device has a faster matrix peak for it.
NARROWER = {"fp32": "bf16", "tf32": "bf16", "fp16": "fp8", "bf16": "fp8"}


def _peak_path(d: Device, dtype: str) -> str:
    """Override path of the matrix peak ``dtype`` actually uses (its own entry or the entry it
    falls back to)."""
    if dtype in d.compute.peak:
        return f"compute.peak.{dtype}"
    rate = d.peak_flops(dtype)
    for key, val in d.compute.peak.items():
        if val.value == rate:
            return f"compute.peak.{key}"
    raise SpecError(f"{d.name} lists no matrix peak for {dtype}", key="compute.peak")


def _faster_dtype(d: Device, dtype: str) -> str | None:
    """The narrower dtype when the device has its own, higher matrix peak for it."""
    nxt = NARROWER.get(dtype)
    if nxt is None or nxt not in d.compute.peak:
        return None
    return nxt if d.peak_flops(nxt) > d.peak_flops(dtype) else None


def _level_x2(level: str, why: str, relieves: tuple[str, ...] | None = None) -> Candidate:
    return Candidate(
        key=f"{level}-bandwidth-x2",
        title=f"2× {level} bandwidth",
        lever="bandwidth",
        relieves=relieves or (level,),
        change=Change(spec={f"memory.{level}.bandwidth": "x2"}),
        reason=why,
    )


def _value(sourced: Any) -> float:
    """The SI value of a sourced profile number (profiles type them dynamically)."""
    return float(sourced.value)


def compute_x2(d: Device, dtype: str) -> Candidate:
    """The what-if of twice the device's matrix peak for ``dtype``, named in its kind's words."""
    return Candidate(
        "compute-x2",
        compute_rate_title(d.kind),
        "compute",
        ("compute",),
        Change(spec={_peak_path(d, dtype): "x2"}),
        f"a chip with twice the {dtype} matrix peak",
    )


def _fill(cands: list[Candidate], pool: list[Candidate], at_least: int = 3) -> list[Candidate]:
    """Top up ``cands`` from ``pool`` (in order) to ``at_least`` distinct candidates."""
    keys = {c.key for c in cands}
    for c in pool:
        if len(cands) >= at_least:
            break
        if c.key not in keys:
            cands.append(c)
            keys.add(c.key)
    return cands


def describe_bound(outcome: Outcome) -> str:
    return rname(outcome.bound)


def device_key(name_or_display: str) -> str:
    """A device file stem from a stem, a path or a display name (``NVIDIA H100 SXM5 80GB``), as
    simulator JSON records it."""
    from hwsim.spec.load import list_devices

    stems = list_devices()
    if name_or_display in stems or name_or_display.endswith((".yaml", ".yml")):
        return name_or_display
    for stem in stems:
        if load_device(stem).name == name_or_display:
            return stem
    raise SpecError(
        f"unknown device {name_or_display!r} in the JSON (built-in: {', '.join(stems)})",
        key="device",
    )


def _need(data: dict[str, Any], keys: tuple[str, ...], what: str) -> None:
    missing = [k for k in keys if k not in data]
    if missing:
        raise SpecError(
            f"the JSON looks like {what} but lacks {', '.join(missing)}; run `hwsim explain "
            f"{what.split()[0].lower()} ...` with options instead",
            key=missing[0],
        )


def mapping_candidates(kind: str) -> dict[str, Candidate]:
    """What-ifs on a spatial kind's mapper parameters (``devices/profiles/<family>.yaml``), the
    software levers next to the hardware ones: an LPU's fitted per-operator latency, a wafer's
    bytes per core (regions over more cores where the wafer has spare ones)."""
    if kind == "lpu":
        return {
            "op_latency": Candidate(
                "op-latency-half",
                "½ per-operator latency",
                "mapping",
                ("latency",),
                Change(profile={"op_latency": "x0.5"}),
                "a compiler or runtime that halves the fixed cost each dependent operator adds "
                "(the fitted op_latency: fill, synchronisation)",
            )
        }
    if kind == "wafer_scale":
        return {
            "spread": Candidate(
                "core-data-half",
                "regions over twice the cores",
                "mapping",
                ("compute", "sram"),
                Change(profile={"core_data": "x0.5"}),
                "half the bytes per core, so each operator's region has twice the cores, as far "
                "as the wafer has spare ones (a model that fills it cannot spread)",
            )
        }
    return {}
