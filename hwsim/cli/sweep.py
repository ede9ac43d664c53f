"""``hwsim sweep`` (run a sweep file) and ``hwsim plot`` (figures of a sweep table)."""

from __future__ import annotations

import difflib
import math
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from hwsim.cli.common import Wide, console, narrow_table, print_json
from hwsim.spec.errors import SpecError

if TYPE_CHECKING:
    from hwsim.sweep.run import SweepResult

# The sweep, report and simulator stacks (numpy, scipy.stats, plotly, dask) are imported inside
# the commands so that ``hwsim --help`` stays fast; these two mirror hwsim.sweep.executors
# .EXECUTORS and hwsim.sweep.run.DEFAULT_CHUNK for the help text (a test keeps them equal).
EXECUTOR_NAMES: tuple[str, ...] = ("local", "dask")
DEFAULT_CHUNK_SIZE = 20_000

PLOT_KINDS = ("all", "parallel", "pareto", "heatmap", "sensitivity")


def _py(v: Any) -> Any:
    """numpy scalar → Python scalar."""
    return v.item() if hasattr(v, "item") else v


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.4g}"
    return str(v)


def sweep_cmd(
    file: Annotated[str, typer.Argument(help="sweep YAML (path, or a name in workloads/sweeps)")],
    executor: Annotated[
        str, typer.Option(help=f"where points run: {', '.join(EXECUTOR_NAMES)}")
    ] = "local",
    scheduler: Annotated[
        str | None,
        typer.Option(help="dask scheduler address (tcp://host:8786); default: a LocalCluster"),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(help="worker processes (local: default all cores; dask LocalCluster: 4)"),
    ] = None,
    out: Annotated[Path, typer.Option(help="results table: .parquet or .csv")] = Path(
        "out/sweep.parquet"
    ),
    cache: Annotated[
        Path | None,
        typer.Option(help="cache file (default: .sweep-cache.sqlite next to --out)"),
    ] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="compute everything")] = False,
    chunk_size: Annotated[
        int, typer.Option(help="analytic points per task (results do not depend on it)")
    ] = DEFAULT_CHUNK_SIZE,
    list_kinds: Annotated[
        bool, typer.Option("--list-kinds", help="list the metric kinds and exit")
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    wide: Wide = False,
) -> None:
    """Run a design-space sweep: every point of the sweep file's axes (spec overrides, workload
    parameters, layouts) through its metric kinds, cached, on local cores or dask.distributed.
    A sweep larger than the global --max-points (10^6) or --max-sims (10,000) is refused before
    it starts; a point over --max-events/--max-memory fails alone (the table's 'error' column).

    Example: hwsim sweep workloads/sweeps/sram-fa-decode.yaml --out out/sram.parquet
    """
    if list_kinds:
        _print_kinds(json_out, wide)
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from hwsim.report.sweep_io import write_table
    from hwsim.spec.errors import SpecWarning
    from hwsim.sweep.cache import SweepCache
    from hwsim.sweep.executors import make_executor
    from hwsim.sweep.run import run_sweep
    from hwsim.sweep.spec import load_sweep

    if chunk_size < 1:
        raise SpecError(f"--chunk-size must be at least 1, got {chunk_size}")
    sweep = load_sweep(file)
    cache_path = None if no_cache else (cache or out.parent / ".sweep-cache.sqlite")
    progress = Progress(
        TextColumn(f"[bold]{sweep.name}[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("units"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=json_out,
    )
    with (
        SweepCache(cache_path) as store,
        make_executor(executor, workers=workers, scheduler=scheduler) as ex,
        progress,
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore", SpecWarning)  # collected per sweep, shown once below
        task = progress.add_task("sweep", total=None)

        def update(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        result = run_sweep(sweep, executor=ex, cache=store, progress=update, chunk_size=chunk_size)
    write_table(out, result.columns, {**result.meta, "stats": _stats_dict(result)})
    if json_out:
        print_json(
            {
                "out": str(out),
                "cache": str(cache_path) if cache_path else None,
                "stats": _stats_dict(result),
                "columns": list(result.columns),
                "inputs": list(result.inputs),
                "metrics": list(result.metrics),
                "sensitivity": [e.to_dict() for e in result.sensitivity],
                "warnings": list(result.warnings),
                "preview": result.rows(20),
            }
        )
        return
    _print_summary(result, out, cache_path, wide)


def _stats_dict(r: SweepResult) -> dict[str, Any]:
    s = r.stats
    return {
        "points": s.points,
        "total_points": s.total_points,
        "dropped_by_constraints": s.dropped,
        "units": s.units,
        "cache_hits": s.cache_hits,
        "computed": s.computed,
        "hit_rate": s.hit_rate,
        "failed_points": s.failed,
        "wall_s": s.wall_s,
        "executor": s.executor,
        "workers": s.workers,
        "kinds": [k.__dict__ for k in s.kinds],
    }


def _print_kinds(json_out: bool, wide: bool = False) -> None:
    from hwsim.sweep.kinds import kinds_table

    rows = kinds_table()
    if json_out:
        print_json(
            [dict(zip(("name", "flavour", "params", "metrics"), r, strict=True)) for r in rows]
        )
        return
    if wide:
        every = ("name", "flavour", "workload parameters", "metrics")
        t = narrow_table("metric kinds", every, text=every, wide=True)
        for r in rows:
            t.add_row(*r)
        console.print(t)
        return
    # 80 columns: the flavour under the name; the parameters as wide as their longest name, so
    # that the metrics (longer names) get the rest and no name is split
    cols = ("kind", "workload parameters", "metrics")
    t = narrow_table("metric kinds", cols, text=cols)
    longest = max((len(w) for r in rows for w in r[2].split()), default=10)  # "name,"
    t.columns[1].width = max(longest, 10)
    for name, flavour, params, metrics in rows:
        t.add_row(f"{name}\n[dim]{flavour}[/]", params, metrics)
    console.print(t)


def _print_summary(
    result: SweepResult, out: Path, cache_path: Path | None, wide: bool = False
) -> None:
    from rich.table import Table

    s = result.stats
    t = Table(title=f"sweep '{result.name}'", show_header=False)
    t.add_column("", style="bold", no_wrap=True)
    t.add_column("", overflow="fold")
    t.add_row("points", f"{s.points} (of {s.total_points}; {s.dropped} dropped by constraints)")
    t.add_row("units", f"{s.units} unique (analytic points + unique simulated sub-problems)")
    t.add_row("cache", f"{s.cache_hits} hits, {s.computed} computed, hit rate {s.hit_rate:.0%}"
              + (f" ({cache_path})" if cache_path else " (off)"))  # fmt: skip
    if s.failed:
        t.add_row("failed", f"{s.failed} point(s): NaN metrics, the reason in the 'error' column")
    t.add_row("executor", s.executor)
    t.add_row("wall time", f"{s.wall_s:.2f} s")
    t.add_row("written", str(out))
    console.print(t)
    # 80 columns: units and tasks with --wide
    cols = ["name", "kind", "points", *(["units"] if wide else []), "hits", "computed",
            *(["tasks"] if wide else []), "s"]  # fmt: skip
    k = narrow_table("per metric kind", cols, text=("name", "kind"), wide=wide)
    for ks in s.kinds:
        cells = {
            "name": ks.name,
            "kind": ks.kind + (" (sim)" if ks.simulator else ""),
            "points": str(ks.points),
            "units": str(ks.units),
            "hits": str(ks.cache_hits),
            "computed": str(ks.computed),
            "tasks": str(ks.tasks),
            "s": f"{ks.wall_s:.2f}",
        }
        k.add_row(*(cells[c] for c in cols))
    console.print(k)
    if result.sensitivity:
        _print_sensitivity(result, wide)
    for w in result.warnings[:5]:
        console.print(f"[yellow]warning:[/] {w}", highlight=False)
    if len(result.warnings) > 5:
        console.print(f"[yellow]warning:[/] … and {len(result.warnings) - 5} more spec warnings")


def _print_sensitivity(result: SweepResult, wide: bool) -> None:
    """Elasticities: one table with ``wide``, else one per metric (80 columns)."""
    cols = ["input", "global", "local median", "local range", "R²"]
    groups: dict[str, list[Any]] = {}
    for el in result.sensitivity:
        groups.setdefault("" if wide else el.metric, []).append(el)
    for metric, els in groups.items():
        title = f"sensitivity of {metric}: d ln(metric) / d ln(input)" if metric else (
            "sensitivity: d ln(metric) / d ln(input)")  # fmt: skip
        e = narrow_table(title, ["metric", *cols] if wide else cols,
                         text=("metric", "input"), wide=wide)  # fmt: skip
        for el in els:
            e.add_row(*([el.metric] if wide else []), el.input, f"{el.elasticity:+.3f}",
                      f"{el.local_median:+.3f}", f"{el.local_min:+.2f} to {el.local_max:+.2f}",
                      f"{el.r2:.2f}")  # fmt: skip
        console.print(e)


# ---- plot ----------------------------------------------------------------------------------
def resolve_column(name: str, columns: dict[str, Any], what: str) -> str:
    """Exact column name, or a unique suffix (``time_s`` → ``fa_decode.time_s``)."""
    if name in columns:
        return name
    hits = [c for c in columns if c.endswith("." + name)]
    if len(hits) == 1:
        return hits[0]
    if len(hits) > 1:
        raise SpecError(f"{what} '{name}' is ambiguous: {', '.join(hits)}")
    guess = difflib.get_close_matches(name, list(columns), n=1)
    hint = f"; did you mean '{guess[0]}'?" if guess else ""
    raise SpecError(f"{what}: no column '{name}'{hint} (columns: {', '.join(columns)})")


def _varying(columns: dict[str, Any], names: list[str]) -> list[str]:
    import numpy as np

    return [c for c in names if np.unique(np.asarray(columns[c]).astype(str)).size > 1]


def plot_cmd(
    table: Annotated[Path, typer.Argument(help="sweep table written by 'hwsim sweep'")],
    x: Annotated[str | None, typer.Option(help="x column (Pareto; heatmap if an input)")] = None,
    y: Annotated[str | None, typer.Option(help="y column (Pareto; heatmap if an input)")] = None,
    color: Annotated[str | None, typer.Option(help="colour column (heatmap value)")] = None,
    kind: Annotated[str, typer.Option(help=f"figures: {', '.join(PLOT_KINDS)}")] = "all",
    x_goal: Annotated[str, typer.Option(help="Pareto: min or max x")] = "min",
    y_goal: Annotated[str, typer.Option(help="Pareto: min or max y")] = "max",
    where: Annotated[str | None, typer.Option(help="keep rows where EXPR holds")] = None,
    sensitivity: Annotated[
        str | None, typer.Option(help="metric for the elasticities (default: y if a metric)")
    ] = None,
    html: Annotated[Path | None, typer.Option(help="output page (default: TABLE.html)")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Plot a sweep table: parallel coordinates, the Pareto front of --y against --x, a heatmap
    of --color over two inputs, and elasticities (which input moves a metric most).

    Example: hwsim plot out/sweep.parquet --x memory.l2.capacity --y context --color bound
    """
    import numpy as np

    from hwsim.report.page import Section, html_table, write_page
    from hwsim.report.sweep_figures import (
        elasticity_figure,
        heatmap_figure,
        is_numeric,
        parallel_coordinates,
        pareto_figure,
    )
    from hwsim.report.sweep_io import read_table
    from hwsim.sweep import expr
    from hwsim.sweep.sensitivity import elasticities

    if kind not in PLOT_KINDS:
        raise SpecError(f"--kind {kind!r}: expected one of {', '.join(PLOT_KINDS)}")
    for opt, goal in (("--x-goal", x_goal), ("--y-goal", y_goal)):
        if goal not in ("min", "max"):
            raise SpecError(f"{opt} {goal!r}: expected min or max")
    cols, meta = read_table(table)
    n0 = len(next(iter(cols.values()))) if cols else 0
    if where:
        keep = expr.evaluate(where, cols, n0)
        cols = {k: v[keep] for k, v in cols.items()}
    n = len(next(iter(cols.values()))) if cols else 0
    if n == 0:
        raise SpecError(f"no rows to plot in {table}" + (f" where {where}" if where else ""))
    inputs = [c for c in meta.get("inputs", []) if c in cols] or list(cols)[:1]
    metrics = [c for c in meta.get("metrics", []) if c in cols] or [
        c for c in cols if c not in inputs
    ]
    var_in = _varying(cols, inputs)
    num_metrics = [m for m in metrics if is_numeric(np.asarray(cols[m]))]
    xc = resolve_column(x, cols, "--x") if x else (var_in[0] if var_in else inputs[0])
    yc = resolve_column(y, cols, "--y") if y else (num_metrics[0] if num_metrics else metrics[0])
    cc = resolve_column(color, cols, "--color") if color else None
    if cc is None:
        cc = next((m for m in metrics if not is_numeric(np.asarray(cols[m]))), None)
    sections: list[Section] = []
    out_json: dict[str, Any] = {"table": str(table), "rows": n, "x": xc, "y": yc, "color": cc}
    if kind in ("all", "parallel"):
        dims = list(dict.fromkeys([*var_in, xc, yc, *([cc] if cc else [])]))
        text = (
            "One vertical axis per input (and the chosen metrics), one line per sweep point. "
            "Drag along an axis to keep only the lines that pass through a range: the other "
            "axes then show which designs get there."
        )
        sections.append(Section("Parallel coordinates", text, parallel_coordinates(cols, dims, cc)))
    if (
        kind in ("all", "pareto")
        and is_numeric(np.asarray(cols[xc]))
        and is_numeric(np.asarray(cols[yc]))
    ):
        fig, front = pareto_figure(cols, xc, yc, color=cc, x_goal=x_goal, y_goal=y_goal)
        show = [c for c in [*var_in, xc, yc] if c in cols]
        show = list(dict.fromkeys(show))
        order = np.flatnonzero(front)[np.argsort(np.asarray(cols[xc], dtype=float)[front])]
        raw = [[_py(cols[c][i]) for c in show] for i in order]
        rows = [[_fmt(v) for v in r] for r in raw]
        sections.append(Section("Pareto front", (
            f"Every point, {yc} against {xc}; the black line joins the points no other point "
            f"beats on both ({x_goal} {xc}, {y_goal} {yc}). Designs off the line are dominated."
            ), fig, html_table(show, rows[:50])))  # fmt: skip
        out_json["pareto"] = [dict(zip(show, r, strict=True)) for r in raw]
        out_json["pareto_points"] = int(front.sum())
    if kind in ("all", "heatmap"):
        hx, hy = (xc, yc) if xc in inputs and yc in inputs else [*var_in, None, None][:2]
        z = cc or yc
        if hx and hy:
            sections.append(Section(f"Heatmap of {z}", (
                f"{z} for each combination of {hx} and {hy}; where other inputs vary too, each "
                "cell shows their median (or the most common value of a category)."),
                heatmap_figure(cols, hx, hy, z)))  # fmt: skip
            out_json["heatmap"] = {"x": hx, "y": hy, "z": z}
    if kind in ("all", "sensitivity"):
        target = resolve_column(sensitivity, cols, "--sensitivity") if sensitivity else (
            yc if yc in metrics else (num_metrics[0] if num_metrics else None))  # fmt: skip
        num_in = [c for c in var_in if is_numeric(np.asarray(cols[c]))]
        els = elasticities(cols, target, num_in) if target else []
        if els:
            sections.append(Section(f"Sensitivity of {target}", (
                "Elasticity d ln(metric)/d ln(input) from a log-log least-squares fit over all "
                "points (bars) and the range of local finite differences along each axis "
                "(whiskers). +1: the metric scales with the input; 0: it does not matter here."),
                elasticity_figure(els)))  # fmt: skip
        out_json["sensitivity"] = [e.to_dict() for e in els]
    if not sections:
        raise SpecError("nothing to plot: check --kind and that --x/--y are numeric")
    page = html or table.with_suffix(".html")
    title = f"hwsim sweep: {meta.get('name', table.stem)}"
    intro = (meta.get("description") or "") + f" {n} points from {table}."
    write_page(page, title, intro, sections)
    out_json["html"] = str(page)
    if json_out:
        print_json(out_json)
        return
    console.print(f"wrote [bold]{page}[/] ({len(sections)} figure(s), {n} points)")
    if out_json.get("sensitivity"):
        heads = ("input", "elasticity", "local median", "R²")
        t = narrow_table(f"which input moves {target} most", heads, text=("input",))
        for e in out_json["sensitivity"]:
            t.add_row(
                e["input"], f"{e['elasticity']:+.3f}", f"{e['local_median']:+.3f}", f"{e['r2']:.2f}"
            )
        console.print(t)


def register(app: typer.Typer) -> None:
    app.command("sweep")(sweep_cmd)
    app.command("plot")(plot_cmd)
