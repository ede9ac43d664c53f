"""The sweep file (``workloads/sweeps/*.yaml``): a pydantic schema and its semantic checks.

::

    name: hbm-bandwidth-x-batch
    description: Decode throughput of Llama-3.1-70B on H100 as HBM bandwidth and batch grow.
    base:                       # what every point starts from
      device: h100-sxm          # built-in name or path
      model: llama-3.1-70b      # optional: attention shape and weights for the metric kinds
      cluster: dgx-h100         # optional
    workload: {context: 4096, dtype: bf16}   # fixed workload parameters
    axes:
      device: [h100-sxm, h200]                # optional: several base devices
      spec:                                   # spec overrides (hwsim.spec.overrides)
        memory.hbm.bandwidth: [2 TB/s, 3.35 TB/s, 4.8 TB/s, 8 TB/s]
        memory.l2.capacity: {from: 50 MiB, to: 4 GiB, num: 8, scale: log}
      cluster:                                # overrides of base.cluster (link speeds)
        nics.bandwidth: [25 GB/s, 50 GB/s, 100 GB/s, 200 GB/s]  # column cluster.nics.bandwidth
      workload:                               # workload parameters
        batch: {from: 1, to: 256, num: 9, scale: log, integer: true}
      layout: ["tp=4", "tp=8"]                # parallel layouts (tp, ep, pp, dp)
      zip: [[memory.hbm.bandwidth, cluster.nics.bandwidth]]  # advance together, not a grid
    metrics:
      - kind: decode_roofline                 # analytic, vectorised
      - kind: attention_sim                   # simulator, one run per unique shape
        options: {kernel: fa3}
    constraints:                              # input-only ones drop points before evaluation;
      - "batch * context <= 1e6"              # those naming metrics fill a 'feasible' column
      - "decode_roofline.fits"
    sampling: {method: grid}                  # or random / lhs / sobol with n and seed
    sensitivity: [decode_roofline.tokens_per_s_total]

Axes combine as a full grid (``sampling.method: grid``) or are sampled (``random``, ``lhs``,
``sobol``: ``n`` points from ``seed``; list axes pick an entry, ranges are sampled continuously,
logarithmically for ``scale: log``). Errors point at the file, line and key.
"""

from __future__ import annotations

import difflib
import math
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from hwsim.spec.cluster import load_cluster
from hwsim.spec.errors import FieldError, SpecError
from hwsim.spec.load import load_device, read_yaml, validate
from hwsim.spec.model import load_model_config
from hwsim.spec.override_paths import PROFILE_PREFIX
from hwsim.spec.overrides import canonical_path, path_dim, resolve_overrides
from hwsim.spec.units import Dim, UnitError, parse_quantity
from hwsim.sweep import expr
from hwsim.sweep.kinds import (
    CLUSTER_PREFIX,
    KINDS,
    MetricKind,
    _load_builtin,
    get_kind,
)
from hwsim.sweep.model_kinds import model_params

#: Built-in sweep files.
SWEEPS_DIR = Path(__file__).resolve().parents[2] / "workloads" / "sweeps"
LAYOUT_KEYS = ("tp", "ep", "pp", "dp")
#: Input columns that are not workload parameters.
RESERVED = ("device", "model", "layout", "feasible", "point")
Scalar = str | int | float | bool


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Range(_Strict):
    """``{from, to, num, scale, integer}``: ``num`` values from ``from`` to ``to`` inclusive
    (a grid), or the interval sampled by random/lhs/sobol. Spec-axis ends carry units
    (``50 MiB``) or are multipliers (``x0.5``)."""

    from_: Scalar = Field(alias="from")
    to: Scalar
    num: int = Field(
        2, ge=2, description="grid values; the sweep's size is checked against --max-points"
    )
    scale: Literal["lin", "log"] = "lin"
    integer: bool = False


AxisValues = list[Scalar] | Range


