"""One-time fit of the ``fa3`` profile's two backward parameters on the FA3 backward table.

Free parameters (the forward values and everything else stay as they are):

* ``bwd_mma_efficiency`` - fraction of the wgmma rate the five matmuls of a backward step
  sustain;
* ``bwd_softmax_overlap`` - fraction of the recomputed softmax and the dS = P∘(dP − D) work
  that runs beside them.

Two head dims separate them: per score, the matmuls scale with the head dim (10·d FLOPs) while
the softmax/dS work does not. The objective is the vector of log errors over the 12 rows of
``workloads/measured/flash_attention3_h100_bwd.csv`` (FA3 only: FA2's bars in the same figure
are a held-out check), minimised by :func:`scipy.optimize.least_squares` within [0.3, 1] and
[0, 1]. ``--write`` puts the values into ``devices/profiles/attention.yaml`` (the entries tagged
``source: fit-fa3-bwd``).

Run once: ``python -m hwsim.validate.fit_attention_bwd --write``.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import least_squares

from hwsim.sim.kernel_profiles import AttentionProfile, load_attention_profile
from hwsim.spec.quantity import Sourced
from hwsim.spec.units import Dim
from hwsim.validate.fa3 import load_table, predict
from hwsim.validate.fa3_bwd import TABLE
from hwsim.validate.fit_attention import FitResult, run_cli
from hwsim.validate.fit_attention import write_yaml as write_attention_yaml

#: (name, lower bound, upper bound, start when the YAML has no value)
PARAMS: tuple[tuple[str, float, float, float], ...] = (
    ("bwd_mma_efficiency", 0.3, 1.0, 0.8),
    ("bwd_softmax_overlap", 0.0, 1.0, 0.4),
)
SOURCE = "fit-fa3-bwd"


def with_bwd(base: AttentionProfile, params: dict[str, float]) -> AttentionProfile:
    """``base`` with the backward parameters set (source ``fit-fa3-bwd``)."""
    update = {
        name: Sourced(value=float(v), dim=Dim.COUNT, text=f"{v:.6g}", source=SOURCE)
        for name, v in params.items()
    }
    return base.model_copy(update=update)


def fit(max_nfev: int = 40) -> FitResult:
    """Least-squares fit of :data:`PARAMS` in log space, from the YAML values (or the starts)."""
    rows = load_table(TABLE)
    base = load_attention_profile("fa3", "hopper")
    measured = np.array([r.tflops for r in rows])
    calls = [0]

    def unpack(x: np.ndarray) -> dict[str, float]:
        return {p[0]: float(v) for p, v in zip(PARAMS, x, strict=True)}

    def residuals(x: np.ndarray) -> np.ndarray:
        calls[0] += 1
        pred = np.array([r.predicted for r in predict(rows, with_bwd(base, unpack(x)))])
        return np.log(pred / measured)

    start = {p[0]: p[3] for p in PARAMS}
    for name in start:
        q = getattr(base, name)
        if q is not None:
            start[name] = float(q.value)
    x0 = np.array([start[p[0]] for p in PARAMS])
    lo, hi = np.array([p[1] for p in PARAMS]), np.array([p[2] for p in PARAMS])
    sol = least_squares(
        residuals, np.clip(x0, lo, hi), bounds=(lo, hi), diff_step=0.02, max_nfev=max_nfev
    )
    params = unpack(sol.x)
    return FitResult(params, tuple(predict(rows, with_bwd(base, params))), calls[0] + 1)


def write_yaml(params: dict[str, float]) -> None:
    """Replace the ``fit-fa3-bwd`` values of the ``fa3`` entry (3 decimals each)."""
    write_attention_yaml(params, SOURCE, digits={})


def main() -> None:
    run_cli(__doc__, fit, write_yaml, max_nfev=40)


if __name__ == "__main__":
    main()
