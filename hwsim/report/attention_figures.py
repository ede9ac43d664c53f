"""Plotly figures of one simulated attention run, and the HTML page ``hwsim attention --html``
writes: a Gantt chart of the first SMs, memory traffic over time per level, and the run as a
point on the device's hierarchical roofline (``hwsim.report.figures.roofline_figure``)."""

from __future__ import annotations

from collections import defaultdict

import plotly.graph_objects as go

from hwsim.report.figures import DevicePanel, roofline_figure
from hwsim.report.page import Section, html_table, render_page
from hwsim.roofline.analytic import roofline
from hwsim.roofline.ops import Kernel
from hwsim.sim.gpu_attention import AttentionSimResult
from hwsim.spec.device import DTYPES, Device
from hwsim.spec.units import Dim, format_quantity

#: Gantt colours by span kind
_COLORS = {"cta": "#1f77b4", "copy": "#ff7f0e", "pipe": "#2ca02c", "kernels": "#7f7f7f"}


def _kind(track: str) -> str:
    if track == "kernels":
        return "kernels"
    if track.endswith("· copy"):
        return "copy"
    if track.endswith("· pipe"):
        return "pipe"
    return "cta"


def gantt_figure(res: AttentionSimResult, max_spans: int = 20000) -> go.Figure:
    """Horizontal bars per track (kernels, each traced SM's CTAs, its copy engine, and at tile
    detail its pipeline steps); times in microseconds."""
    if res.trace is None:
        raise ValueError("gantt_figure needs a result simulated with trace=True")
    by_kind: dict[str, list[tuple[str, float, float, str]]] = defaultdict(list)
    for s in res.trace.spans[:max_spans]:
        by_kind[_kind(s.track)].append(
            (s.track, s.start_s * 1e6, (s.end_s - s.start_s) * 1e6, s.name)
        )
    fig = go.Figure()
    tracks = sorted({s.track for s in res.trace.spans}, key=lambda t: (t != "kernels", t))
    for kind, rows in by_kind.items():
        fig.add_trace(
            go.Bar(
                orientation="h",
                y=[r[0] for r in rows],
                base=[r[1] for r in rows],
                x=[r[2] for r in rows],
                text=[r[3] for r in rows],
                hovertemplate="%{text}<br>%{base:.2f} us + %{x:.2f} us<extra></extra>",
                marker={"color": _COLORS[kind], "line": {"width": 0.5, "color": "white"}},
                name={"cta": "CTA", "copy": "copy engine (loads)", "pipe": "pipeline step"}.get(
                    kind, kind
                ),
            )
        )
    fig.update_layout(
        barmode="overlay",
        template="plotly_white",
        height=max(300, 28 * len(tracks) + 120),
        title=f"First {len(res.trace.traced_sms)} SMs: CTAs and copy-engine streams",
        xaxis_title="time (us)",
    )
    fig.update_yaxes(categoryorder="array", categoryarray=list(reversed(tracks)))
    return fig


