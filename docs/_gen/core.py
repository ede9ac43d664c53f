"""Marker replacement, figure placeholders, generated assets and build timing for the docs site.

Facts modules (``docs/_gen/<name>.py``) expose ``facts() -> dict[str, object]``; values are
strings (inserted as they are), :class:`plotly.graph_objects.Figure` (inserted as an interactive
figure) or :class:`Table` (inserted as a Markdown table). Each facts module runs at most once per
build, the first time a page asks for one of its names. Block generators are the functions
listed in :func:`_blocks`; they return Markdown (or a value :func:`render_value` takes).
"""

from __future__ import annotations

import html as _html
import importlib
import re
import shlex
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parents[1]

_INLINE = re.compile(r"\{\{\s*([a-z][a-z0-9_]*)\.([a-z][a-z0-9_]*)\s*\}\}")
_BLOCK = re.compile(r"^[ \t]*<!--\s*hwsim:\s*(.+?)\s*-->[ \t]*$", re.MULTILINE)
_FENCE = re.compile(r"^[ \t]*(```|~~~)")
_FIG_TOKEN = "HWSIMFIGURE{:04d}"
_FIG_HTML = re.compile(r"(?:<p>)?HWSIMFIGURE(\d{4})(?:</p>)?")


class DocsError(Exception):
    """A marker that cannot be filled: the build must fail (strict), naming page and marker."""


@dataclass(frozen=True)
class Table:
    """A Markdown table: column names, rows of cells (already formatted), optional alignment
    per column ("l", "r", "c")."""

    columns: Sequence[str]
    rows: Sequence[Sequence[object]]
    align: str | None = None

    def markdown(self) -> str:
        align = self.align or "l" + "r" * (len(self.columns) - 1)
        sep = {"l": ":--", "r": "--:", "c": ":-:"}

        def cell(v: object) -> str:
            return str(v).replace("|", "\\|").replace("\n", " ")

        out = ["| " + " | ".join(cell(c) for c in self.columns) + " |"]
        out.append("|" + "|".join(sep[a] for a in align) + "|")
        out += ["| " + " | ".join(cell(v) for v in r) + " |" for r in self.rows]
        return "\n".join(out)


@dataclass(frozen=True)
class Html:
    """Trusted HTML inserted after Markdown rendering (like a figure)."""

    text: str


# ---- per-build state ----------------------------------------------------------------------------
_facts: dict[str, dict[str, Any]] = {}
_figures: list[str] = []
_timings: list[tuple[str, float]] = []


def reset() -> None:
    from _gen import reference

    reference.reset()
    _facts.clear()
    _figures.clear()
    _timings.clear()


def timed(label: str, fn: Callable[[], Any]) -> Any:
    t0 = time.perf_counter()
    try:
        return fn()
    finally:
        _timings.append((label, time.perf_counter() - t0))


def timing_report() -> list[str]:
    total = sum(t for _, t in _timings)
    lines = [f"hwsim generators: {total:.1f} s in {len(_timings)} steps"]
    lines += [f"  {t:6.2f} s  {label}" for label, t in sorted(_timings, key=lambda x: -x[1])]
    return lines


def facts(module: str) -> dict[str, Any]:
    """The facts of ``docs/_gen/<module>.py``, computed once per build."""
    if module not in _facts:
        try:
            mod = importlib.import_module(f"_gen.{module}")
        except ModuleNotFoundError as e:
            raise DocsError(f"no facts module docs/_gen/{module}.py ({e})") from e
        _facts[module] = timed(f"facts {module}", mod.facts)
    return _facts[module]


# ---- rendering ----------------------------------------------------------------------------------
def figure_html(fig: Any, div_id: str) -> str:
    return str(
        fig.to_html(
            full_html=False,
            include_plotlyjs=False,
            div_id=div_id,
            config={"displaylogo": False, "responsive": True},
        )
    )


def _placeholder(content_html: str) -> str:
    _figures.append(content_html)
    return "\n\n" + _FIG_TOKEN.format(len(_figures) - 1) + "\n\n"


def render_value(value: Any, where: str) -> str:
    """Markdown for one fact or generator result."""
    import plotly.graph_objects as go

    if isinstance(value, go.Figure):
        slug = re.sub(r"[^a-z0-9]+", "-", where.lower()).strip("-")
        return _placeholder(
            f'<div class="hwsim-figure">{figure_html(value, f"fig-{slug}-{len(_figures)}")}</div>'
        )
    if isinstance(value, Html):
        return _placeholder(value.text)
    if isinstance(value, Table):
        return "\n\n" + value.markdown() + "\n\n"
    if isinstance(value, list | tuple):
        return "".join(render_value(v, where) for v in value)
    return str(value)


