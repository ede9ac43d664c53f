"""Devices in the app: built-in names, uploaded YAML files, what-if edits and YAML export.

* An uploaded file is saved under the app's own temporary folder and loaded by path with
  :func:`hwsim.spec.load.load_device`: the CLI's safe loader, with its size, depth and alias
  limits, so an upload is refused with exactly the message ``hwsim show FILE`` would print.
* What-if edits are ``PATH=VALUE`` lines, the syntax of ``hwsim whatif --set`` (multipliers
  ``x2``, percentages ``+20%``, human units ``4.8 TB/s``), applied by
  :func:`hwsim.spec.overrides.apply_overrides`; the app never parses a unit itself.
* :func:`spec_yaml` writes a spec back as YAML that ``hwsim show`` loads to the same numbers,
  every value with its source (an edited value cites the ``override`` source the override
  engine adds).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import math
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from hwsim.spec.device import Device
from hwsim.spec.errors import SpecError
from hwsim.spec.load import MAX_FILE_BYTES, list_devices, load_device
from hwsim.spec.override_paths import PROFILE_PREFIX, settable_paths
from hwsim.spec.overrides import apply_overrides, si_text
from hwsim.spec.quantity import Strict
from hwsim.spec.units import Dim, UnitError, parse_quantity

if TYPE_CHECKING:
    from hwsim.spec.cluster import Cluster

_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
#: keys of a sourced value in the YAML format (the model adds ``dim`` and ``text``)
_SOURCED_OUT = ("source", "derived", "note")


class Uploads:
    """Uploaded device files, each in a folder named by its content hash (two uploads with
    the same name but different contents do not overwrite each other)."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or Path(tempfile.mkdtemp(prefix="hwsim-app-"))
        self.root.mkdir(parents=True, exist_ok=True)

    def add(self, filename: str, contents: str) -> str:
        """Save an upload (``contents`` as ``dcc.Upload`` gives it: ``data:...;base64,...``)
        and load it; return its key (the saved path). Bad files raise SpecError."""
        name = _SAFE_NAME.sub("_", Path(filename or "device.yaml").name) or "device.yaml"
        if not name.endswith((".yaml", ".yml")):
            raise SpecError("expected a .yaml or .yml device file", file=name)
        b64 = contents.split(",", 1)[-1]
        # refused before decoding: base64 is 4/3 the size of the bytes it holds
        if len(b64) * 3 // 4 > MAX_FILE_BYTES + 3:
            raise SpecError(
                f"file is about {len(b64) * 3 // 4} bytes; specs are limited to {MAX_FILE_BYTES}",
                file=name,
            )
        try:
            data = base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError):
            raise SpecError("the upload is not valid base64 data", file=name) from None
        folder = self.root / hashlib.sha256(data).hexdigest()[:12]
        folder.mkdir(exist_ok=True)
        path = folder / name
        path.write_bytes(data)
        load_device(str(path))  # the CLI's loader: refuses the file with the CLI's message
        return str(path)

    def owns(self, key: str) -> bool:
        return Path(key).is_absolute() and Path(key).resolve().is_relative_to(self.root.resolve())


def display_name(key: str) -> str:
    """How a device is named on a command line: a built-in name, or an upload's file name
    (the user has that file; the app's temporary copy is no use to them)."""
    return Path(key).name if key.endswith((".yaml", ".yml")) else key


def device_names() -> list[str]:
    """The built-in devices that load (a YAML file in ``devices/`` that is not a device spec
    is left out of the dropdowns rather than offered and refused)."""
    names = []
    for n in list_devices():
        try:
            load_device(n)  # cached: the pages list devices on every visit
        except SpecError:
            continue
        names.append(n)
    return names


def device_options(uploads: Uploads, extra: list[str] | None = None) -> list[dict[str, str]]:
    """Dropdown options: the built-in devices, then uploaded files."""
    opts = [{"label": n, "value": n} for n in device_names()]
    for key in extra or []:
        if uploads.owns(key) and Path(key).exists():
            opts.append({"label": f"{display_name(key)} (uploaded)", "value": key})
    return opts


