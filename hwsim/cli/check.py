"""``hwsim check``: run the functional suite (every registered numerics case) and print a table."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from hwsim.cli.common import Wide, console, narrow_table, print_json
from hwsim.spec.errors import SpecError

if TYPE_CHECKING:
    from hwsim.functional.check import CheckResult


#: Exit code when any case fails (distinct from 2 = bad input and 3 = internal error).
EXIT_FAILED = 1


def _fmt(x: float) -> str:
    return "—" if x != x else ("inf" if x == float("inf") else f"{x:.2e}")


def _ratio(err: float, tol: float) -> str:
    if err != err or tol != tol:
        return "—"
    return "inf" if tol == 0 and err > 0 else f"{err / tol if tol else 0.0:.2g}"


def table(results: list[CheckResult], title: str, wide: bool = False) -> Table:
    """The results; 80 columns unless ``wide``: the error as a fraction of the tolerance
    (max abs err / abs tol, which is also max rel err / rel tol) instead of the four numbers."""
    cols = ["case", "dtype"]
    cols += ["max abs err", "abs tol", "max rel err", "rel tol", "bytes match"] if wide else [
        "err/tol", "bytes"]  # fmt: skip
    t = narrow_table(title, [*cols, "result"], text=("case", "dtype"), wide=wide)
    for r in results:
        bytes_txt = "—" if r.bytes_match is None else ("yes" if r.bytes_match else "[red]NO[/]")
        cells = [r.case, r.dtype]
        if wide:
            cells += [_fmt(r.max_abs), _fmt(r.tol), _fmt(r.max_rel), _fmt(r.rel_tol), bytes_txt]
        else:
            cells += [_ratio(r.max_abs, r.tol), bytes_txt]
        t.add_row(*cells, "[green]pass[/]" if r.passed else "[bold red]FAIL[/]")
    return t


def check_cmd(
    quick: Annotated[bool, typer.Option("--quick", help="only the quick cases (seconds)")] = False,
    match: Annotated[
        str | None, typer.Option("--match", "-k", help="only cases whose name contains this")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    wide: Wide = False,
) -> None:
    """Run the functional suite: plan-driven numpy executors (attention, MoE, GEMM) against
    float64 references, with byte counts checked against the plans. Exit code 1 on any failure.

    Example: hwsim check --quick
    """
    from hwsim.functional.check import run_cases

    t0 = time.perf_counter()
    results = run_cases(quick=quick, match=match)
    if not results and match:  # a typo, not a failed check: say so, as for any bad option
        raise SpecError(
            f"--match {match!r} is in no case name{' of --quick' if quick else ''} (names look "
            "like 'attn/flash/fwd/causal-gqa'; it is a substring, not a pattern)"
        )
    wall = time.perf_counter() - t0
    failed = [r for r in results if not r.passed]
    if json_out:
        print_json(
            {
                "results": [r.as_dict() for r in results],
                "passed": not failed and bool(results),
                "n_cases": len(results),
                "n_failed": len(failed),
                "wall_s": wall,
            }
        )
    else:
        title = f"hwsim check{' --quick' if quick else ''}: {len(results)} checks"
        console.print(table(results, title, wide))
        summary = f"{len(results) - len(failed)}/{len(results)} passed in {wall:.1f} s"
        console.print(f"[bold red]{summary}[/]" if failed else f"[green]{summary}[/]")
        for r in failed:
            console.print(f"[red]FAIL[/] {r.case}: {r.detail}")
    if failed or not results:
        raise typer.Exit(EXIT_FAILED)


def register(app: typer.Typer) -> None:
    app.command("check")(check_cmd)
