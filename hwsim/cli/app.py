"""The ``hwsim`` command: a typer app. Each command group lives in its own module and registers
itself here explicitly (no reflection). Errors in user input print one line and exit 2."""

from __future__ import annotations

import sys

import typer

from hwsim.cli import app_cmd as app_cli
from hwsim.cli import attention as attention_cli
from hwsim.cli import check as check_cli
from hwsim.cli import classes as classes_cli
from hwsim.cli import devices, guard
from hwsim.cli import explain as explain_cli
from hwsim.cli import gemm as gemm_cli
from hwsim.cli import mapping as mapping_cli
from hwsim.cli import moe as moe_cli
from hwsim.cli import roofline as roofline_cli
from hwsim.cli import serve as serve_cli
from hwsim.cli import serving as serving_cli
from hwsim.cli import sweep as sweep_cli
from hwsim.cli import train as train_cli
from hwsim.cli import validate as validate_cli

app = typer.Typer(
    name="hwsim",
    help="Hardware simulator and hierarchical roofline for AI accelerators.\n\n"
    "Example: hwsim devices",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

devices.register(app)
check_cli.register(app)
roofline_cli.register(app)
sweep_cli.register(app)
gemm_cli.register(app)
explain_cli.register(app)
serve_cli.register(app)
serving_cli.register(app)
moe_cli.register(app)
mapping_cli.register(app)
attention_cli.register(app)
validate_cli.register(app)
train_cli.register(app)
app_cli.register(app)
classes_cli.register(app)


def main() -> None:
    """Entry point: one-line errors and non-zero exit codes (see ``hwsim.cli.guard``);
    ``--debug`` anywhere on the line shows tracebacks instead."""
    sys.exit(guard.run(app))


if __name__ == "__main__":
    main()
