"""The answer of ``hwsim size --traffic`` (:mod:`hwsim.serve.sizing`): deployments, what the
step-time model bounds of each said, what the simulations found, and the winners by devices,
power and dollars, with why each runner-up lost. Plain frozen data (SI units)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hwsim.plan.layout import Layout
from hwsim.serve.metrics import SLO
from hwsim.serve.serving import ServeResult
from hwsim.spec.cost import Economics


def slo_limit(slo: SLO, metric: str) -> float | None:
    return next((v for m, _, v in slo.limits if m == metric), None)


@dataclass(frozen=True)
class Plan:
    """One deployment: replicas of a layout at a precision with engine settings."""

    layout: Layout
    replicas: int
    dtype: str
    kv_dtype: str
    max_batch: int
    token_budget: int = 8192
    disaggregate: tuple[int, int] | None = None

    @property
    def instances(self) -> int:
        """Model replicas in all (prefill and decode ones when disaggregated)."""
        return sum(self.disaggregate) if self.disaggregate else self.replicas

    @property
    def devices(self) -> int:
        return self.instances * self.layout.devices

    def __str__(self) -> str:
        pools = (
            f"prefill {self.disaggregate[0]} + decode {self.disaggregate[1]}"
            if self.disaggregate
            else f"{self.replicas}"
        )
        return f"{pools} x {self.layout} {self.dtype}/{self.kv_dtype} batch {self.max_batch}"


@dataclass(frozen=True)
class Outcome:
    """A deployment that was simulated: whether it met the SLOs, why not, and its cost."""

    plan: Plan
    meets: bool
    reason: str
    result: ServeResult
    usd_per_mtok: float | None
    capex_usd_per_mtok: float | None
    rental_usd_per_mtok: float | None
    joules_per_token: float | None
    power_W: float

    @property
    def tokens_per_s_per_user(self) -> float:
        t = self.result.metrics.tpot_s.mean
        return 1.0 / t if t and t > 0 else math.nan

    def to_dict(self) -> dict[str, Any]:
        m = self.result.metrics
        return {
            "deployment": str(self.plan),
            "devices": self.plan.devices,
            "replicas": self.plan.instances,
            "layout": str(self.plan.layout),
            "dtype": self.plan.dtype,
            "kv_dtype": self.plan.kv_dtype,
            "max_batch": self.plan.max_batch,
            "disaggregate": list(self.plan.disaggregate) if self.plan.disaggregate else None,
            "meets_slo": self.meets,
            "reason": self.reason,
            "usd_per_million_output_tokens": self.usd_per_mtok,
            "capex_usd_per_million_output_tokens": self.capex_usd_per_mtok,
            "rental_usd_per_million_output_tokens": self.rental_usd_per_mtok,
            "joules_per_output_token": self.joules_per_token,
            "power_W": self.power_W,
            "output_tokens_per_s": m.output_tokens_per_s,
            "tokens_per_s_per_user": self.tokens_per_s_per_user,
            "ttft_p99_s": m.ttft_s.p99,
            "tpot_p99_s": m.tpot_s.p99,
        }


@dataclass(frozen=True)
class Bound:
    """What the step-time model alone says of one replica deployment."""

    layout: Layout
    dtype: str
    kv_dtype: str
    tpot_floor_s: float
    ttft_floor_s: float
    batch: int  #: largest decode batch within the TPOT limit (and the KV pool)
    tokens_per_s: float  #: one replica's output tokens/s at that batch
    replicas: int
    est_cost: float  #: estimated cost (USD/h where priced, else devices)
    token_budget: int = 8192  #: tokens per iteration whose activations leave room for KV
    pruned: str = ""
    #: what capped ``batch``: 'tpot' (the limit), 'kv' (the cache pool), 'budget' (the
    #: iteration's activations), 'max-batch' (the largest batch searched)
    limit: str = ""


@dataclass(frozen=True)
class SizeAnswer:
    """The answer of :func:`size_for_traffic` (SI units)."""

    model: str
    device: str
    traffic: str
    qps: float | None
    slo: SLO
    economics: Economics
    stages: dict[str, int]
    outcomes: tuple[Outcome, ...]
    bounds: tuple[Bound, ...]
    notes: tuple[str, ...] = field(default=())
    mean_context: int = 1  #: tokens in a sequence's cache, mid-answer on average
    #: re-simulate another deployment with this search's traffic, load, SLO and prices (the
    #: what-ifs of ``hwsim explain serve``)
    simulate: Callable[[Plan], Outcome] | None = field(default=None, repr=False, compare=False)

    @property
    def passing(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.meets]

    def best(self, by: str) -> Outcome | None:
        ok = self.passing
        if not ok:
            return None
        if by == "devices":
            return min(ok, key=lambda o: (o.plan.devices, o.usd_per_mtok or math.inf))
        if by == "power":
            return min(ok, key=lambda o: (o.plan.devices * o.power_W, o.plan.devices))
        priced = [o for o in ok if o.usd_per_mtok is not None]
        return min(priced, key=lambda o: o.usd_per_mtok or math.inf) if priced else None

    def why_not(self) -> str:
        """Why no deployment met the SLOs: the limit and the best value any deployment got."""
        pruned = [b for b in self.bounds if b.pruned]
        n = len(self.bounds)
        if pruned and len(pruned) == n:  # the floor closest to the limit is the best value
            b = min(pruned, key=lambda b: (not b.pruned.startswith("TPOT"), b.tpot_floor_s,
                                           b.ttft_floor_s))  # fmt: skip
            return f"{b.pruned} (the lowest floor of the {n} deployments searched)"
        missed = [o for o in self.outcomes if not o.meets]
        if not missed:
            return "nothing to simulate"
        metric = max(("tpot", "ttft"), key=lambda m: sum(f"{m}_" in o.reason for o in missed))
        alive = [b for b in self.bounds if not b.pruned]
        floor = min(alive, key=lambda b: b.tpot_floor_s if metric == "tpot" else b.ttft_floor_s)
        value = floor.tpot_floor_s if metric == "tpot" else floor.ttft_floor_s
        lim = slo_limit(self.slo, metric)
        return (
            f"{metric.upper()} p99 limit {lim * 1e3 if lim else math.nan:.3g} ms missed by all "
            f"{len(missed)} deployments simulated; the lowest floor is {value * 1e3:.3g} ms "
            f"({floor.layout}, {floor.dtype}): batching, queueing and prompts sharing "
            "iterations add the rest"
        )

    def to_dict(self) -> dict[str, Any]:
        pick = {k: (b.to_dict() if (b := self.best(k)) else None) for k in
                ("devices", "power", "dollars")}  # fmt: skip
        return {
            "model": self.model,
            "device": self.device,
            "traffic": self.traffic,
            "qps": self.qps,
            "slo": str(self.slo),
            "stages": dict(self.stages),
            "best_by_devices": pick["devices"],
            "best_by_power": pick["power"],
            "best_by_dollars": pick["dollars"],
            "candidates": [o.to_dict() for o in self.outcomes],
            "pruned": [
                {"layout": str(b.layout), "dtype": b.dtype, "reason": b.pruned}
                for b in self.bounds
                if b.pruned
            ],
            "economics": {
                "capex_usd_per_hour": self.economics.capex_usd_per_hour,
                "rental_usd_per_hour": self.economics.rental_usd_per_hour,
                "power_W": self.economics.power_W,
                "assumptions": list(self.economics.assumptions),
            },
            "meets_slo": bool(self.passing),
            "why_not": None if self.passing else self.why_not(),
            "notes": list(self.notes),
        }


def lost_because(answer: SizeAnswer) -> list[tuple[Outcome, str]]:
    """Runner-ups and why each lost to the cheapest (an SLO it missed, or its cost)."""
    best = answer.best("dollars") or answer.best("devices")
    out = []
    for o in answer.outcomes:
        if o is best:
            continue
        if not o.meets:
            out.append((o, o.reason))
        elif best is not None and o.usd_per_mtok is not None and best.usd_per_mtok:
            out.append((o, f"{o.usd_per_mtok / best.usd_per_mtok - 1:+.0%} per token"))
        elif best is not None:
            out.append((o, f"{o.plan.devices} devices vs {best.plan.devices}"))
    return out