def parse_overrides(text: str | None) -> list[str]:
    """``PATH=VALUE`` items separated by ``;`` or new lines (``#`` comments skipped), each
    as one ``--set`` takes it."""
    out = []
    for line in (text or "").replace(";", "\n").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            out.append(line)
    return out


def spec_overrides(overrides: list[str]) -> list[str]:
    """The device-spec part of what-if edits; a ``profile.*`` edit changes a mapper's
    parameters, which only whole-model steps use (``hwsim whatif``)."""
    prof = [o for o in overrides if o.startswith(PROFILE_PREFIX)]
    if prof:
        raise SpecError(
            f"{prof[0]!r}: profile.* changes apply to model steps (the Model step page, "
            "hwsim whatif); here change the device spec",
            key="set",
        )
    return overrides


def whatif_device(key: str, overrides: list[str]) -> Device:
    """The device ``key`` with ``overrides`` applied (validated like ``hwsim whatif --set``)."""
    return apply_overrides(load_device(key), spec_overrides(overrides))


def whatif_cluster(name: str, overrides: list[str]) -> Cluster:
    """Cluster ``name`` (or a path) with ``overrides`` (``nics.bandwidth=x2``) applied."""
    from hwsim.spec.cluster import load_cluster

    return apply_overrides(load_cluster(name), overrides)


def whatif_filename(key: str) -> str:
    """The file name a what-if YAML downloads as (and the commands refer to)."""
    stem = Path(display_name(key)).stem if key.endswith((".yaml", ".yml")) else key
    return f"{stem}-whatif.yaml"


def _exact_text(text: str, value: float, dim: Dim) -> str:
    """``text`` if it parses back to ``value`` exactly, else the SI value written out (an
    override's text is rounded for people; the file must reload to the same number)."""
    try:
        if parse_quantity(text, dim) == value:
            return text
    except UnitError:
        pass
    return si_text(value, dim)


def _yaml_tree(obj: Any) -> Any:
    if isinstance(obj, dict):
        if {"value", "dim", "text", "source"} <= set(obj):
            out: dict[str, Any] = {
                "value": _exact_text(str(obj["text"]), float(obj["value"]), Dim(obj["dim"]))
            }
            out.update({k: obj[k] for k in _SOURCED_OUT if obj.get(k) is not None})
            return out
        return {k: _yaml_tree(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list):
        return [_yaml_tree(v) for v in obj]
    return obj


def spec_yaml(spec: Strict) -> str:
    """A device (or cluster) spec as a YAML file that ``hwsim show`` (``--cluster``) accepts
    and that loads to the same numbers."""
    tree = _yaml_tree(spec.model_dump(mode="json", by_alias=True))
    head = "# written by `hwsim app`: every value keeps its source; edits cite 'override'\n"
    return head + yaml.safe_dump(tree, sort_keys=False, allow_unicode=True, width=100)


def field_options(device: Device) -> list[dict[str, str]]:
    """The spec fields an edit can set, each with its current value (for the field picker)."""
    return [{"label": p.describe(), "value": p.path} for p in settable_paths(device)]


def multiplier_text(log2: float | None) -> str | None:
    """A slider position (log2 of the factor) as an override value (``x1.414``); None at x1."""
    if log2 is None or abs(log2) < 1e-9:
        return None
    return f"x{round(math.pow(2.0, log2), 4):g}"


def set_override(text: str | None, path: str, value: str | None) -> str:
    """The edits ``text`` with ``path`` set to ``value`` (an entry for the same path is
    replaced; ``None`` removes it), written back as ``a=1; b=2``."""
    out = [o for o in parse_overrides(text) if o.split("=", 1)[0].strip() != path]
    if value is not None and value.strip():
        out.append(f"{path}={value.strip()}")
    return "; ".join(out)
