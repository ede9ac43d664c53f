"""Fit the LPU's ``op_latency`` on the one public Groq row marked ``fit`` (scipy ``brentq``).

Run ``python -m hwsim.validate.nongpu_fit`` to print the fitted value (for
``devices/profiles/lpu.yaml``) and every Groq row's error with it; it writes no files.

Why this parameter and why one row: Groq's plain-decode speeds imply 40-50 µs per decoder
layer for 8B and 70B models alike, where the weight streams and the chip-to-chip collectives
the LPU mapper charges come to ~12 µs (docs/devices/lpu.md). What is missing is per operator,
not per byte or per hop: no public figure states it. One number per architecture, fitted on
one measurement with a known method (LLMPerf's raw data, Llama-2-70B, January 2024), leaves
the four other Groq rows (Llama-3/3.1 8B and 70B, Mixtral-8x7B: another size, another year,
an MoE) as held-out checks of the form, not of the value.
"""

from __future__ import annotations

from scipy.optimize import brentq

from hwsim.sim.mapper import Mapper, mapper_for
from hwsim.spec.load import load_device
from hwsim.validate.nongpu import Published, load_table, predict

#: Search interval of the fit (seconds): zero to far beyond any plausible per-op cost.
BRACKET_S = (0.0, 50e-6)


def lpu_with(device: str, op_latency_s: float) -> Mapper:
    """The device's LPU mapper with ``op_latency`` replaced (a trial value of the fit)."""
    return mapper_for(load_device(device)).with_profile([f"op_latency={op_latency_s!r} s"])


def fit_rows() -> list[Published]:
    return [r for r in load_table() if r.role == "fit"]


def fit_op_latency(row: Published) -> float:
    """The op latency (s) at which hwsim's prediction of ``row`` equals its measurement."""

    def gap(lat: float) -> float:
        return predict(row, lpu_with(row.device, lat))[0] / row.value - 1.0

    return float(brentq(gap, *BRACKET_S, xtol=1e-12))


def main() -> None:
    for row in fit_rows():
        lat = fit_op_latency(row)
        print(f"# fit on {row.model} {row.device} {row.value:g} {row.metric} ({row.source})")
        print(f"op_latency: {{value: {lat * 1e6:.2f} us, source: fit-groq}}")
        for other in load_table():
            if other.device != row.device or not other.scored:
                continue
            pred = predict(other, lpu_with(other.device, round(lat * 1e8) / 1e8))[0]
            tag = "fit" if other.role == "fit" else "held-out"
            err = pred / other.value - 1
            what = f"{other.model:14s} {other.date} {other.value:8g}"
            print(f"  {tag:8s} {what} -> {pred:8.1f} ({err:+.1%})")


if __name__ == "__main__":
    main()
