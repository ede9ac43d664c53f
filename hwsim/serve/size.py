"""Cluster sizing: the cheapest clusters of one device type that meet a serving SLO.

The question: serve ``model`` at ``total_tokens_per_s`` output tokens/s with every user getting
at least ``tokens_per_s_per_user``, prompts of ``context`` tokens, and (optionally) a time to
first token of at most ``max_ttft_s``. A cluster is ``k`` identical *instances* (model replicas
with a layout over ``n`` devices) each decoding ``b`` sequences at once.

Search (exhaustive over a pruned space, bisection inside):

1. instance sizes ``n``: the fewest devices that hold the model (capacity planning), then the
   powers of two above it up to ``max_devices_per_instance``;
2. for each ``n``, up to ``layouts_per_size`` layouts that fit, with the fewest pipeline
   stages and the narrowest TP first (more DP replicas: more room for KV, larger batches; MoE
   layouts spread the experts over every device);
3. for each layout, the largest batch ``b`` whose per-user speed still meets the SLO and whose
   KV cache still fits, by bisection over ``b`` (per-user speed falls and memory grows
   monotonically with ``b``);
4. ``k = ⌈total / (b · per-user speed)⌉`` instances; devices, power (TDP) and price follow.

The answer lists the best clusters by device count, by power and by dollars (where the device
has a price).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hwsim.plan.layout import Layout
from hwsim.plan.model_step import StepSpec
from hwsim.serve.api import Target, make_target, serve_step
from hwsim.serve.capacity import layouts_that_fit, min_devices
from hwsim.serve.request import STEP_DEFAULTS, StepRequest
from hwsim.serve.step import StepResult
from hwsim.spec.errors import SpecError
from hwsim.spec.model import ModelConfig, load_model_config


@dataclass(frozen=True)
class SizedCluster:
    """One way to meet the SLO: ``instances`` × (``layout`` at ``batch`` sequences)."""

    layout: Layout
    devices_per_instance: int
    batch_per_instance: int
    instances: int
    devices: int
    tokens_per_s_per_user: float
    tokens_per_s_total: float
    ttft_s: float
    power_W: float
    price_usd: float | None
    bound: str
    memory_per_device_bytes: float

    def to_dict(self) -> dict[str, object]:
        return {
            "layout": str(self.layout),
            "devices_per_instance": self.devices_per_instance,
            "batch_per_instance": self.batch_per_instance,
            "instances": self.instances,
            "devices": self.devices,
            "tokens_per_s_per_user": self.tokens_per_s_per_user,
            "tokens_per_s_total": self.tokens_per_s_total,
            "ttft_s": self.ttft_s,
            "power_W": self.power_W,
            "price_usd": self.price_usd,
            "bound": self.bound,
            "memory_per_device_bytes": self.memory_per_device_bytes,
        }


@dataclass(frozen=True)
class SizingAnswer:
    """Every candidate that meets the SLO, and the best by devices, power and price."""

    model: str
    device: str
    slo: dict[str, float | None]
    candidates: tuple[SizedCluster, ...]
    by_devices: SizedCluster | None
    by_power: SizedCluster | None
    by_price: SizedCluster | None
    evaluated: int
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, object]:
        def d(c: SizedCluster | None) -> dict[str, object] | None:
            return c.to_dict() if c else None

        return {
            "model": self.model,
            "device": self.device,
            "slo": self.slo,
            "by_devices": d(self.by_devices),
            "by_power": d(self.by_power),
            "by_price": d(self.by_price),
            "candidates": [c.to_dict() for c in self.candidates],
            "evaluated": self.evaluated,
            "notes": list(self.notes),
        }


def _layouts(cfg: ModelConfig, tgt: Target, n: int, spec: StepSpec) -> list[Layout]:
    """The layouts of ``n`` devices that hold the model, fewest pipeline stages only,
    narrowest TP first (throughput favours more DP replicas: more room for KV)."""
    fit = layouts_that_fit(cfg, tgt.mapper, n, spec)
    fewest_pp = min((lay.pp for lay in fit), default=1)
    return sorted((lay for lay in fit if lay.pp == fewest_pp), key=lambda lay: lay.tp)


def _steps_per_layout(dp: int, max_batch: int, ttft: bool) -> int:
    """The most step simulations one layout can take: the TTFT check, the first batch, the
    doublings up to ``max_batch`` and the bisection to 1/16 of the batch (+1 for rounding)."""
    doublings = max(0, math.ceil(math.log2(max(1, max_batch) / max(1, dp))))
    return int(ttft) + 1 + doublings + 5


def _check_search(plans: list[tuple[int, list[Layout]]], max_batch: int, ttft: bool) -> None:
    """Refuse up front a search that could run more step simulations than ``--max-sims``."""
    from hwsim.spec.limits import check_sims

    est = sum(_steps_per_layout(lay.dp, max_batch, ttft) for _, fit in plans for lay in fit)
    n_layouts = sum(len(fit) for _, fit in plans)
    check_sims(
        est, f"decode steps to simulate ({n_layouts} layouts)",
        "lower --max-devices-per-instance, or size for traffic with --traffic",
    )  # fmt: skip


def size_cluster(
    model: str | ModelConfig,
    device: str,
    *,
    tokens_per_s_per_user: float,
    total_tokens_per_s: float,
    context: int = 4096,
    max_ttft_s: float | None = None,
    dtype: str = STEP_DEFAULTS["dtype"],
    kv_dtype: str = STEP_DEFAULTS["kv_dtype"],
    mtp: int = STEP_DEFAULTS["mtp"],
    mtp_acceptance: float = STEP_DEFAULTS["mtp_acceptance"],
    max_devices_per_instance: int = 512,
    layouts_per_size: int = 3,
    max_batch: int = 4096,
    target: Target | None = None,
) -> SizingAnswer:
    """Search the clusters that meet the SLO (see the module docstring)."""
    cfg = load_model_config(model) if isinstance(model, str) else model
    if not (
        math.isfinite(tokens_per_s_per_user)
        and math.isfinite(total_tokens_per_s)
        and tokens_per_s_per_user > 0
        and total_tokens_per_s > 0
    ):
        raise SpecError("the SLO throughputs must be > 0 tokens/s")
    tgt = target or make_target(device)
    dev = tgt.device
    first = min_devices(
        cfg, tgt.mapper, StepSpec("decode", 1, context, dtype, kv_dtype, q_len=1 + mtp)
    ).devices
    sizes = [first] + [2**i for i in range(1, 20) if first < 2**i <= max_devices_per_instance]
    base = StepRequest(
        cfg, tgt, context=context, dtype=dtype, kv_dtype=kv_dtype, mtp=mtp,
        mtp_acceptance=mtp_acceptance,
    )  # fmt: skip
    spec1 = StepSpec("decode", 1, context, dtype, kv_dtype, q_len=1 + mtp)
    plans = [(n, _layouts(cfg, tgt, n, spec1)[:layouts_per_size]) for n in sizes]
    _check_search(plans, max_batch, max_ttft_s is not None)
    evaluated = 0
    found: list[SizedCluster] = []
    notes: list[str] = []

    def run(lay: Layout, b: int) -> StepResult | None:
        nonlocal evaluated
        evaluated += 1
        try:
            return serve_step(base.replace(batch=b, layout=lay), strict=False, timeline=False)
        except SpecError:
            return None

    def ok(r: StepResult | None) -> bool:
        return r is not None and r.fits and r.tokens_per_s_per_user >= tokens_per_s_per_user

    for _, fit in plans:
        for lay in fit:
            if max_ttft_s is not None:
                pre = base.replace(phase="prefill", batch=1, layout=lay, mtp=0)
                p = serve_step(pre, strict=False, timeline=False)
                evaluated += 1
                if p.ttft_s > max_ttft_s:
                    continue
            lo_b, best = lay.dp, None  # at least one sequence per DP replica
            r = run(lay, lo_b)
            if not ok(r):
                continue
            best = (lo_b, r)
            hi_b = lo_b
            while hi_b < max_batch:  # grow geometrically, then bisect
                hi_b = min(max_batch, hi_b * 2)
                r = run(lay, hi_b)
                if not ok(r):
                    break
                best = (hi_b, r)
            else:
                hi_b = max_batch + 1
            lo = best[0]
            while hi_b - lo > max(1, lo // 16):  # 1/16 of the batch is fine enough
                mid = (lo + hi_b) // 2
                r = run(lay, mid)
                if ok(r):
                    lo, best = mid, (mid, r)
                else:
                    hi_b = mid
            b, r0 = best
            assert r0 is not None
            k = max(1, math.ceil(total_tokens_per_s / r0.tokens_per_s_total))
            price = dev.price_usd
            found.append(
                SizedCluster(
                    layout=lay,
                    devices_per_instance=lay.devices,
                    batch_per_instance=b,
                    instances=k,
                    devices=k * lay.devices,
                    tokens_per_s_per_user=r0.tokens_per_s_per_user,
                    tokens_per_s_total=k * r0.tokens_per_s_total,
                    ttft_s=r0.ttft_s if max_ttft_s is None else p.ttft_s,
                    power_W=k * lay.devices * dev.tdp_W,
                    price_usd=k * lay.devices * price if price is not None else None,
                    bound=r0.bound,
                    memory_per_device_bytes=r0.memory_per_device_bytes,
                )
            )
    if dev.price_usd is None:
        notes.append(f"{tgt.key} has no price in its spec: no ranking by $")
    found.sort(key=lambda c: (c.devices, c.power_W))
    by_price = None
    if dev.price_usd is not None and found:
        by_price = min(found, key=lambda c: (c.price_usd or math.inf, c.devices))
    return SizingAnswer(
        model=cfg.name,
        device=tgt.key,
        slo={
            "tokens_per_s_per_user": tokens_per_s_per_user,
            "total_tokens_per_s": total_tokens_per_s,
            "context": float(context),
            "max_ttft_s": max_ttft_s,
        },
        candidates=tuple(found),
        by_devices=found[0] if found else None,
        by_power=min(found, key=lambda c: (c.power_W, c.devices)) if found else None,
        by_price=by_price,
        evaluated=evaluated,
        notes=tuple(notes),
    )
