"""Turning pydantic validation errors into one-line messages that point at the YAML line.

* :func:`line_of` finds the line of a key path in the YAML node tree.
* :func:`spec_error` turns a ``ValidationError`` into one :class:`SpecError`: the most telling
  problem first (an unknown key explains the "missing" error of the key it misspells), a
  "did you mean" for unknown keys and choices (domain synonyms before string similarity),
  plain words for type errors, and the offending key's line for validator errors - from a
  :class:`~hwsim.spec.errors.FieldError`'s key path, or from a dotted path that starts the
  message (``memory[smem].latency.source: ...``, ``moe.top_k (16) must be ...``).
"""

from __future__ import annotations

import datetime
import difflib
import re
import types
import typing
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from hwsim.spec.errors import FieldError, Loc, SpecError, format_loc


# ---- locating keys in the YAML node tree -------------------------------------------------------
def _child(node: yaml.Node | None, part: int | str) -> yaml.Node | None:
    """The child node of ``node`` at key or index ``part`` (None if absent)."""
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                return value
    elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
        if 0 <= part < len(node.value):
            return node.value[part]
    return None


def _line_of(node: yaml.Node | None, loc: Loc) -> int | None:
    """Line (1-based) of the deepest key along ``loc`` that exists in the YAML node tree."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                    line = key.start_mark.line + 1
                    node = value
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if not 0 <= part < len(node.value):
                return line
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def _resolves(node: yaml.Node | None, loc: Loc) -> bool:
    for part in loc:
        node = _child(node, part)
        if node is None:
            return False
    return True


_PATH_RE = re.compile(
    r"^(?P<path>[A-Za-z_][\w-]*(?:\[[^\]\s]+\]|\.[A-Za-z_][\w-]*)*): (?P<rest>.+)$"
)


def _parse_path(text: str, node: yaml.Node | None, base: Loc) -> Loc | None:
    """``memory[smem].latency.source`` → ``("memory", 0, "latency", "source")``, looking list
    items up by their ``name`` (or ``kind``) in the YAML under ``base``; None if it fails."""
    parts: list[int | str] = []
    for m in re.finditer(r"\[([^\]]+)\]|\.?([A-Za-z_][\w-]*)", text):
        if m.group(2) is not None:
            parts.append(m.group(2))
            continue
        label = m.group(1)
        if label.lstrip("-").isdigit():
            parts.append(int(label))
            continue
        seq = node
        for p in (*base, *parts):
            seq = _child(seq, p)
        if not isinstance(seq, yaml.SequenceNode):
            return None
        for i, item in enumerate(seq.value):
            if any(
                isinstance(_child(item, k), yaml.ScalarNode) and _child(item, k).value == label  # type: ignore[union-attr]
                for k in ("name", "kind", "id")
            ):
                parts.append(i)
                break
        else:
            return None
    return tuple(parts)


_LEAD_RE = re.compile(r"^(?P<path>[A-Za-z_][\w-]*(?:\[[^\]\s]+\]|\.[A-Za-z_][\w-]*)+) ")


def _relocate(loc: Loc, message: str, node: yaml.Node | None) -> tuple[Loc, str, int | None]:
    """Move a validator error from its model's loc to the key its message names.

    ``"memory[smem].latency.source: 'x' is not ..."`` becomes key ``memory[0].latency.source``
    with the rest as message; ``"moe.top_k (8) must be <= ..."`` keeps its message and takes
    ``moe.top_k``'s line. Returns (loc, message, line or None to use ``loc``'s line)."""
    if node is None:
        return loc, message, None
    bases = [loc]
    if loc:
        # a sub-model's validator often names its own key first ("attention.heads ...")
        bases = [loc[:-1], loc] if message.startswith(str(loc[-1])) else [loc, loc[:-1]]
    m = _PATH_RE.match(message)
    if m is not None:
        parsed = [(b, _parse_path(m.group("path"), node, b)) for b in bases]
        for base, rel in parsed:
            if rel and _resolves(node, base + rel):
                return base + rel, m.group("rest"), None
        for base, rel in parsed:
            # the last key may be absent (a missing key is named by its parent's line)
            if rel and _resolves(node, base + rel[:-1]):
                return base + rel, m.group("rest"), None
    m = _LEAD_RE.match(message)
    if m is not None:
        for base in bases:
            rel = _parse_path(m.group("path"), node, base)
            if rel and _resolves(node, base + rel):
                return loc, message, _line_of(node, base + rel)
    return loc, message, None


# ---- pydantic errors → one line ----------------------------------------------------------------
def _unwrap(tp: Any) -> list[Any]:
    """The concrete types inside Optional/Annotated/list/dict annotations."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(tp)[0])
    if origin in (typing.Union, types.UnionType):
        return [t for a in typing.get_args(tp) for t in _unwrap(a)]
    return [tp]


