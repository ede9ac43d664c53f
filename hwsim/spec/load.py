"""YAML → validated spec models. Every failure is a :class:`SpecError` naming file, line and key.

* YAML is read with ``yaml.safe_load`` only, so ``!!python`` tags are refused.
* Alias bombs are refused before construction (too many ``*alias`` references).
* Pydantic errors are turned into one line: ``file:line: key.path: what was expected``, with a
  "did you mean" suggestion for unknown keys.
"""

from __future__ import annotations

import difflib
import functools
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from hwsim.spec.device import Device
from hwsim.spec.errors import SpecError

M = TypeVar("M", bound=BaseModel)

#: Repository folder holding the built-in device YAML files (names are file stems).
DEVICES_DIR = Path(__file__).resolve().parents[2] / "devices"
MAX_ALIASES = 100
MAX_FILE_BYTES = 2_000_000


def read_yaml(path: Path) -> tuple[Any, yaml.Node | None]:
    """Read a YAML file safely; return the data and its node tree (for line numbers)."""
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError("file not found", file=file) from None
    except (OSError, UnicodeDecodeError) as err:
        raise SpecError(f"cannot read file: {err}", file=file) from None
    return parse_yaml_text(text, file)


def parse_yaml_text(text: str, file: str) -> tuple[Any, yaml.Node | None]:
    """Parse YAML text with ``safe_load``; syntax errors carry the parser's line number."""
    if len(text) > MAX_FILE_BYTES:
        raise SpecError(
            f"file is {len(text)} bytes; specs are limited to {MAX_FILE_BYTES}", file=file
        )
    try:
        aliases = sum(isinstance(ev, yaml.AliasEvent) for ev in yaml.parse(text))
        if aliases > MAX_ALIASES:
            raise SpecError(
                f"{aliases} YAML aliases (*ref); more than {MAX_ALIASES} looks like an alias bomb",
                file=file,
            )
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark else None
        problem = err.problem or "invalid YAML"
        if "could not determine a constructor" in str(err):
            problem = f"tag not allowed (YAML is loaded with safe_load only): {problem}"
        raise SpecError(f"YAML error: {problem}", file=file, line=line) from None
    except yaml.YAMLError as err:
        raise SpecError(f"YAML error: {err}", file=file) from None
    return data, node


def _line_of(node: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    """Line (1-based) of the deepest node along ``loc`` that exists in the YAML node tree."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == part:
                    line = key.start_mark.line + 1
                    node = value
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                return line
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def _format_loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _unwrap(tp: Any) -> list[Any]:
    """The concrete types inside Optional/Annotated/list/dict annotations."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(tp)[0])
    if origin in (typing.Union, types.UnionType):
        return [t for a in typing.get_args(tp) for t in _unwrap(a)]
    return [tp]


def _model_at(model: type[BaseModel], loc: tuple[int | str, ...]) -> type[BaseModel] | None:
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


def _message(model: type[BaseModel], err: dict[str, Any]) -> str:
    kind = err["type"]
    loc = tuple(err["loc"])
    if kind == "extra_forbidden":
        parent = _model_at(model, loc[:-1])
        allowed = sorted(parent.model_fields) if parent else []
        guess = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        hint = f"; did you mean '{guess[0]}'?" if guess else ""
        return f"unknown key{hint} (allowed: {', '.join(allowed)})"
    if kind == "missing":
        return "required key is missing"
    if kind == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        got = err.get("input")
        guess = difflib.get_close_matches(
            str(got), [e.strip(" '") for e in expected.replace(" or ", ",").split(",")], n=1
        )
        hint = f"; did you mean '{guess[0]}'?" if guess else ""
        return f"got {got!r}, expected one of {expected}{hint}"
    msg = str(err["msg"])
    return msg.removeprefix("Value error, ")


def validate(model: type[M], data: Any, *, file: str, node: yaml.Node | None = None) -> M:
    """Validate plain data against ``model``; errors become one-line :class:`SpecError`s."""
    if not isinstance(data, dict):
        raise SpecError(
            f"expected a mapping at the top level, got {type(data).__name__}", file=file, line=1
        )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        # an unknown key explains the "missing" error that usually comes with it: report it first
        errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
        first = errors[0]
        loc = tuple(first["loc"])
        # the model-level validator reports its own dotted path inside the message
        more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
        raise SpecError(
            _message(model, dict(first)) + more,
            file=file,
            key=_format_loc(loc) or None,
            line=_line_of(node, loc),
        ) from None


def load_model(model: type[M], path: Path) -> M:
    """Read and validate one YAML file against ``model``."""
    data, node = read_yaml(path)
    return validate(model, data, file=str(path), node=node)


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
        raise SpecError(
            f"unknown {what} '{name_or_path}'{_suggest(name_or_path, known)} "
            f"(built-in: {', '.join(known)}; or pass a path to a .yaml file)"
        )
    return path


@functools.lru_cache(maxsize=256)
def _load_device_cached(path: str, mtime: float) -> Device:
    return load_model(Device, Path(path))


def load_device(name_or_path: str) -> Device:
    """Load a device by built-in name (``h100-sxm``) or by path to a YAML file."""
    path = resolve_path(name_or_path, DEVICES_DIR, "device")
    return _load_device_cached(str(path.resolve()), path.stat().st_mtime)
