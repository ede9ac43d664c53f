"""Views of one training step: the pipeline timeline (ranks × tasks, point-to-point transfers)
as a plotly figure and page, and as a Chrome / Perfetto trace (``ui.perfetto.dev`` opens it).

Both read the event log that :func:`hwsim.train.pipeline.simulate_pipeline` keeps (a
:class:`~hwsim.train.result.TrainResult` made with ``timeline=True``): one track per pipeline
rank with its forward (F), backward (B), weight-gradient (W) and DualPipe overlapped (F|B)
tasks, and one track per directed link with its activation and gradient sends. Data-parallel
communication and the optimizer follow the pipeline; they are in the step's breakdown.
"""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go

from hwsim.report.page import Section, html_table, render_page
from hwsim.spec.errors import SpecError
from hwsim.train.result import TrainResult

#: Most task bars drawn (a 64-stage, 512-micro-batch pipeline has 130k tasks; the trace keeps
#: them all, the figure the first ones per rank).
MAX_BARS = 6000
_COLOUR = {"F": "#1f77b4", "B": "#d62728", "W": "#ff7f0e", "FB": "#9467bd"}
_PIPE_PID, _LINK_PID = 1, 2


def _log(r: TrainResult) -> Any:
    if r.pipeline is None:
        raise SpecError("the step was simulated without its event log (timeline=True)")
    return r.pipeline


def train_trace(r: TrainResult) -> dict[str, Any]:
    """The step's pipeline as Trace Event Format JSON (microseconds)."""
    pipe = _log(r)
    ev: list[dict[str, Any]] = [
        {"ph": "M", "pid": _PIPE_PID, "name": "process_name",
         "args": {"name": f"pipeline ranks ({r.layout}, {r.schedule})"}},
        {"ph": "M", "pid": _LINK_PID, "name": "process_name",
         "args": {"name": "point-to-point links"}},
    ]  # fmt: skip
    for rank in range(r.layout.pp):
        ev.append({"ph": "M", "pid": _PIPE_PID, "tid": rank, "name": "thread_name",
                   "args": {"name": f"stage {rank}"}})  # fmt: skip
    for s in pipe.spans:
        ev.append({"ph": "X", "pid": _PIPE_PID, "tid": s.rank, "name": s.label, "cat": s.kind,
                   "ts": s.start_s * 1e6, "dur": (s.end_s - s.start_s) * 1e6,
                   "args": {"position": s.pos}})  # fmt: skip
    links = sorted({(t.src, t.dst) for t in pipe.transfers})
    tid = {lk: i for i, lk in enumerate(links)}
    for (src, dst), i in tid.items():
        ev.append({"ph": "M", "pid": _LINK_PID, "tid": i, "name": "thread_name",
                   "args": {"name": f"{src} -> {dst}"}})  # fmt: skip
    for t in pipe.transfers:
        ev.append({"ph": "X", "pid": _LINK_PID, "tid": tid[(t.src, t.dst)], "name": t.kind,
                   "cat": "p2p", "ts": t.start_s * 1e6, "dur": (t.end_s - t.start_s) * 1e6,
                   "args": {"bytes": t.nbytes}})  # fmt: skip
    return {"traceEvents": ev, "displayTimeUnit": "ms",
            "otherData": {"model": r.model, "step_time_s": r.step_time_s}}  # fmt: skip


def timeline_figure(r: TrainResult, max_bars: int = MAX_BARS) -> go.Figure:
    """One row per pipeline rank, a bar per task coloured by kind (forward, backward, weight
    gradient, overlapped forward+backward); the gaps are the bubble."""
    pipe = _log(r)
    per_rank = max(1, max_bars // max(1, r.layout.pp))
    shown: dict[int, int] = {}
    xs: dict[str, list[float]] = {k: [] for k in _COLOUR}
    base: dict[str, list[float]] = {k: [] for k in _COLOUR}
    ys: dict[str, list[str]] = {k: [] for k in _COLOUR}
    text: dict[str, list[str]] = {k: [] for k in _COLOUR}
    for s in pipe.spans:
        if shown.get(s.rank, 0) >= per_rank:
            continue
        shown[s.rank] = shown.get(s.rank, 0) + 1
        xs[s.kind].append((s.end_s - s.start_s) * 1e3)
        base[s.kind].append(s.start_s * 1e3)
        ys[s.kind].append(f"stage {s.rank}")
        text[s.kind].append(f"{s.label} (chunk {s.pos})")
    fig = go.Figure()
    names = {"F": "forward", "B": "backward", "W": "weight gradient", "FB": "forward | backward"}
    for k in _COLOUR:
        if xs[k]:
            fig.add_trace(go.Bar(
                x=xs[k], base=base[k], y=ys[k], orientation="h", name=names[k],
                customdata=text[k], marker={"color": _COLOUR[k]},
                hovertemplate="%{customdata}<br>%{base:.2f} ms + %{x:.2f} ms<extra></extra>",
            ))  # fmt: skip
    fig.update_layout(
        title=f"{r.model}: one step on {r.gpus} GPUs ({r.layout}, {r.schedule}), bubble "
        f"{r.bubble_fraction:.1%}",
        xaxis={"title": "time (ms)"},
        yaxis={
            "categoryorder": "array",
            "categoryarray": [f"stage {i}" for i in range(r.layout.pp)],
            "autorange": "reversed",
        },
        barmode="overlay",
        height=240 + 28 * r.layout.pp,
    )
    return fig


def breakdown_table(r: TrainResult) -> str:
    rows = [(k, f"{v * 1e3:,.2f} ms", f"{v / r.step_time_s:.1%}") for k, v in r.breakdown_s.items()]
    return html_table(("part", "time", "share"), rows)


def train_sections(r: TrainResult) -> list[Section]:
    """The report's sections for one step: the timeline and the breakdown."""
    return [
        Section(
            "Pipeline timeline",
            "Each row is one pipeline stage; each bar one forward, backward or weight-gradient "
            "chunk of one micro-batch. White space is the pipeline bubble: stages waiting for "
            "activations from upstream or gradients from downstream.",
            timeline_figure(r),
        ),
        Section(
            "Where the step time goes",
            "Compute on the busiest stage, the communication overlap did not hide, the bubble, "
            "data-parallel gradient reduction, the optimizer and fixed overhead add up to the "
            "step time.",
            table_html=breakdown_table(r),
        ),
    ]


def timeline_html(r: TrainResult) -> str:
    """A self-contained page with the step's timeline and breakdown."""
    intro = (f"{r.model} on {r.gpus} × {r.device}: {r.step_time_s:.3f} s per step, "
             f"{r.tokens_per_s_per_gpu:,.0f} tokens/s per GPU, MFU {r.mfu:.1%}.")  # fmt: skip
    return render_page(f"hwsim train: {r.model}", intro, train_sections(r))
