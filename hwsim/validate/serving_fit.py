"""Fit the engine's per-iteration overhead (``devices/profiles/engine.yaml``) on the serving
rows of the newest software generation (MLPerf v5.0 Offline and the TensorRT-LLM v1.0
``trtllm-bench`` rows), by minimising their mean absolute percentage error over
``[0, 5 ms]`` (scipy ``minimize_scalar``, bounded). Server rows are left out of the fit (each
is a whole rate search) and checked after it, like the older v4.1 rows.

Run ``python -m hwsim.validate.serving_fit`` to print the fitted value and every row's error
with it; it writes no files.
"""

from __future__ import annotations

from scipy.optimize import minimize_scalar

from hwsim.validate.serving import Measured, load_table, predict

#: Search interval (seconds): no overhead at all, to far more than any engine spends.
BOUNDS_S = (0.0, 5e-3)
#: Groups of the calibrated generation.
FIT_GROUPS = ("mlperf v5.0", "trtllm-bench")


def fit_rows() -> list[Measured]:
    """The rows the fit uses: offline rows of the calibrated generation."""
    return [m for m in load_table() if m.case.group in FIT_GROUPS and m.case.scenario == "offline"]


def mape(overhead_s: float, rows: list[Measured]) -> float:
    """Mean absolute relative error of ``rows`` with that overhead per iteration."""
    text = f"iteration_overhead={float(overhead_s)!r} s"
    errs = [abs(predict(m, overhead=text).metrics.output_tokens_per_s / m.value - 1) for m in rows]
    return sum(errs) / len(errs)


def fit() -> float:
    """The overhead (s) that minimises :func:`mape` on :func:`fit_rows`."""
    rows = fit_rows()
    res = minimize_scalar(lambda x: mape(x, rows), bounds=BOUNDS_S, method="bounded",
                          options={"xatol": 2e-5})  # fmt: skip
    best = float(res.x)
    # the bounded search never evaluates the end points: zero overhead is a candidate too
    return 0.0 if mape(0.0, rows) <= mape(best, rows) else best


def main() -> None:
    best = fit()
    print(f"iteration_overhead: {{value: {best * 1e3:.3f} ms, source: fit-serving}}")
    for m in load_table():
        text = f"iteration_overhead={best!r} s"
        r = predict(m, overhead=text)
        v = r.metrics.output_tokens_per_s
        role = "fit" if m in fit_rows() else "held-out"
        print(f"{m.label:55s} {v:10,.0f} vs {m.value:10,.0f}  {v / m.value - 1:+6.1%}  {role}")


if __name__ == "__main__":
    main()
