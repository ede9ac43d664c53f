"""Where sweep tasks run: this process, a local process pool, or a dask.distributed cluster.

All executors take the same picklable tasks and a module-level function, and yield
``(task index, result)`` as tasks finish; the runner puts results back in task order, so the
output does not depend on the executor, the number of workers or the completion order.

* :class:`LocalExecutor` (default): a ``ProcessPoolExecutor`` over the local cores. With one
  worker, or a single task, it runs in this process (no start-up cost).
* :class:`DaskExecutor`: ``distributed.Client`` on a scheduler address (``tcp://host:8786``), or
  on a ``LocalCluster`` it starts and stops itself when no address is given. Workers need
  hwsim installed (same version: the cache key includes the code version, the results must too).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any, Literal, Protocol

from hwsim.spec.errors import SpecError

ExecutorName = Literal["local", "dask"]
EXECUTORS: tuple[str, ...] = ("local", "dask")


class Executor(Protocol):
    """What the sweep runner needs from an executor."""

    name: str
    workers: int

    def map_unordered(
        self, fn: Callable[[Any], Any], tasks: Sequence[Any]
    ) -> Iterator[tuple[int, Any]]: ...

    def close(self) -> None: ...

    def describe(self) -> str: ...


def default_workers() -> int:
    """The cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


class LocalExecutor:
    """A process pool on this machine (started on first use, reused across metric kinds)."""

    name = "local"

    def __init__(self, workers: int | None = None) -> None:
        if workers is not None and workers < 1:
            raise SpecError(f"--workers must be at least 1, got {workers}")
        self.workers = workers or default_workers()
        self._pool: ProcessPoolExecutor | None = None

    def describe(self) -> str:
        return f"local process pool, {self.workers} worker(s)"

    def map_unordered(
        self, fn: Callable[[Any], Any], tasks: Sequence[Any]
    ) -> Iterator[tuple[int, Any]]:
        if self.workers == 1 or len(tasks) <= 1:
            for i, t in enumerate(tasks):
                yield i, fn(t)
            return
        if self._pool is None:
            self._pool = ProcessPoolExecutor(max_workers=self.workers)
        pending: dict[Future[Any], int] = {self._pool.submit(fn, t): i for i, t in enumerate(tasks)}
        try:
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    yield pending.pop(fut), fut.result()
        finally:
            for fut in pending:
                fut.cancel()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class DaskExecutor:
    """dask.distributed: an existing scheduler, or a LocalCluster over loopback."""

    name = "dask"

    def __init__(
        self,
        scheduler: str | None = None,
        workers: int | None = None,
        *,
        threads_per_worker: int = 1,
        processes: bool = True,
        timeout_s: float = 30.0,
    ) -> None:
        try:
            from distributed import Client, LocalCluster
        except ImportError:  # pragma: no cover - a declared dependency
            raise SpecError(
                "--executor dask needs dask.distributed: pip install 'dask[distributed]'"
            ) from None
        if workers is not None and workers < 1:
            raise SpecError(f"--workers must be at least 1, got {workers}")
        self.scheduler = scheduler
        self._cluster: Any = None
        self._client: Any = None
        try:
            if scheduler:
                self._client = Client(scheduler, timeout=timeout_s)
            else:
                self._cluster = LocalCluster(
                    n_workers=workers or min(default_workers(), 4),
                    threads_per_worker=threads_per_worker,
                    processes=processes,
                    host="127.0.0.1",
                    dashboard_address=None,
                    silence_logs=logging.ERROR,
                )
                self._client = Client(self._cluster, timeout=timeout_s)
        except OSError as err:
            self.close()
            where = scheduler or "a LocalCluster"
            raise SpecError(f"cannot reach the dask scheduler at {where}: {err}") from None
        info = self._client.scheduler_info()
        self.workers = max(1, len(info.get("workers", {})))
        self.address = str(self._client.scheduler.address)

    def describe(self) -> str:
        what = "existing cluster" if self.scheduler else "LocalCluster"
        return f"dask {what} at {self.address}, {self.workers} worker(s)"

    def map_unordered(
        self, fn: Callable[[Any], Any], tasks: Sequence[Any]
    ) -> Iterator[tuple[int, Any]]:
        from distributed import as_completed

        if not tasks:
            return
        futures = self._client.map(fn, list(tasks), pure=False)
        index = {f.key: i for i, f in enumerate(futures)}
        try:
            for fut in as_completed(futures):
                yield index[fut.key], fut.result()
        finally:
            self._client.cancel([f for f in futures if not f.done()])

    def close(self) -> None:
        client = getattr(self, "_client", None)
        if client is not None:
            client.close()
            self._client = None
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None

    def __enter__(self) -> DaskExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def make_executor(
    name: str, *, workers: int | None = None, scheduler: str | None = None
) -> LocalExecutor | DaskExecutor:
    """The executor for ``--executor NAME``."""
    if name == "local":
        if scheduler:
            raise SpecError("--scheduler needs --executor dask")
        return LocalExecutor(workers)
    if name == "dask":
        return DaskExecutor(scheduler, workers)
    raise SpecError(f"unknown executor {name!r}; expected one of {', '.join(EXECUTORS)}")
