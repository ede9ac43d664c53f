"""YAML → validated spec models. Every failure is a :class:`SpecError` naming file, line and key.

* YAML is composed once with the safe loader, so ``!!python`` and other custom tags are refused.
* Before anything is built, the node tree is checked: duplicate keys (YAML would silently keep
  the last), nesting depth (and recursive aliases), alias bombs (aliases that expand to a huge
  tree even though the file is small) and integers too long to convert.
* Pydantic errors are turned into one line: ``file:line: key.path: what was expected``, with a
  "did you mean" suggestion for unknown keys (:mod:`hwsim.spec.messages`). Validators point at
  the offending key by raising :class:`~hwsim.spec.errors.FieldError` (or by starting their
  message with a dotted key path).
* :class:`~hwsim.spec.errors.SpecWarning` raised while validating is re-issued with the file,
  line and key prefixed, so a suspicious spec still loads but the user sees where to look.
"""

from __future__ import annotations

import difflib
import functools
import json
import warnings
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from hwsim.spec.device import Device
from hwsim.spec.errors import SpecError, SpecWarning, format_loc, one_line
from hwsim.spec.messages import _line_of, spec_error

__all__ = [
    "DEVICES_DIR",
    "list_devices",
    "load_device",
    "load_model",
    "parse_yaml_text",
    "read_json",
    "read_text_limited",
    "read_yaml",
    "resolve_path",
    "spec_error",
    "validate",
]

M = TypeVar("M", bound=BaseModel)

#: Repository folder holding the built-in device YAML files (names are file stems).
DEVICES_DIR = Path(__file__).resolve().parents[2] / "devices"
MAX_ALIASES = 100  #: more ``*alias`` references than this in one file is refused
MAX_FILE_BYTES = 2_000_000  #: specs are small; a bigger file is a mistake (or an attack)
MAX_DEPTH = 50  #: nesting deeper than this is a mistake, or a recursive alias
MAX_NODES = 200_000  #: nodes after expanding aliases; a billion-laughs file exceeds it at once
MAX_INT_DIGITS = 100  #: longer integers than this are not a spec number (and slow to convert)


# ---- reading YAML -----------------------------------------------------------------------------
def read_text_limited(path: Path, limit: int = MAX_FILE_BYTES, what: str = "specs") -> str:
    """A user's text file, read without ever holding more than ``limit`` bytes of it: a larger
    file (or a device such as /dev/zero) is refused before it is read whole. UTF-8 errors
    and unreadable files are :class:`SpecError` s naming the file (and the line)."""
    file = str(path)
    try:
        with open(path, "rb") as fh:
            data = fh.read(limit + 1)
            if len(data) > limit:
                try:
                    size = f"{path.stat().st_size:,} bytes" if path.is_file() else "endless"
                except OSError:
                    size = "too large"
                raise SpecError(f"file is {size}; {what} are limited to {limit:,} bytes", file=file)
    except FileNotFoundError:
        raise SpecError("file not found", file=file) from None
    except IsADirectoryError:
        raise SpecError("is a directory, expected a file", file=file) from None
    except OSError as err:
        raise SpecError(f"cannot read file: {err.strerror or err}", file=file) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise SpecError(
            f"not UTF-8 text ({err.reason} at byte {err.start}); save the file as UTF-8",
            file=file,
            line=data[: err.start].count(b"\n") + 1,
        ) from None


def read_json(path: Path, limit: int = MAX_FILE_BYTES, what: str = "JSON files") -> Any:
    """A user's JSON file, size-limited as :func:`read_text_limited`; syntax errors name the
    line, and nesting too deep for the parser is one line too (not a RecursionError)."""
    text = read_text_limited(path, limit, what)
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise SpecError(
            f"cannot read JSON: {err.msg} (column {err.colno})", file=str(path), line=err.lineno
        ) from None
    except RecursionError:
        raise SpecError("JSON nested too deeply", file=str(path)) from None
    except ValueError as err:  # an integer of thousands of digits
        raise SpecError(f"cannot read JSON: {one_line(str(err))[:120]}", file=str(path)) from None


def read_yaml(path: Path) -> tuple[Any, yaml.Node | None]:
    """Read a YAML file safely; return the data and its node tree (for line numbers)."""
    file = str(path)
    try:
        # sized before it is read: a 10 GB file (or /dev/zero) is refused, not loaded
        if path.exists() and not path.is_file() and not path.is_dir():
            raise SpecError("not a regular file, expected a YAML file", file=file)
        size = path.stat().st_size
        if size > MAX_FILE_BYTES and not path.is_dir():
            raise SpecError(
                f"file is {size} bytes; specs are limited to {MAX_FILE_BYTES}", file=file
            )
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
