"""Fingerprints of code, for caches that must miss when the code they stand for changes (the
sweep cache, the serving step-time model)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import hwsim

REPO_ROOT = Path(hwsim.__file__).resolve().parents[1]
_SUFFIXES = (".py", ".yaml", ".yml", ".json")
_CODE_MEMO: dict[tuple[str, ...], str] = {}


def code_version(paths: Sequence[str]) -> str:
    """Hash of hwsim's version and the contents of the files under ``paths`` (relative to the
    repository), e.g. ``("hwsim/roofline", "hwsim/spec")``. Memoised per process."""
    key = tuple(paths)
    if key in _CODE_MEMO:
        return _CODE_MEMO[key]
    h = hashlib.sha256(hwsim.__version__.encode())
    for rel in sorted(paths):
        p = REPO_ROOT / rel
        files = sorted(f for f in p.rglob("*") if f.suffix in _SUFFIXES) if p.is_dir() else [p]
        for f in files:
            if f.is_file():
                h.update(str(f.relative_to(REPO_ROOT)).encode())
                h.update(f.read_bytes())
    _CODE_MEMO[key] = h.hexdigest()[:16]
    return _CODE_MEMO[key]
