"""``hwsim validate``: predict measured tables and report the errors, suite by suite."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated

import typer

from hwsim.cli.common import console, narrow_table, print_json
from hwsim.spec.errors import SpecError

if TYPE_CHECKING:
    from hwsim.validate.core import SuiteResult


def _load() -> dict[str, object]:
    import hwsim.validate.all  # noqa: F401  (each suite module registers itself)
    from hwsim.validate.core import suites

    return dict(suites())


def _meets(res: SuiteResult) -> bool:
    return res.meets_targets()


def validate_cmd(
    suite: Annotated[
        str | None, typer.Option("--suite", "-s", help="run only this suite (default: all)")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Predict every row of the measured reference tables and print measured, predicted and
    error %, then per-suite MAPE and max error against the suite's targets. Exits 1 when a
    suite misses a target.

    Example: hwsim validate --suite fa3-h100
    """
    known = _load()
    if suite is not None and suite not in known:
        raise SpecError(
            f"unknown suite {suite!r} (known: {', '.join(sorted(known)) or 'none'})",
            key="--suite",
        )
    names = [suite] if suite else sorted(known)
    results = []
    for name in names:
        t0 = time.perf_counter()
        res = known[name]()  # type: ignore[operator]
        results.append((res, time.perf_counter() - t0))
    if json_out:
        print_json([{**r.to_dict(), "wall_s": w, "meets_targets": _meets(r)} for r, w in results])
    else:
        for res, wall in results:
            _print_suite(res, wall)
    if not all(_meets(r) for r, _ in results):
        raise typer.Exit(1)


def _print_suite(res: SuiteResult, wall: float) -> None:
    cols = ("case", "measured", "predicted", "unit", "error")
    t = narrow_table(f"suite {res.name}", cols, text=("case",), labels=("unit",))
    for r in res.rows:
        color = "green" if abs(r.error) <= res.targets.get("max", 1.0) else "red"
        t.add_row(
            r.case,
            f"{r.measured:.4g}",
            f"{r.predicted:.4g}",
            r.unit,
            f"[{color}]{r.error:+.1%}[/]",
        )
    console.print(t)
    groups = res.group_mape()
    if len(groups) > 1:
        console.print(
            "  group MAPE: " + ", ".join(f"{g} {v:.1%}" for g, v in sorted(groups.items()))
        )
    targets = ", ".join(f"{k} ≤ {v:.0%}" for k, v in res.targets.items())
    verdict = "[green]meets targets[/]" if _meets(res) else "[red]misses targets[/]"
    console.print(
        f"  {res.name}: MAPE {res.mape:.2%}, max error {res.max_error:.2%} over "
        f"{len(res.rows)} rows (targets: {targets or 'none'}) - {verdict} [{wall:.2f} s]"
    )


def register(app: typer.Typer) -> None:
    app.command("validate")(validate_cmd)
