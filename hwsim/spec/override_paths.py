"""Where a spec override can go: every sourced number of a spec as a dotted path
(:func:`settable_paths`), path lookup with shorthands and did-you-mean (:func:`canonical_path`,
:func:`path_dim`, :func:`get_value`). :mod:`hwsim.spec.overrides` builds and applies the new
values; this module only reads specs.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass
from typing import Any, get_args, get_origin

from hwsim.spec.errors import SpecError
from hwsim.spec.quantity import Sourced, Strict
from hwsim.spec.units import Dim, format_quantity

Loc = tuple[int | str, ...]
#: Optional sections an override may add when a spec lacks them (``price.usd`` on a device with
#: no known price). Kind-specific sections (``mesh``, ``tiles``, ``lpu``) are never added: they
#: would turn a GPU into something else.
ADDABLE_SECTIONS = ("price",)
#: A memory-level path with a unit but no field: which field each dimension sets.
LEVEL_FIELD_BY_DIM = {Dim.BYTES: "capacity", Dim.BANDWIDTH: "bandwidth", Dim.TIME: "latency"}


@dataclass(frozen=True)
class SettablePath:
    """One number an override can set: its canonical dotted path, key path and current value."""

    path: str  #: canonical dotted path, e.g. ``memory.hbm.bandwidth``
    loc: Loc  #: key path as in the YAML, e.g. ``("memory", 2, "bandwidth")``
    dim: Dim | None  #: None for a field that is not set yet (its validator knows the dimension)
    value: float | None  #: current SI value, None when not set

    def describe(self) -> str:
        if self.value is None or self.dim is None:
            return f"{self.path} (not set)"
        return f"{self.path} = {format_quantity(self.value, self.dim)}"


#: what-if and sweep paths that start with this change a spatial kind's mapper profile
#: (``devices/profiles/{wafer,dataflow,lpu}.yaml``), not the device spec
PROFILE_PREFIX = "profile."


def _label(item: object) -> str | None:
    for attr in ("name", "kind", "id"):
        v = getattr(item, attr, None)
        if isinstance(v, str):
            return v
    return None


def unwrap_optional_model(annotation: Any) -> type[Strict] | None:
    """``PriceSpec | None`` → ``PriceSpec`` (a section that may be added by an override)."""
    for a in get_args(annotation) or (annotation,):
        if isinstance(a, type) and issubclass(a, Strict) and not issubclass(a, Sourced):
            return a
    return None


def _is_sourced_annotation(annotation: Any) -> bool:
    """Whether a field's annotation is a (possibly optional) sourced quantity."""
    args = get_args(annotation)
    if get_origin(annotation) is not None and args:
        return any(_is_sourced_annotation(a) for a in args)
    return annotation is Sourced


def _walk(obj: object, loc: Loc, path: str, out: list[SettablePath]) -> None:
    if isinstance(obj, Sourced):
        out.append(SettablePath(path, loc, obj.dim, obj.value))
        return
    if isinstance(obj, Strict):
        for name, field in type(obj).model_fields.items():
            sub = f"{path}.{name}" if path else name
            value = getattr(obj, name)
            if value is None:
                if _is_sourced_annotation(field.annotation):
                    out.append(SettablePath(sub, (*loc, name), None, None))
                else:
                    section = unwrap_optional_model(field.annotation)
                    if (
                        name in ADDABLE_SECTIONS
                        and section is not None
                        and all(
                            _is_sourced_annotation(f.annotation)
                            for f in section.model_fields.values()
                        )
                    ):
                        for leaf in section.model_fields:
                            out.append(
                                SettablePath(f"{sub}.{leaf}", (*loc, name, leaf), None, None)
                            )
                continue
            if isinstance(value, dict) and name != "sources":
                keys = _dict_keys(type(obj), name)
                for k in keys or list(value):
                    if k in value:
                        _walk(value[k], (*loc, name, k), f"{sub}.{k}", out)
                    elif keys:
                        out.append(SettablePath(f"{sub}.{k}", (*loc, name, k), None, None))
                continue
            _walk(value, (*loc, name), sub, out)
    elif isinstance(obj, list):
        labels = [_label(v) for v in obj]
        for i, v in enumerate(obj):
            label = labels[i]
            unique = label is not None and labels.count(label) == 1
            _walk(v, (*loc, i), f"{path}.{label if unique else i}", out)


def _dict_keys(model: type[Strict], name: str) -> list[str]:
    """Allowed keys of a ``dict[Literal[...], Sourced]`` field (e.g. the dtypes of ``peak``)."""
    ann = model.model_fields[name].annotation
    args = get_args(ann)
    if get_origin(ann) is dict and args:
        return [str(a) for a in get_args(args[0])]
    return []


