"""Metric kinds: what a sweep measures at each point.

A metric kind maps a point (a device, after spec overrides, plus workload parameters) to a dict
of metrics. Two flavours share one registry:

* **analytic** kinds (``vectorised = True``) get a whole :class:`Batch` of points as numpy
  columns and return one array per metric: the hierarchical roofline of
  :mod:`hwsim.roofline.analytic` evaluated over all points at once (10,000 points in tens of
  milliseconds).
* **point** kinds (``vectorised = False``, :mod:`hwsim.sweep.sim_kinds`) time one sub-problem
  with a simulator. :meth:`MetricKind.subproblem` says which parameters matter, so identical
  sub-problems (the same attention shape on the same device) run once per sweep.

Every kind declares the workload parameters it reads (with defaults), the metrics it returns
(with units) and the source files its results depend on (part of the cache key). Plug in your
own with :func:`register_kind`, or name it in a sweep file as ``module:Class``.
"""

from __future__ import annotations

import difflib
import importlib
from abc import ABC
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, ValidationError

from hwsim.roofline.analytic import device_bandwidths, device_rates, evaluate, level_union
from hwsim.roofline.ops import (
    COMPUTE_KINDS,
    REGISTER_TILE,
    SOFTMAX_VECTOR_FLOPS_PER_SCORE,
    SPECIAL,
    VECTOR,
    attention_traffic_bytes,
    gemm_traffic_bytes,
)
from hwsim.spec.device import DTYPE_BYTES, DTYPES, Device
from hwsim.spec.errors import SpecError

FloatArray = NDArray[np.float64]
Scalar = float | int | str | bool


#: what the roofline kinds read from a device
ROOFLINE_DEVICE = ("kind", "compute", "memory")


class NoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class Batch:
    """Points handed to an analytic kind: ``device_index[p]`` picks point p's device; every
    parameter is a column of length P."""

    devices: tuple[Device, ...]
    device_index: NDArray[np.intp]
    params: Mapping[str, NDArray[Any]]

    def __len__(self) -> int:
        return int(self.device_index.shape[0])

    def f(self, name: str) -> FloatArray:
        """Parameter ``name`` as floats."""
        return np.asarray(self.params[name], dtype=float)