def _model_at(model: type[BaseModel], loc: Loc) -> type[BaseModel] | None:
    """The pydantic model class found by walking field names in ``loc`` (lists/dicts skipped)."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(part))
            if field is None:
                by_alias = {f.alias: f for f in current.model_fields.values() if f.alias}
                field = by_alias.get(str(part))
            if field is None:
                return None
            current = field.annotation
        elif typing.get_origin(current) is not dict:
            return None
        candidates = _unwrap(current)
        nxt = None
        for c in candidates:
            origin = typing.get_origin(c)
            if origin in (list, tuple):
                c = _unwrap(typing.get_args(c)[0])[0]
            elif origin is dict:
                c = _unwrap(typing.get_args(c)[1])[0]
            if isinstance(c, type) and issubclass(c, BaseModel):
                nxt = c
        if nxt is None:
            return None
        current = nxt
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _choices(expected: str) -> list[str]:
    return [e.strip(" '") for e in expected.replace(" or ", ",").split(",") if e.strip(" '")]


_TYPE_NOUNS = {
    "string_type": "text",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "finite_number": "a finite number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "dict_type": "a mapping (key: value lines)",
    "model_type": "a mapping (key: value lines)",
    "model_attributes_type": "a mapping (key: value lines)",
    "list_type": "a list (lines starting with '- ')",
    "tuple_type": "a list (lines starting with '- ')",
}


#: What people write for a Literal choice → the choice they mean (beats string similarity:
#: difflib would suggest 'per_system' for 'per_sm').
SYNONYMS = {
    "per_sm": "per_unit",
    "per_cu": "per_unit",
    "per_core": "per_unit",
    "per_pcu": "per_unit",
    "per_gpu": "per_chip",
    "per_device": "per_chip",
    "per_socket": "per_chip",
    "per_server": "per_node",
    "per_cluster": "per_system",
    "bfloat16": "bf16",
    "float16": "fp16",
    "half": "fp16",
    "float32": "fp32",
    "float": "fp32",
    "e4m3": "fp8",
    "fp8_e4m3": "fp8",
    "e5m2": "fp8",
    "fp8_e5m2": "fp8",
    "wafer": "wafer_scale",
    "wse": "wafer_scale",
    "rdu": "dataflow",
    "tpu": "dataflow",
    "nvl": "nvlink",
    "ib": "infiniband",
    "roce": "ethernet",
}

_BOUNDS = {
    "greater_than": ("greater than", "gt"),
    "greater_than_equal": ("at least", "ge"),
    "less_than": ("less than", "lt"),
    "less_than_equal": ("at most", "le"),
}


def _message(model: type[BaseModel], err: dict[str, Any]) -> str:
    kind = err["type"]
    loc = tuple(err["loc"])
    if kind == "extra_forbidden":
        parent = _model_at(model, loc[:-1])
        allowed = sorted(parent.model_fields) if parent else []
        guess = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        if guess:  # the likely fix is the help; the full list would only bury it
            return f"unknown key; did you mean '{guess[0]}'?"
        return f"unknown key (allowed: {', '.join(allowed)})"
    if kind == "missing":
        return "required key is missing"
    if kind == "union_tag_invalid":  # a discriminated union: ``network: {kind: fattree}``
        ctx = err.get("ctx", {})
        tags = _choices(ctx.get("expected_tags", "").replace("'", ""))
        tag = str(ctx.get("tag"))
        synonym = SYNONYMS.get(tag.lower())
        guess = [synonym] if synonym in tags else difflib.get_close_matches(tag, tags, n=1)
        hint = f"; did you mean '{guess[0]}'?" if guess else ""
        return f"got {tag!r}, expected one of {', '.join(tags)}{hint}"
    if kind == "union_tag_not_found":
        return f"required key {err.get('ctx', {}).get('discriminator', 'kind')} is missing"
    if kind == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        got = err.get("input")
        choices = _choices(expected)
        synonym = SYNONYMS.get(str(got).lower())
        guess = (
            [synonym] if synonym in choices else difflib.get_close_matches(str(got), choices, n=1)
        )
        hint = f"; did you mean '{guess[0]}'?" if guess else ""
        what = "unknown key" if loc and loc[-1] == "[key]" else "got"
        return f"{what} {_short(got)}, expected one of {expected}{hint}"
    bound = _BOUNDS.get(kind)
    if bound is not None:
        limit = err.get("ctx", {}).get(bound[1])
        return f"must be {bound[0]} {limit}, got {_short(err.get('input'))}"
    if kind in _TYPE_NOUNS:
        got = err.get("input")
        if isinstance(got, datetime.date):
            return f"expected {_TYPE_NOUNS[kind]}, got the date {got} (quote it to keep it text)"
        if isinstance(got, dict):
            return f"expected {_TYPE_NOUNS[kind]}, got a mapping"
        if isinstance(got, list):
            return f"expected {_TYPE_NOUNS[kind]}, got a list"
        return f"expected {_TYPE_NOUNS[kind]}, got {_short(got)}"
    msg = str(err["msg"])
    return msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")


def _clean_loc(loc: Loc) -> Loc:
    """Drop pydantic's internal loc parts (``[key]``, union member tags) from a key path."""
    out: list[int | str] = []
    for part in loc:
        if part == "[key]" or (isinstance(part, str) and ("[" in part or "(" in part)):
            continue
        out.append(part)
    return tuple(out)


