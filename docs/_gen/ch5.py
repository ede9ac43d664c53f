"""Chapter 5: MoE all-to-all and the node limit M, simulated flow by flow (hwsim.sim.alltoall)
on DeepSeek's H800 cluster with the routing plan of hwsim.plan.moe."""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from _gen import fmt
from _gen.core import Table
from hwsim.plan.moe import synthetic_dispatch_plan
from hwsim.plan.moe_dispatch import bytes_per_token
from hwsim.sim.alltoall import simulate_alltoall
from hwsim.sim.topology import build_topology
from hwsim.spec.cluster import load_cluster
from hwsim.spec.overrides import apply_overrides

CLUSTER = "h800-deepseek"
EP, TOKENS, HIDDEN, EXPERTS, TOPK = 64, 512, 7168, 256, 8  # DeepSeek-V3 shapes, small batch
PER_NODE = 8


def _busy(r: Any) -> dict[str, float]:
    """Busiest link of each kind: average utilisation over the run."""
    out: dict[str, float] = {}
    for lk in r.links:
        out[lk.kind] = max(out.get(lk.kind, 0.0), lk.utilization)
    return out


_plans: dict[int, Any] = {}


def _plan(m: int) -> Any:
    """The routing plan for node limit ``m`` (one per build; the wire dtype is a simulator
    argument, so dispatch and combine share it)."""
    if m not in _plans:
        _plans[m] = synthetic_dispatch_plan(
            EP, TOKENS, HIDDEN, EXPERTS, TOPK, m, "deepep", PER_NODE, 0, 0, dispatch_dtype="fp8"
        )[0]
    return _plans[m]


