"""``hwsim roofline`` (hierarchical roofline of example kernels) and ``hwsim report`` (the main
HTML report that ``make demo`` writes)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from hwsim.cli.common import Wide, console, narrow_table, print_json
from hwsim.roofline.ops import EXAMPLES
from hwsim.spec.device import DTYPES
from hwsim.spec.errors import SpecError

if TYPE_CHECKING:
    from hwsim.report.figures import DevicePanel


def _check_dtype(dtype: str) -> str:
    if dtype not in DTYPES:
        raise SpecError(f"--dtype {dtype!r}: expected one of {', '.join(DTYPES)}")
    return dtype


def roofline_cmd(
    devices: Annotated[
        list[str], typer.Argument(help="device names (file stems) or paths to YAML files")
    ],
    kernel: Annotated[
        list[str] | None,
        typer.Option(
            "--kernel",
            "-k",
            help=f"example kernel, repeatable (default: all): {', '.join(EXAMPLES)}",
        ),
    ] = None,
    dtype: Annotated[
        str, typer.Option(help=f"data and matrix dtype: {', '.join(DTYPES)}")
    ] = "bf16",
    html: Annotated[
        Path | None, typer.Option("--html", help="write an interactive plotly roofline here")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    wide: Wide = False,
) -> None:
    """Hierarchical roofline: time, bound and arithmetic intensity per memory level of example
    kernels (GEMMs, attention prefill/decode, MoE experts) on one or more devices.

    Example: hwsim roofline h100-sxm mi300x -k attn-decode -k gemm-8192 --html out/roofline.html
    """
    from hwsim.report.figures import DevicePanel, results_table, roofline_figure
    from hwsim.report.page import Section, html_table, write_page
    from hwsim.roofline.analytic import roofline
    from hwsim.roofline.ops import example_kernels
    from hwsim.spec.load import load_device

    _check_dtype(dtype)
    panels = []
    for key in devices:
        dev = load_device(key)
        kernels = example_kernels(dev, dtype, kernel or None)
        panels.append(
            DevicePanel(key=key, device=dev, results=tuple(roofline(k, dev, key) for k in kernels))
        )
    results = [r for p in panels for r in p.results]
    if html is not None:
        write_page(
            html,
            f"hwsim roofline: {', '.join(devices)}",
            f"Example kernels at {dtype}; one marker per memory level, hover for numbers.",
            [
                Section(
                    title="Hierarchical roofline",
                    explanation=(
                        "Diagonals are memory levels (bandwidth × intensity), flat lines are "
                        "peak FLOP/s per dtype; a kernel is limited by the level whose diagonal "
                        "its marker sits on, or by compute when it is under a flat roof."
                    ),
                    figure=roofline_figure(panels),
                    table_html=html_table(*results_table(results)),
                )
            ],
        )
    if json_out:
        print_json({"results": [r.to_dict() for r in results], "html": str(html) if html else None})
        return
    _print_tables(panels, dtype, wide)
    if html is not None:
        console.print(f"wrote {html}")


def _print_tables(panels: list[DevicePanel], dtype: str, wide: bool) -> None:
    """The results in one table with ``wide``; in 80 columns, time and bound of every kernel,
    then one table per device of the intensity at each of its memory levels."""
    from hwsim.report.figures import results_table

    cols, rows = results_table([r for p in panels for r in p.results])
    if wide:
        title = f"hierarchical roofline, {dtype}; I = intensity (FLOP/B) at each memory level"
        t = narrow_table(title, cols, text=("kernel", "device", "bound"), wide=True)
        for row in rows:
            t.add_row(*row)
        console.print(t)
        return
    n = cols.index("% peak") + 1  # the intensity columns follow
    t = narrow_table(f"hierarchical roofline, {dtype}", cols[:n],
                     text=("kernel", "device", "bound"))  # fmt: skip
    for row in rows:
        t.add_row(*row[:n])
    console.print(t)
    for p in panels:
        cols, rows = results_table(p.results)
        levels = [c.removeprefix("I ") for c in cols[n:]]
        t = narrow_table(f"intensity (FLOP/B) on {p.key}",
                         ["kernel", *levels], text=("kernel",))  # fmt: skip
        for row in rows:
            t.add_row(row[0], *row[n:])
        console.print(t)


def _names(option: str, text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if not names:
        raise SpecError(f"{option} {text!r}: expected comma-separated names")
    return names


def report_cmd(
    out: Annotated[Path, typer.Option(help="output folder")] = Path("out"),
    dtype: Annotated[str, typer.Option(help="dtype of the example kernels")] = "bf16",
    json_out: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    plotly: Annotated[
        str,
        typer.Option(
            help="shared: one plotly.min.js beside the pages (small folder); inline: each page "
            "self-contained (~4.5 MB each)"
        ),
    ] = "shared",
    compare_models: Annotated[
        str | None,
        typer.Option(help="models of the 'which hardware' section, comma-separated "
                     "(default: llama-3.1-70b, deepseek-v3)"),
    ] = None,
    compare_devices: Annotated[
        str | None,
        typer.Option(help="its device types, comma-separated (default: one of each kind and "
                     "the common GPUs)"),
    ] = None,
) -> None:
    """Write the main report: out/report.html (interactive) and out/roofline.html
    (rooflines of every built-in device), sharing out/plotly.min.js unless --plotly inline.

    Example: hwsim report --out out
    """
    from hwsim.report.build import BUILDERS, ReportContext, build_report
    from hwsim.report.page import PLOTLY_MODES

    if plotly not in PLOTLY_MODES:
        raise SpecError(f"--plotly {plotly!r}: expected one of {', '.join(PLOTLY_MODES)}")
    ctx = ReportContext(dtype=_check_dtype(dtype))
    if compare_models is not None:
        ctx = replace(ctx, compare_models=_names("--compare-models", compare_models))
    if compare_devices is not None:
        ctx = replace(ctx, compare_devices=_names("--compare-devices", compare_devices))
    total = len(BUILDERS) + 2
    if json_out:
        paths = build_report(out, ctx, plotly_js=plotly)
        print_json({"files": [str(p) for p in paths]})
        return
    with Progress(
        TextColumn("[bold]report[/]"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} {task.description}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        task = progress.add_task(BUILDERS[0][0] if BUILDERS else "", total=total)
        labels = [label for label, _ in BUILDERS] + ["roofline.html", "report.html"]

        def step(label: str) -> None:
            progress.advance(task)
            i = labels.index(label) + 1 if label in labels else total
            progress.update(task, description=labels[i] if i < total else "done")

        paths = build_report(out, ctx, on_step=step, plotly_js=plotly)
    for p in paths:
        console.print(f"wrote {p}")


def register(app: typer.Typer) -> None:
    app.command("roofline")(roofline_cmd)
    app.command("report")(report_cmd)
