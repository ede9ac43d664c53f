"""``hwsim report``: the sections of the main report, in page order, and the files it writes.

A section builder takes a :class:`ReportContext` and returns :class:`~hwsim.report.page.Section`
objects. Later parts of the report (FA3 predicted vs measured, timelines, MoE all-to-all, device
comparison, sizing) add one ``(label, builder)`` line to :data:`BUILDERS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hwsim.report import serve_sections
from hwsim.report import workload_sections as workload_sections_module
from hwsim.report.figures import DevicePanel, bound_heatmap, results_table, roofline_figure
from hwsim.report.page import Section, html_table, write_page
from hwsim.report.workload_sections import workload_sections
from hwsim.roofline.analytic import RooflineResult, roofline
from hwsim.roofline.ops import example_kernels
from hwsim.spec.load import list_devices, load_device


@dataclass(frozen=True)
class ReportContext:
    """Inputs shared by every section: the devices (file stems or paths) and the dtype."""

    devices: tuple[str, ...] = field(default_factory=lambda: tuple(list_devices()))
    dtype: str = "bf16"
    kernels: tuple[str, ...] | None = None  #: example-kernel names; None = all
    #: "Which hardware for which workload": the models and device types compared
    compare_models: tuple[str, ...] = workload_sections_module.MODELS
    compare_devices: tuple[str, ...] = workload_sections_module.DEVICES


SectionBuilder = Callable[[ReportContext], list[Section]]

ROOFLINE_EXPLANATION = (
    "A roofline bounds how fast a kernel can run on a chip. Each kernel does some work (FLOPs) "
    "and moves some bytes at every level of the memory hierarchy: registers are fed from shared "
    "memory or SRAM, which is fed from L2, which is fed from HBM. Its time can be no less than "
    "the work divided by the peak FLOP/s, and no less than the bytes at each level divided by "
    "that level's bandwidth; the largest of these times is the attainable time, and the resource "
    "that sets it is the bound. On the log-log plot the x-axis is arithmetic intensity (FLOPs per "
    "byte moved at a level) and the y-axis attainable FLOP/s. Each memory level is a diagonal "
    "line (bandwidth × intensity), each dtype's peak a flat line; a kernel appears once per "
    "level (marker shape = level), all at the same height. A kernel whose marker lies left of a "
    "level's ridge point (where that level's diagonal meets the peak) is limited by that level. "
    "Big square GEMMs and prefill attention reuse each byte hundreds of times and sit under the "
    "flat compute roof; decode attention and small-batch MoE read each weight or KV byte once "
    "per step, so they sit on the main-memory diagonal, far below peak. Pick a device in the "
    "dropdown; hover a marker for its numbers. Wafer-scale and LPU chips keep everything in "
    "SRAM, so their diagonals start much higher."
)

HEATMAP_EXPLANATION = (
    "The same results as a grid: each cell is one example kernel on one device, coloured by the "
    "fraction of the matrix peak it can attain and labelled with the resource that limits it. "
    "Reading across a row shows how the same kernel changes bound as the memory system changes: "
    "a chip with more bandwidth per FLOP turns memory-bound kernels into compute-bound ones."
)


def roofline_results(ctx: ReportContext) -> list[DevicePanel]:
    """Every example kernel on every device of the context."""
    panels = []
    for key in ctx.devices:
        device = load_device(key)
        kernels = example_kernels(device, ctx.dtype, list(ctx.kernels) if ctx.kernels else None)
        results = tuple(roofline(k, device, key) for k in kernels)
        panels.append(DevicePanel(key=key, device=device, results=results))
    return panels


def roofline_sections(ctx: ReportContext) -> list[Section]:
    panels = roofline_results(ctx)
    all_results: list[RooflineResult] = [r for p in panels for r in p.results]
    cols, rows = results_table(all_results)
    return [
        Section(
            title="Rooflines of all devices",
            explanation=ROOFLINE_EXPLANATION,
            figure=roofline_figure(panels),
            table_html=html_table(cols, rows),
        ),
        Section(
            title="What bounds each kernel",
            explanation=HEATMAP_EXPLANATION,
            figure=bound_heatmap(all_results),
        ),
    ]


#: The main report, in page order: (progress label, builder).
BUILDERS: list[tuple[str, SectionBuilder]] = [
    ("rooflines", roofline_sections),
    ("FA3 on H100", serve_sections.fa3_sections),
    ("attention timeline", serve_sections.attention_timeline_sections),
    ("MoE all-to-all", serve_sections.moe_alltoall_sections),
    ("DeepSeek-V3 deployment", serve_sections.deepseek_sections),
    ("four device kinds", serve_sections.four_kinds_sections),
    ("sizing", serve_sections.sizing_sections),
    ("which hardware for which workload", workload_sections),
]

REPORT_TITLE = "hwsim: what limits AI kernels on today's accelerators"
REPORT_INTRO = (
    "An interactive report generated from the built-in device library (devices/*.yaml, every "
    "number cited). Each section shows one figure and explains what it shows; hover for numbers."
)


def build_report(
    out_dir: Path,
    ctx: ReportContext | None = None,
    on_step: Callable[[str], None] | None = None,
    plotly_js: str = "shared",
) -> list[Path]:
    """Write ``out_dir/roofline.html`` and ``out_dir/report.html`` (sharing one
    ``plotly.min.js`` unless ``plotly_js="inline"``); returns the paths.
    ``on_step(label)`` is called after each step (for a progress bar): once per builder, then
    once per page written."""
    ctx = ctx or ReportContext()
    step = on_step or (lambda _label: None)
    sections: list[Section] = []
    roofline_only: list[Section] = []
    for label, builder in BUILDERS:
        built = builder(ctx)
        sections += built
        if builder is roofline_sections:
            roofline_only = built
        step(label)
    roof = write_page(
        out_dir / "roofline.html",
        "hwsim: hierarchical rooflines of the built-in devices",
        "Rooflines of every built-in device with the example kernels; pick a device in the "
        "dropdown.",
        roofline_only,
        plotly_js,
    )
    step("roofline.html")
    report = write_page(out_dir / "report.html", REPORT_TITLE, REPORT_INTRO, sections, plotly_js)
    step("report.html")
    return [roof, report]
