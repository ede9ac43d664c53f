"""Sweep file → points: the grid (or sample) of axis values, one device per distinct spec
combination, and every workload parameter as a numpy column.

Parameters are layered, later winning: the metric kinds' defaults, the model's shape
(:func:`hwsim.sweep.kinds.model_params`), ``workload:``, ``axes.workload`` and ``axes.layout``.
A device is built (and validated) once per distinct combination of base device and spec-axis
values, never per point, so 10,000 points over 100 spec combinations validate 100 devices.
"""

from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from hwsim.spec.cluster import Cluster, load_cluster
from hwsim.spec.device import Device
from hwsim.spec.errors import SpecError
from hwsim.spec.load import load_device
from hwsim.spec.model import load_model_config
from hwsim.spec.override_paths import PROFILE_PREFIX
from hwsim.spec.overrides import apply_overrides, get_value, path_dim
from hwsim.spec.units import Dim
from hwsim.sweep import expr
from hwsim.sweep.kinds import CLUSTER_PREFIX, MetricKind
from hwsim.sweep.model_kinds import model_params
from hwsim.sweep.sizing import check_points
from hwsim.sweep.spec import LAYOUT_KEYS, Range, SweepFile, parse_layout, range_end


@dataclass(frozen=True)
class Axis:
    """One axis: its column name, its category and its values (grid) or range (sampled)."""

    name: str
    category: str  #: device | model | spec | workload | layout
    values: tuple[Any, ...] = ()
    range: Range | None = None


@dataclass(frozen=True)
class PointSet:
    """All points of a sweep after input-only constraints (SI units)."""

    inputs: dict[str, NDArray[Any]]  #: the output's input columns, in axis order
    params: dict[str, NDArray[Any]]  #: every workload parameter, per point
    device_index: NDArray[np.intp]
    devices: tuple[Device, ...]
    dropped: int  #: points removed by input-only constraints
    total: int  #: points before constraints
    warnings: tuple[str, ...] = field(default=())

    @property
    def n(self) -> int:
        return int(self.device_index.shape[0])


def axes_of(sweep: SweepFile) -> list[Axis]:
    """The sweep's axes in output-column order."""
    return [_axis(name, category, v) for name, category, v in sweep.axis_items()]


def _axis(name: str, category: str, v: Any) -> Axis:
    return Axis(name, category, range=v) if isinstance(v, Range) else Axis(name, category, tuple(v))


def _relative(v: Any) -> bool:
    return isinstance(v, str) and v.strip()[:1] in ("x", "X", "×", "*")


def range_ends(axis: Axis, dim: Dim | None) -> tuple[float, float]:
    """A range axis's ends in SI (multipliers for ``x0.5`` .. ``x2``)."""
    r = axis.range
    assert r is not None
    if _relative(r.from_) and _relative(r.to):
        lo, hi = (float(str(e).strip()[1:]) for e in (r.from_, r.to))
        return lo, hi
    return range_end(r.from_, dim, axis.name), range_end(r.to, dim, axis.name)


def range_array(axis: Axis, dim: Dim | None, u: NDArray[np.float64] | None) -> NDArray[np.float64]:
    """The float values of a range axis on its grid (``u`` None) or at uniform samples ``u``,
    before integer rounding; ``dim``: the dimension of the spec number it overrides (None: a
    workload number). Relative ranges (``x0.5`` to ``x2``) give the multipliers."""
    r = axis.range
    assert r is not None
    lo, hi = range_ends(axis, dim)
    if r.scale == "log" and (lo <= 0 or hi <= 0):
        raise SpecError(f"axis '{axis.name}': a log range needs positive ends, got {lo}..{hi}")
    if r.integer and not (abs(lo) < 2**62 and abs(hi) < 2**62):
        raise SpecError(
            f"axis '{axis.name}': an integer range needs ends below 2^62, got {lo:g}..{hi:g}"
        )
    if u is None and r.integer and r.num > integer_span(r.scale, lo, hi):
        # denser than one value per integer: every integer between the ends, without
        # materialising num (up to 10^18) grid values first
        a, b = round(lo), round(hi)
        return np.arange(a, b + 1, dtype=np.float64) if a <= b else np.arange(a, b - 1, -1.0)
    t = np.linspace(0.0, 1.0, r.num) if u is None else u
    with np.errstate(over="ignore", invalid="ignore"):  # inf ends are refused below, by name
        vals = (
            np.exp(np.log(lo) + t * (np.log(hi) - np.log(lo)))
            if r.scale == "log"
            else lo + t * (hi - lo)
        )
    if r.scale == "log" and u is None:
        vals[0], vals[-1] = lo, hi  # exact ends (exp(log(x)) can be off by an ulp)
    return vals


