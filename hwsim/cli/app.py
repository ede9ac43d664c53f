"""The ``hwsim`` command: a typer app. Each command group lives in its own module and registers
itself here explicitly (no reflection). Errors in user input print one line and exit 2."""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from hwsim.cli import devices
from hwsim.spec.errors import SpecError

app = typer.Typer(
    name="hwsim",
    help="Hardware simulator and hierarchical roofline for AI accelerators.\n\n"
    "Example: hwsim devices",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

devices.register(app)


def main() -> None:
    """Entry point. ``--debug`` anywhere on the line shows tracebacks instead of one-line errors."""
    debug = "--debug" in sys.argv
    if debug:
        sys.argv.remove("--debug")
    try:
        app(standalone_mode=False)
    except SpecError as err:
        if debug:
            raise
        Console(stderr=True).print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except (typer.Exit, SystemExit) as ex:
        code = getattr(ex, "exit_code", getattr(ex, "code", 0))
        sys.exit(code)
    except Exception as err:  # click usage errors and anything unexpected: one line, not a trace
        import click

        if isinstance(err, click.ClickException):
            err.show()
            sys.exit(err.exit_code)
        if isinstance(err, click.exceptions.Abort):
            sys.exit(1)
        if debug:
            raise
        Console(stderr=True).print(
            f"[bold red]internal error:[/] {type(err).__name__}: {err} (rerun with --debug for "
            "the traceback, and please report it)",
            highlight=False,
            soft_wrap=True,
        )
        sys.exit(3)


if __name__ == "__main__":
    main()
