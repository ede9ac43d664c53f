"""``hwsim map``'s answer for any device kind: the capacity reasoning, the layout the kind
lays out (:meth:`hwsim.sim.mapper.Mapper.placement_layout`), the decode step it gives, and
where everything lives (:meth:`hwsim.sim.mapper.Mapper.placement`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hwsim.plan.layout import Layout, check_layout, parse_layout
from hwsim.plan.model_step import StepSpec
from hwsim.serve.api import resolve
from hwsim.serve.capacity import CapacityPlan, min_devices
from hwsim.serve.request import StepRequest
from hwsim.serve.step import StepResult, simulate_step
from hwsim.sim.placement import Placement


@dataclass(frozen=True)
class MapResult:
    """A model mapped onto a deployment (SI units)."""

    model: str
    device: str
    kind: str
    layout: Layout
    capacity: CapacityPlan
    reasoning: tuple[str, ...]
    step: StepResult
    placement: Placement

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "device": self.device,
            "kind": self.kind,
            "layout": self.layout.to_dict(),
            "layout_str": str(self.layout),
            "devices": self.layout.devices,
            "capacity": self.capacity.to_dict() | {"reasoning": list(self.reasoning)},
            "placement": self.placement.summary,
            "decode": self.step.to_dict(),
        }


def map_model(req: StepRequest) -> MapResult:
    """Lay ``req``'s model out on its device: ``req.layout`` if given, else the kind's choice
    from the capacity floor; then one decode step and the placement."""
    cfg, target = resolve(req)
    mapper = target.mapper
    key = req.device if isinstance(req.device, str) else target.key
    spec = StepSpec("decode", req.batch, req.context, req.dtype, req.kv_dtype)
    plan = min_devices(cfg, mapper, spec, device_name=key)
    reasoning = list(plan.reasoning)
    if req.layout:
        lay = parse_layout(req.layout) if isinstance(req.layout, str) else req.layout
        check_layout(cfg, lay)
    else:
        lay, why = mapper.placement_layout(cfg, spec, plan.layout)
        if why:
            reasoning.append(why)
    step = simulate_step(cfg, mapper, lay, spec, device_name=key)
    where = mapper.placement(cfg, lay, spec, stage_time_s=step.stage_time_s)
    reasoning += where.reasoning
    return MapResult(cfg.name, key, mapper.kind, lay, plan, tuple(reasoning), step, where)
