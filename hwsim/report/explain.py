"""``hwsim explain``: where the time of a run goes, in sentences backed by numbers, and what-ifs
that are re-simulated, never guessed.

A *subject* is one run a simulator can repeat with a change (:mod:`hwsim.report.explain_subjects`:
GEMM, attention, MoE all-to-all, whole-model decode). :func:`explain` runs it once as given
(the *base*), asks the subject for candidate changes chosen by the resource that bounds the base
(tile size or SRAM, bandwidth at the bounding level, overlap or kernel profile, parallel layout,
dtype), runs the simulator again for every candidate, and sorts them by the simulated time.

Every what-if is a :class:`Change`: spec overrides of the device or cluster
(:func:`hwsim.spec.overrides.apply_overrides` paths such as ``memory.hbm.bandwidth: x2``),
overrides of the kernel profile, or replaced run parameters (``dtype: fp8``). The change is kept
in the result so that anyone can repeat it with the simulator directly and get the same number.

Times are seconds, bytes are bytes, rates FLOP/s and B/s; formatting happens in :func:`story`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from hwsim.spec.errors import SpecError, SpecWarning
from hwsim.spec.units import Dim, format_quantity

#: Levers a what-if can pull (the issue's list), for grouping and for the figures.
LEVERS = ("tile/SRAM", "bandwidth", "compute", "overlap/profile", "layout", "dtype")
#: A resource busy at least this share of the run is said to bound it; below, the run is
#: limited by latency (fill, launch, synchronisation), as the simulators define it.
BOUND_SHARE = 0.5


@dataclass(frozen=True)
class Change:
    """What a what-if changes. ``spec``: override paths of the device (or the cluster for an
    all-to-all) → value (``x2``, ``4.8 TB/s``); ``profile``: override paths of the kernel
    profile; ``params``: run parameters replaced (``dtype``, ``kernel``, ``topk_groups``)."""

    spec: Mapping[str, str] = field(default_factory=dict)
    profile: Mapping[str, str] = field(default_factory=dict)
    params: Mapping[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        parts = [f"{k}={v}" for k, v in self.spec.items()]
        parts += [f"profile.{k}={v}" for k, v in self.profile.items()]
        parts += [f"{k}={v}" for k, v in self.params.items()]
        return ", ".join(parts) or "nothing"

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {"spec": dict(self.spec), "profile": dict(self.profile), "params": dict(self.params)}


NO_CHANGE = Change()


@dataclass(frozen=True)
class Outcome:
    """One simulated run, reduced to what the story and the figures need (SI units).

    ``busy_s``: seconds each resource is busy (compute, special, smem, l2, hbm, a link kind,
    overhead...); ``bytes``: bytes moved per memory level or link kind, innermost first;
    ``bandwidth_Bps``: the matching bandwidths (chip or link aggregate); ``work_flops`` and
    ``peak_flops`` place the run on a roofline (0 for a pure communication run);
    ``metric``: the headline rate (name, value) as the simulator's own tables print it;
    ``details``: subject-specific numbers for the narration; ``result``: the simulator's JSON."""

    time_s: float
    bound: str
    busy_s: Mapping[str, float]
    bytes: Mapping[str, float]
    bandwidth_Bps: Mapping[str, float]
    work_flops: float
    peak_flops: float
    metric: tuple[str, float]
    details: Mapping[str, Any] = field(default_factory=dict)
    result: Mapping[str, Any] = field(default_factory=dict)

    def share(self, resource: str) -> float:
        """Fraction of the run ``resource`` is busy."""
        return self.busy_s.get(resource, 0.0) / self.time_s if self.time_s > 0 else 0.0

    def ranked(self) -> list[tuple[str, float]]:
        """Resources by busy share, busiest first."""
        return sorted(((r, self.share(r)) for r in self.busy_s), key=lambda x: -x[1])

    def to_dict(self) -> dict[str, Any]:
        return {
            "time_s": self.time_s,
            "bound": self.bound,
            "busy_s": dict(self.busy_s),
            "busy_share": {r: self.share(r) for r in self.busy_s},
            "bytes": dict(self.bytes),
            "bandwidth_Bps": dict(self.bandwidth_Bps),
            "work_flops": self.work_flops,
            "peak_flops": self.peak_flops,
            "metric": {"name": self.metric[0], "value": self.metric[1]},
            "details": dict(self.details),
            "result": dict(self.result),
        }


