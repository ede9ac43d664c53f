"""``hwsim.cli.sweep`` imports the sweep, report and simulator stacks inside its commands, and
``hwsim.sweep.points`` imports ``scipy.stats`` only for the lhs/sobol samplers.

Checked on ``sys.modules`` in a fresh interpreter (no timing: tests never depend on the clock).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from hwsim.cli import sweep as cli_sweep
from hwsim.sweep.executors import EXECUTORS
from hwsim.sweep.run import DEFAULT_CHUNK

HEAVY = ("scipy.stats", "plotly", "simpy", "ml_dtypes", "distributed", "hwsim.sweep.run")


def _loaded_after(module: str) -> list[str]:
    code = (
        f"import json, sys, importlib; importlib.import_module({module!r}); "
        f"print(json.dumps([m for m in {list(HEAVY)!r} if m in sys.modules]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    return list(json.loads(out.stdout))


def test_cli_sweep_imports_nothing_heavy() -> None:
    assert _loaded_after("hwsim.cli.sweep") == []


@pytest.mark.parametrize("module", ["hwsim.sweep.points"])
def test_points_does_not_import_scipy_stats(module: str) -> None:
    assert "scipy.stats" not in _loaded_after(module)


def test_help_constants_mirror_the_sweep_package() -> None:
    """The CLI's help text copies these to avoid importing the sweep package."""
    assert cli_sweep.EXECUTOR_NAMES == EXECUTORS
    assert cli_sweep.DEFAULT_CHUNK_SIZE == DEFAULT_CHUNK
