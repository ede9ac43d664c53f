"""Spec overrides: change numbers of a validated spec by dotted path, get a new validated spec.

One mechanism serves the sweep files (``axes: spec: {memory.hbm.bandwidth: [...]}``) and the
what-if engine (``hwsim whatif --set memory.hbm.bandwidth=x2``). Paths name a sourced number:

* ``memory.hbm.bandwidth``, ``memory[hbm].capacity``, ``memory.2.latency`` - list items by their
  ``name`` (memory levels), ``kind`` (interconnect ports) or index;
* ``compute.peak.bf16``, ``compute.units``, ``compute.special``, ``power.tdp``, ``price.usd``;
* shorthand: ``hbm.bandwidth`` (a memory level name first), and a bare level with a value that
  has a unit picks the field by dimension: ``sram=256MiB`` sets ``memory.sram.capacity``,
  ``sram=80TB/s`` its bandwidth.

Values: a quantity with a unit (``4.8 TB/s``, ``256 MiB``), a plain number for counts
(``compute.units=264``), a multiplier of the current value (``x2``, ``×0.5``, ``*1.5``) or a
percentage change (``+20%``, ``-25%``). Python numbers are SI values when ``si_numbers=True``
(the sweep's generated ranges); at the user-facing edge a dimensioned number needs its unit.

Every new value goes through the same validator as the YAML (positivity, plausibility, whole
counts), then the whole spec is validated again (kind rules, order warnings). Provenance is kept:
the new value cites a ``sources`` entry named ``override`` that records what changed and what it
was. Errors are :class:`~hwsim.spec.errors.SpecError` naming the path, with a did-you-mean and the
list of valid paths.
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import UnionType
from typing import Annotated, Any, TypeVar, Union, get_args, get_origin

from pydantic import TypeAdapter, ValidationError

from hwsim.spec.errors import SpecError, format_loc
from hwsim.spec.override_paths import (
    LEVEL_FIELD_BY_DIM,
    Loc,
    SettablePath,
    canonical_path,
    get_value,
    lookup,
    override_paths,
    path_dim,
    settable_paths,
    spec_name,
    unwrap_optional_model,
)
from hwsim.spec.quantity import Sourced, Strict
from hwsim.spec.units import Dim, UnitError, format_quantity, parse_quantity

M = TypeVar("M", bound=Strict)
OverrideValue = str | float | int

#: The ``sources`` key that overridden values cite.
OVERRIDE_SOURCE = "override"
_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_MULT_RE = re.compile(rf"^\s*(?:[xX×*]\s*(?P<a>{_NUM})|(?P<b>{_NUM})\s*[xX×])\s*$")
_PCT_RE = re.compile(rf"^\s*(?P<p>[-+]\s*{_NUM})\s*%\s*$")
_ASSIGN_RE = re.compile(r"^\s*(?P<path>[^=:\s][^=]*?)\s*(?:=|:\s)\s*(?P<value>.+?)\s*$")


@dataclass(frozen=True)
class ResolvedOverride:
    """An override resolved against one spec: where it goes and the SI value it sets."""

    path: str
    loc: Loc
    old_value: float | None  #: SI, None if the field was not set
    new_value: float  #: SI
    text: str  #: the value as the user wrote it


# ---- walking a spec --------------------------------------------------------------------------
def parse_assignment(text: str) -> tuple[str, str]:
    """``"memory.hbm.bandwidth=x2"`` (or ``"path: value"``) → ``(path, value)``."""
    m = _ASSIGN_RE.match(text)
    if m is None:
        raise SpecError(
            f"cannot read the override {text!r}; write PATH=VALUE, e.g. "
            "'memory.hbm.bandwidth=4.8TB/s' or 'memory.smem.capacity=x2'"
        )
    return m.group("path").strip(), m.group("value").strip()


def _relative(value: OverrideValue) -> tuple[str, float] | None:
    """('x', factor) for a multiplier, ('%', fraction) for a percentage, else None."""
    if not isinstance(value, str):
        return None
    m = _MULT_RE.match(value)
    if m is not None:
        return "x", float(m.group("a") or m.group("b"))
    m = _PCT_RE.match(value)
    if m is not None:
        return "%", float(m.group("p").replace(" ", "")) / 100.0
    return None


def si_text(value: float, dim: Dim) -> str:
    """Exact text of an SI value for the validator (``repr`` round-trips a float)."""
    return repr(float(value)) if dim is Dim.COUNT else f"{float(value)!r} {dim.value}"


def _dim_of_text(value: OverrideValue) -> Dim | None:
    """The dimension a value's unit implies, or None (a multiplier or a bare number)."""
    if not isinstance(value, str) or _relative(value) is not None:
        return None
    for dim in LEVEL_FIELD_BY_DIM:
        try:
            parse_quantity(value, dim)
            return dim
        except UnitError:
            continue
    return None


