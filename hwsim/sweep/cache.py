"""The resumable sweep cache: results keyed by a hash of (spec, workload, code version).

One SQLite file (standard library, one writer: the process that runs the sweep). A *unit* is
what a metric kind computes once: one analytic point, or one simulated sub-problem. Its key is

    sha256(kind name, kind version, options, device fingerprint, sub-problem parameters,
           code version of the files the kind depends on)

so a rerun computes only what is new, a changed device number or workload parameter misses,
and editing the simulator (or its kernel profiles) invalidates exactly the kinds built on it.
Results are committed as each task finishes: an interrupted sweep resumes where it stopped.
Values are stored as JSON; Python floats round-trip exactly through ``repr``.
"""

from __future__ import annotations

import hashlib
import json
import math
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any


def _plain(value: Any) -> Any:
    """numpy scalars → Python scalars (so JSON and hashing see the same thing everywhere)."""
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    return value


def canonical_json(data: Mapping[str, Any]) -> str:
    """Deterministic JSON of a flat mapping (sorted keys; ints that are whole floats stay as
    floats so 8 and 8.0 of the same column hash alike)."""
    clean = {}
    for k, v in data.items():
        v = _plain(v)
        if isinstance(v, float) and math.isfinite(v) and v == int(v) and abs(v) < 2**53:
            v = int(v)
        clean[str(k)] = v
    return json.dumps(clean, sort_keys=True, separators=(",", ":"))


def unit_key(kind_id: str, device_fp: str, params_json: str) -> str:
    """Cache key of one unit (see the module docstring); ``kind_id`` includes the code version."""
    return hashlib.sha256(f"{kind_id}|{device_fp}|{params_json}".encode()).hexdigest()


class SweepCache:
    """``get_many``/``put_many`` over a SQLite file; ``path=None`` keeps nothing (no cache)."""

    def __init__(self, path: Path | str | None) -> None:
        self.path = Path(path) if path is not None else None
        self._db: sqlite3.Connection | None = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                self._db = sqlite3.connect(self.path)
                self._db.execute(
                    "CREATE TABLE IF NOT EXISTS units (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
                )
                self._db.commit()
            except sqlite3.Error as err:
                from hwsim.spec.errors import SpecError

                raise SpecError(
                    f"cannot open the sweep cache: {err}", file=str(self.path)
                ) from None

    @property
    def enabled(self) -> bool:
        return self._db is not None

    def get_many(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The cached values of those ``keys`` that are present."""
        if self._db is None or not keys:
            return {}
        out: dict[str, dict[str, Any]] = {}
        unique = list(dict.fromkeys(keys))
        step = 900  # SQLite's default limit on host parameters is 999
        for i in range(0, len(unique), step):
            chunk = unique[i : i + step]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(f"SELECT key, value FROM units WHERE key IN ({marks})", chunk)
            for k, v in rows:
                out[k] = json.loads(v)
        return out

    def put_many(self, items: Iterable[tuple[str, Mapping[str, Any]]]) -> None:
        """Store results and commit (so an interrupted sweep keeps what it finished)."""
        if self._db is None:
            return
        rows = [(k, json.dumps({m: _plain(x) for m, x in v.items()})) for k, v in items]
        self._db.executemany("INSERT OR REPLACE INTO units (key, value) VALUES (?, ?)", rows)
        self._db.commit()

    def __len__(self) -> int:
        if self._db is None:
            return 0
        return int(self._db.execute("SELECT COUNT(*) FROM units").fetchone()[0])

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def __enter__(self) -> SweepCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
