"""One-time fit of the ``fa3`` profile's free parameters on the FA3 H100 table (scipy).

Free parameters (everything else is structural or comes from the device spec):

* ``mma_efficiency`` - fraction of the tensor peak the inner-loop wgmma sustain;
* ``softmax_overlap`` - fraction of a KV step's softmax that runs beside the matmuls;
* ``tile_overhead_cycles`` - fixed SM cycles per CTA tile;
* ``l2_bandwidth_fraction`` - fraction of the spec L2 bandwidth sustained when all SMs stream
  the same K/V lines.

The objective is the vector of log errors ``log(predicted / measured)`` over the 36 rows,
minimised by :func:`scipy.optimize.least_squares` within physical bounds. The fitted values are
written into ``devices/profiles/attention.yaml`` (entries tagged ``source: fit-fa3``) with
``--write``; the residual table goes into ``docs/calibration-attention.md``.

Run once: ``python -m hwsim.validate.fit_attention --write``.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares

from hwsim.sim.kernel_profiles import AttentionProfile, load_attention_profile
from hwsim.spec.profiles import profile_path
from hwsim.validate.core import Row
from hwsim.validate.fa3 import Fa3Row, load_table, predict

#: (name, lower bound, upper bound, scale of the optimiser's variable)
PARAMS: tuple[tuple[str, float, float, float], ...] = (
    ("mma_efficiency", 0.5, 1.0, 1.0),
    ("softmax_overlap", 0.0, 1.0, 1.0),
    ("tile_overhead_cycles", 0.0, 20000.0, 1000.0),
    ("l2_bandwidth_fraction", 0.2, 1.0, 1.0),
)


@dataclass(frozen=True)
class FitResult:
    params: dict[str, float]
    rows: tuple[Row, ...]
    evaluations: int

    @property
    def mape(self) -> float:
        return float(np.mean([abs(r.error) for r in self.rows]))

    @property
    def max_error(self) -> float:
        return float(max(abs(r.error) for r in self.rows))


def with_params(base: AttentionProfile, params: dict[str, float]) -> AttentionProfile:
    """``base`` with the sourced values of ``params`` replaced (sources kept)."""
    update = {}
    for name, value in params.items():
        q = getattr(base, name)
        update[name] = q.model_copy(update={"value": float(value), "text": f"{value:.6g}"})
    return base.model_copy(update=update)


def fit(rows: list[Fa3Row] | None = None, max_nfev: int = 60) -> FitResult:
    """Least-squares fit of :data:`PARAMS` in log space; starts from the YAML values."""
    rows = rows if rows is not None else load_table()
    base = load_attention_profile("fa3", "hopper")
    measured = np.array([r.tflops for r in rows])
    calls = [0]

    def unpack(x: np.ndarray) -> dict[str, float]:
        return {p[0]: float(v * p[3]) for p, v in zip(PARAMS, x, strict=True)}

    def residuals(x: np.ndarray) -> np.ndarray:
        calls[0] += 1
        pred = np.array([r.predicted for r in predict(rows, with_params(base, unpack(x)))])
        return np.log(pred / measured)

    x0 = np.array([getattr(base, p[0]).value / p[3] for p in PARAMS])
    lo = np.array([p[1] / p[3] for p in PARAMS])
    hi = np.array([p[2] / p[3] for p in PARAMS])
    sol = least_squares(
        residuals, np.clip(x0, lo, hi), bounds=(lo, hi), diff_step=0.02, max_nfev=max_nfev
    )
    params = unpack(sol.x)
    final = tuple(predict(rows, with_params(base, params)))
    return FitResult(params, final, calls[0] + 1)


def write_yaml(
    params: dict[str, float], source: str = "fit-fa3", digits: dict[str, int] | None = None
) -> None:
    """Replace the values tagged ``source: <source>`` in the attention profile file, each with
    3 decimals unless ``digits`` says otherwise (default: the cycles of ``fit-fa3`` as a whole
    number)."""
    digits = {"tile_overhead_cycles": 0} if digits is None else digits
    path = profile_path("attention")
    text = path.read_text(encoding="utf-8")
    for name, value in params.items():
        shown = f"{value:.{digits.get(name, 3)}f}"
        pattern = re.compile(rf"(  {name}: \{{value: )[^,]+(, source: {re.escape(source)}\}})")
        text, n = pattern.subn(rf"\g<1>{shown}\g<2>", text)
        if n != 1:
            raise RuntimeError(f"expected one {source} line for {name}, found {n}")
    path.write_text(text, encoding="utf-8")


def run_cli(
    doc: str | None,
    fit_fn: Callable[..., FitResult],
    write_fn: Callable[[dict[str, float]], None],
    max_nfev: int,
) -> None:
    """The command line of an attention fit: print the parameters, the MAPE and every row;
    ``--write`` puts the values into the profile file."""
    ap = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    ap.add_argument("--write", action="store_true", help="write the values into the YAML")
    ap.add_argument("--max-nfev", type=int, default=max_nfev)
    args = ap.parse_args()
    res = fit_fn(max_nfev=args.max_nfev)
    for k, v in res.params.items():
        print(f"{k:24s} {v:.4g}")
    print(f"MAPE {res.mape:.2%}  max {res.max_error:.2%}  ({res.evaluations} evaluations)")
    for r in res.rows:
        print(f"{r.case:34s} {r.measured:7.1f} {r.predicted:7.1f} {r.error:+7.1%}")
    if args.write:
        write_fn(res.params)
        print(f"wrote {profile_path('attention')}")


def main() -> None:
    run_cli(__doc__, fit, write_yaml, max_nfev=60)


if __name__ == "__main__":
    main()
