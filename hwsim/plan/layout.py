"""Parallel layouts: ``tp=8,ep=1,pp=1,dp=1,sp=1`` parsed, checked against a model, and the
per-device shares of heads, FFN width, experts and layers.

Conventions (DeepSeek-V3's deployment is the reference: attention TP4 with SP and DP8/DP80, MoE
EP32/EP320, technical report sec. 3.4):

* ``devices = tp · dp · pp``. A pipeline stage is ``tp · dp`` devices; ``pp`` stages split the
  layers.
* Attention: ``tp`` devices split the heads of one replica; ``dp`` replicas each serve
  ``batch / dp`` sequences. When ``tp`` exceeds the KV heads, KV heads are replicated (each
  device keeps one); MLA's latent cache is replicated over ``tp`` (it has no heads to split).
* Dense FFN: split ``tp`` ways (columns of up/gate, rows of down), one all-reduce after.
* MoE: ``ep`` devices of a stage share the routed experts (``ep`` must divide ``tp · dp``); with
  ``ep = 1`` the experts are split ``tp`` ways like a dense FFN. With ``ep`` larger than the
  expert count each device hosts one expert (the rest are redundant copies, as DeepSeek's
  decode deployment does). An ``ep`` that does not divide the experts gives every device
  ``⌈E / ep⌉`` of them, the spare slots holding redundant copies of hot experts (DeepSeek's
  EP144 decode: 256 + 32 redundant experts, 2 per GPU).
* ``sp`` (sequence parallelism, ``sp = tp`` or 1): norms and residuals work on ``1/tp`` of the
  tokens; the all-reduce becomes reduce-scatter + all-gather (same bytes on the wire).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from hwsim.plan.model_step import Shard, shard
from hwsim.spec.errors import SpecError
from hwsim.spec.model import ModelConfig

_KEYS = ("tp", "ep", "pp", "dp", "sp")


@dataclass(frozen=True)
class Layout:
    """Degrees of parallelism (all ≥ 1)."""

    tp: int = 1
    ep: int = 1
    pp: int = 1
    dp: int = 1
    sp: int = 1

    def __post_init__(self) -> None:
        check_degrees(self, _KEYS)
        if self.sp not in (1, self.tp):
            raise SpecError(
                f"sp={self.sp}: sequence parallelism runs over the TP group, so sp is 1 or tp "
                f"({self.tp})",
                key="layout.sp",
            )
        if (self.tp * self.dp) % self.ep:
            raise SpecError(
                f"ep={self.ep} must divide the {self.tp * self.dp} devices of a pipeline stage "
                f"(tp·dp = {self.tp}·{self.dp})",
                key="layout.ep",
            )

    @property
    def devices(self) -> int:
        return self.tp * self.dp * self.pp

    @property
    def stage_devices(self) -> int:
        return self.tp * self.dp

    def __str__(self) -> str:
        return ",".join(f"{k}={getattr(self, k)}" for k in _KEYS if k != "sp" or self.sp > 1)

    def to_dict(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in (*_KEYS, "devices")}


def parse_layout(text: str) -> Layout:
    """``"tp=8,ep=1,pp=1"`` → :class:`Layout` (missing keys are 1)."""
    return Layout(**parse_degrees(text, _KEYS, "layout"))


def parse_degrees(text: str, keys: tuple[str, ...], option: str) -> dict[str, int]:
    """``"tp=8,pp=2"`` → ``{"tp": 8, "pp": 2}``: each key once and one of ``keys``; errors name
    ``option``. Shared by serving (:class:`Layout`) and training layouts."""
    vals: dict[str, int] = {}
    for part in (p.strip() for p in text.replace(" ", "").split(",")):
        if not part:
            continue
        m = re.fullmatch(r"([a-z]+)=(\d+)", part)
        if not m:
            raise SpecError(f"expected key=value like 'tp=8', got {part!r}", key=option)
        key, val = m.group(1), int(m.group(2))
        if key not in keys:
            raise SpecError(
                f"unknown parallelism {key!r}; expected one of {', '.join(keys)}", key=option
            )
        if key in vals:
            raise SpecError(f"{key} given twice", key=option)
        vals[key] = val
    return vals


def check_degrees(layout: object, keys: tuple[str, ...]) -> None:
    """Every degree in ``keys`` of ``layout`` is an int ≥ 1 (a bool is not)."""
    for k in keys:
        v = getattr(layout, k)
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise SpecError(f"expected a positive integer, got {v!r}", key=f"layout.{k}")


def check_layout(model: ModelConfig, layout: Layout) -> Shard:
    """Check ``layout`` against ``model`` and return one device's shard; SpecError otherwise."""
    validate_layout(model, layout)
    return shard(model, layout)


def validate_layout(model: ModelConfig, layout: Layout) -> None:
    a, tp = model.attention, layout.tp
    if a.heads % tp:
        raise SpecError(
            f"tp={tp} does not divide the {a.heads} attention heads of {model.name}",
            key="layout.tp",
        )
    if model.ffn.intermediate % tp:
        raise SpecError(
            f"tp={tp} does not divide the FFN width {model.ffn.intermediate} of {model.name}",
            key="layout.tp",
        )
    if layout.pp > model.layers:
        raise SpecError(
            f"pp={layout.pp} exceeds the {model.layers} layers of {model.name}", key="layout.pp"
        )
    moe = model.moe
    if moe is None:
        if layout.ep > 1:
            raise SpecError(f"ep={layout.ep}: {model.name} has no experts", key="layout.ep")
        return
    if layout.ep == 1 and moe.moe_intermediate % tp:
        raise SpecError(
            f"tp={tp} does not divide the expert width {moe.moe_intermediate}", key="layout.tp"
        )


def default_layout(model: ModelConfig, devices: int) -> Layout:
    """A reasonable layout for ``devices``: TP up to 8 inside a node (the largest divisor of the
    heads and FFN width), the rest DP; MoE models put experts on every device of a stage (EP)
    when the expert count allows it."""
    tp = 1
    for t in (8, 4, 2, 1):
        if devices % t == 0 and model.attention.heads % t == 0 and model.ffn.intermediate % t == 0:
            tp = t
            break
    dp = devices // tp
    ep = 1
    if model.moe is not None and devices > 1:
        e = model.moe.n_routed_experts
        ep = devices if (devices > e or e % devices == 0) else math.gcd(devices, e)
        if ep > 1 and model.moe.moe_intermediate % tp:
            tp, dp = 1, devices
    return Layout(tp=tp, ep=ep, dp=dp)
