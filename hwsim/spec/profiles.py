"""Kernel profiles: calibrated efficiency/overhead parameters per architecture generation.

A profile family (``attention``, ``gemm``, ``elementwise``, ``alltoall`` …) is one YAML file
``devices/profiles/<family>.yaml`` mapping an architecture (the device's ``arch`` field, e.g.
``hopper``) or a kernel-profile name to its parameters. The schema of each family's parameters is
a pydantic model owned by the layer that uses it and passed in here, so the spec layer imports
nothing from above. Every file documents how its values were fitted (see ``docs/calibration``).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel

from hwsim.spec.errors import SpecError
from hwsim.spec.load import DEVICES_DIR, read_yaml, validate

P = TypeVar("P", bound=BaseModel)

PROFILES_DIR = DEVICES_DIR / "profiles"


@functools.lru_cache(maxsize=64)
def profile_entries(family: str) -> tuple[dict[str, object], object]:
    """Every entry of ``family``'s file (key → raw parameters) and its YAML node tree (for
    line numbers); read once. Users that need one validated entry call :func:`load_profile`."""
    path = PROFILES_DIR / f"{family}.yaml"
    data, node = read_yaml(path)
    if not isinstance(data, dict):
        raise SpecError("expected a mapping of architecture → parameters", file=str(path))
    return data, node


def load_profile(family: str, key: str, model: type[P], fallback: str | None = "default") -> P:
    """Parameters of ``family`` for ``key`` (an arch or profile name), validated by ``model``.

    Falls back to the ``default`` entry when ``key`` is absent, so a new architecture still
    runs (its generation's constants can be added later) - the fallback is reported by
    :func:`profile_key_used` so results can say which profile they used.
    """
    data, _ = profile_entries(family)
    file = str(PROFILES_DIR / f"{family}.yaml")
    use = profile_key_used(family, key, fallback)
    entry = data[use]
    if not isinstance(entry, dict):
        raise SpecError("expected a mapping of parameters", file=file, key=use)
    try:
        return validate(model, entry, file=file)
    except SpecError as err:
        raise SpecError(
            err.message, file=file, key=f"{use}.{err.key}" if err.key else use
        ) from None


def profile_key_used(family: str, key: str, fallback: str | None = "default") -> str:
    """The entry of ``family`` that :func:`load_profile` uses for ``key``."""
    data, _ = profile_entries(family)
    if key in data:
        return key
    if fallback is not None and fallback in data:
        return fallback
    known = ", ".join(sorted(str(k) for k in data))
    raise SpecError(
        f"no profile for {key!r} (known: {known})", file=str(PROFILES_DIR / f"{family}.yaml")
    )


def profile_path(family: str) -> Path:
    return PROFILES_DIR / f"{family}.yaml"