class Base(_Strict):
    device: str = Field(description="built-in device name or path to a device YAML")
    model: str | None = Field(None, description="built-in model name or path (optional)")
    cluster: str | None = Field(None, description="built-in cluster name or path (optional)")


class Axes(_Strict):
    device: list[str] | None = None
    model: list[str] | None = None
    spec: dict[str, AxisValues] = Field(default_factory=dict)
    cluster: dict[str, AxisValues] = Field(
        default_factory=dict, description="overrides of the cluster of kinds that run on one"
    )
    workload: dict[str, AxisValues] = Field(default_factory=dict)
    layout: list[str] | None = None
    zip: list[list[str]] = Field(
        default_factory=list,
        description="groups of axis columns that advance together (equal-length lists)",
    )


class Sampling(_Strict):
    method: Literal["grid", "random", "lhs", "sobol"] = "grid"
    n: int | None = Field(None, ge=1, description="points; checked against --max-points")
    seed: int = 0


class MetricSpec(_Strict):
    kind: str
    name: str | None = Field(None, description="column prefix; default: the kind name")
    options: dict[str, Any] = Field(default_factory=dict)
    columns: list[str] | None = Field(None, description="subset of the kind's metrics")

    @property
    def label(self) -> str:
        return self.name or self.kind


def parse_layout(text: str) -> dict[str, int]:
    """``"tp=8,ep=1"`` (commas or spaces) → ``{"tp": 8, "ep": 1, "pp": 1, "dp": 1}``."""
    out = dict.fromkeys(LAYOUT_KEYS, 1)
    for part in re.split(r"[,\s]+", text.strip()):
        if not part:
            continue
        key, sep, value = part.partition("=")
        key = key.strip().lower()
        if not sep or key not in LAYOUT_KEYS or not value.strip().isdigit() or int(value) < 1:
            raise SpecError(
                f"layout {text!r}: expected comma-separated KEY=N with KEY in "
                f"{', '.join(LAYOUT_KEYS)} and N >= 1, e.g. 'tp=8,ep=1'"
            )
        out[key] = int(value)
    return out