def integer_span(scale: str, lo: float, hi: float) -> float:
    """The grid size above which an integer range hits every integer between its ends: the
    span (lin), or where the steps near the larger end fall below 1 (log)."""
    if scale == "log" and lo > 0 and hi > 0:
        return 1 + max(hi, lo) * abs(math.log(hi / lo))
    return float(abs(round(hi) - round(lo)))


def _range_values(axis: Axis, dim: Dim | None, u: NDArray[np.float64] | None) -> list[Any]:
    """Grid values of a range axis (``u`` None) or the values at uniform samples ``u``;
    ``dim``: the dimension of the spec number it overrides (None: a workload number)."""
    r = axis.range
    assert r is not None
    vals = range_array(axis, dim, u)
    if r.integer:
        ints = [round(float(v)) for v in vals]
        return list(dict.fromkeys(ints)) if u is None else ints
    if _relative(r.from_) and _relative(r.to):
        return [f"x{float(v)!r}" for v in vals]
    return [float(v) for v in vals]


def _dims(axes: list[Axis], device: Device, cluster: Cluster | None) -> list[Dim | None]:
    """Per axis, the dimension of the number a range overrides (None: workload/other)."""
    out: list[Dim | None] = []
    for a in axes:
        if a.range is not None and a.category == "spec":
            out.append(path_dim(device, a.name))
        elif a.range is not None and a.category == "profile":
            from hwsim.sim.mapper import device_profile

            out.append(path_dim(device_profile(device)[1], a.name[len(PROFILE_PREFIX) :]))
        elif a.range is not None and a.category == "cluster" and cluster is not None:
            out.append(path_dim(cluster, a.name[len(CLUSTER_PREFIX) :]))
        else:
            out.append(None)
    return out


def groups_of(sweep: SweepFile, axes: list[Axis]) -> list[list[int]]:
    """Axis indices that vary together: one group per ``axes.zip`` entry, else one per axis."""
    at = {a.name: i for i, a in enumerate(axes)}
    zipped = [[at[name] for name in group] for group in sweep.axes.zip]
    inside = {i for g in zipped for i in g}
    groups = zipped + [[i] for i in range(len(axes)) if i not in inside]
    return sorted(groups, key=min)  # axis order: the sample stream of unzipped files is unchanged


def _sample(sweep: SweepFile, axes: list[Axis], dims: list[Dim | None]) -> list[list[Any]]:
    """Per axis, the value of every point (grid: all combinations of the groups, the axes of a
    zipped group advancing together; else n samples, one coordinate per group)."""
    s = sweep.sampling
    groups = groups_of(sweep, axes)
    out: list[list[Any]] = [[] for _ in axes]
    if s.method == "grid":
        lists = [
            list(a.values) if a.range is None else _range_values(a, d, None)
            for a, d in zip(axes, dims, strict=True)
        ]
        rows = [list(zip(*(lists[i] for i in g), strict=True)) for g in groups]
        for combo in itertools.product(*rows) if rows else [()]:
            for g, row in zip(groups, combo, strict=True):
                for i, v in zip(g, row, strict=True):
                    out[i].append(v)
        return out
    assert s.n is not None
    d = max(len(groups), 1)
    if s.method == "random":
        u = np.random.default_rng(s.seed).random((s.n, d))
    elif s.method == "lhs":
        from scipy.stats import qmc  # 0.3 s to import; only the lhs/sobol samplers need it

        u = qmc.LatinHypercube(d=d, seed=s.seed).random(s.n)
    else:
        from scipy.stats import qmc

        u = qmc.Sobol(d=d, scramble=True, seed=s.seed).random(s.n)
    for j, g in enumerate(groups):
        for i in g:
            a = axes[i]
            if a.range is None:
                pick = np.minimum((u[:, j] * len(a.values)).astype(int), len(a.values) - 1)
                out[i] = [a.values[k] for k in pick]
            else:
                out[i] = _range_values(a, dims[i], u[:, j])
    return out


