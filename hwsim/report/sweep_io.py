"""Sweep tables on disk: Parquet (pyarrow) or CSV, with the sweep's metadata.

Parquet keeps the metadata (which columns are inputs and which are metrics, the base spec, the
statistics) in the schema's key-value metadata under ``hwsim.sweep``; CSV keeps it in a
``<file>.meta.json`` next to the table. :func:`read_table` returns numpy columns either way.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from numpy.typing import NDArray

from hwsim.spec.errors import SpecError
from hwsim.spec.limits import check_memory

META_KEY = b"hwsim.sweep"
FORMATS = (".parquet", ".csv")
#: Host memory per file byte when a table is loaded (text columns become Python strings):
#: an 83 MB parquet of 10^6 points took 1.3 GB (16x, measured); CSV text is ~3x its arrays.
LOAD_BYTES_PER_FILE_BYTE = {".parquet": 20, ".csv": 8}


def _arrow_column(col: NDArray[Any]) -> pa.Array:
    if col.dtype == object:
        return pa.array([None if v is None else str(v) for v in col.tolist()], type=pa.string())
    return pa.array(col)


def write_table(path: Path, columns: Mapping[str, NDArray[Any]], meta: Mapping[str, Any]) -> Path:
    """Write ``columns`` to ``path`` (``.parquet`` or ``.csv``); creates the parent folder."""
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise SpecError(f"--out {path}: expected a .parquet or .csv file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table({k: _arrow_column(np.asarray(v)) for k, v in columns.items()})
    blob = json.dumps(meta, sort_keys=True, default=str).encode()
    try:
        if suffix == ".parquet":
            table = table.replace_schema_metadata({META_KEY: blob})
            pq.write_table(table, path)
        else:
            pacsv.write_csv(table, path)
            Path(f"{path}.meta.json").write_bytes(blob)
    except OSError as err:
        raise SpecError(f"cannot write {path}: {err.strerror or err}") from None
    return path


def read_table(path: Path) -> tuple[dict[str, NDArray[Any]], dict[str, Any]]:
    """Columns (numpy; strings as object arrays) and metadata of a table written above."""
    if not path.exists():
        raise SpecError("file not found", file=str(path))
    suffix = path.suffix.lower()
    if path.is_file():  # sized before it is loaded: a 10 GB table is refused, not read
        check_memory(
            path.stat().st_size * LOAD_BYTES_PER_FILE_BYTE.get(suffix, 1),
            cheaper_mode_hint=f"{path} is {path.stat().st_size:,} bytes; plot a smaller sweep",
        )
    try:
        if suffix == ".parquet":
            table = pq.read_table(path)
            raw = (table.schema.metadata or {}).get(META_KEY)
            meta = json.loads(raw) if raw else {}
        elif suffix == ".csv":
            table = pacsv.read_csv(path)
            side = Path(f"{path}.meta.json")
            meta = json.loads(side.read_text()) if side.exists() else {}
        else:
            raise SpecError(f"expected a .parquet or .csv sweep table, got '{path.name}'")
    except (pa.ArrowInvalid, OSError, json.JSONDecodeError) as err:
        raise SpecError(f"cannot read the sweep table: {err}", file=str(path)) from None
    cols: dict[str, NDArray[Any]] = {}
    for name in table.column_names:
        arr = table.column(name)
        if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
            cols[name] = np.array(arr.to_pylist(), dtype=object)
        else:
            cols[name] = arr.to_numpy()
    return cols, meta