# ---- validating one leaf ---------------------------------------------------------------------
@functools.lru_cache(maxsize=256)
def _adapter(model: type[Strict], field: str, in_dict: bool) -> TypeAdapter[Any]:
    info = model.model_fields[field]
    ann: Any = info.annotation
    if in_dict:
        ann = get_args(ann)[1]
    elif info.metadata:  # pydantic keeps Annotated[...] metadata (the unit parser) apart
        ann = Annotated.__class_getitem__((ann, *info.metadata))  # type: ignore[attr-defined]
    else:
        args = [a for a in get_args(ann) if a is not type(None)]
        if get_origin(ann) in (Union, UnionType) and args:
            ann = args[0]  # Optional[Rate] → Rate (the Annotated parser sits inside)
    return TypeAdapter(ann)


def _owner(model: Strict, loc: Loc) -> tuple[type[Strict], str, bool]:
    """(model class owning the leaf, its field name, whether the leaf sits in a dict field)."""
    obj: Any = model
    owner: type[Strict] = type(model)
    for i, part in enumerate(loc[:-1]):
        if isinstance(obj, Strict):
            owner = type(obj)
            nxt = getattr(obj, str(part))
            if nxt is None:  # an optional section being added (price: {usd: ...})
                section = unwrap_optional_model(owner.model_fields[str(part)].annotation)
                assert section is not None
                return section, str(loc[-1]), False
            if isinstance(nxt, dict) and i == len(loc) - 2:
                return owner, str(part), True
            obj = nxt
        elif isinstance(obj, list):
            obj = obj[int(part)]
        elif isinstance(obj, dict):  # a model inside a dict (compute.matrix_paths.<name>)
            obj = obj[str(part)]
    if isinstance(obj, Strict):
        owner = type(obj)
    return owner, str(loc[-1]), False


def _make_leaf(
    model: Strict, target: SettablePath, value: OverrideValue, si_numbers: bool
) -> tuple[Sourced, ResolvedOverride]:
    owner, field, in_dict = _owner(model, target.loc)
    rel = _relative(value)
    old_text = ""
    if rel is not None:
        if target.value is None or target.dim is None:
            raise SpecError(
                f"'{value}' changes the current value, but {target.path} is not set on "
                f"{spec_name(model)}; give a quantity with a unit"
            )
        kind, amount = rel
        new = target.value * (amount if kind == "x" else 1.0 + amount)
        raw_value: str | float = si_text(new, target.dim)
        old_text = format_quantity(target.value, target.dim)
        derived = f"{value} of {old_text}"
    elif isinstance(value, bool):
        raise SpecError(f"expected a number for {target.path}, got {value!r}")
    elif isinstance(value, int | float) and si_numbers and target.dim is not None:
        if not math.isfinite(value):
            raise SpecError(f"expected a finite value for {target.path}, got {value!r}")
        raw_value, derived = si_text(value, target.dim), "SI value"
    else:
        raw_value, derived = value, ""
    raw = {"value": raw_value, "source": OVERRIDE_SOURCE}
    if derived:
        raw["derived"] = derived
    if target.value is not None and target.dim is not None:
        raw["note"] = f"overridden; was {format_quantity(target.value, target.dim)}"
    try:
        leaf = _adapter(owner, field, in_dict).validate_python(raw)
    except ValidationError as exc:
        msg = str(exc.errors()[0]["msg"]).removeprefix("Value error, ")
        raise SpecError(f"{msg} (override {target.path}={value})", key=target.path) from None
    if not isinstance(raw_value, str) or rel is not None or derived == "SI value":
        leaf = leaf.model_copy(update={"text": format_quantity(leaf.value, leaf.dim, digits=6)})
    resolved = ResolvedOverride(target.path, target.loc, target.value, leaf.value, str(value))
    return leaf, resolved


