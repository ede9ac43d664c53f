"""Reading traffic: built-in names, traffic YAML files and trace files (CSV/JSONL), each failure
a one-line :class:`SpecError` naming the file, line and key. See :mod:`hwsim.serve.traffic`.

Traffic YAML: every number is a leaf ``{value: X, source: <key of sources>}`` or ``{value: X,
estimate: "<why>"}`` (``derived`` and ``note`` optional); a histogram block carries one
``source``/``estimate`` for its ``edges`` and ``weights``. The loader records each citation in
``TrafficSpec.citations`` (``estimate: ...`` for estimates) and validates the plain values.

Trace files are read one bounded line at a time (:data:`MAX_LINE_BYTES`): a 10 GB file is never
held whole; more rows than ``max_requests`` is refused unless ``first=N`` stops early.
"""

from __future__ import annotations

import array
import difflib
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np
import yaml
from pydantic import ValidationError

from hwsim.serve.traffic import DEFAULT_MAX_REQUESTS, Requests, Trace
from hwsim.serve.traffic_spec import MAX_TOKENS, TrafficSpec
from hwsim.spec.errors import SpecError, format_loc, one_line
from hwsim.spec.load import read_yaml, validate
from hwsim.spec.messages import line_of, spec_error
from hwsim.spec.units import Dim, UnitError, parse_quantity

#: Folder of the built-in traffic profiles (names are file stems).
TRAFFIC_DIR = Path(__file__).resolve().parents[2] / "workloads" / "traffic"
TRACE_SUFFIXES = (".csv", ".jsonl", ".ndjson")
REQUIRED = ("arrival_s", "prompt_tokens", "output_tokens")
OPTIONAL = ("prefix_id", "prefix_tokens")
MAX_LINE_BYTES = 4096  #: a trace line holds a few numbers; a longer one is not a trace
_LEAF = {"value", "source", "estimate", "derived", "note"}
TIME_KEYS = ("ttft", "tpot", "think")  #: YAML keys whose values are times with units
#: discriminator values pydantic puts into error locations (``arrival.gamma.qps``)
_TAGS = {"poisson", "gamma", "closed", "offline", "system", "conversation"}
_META = ("source", "estimate", "derived", "note")


def list_builtin(directory: Path = TRAFFIC_DIR) -> list[str]:
    return sorted(p.stem for p in directory.glob("*.yaml"))


def load(name_or_path: str, *, first: int | None, max_requests: int) -> TrafficSpec | Trace:
    path = Path(name_or_path)
    if path.suffix.lower() in TRACE_SUFFIXES:
        return read_trace(path, first=first, max_requests=max_requests)
    if path.suffix.lower() == ".json":
        raise SpecError(
            "a trace is CSV or JSON Lines (one object per line, named .jsonl), not one JSON "
            "document; a traffic profile is YAML",
            file=name_or_path,
        )
    if path.suffix.lower() in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise SpecError("traffic file not found", file=name_or_path)
        return load_spec(path)
    builtin = TRAFFIC_DIR / f"{name_or_path}.yaml"
    if builtin.is_file() and "/" not in name_or_path and "\\" not in name_or_path:
        try:  # messages name the file as the user would: relative to where they run hwsim
            builtin = builtin.relative_to(Path.cwd())
        except ValueError:
            pass
        return load_spec(builtin)
    known = list_builtin()
    guess = difflib.get_close_matches(name_or_path, known, n=1, cutoff=0.5)
    hint = f"; did you mean '{guess[0]}'?" if guess else ""
    raise SpecError(
        f"unknown traffic '{one_line(name_or_path)}'{hint} (built-in: {', '.join(known)}; or "
        "pass a traffic .yaml file or a .csv/.jsonl trace)",
        key="--traffic",
    )


