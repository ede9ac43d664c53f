"""Small-size copies of the correctness asserts in ``tests/bench/test_bench_roofline.py`` and
``tests/bench/test_bench_sweep.py`` (``make bench`` runs them at full size, outside ``make
test``; the cache asserts of the sweep benchmark are already in ``test_sweep.py``)."""

from __future__ import annotations

import numpy as np

from hwsim.roofline.analytic import device_bandwidths, device_rates, evaluate, level_union
from hwsim.roofline.ops import COMPUTE_KINDS
from hwsim.spec.load import list_devices, load_device


def test_vectorised_roofline_on_random_points() -> None:
    """The vectorised roofline over random kernels on random built-in devices gives a finite
    time for every point, equal to a plain per-point maximum written out here."""
    devices = [load_device(n) for n in list_devices()]
    levels = level_union(devices)
    rng = np.random.default_rng(0)
    n = 2000  # the benchmark's generator at 1/50 of its size
    flops = np.zeros((n, len(COMPUTE_KINDS)))
    bf16, special = COMPUTE_KINDS.index("bf16"), COMPUTE_KINDS.index("special")
    flops[:, bf16] = 10 ** rng.uniform(6, 15, n)
    flops[:, special] = 10 ** rng.uniform(3, 12, n)
    qbytes = 10 ** rng.uniform(3, 12, (n, len(levels)))
    rates = np.stack([device_rates(d) for d in devices])
    bws = np.nan_to_num(np.stack([device_bandwidths(d, levels) for d in devices]), nan=np.inf)
    pick = rng.integers(0, len(devices), n)
    out = evaluate(flops, qbytes, rates[pick], bws[pick], levels)
    assert out.time_s.shape == (n,)
    assert np.all(np.isfinite(out.time_s)) and np.all(out.time_s > 0)
    for i in range(0, n, 40):  # 50 points by hand: the slowest of matrix, special, each level
        p, b = rates[pick[i]], bws[pick[i]]
        want = max(
            flops[i, bf16] / p[bf16],
            flops[i, special] / p[special],
            *(qbytes[i, j] / b[j] for j in range(len(levels))),
        )
        # rel 1e-12: the same divisions; only the order of the max differs
        assert abs(out.time_s[i] - want) <= 1e-12 * want, i


def test_sweep_one_and_two_workers_agree(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """``tests/bench/test_bench_sweep.py`` (200 points): simulated attention points run in
    process (1 worker) and on a 2-process pool give bit-identical columns. Here 8 points in
    4 tasks (~2 s, most of it starting the pool)."""
    import yaml

    from hwsim.sweep.executors import LocalExecutor
    from hwsim.sweep.run import run_sweep
    from hwsim.sweep.spec import load_sweep

    sweep = {
        "name": "two-workers",
        "base": {"device": "h100-sxm", "model": "llama-3.1-8b"},
        "axes": {"workload": {"batch": [1, 8], "context": [512, 2048]}, "layout": ["tp=1", "tp=2"]},
        "metrics": [{"kind": "attention_sim", "options": {"kernel": "fa3"}}],
    }
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(sweep))
    s = load_sweep(path)
    with LocalExecutor(1) as ex1:
        one = run_sweep(s, executor=ex1)
    with LocalExecutor(2) as ex2:
        two = run_sweep(s, executor=ex2, chunk_size=2)
    assert one.n == two.n == 8 and one.stats.units == two.stats.units == 8
    assert two.stats.kinds[0].tasks > 1  # really spread over the pool
    assert set(one.columns) == set(two.columns)
    for k in one.columns:
        assert np.array_equal(one.columns[k], two.columns[k]), k