# ---- applying --------------------------------------------------------------------------------
def _tree(obj: object) -> Any:
    """A spec as nested dicts/lists that keeps :class:`Sourced` leaves (re-validation passes
    them through unchanged, so an untouched number is never re-parsed or rounded)."""
    if isinstance(obj, Sourced):
        return obj
    if isinstance(obj, Strict):
        return {k: _tree(getattr(obj, k)) for k in type(obj).model_fields}
    if isinstance(obj, dict):
        return {k: _tree(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_tree(v) for v in obj]
    return obj


def _set(tree: Any, loc: Loc, leaf: Sourced) -> None:
    node = tree
    for part in loc[:-1]:
        if isinstance(node, dict) and node.get(part) is None:
            node[part] = {}
        node = node[part]
    node[loc[-1]] = leaf


def _items(overrides: Mapping[str, OverrideValue] | Iterable[Any]) -> list[tuple[str, Any]]:
    if isinstance(overrides, Mapping):
        return [(str(k), v) for k, v in overrides.items()]
    out = []
    for item in overrides:
        out.append(parse_assignment(item) if isinstance(item, str) else tuple(item))
    return out


def resolve_overrides(
    model: Strict,
    overrides: Mapping[str, OverrideValue] | Iterable[Any],
    *,
    si_numbers: bool = False,
) -> list[tuple[ResolvedOverride, Sourced]]:
    """Check every override against ``model`` and build its new value (not yet applied)."""
    out: list[tuple[ResolvedOverride, Sourced]] = []
    seen: dict[Loc, str] = {}
    for path, value in _items(overrides):
        found = lookup(model, path)
        if isinstance(found, list):
            dim = _dim_of_text(value)
            field = LEVEL_FIELD_BY_DIM.get(dim) if dim else None
            match = [p for p in found if p.loc[-1] == field] if field else []
            if not match:
                raise SpecError(
                    f"'{path}' is a whole section; name one of its numbers "
                    f"({', '.join(p.path for p in found)}), or give a value with a unit "
                    f"(a size sets the capacity, a bandwidth the bandwidth)"
                )
            found = match[0]
        if found.loc in seen:
            raise SpecError(f"{found.path} is overridden twice ('{seen[found.loc]}' and '{path}')")
        seen[found.loc] = path
        leaf, resolved = _make_leaf(model, found, value, si_numbers)
        out.append((resolved, leaf))
    return out


def apply_overrides(
    model: M,
    overrides: Mapping[str, OverrideValue] | Iterable[Any],
    *,
    si_numbers: bool = False,
) -> M:
    """A new, validated copy of ``model`` (a Device, Cluster or any sourced spec) with the
    numbers at the given paths replaced. ``overrides`` is a mapping ``{path: value}`` or a list
    of ``"path=value"`` strings. With no overrides, ``model`` itself is returned."""
    resolved = resolve_overrides(model, overrides, si_numbers=si_numbers)
    if not resolved:
        return model
    tree = _tree(model)
    for r, leaf in resolved:
        _set(tree, r.loc, leaf)
    if isinstance(tree.get("sources"), dict):
        what = "; ".join(
            f"{r.path} = {r.text}"
            + (
                f" (was {format_quantity(r.old_value, leaf.dim)})"
                if r.old_value is not None
                else ""
            )
            for r, leaf in resolved
        )
        previous = tree["sources"].get(OVERRIDE_SOURCE)
        tree["sources"] = {
            **tree["sources"],
            OVERRIDE_SOURCE: (f"{previous}; " if previous else "") + f"hwsim override: {what}",
        }
    try:
        return type(model).model_validate(tree)
    except ValidationError as exc:
        err = exc.errors()[0]
        msg = str(err["msg"]).removeprefix("Value error, ")
        where = format_loc([p for p in err["loc"] if isinstance(p, int | str)])
        paths = ", ".join(f"{r.path}={r.text}" for r, _ in resolved)
        raise SpecError(
            f"overrides ({paths}) make an invalid spec: {where + ': ' if where else ''}{msg}"
        ) from None


def spec_fingerprint(model: Strict) -> str:
    """A stable hash of everything in a spec (numbers, texts and sources): two specs with the
    same fingerprint give the same results, so caches key on it."""
    return hashlib.sha256(model.model_dump_json().encode()).hexdigest()[:32]


#: path lookup lives in hwsim.spec.override_paths; re-exported so callers need one import
__all__ = [
    "OVERRIDE_SOURCE",
    "ResolvedOverride",
    "SettablePath",
    "apply_overrides",
    "canonical_path",
    "get_value",
    "override_paths",
    "parse_assignment",
    "path_dim",
    "resolve_overrides",
    "settable_paths",
    "spec_fingerprint",
]
