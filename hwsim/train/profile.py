"""The training framework's own costs, per device architecture
(``devices/profiles/training.yaml``): what Megatron-Core-class software adds to the kernels,
collectives and flows hwsim simulates. Fitted on the training table only
(``python -m hwsim.validate.training_fit``; ``docs/training.md``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from pydantic import Field

from hwsim.spec.device import Device
from hwsim.spec.profiles import load_profile, profile_key_used
from hwsim.spec.quantity import Bytes, Count, Latency, Sourced, Strict, sourced
from hwsim.spec.units import Dim

if TYPE_CHECKING:  # for mypy a plain Sourced value
    NonNegative = Sourced
else:
    #: a fraction that may be zero (a slowdown)
    NonNegative = sourced(Dim.COUNT, positive=False)


class TrainingParams(Strict):
    """Per-architecture training parameters (SI units)."""

    description: str
    compute_efficiency: Count = Field(
        description="fraction of the isolated kernel speed a GPU sustains through a training "
        "step (power- and clock-limited), (0-1]"
    )
    kernel_gap: Latency = Field(description="seconds of idle time per compute kernel")
    moe_layer_overhead: Latency = Field(
        description="seconds per MoE layer and pass outside its kernels (dropless routing's "
        "host synchronisation for the token counts per expert)"
    )
    collective_efficiency: Count = Field(
        description="fraction of the alpha-beta bandwidth NCCL collectives reach (0-1]"
    )
    overlap_slowdown: NonNegative = Field(
        description="fractional compute slowdown while a collective overlaps it"
    )
    step_overhead: Latency = Field(description="seconds per optimizer step outside the kernels")
    bucket_params: Count = Field(description="parameters per gradient bucket")
    reserved_memory: Bytes = Field(description="bytes per GPU the framework keeps for itself")


def training_params(device: Device, overrides: Sequence[str] = ()) -> TrainingParams:
    """``device``'s training parameters (its architecture's entry, else ``default``), with
    ``path=value`` overrides applied (what-ifs, the fit)."""
    params = load_profile("training", device.arch, TrainingParams)
    if overrides:
        from hwsim.spec.overrides import apply_overrides

        params = apply_overrides(params, list(overrides))
    return params


def profile_used(device: Device) -> str:
    """Which entry of ``training.yaml`` the device uses."""
    return profile_key_used("training", device.arch)
