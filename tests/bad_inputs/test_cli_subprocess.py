"""The real ``hwsim`` process: one line on stderr, a non-zero exit code, a traceback only with
``--debug``. (The corpus runs ~60 CLI cases in-process; these two check the real entry
point, which costs a fresh interpreter each.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def hwsim(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hwsim.cli.app", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_one_line_and_exit_2() -> None:
    p = hwsim("show", "tests/bad_inputs/device/yaml-unclosed-brace.yaml")
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert "yaml-unclosed-brace.yaml:11:" in lines[0]
    assert "Traceback" not in p.stderr


def test_debug_shows_the_traceback() -> None:
    p = hwsim("show", "tests/bad_inputs/device/unit-negative.yaml", "--debug")
    assert p.returncode != 0
    assert "Traceback" in p.stderr and "SpecError" in p.stderr