def column(values: list[Any]) -> NDArray[Any]:
    """A numpy column: int64, float64 or bool when the values allow, else object (strings)."""
    types = {type(v) for v in values}
    if types <= {bool, np.bool_}:
        return np.array(values, dtype=bool)
    if all(issubclass(t, int | np.integer) and not issubclass(t, bool | np.bool_) for t in types):
        if all(-(2**63) <= int(v) < 2**63 for v in values):
            return np.array(values, dtype=np.int64)
        return np.array([float(v) for v in values], dtype=float)  # beyond int64: float64
    if all(
        issubclass(t, int | float | np.number) and not issubclass(t, bool | np.bool_) for t in types
    ):
        return np.array(values, dtype=float)
    return np.array(values, dtype=object)


def build_points(sweep: SweepFile, kinds: list[MetricKind]) -> PointSet:
    """Expand a checked sweep file into points (see the module docstring)."""
    axes = axes_of(sweep)
    base_name = sweep.device_names()[0]
    clusters = sweep.cluster_names(kinds) if sweep.axes.cluster else []
    base_cluster = load_cluster(clusters[0]) if clusters else None
    dims = _dims(axes, load_device(base_name), base_cluster)
    check_points(sweep, axes, dims, len(kinds))  # before one point exists: refuse in µs
    per_axis = _sample(sweep, axes, dims)
    n_all = len(per_axis[0]) if per_axis else 1
    by_name = dict(zip((a.name for a in axes), per_axis, strict=True))
    dev_names = by_name.get("device", [sweep.base.device] * n_all)
    model_names = by_name.get("model", [sweep.base.model] * n_all)
    spec_axes = [a for a in axes if a.category == "spec"]

    # one validated device per distinct (base device, spec values)
    combos: dict[tuple[Any, ...], int] = {}
    devices: list[Device] = []
    caught: list[str] = []
    bases: dict[str, Device] = {}
    device_index = np.empty(n_all, dtype=np.intp)
    spec_cols = [by_name[a.name] for a in spec_axes]
    for p in range(n_all):
        combo = (dev_names[p], *(c[p] for c in spec_cols))
        idx = combos.get(combo)
        if idx is None:
            if combo[0] not in bases:
                bases[combo[0]] = load_device(combo[0])
            dev0 = bases[combo[0]]
            overrides = {a.name: v for a, v in zip(spec_axes, combo[1:], strict=True)}
            with warnings.catch_warnings(record=True) as got:
                warnings.simplefilter("always")
                dev = apply_overrides(dev0, overrides, si_numbers=True)
            caught += [str(w.message) for w in got]
            idx = combos[combo] = len(devices)
            devices.append(dev)
        device_index[p] = idx

    inputs: dict[str, NDArray[Any]] = {"device": np.array(dev_names, dtype=object)}
    if sweep.base.model or sweep.axes.model:
        inputs["model"] = np.array(model_names, dtype=object)
    for a in spec_axes:  # the SI value each point's device really has
        per_dev = np.array([get_value(d, a.name) for d in devices])
        inputs[a.name] = per_dev[device_index]
    if base_cluster is not None:
        inputs.update(_cluster_columns(base_cluster, axes, by_name, n_all, caught))
    inputs.update(_profile_columns(load_device(base_name), axes, by_name, n_all))
    for a in axes:
        if a.category == "workload":
            inputs[a.name] = column(by_name[a.name])
    layouts = [parse_layout(t) for t in by_name.get("layout", [])]
    if layouts:
        inputs["layout"] = np.array(by_name["layout"], dtype=object)
        for key in LAYOUT_KEYS:
            inputs[key] = np.array([lay[key] for lay in layouts], dtype=np.int64)

    params = _params(sweep, kinds, inputs, model_names, n_all)
    keep = np.ones(n_all, dtype=bool)
    env = {**params, **inputs}
    for c in sweep.constraints:
        names = expr.names(c)
        metric_cols = set(sweep.metric_columns())
        if names & metric_cols:
            continue  # evaluated after the metrics
        env.update(_device_columns(names - set(env), devices, device_index))
        keep &= expr.evaluate(c, env, n_all)
    sel = np.flatnonzero(keep)
    return PointSet(
        inputs={k: v[sel] for k, v in inputs.items()},
        params={k: v[sel] for k, v in params.items()},
        device_index=device_index[sel],
        devices=tuple(devices),
        dropped=int(n_all - sel.size),
        total=n_all,
        warnings=tuple(dict.fromkeys(caught)),
    )