def traffic_figure(res: AttentionSimResult) -> go.Figure:
    """Carried rate of every link (GB/s) over time, as steps, with its bandwidth dashed."""
    if res.trace is None:
        raise ValueError("traffic_figure needs a result simulated with trace=True")
    tr = res.trace
    log = list(tr.rate_log)
    fig = go.Figure()
    if log:
        step = max(1, len(log) // 20000)
        pts = log[::step] + ([log[-1]] if (len(log) - 1) % step else [])
        t_us = [t * 1e6 for t, _ in pts] + [res.time_s * 1e6]
        for i, name in enumerate(tr.link_names):
            y = [r[i] / 1e9 for _, r in pts]
            fig.add_trace(
                go.Scatter(x=t_us, y=[*y, y[-1]], mode="lines", line_shape="hv", name=name)
            )
            fig.add_hline(
                y=tr.link_bandwidths_Bps[i] / 1e9,
                line_dash="dash",
                annotation_text=f"{name} bandwidth",
                opacity=0.5,
            )
    fig.update_layout(
        template="plotly_white",
        height=420,
        title="Memory traffic over time",
        xaxis_title="time (us)",
        yaxis_title="GB/s",
    )
    return fig


def roofline_point_figure(res: AttentionSimResult, device: Device, key: str) -> go.Figure:
    """The device's hierarchical roofline with this run's analytic kernel (its bytes per level)
    and the simulated attainment (matrix FLOP/s at the HBM intensity) as a star."""
    dtype = res.shape.dtype if res.shape.dtype in DTYPES else "fp8"
    kern = Kernel(
        name=f"attention {res.kernel} (simulated bytes)",
        flops={dtype: res.flops, "special": res.exp_ops},
        level_bytes={k: v for k, v in res.bytes.items() if v > 0},
        dtype=dtype,
    )
    rr = roofline(kern, device, key)
    fig = roofline_figure([DevicePanel(key, device, (rr,))])
    main = device.main_memory.name
    hbm = res.bytes.get(main, 0.0)
    if hbm > 0:
        fig.add_trace(
            go.Scatter(
                x=[res.flops / hbm],
                y=[res.flops / res.time_s],
                mode="markers",
                marker={"symbol": "star", "size": 16, "color": "black"},
                name=f"simulated: {res.flops / res.time_s / 1e12:.0f} TFLOP/s",
            )
        )
    return fig


def attention_html(res: AttentionSimResult, device: Device) -> str:
    """The whole ``--html`` page."""
    s = res.shape
    rows = [
        ("time", format_quantity(res.time_s, Dim.TIME)),
        ("TFLOP/s (FA convention)", f"{res.tflops:.1f}"),
        ("bound", res.bound),
        *[(f"bytes {k}", format_quantity(v, Dim.BYTES)) for k, v in res.bytes.items()],
        *[(f"utilization {k}", f"{v:.1%}") for k, v in res.utilization.items()],
        *[(f"kernel {k.name}", f"{k.ctas} CTAs, {k.waves:.2f} waves") for k in res.kernels],
    ]
    sections = [
        Section(
            "Summary",
            "What the simulator predicts for this problem; tflops counts FLOPs the way the "
            "FlashAttention benchmarks do.",
            table_html=html_table(["quantity", "value"], rows),
        ),
        Section(
            "Gantt chart of the first SMs",
            "Each SM runs CTAs (blue) one after another; its copy engine (orange) streams the "
            "first tile, the K/V tiles and the output. Gaps between CTAs are pipeline fill and "
            "drain; a ragged end is wave quantisation or causal load imbalance.",
            figure=gantt_figure(res),
        ),
        Section(
            "Memory traffic over time",
            "Bytes per second carried by each memory level, shared fairly by all transfers in "
            "flight. K/V tiles re-read by the Q blocks of a head hit in L2, so L2 carries far "
            "more than HBM.",
            figure=traffic_figure(res),
        ),
        Section(
            "The run on the device roofline",
            "Ceilings of the device with this run's bytes at each level; the star is the "
            "simulated attainment. The distance below the ceilings is what the roofline does "
            "not see: softmax on the special-function units, pipeline fill, waves, launches.",
            figure=roofline_point_figure(res, device, res.device),
        ),
    ]
    mask = " causal" if s.causal else ""
    title = (
        f"Attention {res.kernel} {s.pass_}{mask} b{s.batch} h{s.heads} s{s.seqlen_q} "
        f"d{s.head_dim} {s.dtype} on {res.device}"
    )
    return render_page(title, "hwsim attention simulation (hwsim.sim.gpu_attention).", sections)


def trace_svg(trace: dict[str, object], width: int = 1200, max_tracks: int = 20) -> str:
    """A static picture of a Chrome/Perfetto trace (tracks of slices, then counter tracks):
    what ui.perfetto.dev shows when the file is opened, for docs that cannot embed the UI."""
    import html as _html
    import zlib

    events = list(trace["traceEvents"])  # type: ignore[call-overload]
    names = {
        e["tid"]: e["args"]["name"]
        for e in events
        if e.get("ph") == "M" and e.get("name") == "thread_name"
    }
    tids = sorted(names)[:max_tracks]
    slices = [e for e in events if e.get("ph") == "X" and e["tid"] in tids]
    counters: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for e in events:
        if e.get("ph") == "C":
            counters[e["name"]].append((e["ts"], next(iter(e["args"].values()))))
    t_end = max([e["ts"] + e["dur"] for e in slices] + [1e-9])
    left, row, crow = 170, 22, 60
    plot_w = width - left - 10
    height = 30 + row * len(tids) + (crow + 8) * len(counters) + 20
    x = lambda t: left + plot_w * t / t_end  # noqa: E731
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        'font-family="sans-serif" font-size="11">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{left}" y="14" fill="#444">0 us</text>',
        f'<text x="{width - 10}" y="14" fill="#444" text-anchor="end">{t_end:.1f} us</text>',
    ]
    for i, tid in enumerate(tids):
        y = 22 + i * row
        out.append(
            f'<rect x="0" y="{y}" width="{width}" height="{row}" '
            f'fill="{"#f7f7f7" if i % 2 else "#ffffff"}"/>'
        )
        out.append(f'<text x="6" y="{y + 15}">{_html.escape(names[tid])}</text>')
    for e in slices:
        i = tids.index(e["tid"])
        y = 24 + i * row
        hue = zlib.crc32(str(e["name"]).encode()) % 360
        w = max(plot_w * e["dur"] / t_end, 0.5)
        out.append(
            f'<rect x="{x(e["ts"]):.2f}" y="{y}" width="{w:.2f}" height="{row - 4}" '
            f'fill="hsl({hue},55%,62%)" stroke="white" stroke-width="0.4">'
            f"<title>{_html.escape(str(e['name']))}</title></rect>"
        )
    y0 = 30 + row * len(tids)
    for name, pts in counters.items():
        pts.sort()
        top = max([v for _, v in pts] + [1e-9])
        out.append(f'<text x="6" y="{y0 + 15}">{_html.escape(name)} (max {top:.0f} GB/s)</text>')
        path = []
        prev = None
        for t, v in pts:
            yy = y0 + crow - crow * v / top
            if prev is not None:
                path.append(f"L{x(t):.2f},{prev:.2f}")
            path.append(f"L{x(t):.2f},{yy:.2f}")
            prev = yy
        if path:
            path[0] = "M" + path[0][1:]
            out.append(
                f'<path d="{" ".join(path)}" fill="none" stroke="#3366cc" stroke-width="1"/>'
            )
        y0 += crow + 8
    out.append("</svg>")
    return "\n".join(out)