# ---- traffic YAML ---------------------------------------------------------------------------
def load_spec(path: Path) -> TrafficSpec:
    """Read and validate one traffic YAML file."""
    file = str(path)
    data, node = read_yaml(path)
    if isinstance(data, dict):
        data = _unwrap(data, node, file)
    try:
        TrafficSpec.model_validate(data)
    except ValidationError as exc:
        raise spec_error(TrafficSpec, _drop_tags(exc), file=file, node=node) from None
    except (TypeError, ArithmeticError):
        pass  # validate() below reports those the usual way
    spec = validate(TrafficSpec, data, file=file, node=node)
    return spec.model_copy(update={"file": file})


def _is_index(part: object) -> bool:
    return isinstance(part, int)


def _drop_tags(exc: ValidationError) -> ValidationError:
    """The same errors without the union tags in their paths, so they name the YAML key (and
    line): ``arrival.qps``, not ``arrival.gamma.qps``."""
    details: list[Any] = []
    for err in exc.errors():
        loc = list(err["loc"])
        loc = [
            p
            for i, p in enumerate(loc)
            if not (i and p in _TAGS and (loc[i - 1] == "arrival" or _is_index(loc[i - 1])))
        ]
        detail = {"type": err["type"], "loc": tuple(loc), "input": err.get("input")}
        if "ctx" in err:
            detail["ctx"] = err["ctx"]
        details.append(detail)
    try:
        return ValidationError.from_exception_data(exc.title, details)
    except (TypeError, ValueError, KeyError):
        return exc


def _unwrap(data: dict[str, Any], node: yaml.Node | None, file: str) -> dict[str, Any]:
    """Replace cited leaves by their values, recording ``citations``; bare numbers are refused."""
    sources = data.get("sources")
    if not isinstance(sources, dict) or not sources:
        raise SpecError(
            "a non-empty 'sources' table is required: every number cites one",
            file=file,
            key="sources",
            line=line_of(node, ("sources",)),
        )
    citations: dict[str, str] = {}

    def fail(loc: tuple[int | str, ...], message: str) -> SpecError:
        return SpecError(message, file=file, key=format_loc(loc), line=line_of(node, loc))

    def cite(raw: dict[str, Any], loc: tuple[int | str, ...]) -> None:
        src, est = raw.get("source"), raw.get("estimate")
        if src is None and not est:
            raise fail(loc, "cite it: add 'source: <key of sources>' or 'estimate: <why>'")
        if src is not None:
            if not isinstance(src, str) or src not in sources:
                raise fail(
                    (*loc, "source"),
                    f"'{one_line(str(src))}' is not a key of the sources table "
                    f"({', '.join(sorted(map(str, sources)))})",
                )
            citations[format_loc(loc)] = src
        else:
            if not isinstance(est, str):
                raise fail((*loc, "estimate"), "give the reason for the estimate as text")
            citations[format_loc(loc)] = f"estimate: {one_line(est)}"

    def walk(value: Any, loc: tuple[int | str, ...]) -> Any:
        if isinstance(value, dict):
            if "value" in value and set(value) <= _LEAF:
                cite(value, loc)
                if loc and loc[-1] in TIME_KEYS:  # a time needs its unit in YAML: "2 s"
                    try:
                        return parse_quantity(value["value"], Dim.TIME)
                    except UnitError as err:
                        raise fail(loc, str(err)) from None
                return value["value"]
            if "edges" in value or "weights" in value:  # a histogram: one citation for the block
                cite(value, loc)
                return {k: v for k, v in value.items() if k not in _META}
            return {k: walk(v, (*loc, k)) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, (*loc, i)) for i, v in enumerate(value)]
        if isinstance(value, int | float) and not isinstance(value, bool):
            raise fail(
                loc,
                f"bare number {value!r}; write {{value: {value!r}, source: <key>}} "
                "or {value: ..., estimate: <why>}",
            )
        return value

    out = {k: (v if k == "sources" else walk(v, (k,))) for k, v in data.items()}
    out["citations"] = citations
    return out