def spec_error(
    model: type[BaseModel], exc: ValidationError, *, file: str, node: yaml.Node | None = None
) -> SpecError:
    """One :class:`SpecError` for a pydantic ``ValidationError``: the most telling problem first
    (an unknown key explains the "missing" error of the key it misspells), with its YAML line."""
    errors: list[dict[str, Any]] = [dict(e) for e in exc.errors()]
    typo_parents = {tuple(e["loc"][:-1]) for e in errors if e["type"] == "extra_forbidden"}
    errors = [
        e for e in errors if not (e["type"] == "missing" and tuple(e["loc"][:-1]) in typo_parents)
    ]
    errors.sort(key=lambda e: e["type"] != "extra_forbidden")
    first = errors[0]
    loc: Loc = tuple(first["loc"])
    cause = first.get("ctx", {}).get("error")
    line = None
    if isinstance(cause, FieldError):
        loc, message = loc + cause.loc, cause.message
    elif first["type"] in ("value_error", "assertion_error"):
        loc, message, line = _relocate(loc, _message(model, first), node)
    else:
        message = _message(model, first)
    loc = _clean_loc(loc)
    if first["type"] in ("union_tag_invalid", "union_tag_not_found"):
        loc = (*loc, str(first.get("ctx", {}).get("discriminator", "kind")).strip("'"))
    key = format_loc(loc) or None
    if key and message.startswith((f"{key}.", f"{key} ", f"{key}:")):
        key = None  # the message already names it ("attention.heads (32) must be ...")
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    return SpecError(message + more, file=file, key=key, line=line or _line_of(node, loc))


line_of = _line_of
