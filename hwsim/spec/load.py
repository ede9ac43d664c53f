"""YAML → validated spec models. Every failure is a :class:`SpecError` naming file, line and key.

* YAML is composed once with the safe loader, so ``!!python`` and other custom tags are refused.
* Before anything is built, the node tree is checked: duplicate keys (YAML would silently keep
  the last), nesting depth (and recursive aliases), alias bombs (aliases that expand to a huge
  tree even though the file is small) and integers too long to convert.
* Pydantic errors are turned into one line: ``file:line: key.path: what was expected``, with a
  "did you mean" suggestion for unknown keys. Validators point at the offending key by raising
  :class:`~hwsim.spec.errors.FieldError` (or by starting their message with a dotted key path).
* :class:`~hwsim.spec.errors.SpecWarning` raised while validating is re-issued with the file,
  line and key prefixed, so a suspicious spec still loads but the user sees where to look.
"""

from __future__ import annotations

import datetime
import difflib
import functools
import re
import types
import typing
import warnings
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from hwsim.spec.device import Device
from hwsim.spec.errors import FieldError, Loc, SpecError, SpecWarning, format_loc, one_line

M = TypeVar("M", bound=BaseModel)

#: Repository folder holding the built-in device YAML files (names are file stems).
DEVICES_DIR = Path(__file__).resolve().parents[2] / "devices"
MAX_ALIASES = 100  #: more ``*alias`` references than this in one file is refused
MAX_FILE_BYTES = 2_000_000  #: specs are small; a bigger file is a mistake (or an attack)
MAX_DEPTH = 50  #: nesting deeper than this is a mistake, or a recursive alias
MAX_NODES = 200_000  #: nodes after expanding aliases; a billion-laughs file exceeds it at once
MAX_INT_DIGITS = 100  #: longer integers than this are not a spec number (and slow to convert)


# ---- reading YAML -----------------------------------------------------------------------------
def read_yaml(path: Path) -> tuple[Any, yaml.Node | None]:
    """Read a YAML file safely; return the data and its node tree (for line numbers)."""
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError("file not found", file=file) from None
    except IsADirectoryError:
        raise SpecError("is a directory, expected a YAML file", file=file) from None
    except UnicodeDecodeError as err:
        line = path.read_bytes()[: err.start].count(b"\n") + 1
        raise SpecError(
            f"not UTF-8 text ({err.reason} at byte {err.start}); save the file as UTF-8",
            file=file,
            line=line,
        ) from None
    except OSError as err:
        raise SpecError(f"cannot read file: {err.strerror or err}", file=file) from None
    return parse_yaml_text(text, file)


#: Plain-words hints for PyYAML's most common complaints.
_YAML_HINTS = {
    "mapping values are not allowed here": "a 'key: value' where a plain value was expected; "
    "check the indentation, or quote a value that contains ': '",
    "cannot start any token": "YAML is indented with spaces, never tabs",
    "found unexpected end of stream": "a quote is never closed",
    "did not find expected key": "check the indentation of this block",
    "found duplicate anchor": "each &anchor name may be defined once",
}


def _yaml_error(err: yaml.YAMLError, file: str) -> SpecError:
    if not isinstance(err, yaml.MarkedYAMLError):
        return SpecError(f"YAML error: {err}", file=file)
    mark = err.problem_mark or err.context_mark
    problem = err.problem or "invalid YAML"
    context = err.context or ""
    opened = err.context_mark
    if opened is not None and ("end of stream" in problem or "<stream end>" in problem):
        mark = opened  # an unclosed bracket or quote: point at where it opened
    elif (
        opened is not None and mark is not None and opened.line != mark.line and "while" in context
    ):
        context = f"{context} that starts on line {opened.line + 1}"
    line = mark.line + 1 if mark else None
    if "could not determine a constructor" in problem:
        tag = problem.split("tag", 1)[-1].strip(" '").replace("tag:yaml.org,2002:", "!!")
        return SpecError(
            f"YAML tag '{tag}' is not allowed (spec files are read with the safe loader)",
            file=file,
            line=line,
        )
    hint = next((h for k, h in _YAML_HINTS.items() if k in problem), "")
    detail = "; ".join(x for x in (context, hint) if x)
    return SpecError(
        f"YAML error: {problem}" + (f" ({detail})" if detail else ""), file=file, line=line
    )


def parse_yaml_text(text: str, file: str) -> tuple[Any, yaml.Node | None]:
    """Parse YAML text safely; syntax errors carry the parser's line number."""
    if len(text) > MAX_FILE_BYTES:
        raise SpecError(
            f"file is {len(text)} bytes; specs are limited to {MAX_FILE_BYTES}", file=file
        )
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as err:
        raise _yaml_error(err, file) from None
    except RecursionError:
        raise SpecError(f"YAML nested too deeply (limit {MAX_DEPTH} levels)", file=file) from None
    except (ValueError, OverflowError) as err:  # PyYAML: chr() of a bad "\U..." escape
        raise SpecError(f"YAML error: bad escape in a quoted string ({err})", file=file) from None
    if node is None:
        return None, None
    _check_tree(node, file)
    try:
        data = yaml.SafeLoader("").construct_document(node)
    except yaml.YAMLError as err:
        raise _yaml_error(err, file) from None
    return data, node


