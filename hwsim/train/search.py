"""``hwsim train --search`` and ``--target-days``: the fastest layout that fits, and the fewest
GPUs that train a number of tokens by a deadline.

The search enumerates TP (within a node, dividing the heads), CP, PP (dividing the layers),
virtual stages, EP (MoE), micro-batch, recompute and ZeRO stage for the request's model, GPUs
and global batch, then:

1. refuses what is invalid (:func:`hwsim.plan.train_layout.check_train_layout`) and what does
   not fit, by the memory arithmetic alone (no timing); of the layouts that differ only in
   recompute or ZeRO stage it keeps the cheapest that fits (less recompute, then ZeRO-1 before
   ZeRO-3: each costs time and is only worth its memory);
2. times every survivor's passes (each distinct op once) and bounds its step from below by its
   busiest rank's tasks back to back (:func:`hwsim.train.step.busy_bound_s`);
3. plays the pipelines in order of that bound and stops when the next bound is no better than
   the best step found (branch and bound): the answer is exact for the enumerated space.

Steps 2-3 run on a local process pool or dask.distributed (:mod:`hwsim.sweep.executors`), in
batches of the executor's workers. ``--target-days D --tokens T`` doubles the GPU count from one
node until the fastest layout trains ``T`` tokens within ``D`` days, then bisects.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from hwsim.plan.train_layout import TrainLayout
from hwsim.spec.errors import SpecError
from hwsim.train.request import TrainRequest
from hwsim.train.result import TrainResult

RECOMPUTE_ORDER = ("none", "selective", "full")
ZERO_ORDER = (1, 3)
MICRO_BATCHES = (1, 2, 4)
MAX_PP = 64


@dataclass(frozen=True)
class SearchAnswer:
    """The fastest layouts found and what the search did."""

    model: str
    gpus: int
    candidates: int
    invalid: int
    pruned_memory: int
    pruned_bound: int
    simulated: int
    best: tuple[TrainResult, ...]
    wall_s: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "gpus": self.gpus,
            "candidates": self.candidates,
            "invalid": self.invalid,
            "pruned_memory": self.pruned_memory,
            "pruned_bound": self.pruned_bound,
            "simulated": self.simulated,
            "wall_s": self.wall_s,
            "best": [r.to_dict() for r in self.best],
        }


def _divisors(n: int, cap: int) -> list[int]:
    return [d for d in range(1, min(n, cap) + 1) if n % d == 0]


def candidate_requests(req: TrainRequest) -> Iterator[TrainRequest]:
    """Every layout × schedule × micro-batch × recompute × ZeRO of the module docstring (in
    that nesting; recompute and ZeRO vary fastest)."""
    from hwsim.train.step import model_of

    model = model_of(req)
    per_node = 8
    a = model.attention
    gpus, s = req.gpus, req.seqlen
    dense = model.moe is None or model.moe_layers < model.layers
    tps = [t for t in (1, 2, 4, 8) if t <= per_node and gpus % t == 0 and a.heads % t == 0
           and (not dense or model.ffn.intermediate % t == 0)]  # fmt: skip
    cps = [c for c in (1, 2, 4, 8) if c == 1 or (s % (2 * c) == 0 and s // c >= 4096)]
    for tp in tps:
        for cp in cps:
            if gpus % (tp * cp):
                continue
            for pp in _divisors(gpus // (tp * cp), MAX_PP):
                if req.pp_split == "exact" and model.layers % pp:
                    continue
                dp = gpus // (tp * cp * pp)
                for ep in _eps(model, tp * cp * dp):
                    for sched, vpp in _schedules(req, model.layers, pp):
                        for mb in MICRO_BATCHES:
                            if req.global_batch % (dp * mb):
                                continue
                            lay = TrainLayout(tp=tp, pp=pp, dp=dp, cp=cp, ep=ep)
                            for rec in RECOMPUTE_ORDER:
                                for zero in ZERO_ORDER:
                                    yield req.replace(
                                        layout=str(lay).replace(f",vpp={lay.vpp}", ""),
                                        vpp=vpp if vpp > 1 else None, schedule=sched,
                                        micro_batch=mb, recompute=rec, zero=zero,
                                        timeline=False,
                                    )  # fmt: skip


def _eps(model: Any, stage: int) -> list[int]:
    if model.moe is None:
        return [1]
    e = model.moe.n_routed_experts
    out = [d for d in (1, 2, 4, 8, 16, 32, 64, 128, 256) if d <= stage and stage % d == 0
           and e % d == 0]  # fmt: skip
    return out[-3:]  # the widest expert parallelism the stage allows, and two below it


def _schedules(req: TrainRequest, layers: int, pp: int) -> list[tuple[str, int]]:
    if pp == 1:
        return [("1f1b", 1)]
    if req.schedule not in ("1f1b", "interleaved"):
        return [(req.schedule, 1)]
    out = [("1f1b", 1)]
    for v in (2, 4):
        if req.pp_split == "balanced" or layers % (pp * v) == 0:
            out.append(("interleaved", v))
    return out


def _key(r: TrainRequest) -> tuple[object, ...]:
    return (r.layout, r.vpp, r.schedule, r.micro_batch)


def _bound_task(r: TrainRequest) -> tuple[str, float]:
    """('ok', lower bound) or ('nofit'|'invalid', 0): runs in a worker."""
    from hwsim.train.step import busy_bound_s, prepare

    try:
        return "ok", busy_bound_s(prepare(r))
    except SpecError as err:
        return ("nofit" if "does not fit" in str(err) else "invalid"), 0.0


def _sim_task(r: TrainRequest) -> TrainResult | None:
    from hwsim.train.step import simulate_train

    try:
        return simulate_train(r)
    except SpecError:
        return None


def _fits(r: TrainRequest) -> str:
    """'ok', 'nofit' or 'invalid' by the memory arithmetic (no timing)."""
    from hwsim.train.step import memory_only

    try:
        return "ok" if memory_only(r).fits else "nofit"
    except SpecError:
        return "invalid"


def search_layouts(
    req: TrainRequest, *, executor: str = "local", workers: int = 1, keep: int = 10
) -> SearchAnswer:
    """The fastest layouts that fit (module docstring), best first."""
    from hwsim.sweep.executors import make_executor
    from hwsim.train.step import model_of

    t0 = time.perf_counter()
    model = model_of(req)
    survivors: list[TrainRequest] = []
    seen: set[tuple[object, ...]] = set()
    n = invalid = nofit = 0
    for r in candidate_requests(req):
        n += 1
        if _key(r) in seen:
            continue  # a cheaper recompute/ZeRO of this layout already fits
        status = _fits(r)
        if status == "ok":
            survivors.append(r)
            seen.add(_key(r))
        elif status == "invalid":
            invalid += 1
        else:
            nofit += 1
    ex = make_executor(executor, workers=workers)
    try:
        bounds: list[tuple[float, int]] = []
        for i, (status, lb) in ex.map_unordered(_bound_task, survivors):
            if status == "ok":
                bounds.append((lb, i))
            elif status == "nofit":
                nofit += 1
            else:
                invalid += 1
        bounds.sort()
        results: list[TrainResult] = []
        best = math.inf
        pos = 0
        simulated = 0
        batch = max(1, ex.workers)
        while pos < len(bounds) and bounds[pos][0] < best:
            chunk = [survivors[i] for lb, i in bounds[pos : pos + batch] if lb < best]
            pos += batch
            for _, res in ex.map_unordered(_sim_task, chunk):
                simulated += 1
                if res is not None:
                    results.append(res)
                    best = min(best, res.step_time_s)
        pruned = len(bounds) - simulated
    finally:
        ex.close()
    results.sort(key=lambda r: r.step_time_s)
    return SearchAnswer(model.name, req.gpus, n, invalid, nofit, pruned, simulated,
                        tuple(results[:keep]), time.perf_counter() - t0)  # fmt: skip


@dataclass(frozen=True)
class TargetAnswer:
    """The fewest GPUs found that train the tokens by the deadline, and each count tried."""

    gpus: int
    result: TrainResult
    tried: tuple[tuple[int, float | None], ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {"gpus": self.gpus, "result": self.result.to_dict(),
                "tried": [{"gpus": n, "days": d} for n, d in self.tried]}  # fmt: skip


def fewest_gpus(
    req: TrainRequest, days: float, *, executor: str = "local", workers: int = 1,
    max_gpus: int = 1 << 17,
) -> TargetAnswer:  # fmt: skip
    """The fewest GPUs (a multiple of a node) whose fastest layout trains ``req.tokens`` within
    ``days`` days (module docstring)."""
    if req.tokens is None:
        raise SpecError("--target-days needs --tokens", key="--target-days")
    if days <= 0:
        raise SpecError(f"expected a positive number of days, got {days}", key="--target-days")
    tried: list[tuple[int, float | None]] = []
    cache: dict[int, TrainResult | None] = {}

    def best_at(n: int) -> TrainResult | None:
        if n not in cache:
            ans = search_layouts(req.replace(gpus=n, layout=None), executor=executor,
                                 workers=workers, keep=1)  # fmt: skip
            cache[n] = ans.best[0] if ans.best else None
            r = cache[n]
            tried.append((n, r.days if r is not None else None))
        return cache[n]

    def ok(n: int) -> bool:
        r = best_at(n)
        return r is not None and r.days is not None and r.days <= days

    node = 8
    hi = node
    while not ok(hi):
        hi *= 2
        if hi > max_gpus:
            raise SpecError(
                f"no layout of up to {max_gpus} GPUs trains {req.tokens:.3g} tokens in {days} days",
                key="--target-days",
            )
    lo = hi // 2 if hi > node else 0
    while hi - lo > node:  # bisect on whole nodes
        mid = (lo + hi) // 2 // node * node
        if mid <= lo:
            break
        if ok(mid):
            hi = mid
        else:
            lo = mid
    res = best_at(hi)
    assert res is not None
    return TargetAnswer(hi, res, tuple(tried))
