"""Facts for docs/calibration-gpu-ops.md: the fitted GEMM and streaming-kernel parameters (read
from devices/profiles/gemm.yaml and elementwise.yaml, as the fit wrote them), the physical
reading of those numbers (fractions times the devices' own peaks), the measured table's
landmarks (from workloads/measured/gpu_operators_a100_mi210.csv through
:func:`hwsim.validate.gpu_ops.load_table`), the worst residuals of ``hwsim validate --suite
gpu-ops``, and what the inherited profiles predict for generations without a table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from _gen import fmt
from _gen.core import Table

ROOT = Path(__file__).resolve().parents[2]
PROFILES = ROOT / "devices" / "profiles"

#: What each fitted parameter means (the fit module's docstring says the same).
MEANING = {
    "matrix_fraction": "achievable fraction of the dense fp16 matrix peak",
    "hbm_fraction": "achievable fraction of HBM peak bandwidth",
    "looped_fraction": "bandwidth fraction of rows too long to stay on chip (read twice)",
    "host_launch": "framework dispatch + launch before the kernel",
    "host_tail": "host work after launch, overlapping the kernel",
    "cta_overhead": "fixed cost per CTA (prologue, pipeline fill), paid per wave",
}
FAMILIES = {
    "softmax": "softmax (eager)",
    "layernorm": "layernorm (compiled)",
    "gelu": "gelu (compiled)",
}


def _load(name: str) -> dict[str, Any]:
    data = yaml.safe_load((PROFILES / f"{name}.yaml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _num(entry: Any) -> float:
    """A profile number in SI units (``27.4 us`` → 2.74e-5; a bare fraction as it is)."""
    from hwsim.spec.units import Dim, parse_quantity

    v = entry["value"] if isinstance(entry, dict) else entry
    if isinstance(v, str):
        return parse_quantity(v, Dim.TIME)
    return float(v)


def _is_fit(entry: Any) -> bool:
    return isinstance(entry, dict) and str(entry.get("source", "")).startswith("fit-")


def _cell(key: str, entry: Any) -> str:
    if entry is None:
        return "-"
    if isinstance(entry, dict) and "value" not in entry:  # per-dtype matrix_fraction
        entry = entry.get("fp16", entry.get("default"))
    if key.startswith("host_") or key == "cta_overhead":
        return fmt.t(_num(entry))
    return f"{_num(entry):.3f}"


def _fitted_archs() -> list[tuple[str, str]]:
    """(arch, table device) of every fitted entry, as the fit module maps them."""
    from hwsim.validate.gpu_ops_fit import ARCH_OF_TABLE_DEVICE

    return [(arch, dev) for dev, arch in ARCH_OF_TABLE_DEVICE.items()]


def _own_values(entry: dict[str, Any], parent: dict[str, Any], prefix: str = "") -> list[str]:
    """The values an inheriting entry sets itself (differing from the entry it inherits), as
    ``path = value (source)``."""
    out = []
    for key, val in entry.items():
        if not isinstance(val, dict):
            continue
        other = parent.get(key)
        if "value" in val:
            if val != other:
                out.append(f"`{prefix}{key}` = {val['value']} ({val.get('source', '?')})")
        else:
            out += _own_values(val, other if isinstance(other, dict) else {}, f"{prefix}{key}.")
    return out


def _fraction(entry: Any) -> float:
    if isinstance(entry, dict) and "value" not in entry:
        entry = entry.get("fp16", entry.get("default"))
    return _num(entry)


def facts() -> dict[str, Any]:
    from hwsim.sim.gpu_gemm import simulate_gemm
    from hwsim.spec.load import load_device
    from hwsim.validate.gpu_ops import load_table

    gemm, elem = _load("gemm"), _load("elementwise")
    archs = _fitted_archs()
    out: dict[str, Any] = {}

    # ---- parameter tables -------------------------------------------------------------------
    keys = [
        k
        for k in MEANING
        if any(
            _is_fit(gemm[a].get(k))
            or (isinstance(gemm[a].get(k), dict) and _is_fit(gemm[a][k].get("fp16")))
            for a, _ in archs
        )
    ]
    out["gemm_params"] = Table(
        ["parameter", "meaning", *(f"{a} ({d})" for a, d in archs)],
        [[f"`{k}`", MEANING[k], *(_cell(k, gemm[a].get(k)) for a, _ in archs)] for k in keys],
        "ll" + "r" * len(archs),
    )
    ekeys = [k for k in MEANING if k != "matrix_fraction"]
    rows = []
    for a, _ in archs:
        for fam, label in FAMILIES.items():
            e = elem[a][fam]
            rows.append([label, a, *(_cell(k, e.get(k) if _is_fit(e.get(k)) else None)
                                      for k in ekeys)])  # fmt: skip
    out["stream_params"] = Table(["family", "arch", *(f"`{k}`" for k in ekeys)], rows,
                                 "ll" + "r" * len(ekeys))  # fmt: skip

    # ---- inherited entries --------------------------------------------------------------------
    inh = []
    for name, data in (("gemm", gemm), ("elementwise", elem)):
        for arch, rule in data.get("calibration", {}).get("inherit", {}).items():
            own = _own_values(data.get(arch) or {}, data.get(rule["from"]) or {})
            inh.append([f"{name}.yaml", arch, rule["from"], rule.get("reason", ""),
                        "; ".join(own) or "-"])  # fmt: skip
    out["inherit"] = Table(["profile", "arch", "inherits", "why", "own values (not fitted)"],
                           inh, "lllll")  # fmt: skip

    # ---- the physical reading -----------------------------------------------------------------
    by_arch = {a: d for a, d in archs}
    for arch, key in (("ampere", "a100"), ("cdna2", "mi210")):
        dev = load_device(by_arch[arch])
        frac = _fraction(gemm[arch]["matrix_fraction"])
        hbm = _fraction(gemm[arch]["hbm_fraction"])
        peak = dev.peak_flops("fp16")
        bw = dev.level_bandwidth_Bps(dev.main_memory.name)
        out[f"{key}_matrix_pct"] = fmt.pct(frac)
        out[f"{key}_peak"] = fmt.rate(peak)
        out[f"{key}_hbm_fraction"] = f"{hbm:.3g}"
        out[f"{key}_hbm_peak"] = fmt.bw(bw)
        out[f"{key}_stream_bw"] = fmt.bw(hbm * bw)
        out[f"{key}_launch_gemm"] = fmt.t(_num(gemm[arch]["host_launch"]))
        for fam in FAMILIES:
            e = elem[arch][fam]
            out[f"{key}_launch_{fam}"] = fmt.t(_num(e["host_launch"]))
            out[f"{key}_tail_{fam}"] = fmt.t(_num(e["host_tail"]))
            out[f"{key}_plateau_{fam}"] = fmt.t(_num(e["host_launch"]) + _num(e["host_tail"]))
            out[f"{key}_hbm_{fam}"] = f"{_num(e['hbm_fraction']):.3g}"
            out[f"{key}_looped_{fam}"] = f"{_num(e.get('looped_fraction', 1.0)):.2g}"

    # ---- landmarks of the measured table --------------------------------------------------------
    table = load_table()

    def measured(device: str, op: str, pred: Any) -> list[float]:
        return [r.metric for r in table if r.device == device and r.op == op and pred(r)]

    a100 = by_arch["ampere"]
    dips = measured(a100, "matmul", lambda r: r.n == 12288 and 512 <= r.m <= 2048)
    out["a100_dip_range"] = f"{min(dips):.0f}-{max(dips):.0f} TFLOP/s"
    d = load_device(a100)
    waves = []
    for m in (512, 1024, 2048):
        p = simulate_gemm(d, m, 12288, 12288, "fp16").plan
        waves.append(f"{p.get('ctas')} CTAs in {p.get('waves')} waves at m = {m}")
    out["a100_dip_waves"] = ", ".join(waves)
    out["a100_sms"] = str(d.compute.units_count)
    mi = measured(by_arch["cdna2"], "matmul", lambda r: True)
    out["mi210_best_tflops"] = f"{max(mi):.0f} TFLOP/s"
    # the [4096, n] series: rows read once (n < 16k) against rows read twice (16k-32k)
    ln_short = measured(a100, "layernorm", lambda r: r.m == 4096 and (r.n or 0) < 16384)
    ln_long = measured(a100, "layernorm", lambda r: r.m == 4096 and (r.n or 0) >= 16384)
    out["a100_layernorm_drop"] = (
        f"from {max(ln_short):.0f} to {min(ln_long):.0f}-{max(ln_long):.0f} Gelem/s"
    )

    # ---- worst residuals ----------------------------------------------------------------------
    from _gen.reference import _suite_dict

    suite = _suite_dict("gpu-ops")
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in suite["rows"]:
        groups.setdefault(r["group"], []).append(r)
    worst = []
    for g, rs in groups.items():
        rs = sorted(rs, key=lambda r: -abs(r["error"]))[:2]
        for r in rs:
            worst.append([g, r["case"].split(" ", 2)[-1], f"{r['measured']:.4g} {r['unit']}",
                          f"{r['predicted']:.4g}", f"{100 * r['error']:+.1f}%"])  # fmt: skip
    out["worst_rows"] = Table(["group", "shape", "measured", "predicted", "error"], worst, "llrrr")
    gm = suite.get("group_mape", {})
    weakest = max(gm, key=lambda g: gm[g])
    out["weakest_group"] = f"{weakest} ({100 * gm[weakest]:.1f}% MAPE)"

    # ---- generations without a table ------------------------------------------------------------
    rows = []
    for key, dtype in (("h100-sxm", "bf16"), ("h200", "bf16"), ("b200", "bf16"),
                       ("mi300x", "bf16")):  # fmt: skip
        dev = load_device(key)
        r = simulate_gemm(dev, 8192, 8192, 8192, dtype)
        peak = dev.peak_flops(dtype)
        rows.append([key, dev.arch, fmt.rate(peak), fmt.rate(r.tflops * 1e12),
                     fmt.pct(r.tflops * 1e12 / peak), r.bound])  # fmt: skip
        out[f"gemm8192_{key.split('-')[0]}"] = fmt.rate(r.tflops * 1e12)
        out[f"gemm8192_{key.split('-')[0]}_bound"] = r.bound.upper() if r.bound == "l2" else r.bound
        out[f"gemm8192_{key.split('-')[0]}_pct"] = fmt.pct(r.tflops * 1e12 / peak)
        out[f"peak_{key.split('-')[0]}"] = fmt.rate(peak)
    out["inherited_gemm"] = Table(
        ["device", "arch", "bf16 peak", "8192³ bf16 predicted", "of peak", "bound"], rows,
        "llrrrl",
    )  # fmt: skip
    from hwsim.validate.gpu_ops import MAX_TARGET
    from hwsim.validate.gpu_ops_fit import MAX_ROW_ERROR

    out["hinge"] = fmt.pct(MAX_ROW_ERROR, 1)
    out["max_target"] = fmt.pct(MAX_TARGET)
    out["cdna3_hbm_fraction"] = f"{_fraction(gemm['cdna3']['hbm_fraction']):.3g}"
    return out
