"""Helpers shared by CLI command modules: JSON output and rich tables that fit 80 columns."""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Sequence
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

console = Console()


def _clean(obj: Any) -> Any:
    """Make a result JSON-safe and deterministic (no NaN, sorted keys come from json.dumps)."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if isinstance(obj, float) and (math.isnan(obj) or math.isinf(obj)):
        return None
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        return _clean(obj.item())
    return obj


def print_json(data: Any) -> None:
    """Print machine-readable output: sorted keys, so the same inputs give identical bytes."""
    print(json.dumps(_clean(data), indent=2, sort_keys=True))


#: ``--wide``: the tables' every column; without it each table fits an 80-column terminal.
WIDE_HELP = "every column (wider than 80)"
Wide = Annotated[bool, typer.Option("--wide", help=WIDE_HELP)]


def narrow_table(
    title: str | None,
    cols: Sequence[str],
    text: Collection[str] = (),
    labels: Collection[str] = (),
    wide: bool = False,
) -> Table:
    """A table for an 80-column terminal. The columns in ``text`` are left-justified and fold
    (wrap, even inside a word) when the terminal is narrow; those in ``labels`` (short words:
    a bound, a lever) are left-justified and never wrapped; the others are numbers,
    right-justified and never wrapped. So numbers and labels stay whole and only the text
    columns give way (a header may still span lines at an explicit newline:
    ``"tok/s\ntotal"``). With ``wide`` (``--wide``: every column, for a terminal wider than
    80) every column may shrink, as in a plain rich table."""
    t = Table(title=title)
    for c in cols:
        if c in text:
            t.add_column(c, overflow="fold")
        else:
            t.add_column(c, justify="left" if c in labels else "right", no_wrap=not wide)
    return t


def short_layout(layout: str) -> str:
    """``tp=8,ep=1,pp=1,dp=1`` → ``tp=8``: only the degrees above 1 (the first degree when all
    are 1), the same layout as ``--layout`` reads it."""
    parts = [p for p in layout.split(",") if p]
    kept = [p for p in parts if p.partition("=")[2] != "1"]
    return ",".join(kept or parts[:1])