def _cluster_columns(
    base: Cluster, axes: list[Axis], by_name: dict[str, list[Any]], n: int, caught: list[str]
) -> dict[str, NDArray[Any]]:
    """The SI value of every cluster-axis number per point; each distinct combination is
    applied (and validated) once, as the devices are."""
    cl_axes = [a for a in axes if a.category == "cluster"]
    cols = [by_name[a.name] for a in cl_axes]
    paths = [a.name[len(CLUSTER_PREFIX) :] for a in cl_axes]
    seen: dict[tuple[Any, ...], tuple[float, ...]] = {}
    out = np.empty((n, len(cl_axes)))
    for p in range(n):
        combo = tuple(c[p] for c in cols)
        if combo not in seen:
            with warnings.catch_warnings(record=True) as got:
                warnings.simplefilter("always")
                c = apply_overrides(base, dict(zip(paths, combo, strict=True)), si_numbers=True)
            caught += [str(w.message) for w in got]
            seen[combo] = tuple(get_value(c, path) for path in paths)
        out[p] = seen[combo]
    return {a.name: out[:, i] for i, a in enumerate(cl_axes)}


def _profile_columns(
    device: Device, axes: list[Axis], by_name: dict[str, list[Any]], n: int
) -> dict[str, NDArray[Any]]:
    """The SI value of every ``profile.<path>`` axis per point, resolved on the base device's
    mapper profile (``x0.5`` of its own value), each distinct combination once."""
    pr_axes = [a for a in axes if a.category == "profile"]
    if not pr_axes:
        return {}
    from hwsim.sim.mapper import device_profile

    profile = device_profile(device)[1]
    paths = [a.name[len(PROFILE_PREFIX) :] for a in pr_axes]
    cols = [by_name[a.name] for a in pr_axes]
    seen: dict[tuple[Any, ...], tuple[float, ...]] = {}
    out = np.empty((n, len(pr_axes)))
    for p in range(n):
        combo = tuple(c[p] for c in cols)
        if combo not in seen:
            new = apply_overrides(profile, dict(zip(paths, combo, strict=True)), si_numbers=True)
            seen[combo] = tuple(get_value(new, path) for path in paths)
        out[p] = seen[combo]
    return {a.name: out[:, i] for i, a in enumerate(pr_axes)}


def _device_columns(
    names: set[str], devices: list[Device], device_index: NDArray[np.intp]
) -> dict[str, NDArray[Any]]:
    """Spec numbers named in constraints (``memory.hbm.capacity``), per point."""
    out = {}
    for name in names:
        try:
            per_dev = np.array([get_value(d, name) for d in devices])
        except SpecError:
            continue  # a metric name; the constraint is evaluated later
        out[name] = per_dev[device_index]
    return out


def device_columns(
    names: set[str], devices: tuple[Device, ...], device_index: NDArray[np.intp]
) -> dict[str, NDArray[Any]]:
    """Public form of :func:`_device_columns` (used for metric constraints)."""
    return _device_columns(names, list(devices), device_index)


def _params(
    sweep: SweepFile,
    kinds: list[MetricKind],
    inputs: dict[str, NDArray[Any]],
    model_names: list[str | None],
    n: int,
) -> dict[str, NDArray[Any]]:
    """Every workload parameter per point, layered (module docstring)."""
    defaults: dict[str, Any] = {}
    for k in kinds:
        for name, v in k.params.items():
            defaults.setdefault(name, v)
    layers: dict[str, list[Any]] = {name: [v] * n for name, v in defaults.items()}
    cache: dict[str, dict[str, Any]] = {}
    for p, m in enumerate(model_names):
        if m is None:
            continue
        if m not in cache:
            cache[m] = model_params(load_model_config(m))
        for name, v in cache[m].items():
            if name in layers:
                layers[name][p] = v
    for name, v in sweep.workload.items():
        layers[name] = [v] * n
    for name, col in inputs.items():
        if (
            name in layers
            or name in sweep.axes.workload
            or name in LAYOUT_KEYS
            or name.startswith((CLUSTER_PREFIX, PROFILE_PREFIX))
        ):
            layers[name] = list(col.tolist())
    out: dict[str, NDArray[Any]] = {}
    for name, values in layers.items():
        missing = [p for p, v in enumerate(values) if v is None]
        if missing:
            users = [k.name for k in kinds if name in k.params and k.params[name] is None]
            raise SpecError(
                f"metric kind '{users[0] if users else '?'}' needs the workload parameter "
                f"'{name}': set it under workload: or axes.workload:, or give base.model"
            )
        out[name] = column(values)
    return out
