"""``hwsim --help`` must start fast: importing the CLI may not pull the heavy simulation and
plotting stacks, which each command imports inside its function when it runs.

Checked on ``sys.modules`` in a fresh interpreter (no timing: tests never depend on the clock).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

#: Each costs 0.1-0.6 s to import, and no command's --help needs it.
HEAVY = ("scipy.stats", "plotly", "simpy", "ml_dtypes", "dash")

#: Command modules (all of them import lazily).
LAZY_MODULES = (
    "hwsim.cli.app",
    "hwsim.cli.app_cmd",
    "hwsim.cli.attention",
    "hwsim.cli.check",
    "hwsim.cli.classes",
    "hwsim.cli.devices",
    "hwsim.cli.explain",
    "hwsim.cli.gemm",
    "hwsim.cli.guard",
    "hwsim.cli.mapping",
    "hwsim.cli.moe",
    "hwsim.cli.roofline",
    "hwsim.cli.serve",
    "hwsim.cli.serving",
    "hwsim.cli.sweep",
    "hwsim.cli.train",
    "hwsim.cli.validate",
)


def _heavy_after_import(module: str) -> list[str]:
    code = (
        f"import json, sys, importlib; importlib.import_module({module!r}); "
        f"print(json.dumps([m for m in {list(HEAVY)!r} if m in sys.modules]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    return list(json.loads(out.stdout))


@pytest.mark.parametrize("module", LAZY_MODULES)
def test_command_module_imports_nothing_heavy(module: str) -> None:
    assert _heavy_after_import(module) == []
