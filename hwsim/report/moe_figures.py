"""Plotly figures for MoE routing: bias-update dynamics, load per rank, dispatch matrices.

Builders only return ``plotly.graph_objects.Figure`` objects; writing HTML is the caller's job
(report/cli layer).
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from hwsim.plan.moe_dispatch import DispatchPlan, RoutingStats
from hwsim.plan.moe_gating import BiasDynamics


def bias_dynamics_figure(d: BiasDynamics, title: str | None = None) -> go.Figure:
    """Left: max/mean tokens per expert per batch (1 = balanced). Right: tokens per expert
    (sorted by first-batch load) in the first and last batch, with the final bias."""
    fig = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=("load imbalance (max / mean) per batch", "tokens per expert"),
        specs=[[{}, {"secondary_y": True}]],
    )
    batches = np.arange(1, d.imbalance.size + 1)
    fig.add_trace(
        go.Scatter(x=batches, y=d.imbalance, mode="lines+markers", name="imbalance"), row=1, col=1
    )
    fig.add_hline(y=1.0, line_dash="dot", line_color="grey", row=1, col=1)
    order = np.argsort(-d.load[0], kind="stable")
    experts = np.arange(order.size)
    fig.add_trace(go.Bar(x=experts, y=d.load[0][order], name="first batch"), row=1, col=2)
    fig.add_trace(go.Bar(x=experts, y=d.load[-1][order], name="last batch"), row=1, col=2)
    fig.add_trace(
        go.Scatter(x=experts, y=d.bias[-1][order], mode="lines", name="bias (last batch)"),
        row=1,
        col=2,
        secondary_y=True,
    )
    fig.update_xaxes(title_text="batch", row=1, col=1)
    fig.update_xaxes(title_text="expert (hottest first)", row=1, col=2)
    fig.update_yaxes(title_text="max / mean", row=1, col=1)
    fig.update_yaxes(title_text="tokens", row=1, col=2)
    fig.update_yaxes(title_text="bias", row=1, col=2, secondary_y=True)
    fig.update_layout(
        title=title or f"DeepSeek-V3 aux-loss-free bias update (γ = {d.gamma:g})",
        barmode="overlay",
        template="plotly_white",
    )
    return fig


def rank_load_figure(stats: RoutingStats, title: str = "MoE load per EP rank") -> go.Figure:
    """Expert assignments and distinct tokens received per rank; the slowest rank sets the
    step time, so the imbalance is printed in the title."""
    ranks = np.arange(stats.tokens_per_rank.size)
    fig = go.Figure()
    fig.add_trace(go.Bar(x=ranks, y=stats.assignments_per_rank, name="expert assignments"))
    fig.add_trace(go.Bar(x=ranks, y=stats.tokens_per_rank, name="tokens received"))
    fig.update_layout(
        title=f"{title} (max/mean: assignments {stats.imbalance_rank:.2f}, "
        f"nodes {stats.imbalance_node:.2f})",
        xaxis_title="EP rank",
        yaxis_title="count",
        barmode="group",
        template="plotly_white",
    )
    return fig


def dispatch_matrix_figure(
    plan: DispatchPlan, leg: str = "tokens", phase: str = "dispatch"
) -> go.Figure:
    """Heatmap of one token matrix of the plan (sender row → receiver column), in bytes."""
    m = plan.matrix(leg, phase) * plan.bytes_per_token(phase)
    fig = go.Figure(go.Heatmap(z=m, colorscale="Viridis", colorbar={"title": "bytes"}))
    fig.update_layout(
        title=f"{phase} {leg}: bytes from sender (row) to receiver (column)",
        xaxis_title="receiver rank",
        yaxis_title="sender rank",
        yaxis_autorange="reversed",
        template="plotly_white",
    )
    return fig
