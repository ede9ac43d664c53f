"""How far to trust a prediction: calibrated or not, and the error to expect (percent).

Every result carries a :class:`Trust`: whether its (kernel family, architecture) pair was fitted
on a measured table (``calibrated``) and the error to expect, ``expected_error_pct``: the
matching validation suite's MAPE when calibrated, else the leave-one-out error of predicting one
architecture with another's fitted profile (``devices/profiles/trust.yaml``, each value citing
the suite or transfer run it comes from; docs/calibration-transfer.md shows how they are
derived). A whole step combines its ops' errors weighted by their time (errors of ops timed by
the same model are correlated, so they add, not in quadrature).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass

from pydantic import TypeAdapter, ValidationError

from hwsim.plan.workload import OpTiming
from hwsim.spec.errors import SpecError
from hwsim.spec.profiles import profile_entries, profile_path
from hwsim.spec.quantity import Count, Sourced

FAMILY = "trust"
#: the cluster an all-to-all note of the GPU mapper names ("... node(s) of h800-deepseek: ...")
_CLUSTER = re.compile(r"node\(s\) of ([\w.-]+):")
#: the streaming operators the gpu-ops table measured, and the ones timed like each
ELEMENTWISE_CLASS = {
    "softmax": "softmax",
    "layernorm": "layernorm",
    "rmsnorm": "layernorm",
    "gelu": "gelu",
    "swiglu": "gelu",
    "add": "gelu",
}


def elementwise_class(name: str) -> str:
    """The measured operator a streaming op is timed like (softmax, layernorm or gelu)."""
    for word in name.lower().replace("-", " ").replace("_", " ").split():
        if word in ELEMENTWISE_CLASS:
            return ELEMENTWISE_CLASS[word]
        if word.endswith("norm"):
            return "layernorm"
    return "gelu"


@dataclass(frozen=True)
class Trust:
    """Whether a prediction's kernel and architecture were calibrated, and the error to expect
    (percent, MAPE of the suite or of the leave-one-out transfer named in ``basis``)."""

    calibrated: bool
    expected_error_pct: float
    basis: str

    def to_dict(self) -> dict[str, object]:
        return {
            "calibrated": self.calibrated,
            "expected_error_pct": round(self.expected_error_pct, 2),
            "error_basis": self.basis,
        }

    def band(self) -> str:
        """The ``±x%`` tables print beside a prediction."""
        return f"±{self.expected_error_pct:.0f}%" if self.expected_error_pct >= 1 else "±1%"


@functools.lru_cache(maxsize=4)
def _table(kind: str) -> dict[str, Sourced]:
    data, _ = profile_entries(FAMILY)
    sources = data.get("sources", {})
    entry = data.get(kind)
    file = str(profile_path(FAMILY))
    if not isinstance(entry, dict) or not isinstance(sources, dict):
        raise SpecError(f"expected a mapping '{kind}'", file=file)
    adapter: TypeAdapter[Sourced] = TypeAdapter(Count)
    out: dict[str, Sourced] = {}
    for key, raw in entry.items():
        try:
            q = adapter.validate_python(raw)
        except ValidationError as err:
            raise SpecError(err.errors()[0]["msg"], file=file, key=f"{kind}.{key}") from None
        if q.source not in sources:
            raise SpecError(f"source {q.source!r} is not in the sources table", file=file)
        out[str(key)] = q
    return out


def _entry(q: Sourced, calibrated: bool) -> Trust:
    data, _ = profile_entries(FAMILY)
    sources = data.get("sources", {})
    text = sources.get(q.source, q.source) if isinstance(sources, dict) else q.source
    return Trust(calibrated, float(q.value), f"{q.source}: {str(text).split(':')[0]}")


def trust_for(family: str, arch: str, kernel: str = "", detail: str = "") -> Trust:
    """The trust of a ``family`` prediction (``attention``, ``gemm``, ``softmax``,
    ``layernorm``, ``gelu``, ``alltoall``, ``collective``, ``step``) on ``arch`` (for
    ``alltoall``: the cluster; for ``step``: the device), with the kernel and a detail (pass,
    kernel variant) where the calibration depends on them."""
    cal, unc = _table("calibrated"), _table("uncalibrated")
    for key in ("/".join(p for p in (family, kernel, arch, detail) if p),
                "/".join(p for p in (family, kernel, arch) if p),
                f"{family}/{arch}"):  # fmt: skip
        if key in cal:
            return _entry(cal[key], True)
    for key in (f"{family}/{kernel}/{arch}", f"{family}/{kernel}", f"{family}/{arch}", family):
        if key in unc:
            return _entry(unc[key], False)
    return _entry(unc["default"], False)


def combine(parts: Iterable[tuple[Trust, float]]) -> Trust:
    """Time-weighted trust of several predictions (weights: seconds); calibrated only if every
    part with weight is."""
    items = [(t, w) for t, w in parts if w > 0]
    total = sum(w for _, w in items)
    if not items or total <= 0:
        return trust_for("default", "")
    err = sum(t.expected_error_pct * w for t, w in items) / total
    cal = all(t.calibrated for t, _ in items)
    share = sum(w for t, w in items if t.calibrated) / total
    return Trust(
        cal, err, f"time-weighted over the step's ops ({share:.0%} of the time calibrated)"
    )


def timing_trust(timing: OpTiming, arch: str, cluster: str = "") -> Trust:
    """The trust of one op timing from the GPU mapper, read from the model that timed it
    (``timing.source``) and the kernel its notes name."""
    src = timing.source
    if src == "sim:gpu_attention":
        kernel = next((n.split()[1] for n in timing.notes if n.startswith("kernel ") and
                       len(n.split()) == 2), "")  # fmt: skip
        return trust_for("attention", arch, kernel, "fwd")
    if src == "sim:gpu_gemm":
        return trust_for("gemm", arch)
    if src == "sim:streaming":
        return trust_for(elementwise_class(timing.op), arch)
    if src == "sim:alltoall":
        kernel = "normal" if any("normal" in n for n in timing.notes) else "low-latency"
        named = (m.group(1) for n in timing.notes if (m := _CLUSTER.search(n)))
        return trust_for("alltoall", cluster or next(named, ""), kernel)
    if src.startswith("collective"):
        return trust_for("collective", arch)
    return trust_for("default", arch)


def step_trust(ops: Iterable[tuple[OpTiming, float]], arch: str, cluster: str = "") -> Trust:
    """Trust of a serving step from its ops: (timing, times per step) pairs."""
    return combine((timing_trust(t, arch, cluster), t.time_s * n) for t, n in ops)
