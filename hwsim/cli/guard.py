"""Run the typer app so that every failure is one line on stderr and a non-zero exit code.

Exit codes: 0 success, 2 bad input (:class:`SpecError` or a usage error), 3 internal error (a bug:
please report it), 130 interrupted. Global options, anywhere on the command line (before a
``--``): ``--debug`` shows the traceback instead and turns on the invariant checks of
:mod:`hwsim.sim.invariants` (``with invariants.debug_checks()``); ``--max-events N``,
``--max-memory SIZE`` (``8 GiB``), ``--max-points N`` and ``--max-sims N`` set the work limits
of :mod:`hwsim.spec.limits` (``with limits.limits(...)``; the table is
:data:`hwsim.spec.limits.OPTIONS`). No environment variable changes any of this.
Warnings (e.g. a :class:`~hwsim.spec.errors.SpecWarning` for memory levels out of order) print
as one ``warning:`` line each and do not change the exit code.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from collections.abc import Sequence
from typing import Any, TextIO

from rich.console import Console
from rich.markup import escape

from hwsim.sim import invariants
from hwsim.spec import limits as work_limits
from hwsim.spec.errors import SpecError, one_line

#: Global options taking a value, handled here (not by the commands): the work limits.
VALUE_OPTIONS = tuple(work_limits.OPTIONS)

EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 3
EXIT_INTERRUPTED = 130


def _names(err: BaseException) -> set[str]:
    """Class names in ``err``'s MRO: click is vendored inside newer typer releases, so its
    exception classes are recognised by name rather than imported from one place."""
    return {c.__name__ for c in type(err).__mro__}


def _say(kind: str, text: str) -> None:
    # a fresh Console each time: tests swap sys.stderr, and rich must write to the current one
    Console(file=sys.stderr, highlight=False, soft_wrap=True).print(
        f"[bold red]{kind}:[/] {escape(one_line(text))}", markup=True
    )


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    # SpecWarnings already carry file:line: key; Python's default adds a source line (two lines)
    Console(file=sys.stderr, highlight=False, soft_wrap=True).print(
        f"[bold yellow]warning:[/] {escape(one_line(str(message)))}", markup=True
    )


def split_global_options(args: list[str]) -> tuple[list[str], bool, dict[str, str]]:
    """(the command's own arguments, ``--debug`` given, {a :data:`VALUE_OPTIONS` name: value}),
    taking the global options from anywhere before a ``--``."""
    rest: list[str] = []
    debug, values = False, {}
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--":
            rest += args[i:]
            break
        name, eq, value = a.partition("=")
        if a == "--debug":
            debug = True
        elif name in VALUE_OPTIONS and eq:
            values[name] = value
        elif a in VALUE_OPTIONS:
            if i + 1 >= len(args):
                raise SpecError(f"{a} needs a value, e.g. {a} {work_limits.OPTIONS[a][2]}")
            values[a] = args[i + 1]
            i += 1
        else:
            rest.append(a)
        i += 1
    return rest, debug, values


def run(app: Any, argv: Sequence[str] | None = None) -> int:
    """Run ``app`` on ``argv`` (default ``sys.argv[1:]``) and return the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        args, debug, values = split_global_options(args)
        limits = work_limits.limits(**work_limits.parse_options(values))
    except SpecError as err:
        _say("error", str(err))
        return EXIT_BAD_INPUT
    checks = invariants.debug_checks() if debug else contextlib.nullcontext()
    with warnings.catch_warnings(), limits, checks:
        if not debug:
            warnings.showwarning = _show_warning
        return _invoke(app, args, debug)


def _invoke(app: Any, args: list[str], debug: bool) -> int:
    try:
        rv = app(args=args, prog_name="hwsim", standalone_mode=False)
        return rv if isinstance(rv, int) and not isinstance(rv, bool) else 0
    except SpecError as err:
        if debug:
            raise
        _say("error", str(err))
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        _say("error", "interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # `hwsim devices | head`: the reader left; say nothing, and stop Python's own complaint
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 141
    except OSError as err:
        # a path the user gave cannot be read or written (missing folder, no permission, full
        # disk): their input, not our bug - unless it carries no path, then it is ours
        if debug or not err.filename:
            if debug:
                raise
            return _internal(err)
        _say("error", f"{err.filename}: {err.strerror or err}")
        return EXIT_BAD_INPUT
    except SystemExit as ex:
        code = ex.code
        if code is None or isinstance(code, int):
            return code or 0
        _say("error", str(code))
        return 1
    except Exception as err:
        names = _names(err)
        if "NoArgsIsHelpError" in names:
            err.show()  # type: ignore[attr-defined]
            return EXIT_BAD_INPUT
        if "Exit" in names and hasattr(err, "exit_code"):
            return int(err.exit_code)
        if "Abort" in names:
            _say("error", "aborted")
            return EXIT_INTERRUPTED
        if "UsageError" in names:
            ctx = getattr(err, "ctx", None)
            where = getattr(getattr(ctx, "command_path", None), "strip", lambda: "")()
            hint = f" (see '{where} --help')" if where else ""
            _say("error", f"{err.format_message()}{hint}")  # type: ignore[attr-defined]
            return EXIT_BAD_INPUT
        if "ClickException" in names:
            _say("error", err.format_message())  # type: ignore[attr-defined]
            return int(getattr(err, "exit_code", 1))
        if debug:
            raise
        if isinstance(err, MemoryError):
            _say(
                "error",
                "ran out of memory; ask for less detail (e.g. --detail cta) or a smaller problem",
            )
            return EXIT_INTERNAL
        return _internal(err)


def _internal(err: BaseException) -> int:
    _say(
        "internal error",
        f"{type(err).__name__}: {err} (rerun with --debug for the traceback, and please "
        "report it: see docs/reliability.md)",
    )
    return EXIT_INTERNAL