def _check_tree(root: yaml.Node, file: str) -> None:
    """Refuse duplicate keys, deep nesting, alias bombs and absurdly long integers."""
    seen: set[int] = set()  # nodes already checked (an alias shares its anchor's node)
    sizes: dict[int, int] = {}  # node id → size once expanded (memoised: bombs stay cheap)
    aliases = 0

    def walk(node: yaml.Node, depth: int) -> int:
        nonlocal aliases
        line = node.start_mark.line + 1
        if depth > MAX_DEPTH:
            raise SpecError(
                f"YAML nested deeper than {MAX_DEPTH} levels (or a recursive alias)",
                file=file,
                line=line,
            )
        if id(node) in seen:
            aliases += 1
            if aliases > MAX_ALIASES:
                raise SpecError(
                    f"more than {MAX_ALIASES} YAML aliases (*ref); that looks like an alias bomb",
                    file=file,
                    line=line,
                )
            if id(node) in sizes:
                return sizes[id(node)]
        seen.add(id(node))
        size = 1
        if isinstance(node, yaml.ScalarNode):
            if (
                node.tag == "tag:yaml.org,2002:int"
                and len(node.value.lstrip("+-")) > MAX_INT_DIGITS
            ):
                raise SpecError(
                    f"a {len(node.value)}-digit integer is not a plausible spec number",
                    file=file,
                    line=line,
                )
        elif isinstance(node, yaml.SequenceNode):
            size += sum(walk(child, depth + 1) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            first: dict[str, int] = {}
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.value != "<<":
                    if key.value in first:
                        raise SpecError(
                            f"duplicate key '{key.value}' (first on line {first[key.value]}); "
                            "YAML would silently keep only the last one",
                            file=file,
                            line=key.start_mark.line + 1,
                        )
                    first[key.value] = key.start_mark.line + 1
                size += walk(key, depth + 1) + walk(value, depth + 1)
        sizes[id(node)] = size
        if size > MAX_NODES:
            raise SpecError(
                f"YAML aliases expand to more than {MAX_NODES} nodes; "
                "that looks like an alias bomb",
                file=file,
                line=line,
            )
        return size

    walk(root, 0)


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


def validate(model: type[M], data: Any, *, file: str, node: yaml.Node | None = None) -> M:
    """Validate plain data against ``model``; errors become one-line :class:`SpecError`s and
    :class:`SpecWarning`s are re-issued with ``file:line: key:`` in front."""
    if data is None:
        raise SpecError("the file is empty; expected a mapping of keys", file=file, line=1)
    if not isinstance(data, dict):
        raise SpecError(
            f"expected a mapping of keys at the top level, got {type(data).__name__}",
            file=file,
            line=1,
        )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = model.model_validate(data)
        except ValidationError as exc:
            raise spec_error(model, exc, file=file, node=node) from None
        except ArithmeticError as exc:  # a validator dividing by a zero the schema let through
            raise SpecError(f"invalid numbers ({exc})", file=file) from None
    for w in caught:
        if isinstance(w.message, SpecWarning):
            loc = w.message.loc
            where = SpecError(
                w.message.message, file=file, key=format_loc(loc) or None, line=_line_of(node, loc)
            )
            warnings.warn(SpecWarning(str(where), loc), stacklevel=2)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return result


def load_model(model: type[M], path: Path) -> M:
    """Read and validate one YAML file against ``model``."""
    data, node = read_yaml(path)
    return validate(model, data, file=str(path), node=node)


# ---- names → files -----------------------------------------------------------------------------
def _suggest(name: str, known: list[str]) -> str:
    guess = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
    return f"; did you mean '{guess[0]}'?" if guess else ""


def list_devices(directory: Path = DEVICES_DIR) -> list[str]:
    """Names (file stems) of the built-in devices, sorted."""
    return sorted(p.stem for p in directory.glob("*.yaml"))


def resolve_path(name_or_path: str, directory: Path, what: str) -> Path:
    """A YAML path from a built-in name (file stem in ``directory``) or an explicit path."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml") or candidate.exists():
        if not candidate.exists():
            raise SpecError(f"{what} file not found", file=name_or_path)
        return candidate
    path = directory / f"{name_or_path}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in directory.glob("*.yaml"))
        hint = _suggest(name_or_path, known)
        # with a likely match, the full list is noise; without one, it is the help
        choices = "" if hint else f"built-in: {', '.join(known)}; "
        raise SpecError(
            f"unknown {what} '{one_line(name_or_path)}'{hint} "
            f"({choices}or pass a path to a .yaml file)"
        )
    return path


@functools.lru_cache(maxsize=256)
def _load_device_cached(path: str, resolved: str, mtime: float) -> Device:
    # ``path`` is the file as the user named it, so messages show that, not an absolute path
    return load_model(Device, Path(path))


def load_device(name_or_path: str) -> Device:
    """Load a device by built-in name (``h100-sxm``) or by path to a YAML file."""
    path = resolve_path(name_or_path, DEVICES_DIR, "device")
    return _load_device_cached(str(path), str(path.resolve()), path.stat().st_mtime)


_format_loc = format_loc  # kept for older callers
