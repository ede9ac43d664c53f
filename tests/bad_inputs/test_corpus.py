"""The bad-input corpus: every case must fail (or warn) with exactly the message in its sidecar.

Layout (see README.md here): ``<area>/<case>.yaml`` (or ``cli/<case>.argv``) plus
``<case>.expected`` holding the exact line(s) a user sees on stderr, ``error: ...`` or
``warning: ...``. Paths in messages are relative to the repository root, where the tests run.

* ``device/``, ``model/``, ``cluster/``: loaded with the area's loader; an ``error:`` case must
  raise :class:`SpecError` (no other exception type) with that message; a ``warning:`` case must
  load and issue exactly those :class:`SpecWarning` lines. Device cases also go through
  ``hwsim show`` in-process, which must print the same line and exit 2 (0 for warnings).
* ``cli/``: the argv (shell-quoted, one line) is run through the CLI guard in-process; stderr
  must equal the expected text and the exit code must be 2 for errors, 0 for warnings.
* ``<area>/_valid.yaml`` is the file every case of that area breaks: it must load cleanly, so
  each case fails for the reason it names and not for an unrelated one.

To (re)write the expectation of a new case after checking its message by eye:
``.venv/bin/python tests/bad_inputs/test_corpus.py --record [--force]``.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import shlex
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hwsim.spec.errors import SpecError, SpecWarning

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def _loader(area: str) -> Callable[[str], Any] | None:
    """The public loader of one spec area, or None while that layer has not landed."""
    modules = {
        "device": [("hwsim.spec.load", "load_device")],
        "model": [("hwsim.spec.model", "load_model_config")],
        # building the graph also finds wiring problems (dangling links, disconnected parts)
        "cluster": [
            ("hwsim.sim.topology", "build_topology"),
            ("hwsim.spec.cluster", "load_cluster"),
        ],
    }
    for module, name in modules[area]:
        try:
            return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]
        except (ImportError, AttributeError):
            continue
    return None


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _cases(area: str, suffix: str = ".yaml") -> list[Path]:
    folder = HERE / area
    return sorted(p for p in folder.glob(f"*{suffix}") if not p.name.startswith("_"))


def _expected(case: Path) -> str:
    return case.with_suffix(".expected").read_text(encoding="utf-8").rstrip("\n")


def _param(area: str, case: Path) -> Any:
    """A pytest param; ``<case>.xfail`` (holding the reason) marks a known bug elsewhere whose
    ``.expected`` is the message users *should* get (strict: the fix makes it fail, remove it)."""
    marks = []
    reason_file = case.with_suffix(".xfail")
    if reason_file.exists():
        reason = reason_file.read_text(encoding="utf-8").strip()
        marks.append(pytest.mark.xfail(strict=True, reason=reason))
    return pytest.param(area, case, marks=marks, id=f"{area}/{case.stem}")


def load_outcome(area: str, case: Path) -> str:
    """What a user is told when ``case`` is loaded: ``error: ...`` or ``warning: ...`` lines."""
    loader = _loader(area)
    assert loader is not None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            loader(_rel(case))
        except SpecError as err:
            # some loaders resolve the path first; messages are compared relative to the root
            return f"error: {err}".replace(f"{ROOT}/", "")
    lines = [f"warning: {w.message}" for w in caught if issubclass(w.category, SpecWarning)]
    return "\n".join(lines) if lines else "loaded without error or warning"


#: Address space a CLI case may add to the test process. A command that would exhaust memory
#: (a 10^7-cubed GEMM once did) then fails here with a MemoryError instead of being OOM-killed
#: together with the test run and whatever else shares the machine.
HEADROOM_BYTES = 3 * 2**30


@contextlib.contextmanager
def memory_headroom(extra_bytes: int = HEADROOM_BYTES) -> Iterator[None]:
    """Temporarily cap this process's address space at its current size + ``extra_bytes``."""
    try:
        import resource

        status = Path("/proc/self/status").read_text(encoding="utf-8")
        vm_kib = next(int(x.split()[1]) for x in status.splitlines() if x.startswith("VmSize:"))
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    except (ImportError, OSError, StopIteration, ValueError):  # not Linux: no cap
        yield
        return
    limit = vm_kib * 1024 + extra_bytes
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def cli_outcome(argv: list[str]) -> tuple[int, str]:
    """Run the ``hwsim`` CLI in-process; return (exit code, stderr without trailing newline)."""
    from hwsim.cli import guard
    from hwsim.cli.app import app
    from hwsim.spec.load import _load_device_cached

    _load_device_cached.cache_clear()  # a cached device would not warn again
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out), memory_headroom():
        code = guard.run(app, argv)
    # some loaders resolve paths first; messages are compared relative to the repository root
    return code, err.getvalue().rstrip("\n").replace(f"{ROOT}/", "")


