"""Facts for docs/moe.md: parameter counts of the model YAMLs against their published figures,
the aux-loss-free bias dynamics, the DeepEP metric on the normal-kernel setup, bytes per token
on the wire, DeepSeek-V3's gate settings, and the time to build a dispatch plan (all computed
by hwsim.plan.moe and hwsim.spec.model while the page is built)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from _gen import fmt
from _gen.core import Table

#: (model YAML, published total, published active) in parameters; the published figures are the
#: model cards' (sources in each YAML's `sources:` table), the comparison the tests make at 3 %.
PUBLISHED = (
    ("deepseek-v3", "671 B", "37 B (36.6 B)"),
    ("deepseek-v2", "236 B", "21 B"),
    ("mixtral-8x7b", "46.7 B", "12.9 B"),
    ("llama-3.1-8b", "8 B", "dense"),
    ("llama-3.1-70b", "70 B", "dense"),
    ("llama-3.1-405b", "405 B", "dense"),
    ("qwen1.5-moe-a2.7b", "14.3 B", "2.7 B"),
    ("qwen3-30b-a3b", "30.5 B", "3.3 B"),
)
BIAS_BATCHES = (1, 10, 20, 30, 50)
BIAS_GAMMAS = (0.01, 0.001)
DEEPEP_EPS = (8, 16, 32, 64)
PLAN_EPS = (8, 64, 256)


def _b(n: float) -> str:
    return f"{n / 1e9:.3g} B"


def _params() -> Table:
    from hwsim.spec.model import load_model_config

    rows = []
    for key, pub_total, pub_active in PUBLISHED:
        c = load_model_config(key)
        total, active = c.total_params(), c.active_params()
        if pub_active == "dense":
            ours_active = "same"
        else:
            no_emb = c.active_params(include_input_embedding=False)
            ours_active = _b(active) + (
                f" ({_b(no_emb)} without input embedding)" if key == "deepseek-v3" else ""
            )
        rows.append([c.name, _b(total), pub_total, ours_active, pub_active])
    return Table(["model", "total (ours)", "published", "active (ours)", "published"], rows,
                 "lrrrr")  # fmt: skip


def _bias() -> tuple[Table, dict[str, str]]:
    from hwsim.plan.moe import bias_dynamics

    rows, out = [], {}
    for gamma in BIAS_GAMMAS:
        d = bias_dynamics(max(BIAS_BATCHES), 4096, 256, 8, "zipf:1.2", gamma=gamma,
                          n_groups=8, topk_groups=4, seed=0)  # fmt: skip
        imb = np.asarray(d.imbalance)
        rows.append([f"{gamma:g}", "max/mean", *(f"{imb[b - 1]:.3g}" for b in BIAS_BATCHES)])
        out[f"bias_{gamma:g}".replace(".", "_")] = f"{imb[0]:.3g} → {imb[-1]:.3g}"
    cols = ["γ", "256 experts, top-8, 4 of 8 groups, Zipf 1.2, 4096 tokens/batch"]
    cols += [f"batch {BIAS_BATCHES[0]}", *(str(b) for b in BIAS_BATCHES[1:])]
    return Table(cols, rows, "ll" + "r" * len(BIAS_BATCHES)), out


def _deepep() -> tuple[Table, dict[str, str]]:
    from hwsim.plan.moe import bytes_per_token, synthetic_dispatch_plan

    tokens, hidden = 4096, 7168
    bpt = bytes_per_token(hidden, "fp8")
    rows, out = [], {}
    for ep in DEEPEP_EPS:
        plan, _, _ = synthetic_dispatch_plan(ep, tokens, hidden, 256, 8, topk_groups=4,
                                             routing="deepep", seed=0)  # fmt: skip
        rdma = plan.deepep_rdma_bytes("dispatch")
        nvl = plan.deepep_nvl_bytes("dispatch")
        rows.append([str(ep), str(max(1, ep // 8)), f"{rdma.mean() / bpt / tokens:.2f}",
                     fmt.b(rdma.mean()), f"{nvl.mean() / bpt / tokens:.2f}",
                     fmt.b(nvl.mean())])  # fmt: skip
        if ep == 32:
            two_hop = float(plan.rdma_tokens.sum()) * bpt
            direct = float(plan.direct_rdma.sum()) * bpt
            out["ep32_two_hop_ib"] = fmt.b(two_hop)
            out["ep32_direct_ib"] = fmt.b(direct)
            out["ep32_ib_ratio"] = fmt.times(direct / two_hop)
    cols = ["EP", "nodes", "(token, node) pairs / token", "RDMA bytes / rank (fp8)",
            "tokens received / token", "NVLink bytes / rank (fp8)"]  # fmt: skip
    return Table(cols, rows, "rrrrrr"), out


def _plan_times() -> str:
    from hwsim.plan.moe import synthetic_dispatch_plan

    parts = []
    for ep in PLAN_EPS:
        best = np.inf
        for _ in range(2):
            t0 = time.perf_counter()
            synthetic_dispatch_plan(ep, 4096, 7168, 256, 8, topk_groups=4, seed=0)
            best = min(best, time.perf_counter() - t0)
        parts.append(fmt.t(best))
    return " / ".join(parts)


def facts() -> dict[str, Any]:
    from hwsim.plan.moe import bytes_per_token
    from hwsim.spec.model import load_model_config

    out: dict[str, Any] = {"params": _params()}
    out["bias_table"], bias = _bias()
    out.update(bias)
    out["deepep_table"], dee = _deepep()
    out.update(dee)
    out["fp8_bytes_7168"] = f"{bytes_per_token(7168, 'fp8'):.0f} B"
    out["bf16_bytes_7168"] = f"{bytes_per_token(7168, 'bf16'):.0f} B"
    v3 = load_model_config("deepseek-v3").moe
    out["v3_scaling"] = f"{v3.routed_scaling_factor:g}"
    out["v3_topk_groups"] = str(v3.topk_groups)
    out["v3_groups"] = str(v3.n_groups)
    out["plan_eps"] = " / ".join(str(e) for e in PLAN_EPS)
    out["plan_times"] = _plan_times()
    return out
