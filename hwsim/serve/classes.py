"""``hwsim compare --traffic``: for each workload class (``chat``, ``low-latency``, ``batch``:
``workloads/traffic/``) and each device type, the cheapest deployment that meets the class's
SLOs at its load (:func:`hwsim.serve.sizing.size_for_traffic`), what binds it, and the
Pareto front of per-user speed against cost per token.

Each (class, device) search is independent, so they run as tasks of an executor (this process,
a local process pool, or dask.distributed, as ``hwsim sweep`` runs its points): a task is a
tuple of names and options and returns a plain row, so results do not depend on where they ran.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hwsim.serve.sizing import Outcome, SizeAnswer, decode_bound, size_for_traffic
from hwsim.serve.traffic import load_traffic
from hwsim.spec.cost import load_costs
from hwsim.spec.errors import SpecError

#: The built-in workload classes, in the order tables show them.
CLASSES = ("chat", "low-latency", "batch")
#: A runner: ``map(fn, tasks)`` yielding ``(task index, result)`` as tasks finish.
MapFn = Callable[[Callable[[Any], Any], Sequence[Any]], Iterator[tuple[int, Any]]]

_LIMIT_TEXT = {
    "tpot": "the TPOT limit caps the batch at {batch}",
    "kv": "the KV cache holds {batch} sequences per replica",
    "budget": "on-chip memory holds {tokens}-token iterations ({batch} sequences)",
    "max-batch": "the largest batch searched ({batch})",
}


@dataclass(frozen=True)
class ClassRow:
    """One (class, device) answer (SI units; ``None`` where not known)."""

    cls: str
    device: str
    qps: float | None
    meets_slo: bool
    devices: int | None
    replicas: int | None
    layout: str | None
    dtype: str | None
    deployment: str | None
    usd_per_million_output_tokens: float | None
    capex_usd_per_million_output_tokens: float | None
    rental_usd_per_million_output_tokens: float | None
    joules_per_output_token: float | None
    tokens_per_s_per_user: float | None
    output_tokens_per_s: float | None
    ttft_p99_s: float | None
    tpot_p99_s: float | None
    binding_constraint: str
    #: one sequence's decode step on the chosen deployment (the single-user speed is 1 / it)
    tpot_floor_s: float | None = None
    stages: dict[str, int] = field(default_factory=dict)
    wall_s: float = 0.0

    @property
    def kwh_per_million_output_tokens(self) -> float | None:
        j = self.joules_per_output_token
        return None if j is None else j * 1e6 / 3.6e6

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["class"] = d.pop("cls")
        d["kwh_per_million_output_tokens"] = self.kwh_per_million_output_tokens
        return d

    @staticmethod
    def from_dict(d: dict[str, Any]) -> ClassRow:
        d = dict(d)
        d["cls"] = d.pop("class")
        d.pop("kwh_per_million_output_tokens", None)
        return ClassRow(**d)


def binding(answer: SizeAnswer, best: Outcome, step_bound: str = "") -> str:
    """What decides the winning deployment's size, in words: the SLO a deployment with one
    replica fewer missed, else what capped its batch (the TPOT limit, the KV cache, on-chip
    memory), with the bound of its decode step."""
    same = [
        o
        for o in answer.outcomes
        if o.plan.layout == best.plan.layout
        and o.plan.dtype == best.plan.dtype
        and o.plan.devices < best.plan.devices
        and not o.meets
    ]
    if same:  # replicas were added until the SLOs held: the limit the fewer ones missed binds
        fewer = max(same, key=lambda o: o.plan.devices)
        key = fewer.reason.removeprefix("missed ").split(" ", 1)[0]
        metric, _, stat = key.rpartition("_")
        lim = next((v for m, s, v in answer.slo.limits if m == metric and s == stat), None)
        if lim is None:
            return f"{fewer.reason} with {fewer.plan.instances} replica(s)"
        n = fewer.plan.instances
        return (
            f"{metric.upper()} {stat} <= {lim * 1e3:.3g} ms: {n} replica{'s' * (n > 1)} "
            f"miss{'es' * (n == 1)} it"
        )
    bound = next(
        (b for b in answer.bounds if b.layout == best.plan.layout and b.dtype == best.plan.dtype),
        None,
    )
    if bound is None or not bound.limit:
        return "throughput"
    text = _LIMIT_TEXT[bound.limit].format(batch=bound.batch, tokens=bound.token_budget)
    return f"{text} ({step_bound}-bound decode)" if step_bound else text


Task = tuple[str, str, str, float | None, str | None, str | None, str | None]


def class_task(task: Task) -> dict[str, Any]:
    """One (class, device) search as a plain row (module level: executors pickle it)."""
    model, cls, device, qps, price, hours, costs = task
    t0 = time.perf_counter()
    ans = size_for_traffic(model, device, cls, qps=qps, price=price, amortization=hours,
                           costs=Path(costs) if costs else None)  # fmt: skip
    best = ans.best("dollars") or ans.best("devices")
    row: dict[str, Any] = {
        "cls": cls,
        "device": device,
        "qps": ans.qps,
        "meets_slo": best is not None,
        "stages": dict(ans.stages),
    }
    if best is None:
        row.update(dict.fromkeys(_OUTCOME_KEYS))
        row["binding_constraint"] = f"no deployment meets the SLOs: {ans.why_not()}"
    else:
        d = best.to_dict()
        row.update({k: d[k] for k in _OUTCOME_KEYS if k in d})
        row["deployment"] = d["deployment"]
        kind = decode_bound(model, device, best.plan, best.plan.max_batch, ans.mean_context)
        row["binding_constraint"] = binding(ans, best, kind)
        bound = next(b for b in ans.bounds
                     if (b.layout, b.dtype) == (best.plan.layout, best.plan.dtype))  # fmt: skip
        row["tpot_floor_s"] = bound.tpot_floor_s
    row["wall_s"] = time.perf_counter() - t0
    return row


_OUTCOME_KEYS = (
    "devices", "replicas", "layout", "dtype", "deployment", "usd_per_million_output_tokens",
    "capex_usd_per_million_output_tokens", "rental_usd_per_million_output_tokens",
    "joules_per_output_token", "tokens_per_s_per_user", "output_tokens_per_s", "ttft_p99_s",
    "tpot_p99_s",
)  # fmt: skip


@dataclass(frozen=True)
class ClassComparison:
    """Every (class, device) row of one model."""

    model: str
    classes: tuple[str, ...]
    devices: tuple[str, ...]
    rows: tuple[ClassRow, ...]
    wall_s: float = 0.0

    def of(self, cls: str) -> list[ClassRow]:
        return [r for r in self.rows if r.cls == cls]

    def winner(self, cls: str) -> ClassRow | None:
        """The cheapest row of a class that met its SLOs (by dollars; unpriced rows only when
        nothing priced met them, then by energy per token)."""
        ok = [r for r in self.of(cls) if r.meets_slo]
        priced = [r for r in ok if r.usd_per_million_output_tokens is not None]
        if priced:
            return min(priced, key=lambda r: r.usd_per_million_output_tokens or math.inf)
        return min(ok, key=lambda r: r.joules_per_output_token or math.inf) if ok else None

    def pareto(self, cls: str, cost: str = "usd_per_million_output_tokens") -> list[ClassRow]:
        """Rows of ``cls`` that no other row beats on both per-user speed (higher) and ``cost``
        (lower): the front the chart draws."""
        pts = [
            r
            for r in self.of(cls)
            if r.meets_slo and getattr(r, cost) is not None and r.tokens_per_s_per_user
        ]
        front = []
        for r in pts:
            rc, ru = getattr(r, cost), r.tokens_per_s_per_user or 0.0
            dominated = any(
                getattr(o, cost) <= rc
                and (o.tokens_per_s_per_user or 0.0) >= ru
                and (getattr(o, cost) < rc or (o.tokens_per_s_per_user or 0.0) > ru)
                for o in pts
            )
            if not dominated:
                front.append(r)
        return sorted(front, key=lambda r: r.tokens_per_s_per_user or 0.0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "classes": list(self.classes),
            "devices": list(self.devices),
            "rows": [r.to_dict() for r in self.rows],
            "winners": {c: (w.device if (w := self.winner(c)) else None) for c in self.classes},
            "wall_s": self.wall_s,
        }


def parse_classes(text: str) -> list[str]:
    """``chat,low-latency,batch`` (or traffic files) → names, each checked to load."""
    names = [c.strip() for c in text.split(",") if c.strip()]
    if not names:
        raise SpecError(f"--traffic {text!r}: expected classes like chat,low-latency,batch")
    for n in names:
        load_traffic(n)  # a clear error for an unknown class, before any search
    return names


def compare_classes(
    model: str,
    classes: Sequence[str],
    devices: Sequence[str],
    *,
    qps: float | None = None,
    price: str | None = None,
    hours: str | None = None,
    costs: Path | None = None,
    map_fn: MapFn | None = None,
    progress: Callable[[ClassRow], None] | None = None,
) -> ClassComparison:
    """Size every (class, device) pair (see the module docstring); ``map_fn`` runs the tasks
    (default: one after another here)."""
    t0 = time.perf_counter()
    cost_file = str(costs) if costs is not None else None
    if costs is not None:
        load_costs(costs)  # a bad cost file: one clear error before any search
    tasks = [(model, c, d, qps, price, hours, cost_file) for c in classes for d in devices]

    def serial(fn: Callable[[Any], Any], ts: Sequence[Any]) -> Iterator[tuple[int, Any]]:
        for i, t in enumerate(ts):
            yield i, fn(t)

    rows: list[ClassRow | None] = [None] * len(tasks)
    for i, res in (map_fn or serial)(class_task, tasks):
        rows[i] = ClassRow.from_dict({"class": res.pop("cls"), **res})
        if progress is not None:
            progress(rows[i])  # type: ignore[arg-type]
    from hwsim.spec.model import load_model_config

    return ClassComparison(
        load_model_config(model).name,
        tuple(classes),
        tuple(devices),
        tuple(r for r in rows if r is not None),
        time.perf_counter() - t0,
    )