# ---- the tests -------------------------------------------------------------------------------
AREAS = ("device", "model", "cluster")
LOAD_CASES = [(a, c) for a in AREAS for c in _cases(a)]


@pytest.fixture(autouse=True)
def _at_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)


def test_corpus_is_large_enough() -> None:
    """Issue 9 asks for at least 40 cases; every case has its expectation."""
    cases = [c for _, c in LOAD_CASES] + _cases("cli", ".argv")
    assert len(cases) >= 40
    missing = [
        _rel(c)
        for c in cases
        if not c.with_suffix(".expected").exists() and not c.with_suffix(".xfail").exists()
    ]
    assert not missing, f"cases without .expected: {missing}"


def _valid_param(area: str) -> Any:
    xfail = HERE / area / "_valid.xfail"
    marks = []
    if xfail.exists():
        marks.append(pytest.mark.xfail(strict=True, reason=xfail.read_text(encoding="utf-8")))
    return pytest.param(area, marks=marks, id=area)


@pytest.mark.parametrize("area", [_valid_param(a) for a in AREAS])
def test_valid_base_loads_cleanly(area: str) -> None:
    base = HERE / area / "_valid.yaml"
    if _loader(area) is None or not base.exists():
        pytest.skip(f"the {area} layer or its corpus has not landed yet")
    assert load_outcome(area, base) == "loaded without error or warning"


@pytest.mark.parametrize(("area", "case"), [_param(a, c) for a, c in LOAD_CASES])
def test_load_case(area: str, case: Path) -> None:
    if _loader(area) is None:
        pytest.skip(f"the {area} loader has not landed yet")
    assert load_outcome(area, case) == _expected(case)


DEVICE_CASES = _cases("device")


@pytest.mark.parametrize("case", DEVICE_CASES, ids=[c.stem for c in DEVICE_CASES])
def test_device_case_through_cli(case: Path) -> None:
    """``hwsim show FILE`` prints exactly the loader's message, once, and exits non-zero."""
    expected = _expected(case)
    code, stderr = cli_outcome(["show", _rel(case)])
    assert stderr == expected
    assert code == (2 if expected.startswith("error:") else 0)


CLI_CASES = _cases("cli", ".argv")


@pytest.mark.parametrize(("area", "case"), [_param("cli", c) for c in CLI_CASES])
def test_cli_case(area: str, case: Path) -> None:
    argv = shlex.split(case.read_text(encoding="utf-8"))
    code, stderr = cli_outcome(argv)
    assert "Traceback" not in stderr
    if case.with_suffix(".xfail").exists() and not case.with_suffix(".expected").exists():
        # a known bug whose fixed message is not known yet: check the shape only (strict
        # xfail: once it refuses with one error line, record the message, drop the .xfail)
        assert code == 2 and stderr.startswith("error: ") and "\n" not in stderr, (code, stderr)
        return
    expected = _expected(case)
    assert stderr == expected
    assert code == (2 if expected.startswith("error:") else 0)


# ---- recording expectations (run this file as a script) ---------------------------------------
def _record(force: bool) -> None:
    import os

    os.chdir(ROOT)
    for area in AREAS:
        if _loader(area) is None:
            continue
        for case in _cases(area):
            _write(case, load_outcome(area, case), force)
    for case in _cases("cli", ".argv"):
        if case.with_suffix(".xfail").exists() or (
            case.with_suffix(".expected").exists() and not force
        ):
            continue
        _write(case, cli_outcome(shlex.split(case.read_text(encoding="utf-8")))[1], force)


def _write(case: Path, text: str, force: bool) -> None:
    target = case.with_suffix(".expected")
    if target.exists() and (not force or case.with_suffix(".xfail").exists()):
        return
    target.write_text(text + "\n", encoding="utf-8")
    print(f"{_rel(target)}: {text}")


if __name__ == "__main__":
    _record(force="--force" in sys.argv)