# ---- trace files ---------------------------------------------------------------------------
def read_trace(
    path: Path, *, first: int | None = None, max_requests: int = DEFAULT_MAX_REQUESTS
) -> Trace:
    """Stream a CSV/JSONL trace into arrays (arrival shifted to start at 0)."""
    file = str(path)
    if not path.exists():
        raise SpecError("trace file not found", file=file)
    if not path.is_file():
        raise SpecError("is not a file, expected a .csv or .jsonl trace", file=file)
    jsonl = path.suffix.lower() in (".jsonl", ".ndjson")
    t, prompt, output = array.array("d"), array.array("q"), array.array("q")
    pid, ptok, lines = array.array("q"), array.array("q"), array.array("q")
    ids: dict[str, int] = {}
    has_ptok = False
    prev_t, prev_line, truncated = -math.inf, 0, False
    with path.open("rb") as f:
        rows = _jsonl_rows(f, file) if jsonl else _csv_rows(f, file)
        for lineno, row in rows:
            if first is not None and len(t) >= first:
                truncated = True
                break
            if len(t) >= max_requests:
                raise SpecError(
                    f"more than max_requests = {max_requests:,} requests; hwsim reads traces "
                    "streaming up to that limit: raise it with --max-requests, or replay the "
                    "first N with --requests N",
                    file=file,
                    line=lineno,
                )
            a = _number(row, "arrival_s", file, lineno)
            if a < prev_t:
                raise SpecError(
                    f"arrival_s {a:g} is earlier than the previous request's {prev_t:g} (line "
                    f"{prev_line}); sort the trace by arrival_s",
                    file=file,
                    line=lineno,
                )
            p = _tokens(row, "prompt_tokens", file, lineno, 1)
            o = _tokens(row, "output_tokens", file, lineno, 1)
            k = 0
            if row.get("prefix_tokens") not in (None, ""):
                has_ptok = True
                k = _tokens(row, "prefix_tokens", file, lineno, 0)
                if k > p:
                    raise SpecError(
                        f"{k} exceeds prompt_tokens ({p})",
                        file=file,
                        line=lineno,
                        key="prefix_tokens",
                    )
            raw_id = row.get("prefix_id")
            g = -1 if raw_id in (None, "") else ids.setdefault(str(raw_id), len(ids))
            t.append(a)
            prompt.append(p)
            output.append(o)
            pid.append(g)
            ptok.append(k)
            lines.append(lineno)
            prev_t, prev_line = a, lineno
    if not len(t):
        raise SpecError("no requests in the trace (only a header, or empty)", file=file)
    arr_t = np.frombuffer(t, dtype=np.float64)
    arr_p = np.frombuffer(prompt, dtype=np.int64)
    arr_id = np.frombuffer(pid, dtype=np.int64)
    arr_k = np.frombuffer(ptok, dtype=np.int64)
    if ids and not has_ptok:
        # no prefix lengths given: a group shares at most its shortest prompt
        shortest = np.full(len(ids), MAX_TOKENS, dtype=np.int64)
        grouped = arr_id >= 0
        np.minimum.at(shortest, arr_id[grouped], arr_p[grouped])
        arr_k = np.where(grouped, shortest[np.maximum(arr_id, 0)], 0)
    req = Requests(arr_t - arr_t[0], arr_p, np.frombuffer(output, dtype=np.int64), arr_id, arr_k)
    return Trace(file, req, np.frombuffer(lines, dtype=np.int64).copy(), truncated)


def _lines(f: IO[bytes], file: str) -> Iterator[tuple[int, str]]:
    """(line number, text) of non-blank, non-comment lines, each at most MAX_LINE_BYTES."""
    lineno = 0
    while True:
        raw = f.readline(MAX_LINE_BYTES + 1)
        if not raw:
            return
        lineno += 1
        if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
            raise SpecError(
                f"line longer than {MAX_LINE_BYTES} bytes; a trace line holds a few numbers "
                "(is this the right file?)",
                file=file,
                line=lineno,
            )
        try:
            text = raw.decode("utf-8-sig" if lineno == 1 else "utf-8").strip()
        except UnicodeDecodeError:
            raise SpecError(
                "not UTF-8 text; save the trace as UTF-8", file=file, line=lineno
            ) from None
        if text and not text.startswith("#"):
            yield lineno, text


