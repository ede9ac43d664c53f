"""``hwsim explain decode``: one whole-model decode (or prefill) step, timed op by op by the
what-if engine (:func:`hwsim.serve.step.simulate_step` through the device's mapper), taken apart
like the single-kernel subjects (:mod:`hwsim.report.explain_gemm` and its siblings).

The step's time by resource is the time of its ops grouped by what bounds each op (the engine's
``bound_shares``), and its bytes per memory level are the ops' bytes summed over one step of one
device. What-ifs: bandwidth of the bounding level, a narrower weight dtype or KV-cache dtype,
tensor parallelism over twice the devices (the parallel-layout lever), a bigger batch, and the
matrix peak when the step is compute-bound.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from hwsim.report.explain import (
    NO_CHANGE,
    Candidate,
    Change,
    Outcome,
    fmt_bytes,
    fmt_pct,
    fmt_time,
)
from hwsim.report.explain_common import (
    NARROWER,
    _faster_dtype,
    _fill,
    _level_x2,
    compute_x2,
    mapping_candidates,
)
from hwsim.serve.request import STEP_DEFAULTS
from hwsim.spec.errors import SpecError
from hwsim.spec.load import load_device
from hwsim.spec.overrides import apply_overrides

_LAYOUT_KEYS = ("tp", "ep", "pp", "dp")


def _fixed_costs(r: Any) -> dict[str, float]:
    """Seconds per step of each fixed cost the GPU mapper charged (kernel gaps of CUDA-graph
    replay, the small-collective floor, MoE routing kernels; hwsim.sim.gpu_fixed)."""
    from hwsim.sim.gpu_fixed import step_fixed_costs

    return step_fixed_costs((op.timing, op.count) for op in r.ops)


def _engine() -> Any:
    try:
        from hwsim.serve import step
    except ImportError as err:  # the what-if engine lands separately
        raise SpecError(
            f"whole-model steps need the what-if engine (hwsim.serve.step), not available: {err}"
        ) from None
    return step


def _layout_ok(model: str, layout: dict[str, int]) -> bool:
    """Whether ``layout`` is a valid parallel layout of ``model`` (heads, experts, layers)."""
    from hwsim.plan.layout import Layout, check_layout
    from hwsim.spec.model import load_model_config

    try:
        check_layout(load_model_config(model), Layout(**layout))
    except SpecError:
        return False
    return True


def model_key(name: str) -> str:
    """A model file stem from a stem, a path or a display name (``Llama-3.1-8B``), as step JSON
    records it."""
    from hwsim.spec.model import list_models, load_model_config

    stems = list_models()
    if name in stems or name.endswith((".yaml", ".yml", ".json")):
        return name
    for stem in stems:
        if load_model_config(stem).name == name:
            return stem
    raise SpecError(f"unknown model {name!r} (built-in: {', '.join(stems)})", key="model")


@dataclass(frozen=True)
class DecodeSubject:
    """``batch`` sequences with ``context`` tokens of KV cache, one decode step of ``model`` on
    ``device``, exactly as ``hwsim decode`` runs it (:func:`hwsim.serve.api.serve_step`, the
    device's built-in cluster, overlap chosen automatically). ``tp``/``ep``/``pp``/``dp`` set the
    layout; all None: the fewest devices that hold the model. ``phase="prefill"``: a prompt of
    ``context`` tokens instead."""

    model: str
    device: str
    batch: int = STEP_DEFAULTS["batch"]
    context: int = STEP_DEFAULTS["context"]
    dtype: str = STEP_DEFAULTS["dtype"]
    kv_dtype: str = STEP_DEFAULTS["kv_dtype"]
    tp: int | None = None
    ep: int | None = None
    pp: int | None = None
    dp: int | None = None
    phase: str = "decode"
    kind = "decode"

    def params(self) -> dict[str, Any]:
        return dict(asdict(self))

    def label(self) -> str:
        from hwsim.spec.model import load_model_config

        lay = ",".join(
            f"{k}={getattr(self, k)}" for k in _LAYOUT_KEYS if (getattr(self, k) or 1) > 1
        )
        return (
            f"{self.phase.capitalize()} step of {load_model_config(self.model).name} (batch "
            f"{self.batch}, {self.context} tokens of context, {self.dtype} weights) on "
            f"{load_device(self.device).name}" + (f" with {lay}" if lay else "")
        )

    def run(self, change: Change = NO_CHANGE) -> Outcome:
        from hwsim.plan.layout import Layout
        from hwsim.serve.api import make_target, profile_target, serve_step
        from hwsim.serve.request import StepRequest

        _engine()
        d = apply_overrides(load_device(self.device), change.spec)
        p = {**self.params(), **change.params}
        phase = str(p["phase"])
        if phase not in ("decode", "prefill"):
            raise SpecError(f"phase must be decode or prefill, got {phase!r}", key="phase")
        degrees = {k: p[k] for k in _LAYOUT_KEYS}
        layout = None
        if any(v is not None for v in degrees.values()):
            layout = Layout(**{k: int(v or 1) for k, v in degrees.items()})
        target = make_target(d, key=self.device)
        if change.profile:  # a mapper parameter (hwsim whatif --set profile.PATH=VALUE)
            target = profile_target(target, [f"{k}={v}" for k, v in change.profile.items()])
        r = serve_step(
            StepRequest(
                str(p["model"]),
                target,
                phase,
                batch=int(p["batch"]),
                context=int(p["context"]),
                layout=layout,
                dtype=str(p["dtype"]),
                kv_dtype=str(p["kv_dtype"]),
            ),
            strict=False,
            timeline=False,
        )
        t = r.step_time_s
        busy = {k: v * t for k, v in r.bound_shares.items()}
        levels = [m.name for m in d.memory]
        byts = dict.fromkeys(levels, 0.0)
        flops = 0.0
        for op in r.ops:
            flops += op.timing.flops * op.count
            for lvl, b in op.timing.bytes_by_level.items():
                if lvl in byts:
                    byts[lvl] += b * op.count
        byts = {k: v for k, v in byts.items() if v > 0}
        fixed = _fixed_costs(r) if d.kind == "gpu" else {}
        trust = r.trust.to_dict()  # the step's error bar (hwsim.sim.trust)
        peak_dtype = "fp8" if str(p["dtype"]).startswith("fp8") else str(p["dtype"])
        return Outcome(
            time_s=t,
            bound=r.bound,
            busy_s=busy,
            bytes=byts,
            bandwidth_Bps={k: d.level_bandwidth_Bps(k) for k in byts},
            work_flops=flops,
            peak_flops=d.peak_flops(peak_dtype),
            metric=("tokens/s per user", r.tokens_per_s_per_user),
            details={
                "device_kind": d.kind,
                "weight_bytes": r.weight_bytes_per_device,
                "kv_bytes": r.kv_bytes_per_device,
                "capacity_bytes": r.capacity_bytes,
                "memory_bytes": r.memory_per_device_bytes,
                "breakdown_s": dict(r.breakdown_s),
                "devices": r.devices,
                "layout": {k: getattr(r.layout, k) for k in _LAYOUT_KEYS},
                "fits": r.fits,
                "tokens_per_s_total": r.tokens_per_s_total,
                "comm_exposed_s": r.comm_exposed_s,
                "main_memory": d.main_memory.name,
                "main_bw": d.level_bandwidth_Bps(d.main_memory.name),
                "notes": list(r.notes),
                "fixed_costs_s": fixed,
                "trust": trust,
            },
            result={**r.to_dict(), "fixed_costs_s": fixed, **trust},
        )

    def describe(self, base: Outcome) -> list[str]:
        x = base.details
        lay = ",".join(f"{k}={v}" for k, v in x["layout"].items())
        main, bw = x["main_memory"], x["main_bw"]
        w, kv = x["weight_bytes"], x["kv_bytes"]
        floor = (w + kv) / bw
        out = [
            f"Layout {lay} over {x['devices']} device(s)"
            + ("" if x["fits"] else " (the weights and KV cache do NOT fit)")
            + ".",
            f"Every step reads the weights on this device ({fmt_bytes(w)}) and the KV cache "
            f"({fmt_bytes(kv)}) from {main}: at {main}'s {fmt_bytes(bw)}/s that alone takes "
            f"{fmt_time(floor)}"
            + (
                f", {fmt_pct(floor / base.time_s)} of the step."
                if x["layout"]["pp"] == 1
                else f" per pipeline stage, and a step passes through {x['layout']['pp']} stages."
            )
            + " Batching more sequences reuses the same weight bytes; the KV cache grows with "
            "every sequence.",
        ]
        cats = sorted(x["breakdown_s"].items(), key=lambda kv_: -kv_[1])
        parts = ", ".join(f"{k} {fmt_time(v)}" for k, v in cats if v > 0)
        out.append(f"By part of the model: {parts}.")
        if x["comm_exposed_s"] > 0:
            out.append(
                f"Communication that nothing hides costs {fmt_time(x['comm_exposed_s'])} per step."
            )
        fixed = {k: v for k, v in x.get("fixed_costs_s", {}).items() if v > 0}
        if fixed:
            total = sum(fixed.values())
            parts = ", ".join(f"{k} {fmt_time(v)}" for k, v in fixed.items())
            out.append(
                f"Fixed costs that no batch size amortises (devices/profiles/fixed.yaml, from "
                f"microbenchmarks): {parts}; together {fmt_time(total)} of busy time, "
                f"{fmt_pct(total / base.time_s)} of the step. At batch 1 they set much of the "
                "per-user speed; at large batch the weight and KV reads hide them."
            )
        tr = x.get("trust")
        if tr:
            cal = "calibrated" if tr["calibrated"] else "not calibrated"
            out.append(
                f"Expected error of this prediction: ±{tr['expected_error_pct']:.0f}% ({cal}; "
                f"{tr['error_basis']}; docs/calibration-transfer.md)."
            )
        out += [f"Note: {n}." for n in x["notes"]]
        return out

    def candidates(self, base: Outcome) -> list[Candidate]:
        d = load_device(self.device)
        main = d.main_memory.name
        lay = dict(base.details["layout"])
        wider = {**lay, "tp": 2 * lay["tp"]}
        pool: dict[str, Candidate] = {
            "bw": _level_x2(main, f"weights and KV cache stream twice as fast from {main}"),
        }
        if _layout_ok(self.model, wider):  # e.g. not tp=128 for a model of 64 heads
            pool["tp"] = Candidate(
                f"tp-{wider['tp']}",
                f"tensor parallel over {wider['tp']} devices per group",
                "layout",
                (main, "hbm", "compute"),
                Change(params=wider),
                f"tp={wider['tp']} instead of {lay['tp']}: each device reads half the weights, "
                "at the cost of an all-reduce per layer",
            )
        narrow = NARROWER.get(self.dtype)
        if narrow and narrow in d.compute.peak:
            pool["dtype"] = Candidate(
                f"dtype-{narrow}",
                f"{narrow} weights instead of {self.dtype}",
                "dtype",
                (main, "compute"),
                Change(params={"dtype": narrow}),
                "half the weight bytes per step"
                + (" and a faster matrix peak" if _faster_dtype(d, self.dtype) else ""),
            )
        if self.kv_dtype != "fp8" and base.details["kv_bytes"] > 0.1 * base.details["weight_bytes"]:
            pool["kv"] = Candidate(
                "kv-fp8",
                "fp8 KV cache",
                "dtype",
                (main,),
                Change(params={"kv_dtype": "fp8"}),
                "half the KV-cache bytes read per step",
            )
        pool["compute"] = compute_x2(d, self.dtype)
        pool.update(mapping_candidates(d.kind))
        order = {
            main: ["bw", "dtype", "tp", "kv"],
            "compute": ["dtype", "compute", "spread", "tp"],
            "latency": ["op_latency", "tp", "bw", "dtype"],
        }.get(base.bound, ["tp", "bw", "dtype"])
        cands = [pool[k] for k in order if k in pool]
        return _fill(cands, list(pool.values()))
