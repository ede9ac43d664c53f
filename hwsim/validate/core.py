"""Validation against measured tables: a registry of suites, each predicting every row.

A suite is a function returning :class:`Row` objects (measured vs predicted, same metric and
unit). Suites register themselves by name from their own modules (``register``), and
``hwsim validate`` runs them. Errors are signed: ``(predicted - measured) / measured``.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hwsim.spec.errors import SpecError


@dataclass(frozen=True)
class Row:
    """One measured case and its prediction, in the table's own metric (e.g. TFLOP/s)."""

    case: str
    measured: float
    predicted: float
    unit: str
    group: str = ""  #: sub-table for per-group MAPE (e.g. "a100 matmul")

    @property
    def error(self) -> float:
        """Signed relative error (predicted - measured) / measured."""
        return (self.predicted - self.measured) / self.measured


@dataclass(frozen=True)
class SuiteResult:
    name: str
    rows: tuple[Row, ...]
    targets: dict[str, float] = field(default_factory=dict)  #: e.g. {"mape": 0.08, "max": 0.2}

    @property
    def mape(self) -> float:
        return float(np.mean([abs(r.error) for r in self.rows])) if self.rows else 0.0

    @property
    def max_error(self) -> float:
        return float(max((abs(r.error) for r in self.rows), default=0.0))

    def group_mape(self) -> dict[str, float]:
        groups: dict[str, list[float]] = {}
        for r in self.rows:
            groups.setdefault(r.group or self.name, []).append(abs(r.error))
        return {g: float(np.mean(v)) for g, v in groups.items()}

    def meets_targets(self) -> bool:
        """Targets: ``mape`` (whole suite), ``max`` (worst row) and ``mape <word>`` (every group
        whose name contains that word, e.g. ``mape matmul`` for each device's matmul group). A
        ``mape <word>`` target that names no group fails: a renamed group must not switch its
        target off."""
        ok = True
        groups = self.group_mape()
        for key, limit in self.targets.items():
            if key == "mape":
                ok &= self.mape <= limit
            elif key == "max":
                ok &= self.max_error <= limit
            elif key.startswith("mape "):
                word = key[5:]
                hit = [v for g, v in groups.items() if word in g.split()]
                ok &= bool(hit) and all(v <= limit for v in hit)
            else:
                ok = False  # a target this code does not know is not met
        return bool(ok)

    def to_dict(self) -> dict[str, object]:
        return {
            "suite": self.name,
            "mape": self.mape,
            "max_error": self.max_error,
            "group_mape": self.group_mape(),
            "targets": self.targets,
            "rows": [
                {
                    "case": r.case,
                    "group": r.group,
                    "measured": r.measured,
                    "predicted": r.predicted,
                    "unit": r.unit,
                    "error": r.error,
                }
                for r in self.rows
            ],
        }


SuiteFn = Callable[[], SuiteResult]
_SUITES: dict[str, SuiteFn] = {}


def register(name: str) -> Callable[[SuiteFn], SuiteFn]:
    """Decorator: register a validation suite under ``name`` (e.g. ``fa3-h100``)."""

    def deco(fn: SuiteFn) -> SuiteFn:
        _SUITES[name] = fn
        return fn

    return deco


def suites() -> dict[str, SuiteFn]:
    """All registered suites. Suite modules are imported by ``hwsim.validate.all``."""
    return dict(_SUITES)


def table_rows(path: Path, what: str = "measured table") -> Iterator[tuple[int, dict[str, str]]]:
    """``(line number, row)`` of a CSV table under ``workloads/measured`` (line 1 is the
    header); a SpecError naming the file when it cannot be read."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise SpecError(f"cannot read the {what}: {err}", file=str(path)) from None
    yield from enumerate(csv.DictReader(text.splitlines()), start=2)
