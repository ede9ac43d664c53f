"""What-if: change spec fields of a device on the fly and compare a served step with the baseline.

``hwsim whatif --device h100-sxm --set memory.hbm.bandwidth=x2 -- decode --model llama-3.1-70b``
applies the overrides with :func:`hwsim.spec.overrides.apply_overrides` (the same mechanism the
sweeps use: units, multipliers ``x2``, percentages ``+20%``, every new value validated and cited
as an override), simulates the same step on the baseline and the modified device with the same
layout, and reports both with the relative change of every metric.

The layout is resolved once on the baseline (capacity planning), so that a what-if changes the
hardware and nothing else; a change that makes the model no longer fit is reported, not hidden.
A ``--set`` path that starts with ``profile.`` changes the device kind's mapper profile instead
(non-datasheet parameters of the wafer-scale, dataflow and LPU mappers: ``profile.op_latency=x0.5``
asks what a Groq compiler with half the per-operator latency would give).
``relayout=True`` instead plans each side on its own (``--devices auto``: the fewest devices
that hold the model, or the step's own ``devices``/``layout`` rule), so a capacity change shows
as a change in the number of devices: twice the SRAM per wafer holds Llama-3.1-70B on 2 wafers
instead of 4 (and at batch 1 each token takes longer on fewer cores).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hwsim.serve.api import Target, make_target, profile_target, serve_step
from hwsim.serve.request import StepRequest
from hwsim.serve.step import StepResult
from hwsim.spec.errors import SpecError
from hwsim.spec.load import load_device
from hwsim.spec.model import load_model_config
from hwsim.spec.override_paths import PROFILE_PREFIX

#: Metrics compared, with the direction that is better.
METRICS: tuple[tuple[str, str], ...] = (
    ("devices", "lower"),
    ("time_per_token_s", "lower"),
    ("tokens_per_s_per_user", "higher"),
    ("tokens_per_s_total", "higher"),
    ("ttft_s", "lower"),
    ("memory_per_device_bytes", "lower"),
    ("comm_exposed_s", "lower"),
)


@dataclass(frozen=True)
class WhatIf:
    """Baseline and modified runs of one step, and what changed."""

    device: str
    overrides: tuple[str, ...]
    changed: dict[str, dict[str, float]]  #: path → {"before": SI, "after": SI}
    baseline: StepResult
    modified: StepResult

    def deltas(self) -> dict[str, dict[str, float]]:
        out = {}
        for name, better in METRICS:
            a, b = getattr(self.baseline, name), getattr(self.modified, name)
            rel = (b - a) / a if a else (0.0 if b == a else math.inf)
            out[name] = {
                "baseline": a,
                "whatif": b,
                "change": rel,
                "lower_is_better": better == "lower",
            }
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "overrides": list(self.overrides),
            "changed": self.changed,
            "deltas": self.deltas(),
            "bound": {"baseline": self.baseline.bound, "whatif": self.modified.bound},
            "breakdown": {
                "baseline": self.baseline.breakdown_s,
                "whatif": self.modified.breakdown_s,
            },
            "baseline": self.baseline.to_dict(),
            "whatif": self.modified.to_dict(),
        }


def _with_profile(target: Target, overrides: list[str]) -> tuple[Target, dict[str, Any]]:
    """``target`` with its spatial mapper's profile overridden, and what changed."""
    from hwsim.sim.mapper import mapper_profile
    from hwsim.spec.overrides import resolve_overrides

    changed_target = profile_target(target, overrides)  # checks the kind and every path
    resolved = resolve_overrides(mapper_profile(target.mapper), overrides)
    changed = {
        f"{PROFILE_PREFIX}{r.path}": {
            "before": math.nan if r.old_value is None else r.old_value,
            "after": r.new_value,
        }
        for r, _ in resolved
    }
    return changed_target, changed


def whatif(req: StepRequest, overrides: Sequence[str], relayout: bool = False) -> WhatIf:
    """Simulate ``req`` on its device (a name) and on that device with ``overrides``
    (``"path=value"`` strings); with the baseline's layout, or (``relayout``) each side with
    its own."""
    from hwsim.spec.overrides import apply_overrides, resolve_overrides

    if not overrides:
        raise SpecError("give at least one --set PATH=VALUE", key="set")
    if not isinstance(req.device, str):
        raise SpecError("a what-if starts from a device name or YAML path", key="device")
    device = req.device
    spec_ovs = [o for o in overrides if not o.startswith(PROFILE_PREFIX)]
    prof_ovs = [o[len(PROFILE_PREFIX) :] for o in overrides if o.startswith(PROFILE_PREFIX)]
    base_dev = load_device(device)
    new_dev = apply_overrides(base_dev, spec_ovs)
    changed = {
        r.path: {"before": math.nan if r.old_value is None else r.old_value, "after": r.new_value}
        for r, _ in resolve_overrides(base_dev, spec_ovs)
    }
    base_t = make_target(base_dev, key=device)
    new_t = make_target(new_dev, cluster=base_t.cluster, key=f"{device} (what-if)")
    if prof_ovs:
        new_t, prof_changed = _with_profile(new_t, prof_ovs)
        changed.update(prof_changed)
    cfg = load_model_config(req.model) if isinstance(req.model, str) else req.model
    baseline = serve_step(req.replace(model=cfg, device=base_t))
    new_req = req.replace(model=cfg, device=new_t)
    if not relayout:
        new_req = new_req.replace(layout=baseline.layout, devices="auto")
    modified = serve_step(new_req, strict=False)
    return WhatIf(device, tuple(overrides), changed, baseline, modified)
