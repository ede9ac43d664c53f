"""Facts for docs/sweeps.md's second worked example: the `ib-bandwidth-x-ep-dispatch` sweep
(DeepSeek-V3 dispatch/combine on H800 nodes, HDR/NDR/XDR InfiniBand as one zip group) run
in-process, read per (EP, tokens per rank): times per generation, the bound, and the speed-ups."""

from __future__ import annotations

from typing import Any

import numpy as np

from _gen import fmt
from _gen.core import DocsError, Table

SWEEP = "ib-bandwidth-x-ep-dispatch"
NIC = "cluster.nics.bandwidth"
#: the generations the sweep's zip group walks through, by NIC payload rate
GENERATIONS = {25e9: "HDR", 50e9: "NDR", 100e9: "XDR"}


def facts() -> dict[str, Any]:
    from hwsim.sweep import load_sweep, run_sweep

    r = run_sweep(load_sweep(SWEEP))
    c = {k: np.asarray(v) for k, v in r.columns.items()}
    st = r.stats
    out: dict[str, Any] = {
        "points": str(st.points),
        "stats": f"{st.points} points, {st.units} simulated sub-problems, "
        f"{fmt.t(st.wall_s)} in this build",
    }
    nics = sorted(np.unique(c[NIC]).tolist())
    names = [GENERATIONS.get(v, fmt.bw(v)) for v in nics]
    rows = []
    gains: dict[tuple[int, int], tuple[float, float]] = {}
    xdr_bounds = set()
    bounds_at: dict[tuple[int, int], list[str]] = {}
    for ep in np.unique(c["ep"]).tolist():
        for tokens in np.unique(c["tokens"]).tolist():
            sel = (c["ep"] == ep) & (c["tokens"] == tokens)
            by_nic = {float(v): i for i, v in zip(np.flatnonzero(sel), c[NIC][sel], strict=True)}
            cells = []
            for phase in ("dispatch", "combine"):
                t = [float(c[f"{phase}.time_s"][by_nic[v]]) for v in nics]
                bounds = [str(c[f"{phase}.bound"][by_nic[v]]) for v in nics]
                cells += [" / ".join(fmt.t(x) for x in t), " / ".join(bounds)]
                if phase == "dispatch":
                    gains[(int(ep), int(tokens))] = (t[0] / t[1], t[1] / t[2])
                    bounds_at[(int(ep), int(tokens))] = bounds
                    xdr_bounds.add(bounds[-1])
            nodes = int(c["dispatch.nodes"][np.flatnonzero(sel)[0]])
            rows.append([f"EP{ep} ({nodes} node{'s' if nodes > 1 else ''})", str(tokens), *cells])
    _claim(
        all("rdma" not in b for k, b in bounds_at.items() if k[0] <= 16),
        "EP16 is not bound by InfiniBand at any generation",
    )
    _claim(
        all(b[0] == "rdma" for k, b in bounds_at.items() if k[0] > 16),
        "from four nodes on, the slowest generation is InfiniBand-bound",
    )
    gen = " / ".join(names)
    out["table"] = Table(
        ["EP", "tokens per rank", f"dispatch ({gen})", "bound", f"combine ({gen})", "bound"],
        rows,
        "lrllll",
    )
    out["generations"] = gen
    one_node = [k for k in gains if k[0] <= 16]
    multi = [k for k in gains if k[0] > 16]
    out["ep16_gain"] = fmt.times(max(gains[k][0] * gains[k][1] for k in one_node))
    out["hdr_penalty"] = (
        f"{fmt.times(min(gains[k][0] for k in multi))}–{fmt.times(max(gains[k][0] for k in multi))}"
    )
    out["xdr_gain"] = (
        f"{fmt.times(min(gains[k][1] for k in multi))}–{fmt.times(max(gains[k][1] for k in multi))}"
    )
    _claim("rdma" not in xdr_bounds, "XDR moves every multi-node dispatch off InfiniBand")
    out["xdr_bounds"] = " and ".join(f"`{b}`" for b in sorted(xdr_bounds))
    out["sensitivity"] = Table(
        ["metric", "input", "global", "local median", "local range", "R²"],
        [
            [
                f"`{e.metric}`",
                f"`{e.input}`",
                f"{e.elasticity:+.3f}",
                f"{e.local_median:+.3f}",
                f"{e.local_min:+.2f} … {e.local_max:+.2f}",
                f"{e.r2:.2f}",
            ]
            for e in r.sensitivity
        ],
        "llrrrr",
    )
    return out


def _claim(holds: bool, text: str) -> None:
    """The page's sentences read these results; a model change that breaks one fails the build
    instead of leaving a false sentence."""
    if not holds:
        raise DocsError(f"docs/sweeps.md says '{text}', which this build's sweep no longer shows")
