"""Model-level analytic kinds: a whole decode step of a model from ``workloads/models``.

:func:`model_params` turns a model config into workload parameters (attention shape, weight
counts); the sweep uses them as defaults, so any kind that reads ``heads`` or ``layers`` gets the
model's values when ``base.model`` (or ``axes.model``) is set.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from hwsim.roofline.ops import SOFTMAX_VECTOR_FLOPS_PER_SCORE
from hwsim.spec.model import ModelConfig
from hwsim.sweep.kinds import (
    ROOFLINE_DEVICE,
    Batch,
    DeviceArrays,
    MetricKind,
    Scalar,
    dtype_columns,
    register_kind,
    roofline_metrics,
    work_matrix,
)


def model_params(cfg: ModelConfig) -> dict[str, Scalar]:
    """Workload parameters a model implies (its attention shape and weight counts); the sweep
    uses them as defaults under ``base.workload`` and the axes."""
    a = cfg.attention
    if a.kind == "mla":  # absorbed MLA decode: all heads attend one latent KV head (FlashMLA)
        assert a.kv_lora_rank and a.qk_rope_head_dim
        kv_heads, head_dim, head_dim_v = 1, a.kv_lora_rank + a.qk_rope_head_dim, a.kv_lora_rank
    else:
        kv_heads, head_dim, head_dim_v = a.kv_heads, a.head_dim, a.v_dim
    experts = cfg.moe.n_routed_experts if cfg.moe else 0
    top_k = cfg.moe.top_k if cfg.moe else 0
    expert = cfg.expert_params() if cfg.moe else 0
    active = cfg.active_params(include_input_embedding=False)
    return {
        "layers": cfg.layers,
        "hidden": cfg.hidden,
        "heads": a.heads,
        "kv_heads": kv_heads,
        "head_dim": head_dim,
        "head_dim_v": head_dim_v,
        "mla": a.kind == "mla",
        "kv_elems_per_token": cfg.kv_cache_bytes_per_token(1.0),
        "dense_active_params": float(active - cfg.moe_layers * top_k * expert),
        "total_params": float(cfg.total_params()),
        "expert_params": float(expert),
        "moe_layers": cfg.moe_layers,
        "experts": experts,
        "top_k": top_k,
        # DeepSeek-V3: each token's experts lie in at most 4 node groups
        "topk_groups": cfg.moe.topk_groups if cfg.moe else 1,
    }


_MODEL_KEYS = (
    "layers", "hidden", "heads", "kv_heads", "head_dim", "head_dim_v", "mla",
    "kv_elems_per_token", "dense_active_params", "total_params", "expert_params",
    "moe_layers", "experts", "top_k",
)  # fmt: skip


@register_kind
class DecodeRoofline(MetricKind):
    """One decode step of a whole model (``base.model``) on a tensor-parallel group, as a
    roofline at main memory: every touched weight and the KV cache are read once per step
    (MoE: the experts the batch touches, uniform routing), matrix FLOPs = 2 x active
    parameters per token plus attention. TP all-reduces (two per layer, ring) are added after
    the roofline time (no overlap). A lower bound on step time, for design-space exploration;
    the what-if engine's layer-by-layer step is the detailed model."""

    name = "decode_roofline"
    device_fields = (*ROOFLINE_DEVICE, "interconnect", "power")
    code_paths = (*MetricKind.code_paths, "hwsim/sweep/model_kinds.py")
    description = "whole-model decode step at main memory (weights + KV), TP all-reduce added"
    params: ClassVar[dict[str, Scalar | None]] = {
        "batch": 1,
        "context": 4096,
        "dtype": "bf16",
        "tp": 1,
        "pp": 1,
        **dict.fromkeys(_MODEL_KEYS),
    }
    metrics: ClassVar[dict[str, str]] = {
        "time_per_token_s": "step time, s",
        "tokens_per_s_per_user": "1 / step time, token/s",
        "tokens_per_s_total": "batch / step time for the TP group, token/s",
        "tokens_per_s_per_device": "tokens_per_s_total / devices",
        "bound": "compute/special/main memory level, or 'comm' when the all-reduces dominate",
        "comm_time_s": "TP all-reduce time per step, s",
        "weight_bytes": "weight bytes read per step per device, B",
        "kv_bytes": "KV bytes read per step per device, B",
        "memory_per_device_bytes": "all weights + KV cache held per device, B",
        "fits": "memory_per_device_bytes <= main-memory capacity",
        "devices": "tp x pp",
        "power_W": "devices x TDP, W",
        "tokens_per_joule": "tokens_per_s_total / power_W, token/J",
    }

    def evaluate_batch(self, batch: Batch) -> dict[str, NDArray[Any]]:
        dev = DeviceArrays.of(batch.devices)
        idx = batch.device_index
        n = len(batch)
        bsz, ctx, tp, pp = batch.f("batch"), batch.f("context"), batch.f("tp"), batch.f("pp")
        dt_idx, eb = dtype_columns(batch.params["dtype"])
        experts, top_k = batch.f("experts"), batch.f("top_k")
        with np.errstate(invalid="ignore", divide="ignore"):
            touched = np.where(experts > 0, experts * (1.0 - (1.0 - top_k / experts) ** bsz), 0.0)
        moe_l, expert = batch.f("moe_layers"), batch.f("expert_params")
        weight_elems = (batch.f("dense_active_params") + moe_l * touched * expert) / tp
        mla = np.asarray(batch.params["mla"], dtype=bool)
        kv_split = np.where(mla, 1.0, np.minimum(tp, batch.f("kv_heads")))
        kv_bytes = bsz * ctx * batch.f("kv_elems_per_token") * eb / kv_split
        weight_bytes = weight_elems * eb
        layers, heads = batch.f("layers"), batch.f("heads")
        scores = bsz * heads * ctx * layers / tp
        d, dv = batch.f("head_dim"), batch.f("head_dim_v")
        matrix = 2.0 * bsz * (batch.f("dense_active_params") + moe_l * top_k * expert) / tp
        matrix = matrix + 2.0 * scores * (d + dv)
        flops = work_matrix(n, dt_idx, matrix, SOFTMAX_VECTOR_FLOPS_PER_SCORE * scores, scores)
        qbytes = np.zeros((n, len(dev.levels)))
        pos, main = dev.position[idx], dev.main_position[idx]
        qbytes[pos == main[:, None]] = weight_bytes + kv_bytes
        out = roofline_metrics(dev, idx, flops, qbytes, dt_idx)
        msg = bsz * batch.f("hidden") * eb  # one all-reduce of the activations
        bw, lat = dev.scaleup_Bps[idx], dev.scaleup_latency_s[idx]
        with np.errstate(invalid="ignore", divide="ignore"):
            ring = 2.0 * (tp - 1.0) / tp * msg / bw + 2.0 * (tp - 1.0) * lat
        comm = np.where(tp > 1, 2.0 * layers * ring, 0.0)
        step = out["time_s"] + comm
        devices = tp * pp
        held = (batch.f("total_params") * eb / tp + kv_bytes) / pp
        main_cap = dev.chip_capacity_bytes[idx][pos == main[:, None]]
        power = devices * dev.tdp_W[idx]
        with np.errstate(divide="ignore", invalid="ignore"):
            total = bsz / step
            return {
                "time_per_token_s": step,
                "tokens_per_s_per_user": 1.0 / step,
                "tokens_per_s_total": total,
                "tokens_per_s_per_device": total / devices,
                "bound": np.where(comm > out["time_s"], "comm", out["bound"]).astype(object),
                "comm_time_s": comm,
                "weight_bytes": weight_bytes,
                "kv_bytes": kv_bytes,
                "memory_per_device_bytes": held,
                "fits": held <= main_cap,
                "devices": devices,
                "power_W": power,
                "tokens_per_joule": total / power,
            }
