"""MoE all-to-all page: one dispatch or combine on a cluster (``hwsim moe``), flow by flow:
time, DeepEP's bandwidth metrics, and every link coloured by its load on the topology. The
what-if changes the cluster spec (``nics.bandwidth=x2``, ``intra_node.bandwidth=+50%``)."""

from __future__ import annotations

from typing import Any

from dash import Dash, Output, html

from hwsim.app import commands
from hwsim.app.compute import MoeView, moe_view
from hwsim.app.context import AppContext
from hwsim.app.params import MoeParams, WhatIf
from hwsim.app.specs import spec_yaml, whatif_cluster, whatif_filename
from hwsim.app.widgets import (
    ROW,
    Metric,
    Page,
    command_box,
    dropdown,
    field,
    graph,
    metrics_table,
    number,
    register_page,
    side_by_side,
    status_line,
    text,
    whatif_panel,
    whole,
)
from hwsim.spec.cluster import list_clusters

P = "moe"
#: the default what-if: the next InfiniBand generation (NIC, switch links and PCIe host link
#: together, as the ib-bandwidth sweep moves them; a faster NIC alone buys little)
IB_X2 = "nics.bandwidth=x2; network.link_bandwidth=x2; nics.host_link.bandwidth=x2"
_EMPTY: dict[str, Any] = {"data": [], "layout": {}}


def layout(app_ctx: AppContext) -> html.Div:
    d = MoeParams()
    return html.Div(
        [
            html.H2("MoE all-to-all: dispatch and combine on a cluster"),
            html.Div(
                [
                    field("cluster", dropdown(f"{P}-cluster", list_clusters(), d.cluster), "12em"),
                    field("EP ranks", number(f"{P}-ep", d.ep), "8em"),
                    field("tokens per rank", number(f"{P}-tokens", d.tokens), "8em"),
                    field("hidden", number(f"{P}-hidden", d.hidden), "8em"),
                    field("experts", number(f"{P}-experts", d.experts), "8em"),
                    field("top-k", number(f"{P}-topk", d.topk), "8em"),
                    field("top-k nodes", number(f"{P}-topk-groups", d.topk_groups), "8em"),
                    field("phase", dropdown(f"{P}-phase", ["dispatch", "combine"], d.phase), "8em"),
                    field(
                        "kernel",
                        dropdown(f"{P}-kernel", ["normal", "low-latency", "nccl"], d.kernel),
                        "9em",
                    ),
                    field("routing (deepep, uniform, zipf:S)", text(f"{P}-routing", d.routing)),
                ],
                style=ROW,
            ),
            whatif_panel(P, IB_X2, what="cluster"),
            status_line(P),
            html.Div(id=f"{P}-summary"),
            side_by_side(graph(f"{P}-topo"), html.Div(graph(f"{P}-topo-new"), id=f"{P}-new-box")),
            graph(f"{P}-links"),
            command_box(P),
        ]
    )


def _params(cluster: str, ep: Any, tokens: Any, hidden: Any, experts: Any, topk: Any,
            topk_groups: Any, phase: str, kernel: str, routing: str | None,
            w: WhatIf) -> MoeParams:  # fmt: skip
    return MoeParams(
        cluster, whole(ep, "--ep"), whole(tokens, "--tokens"), whole(hidden, "--hidden"),
        whole(experts, "--experts"), whole(topk, "--topk"), whole(topk_groups, "--topk-groups"),
        phase, kernel, (routing or "").strip(), w,
    )  # fmt: skip


def summary_metrics(view: MoeView) -> list[Metric]:
    b, n = view.baseline, view.whatif

    def row(key: str, label: str, fmt: Any) -> Metric:
        return Metric(key, label, getattr(b, key), getattr(n, key) if n else None, fmt)

    return [
        row("time_s", "time", lambda v: f"{v * 1e6:.1f} µs"),
        row("rdma_gbps", "inter-node GB/s (DeepEP definition)", lambda v: f"{v:.1f}"),
        row("nvlink_gbps", "intra-node GB/s (DeepEP definition)", lambda v: f"{v:.1f}"),
        row("max_link_utilization", "busiest link's utilisation", lambda v: f"{v:.0%}"),
        row("imbalance", "imbalance (max/mean received)", lambda v: f"{v:.2f}"),
    ]


def _render(view: MoeView, p: MoeParams) -> list[Any]:
    figs = view.figures
    new_topo = figs[1] if view.whatif is not None else _EMPTY
    box = {"display": "block"} if view.whatif is not None else {"display": "none"}
    table = metrics_table(P, summary_metrics(view), view.whatif is not None)
    return [table, figs[0], new_topo, box, figs[-1]]


def register(app: Dash, app_ctx: AppContext) -> None:
    register_page(
        app,
        app_ctx.jobs,
        Page(
            prefix=P,
            controls=[
                f"{P}-{c}"
                for c in (
                    "cluster",
                    "ep",
                    "tokens",
                    "hidden",
                    "experts",
                    "topk",
                    "topk-groups",
                    "phase",
                    "kernel",
                    "routing",
                )
            ],
            outputs=[
                Output(f"{P}-summary", "children"),
                Output(f"{P}-topo", "figure"),
                Output(f"{P}-topo-new", "figure"),
                Output(f"{P}-new-box", "style"),
                Output(f"{P}-links", "figure"),
            ],
            make_params=_params,
            compute=lambda p, _progress: moe_view(p, app_ctx.folder),
            render=_render,
            command=commands.moe_command,
            check_whatif=lambda p: whatif_cluster(p.cluster, list(p.whatif.overrides)),
            download=lambda p: (
                spec_yaml(whatif_cluster(p.cluster, list(p.whatif.overrides))),
                whatif_filename(p.cluster),
            ),
        ),
    )
