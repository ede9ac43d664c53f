"""One served step to simulate, as a frozen request: the defaults of every step option are
defined here once and read by :func:`hwsim.serve.api.serve_step`, the ``decode``/``prefill``
commands (their option defaults), ``hwsim whatif``, the sweep's ``serve_step`` kind and the
report.

Fields (SI units, counts):

* ``model``: a built-in model name, a YAML/HF config path, or a loaded config;
* ``device``: a device name or YAML path, a (what-if) :class:`~hwsim.spec.device.Device`, or a
  :class:`~hwsim.serve.api.Target` (device + mapper, e.g. with a changed profile);
* ``phase``: ``decode`` (one token per sequence; ``context`` tokens in the KV cache) or
  ``prefill`` (``context`` prompt tokens per sequence);
* ``batch``: sequences in the whole deployment;
* ``devices``/``layout``: the device count (``"auto"``: the fastest of a few counts) or the
  parallel layout (which fixes the count);
* ``dtype``/``kv_dtype``: weights and GEMMs, KV cache;
* ``mtp``/``mtp_acceptance``: draft tokens per decode step and their acceptance rate;
* ``overlap``: ``auto`` | ``none`` | ``dual`` (dual micro-batch);
* ``cluster``: ``"default"`` (the device's built-in cluster), a name, a loaded cluster, or
  None (device ports only).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import MISSING, dataclass, fields
from typing import TYPE_CHECKING, Any, Literal, cast

from hwsim.plan.model_step import StepSpec
from hwsim.spec.device import DTYPES
from hwsim.spec.errors import SpecError

if TYPE_CHECKING:
    from hwsim.plan.layout import Layout
    from hwsim.serve.api import Target
    from hwsim.spec.cluster import Cluster
    from hwsim.spec.device import Device
    from hwsim.spec.model import ModelConfig

PHASES = ("decode", "prefill")
OVERLAPS = ("auto", "none", "dual")
Phase = Literal["decode", "prefill"]


@dataclass(frozen=True)
class StepRequest:
    """A prefill or decode step of a model on a device (see the module docstring); invalid
    values are refused on construction with the option they came from."""

    model: str | ModelConfig
    device: str | Device | Target
    phase: str = "decode"
    batch: int = 1
    context: int = 2048
    devices: int | str | None = "auto"
    layout: str | Layout | None = None
    dtype: str = "bf16"
    kv_dtype: str = "bf16"
    mtp: int = 0
    mtp_acceptance: float = 0.85
    overlap: str = "auto"
    cluster: str | Cluster | None = "default"

    def __post_init__(self) -> None:
        if self.phase not in PHASES:
            raise SpecError(f"phase must be decode or prefill, got {self.phase!r}", key="phase")
        for name, option in (("dtype", "--dtype"), ("kv_dtype", "--kv-dtype")):
            d = getattr(self, name)
            if d not in DTYPES:
                raise SpecError(f"{option} {d!r}: expected one of {', '.join(DTYPES)}")
        for name in ("batch", "context"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise SpecError(f"expected a positive integer, got {v!r}", key=name)
        if self.overlap not in OVERLAPS:
            raise SpecError(f"overlap must be one of {', '.join(OVERLAPS)}", key="overlap")
        a = self.mtp_acceptance
        if not (isinstance(a, int | float) and math.isfinite(a) and 0.0 <= a <= 1.0):
            raise SpecError(f"expected a rate in [0, 1], got {a}", key="mtp_acceptance")
        if self.mtp < 0:
            raise SpecError(f"expected >= 0 draft tokens, got {self.mtp}", key="mtp")

    @property
    def decode(self) -> bool:
        return self.phase == "decode"

    def replace(self, **changes: Any) -> StepRequest:
        """A copy with ``changes`` (validated again)."""
        return dataclasses.replace(self, **changes)

    def step_spec(self, devices_per_node: int = 8) -> StepSpec:
        """The per-device step description the layer graph is built from (one micro-batch)."""
        return StepSpec(
            cast(Phase, self.phase),
            self.batch,
            self.context,
            self.dtype,
            self.kv_dtype,
            q_len=1 + self.mtp if self.decode else 1,
            devices_per_node=devices_per_node,
            mtp_depth=self.mtp if self.decode else 0,
        )


#: Each option's default, from the fields above (the CLI's option defaults read it).
STEP_DEFAULTS: dict[str, Any] = {
    f.name: f.default for f in fields(StepRequest) if f.default is not MISSING
}
