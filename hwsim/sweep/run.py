"""Run a sweep: points → units (deduplicated, looked up in the cache) → tasks on an executor →
columns. Returns a frozen :class:`SweepResult`; writing files is the CLI's and report's job.

For every metric kind each point gets a unit key (:mod:`hwsim.sweep.cache`). Points with the
same key are one unit: an analytic kind evaluates its missing units as vectorised batches of up
to ``chunk_size`` points; a simulator kind runs each missing unique sub-problem once (several per
task, so a pool of W workers gets about 4W tasks). Results come back in task order whatever the
executor, then are spread back to the points; fresh and cached values take the same path
(Python scalars), so a rerun and a cold run give identical tables.

Bounded work: the point count is checked before one point exists (:mod:`hwsim.sweep.sizing`,
``--max-points``), and the simulations to run before the first task (``--max-sims``). Each task
carries the driver's :class:`~hwsim.spec.limits.Limits` to its worker, where a unit that is
refused for its size (:class:`~hwsim.spec.limits.LimitExceeded`: over ``--max-events`` or
``--max-memory``) or runs out of memory is a *failed unit*: its metrics are NaN, the reason goes to
the table's ``error`` column, it is not cached, and the sweep goes on. Only when every unit of a
metric kind fails is the sweep refused, with the first reason.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

import hwsim
from hwsim.spec.device import Device
from hwsim.spec.errors import SpecError, one_line
from hwsim.spec.fingerprint import code_version
from hwsim.spec.limits import LimitExceeded, Limits, current_limits, use
from hwsim.spec.override_paths import PROFILE_PREFIX
from hwsim.sweep import expr
from hwsim.sweep.cache import SweepCache, canonical_json, unit_key
from hwsim.sweep.executors import Executor, LocalExecutor
from hwsim.sweep.kinds import CLUSTER_PREFIX, Batch, MetricKind, get_kind
from hwsim.sweep.points import PointSet, build_points, column, device_columns
from hwsim.sweep.sensitivity import Elasticity, elasticities
from hwsim.sweep.sizing import check_sims
from hwsim.sweep.spec import SweepFile

#: progress(done_units, total_units)
ProgressFn = Callable[[int, int], None]
#: analytic points per task: vectorised work costs microseconds per point, so only very large
#: sweeps are worth splitting across processes
DEFAULT_CHUNK = 20_000
MAX_POINTS_PER_TASK = 8
#: the table column naming, per point, the metric kinds that failed on it and why
ERROR_COLUMN = "error"
#: what makes one unit fail (and the sweep go on) instead of stopping the sweep: work over a
#: limit (events, memory), or memory that ran out after all (an estimate was wrong). Other
#: errors (bad input) stop the sweep, as before.
UNIT_FAILURES = (LimitExceeded, MemoryError)


@dataclass(frozen=True)
class Task:
    """One unit of executor work (picklable): a batch of units of one metric kind, with the
    limits of the command that made it (a worker runs it under them)."""

    kind: str
    options: Mapping[str, Any]
    devices: tuple[Device, ...]
    device_index: NDArray[np.intp]
    params: Mapping[str, NDArray[Any]] | None = None  #: analytic kinds: parameter columns
    items: tuple[Mapping[str, Any], ...] | None = None  #: point kinds: sub-problems
    seeds: tuple[int, ...] = ()
    limits: Limits = field(default_factory=Limits)

    @property
    def size(self) -> int:
        return int(self.device_index.shape[0])


@dataclass(frozen=True)
class TaskResult:
    """What a task returns: one list of Python scalars per metric (a value per unit, NaN for a
    failed one) and per unit the reason it failed (``""``: it did not)."""

    values: dict[str, list[Any]]
    errors: list[str]


def _reason(err: BaseException) -> str:
    if isinstance(err, MemoryError):
        return "ran out of memory (make the problem smaller)"
    return one_line(str(err))


def run_task(task: Task) -> TaskResult:
    """Evaluate one task (in a worker, under ``task.limits``); a unit that fails with a
    refusal or out of memory gets NaN metrics and its reason, the others their values."""
    with use(task.limits):
        kind = get_kind(task.kind)(task.options)
        if task.params is not None:
            return _run_batch(kind, task)
        assert task.items is not None
        out: dict[str, list[Any]] = {}
        errors = [""] * task.size
        for i, (d, item, seed) in enumerate(
            zip(task.device_index, task.items, task.seeds, strict=True)
        ):
            try:
                values = kind.evaluate_point(task.devices[d], item, seed)
            except UNIT_FAILURES as err:
                errors[i] = _reason(err)
                continue
            for m, v in values.items():
                out.setdefault(m, [math.nan] * task.size)[i] = _scalar(v)
        return TaskResult(out, errors)


def _run_batch(kind: MetricKind, task: Task) -> TaskResult:
    """An analytic kind's batch; if it fails, each unit alone, so only the bad ones fail."""
    assert task.params is not None
    try:
        cols = kind.evaluate_batch(Batch(task.devices, task.device_index, task.params))
        return TaskResult({m: np.asarray(v).tolist() for m, v in cols.items()}, [""] * task.size)
    except UNIT_FAILURES as err:
        if task.size == 1:
            return TaskResult({}, [_reason(err)])
    out: dict[str, list[Any]] = {}
    errors = [""] * task.size
    for i in range(task.size):
        one = Batch(
            task.devices,
            task.device_index[i : i + 1],
            {n: v[i : i + 1] for n, v in task.params.items()},
        )
        try:
            cols = kind.evaluate_batch(one)
        except UNIT_FAILURES as err:
            errors[i] = _reason(err)
            continue
        for m, v in cols.items():
            out.setdefault(m, [math.nan] * task.size)[i] = _scalar(np.asarray(v)[0])
    return TaskResult(out, errors)