def _csv_rows(f: IO[bytes], file: str) -> Iterator[tuple[int, dict[str, str]]]:
    lines = _lines(f, file)
    header = next(lines, None)
    if header is None:
        raise SpecError("empty trace; expected a header line " + ",".join(REQUIRED), file=file)
    hline, htext = header
    cols = [c.strip().strip("\"'").strip().lower() for c in htext.split(",")]
    _check_columns(cols, file, hline)
    for lineno, text in lines:
        values = [v.strip().strip("\"'") for v in text.split(",")]
        if len(values) != len(cols):
            raise SpecError(
                f"expected {len(cols)} comma-separated values ({', '.join(cols)}), "
                f"got {len(values)}",
                file=file,
                line=lineno,
            )
        yield lineno, dict(zip(cols, values, strict=True))


def _jsonl_rows(f: IO[bytes], file: str) -> Iterator[tuple[int, dict[str, Any]]]:
    checked = False
    for lineno, text in _lines(f, file):
        try:
            row = json.loads(text)
        except ValueError as err:
            raise SpecError(f"not a JSON object ({err})", file=file, line=lineno) from None
        if not isinstance(row, dict):
            raise SpecError(
                f"expected a JSON object per line, got {type(row).__name__}", file=file, line=lineno
            )
        row = {str(k).lower(): v for k, v in row.items()}
        if not checked:
            _check_columns(list(row), file, lineno)
            checked = True
        missing = [c for c in REQUIRED if c not in row]
        if missing:
            raise SpecError(f"missing key '{missing[0]}'", file=file, line=lineno)
        yield lineno, row


def _check_columns(cols: list[str], file: str, line: int) -> None:
    dup = next((c for i, c in enumerate(cols) if c in cols[:i]), None)
    if dup is not None:
        raise SpecError(f"column '{dup}' appears twice", file=file, line=line)
    for need in REQUIRED:
        if need not in cols:
            extra = [c for c in cols if c not in REQUIRED + OPTIONAL]
            guess = difflib.get_close_matches(need, extra, n=1, cutoff=0.5)
            hint = f"; is '{guess[0]}' meant to be it?" if guess else ""
            raise SpecError(
                f"missing column '{need}'{hint} (a trace needs {', '.join(REQUIRED)}; optional "
                f"{', '.join(OPTIONAL)}; found: {', '.join(cols) or 'nothing'})",
                file=file,
                line=line,
            )


def _number(row: dict[str, Any], key: str, file: str, line: int) -> float:
    raw = row.get(key)
    if isinstance(raw, bool) or raw is None or raw == "":
        raise SpecError(
            f"expected a number of seconds, got {_show(raw)}", file=file, line=line, key=key
        )
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise SpecError(
            f"expected a number of seconds, got {_show(raw)}", file=file, line=line, key=key
        ) from None
    if not math.isfinite(value):
        raise SpecError(
            f"expected a finite number, got {_show(raw)}", file=file, line=line, key=key
        )
    if value < 0:
        raise SpecError(f"must be >= 0, got {_show(raw)}", file=file, line=line, key=key)
    return value


def _tokens(row: dict[str, Any], key: str, file: str, line: int, least: int) -> int:
    raw = row.get(key)
    try:
        value = float(raw) if not isinstance(raw, bool) and raw not in (None, "") else math.nan
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value) or value != int(value):
        raise SpecError(
            f"expected a whole number of tokens, got {_show(raw)}", file=file, line=line, key=key
        )
    if value < least or value > MAX_TOKENS:
        raise SpecError(
            f"must be between {least} and {MAX_TOKENS:,}, got {_show(raw)}",
            file=file,
            line=line,
            key=key,
        )
    return int(value)


def _show(raw: Any) -> str:
    """A value as the user wrote it: CSV text quoted, JSON values as JSON (``true``, ``null``)."""
    if isinstance(raw, str):
        return repr(one_line(raw)[:40])
    try:
        return json.dumps(raw)[:40]
    except (TypeError, ValueError):
        return repr(raw)[:40]
