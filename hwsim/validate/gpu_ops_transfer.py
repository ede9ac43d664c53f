"""How well does a profile carry over to an architecture it was not fitted on? (leave-one-out)

hwsim predicts H100, H200, B200 and MI300X GEMMs and memory-bound operators with a profile
fitted on another architecture (``calibration.inherit`` in ``devices/profiles/gemm.yaml``). Only
two architectures have a measured table (A100 = ampere, MI210 = cdna2), so the one honest
estimate of that error is to predict each measured device with what it would have got had its
own table been missing:

* ``inherit``: the other architecture's whole fitted profile (GEMM and streaming kernels);
* ``prior``: its own fit, except every ``hbm_fraction`` replaced by the device's published
  stream-benchmark fraction (:data:`STREAM_FRACTION`) - the rule that gives MI300X its HBM
  fraction - which isolates that rule's error;
* ``inherit+prior``: the other architecture's profile with the device's own stream fraction,
  i.e. exactly how MI300X is predicted (cdna2's profile with MI300X's own HBM fraction).

Run ``python -m hwsim.validate.gpu_ops_transfer`` for the Markdown table that
docs/calibration-gpu-ops.md quotes. Nothing here is fitted and nothing is written.
"""

from __future__ import annotations

import sys
from collections import defaultdict

import numpy as np

from hwsim.plan.gemm import GemmProfile
from hwsim.plan.streaming import ElementwiseProfile
from hwsim.spec.load import load_device
from hwsim.spec.profiles import load_profile
from hwsim.validate.gpu_ops import Measured, load_table, predict_metric
from hwsim.validate.gpu_ops_fit import ARCH_OF_TABLE_DEVICE

#: Published stream-benchmark HBM fraction of each measured device (copy kernel, full
#: occupancy), the same kind of evidence as MI300X's 0.81 (devices/profiles: mi300x-babelstream):
#: A100: 1.38 TB/s of 1.555 TB/s on the A100 40GB (gpu-benches gpu-stream/a100_40.txt, 'scale'
#: at 1024 blocks; the 80GB reads 1.73-1.85 of 2.039 TB/s, 0.85-0.91, per devices/a100-sxm-80gb);
#: MI210: 1.36 TB/s of 1.6 TB/s (gpu-benches gpu-stream/mi210.txt, 'scale' at 1024 blocks).
STREAM_FRACTION = {"a100-sxm-80gb": 0.89, "mi210": 0.85}
VARIANTS = ("inherit", "prior", "inherit+prior")


def _with_hbm(
    gemm: GemmProfile, ew: ElementwiseProfile, eta: float | None
) -> tuple[GemmProfile, ElementwiseProfile]:
    """The profiles with every ``hbm_fraction`` set to ``eta`` (None: unchanged)."""
    if eta is None:
        return gemm, ew
    g = gemm.model_copy(
        update={"hbm_fraction": gemm.hbm_fraction.model_copy(update={"value": eta})}
    )
    parts = {}
    for fam in ("softmax", "layernorm", "gelu"):
        kp = getattr(ew, fam)
        parts[fam] = kp.model_copy(
            update={"hbm_fraction": kp.hbm_fraction.model_copy(update={"value": eta})}
        )
    return g, ew.model_copy(update=parts)


def transfer_errors(rows: list[Measured], variant: str) -> dict[tuple[str, str], list[float]]:
    """Relative metric errors (predicted / measured - 1) per (device, op) under ``variant``."""
    if variant not in VARIANTS:
        raise ValueError(f"variant: expected one of {', '.join(VARIANTS)}, got {variant!r}")
    out: dict[tuple[str, str], list[float]] = defaultdict(list)
    for dev_name, arch in ARCH_OF_TABLE_DEVICE.items():
        other = next(a for a in ARCH_OF_TABLE_DEVICE.values() if a != arch)
        use = other if variant.startswith("inherit") else arch
        gemm = load_profile("gemm", use, GemmProfile, fallback=None)
        ew = load_profile("elementwise", use, ElementwiseProfile, fallback=None)
        eta = STREAM_FRACTION[dev_name] if variant.endswith("prior") else None
        gemm, ew = _with_hbm(gemm, ew, eta)
        dev = load_device(dev_name)
        for r in rows:
            if r.device == dev_name:
                pred = predict_metric(r, dev, gemm=gemm, elementwise=ew)
                out[(dev_name, r.op)].append(pred / r.metric - 1)
    return dict(out)


def transfer_table(rows: list[Measured] | None = None) -> str:
    """Markdown table: MAPE (and worst row) per device and operator for each variant."""
    rows = load_table() if rows is None else rows
    errs = {v: transfer_errors(rows, v) for v in VARIANTS}
    lines = [
        "| device (op) | own fit | " + " | ".join(VARIANTS) + " |",
        "|---|---:|" + "---:|" * len(VARIANTS),
    ]
    own: dict[tuple[str, str], list[float]] = defaultdict(list)
    for r in rows:
        own[(r.device, r.op)].append(predict_metric(r, load_device(r.device)) / r.metric - 1)
    for key in sorted(own):
        cells = [_cell(own[key])] + [_cell(errs[v][key]) for v in VARIANTS]
        lines.append(f"| {key[0]} {key[1]} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _cell(e: list[float]) -> str:
    a = np.abs(np.asarray(e))
    bias = float(np.median(e))
    return f"{a.mean():.0%} (max {a.max():.0%}, median {bias:+.0%})"


def main(argv: list[str] | None = None) -> None:
    """Print the leave-one-out table (MAPE, worst row and median signed error)."""
    _ = sys.argv[1:] if argv is None else argv
    print(transfer_table(), end="")


if __name__ == "__main__":
    main()
