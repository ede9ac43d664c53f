"""Simulations off the request thread, with their results cached.

A page's callback asks :meth:`Jobs.get` for the result of a computation named by a key (the
page's inputs). A finished result is returned at once from the cache; otherwise the work runs
on a small thread pool and the callback waits for it up to ``wait_s``. Fast work (a roofline, a
model step) therefore answers in the same request; slow work (a serving run, a latency-vs-QPS
curve) returns a progress line, and the page polls with a ``dcc.Interval`` until it is done.

Bad input is a result too: a :class:`~hwsim.spec.errors.SpecError` is kept as its one-line
message (the CLI's), so a page shows it and asking again costs nothing.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

from hwsim.spec.errors import SpecError, one_line

#: Progress callback handed to a job: it reports one line ("QPS point 3 of 5").
Progress = Callable[[str], None]


@dataclass(frozen=True)
class JobState:
    """Where one computation stands: finished (``value`` or ``error``) or still running."""

    done: bool
    value: Any = None
    error: str | None = None  #: the one-line message of bad input (as the CLI prints it)
    progress: str = ""
    elapsed_s: float = 0.0  #: how long the computation took (not the wait for a cached one)


def error_text(err: BaseException) -> str:
    """The one line a page shows for a failure: a SpecError's own text (the CLI's message);
    anything else is a bug, named as such so that the user can report it."""
    if isinstance(err, SpecError):
        return one_line(str(err))
    return one_line(f"internal error ({type(err).__name__}): {err}; please report it")


class Jobs:
    """A thread pool and an LRU cache of results keyed by the inputs (see the module doc)."""

    def __init__(self, workers: int = 2, keep: int = 128) -> None:
        # two workers: this is a 2-core machine, and one slow serving run must not block a
        # roofline; simulations release no GIL, so more threads would only interleave
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hwsim-app")
        self._keep = keep
        self._lock = threading.RLock()  # a future done at once runs its callback here
        self._done: OrderedDict[Hashable, JobState] = OrderedDict()
        self._running: dict[Hashable, Future[Any]] = {}
        self._progress: dict[Hashable, str] = {}
        self._took: dict[Hashable, float] = {}

    def _state(self, key: Hashable, fut: Future[Any]) -> JobState:
        err = fut.exception()
        took = self._took.get(key, 0.0)
        if err is not None:
            return JobState(True, error=error_text(err), elapsed_s=took)
        return JobState(True, fut.result(), elapsed_s=took)

    def _finish(self, key: Hashable, fut: Future[Any]) -> None:
        state = self._state(key, fut)
        with self._lock:
            self._done[key] = state
            self._done.move_to_end(key)
            while len(self._done) > self._keep:
                old, _ = self._done.popitem(last=False)
                self._took.pop(old, None)
            self._running.pop(key, None)
            self._progress.pop(key, None)

    def get(self, key: Hashable, fn: Callable[[Progress], Any], wait_s: float = 0.9) -> JobState:
        """The result of ``fn`` for ``key``: cached, computed within ``wait_s``, or (still
        running) a :class:`JobState` with ``done=False`` and the job's last progress line."""
        with self._lock:
            hit = self._done.get(key)
            if hit is not None:
                self._done.move_to_end(key)
                return hit
            fut = self._running.get(key)
            if fut is None:

                def progress(msg: str) -> None:
                    with self._lock:
                        self._progress[key] = msg

                def timed(progress: Progress) -> Any:
                    t0 = time.perf_counter()
                    try:
                        return fn(progress)
                    finally:
                        self._took[key] = time.perf_counter() - t0

                fut = self._pool.submit(timed, progress)
                self._running[key] = fut
                fut.add_done_callback(lambda f: self._finish(key, f))
        try:
            fut.result(timeout=wait_s)
        except FutureTimeout:
            with self._lock:
                return JobState(False, progress=self._progress.get(key, "simulating…"))
        except Exception:
            pass
        # the done-callback may not have stored it yet: build the state from the future
        return self._state(key, fut)

    def clear(self) -> None:
        """Forget finished results (running jobs finish and are stored)."""
        with self._lock:
            self._done.clear()
