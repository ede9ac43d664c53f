"""The hostile-input fuzzer: generated command lines and files across every command.

Hypothesis draws command lines (sizes log-uniform up to 10^18, edge values, hostile text) and
files (sweep YAML with huge axes and nested constraint expressions, Hugging Face configs, saved
results); each runs in a separate process (:mod:`fuzz_worker`) with a wall-clock timeout and an
address-space cap. Every run must end in time with exit 0, or exit 2 and exactly one ``error:``
line (``warning:`` lines allowed): never exit 3, never a traceback, never a hang.

The work limits are lowered for the run (:data:`LIMITS`), so that whatever a command accepts
finishes in seconds: a command that still runs long has no up-front estimate, which is the bug.
``make test`` runs a fixed seed and a few hundred examples (:data:`FAST`); ``make bench`` runs
the longer profile (:data:`LONG`, marker ``bench``). The serving-layer commands (decode, prefill,
size, compare, whatif, capacity, map, serve), the traffic searches (size/compare --traffic,
explain serve) and ``train`` are fuzzed too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fuzz_cli_strategies import (
    DIR,
    Case,
    attention_cases,
    explain_from_cases,
    gemm_cases,
    misc_cases,
    moe_cases,
    op_cases,
    plot_cases,
    serve_cases,
    sweep_cases,
    traffic_cases,
    train_cases,
)
from fuzz_worker import CliWorker, Outcome
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

#: Global options every fuzzed run gets: ~2 s of simulation, 1 GiB of planned memory, sweeps of
#: 20,000 points and 20 simulations. Commands must refuse beyond them, in milliseconds.
LIMITS = ("--max-events", "2e5", "--max-memory", "1GiB", "--max-points", "2e4", "--max-sims", "20")
#: wall-clock seconds one run may take (a loaded 2-core machine: several times the budget)
TIMEOUT_S = 10.0
FAST = settings(
    max_examples=40,
    derandomize=True,  # a fixed seed: make test is reproducible
    deadline=None,  # the worker enforces TIMEOUT_S
    database=None,
    phases=(Phase.explicit, Phase.generate),  # no shrinking: a hang would be retried for minutes
    suppress_health_check=list(HealthCheck),
)
LONG = settings(FAST, max_examples=400, derandomize=False)


@pytest.fixture(scope="module")
def worker() -> Iterator[CliWorker]:
    w = CliWorker()
    yield w
    w.close()


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def run_case(worker: CliWorker, scratch: Path, case: Case, timeout_s: float = TIMEOUT_S) -> None:
    """Write the case's files, run it under :data:`LIMITS`, and check how it ended."""
    for name, text in case.files.items():
        (scratch / name).write_text(text, encoding="utf-8")
    argv = [a.replace(DIR, str(scratch)) for a in case.argv]
    # global options go before a '--' (whatif passes the rest to its step)
    cut = argv.index("--") if "--" in argv else len(argv)
    out = worker.run([*argv[:cut], *LIMITS, *argv[cut:]], timeout_s, cwd=str(scratch))
    check_outcome(case, out, timeout_s)


def check_outcome(case: Case, out: Outcome, timeout_s: float) -> None:
    shown = case.show()
    assert out.code is not None, f"no answer within {timeout_s:.0f} s: hwsim {shown}"
    lines = out.stderr.rstrip("\n").splitlines()
    assert "Traceback" not in out.stderr, f"traceback from hwsim {shown}:\n{out.stderr}"
    assert out.code in (0, 2), f"exit {out.code} from hwsim {shown}: {out.stderr.strip()[:400]}"
    others = [x for x in lines if not x.startswith(("error: ", "warning: "))]
    assert not others, f"stray stderr from hwsim {shown}: {others[:3]}"
    errors = [x for x in lines if x.startswith("error: ")]
    if out.code == 2:
        assert len(errors) == 1, f"{len(errors)} error lines from hwsim {shown}: {errors[:3]}"
    else:
        assert not errors, f"exit 0 with an error line from hwsim {shown}: {errors}"


def _fuzz(strategy: st.SearchStrategy[Case], profile: settings) -> Callable[..., None]:
    @profile
    @given(case=strategy)
    def test(worker: CliWorker, scratch: Path, case: Case) -> None:
        run_case(worker, scratch, case)

    return test


@pytest.fixture(scope="module")
def plot_table(worker: CliWorker, scratch: Path) -> str:
    """A small sweep table for ``hwsim plot --where``."""
    table = scratch / "table.csv"
    out = worker.run(["sweep", "ci-small", "--out", str(table), "--no-cache", "--workers", "1"], 60)
    assert out.code == 0, out.stderr
    return str(table)


PLOT_NAMES = ["batch", "context", "fa_decode.time_s", "memory.hbm.bandwidth", "dtype"]

# ---- make test: fixed seed, a few hundred examples in all ----------------------------------------
test_fuzz_gemm_and_op = _fuzz(st.one_of(gemm_cases(), op_cases()), FAST)
test_fuzz_attention = _fuzz(attention_cases(), FAST)
test_fuzz_moe = _fuzz(moe_cases(), FAST)
test_fuzz_sweep = _fuzz(sweep_cases(), settings(FAST, max_examples=60))
test_fuzz_explain_from = _fuzz(explain_from_cases(), settings(FAST, max_examples=30))
test_fuzz_misc = _fuzz(misc_cases(), settings(FAST, max_examples=15))
test_fuzz_serve = _fuzz(serve_cases(), settings(FAST, max_examples=40))
test_fuzz_traffic = _fuzz(traffic_cases(), settings(FAST, max_examples=20))
test_fuzz_train = _fuzz(train_cases(), settings(FAST, max_examples=30))


@FAST
@given(data=st.data())
def test_fuzz_plot_where(
    worker: CliWorker, scratch: Path, plot_table: str, data: st.DataObject
) -> None:
    run_case(worker, scratch, data.draw(plot_cases(plot_table, PLOT_NAMES)))


# ---- make bench: the longer profile -----------------------------------------------------------
_LONG_STRATEGIES = {
    "gemm_and_op": st.one_of(gemm_cases(), op_cases()),
    "attention": attention_cases(),
    "moe": moe_cases(),
    "sweep": sweep_cases(),
    "explain_from": explain_from_cases(),
    "misc": misc_cases(),
    "serve": serve_cases(),
    "traffic": traffic_cases(),
    "train": train_cases(),
}
for _name, _strategy in _LONG_STRATEGIES.items():
    globals()[f"test_fuzz_long_{_name}"] = pytest.mark.bench(_fuzz(_strategy, LONG))
