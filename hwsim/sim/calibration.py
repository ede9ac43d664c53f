"""Calibration provenance: which kernel-profile values were fitted on this device's own
architecture, which were inherited from another one, and which are cited or structural.

A profile file (``devices/profiles/gemm.yaml``, ``elementwise.yaml``) carries a ``calibration``
block written by :mod:`hwsim.validate.gpu_ops_fit`:

* ``fits``: each fit's source key → ``{arch, device, table}`` (the measured table it was fitted
  on, in ``workloads/measured``);
* ``inherit``: each architecture without its own measurements → ``{from, reason}``.

Every profile value names its ``source``. A value whose source is a fit on the device's own
architecture is **fitted**; a fit on another architecture is **inherited** (with the reason);
any other source (a datasheet, a paper, a kernel's source code) is **cited**. Results of
:func:`hwsim.sim.gpu_gemm.simulate_gemm` and :func:`hwsim.sim.streaming.simulate_op` carry the
:class:`Calibration` of the profile entry that timed them, so a user sees at once whether a
prediction rests on the device's own measurements. See docs/calibration-gpu-ops.md.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Literal

from hwsim.spec.errors import SpecError
from hwsim.spec.profiles import profile_entries, profile_key_used, profile_path

Status = Literal["fitted", "inherited", "cited", "custom"]


@dataclass(frozen=True)
class ParamOrigin:
    """Where one profile value comes from."""

    name: str  #: dotted parameter path, e.g. ``hbm_fraction`` or ``matrix_fraction.fp16``
    status: Status
    source: str  #: the value's source key in the profile's ``sources`` table
    origin: str  #: fitted/inherited: the architecture it was fitted on; cited: the source key


@dataclass(frozen=True)
class Calibration:
    """Provenance of one profile entry as used for one architecture (frozen, JSON-able)."""

    family: str  #: profile family: gemm | elementwise
    arch: str  #: the device's architecture
    entry: str  #: the profile entry used (the arch, 'default', or 'custom')
    status: Status  #: fitted | inherited (some value fitted elsewhere) | cited | custom
    summary: str  #: one line, e.g. "inherited from cdna2 (no cdna3 measurements) ..."
    params: tuple[ParamOrigin, ...]

    def fitted(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params if p.status == "fitted")

    def inherited(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params if p.status == "inherited")


def custom(family: str, arch: str) -> Calibration:
    """A caller-supplied profile (fits, what-ifs): no file provenance."""
    return Calibration(family, arch, "custom", "custom", "caller-supplied profile", ())


def _leaves(entry: object, prefix: str = "") -> list[tuple[str, str]]:
    """(dotted name, source key) of every sourced value under ``entry``."""
    if not isinstance(entry, dict):
        return []
    if "value" in entry and "source" in entry:
        return [(prefix, str(entry["source"]))]
    out: list[tuple[str, str]] = []
    for k, v in entry.items():
        out += _leaves(v, f"{prefix}.{k}" if prefix else str(k))
    return out


def _block(data: dict[str, Any], family: str) -> tuple[dict[str, Any], dict[str, Any]]:
    block = data.get("calibration")
    file = str(profile_path(family))
    if not isinstance(block, dict):
        raise SpecError("expected a 'calibration' mapping with 'fits' and 'inherit'", file=file)
    fits, inherit = block.get("fits"), block.get("inherit")
    if not isinstance(fits, dict) or not isinstance(inherit, dict):
        raise SpecError("expected mappings 'fits' and 'inherit'", file=file, key="calibration")
    return fits, inherit


@functools.lru_cache(maxsize=256)
def calibration(family: str, arch: str, part: str | None = None) -> Calibration:
    """Provenance of ``family``'s profile for ``arch`` (``part``: one sub-entry, e.g. the
    ``softmax`` kernel family of ``elementwise``). Raises :class:`SpecError` on a profile
    value whose source is not in the file's ``sources`` table."""
    data, _ = profile_entries(family)
    file = str(profile_path(family))
    fits, inherit = _block(data, family)
    sources = data.get("sources", {})
    entry_key = profile_key_used(family, arch)
    entry = data[entry_key]
    if part is not None:
        if not isinstance(entry, dict) or part not in entry:
            raise SpecError(f"no {part!r} in the profile", file=file, key=entry_key)
        entry = entry[part]
    # an arch missing from the file takes 'default': its reason says so
    link = inherit.get(arch) or inherit.get(entry_key) or {}
    reason = str(link.get("reason", "")) if isinstance(link, dict) else ""
    if entry_key != arch:
        reason = f"no {arch} entry, '{entry_key}' used" + (f"; {reason}" if reason else "")
    params = []
    for name, src in _leaves(entry):
        if not isinstance(sources, dict) or src not in sources:
            raise SpecError(
                f"source {src!r} is not in the sources table", file=file, key=f"{entry_key}.{name}"
            )
        fit = fits.get(src)
        if isinstance(fit, dict):
            fit_arch = str(fit.get("arch"))
            status: Status = "fitted" if fit_arch == arch else "inherited"
            params.append(ParamOrigin(name, status, src, fit_arch))
        else:
            params.append(ParamOrigin(name, "cited", src, src))
    return _summarise(family, arch, entry_key, tuple(params), fits, reason)


def _summarise(
    family: str,
    arch: str,
    entry_key: str,
    params: tuple[ParamOrigin, ...],
    fits: dict[str, Any],
    reason: str,
) -> Calibration:
    inherited = [p for p in params if p.status == "inherited"]
    fitted = [p for p in params if p.status == "fitted"]
    cited = [
        f"{p.name} ({p.source})" for p in params if p.status == "cited" and not _structural(p.name)
    ]
    if inherited:
        bases = sorted({p.origin for p in inherited})
        status: Status = "inherited"
        text = f"inherited from {', '.join(bases)}" + (f" ({reason})" if reason else "")
        if fitted:
            text += f"; fitted on {arch}: {', '.join(p.name for p in fitted)}"
    elif fitted:
        status = "fitted"
        tables = sorted(
            {f"{fits[p.source].get('device')}, {fits[p.source].get('table')}" for p in fitted}
        )
        text = f"fitted ({'; '.join(tables)})"
    else:
        status = "cited"
        text = "cited values only (no fit)"
    if cited:
        text += f"; cited instead: {', '.join(cited)}"
    return Calibration(family, arch, entry_key, status, text, params)


def _structural(name: str) -> bool:
    """Hardware/software facts read from documentation (register file, on-chip row limit):
    cited everywhere, so they are left out of the one-line summary."""
    return name.split(".")[-1] in {"register_file", "row_on_chip"}