def _run_block(spec: str, page: str) -> str:
    try:
        argv = shlex.split(spec)
    except ValueError as e:
        raise DocsError(f"{page}: cannot parse marker <!-- hwsim: {spec} -->: {e}") from e
    name, args = argv[0], argv[1:]
    blocks = _blocks()
    fn = blocks.get(name)
    if fn is None:
        raise DocsError(f"{page}: unknown generator {name!r} (known: {', '.join(sorted(blocks))})")
    return render_value(timed(f"{page}: {spec}", lambda: fn(*args)), f"{page}-{name}")


def _render_text(text: str, page: str) -> str:
    text = _BLOCK.sub(lambda m: _run_block(m.group(1), page), text)

    def inline(m: re.Match[str]) -> str:
        module, key = m.group(1), m.group(2)
        values = facts(module)
        if key not in values:
            known = ", ".join(sorted(values))
            raise DocsError(f"{page}: {{{{ {module}.{key} }}}} is not a fact (known: {known})")
        return render_value(values[key], f"{module}-{key}")

    # inline code spans are documentation of the syntax, never markers
    parts = re.split(r"(`[^`\n]+`)", text)
    return "".join(p if p.startswith("`") else _INLINE.sub(inline, p) for p in parts)


def render_markdown(markdown: str, page: str) -> str:
    """Replace every marker outside code fences."""
    out: list[str] = []
    chunk: list[str] = []
    fence: str | None = None
    for line in markdown.splitlines(keepends=True):
        m = _FENCE.match(line)
        if fence is None and m:
            out.append(_render_text("".join(chunk), page))
            chunk = []
            fence = m.group(1)
            out.append(line)
        elif fence is not None:
            out.append(line)
            if m and m.group(1) == fence:
                fence = None
        else:
            chunk.append(line)
    out.append(_render_text("".join(chunk), page))
    return "".join(out)


def insert_figures(html: str, page: str) -> str:
    def sub(m: re.Match[str]) -> str:
        i = int(m.group(1))
        if i >= len(_figures):
            raise DocsError(f"{page}: figure placeholder {i} has no figure")
        return _figures[i]

    return _FIG_HTML.sub(sub, html)


# ---- nav and assets -----------------------------------------------------------------------------
def nav_pages(nav: Any) -> set[str]:
    """Every page path listed in an mkdocs ``nav`` (nested lists of str / {title: path})."""
    listed: set[str] = set()

    def walk(items: Any) -> None:
        for it in items if isinstance(items, list) else [items]:
            if isinstance(it, str):
                listed.add(it)
            elif isinstance(it, dict):
                for v in it.values():
                    walk(v)

    walk(nav)
    return listed


def docs_pages() -> list[str]:
    """Every Markdown page under docs/ (not the generators), relative, with forward slashes."""
    return sorted(
        str(p.relative_to(DOCS)).replace("\\", "/")
        for p in DOCS.rglob("*.md")
        if "_gen" not in p.parts and not any(part.startswith(".") for part in p.parts)
    )


def check_nav(config: Any) -> None:
    """Every page must have its place in mkdocs.yml's nav (no automatic "More" section): a page
    missing from it fails the build, naming the page."""
    nav = config.get("nav")
    if not nav:
        return
    missing = [p for p in docs_pages() if p not in nav_pages(nav)]
    if missing:
        raise DocsError(f"pages missing from the nav in mkdocs.yml: {', '.join(missing)}")


_CSS = """
.hwsim-figure { margin: 1em 0; }
.md-typeset table:not([class]) { font-size: 0.72rem; }
.md-typeset table:not([class]) td { white-space: nowrap; }
.hwsim-cmd { font-size: 0.7rem; }
"""


def assets() -> dict[str, str | bytes]:
    """Files the site needs that are generated, not stored: plotly's JavaScript (from the
    installed package), a style sheet, and the artefacts facts modules export (traces)."""
    from plotly.offline import get_plotlyjs

    out: dict[str, str | bytes] = {
        "assets/javascripts/plotly.min.js": get_plotlyjs(),
        "assets/stylesheets/hwsim.css": _CSS,
    }
    for module in ASSET_MODULES:
        mod = importlib.import_module(f"_gen.{module}")
        out.update(timed(f"assets {module}", mod.assets))
    return out


#: Facts modules that also export files (``assets() -> {site path: content}``).
ASSET_MODULES: list[str] = ["ch3"]


def _blocks() -> dict[str, Callable[..., Any]]:
    from _gen import reference

    return {
        "run": reference.run_command,
        "cli-reference": reference.cli_reference,
        "schema": reference.schema_reference,
        "validate": reference.validation_tables,
        "validate-summary": reference.validation_summary,
        "attention-tiles": reference.attention_tiles,
        "check": reference.check_table,
        "devices": reference.devices_table,
    }


def esc(text: str) -> str:
    return _html.escape(text)
