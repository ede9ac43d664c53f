"""Which input moves a metric most: elasticities, and Pareto fronts.

The elasticity of a metric y with respect to an input x is ``d ln y / d ln x``: +1 means y grows
in proportion to x (decode throughput vs HBM bandwidth while HBM-bound), 0 means x does not
matter at these points (the same throughput once compute-bound), -1 means inverse proportion.
Two estimates, both over the sweep's own points:

* **global**: one least-squares fit ``ln y = c + Σ_i e_i ln x_i`` over all points
  (:func:`scipy.linalg.lstsq`), with its R². Rooflines are piecewise (a max of terms), so this
  is an average slope; R² well below 1 says the answer depends on where you are.
* **local**: along each axis, finite differences ``Δ ln y / Δ ln x`` between neighbouring values
  with every other input fixed (a grid); the median and the range over the sweep.

An input that moves in lockstep with an earlier one (one is a function of the other: the axes
of an ``axes.zip`` group) cannot be varied with the other held fixed, so only the first is
kept; its elasticity is that of moving the whole group. Inputs or metrics that are
not strictly positive (a 0 or a bool) are skipped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import linalg


@dataclass(frozen=True)
class Elasticity:
    """d ln(metric) / d ln(input): the global fit and the local finite differences."""

    metric: str
    input: str
    elasticity: float  #: global log-log regression coefficient
    r2: float  #: R² of the global fit (same for all inputs of one metric)
    local_median: float  #: median of the local finite differences (NaN if none)
    local_min: float
    local_max: float
    points: int  #: points used by the global fit

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _positive(col: NDArray[Any]) -> NDArray[np.bool_] | None:
    if not np.issubdtype(col.dtype, np.number) or col.dtype == bool:
        return None
    with np.errstate(invalid="ignore"):
        return np.isfinite(col) & (col > 0)


def elasticities(
    columns: Mapping[str, NDArray[Any]], metric: str, inputs: Sequence[str]
) -> list[Elasticity]:
    """Elasticities of ``metric`` with respect to each varying numeric input, largest |e|
    first (see the module docstring)."""
    y = np.asarray(columns[metric])
    ok = _positive(y)
    if ok is None:
        return []
    usable: list[str] = []
    lockstep: set[str] = set()
    for name in inputs:
        x = np.asarray(columns[name])
        good = _positive(x)
        if good is None or np.unique(x[good]).size < 2:
            continue  # constant or not a positive number: no slope to estimate
        if any(_lockstep(x, np.asarray(columns[u])) for u in usable):
            lockstep.add(name)  # collinear with an input already in the fit (a zip group)
            continue
        ok = ok & good
        usable.append(name)
    if not usable or ok.sum() <= len(usable) + 1:
        return []
    ly = np.log(y[ok].astype(float))
    lx = np.column_stack([np.log(np.asarray(columns[n])[ok].astype(float)) for n in usable])
    design = np.column_stack([np.ones(ly.size), lx])
    coef, _, _, _ = linalg.lstsq(design, ly)
    resid = ly - design @ coef
    ss_tot = float(((ly - ly.mean()) ** 2).sum())
    r2 = 1.0 - float((resid**2).sum()) / ss_tot if ss_tot > 0 else 1.0
    out = []
    for i, name in enumerate(usable):
        # hold the other inputs fixed, except those that move with this one
        others = [n for n in inputs if n != name and n not in lockstep]
        local = _local(columns, metric, name, others)
        out.append(
            Elasticity(
                metric=metric,
                input=name,
                elasticity=float(coef[i + 1]),
                r2=r2,
                local_median=float(np.median(local)) if local.size else float("nan"),
                local_min=float(local.min()) if local.size else float("nan"),
                local_max=float(local.max()) if local.size else float("nan"),
                points=int(ok.sum()),
            )
        )
    return sorted(out, key=lambda e: -abs(e.elasticity))


def _lockstep(a: NDArray[Any], b: NDArray[Any]) -> bool:
    """Whether one of two repeating columns is a function of the other (a zip group: each HBM
    bandwidth comes with one capacity). Columns of distinct values (continuous samples) never
    are: any column is trivially a function of those."""
    ua, ub = len(set(a.tolist())), len(set(b.tolist()))
    if ua == a.size or ub == b.size:
        return False
    return len(set(zip(a.tolist(), b.tolist(), strict=True))) == max(ua, ub)


def _local(
    columns: Mapping[str, NDArray[Any]], metric: str, name: str, others: Sequence[str]
) -> NDArray[np.float64]:
    """Finite-difference elasticities along ``name`` with the other inputs held fixed."""
    y = np.asarray(columns[metric], dtype=float)
    x = np.asarray(columns[name], dtype=float)
    groups: dict[tuple[Any, ...], list[int]] = {}
    other_cols = [np.asarray(columns[o]) for o in others]
    for p in range(y.size):
        groups.setdefault(tuple(c[p] for c in other_cols), []).append(p)
    out = []
    for members in groups.values():
        if len(members) < 2:
            continue
        idx = np.array(members)
        idx = idx[np.argsort(x[idx], kind="stable")]
        xs, ys = x[idx], y[idx]
        good = (xs > 0) & (ys > 0) & np.isfinite(ys)
        xs, ys = xs[good], ys[good]
        if xs.size < 2:
            continue
        dx = np.diff(np.log(xs))
        dy = np.diff(np.log(ys))
        keep = dx > 0
        out.append(dy[keep] / dx[keep])
    return np.concatenate(out) if out else np.array([])


def pareto_mask(
    x: NDArray[Any], y: NDArray[Any], x_goal: str = "min", y_goal: str = "max"
) -> NDArray[np.bool_]:
    """Points not dominated by any other (better or equal on both, better on one), for goals
    ``min``/``max`` on each axis. O(n log n): sort by x, sweep the best y so far."""
    xs = np.asarray(x, dtype=float) * (1.0 if x_goal == "min" else -1.0)
    ys = np.asarray(y, dtype=float) * (1.0 if y_goal == "min" else -1.0)
    finite = np.isfinite(xs) & np.isfinite(ys)
    order = np.lexsort((ys, xs))  # by x, ties by y (both minimised now)
    mask = np.zeros(xs.size, dtype=bool)
    best = np.inf
    for i in order:
        if not finite[i]:
            continue
        if ys[i] < best:
            mask[i] = True
            best = ys[i]
    return mask
