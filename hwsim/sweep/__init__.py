"""Design-space sweeps: declarative sweep files, analytic (vectorised) and simulator metric
kinds, a resumable cache, and local or dask.distributed executors.

Public API::

    from hwsim.sweep import load_sweep, run_sweep, make_executor, SweepCache
    sweep = load_sweep("workloads/sweeps/ci-small.yaml")
    with make_executor("local", workers=2) as ex, SweepCache("out/.sweep-cache.sqlite") as c:
        result = run_sweep(sweep, executor=ex, cache=c)
    result.columns["fa_decode.time_s"]

See docs/sweeps.md.
"""

from hwsim.spec.overrides import apply_overrides, override_paths
from hwsim.sweep.cache import SweepCache
from hwsim.sweep.executors import DaskExecutor, LocalExecutor, make_executor
from hwsim.sweep.kinds import KINDS, Batch, MetricKind, get_kind, register_kind
from hwsim.sweep.run import SweepResult, SweepStats, run_sweep
from hwsim.sweep.spec import SweepFile, load_sweep

__all__ = [
    "KINDS",
    "Batch",
    "DaskExecutor",
    "LocalExecutor",
    "MetricKind",
    "SweepCache",
    "SweepFile",
    "SweepResult",
    "SweepStats",
    "apply_overrides",
    "get_kind",
    "load_sweep",
    "make_executor",
    "override_paths",
    "register_kind",
    "run_sweep",
]
