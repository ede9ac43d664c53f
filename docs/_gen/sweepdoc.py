"""Facts for docs/sweeps.md's worked example: the `sram-fa-decode` sweep run in-process (no
cache, nothing written), its per-(TP, batch, context) reading, the sensitivity table, and the
numbers the answer quotes (KV bytes per token, L2 against HBM bandwidth, the ridge)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from _gen import fmt
from _gen.core import Table

SWEEP = "sram-fa-decode"
ROOT = Path(__file__).resolve().parents[2]


def _gib(b: float) -> str:
    """Binary units, as the sweep file writes its capacities."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if b >= scale:
            v = b / scale
            return f"{v:,.0f} {unit}" if v >= 10 or v == int(v) else f"{v:.3g} {unit}"
    return f"{b:.0f} B"


def _elasticity_row(e: Any) -> list[str]:
    return [
        f"`{e.input}`",
        f"{e.elasticity:+.3f}",
        f"{e.local_median:+.3f}",
        f"{e.local_min:+.2f} … {e.local_max:+.2f}",
        f"{e.r2:.2f}",
    ]


def _builtin() -> Table:
    """The sweep files in workloads/sweeps/: their description and how many points they expand
    to (after input-only constraints)."""
    from hwsim.sweep import load_sweep
    from hwsim.sweep.points import build_points

    rows = []
    for path in sorted((ROOT / "workloads" / "sweeps").glob("*.yaml")):
        sw = load_sweep(path.stem)
        pts = build_points(sw, sw.kinds())
        n = f"{pts.n}" if pts.n == pts.total else f"{pts.n} (of {pts.total})"
        rows.append([f"`{path.name}`", sw.description or "", n])
    return Table(["file", "question", "points"], rows, "llr")


def facts() -> dict[str, Any]:
    from hwsim.spec.load import load_device
    from hwsim.sweep import load_sweep, run_sweep
    from hwsim.sweep.sensitivity import elasticities

    sweep = load_sweep(SWEEP)
    r = run_sweep(sweep)
    c = {k: np.asarray(v) for k, v in r.columns.items()}
    out: dict[str, Any] = {"builtin": _builtin()}
    st = r.stats
    out["points"] = str(st.points)
    out["stats"] = (
        f"{st.points} points ({st.dropped} dropped by constraints), {st.units} unique units, "
        f"computed in {fmt.t(st.wall_s)} on the machine that built this page"
    )

    dev = load_device(str(c["device"][0]))
    hbm_cap = dev.level_capacity_bytes(dev.main_memory.name)
    l2s = np.unique(c["memory.l2.capacity"])
    base_l2 = float(l2s.min())
    rows = []
    kv_per_token = None
    for tp in np.unique(c["tp"]):
        for batch in np.unique(c["batch"]):
            for ctx in np.unique(c["context"]):
                sel = (c["tp"] == tp) & (c["batch"] == batch) & (c["context"] == ctx)
                order = np.argsort(c["memory.l2.capacity"][sel])
                l2 = c["memory.l2.capacity"][sel][order]
                bound = c["fa_decode.bound"][sel][order]
                t = c["fa_decode.time_s"][sel][order]
                kv = float(c["fa_decode.kv_cache_bytes"][sel][0])
                if tp == 1 and batch == 1:
                    kv_per_token = kv / float(ctx)
                off = np.flatnonzero(bound != dev.main_memory.name)
                if kv > hbm_cap:
                    where = f"— (does not fit in {fmt.b(hbm_cap)} HBM)"
                    cells = [where, str(bound[-1]), "—"]
                elif off.size == 0:
                    cells = ["— (not within the swept L2)", str(bound[-1]), "—"]
                else:
                    i = int(off[0])
                    if i == 0:
                        cells = [f"{_gib(l2[0])} (the real L2)", str(bound[0]),
                                 f"{fmt.t(t[0])} (already on chip)"]  # fmt: skip
                    else:
                        cells = [_gib(l2[i]), str(bound[i]), f"{fmt.t(t[0])} → {fmt.t(t[i])}"]
                rows.append([str(tp), str(batch), str(ctx), _gib(kv), *cells])
    cols = ["TP", "batch", "context", "KV cache per GPU (all layers)", "smallest swept L2 off HBM",
            "bound there", f"attention time at {_gib(base_l2)} → there"]  # fmt: skip
    out["table"] = Table(cols, rows, "rrrrlll")

    # sensitivity, as the sweep summary prints it
    inputs = [n for n in r.inputs if n in ("batch", "tp", "context", "memory.l2.capacity")]
    el = elasticities(r.columns, "fa_decode.time_s", inputs)
    out["sensitivity"] = Table(
        ["input", "global", "local median", "local range", "R²"],
        [
            [
                f"`{e.input}`",
                f"{e.elasticity:+.3f}",
                f"{e.local_median:+.3f}",
                f"{e.local_min:+.2f} … {e.local_max:+.2f}",
                f"{e.r2:.2f}",
            ]
            for e in el
        ],
        "lrrrr",
    )
    l2e = next(e for e in el if e.input == "memory.l2.capacity")
    out["l2_step_elasticity"] = f"{l2e.local_min:+.2f}"
    out["l2_median_elasticity"] = f"{l2e.local_median:+.1f}"

    # the numbers of the answer
    assert kv_per_token is not None
    out["kv_per_token"] = _gib(kv_per_token)
    out["base_l2"] = _gib(base_l2)
    out["max_l2"] = _gib(float(l2s.max()))
    out["l2_columns"] = str(len(l2s))
    one_user = kv_per_token * 4096
    out["kv_one_user_4k"] = _gib(one_user)
    out["kv_eight_users_4k"] = _gib(8 * one_user)
    out["kv_vs_l2"] = f"{one_user / base_l2:.0f}× to {8 * one_user / base_l2:.0f}×"
    l2_bw = dev.level_bandwidth_Bps("l2")
    hbm_bw = dev.level_bandwidth_Bps(dev.main_memory.name)
    out["l2_bw"] = fmt.bw(l2_bw)
    out["hbm_bw"] = fmt.bw(hbm_bw)
    out["l2_speedup"] = fmt.times(l2_bw / hbm_bw)
    peak = dev.peak_flops("bf16")
    out["hbm_ridge"] = f"~{peak / hbm_bw:.0f} FLOP/B"
    out["l2_ridge"] = f"~{peak / l2_bw:.0f} FLOP/B"
    from hwsim.spec.model import load_model_config

    m = load_model_config(str(c["model"][0]))
    layers = m.layers
    # FLOPs per KV byte of one layer (fa_decode.time_s is one layer's attention)
    flops = c["fa_decode.attainable_flops"] * c["fa_decode.time_s"]
    per_layer = c["fa_decode.kv_cache_bytes"] / layers
    out["intensity"] = f"~{float(np.median(flops / per_layer)):.0f} FLOP/B"
    out["layers"] = str(layers)
    out["other_layers"] = str(layers - 1)
    return out
