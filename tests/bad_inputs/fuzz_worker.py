"""A long-lived ``hwsim`` CLI process for the hostile-input fuzzer (test_fuzz_cli.py).

Starting Python and importing hwsim costs ~0.5 s, more than most invocations; this process
pays it once and then runs one command line per request, in-process through the CLI guard, under
an address-space cap (so a command that would exhaust memory fails here, not on the machine).
The test side (:class:`CliWorker`) enforces a wall-clock timeout per request: a command that
hangs is killed with the worker, which is restarted for the next one.

Protocol: one JSON object per line on stdin, ``{"argv": [...], "cwd": "..."}``; one per line on
the original stdout, ``{"code": int, "stderr": str, "wall_s": float}``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import selectors
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

ROOT = Path(__file__).resolve().parents[2]
#: address space a command may add to the worker (bytes): as the corpus (test_corpus.py)
HEADROOM_BYTES = 3 * 2**30


def _cap_memory(extra: int) -> None:
    try:
        import resource

        status = Path("/proc/self/status").read_text(encoding="utf-8")
        vm_kib = next(int(x.split()[1]) for x in status.splitlines() if x.startswith("VmSize:"))
    except (ImportError, OSError, StopIteration, ValueError):  # not Linux: no cap
        return
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = vm_kib * 1024 + extra
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def serve(channel: TextIO) -> None:
    """Answer requests from stdin on ``channel`` until stdin closes."""
    # import what commands import lazily, so the cap measures the commands, not the imports
    import hwsim.sim.alltoall
    import hwsim.sweep.run  # noqa: F401
    from hwsim.cli import guard
    from hwsim.cli.app import app

    _cap_memory(HEADROOM_BYTES)
    for line in sys.stdin:
        req = json.loads(line)
        os.chdir(req.get("cwd") or ROOT)
        err, out = io.StringIO(), io.StringIO()
        t0 = time.perf_counter()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            try:
                code = guard.run(app, req["argv"])
            except BaseException as exc:
                code = -1
                print(f"escaped the guard: {type(exc).__name__}: {exc}", file=sys.stderr)
        wall = time.perf_counter() - t0
        channel.write(json.dumps({"code": code, "stderr": err.getvalue(), "wall_s": wall}) + "\n")
        channel.flush()


@dataclass(frozen=True)
class Outcome:
    """One command's end: exit code (None: timed out), stderr, seconds."""

    code: int | None
    stderr: str
    wall_s: float


class CliWorker:
    """The test side: run command lines in a :func:`serve` process with a timeout each."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[str] | None = None

    def _start(self) -> subprocess.Popen[str]:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve())],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
                cwd=ROOT,
            )
            self._ask({"argv": ["devices", "--json"]}, 120.0)  # warm: imports, device cache
        return self.proc

    def _ask(self, req: dict[str, Any], timeout_s: float) -> Outcome:
        proc = self.proc
        assert proc is not None and proc.stdin is not None and proc.stdout is not None
        t0 = time.perf_counter()
        proc.stdin.write(json.dumps(req) + "\n")
        proc.stdin.flush()
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        ready = sel.select(timeout_s)
        sel.close()
        if not ready:
            self.close()
            return Outcome(None, "", time.perf_counter() - t0)
        line = proc.stdout.readline()
        if not line:  # the worker died (killed by the memory cap, a segfault)
            self.close()
            return Outcome(-9, "worker died", time.perf_counter() - t0)
        d = json.loads(line)
        return Outcome(int(d["code"]), str(d["stderr"]), float(d["wall_s"]))

    def run(self, argv: list[str], timeout_s: float, cwd: str | None = None) -> Outcome:
        self._start()
        return self._ask({"argv": argv, "cwd": cwd or str(ROOT)}, timeout_s)

    def close(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            self.proc = None


if __name__ == "__main__":
    # the protocol owns the real stdout; commands print into a buffer
    serve(os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8"))
