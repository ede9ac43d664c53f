"""Views of one training step: the pipeline timeline (ranks × tasks, communication)
as a plotly figure and page, and as a Chrome / Perfetto trace (``ui.perfetto.dev`` opens it).

Both read the event log of a :class:`~hwsim.train.result.TrainResult` made with
``timeline=True``: the pipeline's tasks (:func:`hwsim.train.pipeline.simulate_pipeline`) and
the step's other intervals (``TrainResult.events``). The trace has one track per pipeline
rank with its forward (F), backward (B), weight-gradient (W) and DualPipe overlapped (F|B)
tasks and its optimizer step; one track per directed point-to-point link with its activation
and gradient sends; and per rank one track per kind of communication: TP collectives, CP ring
attention exchanges, EP all-to-alls (dispatch and combine), DP gradient reduction (the buckets
of the reduce-scatter or all-reduce, and ZeRO-3's per-layer reduce-scatters) and DP parameter
all-gathers (ZeRO-1/2 after the optimizer; ZeRO-3 per layer). Each collective sits where the
simulation timed it; collectives that overlap in time on one rank (a DualPipe pair's two
chains) go to a second track of their kind.
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
#: communication tracks: key → (process id, short name, process name)
COMM_TRACKS: dict[str, tuple[int, str, str]] = {
    "tp": (3, "TP", "TP communication (all-gather, reduce-scatter, all-reduce)"),
    "cp": (4, "CP", "CP communication (ring attention key/value exchange)"),
    "ep": (5, "EP", "EP all-to-all (MoE dispatch and combine)"),
    "dp_grad": (6, "DP grad", "DP gradient reduction (reduce-scatter / all-reduce buckets)"),
    "dp_param": (7, "DP param", "DP parameter all-gather"),
}


def comm_track(category: str, name: str) -> str:
    """The communication track of a step event: its category, data parallelism split into
    gradient reduction and parameter gathers."""
    if category == "dp":
        return "dp_param" if "all-gather" in name else "dp_grad"
    return category


#: seconds two events on one track may overlap by rounding (their times are sums of floats)
OVERLAP_TOL_S = 1e-9


def _lanes(ends: list[float], start: float) -> int:
    """The first lane free at ``start`` (events sorted by start), extended with a new one."""
    for i, e in enumerate(ends):
        if start >= e - OVERLAP_TOL_S:
            return i
    ends.append(0.0)
    return len(ends) - 1


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
    ev += _comm_events(r)
    return {"traceEvents": ev, "displayTimeUnit": "ms",
            "otherData": {"model": r.model, "step_time_s": r.step_time_s,
                          "notes": list(r.notes)}}  # fmt: skip


def _comm_events(r: TrainResult) -> list[dict[str, Any]]:
    """The optimizer on each rank's track and every collective on its kind's track (module
    docstring); a kind not listed in :data:`COMM_TRACKS` gets a process of its own."""
    ev: list[dict[str, Any]] = []
    by_track: dict[tuple[str, int], list[Any]] = {}
    for e in r.events:
        if e.category == "optimizer":
            ev.append({"ph": "X", "pid": _PIPE_PID, "tid": e.rank, "name": e.name,
                       "cat": "optimizer", "ts": e.start_s * 1e6,
                       "dur": (e.end_s - e.start_s) * 1e6})  # fmt: skip
            continue
        by_track.setdefault((comm_track(e.category, e.name), e.rank), []).append(e)
    extra = max(pid for pid, _, _ in COMM_TRACKS.values())
    pids = {k: v[0] for k, v in COMM_TRACKS.items()}
    threads: dict[int, int] = {}  # threads named so far per process
    for (key, rank), items in sorted(by_track.items()):
        if key not in pids:
            extra += 1
            pids[key] = extra
        pid = pids[key]
        short, long = COMM_TRACKS.get(key, (pid, key.upper(), f"{key.upper()} communication"))[1:]
        if pid not in threads:
            threads[pid] = 0
            ev.append({"ph": "M", "pid": pid, "name": "process_name", "args": {"name": long}})
        items.sort(key=lambda e: e.start_s)
        ends: list[float] = []
        first = threads[pid]
        for e in items:
            lane = _lanes(ends, e.start_s)
            ends[lane] = e.end_s
            ev.append({"ph": "X", "pid": pid, "tid": first + lane, "name": e.name, "cat": key,
                       "ts": e.start_s * 1e6, "dur": (e.end_s - e.start_s) * 1e6,
                       "args": {"bytes": e.nbytes, "stage": rank}})  # fmt: skip
        for lane in range(len(ends)):
            suffix = f" ({lane + 1})" if lane else ""
            ev.append({"ph": "M", "pid": pid, "tid": first + lane, "name": "thread_name",
                       "args": {"name": f"stage {rank} {short}{suffix}"}})  # fmt: skip
        threads[pid] = first + len(ends)
    return ev


def timeline_figure(r: TrainResult, max_bars: int = MAX_BARS) -> go.Figure:
    """One row per pipeline rank, a bar per task coloured by kind (forward, backward, weight
    gradient, overlapped forward+backward) and its optimizer step; the gaps are the bubble.
    Under each rank, a row per kind of communication it runs (TP, CP, EP, DP) with a bar per
    collective (at most ``max_bars`` of them too, the first ones per row)."""
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
    rows = _comm_bars(fig, r, max_bars)
    order = [x for i in range(r.layout.pp) for x in (f"stage {i}", *rows.get(i, []))]
    fig.update_layout(
        title=f"{r.model}: one step on {r.gpus} GPUs ({r.layout}, {r.schedule}), bubble "
        f"{r.bubble_fraction:.1%}",
        xaxis={"title": "time (ms)"},
        yaxis={"categoryorder": "array", "categoryarray": order, "autorange": "reversed"},
        barmode="overlay",
        height=240 + 28 * len(order),
    )
    return fig


_COMM_COLOUR = {"tp": "#17becf", "cp": "#bcbd22", "ep": "#e377c2", "dp_grad": "#8c564b",
                "dp_param": "#7f7f7f", "optimizer": "#2ca02c"}  # fmt: skip


def _comm_bars(fig: go.Figure, r: TrainResult, max_bars: int) -> dict[int, list[str]]:
    """The optimizer steps and the collectives of ``r.events`` as bars; returns each rank's
    communication rows in track order."""
    rows: dict[int, set[str]] = {}
    bars: dict[str, tuple[list[float], list[float], list[str], list[str]]] = {}
    per_row = max(1, max_bars // max(1, 4 * r.layout.pp))
    shown: dict[str, int] = {}
    for e in r.events:
        key = "optimizer" if e.category == "optimizer" else comm_track(e.category, e.name)
        short = COMM_TRACKS[key][1] if key in COMM_TRACKS else key.upper()
        row = f"stage {e.rank}" if key == "optimizer" else f"stage {e.rank} {short}"
        if shown.get(row, 0) >= per_row:
            continue
        shown[row] = shown.get(row, 0) + 1
        if key != "optimizer":
            rows.setdefault(e.rank, set()).add(row)
        b = bars.setdefault(key, ([], [], [], []))
        b[0].append((e.end_s - e.start_s) * 1e3)
        b[1].append(e.start_s * 1e3)
        b[2].append(row)
        b[3].append(e.name)
    for key, (x, base, y, text) in bars.items():
        label = (
            "optimizer"
            if key == "optimizer"
            else (COMM_TRACKS[key][2] if key in COMM_TRACKS else f"{key.upper()} communication")
        )
        fig.add_trace(go.Bar(
            x=x, base=base, y=y, orientation="h", name=label, customdata=text,
            marker={"color": _COMM_COLOUR.get(key, "#999999")},
            hovertemplate="%{customdata}<br>%{base:.3f} ms + %{x:.3f} ms<extra></extra>",
        ))  # fmt: skip
    rank_of = {v[1]: i for i, v in enumerate(COMM_TRACKS.values())}
    return {k: sorted(v, key=lambda row: rank_of.get(row.split(" ", 2)[2], 99))
            for k, v in rows.items()}  # fmt: skip


def breakdown_table(r: TrainResult) -> str:
    rows = [(k, f"{v * 1e3:,.2f} ms", f"{v / r.step_time_s:.1%}") for k, v in r.breakdown_s.items()]
    return html_table(("part", "time", "share"), rows)


def train_sections(r: TrainResult) -> list[Section]:
    """The report's sections for one step: the timeline and the breakdown."""
    return [
        Section(
            "Pipeline timeline",
            "Each stage's first row has one bar per forward, backward or weight-gradient "
            "chunk of one micro-batch, and its optimizer step. White space is the pipeline "
            "bubble: stages waiting for activations from upstream or gradients from downstream. "
            "The rows under it show when its TP, CP, EP and DP collectives run.",
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
