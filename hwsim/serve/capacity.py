"""Memory-capacity planning: the fewest devices (GPUs, chips, wafers, sockets) that hold a
model's weights and KV cache at a dtype, context and batch, with the reasoning printed.

The lower bound is plain arithmetic, ``⌈(weights + KV) / capacity per device⌉``. A real layout
needs more whenever something is replicated: KV heads when TP exceeds them, MLA's latent cache
over TP, the norms, the input embedding on the first pipeline stage, attention weights in DP
replicas. So the plan searches the layouts of ``n`` devices (``tp · dp · pp = n``; TP divides
the heads and stays inside a node on GPUs, PP at most one layer per stage, DP only for MoE
models whose experts then spread over EP = TP·DP) from the lower bound upward and returns the
first that fits, preferring fewer pipeline stages and then more TP.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, fields

from hwsim.plan.layout import Layout, validate_layout
from hwsim.plan.model_step import StepSpec, kv_bytes_per_token_per_layer, memory_per_device
from hwsim.sim.mapper import Mapper
from hwsim.spec.device import DTYPE_BYTES
from hwsim.spec.errors import SpecError
from hwsim.spec.fit import human_bytes
from hwsim.spec.model import ModelConfig

#: Give up the search past this many times the lower bound (plus a node).
SEARCH_FACTOR = 4
#: Deployments beyond this many devices are refused from the arithmetic alone (the largest
#: clusters built are ~10^5 accelerators): the layout search would cost time for no answer.
MAX_DEVICES = 1_000_000
#: Pipeline depths searched at most (a deployment needs fewer stages than this).
MAX_STAGES = 4096


@dataclass(frozen=True)
class CapacityPlan:
    """The smallest layout that holds the model (bytes per device and in total)."""

    model: str
    device: str
    dtype: str
    kv_dtype: str
    batch: int
    context: int
    weight_bytes_total: float
    kv_bytes_total: float
    capacity_per_device_bytes: float
    lower_bound_devices: int
    devices: int
    layout: Layout
    weight_bytes_per_device: float
    kv_bytes_per_device: float
    reasoning: tuple[str, ...]

    @property
    def memory_per_device_bytes(self) -> float:
        return self.weight_bytes_per_device + self.kv_bytes_per_device

    def to_dict(self) -> dict[str, object]:
        """Every field by name (the layout as a dict and a string, the reasoning as a list)
        and the memory per device."""
        out: dict[str, object] = {f.name: getattr(self, f.name) for f in fields(self)}
        out["layout"] = self.layout.to_dict()
        out["layout_str"] = str(self.layout)
        out["memory_per_device_bytes"] = self.memory_per_device_bytes
        out["reasoning"] = list(self.reasoning)
        return out


def max_tp_for(model: ModelConfig, mapper: Mapper) -> int:
    """Widest TP group: one fast domain (:attr:`Mapper.domain_devices`), because TP puts two
    all-reduces into every layer that only the domain's own links carry cheaply; all heads where
    the mapper's network carries TP across domains (``tp_across_domains``: the LPU). So wafers,
    domains of one, pipeline across systems as Cerebras does."""
    if mapper.tp_across_domains:
        return model.attention.heads
    return max(1, min(model.attention.heads, mapper.domain_devices))


def candidate_layouts(model: ModelConfig, n: int, max_tp: int) -> Iterator[Layout]:
    """Valid layouts of exactly ``n`` devices, fewest pipeline stages first, then most TP."""
    moe = model.moe
    for pp in (p for p in range(1, min(n, model.layers) + 1) if n % p == 0):
        rest = n // pp
        for tp in sorted((t for t in range(1, max_tp + 1) if rest % t == 0), reverse=True):
            dp = rest // tp
            if dp > 1 and moe is None:
                continue  # a dense model's DP replicas only add copies of the weights
            ep = tp * dp if moe is not None else 1
            if (
                moe is not None
                and ep > 1
                and ep <= moe.n_routed_experts
                and moe.n_routed_experts % ep
            ):
                ep = 1 if dp == 1 else 0
            if ep == 0:
                continue
            lay = Layout(tp=tp, ep=ep, pp=pp, dp=dp)
            try:
                validate_layout(model, lay)
            except SpecError:
                continue
            yield lay


def weights_total_bytes(model: ModelConfig, dtype: str) -> float:
    """All weights of the main model at ``dtype`` (parameter count × bytes)."""
    return model.total_params() * DTYPE_BYTES[dtype]


def min_devices(
    model: ModelConfig,
    mapper: Mapper,
    step: StepSpec,
    *,
    max_tp: int | None = None,
    device_name: str | None = None,
) -> CapacityPlan:
    """The fewest devices of ``mapper``'s kind that hold ``model`` for ``step.batch``
    sequences of ``step.context`` tokens (plus ``step.q_len`` new ones each) at ``step``'s
    dtypes (see the module docstring). The weights counted are the main model's (a decode
    step's view, whatever ``step.phase``)."""
    batch, context, q_len = step.batch, step.context, step.q_len
    dtype, kv_dtype = step.dtype, step.kv_dtype
    spec = StepSpec("decode", batch, context, dtype, kv_dtype, q_len=q_len)
    cap = mapper.capacity_bytes
    if cap <= 0:
        raise SpecError(f"{mapper.device.name} lists no memory capacity to hold weights")
    w = weights_total_bytes(model, dtype)
    kv_tok = model.kv_cache_bytes_per_token(DTYPE_BYTES[kv_dtype])
    kv = batch * (context + q_len) * kv_tok
    lb = max(1, math.ceil((w + kv) / cap)) if math.isfinite((w + kv) / cap) else MAX_DEVICES + 1
    unit = mapper.unit
    level = mapper.device.main_memory.name.upper()
    name = device_name or mapper.device.name
    if lb > MAX_DEVICES:
        raise SpecError(
            f"{model.name} at {dtype} with batch {batch} × {context} tokens needs "
            f"{human_bytes(w)} of weights and {human_bytes(kv)} of KV cache: at least "
            f"{lb:.3g} {unit}s of {human_bytes(cap)}, beyond any deployment hwsim searches "
            f"({MAX_DEVICES:,}); use a smaller batch, context or model"
        )
    a = model.attention
    kv_layer = kv_bytes_per_token_per_layer(model, a.kv_heads, kv_dtype)
    per_tok = (
        f"{model.layers} layers × {kv_layer / DTYPE_BYTES[kv_dtype]:.0f} values"
        f"{' (MLA latent + rope key)' if a.kind == 'mla' else ''} × {DTYPE_BYTES[kv_dtype]:g} B"
    )
    why = [
        f"weights: {model.total_params() / 1e9:.2f} B parameters × {DTYPE_BYTES[dtype]:g} B "
        f"({dtype}) = {human_bytes(w)}",
        f"KV cache: {batch} sequence(s) × {context + q_len} tokens × {human_bytes(kv_tok)}/token "
        f"({per_tok}) = {human_bytes(kv)}",
        f"one {name} holds {human_bytes(cap)} ({level}); ({human_bytes(w)} + {human_bytes(kv)}) "
        f"/ {human_bytes(cap)} = {(w + kv) / cap:.2f} → at least {lb} {unit}(s)",
    ]
    tp_max = max_tp or max_tp_for(model, mapper)
    why.append(
        f"layouts: tp divides the {a.heads} heads and is at most {tp_max}, pp at most the "
        f"{model.layers} layers; replicated parts (KV heads past tp, MLA latent, norms, the "
        "embedding on the first stage) add bytes per device"
    )
    limit = SEARCH_FACTOR * lb + 64
    found = _smallest_fit(model, spec, cap, tp_max, limit)
    if found is not None:
        n, lay, wd, kd = found
        why.append(
            f"smallest that fits: {n} {unit}(s) with {lay}: {human_bytes(wd + kd)} per "
            f"{unit} (weights {human_bytes(wd)}, KV {human_bytes(kd)}) ≤ {human_bytes(cap)}"
        )
        return CapacityPlan(
            model.name,
            name,
            dtype,
            kv_dtype,
            batch,
            context,
            w,
            kv,
            cap,
            lb,
            n,
            lay,
            wd,
            kd,
            tuple(why),
        )
    raise SpecError(
        f"{model.name} at {dtype} with batch {batch} × {context} tokens does not fit any layout "
        f"of {lb}..{limit} {unit}s of {name}; " + "; ".join(why[:3])
    )