def _sweep(cluster: Any, ms: list[int], phase: str = "dispatch", dtype: str = "fp8") -> dict:
    topo = build_topology(cluster, EP // PER_NODE)
    return {m: simulate_alltoall(topo, _plan(m), "normal", phase, dtype=dtype) for m in ms}


def facts() -> dict[str, Any]:
    _plans.clear()
    c = load_cluster(CLUSTER)
    nodes = EP // PER_NODE
    ms = list(range(1, nodes + 1))
    runs = _sweep(c, ms)
    bpt = bytes_per_token(HIDDEN, "fp8")
    total_tokens = EP * TOKENS
    f: dict[str, Any] = {
        "cluster": CLUSTER,
        "ep": str(EP),
        "nodes": str(nodes),
        "per_node": str(PER_NODE),
        "tokens": f"{TOKENS:,}",
        "hidden": f"{HIDDEN:,}",
        "experts": str(EXPERTS),
        "topk": str(TOPK),
        "bpt": fmt.b(bpt),
        "nvlink_bw": fmt.bw(c.intra_node.bandwidth.value),
        "nic_bw": fmt.bw(c.nics.bandwidth.value) if c.nics else "—",
        "nvl_over_ib": fmt.times(c.intra_node.bandwidth.value / c.nics.bandwidth.value)
        if c.nics
        else "—",
    }
    rows = []
    bound_of: dict[int, str] = {}
    for m, r in runs.items():
        busy = _busy(r)
        top = max(busy, key=lambda k: busy[k])
        bound_of[m] = top
        ib_copies = r.bytes_by_link_kind.get("rdma", 0.0) / (total_tokens * bpt)
        rows.append(
            [
                str(m) + (" (V3)" if m == 4 else ""),
                fmt.t(r.time_s),
                f"{ib_copies:.2f}",
                fmt.b(r.bytes_by_link_kind.get("rdma", 0.0)),
                fmt.b(r.bytes_by_link_kind.get("nvlink", 0.0)),
                fmt.pct(busy.get("rdma", 0.0)),
                fmt.pct(busy.get("nvlink", 0.0)),
                fmt.pct(busy.get("sm", 0.0)),
                top,
            ]
        )
    f["table"] = Table(
        [
            "M (nodes per token)",
            "dispatch time",
            "IB copies per token",
            "InfiniBand bytes",
            "NVLink bytes",
            "busiest NIC",
            "busiest NVLink",
            "copy SMs",
            "bound",
        ],
        rows,
        "lrrrrrrrl",
    )
    t = {m: r.time_s for m, r in runs.items()}
    f["t1"], f["t4"], f["tall"] = fmt.t(t[1]), fmt.t(t[4]), fmt.t(t[nodes])
    f["gain4"] = fmt.times(t[nodes] / t[4])
    f["cost4"] = fmt.times(t[4] / t[1])
    nvl_bound = [m for m in ms if bound_of[m] in ("nvlink", "sm")]
    ib_bound = [m for m in ms if bound_of[m] in ("rdma", "pcie")]
    f["switch"] = (
        f"Up to M = {max(nvl_bound)} the bottleneck is inside the node "
        f"({bound_of[max(nvl_bound)]}); from M = {min(ib_bound)} on it is InfiniBand."
        if nvl_bound and ib_bound
        else f"The bottleneck is {bound_of[1]} at every M."
    )
    flat = next((m for m in ms[1:] if t[m] / t[m - 1] < 1.02), None)
    f["flat"] = (
        f"Past M = {flat - 1} the time barely moves: a token with {TOPK} experts rarely reaches "
        "more nodes than that anyway."
        if flat
        else "The time keeps growing with every node a token may reach."
    )
    b4 = bound_of[4]
    where = "InfiniBand" if b4 in ("rdma", "pcie") else f"inside the node ({b4})"
    f["m4_story"] = (
        f"At M = 4 the bottleneck is {where}, yet a token can still reach half of the "
        f"{nodes} nodes."
    )
    uncapped = runs[nodes].bytes_by_link_kind.get("rdma", 0.0) / (total_tokens * bpt)
    f["uncapped_copies"] = f"{uncapped:.2f}"
    f["copies4"] = f"{runs[4].bytes_by_link_kind.get('rdma', 0.0) / (total_tokens * bpt):.2f}"

    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_trace(
        go.Scatter(
            x=ms,
            y=[t[m] * 1e6 for m in ms],
            name="dispatch time (µs)",
            mode="lines+markers",
            line={"color": "#333", "width": 3},
        ),
        secondary_y=False,
    )
    for kind, color in (("rdma", "#d62728"), ("nvlink", "#1f77b4"), ("sm", "#2ca02c")):
        fig.add_trace(
            go.Scatter(
                x=ms,
                y=[100 * _busy(runs[m]).get(kind, 0.0) for m in ms],
                name=f"busiest {kind} link busy (%)",
                mode="lines+markers",
                line={"color": color, "dash": "dot"},
            ),
            secondary_y=True,
        )
    fig.add_vline(x=4, line={"dash": "dash", "color": "#999"}, annotation_text="DeepSeek-V3: M = 4")
    fig.update_layout(
        title=f"Dispatch of {TOKENS} tokens per rank, EP {EP} on {nodes} H800 nodes, fp8, "
        "DeepEP normal kernels (simulated)",
        xaxis={"title": "M: nodes a token may be sent to", "dtick": 1},
        template="plotly_white",
        height=460,
        legend={"orientation": "h", "y": -0.25},
    )
    fig.update_yaxes(title_text="time (µs)", secondary_y=False, rangemode="tozero")
    fig.update_yaxes(title_text="busy (% of the run)", secondary_y=True, range=[0, 105])
    f["figure"] = fig

    # exercises: combine in bf16, and faster NICs
    comb = _sweep(c, [4, nodes], "combine", "bf16")
    f["ex1_t4"], f["ex1_tall"] = fmt.t(comb[4].time_s), fmt.t(comb[nodes].time_s)
    f["ex1_ratio"] = fmt.times(comb[4].time_s / runs[4].time_s)
    fast = apply_overrides(
        c,
        {"nics.bandwidth": "x2", "network.link_bandwidth": "x2", "nics.host_link.bandwidth": "x2"},
    )
    quick = _sweep(fast, [2, 4, nodes])
    f["ex2_rows"] = Table(
        ["M", "time, today's NICs", "time, 2× NICs", "bound with 2× NICs"],
        [
            [
                str(m),
                fmt.t(runs[m].time_s),
                fmt.t(r.time_s),
                max(_busy(r), key=lambda k: _busy(r)[k]),
            ]
            for m, r in quick.items()
        ],
        "rrrl",
    )
    return f