def _number(value: Scalar, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise SpecError(f"{what}: expected a finite number, got {value!r}")
    return float(value)


def range_end(value: Scalar, dim: Dim | None, what: str) -> float:
    """A range end in SI (a quantity with a unit for spec axes, a number for workload axes)."""
    if dim is None or dim is Dim.COUNT:
        if isinstance(value, str) and dim is Dim.COUNT:
            try:
                return parse_quantity(value, Dim.COUNT)
            except UnitError as err:
                raise SpecError(f"{what}: {err}") from None
        return _number(value, what)
    try:
        return parse_quantity(value, dim)
    except UnitError as err:
        raise SpecError(f"{what}: {err}") from None


class SweepFile(_Strict):
    """A whole sweep file (see the module docstring)."""

    name: str
    description: str | None = None
    base: Base
    workload: dict[str, Scalar] = Field(default_factory=dict)
    axes: Axes = Field(default_factory=Axes)
    metrics: list[MetricSpec] = Field(min_length=1)
    constraints: list[str] = Field(default_factory=list)
    sampling: Sampling = Field(default_factory=Sampling)
    sensitivity: list[str] = Field(default_factory=list, description="metrics to analyse")

    # ---- derived views -------------------------------------------------------------------
    def device_names(self) -> list[str]:
        return list(self.axes.device or [self.base.device])

    def model_names(self) -> list[str | None]:
        if self.axes.model:
            return list(self.axes.model)
        return [self.base.model]

    def kind_options(self, i: int) -> dict[str, Any]:
        """Options of metric ``i``; a kind with a ``cluster`` option gets ``base.cluster``
        unless the entry sets it."""
        m = self.metrics[i]
        opts = dict(m.options)
        fields = get_kind(m.kind).Options.model_fields
        if self.base.cluster and "cluster" in fields and "cluster" not in opts:
            opts["cluster"] = self.base.cluster
        return opts

    def kinds(self) -> list[MetricKind]:
        return [get_kind(m.kind)(self.kind_options(i)) for i, m in enumerate(self.metrics)]

    def metric_columns(self) -> list[str]:
        out = []
        for m, k in zip(self.metrics, self.kinds(), strict=True):
            out += [f"{m.label}.{c}" for c in (m.columns or list(k.metrics))]
        return out

    def known_params(self) -> set[str]:
        out: set[str] = set()
        for k in self.kinds():
            out |= set(k.params)
        return out

    # ---- semantic checks (errors point at the key, with its YAML line) -------------------
    @model_validator(mode="after")
    def _check(self) -> SweepFile:
        _load_builtin()
        kinds = []
        labels: set[str] = set()
        for i, m in enumerate(self.metrics):
            try:
                kind = get_kind(m.kind)(self.kind_options(i))
            except SpecError as err:
                raise FieldError(("metrics", i, "kind"), err.message) from None
            if m.label in labels:
                raise FieldError(("metrics", i, "name"), f"'{m.label}' is used twice; set name:")
            labels.add(m.label)
            for c in m.columns or []:
                if c not in kind.metrics:
                    raise FieldError(
                        ("metrics", i, "columns"),
                        f"'{m.kind}' has no metric '{c}'{_hint(c, list(kind.metrics))} "
                        f"(metrics: {', '.join(kind.metrics)})",
                    )
            kinds.append(kind)
        known = set().union(*(k.params for k in kinds))
        for section, names in (("workload", self.workload), ("axes.workload", self.axes.workload)):
            for key in names:
                if key in RESERVED or (key in LAYOUT_KEYS and section == "workload"):
                    continue
                if key not in known:
                    raise FieldError(
                        (*section.split("."), key),
                        f"no metric kind reads the workload parameter '{key}'"
                        f"{_hint(key, sorted(known))} (known: {', '.join(sorted(known))})",
                    )
        for key, values in self.axes.workload.items():
            if isinstance(values, Range):
                for end in ("from_", "to"):
                    try:
                        range_end(getattr(values, end), None, key)
                    except SpecError as err:
                        end_key = "from" if end == "from_" else "to"
                        raise FieldError(("axes", "workload", key, end_key), err.message) from None
        if self.base.cluster:
            try:
                load_cluster(self.base.cluster)
            except SpecError as err:
                raise FieldError(("base", "cluster"), err.message) from None
        self._check_specs()
        self._check_cluster_axes(kinds)
        prof = [p for p in self.axes.spec if p.startswith(PROFILE_PREFIX)]
        if prof and not any(k.reads_profile for k in kinds):
            runs = sorted(name for name, cls in KINDS.items() if cls.reads_profile)
            raise FieldError(
                ("axes", "spec", prof[0]),
                f"no metric kind reads a mapper profile (kinds that do: {', '.join(runs)})",
            )
        self._check_zip()
        for i, text in enumerate(self.axes.layout or []):
            try:
                parse_layout(text)
            except SpecError as err:
                raise FieldError(("axes", "layout", i), err.message) from None
        for i, name in enumerate(self.model_names()):
            if name is not None:
                try:
                    load_model_config(name)
                except SpecError as err:
                    raise FieldError(
                        ("axes", "model", i) if self.axes.model else ("base", "model"), err.message
                    ) from None
        self._check_sampling()
        columns = self._column_names(kinds)
        for i, c in enumerate(self.constraints):
            try:
                unknown = sorted(expr.names(c) - columns)
            except SpecError as err:
                raise FieldError(("constraints", i), err.message) from None
            if unknown:
                raise FieldError(
                    ("constraints", i),
                    f"unknown name '{unknown[0]}'{_hint(unknown[0], sorted(columns))}",
                )
        metric_cols = set(self.metric_columns())
        for i, name in enumerate(self.sensitivity):
            if name not in metric_cols:
                raise FieldError(
                    ("sensitivity", i),
                    f"'{name}' is not a metric column{_hint(name, sorted(metric_cols))}",
                )
        return self

    def _check_specs(self) -> None:
        for i, dev_name in enumerate(self.device_names()):
            try:
                device = load_device(dev_name)
            except SpecError as err:
                raise FieldError(
                    ("axes", "device", i) if self.axes.device else ("base", "device"), err.message
                ) from None
            for path, values in self.axes.spec.items():
                try:
                    if path.startswith(PROFILE_PREFIX):  # the mapper's profile, not the device
                        _check_profile_values(device, path[len(PROFILE_PREFIX) :], values)
                    else:
                        _check_values(device, path, values)
                except SpecError as err:
                    raise FieldError(("axes", "spec", path), f"{err} (device {dev_name})") from None

    def cluster_names(self, kinds: list[MetricKind]) -> list[str]:
        """The clusters the ``axes.cluster`` overrides apply to: each cluster-reading kind's."""
        out = []
        for i, k in enumerate(kinds):
            if k.reads_cluster:
                name = self.kind_options(i).get("cluster")
                if name in (None, "default"):
                    raise FieldError(
                        ("axes", "cluster"),
                        f"metric '{self.metrics[i].label}' has no named cluster to override: "
                        "set base.cluster (or its options.cluster)",
                    )
                out.append(str(name))
        return list(dict.fromkeys(out))

    def _check_cluster_axes(self, kinds: list[MetricKind]) -> None:
        if not self.axes.cluster:
            return
        if not any(k.reads_cluster for k in kinds):
            runs = sorted(name for name, cls in KINDS.items() if cls.reads_cluster)
            raise FieldError(
                ("axes", "cluster"),
                f"no metric kind runs on a cluster (kinds that do: {', '.join(runs)})",
            )
        names = self.cluster_names(kinds)
        if len(names) > 1:  # values like 'x2' resolve against one base cluster
            raise FieldError(
                ("axes", "cluster"),
                f"the metrics run on different clusters ({', '.join(names)}); "
                "cluster axes need one",
            )
        for name in names:
            cluster = load_cluster(name)
            for path, values in self.axes.cluster.items():
                try:
                    _check_values(cluster, path, values)
                except SpecError as err:
                    raise FieldError(("axes", "cluster", path), f"{err} (cluster {name})") from None

    def axis_items(self) -> list[tuple[str, str, AxisValues]]:
        """Every axis as (output column name, category, values), in output-column order:
        device, model, spec paths, ``cluster.<path>``, workload parameters, layout."""
        a = self.axes
        out: list[tuple[str, str, AxisValues]] = []
        for name in ("device", "model"):
            values = getattr(a, name)
            if values:
                out.append((name, name, list(values)))
        out += [
            (path, "profile" if path.startswith(PROFILE_PREFIX) else "spec", v)
            for path, v in a.spec.items()
        ]
        out += [(CLUSTER_PREFIX + path, "cluster", v) for path, v in a.cluster.items()]
        out += [(name, "workload", v) for name, v in a.workload.items()]
        if a.layout:
            out.append(("layout", "layout", list(a.layout)))
        return out

    def _check_zip(self) -> None:
        axes = {name: values for name, _, values in self.axis_items()}
        seen: set[str] = set()
        for i, group in enumerate(self.axes.zip):
            if len(group) < 2:
                raise FieldError(("axes", "zip", i), "a zip group names at least two axes")
            lengths = []
            for name in group:
                if name not in axes:
                    raise FieldError(
                        ("axes", "zip", i),
                        f"'{name}' is not an axis{_hint(name, list(axes))} "
                        f"(axes: {', '.join(axes)})",
                    )
                if name in seen:
                    raise FieldError(("axes", "zip", i), f"'{name}' is in two zip groups")
                seen.add(name)
                values = axes[name]
                if isinstance(values, Range):
                    raise FieldError(
                        ("axes", "zip", i), f"'{name}' is a range; zip takes listed values"
                    )
                lengths.append(len(values))
            if len(set(lengths)) > 1:
                sizes = ", ".join(f"{n}: {k}" for n, k in zip(group, lengths, strict=True))
                raise FieldError(("axes", "zip", i), f"zipped axes need equal lengths, got {sizes}")

    def _check_sampling(self) -> None:
        s = self.sampling
        if s.method == "grid":
            if s.n is not None:
                raise FieldError(("sampling", "n"), "a grid takes every combination; drop n")
        elif s.n is None:
            raise FieldError(("sampling", "n"), f"method '{s.method}' needs the number of points n")
        elif s.method == "sobol" and s.n & (s.n - 1):
            raise FieldError(("sampling", "n"), "sobol needs a power of two (balance properties)")

    def _column_names(self, kinds: list[MetricKind]) -> set[str]:
        """Names a constraint may use: inputs, parameters, metrics and device spec paths."""
        names = set(RESERVED) | set(LAYOUT_KEYS) | set(self.axes.spec) | set(self.workload)
        names |= {CLUSTER_PREFIX + p for p in self.axes.cluster}
        names |= set(self.axes.workload) | set().union(*(k.params for k in kinds))
        names |= set(self.metric_columns())
        device = load_device(self.device_names()[0])
        from hwsim.spec.overrides import override_paths

        names |= set(override_paths(device))
        for name in self.model_names():
            if name is not None:
                names |= set(model_params(load_model_config(name)))
        return names


def _check_values(spec: Any, path: str, values: AxisValues) -> None:
    """Every listed value (or both range ends) of an override axis, checked on the base spec."""
    canonical_path(spec, path)
    samples = [values.from_, values.to] if isinstance(values, Range) else list(values)
    if isinstance(values, Range) and not _relative_range(values):
        dim = path_dim(spec, path)
        for end in samples:
            resolve_overrides(spec, [(path, range_end(end, dim, path))], si_numbers=True)
        return
    for v in samples:
        resolve_overrides(spec, [(path, v)])


def _check_profile_values(device: Any, path: str, values: AxisValues) -> None:
    """:func:`_check_values` on the device's mapper profile; errors name the profile."""
    from hwsim.sim.mapper import device_profile, profile_message

    mapper, profile = device_profile(device)
    try:
        _check_values(profile, path, values)
    except SpecError as err:
        raise SpecError(profile_message(str(err), mapper)) from None


def _relative_range(r: Range) -> bool:
    return all(isinstance(v, str) and v.strip()[:1] in "x×*" for v in (r.from_, r.to))


def _hint(name: str, known: list[str]) -> str:
    guess = difflib.get_close_matches(name, known, n=1)
    return f"; did you mean '{guess[0]}'?" if guess else ""


def resolve_sweep_path(name_or_path: str) -> Path:
    """A sweep file from a path or a built-in name (``workloads/sweeps/<name>.yaml``)."""
    p = Path(name_or_path)
    if p.exists() or p.suffix in (".yaml", ".yml"):
        if not p.exists():
            raise SpecError("sweep file not found", file=name_or_path)
        return p
    builtin = SWEEPS_DIR / f"{name_or_path}.yaml"
    if builtin.exists():
        return builtin
    known = sorted(q.stem for q in SWEEPS_DIR.glob("*.yaml"))
    raise SpecError(
        f"unknown sweep '{name_or_path}'{_hint(name_or_path, known)} "
        f"(built-in: {', '.join(known)}; or pass a path to a .yaml file)"
    )


def load_sweep(name_or_path: str | Path) -> SweepFile:
    """Read and check a sweep file; :class:`SpecError` with file, line and key otherwise."""
    path = resolve_sweep_path(str(name_or_path))
    data, node = read_yaml(path)
    return validate(SweepFile, data, file=str(path), node=node)


__all__ = ["SweepFile", "load_sweep", "parse_layout"]
