"""How big a sweep is, computed from the file before one point exists, and the refusals.

A grid's size is the product of its groups' lengths (a zip group advances its axes together;
a range has ``num`` values, fewer when ``integer: true`` rounds several onto one); a sampled
sweep has ``sampling.n`` points. :func:`check_points` refuses a sweep beyond ``--max-points``
(and beyond ``--max-memory`` at the measured bytes per point) in microseconds, whatever the
axes multiply to; :func:`check_sims` refuses a sweep whose simulator kinds would run more
sub-problems (after the cache) than ``--max-sims``. Limits: :mod:`hwsim.spec.limits`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from hwsim.spec.limits import LimitExceeded, check_memory, current_limits, format_count
from hwsim.spec.units import Dim

if TYPE_CHECKING:
    from hwsim.sweep.points import Axis
    from hwsim.sweep.spec import SweepFile

#: Integer ranges up to this many grid values are rounded to count their distinct values
#: exactly (16 MB of float64); longer ones are bounded by ``min(num, span + 1)``.
EXACT_COUNT_MAX = 2_000_000
#: Host memory per point (bytes): input and parameter columns plus, per metric kind, its unit
#: key, value lists and output columns. Measured on `hwsim sweep` (peak RSS, one worker):
#: 10^6 points of one analytic kind took 0.86 GB over the empty sweep, two kinds 1.58 GB.
BYTES_PER_POINT = 200
BYTES_PER_POINT_PER_KIND = 800

#: Work of one device (or cluster) variant, in points: building and validating a spec with
#: its overrides, and fingerprinting it, takes ~0.75 ms (measured: 10,000 HBM bandwidths in
#: 7.4 s), a point of an analytic kind ~10 µs. So ``--max-points`` / 100 variants at most.
POINTS_PER_VARIANT = 100
#: axis categories whose values make a new spec to build and validate
VARIANT_CATEGORIES = ("device", "spec", "profile", "cluster")

SAMPLE_HINT = "sample with `sampling: {method: random, n: N}` or raise `--max-points`"


def range_count(axis: Axis, dim: Dim | None) -> int:
    """Grid values of a range axis: ``num``, or the distinct integers it rounds to."""
    from hwsim.sweep.points import integer_span, range_array, range_ends

    r = axis.range
    assert r is not None
    if not r.integer:
        return r.num
    lo, hi = range_ends(axis, dim)
    range_array(axis, dim, np.array([0.0]))  # the ends' own checks (log, 2^62), by name
    if r.num > integer_span(r.scale, lo, hi):  # every integer between the ends
        return abs(round(hi) - round(lo)) + 1
    if r.num <= EXACT_COUNT_MAX:
        return int(np.unique(np.round(range_array(axis, dim, None))).size)
    return r.num  # an upper bound: a log range's lowest steps may round onto one integer


def group_counts(sweep: SweepFile, axes: Sequence[Axis], dims: Sequence[Dim | None]) -> list[int]:
    """Per group of a grid (a zip group, else one axis), how many values it contributes."""
    from hwsim.sweep.points import groups_of

    out = []
    for g in groups_of(sweep, list(axes)):
        a = axes[g[0]]  # zipped axes are listed values of equal lengths (checked at load)
        out.append(len(a.values) if a.range is None else range_count(a, dims[g[0]]))
    return out


def check_points(
    sweep: SweepFile, axes: Sequence[Axis], dims: Sequence[Dim | None], n_kinds: int
) -> int:
    """The number of points ``sweep`` expands to; a :class:`SpecError` saying what to change
    when it exceeds ``--max-points``, or its estimated memory ``--max-memory``."""
    limit = current_limits().max_points
    if sweep.sampling.method == "grid":
        counts = group_counts(sweep, axes, dims)
        total = math.prod(counts)
        how = " × ".join(str(c) for c in counts) if len(counts) > 1 else "one axis"
        hint = SAMPLE_HINT
    else:
        assert sweep.sampling.n is not None
        total, how = sweep.sampling.n, "sampling.n"
        hint = "lower sampling.n or raise `--max-points`"
    if total > limit:
        raise LimitExceeded(
            f"{format_count(total)} sweep points ({how}); the limit is {format_count(limit)}; "
            f"{hint}"
        )
    _check_variants(sweep, axes, dims, total, limit)
    check_memory(
        total * (BYTES_PER_POINT + BYTES_PER_POINT_PER_KIND * max(1, n_kinds)),
        cheaper_mode_hint=f"{format_count(total)} sweep points; sample fewer",
    )
    return total


def check_sims(missing: Sequence[tuple[str, int]]) -> None:
    """Refuse a sweep whose simulator kinds would run more sub-problems than ``--max-sims``;
    ``missing``: (metric label, sub-problems not in the cache) per simulator kind."""
    total = sum(n for _, n in missing)
    limit = current_limits().max_sims
    if total > limit:
        per = ", ".join(f"{label}: {format_count(n)}" for label, n in missing if n)
        raise LimitExceeded(
            f"{format_count(total)} simulations to run ({per}: unique sub-problems not in the "
            f"cache); the limit is {format_count(limit)}; sample fewer points, narrow the "
            "axes, or raise `--max-sims`"
        )


def _check_variants(
    sweep: SweepFile, axes: Sequence[Axis], dims: Sequence[Dim | None], points: int, limit: int
) -> None:
    """Refuse more distinct specs to build than ``--max-points`` / :data:`POINTS_PER_VARIANT`:
    the product of the value counts of the groups that hold a device, spec, profile or
    cluster axis (at most the number of points)."""
    from hwsim.sweep.points import groups_of

    counts = group_counts(sweep, axes, dims) if sweep.sampling.method == "grid" else None
    variants, named = 1, []
    for gi, g in enumerate(groups_of(sweep, list(axes))):
        if not any(axes[i].category in VARIANT_CATEGORIES for i in g):
            continue
        a = axes[g[0]]
        n = (
            counts[gi]
            if counts is not None
            else (len(a.values) if a.range is None else a.range.num)
        )
        variants *= n
        named.append(f"{axes[g[0]].name}: {n}")
    variants = min(variants, points)
    cap = max(1, limit // POINTS_PER_VARIANT)
    if variants > cap:
        raise LimitExceeded(
            f"{format_count(variants)} device/cluster variants to build and validate "
            f"({', '.join(named)}); the limit is {format_count(cap)} (`--max-points` / "
            f"{POINTS_PER_VARIANT}: each costs ~0.75 ms); use fewer spec values or raise "
            "`--max-points`"
        )
