"""Device comparison: the same model, phase and batches on several device types, side by side.

For each device and batch the device count is, by default (``count="node"``), at least one
node of the device's cluster (8 GPUs, a 16-socket SN40L rack) and at least the fewest devices
that hold the weights and the KV cache (capacity planning, so an LPU needs hundreds of chips),
rounded up to whole nodes: the systems people actually deploy. ``count="auto"`` is what
``hwsim decode`` does (the fastest per token of the capacity minimum, powers of two up to a
node, and whole nodes), an integer a fixed count. Rows carry the serving metrics and the cost
per token (per device, per watt, per dollar where prices are known); :func:`pareto_front` marks
the rows no other row beats on both tokens/s per user and tokens/s per device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hwsim.plan.model_step import StepSpec
from hwsim.serve.api import Target, make_target, serve_step
from hwsim.serve.capacity import layouts_that_fit, min_devices
from hwsim.serve.request import STEP_DEFAULTS, StepRequest
from hwsim.serve.step import StepResult
from hwsim.spec.errors import SpecError
from hwsim.spec.model import ModelConfig, load_model_config


@dataclass(frozen=True)
class CompareRow:
    """One device at one batch."""

    device: str
    kind: str
    batch: int
    result: StepResult | None
    error: str | None = None

    @property
    def per_device(self) -> float:
        r = self.result
        return r.tokens_per_s_total / r.devices if r else 0.0

    def to_dict(self) -> dict[str, object]:
        r = self.result
        out: dict[str, object] = {"device": self.device, "kind": self.kind, "batch": self.batch}
        if r is None:
            out["error"] = self.error
            return out
        out.update(
            {
                "devices": r.devices,
                "layout": str(r.layout),
                "tokens_per_s_per_user": r.tokens_per_s_per_user,
                "tokens_per_s_total": r.tokens_per_s_total,
                "tokens_per_s_per_device": self.per_device,
                "time_per_token_s": r.time_per_token_s,
                "ttft_s": r.ttft_s,
                "memory_per_device_bytes": r.memory_per_device_bytes,
                "bound": r.bound,
                "fits": r.fits,
                **r.trust.to_dict(),
            }
        )
        return out


@dataclass(frozen=True)
class Comparison:
    model: str
    phase: str
    context: int
    dtype: str
    rows: tuple[CompareRow, ...]
    power_W: dict[str, float]
    price_usd: dict[str, float | None]

    def row_dict(self, row: CompareRow) -> dict[str, object]:
        d = row.to_dict()
        r = row.result
        if r is not None:
            watts = self.power_W[row.device] * r.devices
            price = self.price_usd[row.device]
            d["power_W"] = watts
            d["tokens_per_joule"] = r.tokens_per_s_total / watts
            d["price_usd"] = price * r.devices if price is not None else None
            d["usd_per_million_tokens_per_s"] = (
                price * r.devices / r.tokens_per_s_total * 1e6 if price is not None else None
            )
        return d

    def to_dict(self) -> dict[str, object]:
        front = pareto_front(self.rows)
        return {
            "model": self.model,
            "phase": self.phase,
            "context": self.context,
            "dtype": self.dtype,
            "rows": [{**self.row_dict(r), "pareto": i in front} for i, r in enumerate(self.rows)],
        }


def pareto_front(rows: tuple[CompareRow, ...]) -> set[int]:
    """Indices of rows that no other row beats on both per-user and per-device throughput."""
    pts = [
        (i, r.result.tokens_per_s_per_user, r.per_device)
        for i, r in enumerate(rows)
        if r.result is not None
    ]
    front = set()
    for i, u, d in pts:
        if not any((u2 >= u and d2 >= d) and (u2 > u or d2 > d) for _, u2, d2 in pts):
            front.add(i)
    return front


def node_count(
    cfg: ModelConfig, tgt: Target, batch: int, context: int, dtype: str, kv_dtype: str, q_len: int
) -> int:
    """Whole nodes, at least one, enough to hold the model (the ``"node"`` device count)."""
    per = max(1, tgt.mapper.fabric.devices_per_node)
    need = min_devices(
        cfg, tgt.mapper, StepSpec("decode", batch, context, dtype, kv_dtype, q_len=q_len)
    )
    n = per * math.ceil(need.devices / per)
    spec = StepSpec("decode", batch, context, dtype, kv_dtype, q_len=q_len)
    while not layouts_that_fit(cfg, tgt.mapper, n, spec) and n < 64 * need.devices:
        n += per  # a count with no valid layout (prime factors): the next node
    return n


def compare(
    model: str | ModelConfig,
    devices: list[str],
    batches: list[int],
    *,
    phase: str = STEP_DEFAULTS["phase"],
    context: int = STEP_DEFAULTS["context"],
    dtype: str = STEP_DEFAULTS["dtype"],
    kv_dtype: str = STEP_DEFAULTS["kv_dtype"],
    count: int | str = "node",
    mtp: int = STEP_DEFAULTS["mtp"],
    mtp_acceptance: float = STEP_DEFAULTS["mtp_acceptance"],
) -> Comparison:
    """Every device at every batch (see the module docstring). A device that cannot run a case
    gets a row with the reason instead of numbers."""
    cfg = load_model_config(model) if isinstance(model, str) else model
    rows: list[CompareRow] = []
    power: dict[str, float] = {}
    price: dict[str, float | None] = {}
    for key in devices:
        tgt = make_target(key)
        power[key] = tgt.device.tdp_W
        price[key] = tgt.device.price_usd
        for b in batches:
            try:
                n = count
                if count == "node":
                    n = node_count(cfg, tgt, b, context, dtype, kv_dtype, 1 + mtp)
                r = serve_step(
                    StepRequest(
                        cfg,
                        tgt,
                        phase,
                        batch=b,
                        context=context,
                        devices=n,
                        dtype=dtype,
                        kv_dtype=kv_dtype,
                        mtp=mtp,
                        mtp_acceptance=mtp_acceptance,
                    )
                )
                rows.append(CompareRow(key, tgt.device.kind, b, r))
            except SpecError as err:
                rows.append(CompareRow(key, tgt.device.kind, b, None, str(err)))
    return Comparison(cfg.name, phase, context, dtype, tuple(rows), power, price)