_PATHS_MEMO: dict[int, tuple[Strict, list[SettablePath]]] = {}
_PATHS_MEMO_SIZE = 64


def settable_paths(model: Strict) -> list[SettablePath]:
    """Every number of ``model`` an override can set (including unset optional ones)."""
    # specs are frozen, so the walk is memoised per object (a sweep applies many overrides to
    # the same base spec); the memo holds the object, so its id cannot be reused meanwhile
    hit = _PATHS_MEMO.get(id(model))
    if hit is not None and hit[0] is model:
        return hit[1]
    out: list[SettablePath] = []
    _walk(model, (), "", out)
    if len(_PATHS_MEMO) >= _PATHS_MEMO_SIZE:
        _PATHS_MEMO.pop(next(iter(_PATHS_MEMO)))
    _PATHS_MEMO[id(model)] = (model, out)
    return out


def override_paths(model: Strict) -> list[str]:
    """Canonical dotted paths an override can set, in spec order."""
    return [p.path for p in settable_paths(model)]


# ---- parsing paths and values ----------------------------------------------------------------
def _parts(path: str) -> list[str]:
    """``memory[hbm].bandwidth`` → ``["memory", "hbm", "bandwidth"]``."""
    text = re.sub(r"\[([^\]]*)\]", r".\1", path.strip())
    return [p.strip() for p in text.split(".") if p.strip()]


def _did_you_mean(path: str, model: Strict) -> str:
    known = override_paths(model)
    guess = difflib.get_close_matches(path, known, n=1, cutoff=0.6)
    if not guess:  # a misspelt last part: compare the leaf names under the same parent
        head = path.rsplit(".", 1)[0]
        guess = difflib.get_close_matches(
            path, [k for k in known if k.startswith(head)], n=1, cutoff=0.4
        )
    hint = f"; did you mean '{guess[0]}'?" if guess else ""
    return f"{hint} (settable paths: {', '.join(known)})"


def lookup(model: Strict, path: str) -> SettablePath | list[SettablePath]:
    """The settable number at ``path``; for a path ending at a memory level or port, the list of
    its numbers (the caller picks one by the value's dimension)."""
    parts = _parts(path)
    if not parts:
        raise SpecError("empty spec path" + _did_you_mean("", model))
    all_paths = settable_paths(model)
    by_path = {p.path: p for p in all_paths}
    by_loc = {p.loc: p for p in all_paths}
    names = set(type(model).model_fields)
    memory = getattr(model, "memory", None)
    if parts[0] not in names and isinstance(memory, list):
        if any(_label(m) == parts[0] for m in memory):
            parts = ["memory", *parts]  # shorthand: a level name first
    # try the canonical form first, then interpret numeric parts as list indices
    canonical = ".".join(parts)
    if canonical in by_path:
        return by_path[canonical]
    loc: list[int | str] = []
    obj: Any = model
    for part in parts:
        if isinstance(obj, list):
            idx = next((i for i, v in enumerate(obj) if _label(v) == part), None)
            if idx is None and part.lstrip("-").isdigit() and -len(obj) <= int(part) < len(obj):
                idx = int(part) % len(obj)
            if idx is None:
                break
            loc.append(idx)
            obj = obj[idx]
        elif isinstance(obj, Strict):
            if part not in type(obj).model_fields:
                break
            loc.append(part)
            obj = getattr(obj, part)
        elif isinstance(obj, dict):
            loc.append(part)
            obj = obj.get(part)
        else:
            break
    else:
        found = by_loc.get(tuple(loc))
        if found is not None:
            return found
        below = [p for p in all_paths if p.loc[: len(loc)] == tuple(loc)]
        if below and isinstance(obj, Strict):
            return below
    raise SpecError(
        f"unknown spec path '{path}' for {spec_name(model)}" + _did_you_mean(path, model)
    )


def spec_name(model: Strict) -> str:
    return str(getattr(model, "name", type(model).__name__))


def get_value(model: Strict, path: str) -> float:
    """Current SI value of the number at ``path`` (NaN if it is not set)."""
    found = lookup(model, path)
    if isinstance(found, list):
        raise SpecError(
            f"'{path}' is a whole section; name one of: {', '.join(p.path for p in found)}"
        )
    return math.nan if found.value is None else found.value


def canonical_path(model: Strict, path: str) -> str:
    """The canonical dotted form of ``path`` (``hbm.bandwidth`` → ``memory.hbm.bandwidth``)."""
    found = lookup(model, path)
    if isinstance(found, list):
        raise SpecError(
            f"'{path}' is a whole section; name one of: {', '.join(p.path for p in found)}"
        )
    return found.path


def path_dim(model: Strict, path: str) -> Dim | None:
    """Dimension of the number at ``path`` (None if it is not set on ``model``)."""
    found = lookup(model, path)
    return None if isinstance(found, list) else found.dim
