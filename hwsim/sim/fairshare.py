"""Max-min fair shares of link bandwidth: the solvers under :mod:`hwsim.sim.engine`.

Every active flow (or class of identical flows) crosses one or more links; its rate is the
max-min fair allocation over the links' capacities, found by *progressive filling*: all rates
grow together, and whenever a link saturates (or a flow reaches its own cap) the flows through
it freeze at the current level. Three equivalent solvers:

* :func:`max_min_rates`: per flow, vectorised with numpy (the reference the tests compare with);
* :func:`class_rates`: per weighted flow class, plain Python for the handful of classes a GPU
  kernel has (what the engine calls on every rate update);
* :func:`class_rates_vectorized` / :func:`max_min_incidence`: the same from incidence arrays,
  for hundreds of classes on hundreds of links (an all-to-all on a cluster).

Rates in bytes/s (or bytes of progress per second for weighted flows).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Relative tolerance for "this link is saturated" / "this flow reached its cap" after
#: floating-point subtraction (the engine uses the same value for "this flow has finished").
_EPS = 1e-12


def max_min_rates(
    paths: Sequence[np.ndarray], capacity_Bps: np.ndarray, max_rate_Bps: np.ndarray | None = None
) -> np.ndarray:
    """Max-min fair rates (bytes/s) for flows over links, by progressive filling.

    ``paths[i]`` holds the link indices flow ``i`` crosses; ``capacity_Bps[l]`` is link ``l``'s
    bandwidth; ``max_rate_Bps[i]`` optionally caps flow ``i`` alone (e.g. a DMA engine's rate).
    All flows grow together; whenever a link saturates (or a flow hits its own cap) the flows
    through it are frozen at the current level. This per-flow reference solver is vectorised
    with numpy; the engine itself uses the equivalent per-class solver :func:`class_rates`.
    """
    n = len(paths)
    rates = np.zeros(n)
    if n == 0:
        return rates
    lengths = np.fromiter((len(p) for p in paths), dtype=np.int64, count=n)
    flow_of = np.repeat(np.arange(n), lengths)
    link_of = (
        np.concatenate([np.asarray(p, dtype=np.int64) for p in paths])
        if lengths.sum()
        else (np.zeros(0, dtype=np.int64))
    )
    cap = capacity_Bps.astype(float).copy()
    own = np.full(n, np.inf) if max_rate_Bps is None else max_rate_Bps.astype(float).copy()
    active = np.ones(n, dtype=bool)
    level = 0.0
    while active.any():
        inc_active = active[flow_of]
        users = np.bincount(link_of[inc_active], minlength=len(cap)).astype(float)
        with np.errstate(divide="ignore", invalid="ignore"):
            link_share = np.where(users > 0, cap / users, np.inf)
        step = min(float(link_share.min(initial=np.inf)), float((own - level)[active].min()))
        if not np.isfinite(step):
            # flows on no link and with no cap: unbounded; give them their (infinite) cap
            rates[active] = np.inf
            break
        level += step
        cap -= step * users
        # freeze flows whose own cap is reached or who cross a saturated link
        saturated = (users > 0) & (cap <= _EPS * np.maximum(capacity_Bps, 1.0))
        hit = np.zeros(n, dtype=bool)
        hit[flow_of[inc_active & saturated[link_of]]] = True
        hit |= active & np.isfinite(own) & (own - level <= _EPS * np.maximum(own, 1.0))
        rates[hit & active] = level
        active &= ~hit
    return rates


def class_rates(
    classes: Sequence[tuple[Sequence[int], Sequence[float], float]], capacity_Bps: Sequence[float]
) -> list[float]:
    """Weighted max-min fair progress rate of each flow class, by progressive filling.

    ``classes[c] = (links, load_per_unit_rate, cap_Bps)``: the class's flows, all at one rate
    ``r``, load link ``links[i]`` with ``load_per_unit_rate[i] · r`` in total, and no flow may
    exceed ``cap_Bps``. Plain Python for a handful of classes; a large problem (an all-to-all:
    hundreds of classes each on hundreds of links) goes to :func:`class_rates_vectorized`,
    which computes the same rates with numpy.
    """
    if sum(len(c[0]) for c in classes) > VECTORIZE_ABOVE:
        return class_rates_vectorized(classes, capacity_Bps)
    n = len(classes)
    rates = [0.0] * n
    nl = len(capacity_Bps)
    remaining = list(capacity_Bps)
    floor = [_EPS * max(c, 1.0) for c in capacity_Bps]
    unfrozen = list(range(n))
    level = 0.0
    while unfrozen:
        coef = [0.0] * nl
        step = np.inf
        for c in unfrozen:
            links, ws, cap = classes[c]
            for li, w in zip(links, ws, strict=True):
                coef[li] += w
            if cap - level < step:
                step = cap - level
        for li in range(nl):
            a = coef[li]
            if a > 0:
                r = remaining[li] / a if remaining[li] > 0 else 0.0
                if r < step:
                    step = r
        if step == np.inf:
            for c in unfrozen:
                rates[c] = np.inf
            break
        level += step
        saturated = [False] * nl
        for li in range(nl):
            a = coef[li]
            if a > 0:
                remaining[li] -= step * a
                saturated[li] = remaining[li] <= floor[li]
        still = []
        for c in unfrozen:
            links, _, cap = classes[c]
            if (cap != np.inf and cap - level <= _EPS * max(cap, 1.0)) or any(
                saturated[li] for li in links
            ):
                rates[c] = level
            else:
                still.append(c)
        if len(still) == len(unfrozen):  # numerical stall: freeze everyone at this level
            for c in still:
                rates[c] = level
            break
        unfrozen = still
    return rates


#: (class, link) incidences above which :func:`class_rates` switches to numpy.
VECTORIZE_ABOVE = 2048


def class_rates_vectorized(
    classes: Sequence[tuple[Sequence[int], Sequence[float], float]], capacity_Bps: Sequence[float]
) -> list[float]:
    """:func:`class_rates` with numpy: each progressive-filling level is a few vector
    operations over all (class, link) incidences, so a level costs microseconds per thousand
    incidences instead of a Python loop over them."""
    n = len(classes)
    if n == 0:
        return []
    lens = np.fromiter((len(c[0]) for c in classes), np.int64, n)
    total = int(lens.sum())
    rates = max_min_incidence(
        np.repeat(np.arange(n), lens),
        np.fromiter((li for c in classes for li in c[0]), np.int64, total),
        np.fromiter((x for c in classes for x in c[1]), float, total),
        np.asarray(capacity_Bps, dtype=float),
        np.fromiter((c[2] for c in classes), float, n),
    )
    out: list[float] = rates.tolist()
    return out


def max_min_incidence(
    cls_of: np.ndarray,
    link_of: np.ndarray,
    w: np.ndarray,
    capacity_Bps: np.ndarray,
    cap_Bps: np.ndarray,
    active: np.ndarray | None = None,
    index: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Weighted max-min fair rates from incidence arrays: incidence ``i`` says class
    ``cls_of[i]`` loads link ``link_of[i]`` with ``w[i]`` per unit of its rate; ``cap_Bps[c]``
    caps class ``c`` alone. Classes with ``active`` False get rate 0 and load nothing.
    ``index`` (from :func:`incidence_index`) saves re-sorting fixed incidence arrays.

    Progressive filling with incremental bookkeeping: each level costs O(links) plus the
    incidences of the classes it freezes, so a solve is O(levels x links + incidences) even
    when every class has its own bottleneck (hundreds of levels in an all-to-all)."""
    n = len(cap_Bps)
    n_links = len(capacity_Bps)
    cap0 = np.asarray(capacity_Bps, dtype=float)
    own = np.asarray(cap_Bps, dtype=float)
    rates = np.zeros(n)
    act = np.ones(n, dtype=bool) if active is None else np.asarray(active, dtype=bool).copy()
    by_cls, c_ptr, by_link, l_ptr = index or incidence_index(cls_of, link_of, n, n_links)
    inc = act[cls_of]
    coef = np.bincount(link_of[inc], weights=w[inc], minlength=n_links)
    users = np.bincount(link_of[inc], minlength=n_links)
    remaining = cap0.copy()
    level = 0.0
    tiny = _EPS * np.maximum(cap0, 1.0)
    while act.any():
        used = users > 0
        step = (
            float((np.maximum(remaining[used], 0.0) / coef[used]).min()) if used.any() else np.inf
        )
        step = min(step, float((own[act] - level).min()))
        if not np.isfinite(step):
            rates[act] = np.inf
            break
        level += step
        remaining -= step * coef
        sat = np.flatnonzero(used & (remaining <= tiny))
        hit = np.zeros(n, dtype=bool)
        if sat.size:
            hit[cls_of[by_link[_ranges(l_ptr[sat], l_ptr[sat + 1])]]] = True
        hit |= np.isfinite(own) & (own - level <= _EPS * np.maximum(own, 1.0))
        hit &= act
        if not hit.any():  # numerical stall: freeze everyone at this level
            rates[act] = level
            break
        rates[hit] = level
        act &= ~hit
        gone = by_cls[_ranges(c_ptr[:-1][hit], c_ptr[1:][hit])]
        coef -= np.bincount(link_of[gone], weights=w[gone], minlength=n_links)
        users -= np.bincount(link_of[gone], minlength=n_links)
        coef[users == 0] = 0.0  # no floating residue on links nobody uses any more
    return rates


def incidence_index(
    cls_of: np.ndarray, link_of: np.ndarray, n_classes: int, n_links: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Incidences grouped by class and by link: (order by class, class pointers, order by
    link, link pointers), as :func:`max_min_incidence` uses them."""
    by_cls = np.argsort(cls_of, kind="stable")
    c_ptr = np.searchsorted(cls_of[by_cls], np.arange(n_classes + 1))
    by_link = np.argsort(link_of, kind="stable")
    l_ptr = np.searchsorted(link_of[by_link], np.arange(n_links + 1))
    return by_cls, c_ptr, by_link, l_ptr


def _ranges(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, e)`` for every (s, e) pair, without a Python loop."""
    lens = ends - starts
    total = int(lens.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    offsets = np.repeat(starts - np.cumsum(lens) + lens, lens)
    return offsets + np.arange(total)