def bound_of(busy_s: Mapping[str, float], time_s: float) -> str:
    """The busiest resource, or ``latency`` when none is busy half the time."""
    if not busy_s or time_s <= 0:
        return "latency"
    top = max(busy_s, key=lambda r: busy_s[r])
    return top if busy_s[top] >= BOUND_SHARE * time_s else "latency"


@dataclass(frozen=True)
class Candidate:
    """A what-if a subject proposes: ``relieves`` names the resources it should help."""

    key: str
    title: str
    lever: str
    relieves: tuple[str, ...]
    change: Change
    reason: str


@dataclass(frozen=True)
class WhatIf:
    """A candidate and its re-simulated outcome."""

    candidate: Candidate
    outcome: Outcome
    base_time_s: float

    @property
    def speedup(self) -> float:
        return self.base_time_s / self.outcome.time_s if self.outcome.time_s > 0 else math.inf

    @property
    def delta(self) -> float:
        """Relative change of time: -0.28 = 28 % faster."""
        return self.outcome.time_s / self.base_time_s - 1.0

    def to_dict(self) -> dict[str, Any]:
        c = self.candidate
        return {
            "key": c.key,
            "title": c.title,
            "lever": c.lever,
            "relieves": list(c.relieves),
            "reason": c.reason,
            "change": c.change.to_dict(),
            "time_s": self.outcome.time_s,
            "delta": self.delta,
            "speedup": self.speedup,
            "bound": self.outcome.bound,
            "outcome": self.outcome.to_dict(),
        }


class Subject(Protocol):
    """One run a simulator can repeat with a :class:`Change`."""

    kind: str

    def label(self) -> str:
        """What was run, in a few words ("GEMM 8192×8192×8192 fp16 on NVIDIA A100")."""
        ...

    def params(self) -> dict[str, Any]:
        """The run's parameters, JSON-safe; ``explain --from`` rebuilds the subject from them."""
        ...

    def run(self, change: Change = NO_CHANGE) -> Outcome:
        """Simulate, with ``change`` applied."""
        ...

    def candidates(self, base: Outcome) -> list[Candidate]:
        """What-ifs chosen by what bounds ``base`` (at least three)."""
        ...

    def describe(self, base: Outcome) -> list[str]:
        """Sentences about the base run that only this kind of run can say."""
        ...


@dataclass(frozen=True)
class Explanation:
    """The story of one run: the base outcome, its what-ifs (fastest first) and the sentences."""

    kind: str
    label: str
    params: Mapping[str, Any]
    base: Outcome
    whatifs: tuple[WhatIf, ...]
    sentences: tuple[str, ...]

    @property
    def top(self) -> WhatIf | None:
        return self.whatifs[0] if self.whatifs else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "explain": self.kind,
            "label": self.label,
            "params": dict(self.params),
            "time_s": self.base.time_s,
            "bound": self.base.bound,
            "base": self.base.to_dict(),
            "whatifs": [w.to_dict() for w in self.whatifs],
            "top_suggestion": self.top.candidate.key if self.top else None,
            "story": list(self.sentences),
        }


# ---- formatting ---------------------------------------------------------------------------------
def fmt_time(s: float) -> str:
    return format_quantity(s, Dim.TIME, digits=3).replace(" us", " µs")


def fmt_bytes(b: float) -> str:
    return format_quantity(b, Dim.BYTES, digits=3)


def fmt_bw(bps: float) -> str:
    return format_quantity(bps, Dim.BANDWIDTH, digits=3)


def fmt_pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def fmt_delta(d: float) -> str:
    """``-0.28`` → ``28% faster``; ``+0.05`` → ``5% slower``; tiny → ``no change``."""
    if abs(d) < 0.005:
        return "no change"
    return f"{100 * -d:.0f}% faster" if d < 0 else f"{100 * d:.0f}% slower"


#: Plain names of resources for the sentences.
RESOURCE_NAMES: dict[str, str] = {
    "compute": "the tensor cores",
    "special": "the special-function units (exp)",
    "vector": "the vector ALUs",
    "smem": "shared memory",
    "lds": "the LDS",
    "l2": "the L2",
    "hbm": "HBM",
    "sram": "on-chip SRAM",
    "overhead": "launch and per-CTA overhead",
    "rdma": "the InfiniBand NICs (RDMA)",
    "nvlink": "NVLink",
    "pcie": "the PCIe links to the NICs",
    "sm": "the SMs copying for the all-to-all",
    "latency": "latency (fill, launch, synchronisation)",
    "comm": "communication",
}


