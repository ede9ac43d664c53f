"""What-ifs of a training step: the same step with the hardware, the training profile or an
option changed, every side re-simulated, and what limits each side in sentences.

A change is ``PATH=VALUE``: a device spec path (``memory.hbm.bandwidth=x2``), a cluster path
with the prefix ``cluster.`` (``cluster.nics.bandwidth=x2``: twice the InfiniBand), a training-
profile path with ``profile.`` (``profile.collective_efficiency=0.9``), or a request option
(``schedule=dualpipe``, ``node_limit=0``, ``recompute=full``, ``layout=tp=8,pp=8,dp=32``).
Spec and profile values go through :func:`hwsim.spec.overrides.apply_overrides` (units,
multipliers ``x2``, percentages), like ``hwsim whatif`` and the sweeps.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

from hwsim.spec.errors import SpecError
from hwsim.train.request import TrainRequest
from hwsim.train.result import TrainResult

METRICS: tuple[tuple[str, str], ...] = (
    ("step_time_s", "lower"),
    ("tokens_per_s_per_gpu", "higher"),
    ("model_tflops_per_gpu", "higher"),
    ("mfu", "higher"),
    ("bubble_fraction", "lower"),
    ("memory_per_gpu_bytes", "lower"),
    ("gpu_hours_per_trillion_tokens", "lower"),
)
_INT_OPTIONS = {"zero", "micro_batch", "vpp", "node_limit", "global_batch", "seqlen", "gpus"}
_BOOL_OPTIONS = {"sp", "tp_overlap", "dp_overlap", "dropout"}


@dataclass(frozen=True)
class TrainWhatIf:
    """Baseline and modified steps and the changes."""

    changes: tuple[str, ...]
    baseline: TrainResult
    modified: TrainResult

    def deltas(self) -> dict[str, dict[str, float]]:
        out = {}
        for name, better in METRICS:
            a = _metric(self.baseline, name)
            b = _metric(self.modified, name)
            rel = (b - a) / a if a else (0.0 if b == a else math.inf)
            out[name] = {"baseline": a, "whatif": b, "change": rel,
                         "lower_is_better": better == "lower"}  # fmt: skip
        return out

    def explain(self) -> list[str]:
        """What limits each side, and what the change bought."""
        d = self.deltas()["step_time_s"]
        out = [f"baseline: {what_limits(self.baseline)}", f"what-if: {what_limits(self.modified)}"]
        out.append(
            f"the step takes {d['change']:+.1%} ({d['baseline']:.3g} s -> {d['whatif']:.3g} s)"
        )
        if not self.modified.fits:
            need = self.modified.memory.total / 1e9
            out.append(f"the what-if needs {need:.1f} GB per GPU: it does not fit")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "changes": list(self.changes),
            "deltas": self.deltas(),
            "explain": self.explain(),
            "baseline": self.baseline.to_dict(),
            "whatif": self.modified.to_dict(),
        }


def _metric(r: TrainResult, name: str) -> float:
    return r.memory.total if name == "memory_per_gpu_bytes" else float(getattr(r, name))


def what_limits(r: TrainResult) -> str:
    """One sentence: the largest parts of the step with their shares."""
    parts = sorted(r.breakdown_s.items(), key=lambda kv: -kv[1])
    top = [f"{k} {v / r.step_time_s:.0%}" for k, v in parts[:3] if v > 0]
    cats = sorted(r.compute_s.items(), key=lambda kv: -kv[1])[:2]
    inside = ", ".join(f"{k} {v / r.step_time_s:.0%}" for k, v in cats)
    return f"{', '.join(top)} of {r.step_time_s:.3g} s (compute mostly {inside}); MFU {r.mfu:.1%}"


def _split(changes: Sequence[str]) -> tuple[list[str], list[str], list[str], dict[str, Any]]:
    dev: list[str] = []
    clu: list[str] = []
    prof: list[str] = []
    opts: dict[str, Any] = {}
    names = {f.name for f in fields(TrainRequest)}
    for c in changes:
        path, eq, value = c.partition("=")
        if not eq:
            raise SpecError(f"expected PATH=VALUE, got {c!r}", key="--whatif")
        if path.startswith("cluster."):
            clu.append(c[len("cluster.") :])
        elif path.startswith("profile."):
            prof.append(c[len("profile.") :])
        elif path in names:
            opts[path] = _option(path, value)
        else:
            dev.append(c)
    return dev, clu, prof, opts


def _option(name: str, value: str) -> Any:
    if name in _INT_OPTIONS:
        try:
            return int(value)
        except ValueError:
            raise SpecError(
                f"{name} expects a whole number, got {value!r}", key="--whatif"
            ) from None
    if name in _BOOL_OPTIONS:
        if value.lower() not in ("true", "false", "1", "0", "on", "off"):
            raise SpecError(f"{name} expects true or false, got {value!r}", key="--whatif")
        return value.lower() in ("true", "1", "on")
    return value


def train_whatif(req: TrainRequest, changes: Sequence[str]) -> TrainWhatIf:
    """Simulate ``req`` and ``req`` with ``changes`` (module docstring)."""
    from hwsim.spec.cluster import load_cluster
    from hwsim.spec.load import load_device
    from hwsim.spec.overrides import apply_overrides
    from hwsim.train.step import simulate_train

    if not changes:
        raise SpecError("give at least one --whatif PATH=VALUE", key="--whatif")
    dev_ovs, clu_ovs, prof_ovs, opts = _split(changes)
    baseline = simulate_train(req)
    cluster = load_cluster(req.cluster) if req.cluster else None
    dev_name = req.device if req.device is not None else (cluster.device if cluster else None)
    device = load_device(dev_name) if dev_name else None
    if dev_ovs:
        if device is None:
            raise SpecError("device changes need --device or --cluster", key="--whatif")
        device = apply_overrides(device, dev_ovs)
    if clu_ovs:
        if cluster is None:
            raise SpecError("cluster.* changes need --cluster", key="--whatif")
        cluster = apply_overrides(cluster, clu_ovs)
    new_req = req.replace(profile=(*req.profile, *prof_ovs), **opts)
    modified = simulate_train(new_req, device=device, cluster=cluster, strict=False)
    return TrainWhatIf(tuple(changes), baseline, modified)