def _scalar(v: Any) -> Any:
    return v.item() if hasattr(v, "item") and callable(v.item) else v


@dataclass(frozen=True)
class KindStats:
    """What one metric kind cost: points, unique units, cache hits and computed units."""

    name: str
    kind: str
    simulator: bool
    points: int
    units: int
    cache_hits: int
    computed: int
    tasks: int
    wall_s: float
    failed: int = 0  #: units that failed (NaN metrics, reason in the error column)


@dataclass(frozen=True)
class SweepStats:
    points: int  #: evaluated points (after input-only constraints)
    total_points: int  #: before constraints
    dropped: int
    units: int  #: unique units over all kinds
    cache_hits: int
    computed: int
    wall_s: float
    executor: str
    workers: int
    kinds: tuple[KindStats, ...]
    failed: int = 0  #: points with at least one failed metric kind (see the error column)

    @property
    def hit_rate(self) -> float:
        return self.cache_hits / self.units if self.units else 0.0


@dataclass(frozen=True)
class SweepResult:
    """A finished sweep: columns (inputs, then metrics, then ``feasible``) and statistics."""

    name: str
    columns: Mapping[str, NDArray[Any]]
    inputs: tuple[str, ...]
    metrics: tuple[str, ...]
    stats: SweepStats
    meta: Mapping[str, Any]
    warnings: tuple[str, ...] = ()
    sensitivity: tuple[Elasticity, ...] = field(default=())

    @property
    def n(self) -> int:
        return self.stats.points

    def rows(self, limit: int | None = None) -> list[dict[str, Any]]:
        names = list(self.columns)
        n = self.n if limit is None else min(limit, self.n)
        return [{c: _scalar(self.columns[c][i]) for c in names} for i in range(n)]


def kind_id(spec_label: str, kind: MetricKind, options: Mapping[str, Any]) -> str:
    """The kind part of the cache key: name, version, options and code version."""
    return (
        f"{kind.name}:{kind.version}:{canonical_json(dict(options))}:"
        f"{code_version(kind.code_paths)}"
    )