def _dp_options(model: ModelConfig, tp: int, most: int) -> list[int]:
    """DP degrees usable with ``tp`` (MoE: EP = TP·DP must divide the experts or exceed them)."""
    moe = model.moe
    if moe is None:
        return [1]
    e = moe.n_routed_experts
    return [d for d in range(1, most + 1) if tp * d > e or e % (tp * d) == 0]


def _layout(model: ModelConfig, tp: int, dp: int, pp: int) -> Layout | None:
    ep = tp * dp if model.moe is not None else 1
    lay = Layout(tp=tp, ep=ep, pp=pp, dp=dp)
    try:
        validate_layout(model, lay)
    except SpecError:
        return None
    return lay


def _smallest_fit(
    model: ModelConfig, spec: StepSpec, cap: float, tp_max: int, limit: int
) -> tuple[int, Layout, float, float] | None:
    """Fewest devices over (tp, pp) pairs; for each, the smallest DP that fits by bisection
    (memory per device never grows with DP: experts spread, KV splits, attention is copied)."""
    best: tuple[tuple[int, int, int], tuple[int, Layout, float, float]] | None = None
    tps = [t for t in range(1, tp_max + 1) if model.attention.heads % t == 0]
    stages = min(model.layers, limit)
    if stages > MAX_STAGES and limit > MAX_STAGES:
        raise SpecError(
            f"{model.name}: a layout of ≥ {limit // SEARCH_FACTOR:,} devices over up to "
            f"{stages:,} pipeline stages is beyond the {MAX_STAGES:,} stages hwsim searches"
        )
    for pp in range(1, stages + 1):
        for tp in tps:
            if tp * pp > limit:
                continue
            dps = _dp_options(model, tp, limit // (tp * pp))
            lo, hi, hit = 0, len(dps) - 1, None
            while lo <= hi:
                mid = (lo + hi) // 2
                lay = _layout(model, tp, dps[mid], pp)
                if lay is None:  # invalid layouts are rare (FFN width); scan upward instead
                    lo = mid + 1
                    continue
                wd, kd = memory_per_device(model, lay, spec)
                if wd + kd <= cap:
                    hit, hi = (lay.devices, lay, wd, kd), mid - 1
                else:
                    lo = mid + 1
            if hit is not None:
                rank = (hit[0], pp, -tp)
                if best is None or rank < best[0]:
                    best = (rank, hit)
    return best[1] if best else None


def auto_device_counts(floor: int, domain: int) -> list[int]:
    """Device counts ``devices="auto"`` tries (:func:`hwsim.serve.api.serve_step` keeps the
    fastest per token): the capacity floor, every power of two above it up to one fast domain,
    and the floor rounded up to whole domains. One rule for every kind: a model that fits a
    domain may use all of it (8B on a GPU node, 70B on a SambaRack), one that does not gets
    whole domains (no half-used node), and a domain of one (a wafer) adds nothing."""
    counts = [floor] + [2**k for k in range(1, 31) if floor < 2**k <= domain]
    whole = domain * math.ceil(floor / domain)
    return counts + ([whole] if whole not in counts else [])


def auto_layouts(
    model: ModelConfig, mapper: Mapper, plan: CapacityPlan, spec: StepSpec
) -> list[Layout]:
    """The capacity plan's layout, then the first layout that fits (fewest pipeline stages,
    most TP) for each further count of :func:`auto_device_counts`."""
    out = [plan.layout]
    for n in auto_device_counts(plan.devices, mapper.domain_devices)[1:]:
        fit = layouts_that_fit(model, mapper, n, spec)
        if fit:
            out.append(fit[0])
    return out


def layouts_that_fit(
    model: ModelConfig, mapper: Mapper, n: int, spec: StepSpec, max_tp: int | None = None
) -> list[Layout]:
    """Layouts of exactly ``n`` devices whose largest stage fits one device."""
    tp_max = max_tp or max_tp_for(model, mapper)
    out = []
    for lay in candidate_layouts(model, n, tp_max):
        wd, kd = memory_per_device(model, lay, spec)
        if wd + kd <= mapper.capacity_bytes:
            out.append(lay)
    return out
