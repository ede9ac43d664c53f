"""Helpers shared by CLI command modules: JSON output and rich tables."""

from __future__ import annotations

import json
import math
from typing import Any

from rich.console import Console

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
