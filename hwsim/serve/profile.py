"""The serving engine's own costs, per device architecture (``devices/profiles/engine.yaml``):
what an engine adds to each iteration beyond the step the device runs. Fitted on the H100
serving table only (``python -m hwsim.validate.serving_fit``; ``docs/serving.md``)."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import Field

from hwsim.spec.device import Device
from hwsim.spec.profiles import load_profile, profile_key_used
from hwsim.spec.quantity import Count, Latency, Strict


class EngineParams(Strict):
    """Per-architecture engine parameters."""

    description: str
    iteration_overhead: Latency = Field(
        description="seconds per engine iteration not spent on the device step: scheduling, "
        "input preparation, sampling and detokenisation that the CPU does between steps"
    )
    memory_utilization: Count = Field(
        description="share of the device's main memory the engine allocates (weights, KV "
        "cache, activations); the rest is left to the runtime"
    )


@dataclass(frozen=True)
class EngineProfile:
    """The entry a device uses and the key it came from."""

    key: str
    params: EngineParams

    @property
    def iteration_overhead(self) -> Latency:
        return self.params.iteration_overhead

    @property
    def memory_utilization(self) -> float:
        return float(self.params.memory_utilization.value)


def engine_profile(device: Device, overrides: tuple[str, ...] = ()) -> EngineProfile:
    """``device``'s engine profile (its architecture's entry, else ``default``)."""
    params = load_profile("engine", device.arch, EngineParams)
    key = profile_key_used("engine", device.arch)
    if overrides:
        from hwsim.spec.overrides import apply_overrides

        params = apply_overrides(params, list(overrides))
    return EngineProfile(f"engine profile {key}", params)