def _strip_text(obj: Any) -> Any:
    """A spec dump without the human text of sourced numbers (text, source, derived, note):
    ``x2`` and ``6.7 TB/s`` are the same number and must hit the same cache entry."""
    if isinstance(obj, dict):
        if "dim" in obj and "value" in obj:
            return obj["value"]
        return {k: _strip_text(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_strip_text(v) for v in obj]
    return obj


def device_fingerprints(devices: Sequence[Device], fields: tuple[str, ...] | None) -> list[str]:
    """Per device, a hash of the numbers a kind reads (``fields``: top-level spec sections;
    None: all but citations and descriptions)."""
    skip = {"sources", "description", "vendor"}
    out = []
    for d in devices:
        include = set(fields) if fields is not None else set(type(d).model_fields) - skip
        data = _strip_text(d.model_dump(include=include, mode="json"))
        out.append(hashlib.sha256(canonical_dump(data).encode()).hexdigest()[:32])
    return out


def canonical_dump(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)


def _unit_keys(
    pts: PointSet, kind: MetricKind, kid: str, fps: Sequence[str]
) -> tuple[list[str], list[dict[str, Any]]]:
    """Per point: its unit key and (point kinds) its sub-problem parameters."""
    names = list(kind.params)
    dev_fp = [fps[i] for i in pts.device_index.tolist()]
    if kind.vectorised and type(kind).subproblem is MetricKind.subproblem:
        # analytic kinds: all their parameters matter. Numbers go in as float64 bytes (8 and
        # 8.0 key alike), other columns as text, the device as its fingerprint index
        numeric = [n for n in names if np.issubdtype(pts.params[n].dtype, np.number)]
        other = [n for n in names if n not in numeric]
        mat = np.column_stack([pts.params[n].astype(float) for n in numeric] or [np.zeros(pts.n)])
        texts = [[str(v) for v in pts.params[n].tolist()] for n in other]
        head = f"{kid}|{','.join(numeric)}|{','.join(other)}|".encode()
        rows = np.ascontiguousarray(mat).tobytes()
        width = mat.shape[1] * 8
        fp_bytes = [f.encode() for f in dev_fp]
        keys = []
        for p, extra in enumerate(zip(*texts, strict=True) if texts else [()] * pts.n):
            h = hashlib.sha256(head)
            h.update(fp_bytes[p])
            h.update(rows[p * width : (p + 1) * width])
            h.update("\x1f".join(extra).encode())
            keys.append(h.hexdigest())
        return keys, []
    cols = [pts.params[n].tolist() for n in names]
    # a cluster kind's sub-problem also holds the point's axes.cluster values (cluster.<path>),
    # a profile-reading kind's its profile.<path> spec axes
    cl_names = [n for n in pts.params if n.startswith(CLUSTER_PREFIX)] if kind.reads_cluster else []
    if kind.reads_profile:
        cl_names += [n for n in pts.params if n.startswith(PROFILE_PREFIX)]
    cl_cols = [pts.params[n].tolist() for n in cl_names]
    keys, subs = [], []
    for p, vals in enumerate(zip(*cols, strict=True) if cols else [()] * pts.n):
        sub = kind.subproblem(dict(zip(names, vals, strict=True)))
        sub.update((n, c[p]) for n, c in zip(cl_names, cl_cols, strict=True))
        keys.append(unit_key(kid, dev_fp[p], canonical_json(sub)))
        subs.append(sub)
    return keys, subs


def _seed(sweep_seed: int, kind: MetricKind, key: str, sub: Mapping[str, Any]) -> int:
    """A point's seed: from the sweep seed and its unit key, or only the sub-problem values
    that shape the random draw (``kind.seed_params``), so points that differ elsewhere (a link
    speed) see the same draw: common random numbers, a smoother sweep."""
    basis = (
        key if kind.seed_params is None else canonical_json({p: sub[p] for p in kind.seed_params})
    )
    return int(hashlib.sha256(f"{sweep_seed}:{basis}".encode()).hexdigest()[:8], 16)


def _compact(
    devices: Sequence[Device], index: NDArray[np.intp]
) -> tuple[tuple[Device, ...], NDArray[np.intp]]:
    """Only the devices a task uses, with the index remapped."""
    used, inverse = np.unique(index, return_inverse=True)
    return tuple(devices[i] for i in used), inverse.astype(np.intp)


def _tasks(
    kind: MetricKind, label_opts: Mapping[str, Any], pts: PointSet, reps: list[int],
    subs: list[dict[str, Any]], seeds: list[int], chunk: int, workers: int,
) -> list[Task]:  # fmt: skip
    """Tasks for the missing units (``reps``: one representative point per unit), each with
    the limits in force here (a worker does not see this process's context)."""
    lim = current_limits()
    rep = np.asarray(reps, dtype=np.intp)
    out = []
    if kind.vectorised:
        for i in range(0, rep.size, chunk):
            sel = rep[i : i + chunk]
            devs, idx = _compact(pts.devices, pts.device_index[sel])
            params = {n: pts.params[n][sel] for n in kind.params}
            out.append(Task(kind.name, dict(label_opts), devs, idx, params=params, limits=lim))
        return out
    per = max(1, min(MAX_POINTS_PER_TASK, math.ceil(rep.size / max(1, 4 * workers))))
    for i in range(0, rep.size, per):
        js = list(range(i, min(i + per, rep.size)))
        devs, idx = _compact(pts.devices, pts.device_index[rep[js]])
        out.append(
            Task(
                kind.name,
                dict(label_opts),
                devs,
                idx,
                items=tuple(subs[j] for j in js),
                seeds=tuple(seeds[j] for j in js),
                limits=lim,
            )
        )
    return out


def run_sweep(
    sweep: SweepFile,
    *,
    executor: Executor | None = None,
    cache: SweepCache | None = None,
    progress: ProgressFn | None = None,
    chunk_size: int = DEFAULT_CHUNK,
) -> SweepResult:
    """Evaluate every point of ``sweep`` (see the module docstring)."""
    t0 = time.perf_counter()
    own = executor is None
    ex: Executor = executor if executor is not None else LocalExecutor(1)
    cache = cache if cache is not None else SweepCache(None)
    kinds = sweep.kinds()
    pts = build_points(sweep, kinds)
    plans = []
    options = [sweep.kind_options(i) for i in range(len(sweep.metrics))]
    for spec, kind, opts in zip(sweep.metrics, kinds, options, strict=True):
        kid = kind_id(spec.label, kind, opts)
        fps = device_fingerprints(pts.devices, kind.device_fields)
        keys, subs = _unit_keys(pts, kind, kid, fps)
        first: dict[str, int] = {}
        for p, k in enumerate(keys):
            first.setdefault(k, p)
        cached = cache.get_many(list(first))
        missing = [k for k in first if k not in cached]
        plans.append((spec, kind, opts, keys, subs, first, cached, missing))
    check_sims([(p[0].label, len(p[-1])) for p in plans if not p[1].vectorised])
    total = sum(len(p[-1]) for p in plans)
    done = 0
    if progress:
        progress(0, total)
    columns: dict[str, NDArray[Any]] = dict(pts.inputs)
    point_errors: list[list[str]] = []  #: per kind with failures, "label: reason" per point
    stats = []
    try:
        for spec, kind, opts, keys, subs, first, cached, missing in plans:
            tk = time.perf_counter()
            order = list(first)  # unique keys; spread back to the points with one gather
            where = {k: i for i, k in enumerate(order)}
            wanted = spec.columns or list(kind.metrics)
            store = {m: np.full(len(order), math.nan, dtype=object) for m in kind.metrics}
            failed = np.full(len(order), "", dtype=object)
            for k, v in cached.items():
                for m, x in v.items():
                    if m in store:
                        store[m][where[k]] = x
            reps = [first[k] for k in missing]
            point_kind = not kind.vectorised
            seeds = (
                [_seed(sweep.sampling.seed, kind, k, subs[first[k]]) for k in missing]
                if point_kind
                else []
            )
            items = [subs[r] for r in reps] if point_kind else []
            tasks = _tasks(kind, opts, pts, reps, items, seeds, chunk_size, ex.workers)
            offsets = np.cumsum([0] + [t.size for t in tasks])
            for ti, result in ex.map_unordered(run_task, tasks):
                done_keys = missing[offsets[ti] : offsets[ti + 1]]
                at = np.fromiter((where[k] for k in done_keys), dtype=np.intp)
                for m, vals in result.values.items():
                    if m in store:
                        store[m][at] = vals
                failed[at] = result.errors
                if cache.enabled:  # a failed unit is not cached: a larger budget may do it
                    names = list(result.values)
                    rows = zip(*result.values.values(), strict=True) if names else ()
                    cache.put_many(
                        (k, dict(zip(names, row, strict=True)))
                        for k, row, e in zip(done_keys, rows, result.errors, strict=False)
                        if not e
                    )
                done += len(done_keys)
                if progress:
                    progress(done, total)
            inverse = np.fromiter((where[k] for k in keys), dtype=np.intp, count=len(keys))
            for m in wanted:
                columns[f"{spec.label}.{m}"] = column(store[m].tolist())[inverse]
            n_failed = int(np.count_nonzero(failed != ""))
            if n_failed and n_failed == len(order):
                first_reason = next(e for e in failed if e)
                raise SpecError(f"metric '{spec.label}' failed on every point: {first_reason}")
            if n_failed:
                point_errors.append(
                    [f"{spec.label}: {e}" if e else "" for e in failed[inverse].tolist()]
                )
            stats.append(
                KindStats(spec.label, kind.name, not kind.vectorised, pts.n, len(first),
                          len(cached), len(missing), len(tasks), time.perf_counter() - tk,
                          n_failed)
            )  # fmt: skip
    finally:
        if own:
            ex.close()
    metric_names = tuple(c for c in columns if c not in pts.inputs)
    n_failed_points = 0
    if point_errors:  # which points failed, and why, as one text column after the metrics
        errs = ["; ".join(e for e in per if e) for per in zip(*point_errors, strict=True)]
        columns[ERROR_COLUMN] = np.array(errs, dtype=object)
        n_failed_points = sum(1 for e in errs if e)
    post = [c for c in sweep.constraints if expr.names(c) & set(metric_names)]
    if post:
        env = {**pts.params, **columns}
        needed = set().union(*(expr.names(c) for c in post)) - set(env)
        env.update(device_columns(needed, pts.devices, pts.device_index))
        ok = np.ones(pts.n, dtype=bool)
        for c in post:
            ok &= expr.evaluate(c, env, pts.n)
        columns["feasible"] = ok
    inputs = tuple(pts.inputs)
    numeric_inputs = [
        c for c in inputs if np.issubdtype(columns[c].dtype, np.number) and c != "point"
    ]
    sens = tuple(e for m in sweep.sensitivity for e in elasticities(columns, m, numeric_inputs))
    units = sum(s.units for s in stats)
    hits = sum(s.cache_hits for s in stats)
    st = SweepStats(
        points=pts.n,
        total_points=pts.total,
        dropped=pts.dropped,
        units=units,
        cache_hits=hits,
        computed=units - hits,
        wall_s=time.perf_counter() - t0,
        executor=ex.describe(),
        workers=ex.workers,
        kinds=tuple(stats),
        failed=n_failed_points,
    )
    meta = {
        "name": sweep.name,
        "description": sweep.description or "",
        "inputs": list(inputs),
        "metrics": list(metric_names),
        "hwsim_version": hwsim.__version__,
        "base": sweep.base.model_dump(),
        "workload": dict(sweep.workload),
        "sampling": sweep.sampling.model_dump(),
        "constraints": list(sweep.constraints),
    }
    return SweepResult(
        name=sweep.name,
        columns=columns,
        inputs=inputs,
        metrics=metric_names,
        stats=st,
        meta=meta,
        warnings=pts.warnings,
        sensitivity=sens,
    )