#: What "compute" is on each device kind (the matrix datapath a run is bound by).
COMPUTE_NAMES: dict[str, str] = {
    "gpu": "the tensor cores",
    "wafer_scale": "the cores' FMAC datapaths",
    "dataflow": "the PCUs (pattern compute units)",
    "lpu": "the matrix unit (MXM)",
}


def rname(resource: str, kind: str = "gpu") -> str:
    """A resource's plain name; ``compute`` by device ``kind`` (not tensor cores on a wafer)."""
    if resource == "compute":
        return COMPUTE_NAMES.get(kind, "the compute units")
    return RESOURCE_NAMES.get(resource, resource)


def compute_rate_title(kind: str) -> str:
    """The what-if title for twice the matrix peak, in the kind's own words."""
    return "2× tensor-core rate" if kind == "gpu" else "2× matrix rate"


def _bound_sentence(base: Outcome) -> str:
    kind = str(base.details.get("device_kind", "gpu"))
    ranked = [(r, s) for r, s in base.ranked() if s > 0.005]
    busy = ", ".join(f"{rname(r, kind)} {fmt_pct(s)}" for r, s in ranked[:4])
    if base.bound == "latency":
        return (
            f"No resource is busy half of the time ({busy}): the run is latency-bound, waiting on "
            "pipeline fill, launches and synchronisation rather than on a rate."
        )
    text = (
        (
            f"It is {base.bound}-bound: {rname(base.bound, kind)} are busy "
            f"{fmt_pct(base.share(base.bound))} of the time (busy shares: {busy})."
        )
        .replace("HBM are", "HBM is")
        .replace("the L2 are", "the L2 is")
    )
    others = [(r, s) for r, s in ranked if r != base.bound]
    if others and others[0][1] >= 0.8 * base.share(base.bound):
        r, s = others[0]
        text += (
            f" Next busiest: {rname(r)} at {fmt_pct(s)}, close behind; relieve only "
            f"{rname(base.bound)} and the bound moves there."
        )
    return text


def _whatif_sentence(w: WhatIf) -> str:
    c = w.candidate
    moved = ""
    if w.outcome.bound != "latency" and w.outcome.bound not in c.relieves and w.delta < -0.005:
        moved = f"; the bound moves to {w.outcome.bound}"
    return (
        f"{c.title}: {fmt_time(w.outcome.time_s)}, {fmt_delta(w.delta)} "
        f"({c.reason}){moved}. [re-simulated with {c.change.describe()}]"
    )


def story(subject: Subject, base: Outcome, whatifs: Sequence[WhatIf]) -> list[str]:
    """The narration: what ran and how long it took, what bounds it, the subject's own
    sentences, then every what-if with its simulated delta, best first."""
    name, value = base.metric
    out = [f"{subject.label()} takes {fmt_time(base.time_s)} ({value:.4g} {name})."]
    out.append(_bound_sentence(base))
    out += subject.describe(base)
    if whatifs:
        best = whatifs[0]
        if best.delta < -0.005:
            out.append(
                f"The best single change: {best.candidate.title} ({fmt_delta(best.delta)}, "
                "re-simulated)."
            )
        else:
            out.append("None of the what-ifs below makes this run faster.")
        out += [_whatif_sentence(w) for w in whatifs]
    return out


def explain(subject: Subject, on_step: Callable[[str], None] | None = None) -> Explanation:
    """Run ``subject`` as given and once per candidate what-if; return the story."""
    step = on_step or (lambda _label: None)
    base = subject.run(NO_CHANGE)
    if not base.time_s > 0:  # what-ifs are relative to it: nothing to compare against
        raise SpecError(
            f"{subject.label()} takes no time (nothing moves or computes): nothing to explain"
        )
    step("base")
    cands = subject.candidates(base)
    seen: set[str] = set()
    whatifs = []
    for c in cands:
        if c.key in seen:
            continue
        seen.add(c.key)
        with warnings.catch_warnings():
            # a what-if may knowingly make a spec odd (2x SRAM per SM outgrowing the L2)
            warnings.simplefilter("ignore", SpecWarning)
            outcome = subject.run(c.change)
        whatifs.append(WhatIf(c, outcome, base.time_s))
        step(c.key)
    # fastest first; ties keep the subject's order (its most relevant candidate first)
    order = sorted(range(len(whatifs)), key=lambda i: (round(whatifs[i].outcome.time_s, 15), i))
    ranked = tuple(whatifs[i] for i in order)
    return Explanation(
        kind=subject.kind,
        label=subject.label(),
        params=subject.params(),
        base=base,
        whatifs=ranked,
        sentences=tuple(story(subject, base, ranked)),
    )