class MetricKind(ABC):
    """Base class of metric kinds (see the module docstring)."""

    name: ClassVar[str]
    version: ClassVar[str] = "1"  #: bump when results change for the same code (cache key)
    vectorised: ClassVar[bool] = True
    description: ClassVar[str] = ""
    #: workload parameters read, with defaults (None: required, typically from ``base.model``)
    params: ClassVar[dict[str, Scalar | None]] = {}
    #: metric name → description with unit
    metrics: ClassVar[dict[str, str]] = {}
    #: source files/folders (relative to the repository) whose contents enter the cache key
    code_paths: ClassVar[tuple[str, ...]] = ("hwsim/roofline", "hwsim/spec", "hwsim/sweep/kinds.py")
    Options: ClassVar[type[BaseModel]] = NoOptions
    #: top-level device sections the results depend on (None: all of them). Points whose
    #: devices differ only elsewhere (a price, a link speed) share one unit.
    device_fields: ClassVar[tuple[str, ...] | None] = None
    #: point kinds that run on a cluster (an ``options.cluster``): the sweep adds each point's
    #: ``axes.cluster`` overrides to their sub-problem as ``cluster.<path>`` entries (SI)
    reads_cluster: ClassVar[bool] = False
    #: point kinds that time a whole model through a device's mapper: the sweep adds each
    #: point's ``profile.<path>`` spec axes (a spatial kind's mapper parameters, SI) likewise
    reads_profile: ClassVar[bool] = False
    #: sub-problem keys that shape a random kind's draw (None: its whole unit key)
    seed_params: ClassVar[tuple[str, ...] | None] = None

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        try:
            self.options = self.Options.model_validate(dict(options or {}))
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err.get("loc", ()))
            raise SpecError(
                f"metric kind '{self.name}' options: {where + ': ' if where else ''}{err['msg']}"
            ) from None

    def subproblem(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The parameters that determine the result (dedup and cache key); default: all the
        parameters the kind reads."""
        return {k: params[k] for k in self.params}

    def evaluate_batch(self, batch: Batch) -> dict[str, NDArray[Any]]:
        """Analytic kinds: one array per metric for all points of ``batch``."""
        raise NotImplementedError

    def evaluate_point(
        self, device: Device, params: Mapping[str, Any], seed: int
    ) -> dict[str, Any]:
        """Point kinds: the metrics of one sub-problem (``params`` is :meth:`subproblem`'s)."""
        raise NotImplementedError


#: parameter/column-name prefix of the sweep's ``axes.cluster`` overrides (``cluster.<path>``)
CLUSTER_PREFIX = "cluster."


# ---- registry ----------------------------------------------------------------------------------
KINDS: dict[str, type[MetricKind]] = {}


def register_kind(cls: type[MetricKind]) -> type[MetricKind]:
    """Class decorator: make a metric kind available to sweep files by its ``name``."""
    KINDS[cls.name] = cls
    return cls


def get_kind(name: str) -> type[MetricKind]:
    """A registered kind, or ``package.module:Class`` imported on demand (plug-ins)."""
    _load_builtin()
    if name in KINDS:
        return KINDS[name]
    if ":" in name:
        module, _, attr = name.partition(":")
        try:
            cls = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise SpecError(f"cannot import metric kind '{name}': {exc}") from None
        if not (isinstance(cls, type) and issubclass(cls, MetricKind)):
            raise SpecError(f"'{name}' is not a MetricKind subclass")
        return cls
    guess = difflib.get_close_matches(name, list(KINDS), n=1)
    hint = f"; did you mean '{guess[0]}'?" if guess else ""
    raise SpecError(f"unknown metric kind '{name}'{hint} (built-in: {', '.join(sorted(KINDS))})")


def _load_builtin() -> None:
    # the model-level and simulator-backed kinds register themselves on import
    importlib.import_module("hwsim.sweep.model_kinds")
    importlib.import_module("hwsim.sweep.sim_kinds")
    importlib.import_module("hwsim.sweep.serve_kinds")
    importlib.import_module("hwsim.sweep.moe_kinds")


# ---- devices as arrays -------------------------------------------------------------------------
@dataclass(frozen=True)
class DeviceArrays:
    """The numbers of D devices the analytic kinds use, as arrays over the union of their
    memory levels (NaN / -1 where a device lacks a level). SI units."""

    levels: tuple[str, ...]
    rates_flops: FloatArray  #: (D, len(COMPUTE_KINDS))
    bandwidth_Bps: FloatArray  #: (D, L) chip aggregate
    chip_capacity_bytes: FloatArray  #: (D, L)
    inner_tile_bytes: FloatArray  #: (D, L) capacity of one instance of the next level inward
    position: NDArray[np.intp]  #: (D, L) index in the device's own hierarchy, -1 if absent
    on_chip: NDArray[np.bool_]  #: (D, L) the level is on the chip (per_unit or per_chip scope)
    main_position: NDArray[np.intp]  #: (D,)
    names_by_position: tuple[tuple[str, ...], ...]
    tdp_W: FloatArray
    price_usd: FloatArray  #: NaN when unknown
    scaleup_Bps: FloatArray  #: per device, one direction, all scale-up ports (not PCIe)
    scaleup_latency_s: FloatArray

    @classmethod
    def of(cls, devices: Sequence[Device]) -> DeviceArrays:
        levels = level_union(devices)
        n, nl = len(devices), len(levels)
        cap = np.full((n, nl), np.nan)
        inner = np.full((n, nl), np.nan)
        pos = np.full((n, nl), -1, dtype=np.intp)
        on_chip = np.zeros((n, nl), dtype=bool)
        main = np.zeros(n, dtype=np.intp)
        scale_bw, scale_lat = np.zeros(n), np.zeros(n)
        for d, dev in enumerate(devices):
            names = [m.name for m in dev.memory]
            for i, m in enumerate(dev.memory):
                j = levels.index(m.name)
                pos[d, j] = i
                cap[d, j] = dev.level_capacity_bytes(m.name)
                # on the die: inside HBM when there is one (HBM is 'per_chip' but off-die)
                on_chip[d, j] = (
                    i < names.index("hbm")
                    if "hbm" in names
                    else m.scope in ("per_unit", "per_chip")
                )
                if i > 0:
                    inner[d, j] = dev.memory[i - 1].capacity_bytes
            main[d] = names.index(dev.main_memory.name)
            ports = [p for p in dev.interconnect if p.kind != "pcie"] or list(dev.interconnect)
            if ports:
                scale_bw[d] = ports[0].total_bandwidth_Bps
                scale_lat[d] = ports[0].latency.value
        return cls(
            levels=tuple(levels),
            rates_flops=np.stack([device_rates(d) for d in devices]),
            bandwidth_Bps=np.stack([device_bandwidths(d, levels) for d in devices]),
            chip_capacity_bytes=cap,
            inner_tile_bytes=inner,
            position=pos,
            on_chip=on_chip,
            main_position=main,
            names_by_position=tuple(tuple(m.name for m in d.memory) for d in devices),
            tdp_W=np.array([d.tdp_W for d in devices]),
            price_usd=np.array([d.price_usd if d.price_usd else np.nan for d in devices]),
            scaleup_Bps=scale_bw,
            scaleup_latency_s=scale_lat,
        )

    def level_name(
        self, device_index: NDArray[np.intp], position: NDArray[np.intp]
    ) -> NDArray[Any]:
        """Names of the levels at ``position`` in each point's device hierarchy."""
        return np.array(
            [self.names_by_position[d][p] for d, p in zip(device_index, position, strict=True)],
            dtype=object,
        )


def dtype_columns(dtype: NDArray[Any]) -> tuple[NDArray[np.intp], FloatArray]:
    """Per point: index of the dtype in ``COMPUTE_KINDS`` and its bytes per element."""
    bad = sorted({str(t) for t in np.unique(dtype)} - set(DTYPES))
    if bad:
        raise SpecError(f"unknown dtype {bad[0]!r}; expected one of {', '.join(DTYPES)}")
    idx = np.array([COMPUTE_KINDS.index(str(t)) for t in dtype], dtype=np.intp)
    return idx, np.array([DTYPE_BYTES[str(t)] for t in dtype], dtype=float)


def work_matrix(
    n: int,
    dtype_index: NDArray[np.intp],
    matrix: FloatArray,
    vector: FloatArray | float = 0.0,
    special: FloatArray | float = 0.0,
) -> FloatArray:
    """FLOPs per compute kind, (n, len(COMPUTE_KINDS)): matrix work at each point's dtype."""
    flops = np.zeros((n, len(COMPUTE_KINDS)))
    flops[np.arange(n), dtype_index] = matrix
    flops[:, COMPUTE_KINDS.index(VECTOR)] = vector
    flops[:, COMPUTE_KINDS.index(SPECIAL)] = special
    return flops


def roofline_metrics(
    dev: DeviceArrays,
    idx: NDArray[np.intp],
    flops: FloatArray,
    qbytes: FloatArray,
    dtype_index: NDArray[np.intp],
    resident: NDArray[np.intp] | None = None,
) -> dict[str, NDArray[Any]]:
    """The common roofline columns: time, bound, attainable and fraction of peak."""
    res = evaluate(flops, qbytes, dev.rates_flops[idx], dev.bandwidth_Bps[idx], dev.levels)
    peak = dev.rates_flops[idx, dtype_index]
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(peak > 0, res.attainable_flops / peak, 0.0)
    main_name = np.array(
        [dev.names_by_position[d][dev.main_position[d]] for d in idx], dtype=object
    )
    bound = res.bound().astype(object)
    return {
        "time_s": res.time_s,
        "bound": bound,
        "main_memory_bound": bound == main_name,
        "attainable_flops": res.attainable_flops,
        "fraction_of_peak": frac,
    }


def _per_device_tp(
    batch: Batch, heads: FloatArray, kv_heads: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Heads per device under tensor parallelism: query heads split, KV heads split until each
    device holds one (then replicated)."""
    tp = batch.f("tp")
    return heads / tp, np.maximum(kv_heads / tp, 1.0)


_ATTN_PARAMS: dict[str, Scalar | None] = {
    "batch": 1,
    "q_len": 1,
    "context": None,
    "seq_len": 0,
    "heads": None,
    "kv_heads": None,
    "head_dim": None,
    "head_dim_v": None,
    "dtype": "bf16",
    "tp": 1,
}


def _attention_shape(batch: Batch) -> tuple[FloatArray, ...]:
    """(B, Lq, Lk, H, Hkv, d, dv) per point, per device under TP; ``seq_len > 0`` sets both."""
    seq = batch.f("seq_len")
    q_len = np.where(seq > 0, seq, batch.f("q_len"))
    kv_len = np.where(seq > 0, seq, batch.f("context"))
    h, hkv = _per_device_tp(batch, batch.f("heads"), batch.f("kv_heads"))
    d = batch.f("head_dim")
    dv = batch.f("head_dim_v")
    dv = np.where(dv > 0, dv, d)
    return batch.f("batch"), q_len, kv_len, h, hkv, d, dv


# ---- analytic kinds ----------------------------------------------------------------------------
@register_kind
class FaDecode(MetricKind):
    """FlashAttention decode with a *resident level*: the KV cache of all ``layers`` is served
    by the innermost memory level (at or inside main memory) whose chip capacity holds it, and
    nothing moves at the levels outside it. With the spec's SRAM that is HBM on a GPU; raise
    the SRAM (``memory.l2.capacity``) past the KV cache and the bound moves on chip."""

    name = "fa_decode"
    device_fields = ROOFLINE_DEVICE
    description = "FA decode roofline with the KV cache served by the innermost level that holds it"
    params: ClassVar[dict[str, Scalar | None]] = {**_ATTN_PARAMS, "layers": 1}
    metrics: ClassVar[dict[str, str]] = {
        "time_s": "attention time of one layer for the batch, s",
        "bound": "limiting resource (compute/vector/special or a memory level)",
        "main_memory_bound": "bound by main memory (HBM on a GPU)",
        "resident_level": "level that holds the KV cache across decode steps",
        "kv_cache_bytes": "KV cache of all layers on one device, B (the SRAM needed)",
        "kv_fits_on_chip": "the KV cache fits in an on-chip level",
        "attainable_flops": "matrix FLOP/s attained",
        "fraction_of_peak": "attainable / matrix peak at the dtype",
        "tokens_per_s_per_user": "1 / (layers x time): attention-only decode rate, token/s",
    }

    def evaluate_batch(self, batch: Batch) -> dict[str, NDArray[Any]]:
        dev = DeviceArrays.of(batch.devices)
        idx = batch.device_index
        n = len(batch)
        b_, lq, lk, h, hkv, d, dv = _attention_shape(batch)
        dt_idx, eb = dtype_columns(batch.params["dtype"])
        scores = b_ * h * lq * lk
        qo = b_ * h * lq * (d + dv) * eb
        kv = b_ * hkv * lk * (d + dv) * eb
        layers = batch.f("layers")
        working = kv * layers
        rows = (h / hkv) * lq
        pos, main = dev.position[idx], dev.main_position[idx]
        fits = (
            (pos >= 0) & (pos <= main[:, None]) & (dev.chip_capacity_bytes[idx] >= working[:, None])
        )
        big = np.iinfo(np.intp).max
        resident = np.where(fits, pos, big).min(axis=1)
        resident = np.where(resident == big, main, resident)
        inner = dev.inner_tile_bytes[idx]
        with np.errstate(invalid="ignore", divide="ignore"):
            block_rows = np.where(
                np.isnan(inner), REGISTER_TILE, inner / 2.0 / ((d + dv) * eb)[:, None]
            )
            traffic = attention_traffic_bytes(qo[:, None], kv[:, None], rows[:, None], block_rows)
        active = (pos >= 0) & (pos <= resident[:, None])
        qbytes = np.where(active, traffic, 0.0)
        flops = work_matrix(
            n, dt_idx, 2.0 * scores * (d + dv), SOFTMAX_VECTOR_FLOPS_PER_SCORE * scores, scores
        )
        out = roofline_metrics(dev, idx, flops, qbytes, dt_idx)
        out["resident_level"] = dev.level_name(idx, resident)
        out["kv_cache_bytes"] = working
        room = dev.on_chip[idx] & (dev.chip_capacity_bytes[idx] >= working[:, None])
        out["kv_fits_on_chip"] = np.asarray(room.any(axis=1))
        with np.errstate(divide="ignore"):
            out["tokens_per_s_per_user"] = 1.0 / (layers * out["time_s"])
        return out


@register_kind
class AttentionRoofline(MetricKind):
    """FlashAttention forward closed form of :func:`hwsim.roofline.ops.attention` (Q+O once,
    K+V once per Q block; causal halves the scores), over arrays."""

    name = "attention"
    device_fields = ROOFLINE_DEVICE
    description = "FlashAttention forward roofline (prefill or decode), ideal-reuse tiling"
    params: ClassVar[dict[str, Scalar | None]] = {**_ATTN_PARAMS, "causal": False}
    metrics: ClassVar[dict[str, str]] = {
        "time_s": "attainable time, s",
        "bound": "limiting resource",
        "main_memory_bound": "bound by main memory",
        "attainable_flops": "matrix FLOP/s attained",
        "fraction_of_peak": "attainable / matrix peak at the dtype",
        "intensity_flop_per_byte": "matrix FLOPs / main-memory bytes",
    }

    def evaluate_batch(self, batch: Batch) -> dict[str, NDArray[Any]]:
        dev = DeviceArrays.of(batch.devices)
        idx = batch.device_index
        b_, lq, lk, h, hkv, d, dv = _attention_shape(batch)
        causal = np.asarray(batch.params["causal"], dtype=bool)
        dt_idx, eb = dtype_columns(batch.params["dtype"])
        scores = b_ * h * lq * lk * np.where(causal, 0.5, 1.0)
        qo = b_ * h * lq * (d + dv) * eb
        kv = b_ * hkv * lk * (d + dv) * eb
        rows = (h / hkv) * lq
        pos, main = dev.position[idx], dev.main_position[idx]
        inner = dev.inner_tile_bytes[idx]
        with np.errstate(invalid="ignore", divide="ignore"):
            block_rows = np.where(
                np.isnan(inner), REGISTER_TILE, inner / 2.0 / ((d + dv) * eb)[:, None]
            )
            blocks = np.maximum(1.0, rows[:, None] / np.maximum(block_rows, 1.0))
            share = np.where(causal[:, None], 0.5 * (1.0 + 1.0 / blocks), 1.0)
            traffic = qo[:, None] + kv[:, None] * blocks * share
        qbytes = np.where((pos >= 0) & (pos <= main[:, None]), traffic, 0.0)
        flops = work_matrix(
            len(batch),
            dt_idx,
            2.0 * scores * (d + dv),
            SOFTMAX_VECTOR_FLOPS_PER_SCORE * scores,
            scores,
        )
        out = roofline_metrics(dev, idx, flops, qbytes, dt_idx)
        main_bytes = qbytes[np.arange(len(batch)), np.argmax(pos == main[:, None], axis=1)]
        with np.errstate(divide="ignore"):
            out["intensity_flop_per_byte"] = np.where(
                main_bytes > 0, flops[np.arange(len(batch)), dt_idx] / main_bytes, np.inf
            )
        return out


@register_kind
class GemmRoofline(MetricKind):
    """C[m,n] = A[m,k] @ B[k,n] under the ideal-reuse tiling rule of
    :func:`hwsim.roofline.ops.gemm`; ``tp`` splits n (column-parallel)."""

    name = "gemm"
    device_fields = ROOFLINE_DEVICE
    description = "GEMM roofline, ideal-reuse tiling per level"
    params: ClassVar[dict[str, Scalar | None]] = {
        "m": None,
        "n": None,
        "k": None,
        "dtype": "bf16",
        "tp": 1,
    }
    metrics: ClassVar[dict[str, str]] = {
        "time_s": "attainable time, s",
        "bound": "limiting resource",
        "main_memory_bound": "bound by main memory",
        "attainable_flops": "matrix FLOP/s attained",
        "fraction_of_peak": "attainable / matrix peak at the dtype",
    }

    def evaluate_batch(self, batch: Batch) -> dict[str, NDArray[Any]]:
        dev = DeviceArrays.of(batch.devices)
        idx = batch.device_index
        m, n, k = batch.f("m"), batch.f("n") / batch.f("tp"), batch.f("k")
        dt_idx, eb = dtype_columns(batch.params["dtype"])
        pos, main = dev.position[idx], dev.main_position[idx]
        inner = dev.inner_tile_bytes[idx]
        tile = np.where(
            np.isnan(inner), float(REGISTER_TILE**2), np.maximum(inner / eb[:, None], 1.0)
        )
        # elementwise: the byte widths may be arrays too (one dtype per point)
        widths: Any = eb[:, None]
        traffic = gemm_traffic_bytes(m[:, None], n[:, None], k[:, None], tile, widths, widths)
        qbytes = np.where((pos >= 0) & (pos <= main[:, None]), traffic, 0.0)
        flops = work_matrix(len(batch), dt_idx, 2.0 * m * n * k)
        return roofline_metrics(dev, idx, flops, qbytes, dt_idx)


def kinds_table() -> list[tuple[str, str, str, str]]:
    """(name, flavour, parameters, metrics) of every registered kind, for help texts."""
    _load_builtin()
    return [
        (
            name,
            "analytic" if cls.vectorised else "simulator",
            ", ".join(cls.params),
            ", ".join(cls.metrics),
        )
        for name, cls in sorted(KINDS.items())
    ]
