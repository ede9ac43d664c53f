"""Fit the GEMM and streaming-kernel profiles on the measured A100/MI210 table (scipy).

Run ``python -m hwsim.validate.gpu_ops_fit`` to print the fitted parameters as YAML (for
``devices/profiles/gemm.yaml`` and ``elementwise.yaml``) and the per-row residuals. It writes no
files. The fit minimises the squared relative error of the table's own metric (TFLOP/s or
Gelem/s), i.e. ``measured_time / predicted_time - 1`` per row, with the full simulator in the
loop, so the fitted numbers are exactly what ``hwsim validate --suite gpu-ops`` then reports.

Free parameters per architecture (all physical, none per shape):

* GEMM (5): achievable fraction of the fp16 matrix peak, achievable fraction of HBM bandwidth,
  host launch time, host tail time, fixed per-CTA cost;
* each streaming-kernel family - softmax, layernorm, gelu (5 each): achievable HBM fraction,
  looped-reduction fraction, host launch, host tail, fixed per-CTA cost.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

import numpy as np
from scipy.optimize import least_squares

from hwsim.plan.gemm import GemmProfile
from hwsim.plan.streaming import ElementwiseProfile, StreamKernelProfile, elementwise_profile
from hwsim.spec.load import load_device
from hwsim.validate.gpu_ops import Measured, load_table, predict_metric

SRC = "fit-gpu-ops"
#: Rows beyond this relative error are penalised HINGE_WEIGHT times harder (target: 25 %).
MAX_ROW_ERROR = 0.235
HINGE_WEIGHT = 10.0
ARCH_OF_TABLE_DEVICE = {"a100-sxm-80gb": "ampere", "mi210": "cdna2"}
#: (name, lower, upper, start) of the GEMM parameters; times in microseconds.
GEMM_PARAMS = (
    ("matrix_fraction", 0.3, 1.0, 0.9),
    ("hbm_fraction", 0.1, 1.0, 0.8),
    ("host_launch_us", 0.0, 100.0, 20.0),
    ("host_tail_us", 0.0, 100.0, 1.0),
    ("cta_overhead_us", 0.0, 20.0, 1.0),
)
STREAM_PARAMS = (
    ("hbm_fraction", 0.05, 1.0, 0.6),
    ("looped_fraction", 0.3, 1.0, 0.8),
    ("host_launch_us", 0.0, 100.0, 20.0),
    ("host_tail_us", 0.0, 100.0, 5.0),
    ("cta_overhead_us", 0.0, 20.0, 1.0),
)


def _q(v: float) -> dict[str, str]:
    return {"value": f"{v:.6g}", "source": SRC}


def _us(v: float) -> dict[str, str]:
    return {"value": f"{max(v, 0.0):.4g} us", "source": SRC}


def gemm_profile_from(x: Sequence[float] | np.ndarray, register_file: str) -> GemmProfile:
    mu, eta, launch, tail, cta = x
    return GemmProfile.model_validate(
        {
            "matrix_fraction": {"fp16": _q(mu)},
            "hbm_fraction": _q(eta),
            "host_launch": _us(launch),
            "host_tail": _us(tail),
            "cta_overhead": _us(cta),
            "register_file": {"value": register_file, "source": SRC},
        }
    )


def stream_profile_from(
    x: Sequence[float] | np.ndarray, base: StreamKernelProfile
) -> StreamKernelProfile:
    """``base`` with the fitted values replaced (its structural ``row_on_chip`` is kept)."""
    eta, lf, launch, tail, cta = x
    fitted = StreamKernelProfile.model_validate(
        {
            "hbm_fraction": _q(eta),
            "looped_fraction": _q(lf),
            "host_launch": _us(launch),
            "host_tail": _us(tail),
            "cta_overhead": _us(cta),
        }
    )
    return fitted.model_copy(update={"row_on_chip": base.row_on_chip})


def _fit(
    residual: Callable[[np.ndarray], np.ndarray],
    params: Sequence[tuple[str, float, float, float]],
    starts: Sequence[Sequence[float]] = (),
) -> tuple[np.ndarray, np.ndarray]:
    lo = np.array([p[1] for p in params])
    hi = np.array([p[2] for p in params])

    def penalised(x: np.ndarray) -> np.ndarray:
        # squared relative errors, plus a steep hinge on rows beyond MAX_ROW_ERROR so that
        # the fit trades a little MAPE for the per-row bound
        e = residual(x)
        return np.concatenate([e, HINGE_WEIGHT * np.maximum(0.0, np.abs(e) - MAX_ROW_ERROR)])

    best = None
    for x0 in [np.array([p[3] for p in params]), *map(np.asarray, starts)]:
        # the plan's tile choice makes the model piecewise smooth: use a coarse step
        r = least_squares(penalised, np.clip(x0, lo, hi), bounds=(lo, hi), diff_step=1e-2)
        if best is None or r.cost < best.cost:
            best = r
    assert best is not None
    return best.x, residual(best.x)


def fit_gemm(device_name: str, rows: list[Measured]) -> tuple[np.ndarray, np.ndarray]:
    """Fitted GEMM parameter vector (see GEMM_PARAMS) and per-row relative metric errors."""
    dev = load_device(device_name)
    sel = [r for r in rows if r.device == device_name and r.op == "matmul"]
    rf = "512 KiB" if ARCH_OF_TABLE_DEVICE[device_name] == "cdna2" else "256 KiB"

    def res(x: np.ndarray) -> np.ndarray:
        prof = gemm_profile_from(x, rf)
        return np.array([predict_metric(r, dev, gemm=prof) / r.metric - 1 for r in sel])

    return _fit(res, GEMM_PARAMS, [[0.93, 0.88, 25.0, 1.0, 1.0], [0.7, 0.4, 30.0, 1.0, 3.0]])


def fit_stream(
    device_name: str, family: str, rows: list[Measured]
) -> tuple[np.ndarray, np.ndarray]:
    """Fitted streaming parameters of ``family`` (softmax/layernorm/gelu) and residuals."""
    dev = load_device(device_name)
    base, _ = elementwise_profile(dev)
    sel = [r for r in rows if r.device == device_name and r.op == family]

    # an elementwise kernel never loops, so its looped_fraction is not identifiable: fix it at 1
    free = [i for i, p in enumerate(STREAM_PARAMS) if not (family == "gelu" and i == 1)]

    def full(xf: np.ndarray) -> np.ndarray:
        x = np.ones(len(STREAM_PARAMS))
        x[free] = xf
        return x

    def res(xf: np.ndarray) -> np.ndarray:
        prof = ElementwiseProfile.model_validate(
            {
                **{f: getattr(base, f) for f in ("softmax", "layernorm", "gelu")},
                family: stream_profile_from(full(xf), getattr(base, family)),
            }
        )
        return np.array([predict_metric(r, dev, elementwise=prof) / r.metric - 1 for r in sel])

    starts = [[0.3, 0.9, 10.0, 15.0, 0.5], [0.8, 0.8, 38.0, 10.0, 0.0]]
    xf, e = _fit(res, [STREAM_PARAMS[i] for i in free], [[s[i] for i in free] for s in starts])
    return full(xf), e


#: Source key of the fitted values of each measured device (cited in the profile YAML).
FIT_SOURCE = {"a100-sxm-80gb": "fit-a100", "mi210": "fit-mi210"}
TABLE_NAME = "gpu_operators_a100_mi210.csv"
#: Generations without a measured table take the fitted values of the nearest measured one
#: (same vendor software stack: cuBLAS/PyTorch-CUDA or rocBLAS/PyTorch-ROCm), with the reason
#: that results repeat (hwsim.sim.calibration); see docs/calibration-gpu-ops.md. ``default``
#: (any other arch) follows ampere.
INHERIT = {
    "hopper": ("ampere", "no Hopper GEMM/operator measurements; nearest measured NVIDIA stack"),
    "blackwell": (
        "ampere",
        "no Blackwell GEMM/operator measurements; nearest measured NVIDIA stack",
    ),
    "cdna3": ("cdna2", "no CDNA 3 GEMM/operator measurements; nearest measured AMD stack"),
    "cdna4": ("cdna2", "no CDNA 4 GEMM/operator measurements; nearest measured AMD stack"),
    "default": ("ampere", "architecture without its own profile entry"),
}
#: Cited values that replace an inherited fitted value where the device's own published
#: measurement is better evidence than another system's fit. MI210's fitted HBM fraction
#: (0.36-0.39) is a property of the measured MI210 system (gpu-benches' MI210 streams 0.85 of
#: peak), so CDNA 3 takes MI300X's own published stream fraction instead (docs: 'MI300X').
CITED = {
    "cdna3": {
        "hbm_fraction": "{value: 0.81, source: mi300x-babelstream, "
        "derived: '~4.3 TB/s BabelStream / 5.3 TB/s peak'}"
    }
}
SOURCES = {
    "fit-a100": "hwsim.validate.gpu_ops_fit on the a100-sxm-80gb rows of "
    "workloads/measured/gpu_operators_a100_mi210.csv (LLMCompass, PyTorch FP16); residuals in "
    "docs/calibration-gpu-ops.md",
    "fit-mi210": "hwsim.validate.gpu_ops_fit on the mi210 rows of "
    "workloads/measured/gpu_operators_a100_mi210.csv (LLMCompass, PyTorch FP16); residuals in "
    "docs/calibration-gpu-ops.md",
    "mi300x-babelstream": "Ambati et al., 'AMD MI300X GPU Performance Analysis', arXiv:2510.27583 "
    "(2025): BabelStream on MI300X reaches about 81 % of the 5.3 TB/s peak (NVIDIA GPUs up to 90 %"
    " in the same study); figure as the paper's abstract pages summarise it. A published "
    "microbenchmark, not a fit: no MI300X operator table is used",
    "nv-regs": "CUDA C++ Programming Guide, table 'Technical Specifications per Compute "
    "Capability': 64K 32-bit registers per SM (256 KiB) for compute capability 7.0-10.0",
    "amd-regs": "AMD CDNA2/CDNA3 ISA reference guides: 512 unified VGPR/AGPR x 64 lanes x 4 B "
    "per SIMD, 4 SIMDs per CU (512 KiB)",
    "nv-tmem": "NVIDIA Blackwell (sm_100) tuning guide and CUTLASS docs: 256 KiB of Tensor Memory "
    "per SM holds the MMA accumulators beside the 256 KiB register file, so accumulator tiles may "
    "use 512 KiB in all",
    "pytorch-softmax": "PyTorch aten/src/ATen/native/cuda/SoftMax.cu (also built for ROCm): "
    "rows of at most 1024 elements use the persistent warp softmax that holds the row in "
    "registers (read once); longer rows use the block softmax that reads the input again",
}


def _yaml_header(family: str) -> list[str]:
    out = [
        f"# {family} kernel profiles per architecture generation. GENERATED by",
        f"#   python -m hwsim.validate.gpu_ops_fit {family} > devices/profiles/{family}.yaml",
        "# Fitted values cite fit-<device>; generations without measurements inherit, as the",
        "# calibration block says (hwsim.sim.calibration reports it with every result; see",
        "# docs/calibration-gpu-ops.md).",
        "sources:",
    ]
    out += [f'  {k}: "{v}"' for k, v in SOURCES.items()]
    out += ["calibration:", "  fits:"]
    out += [
        f"    {src}: {{arch: {ARCH_OF_TABLE_DEVICE[dev]}, device: {dev}, table: {TABLE_NAME}}}"
        for dev, src in FIT_SOURCE.items()
    ]
    out += ["  inherit:"]
    out += [f'    {a}: {{from: {b}, reason: "{why}"}}' for a, (b, why) in INHERIT.items()]
    return out


def _inherit_lines(
    overrides: dict[str, list[str]] | None = None, parts: tuple[str, ...] = ()
) -> list[str]:
    """``arch: *base`` per inherited generation; with overrides (structural lines, or the
    CITED values), a YAML merge of the base - per sub-entry ``parts`` when given."""
    out = []
    for arch, (base, _) in INHERIT.items():
        extra = list((overrides or {}).get(arch, []))
        cited = [f"  {k}: {v}" for k, v in CITED.get(arch, {}).items()]
        if parts and cited:
            out.append(f"{arch}:")
            for part in parts:
                out += [f"  {part}:", f"    <<: *{base}_{part}", *("  " + c for c in cited)]
        elif extra or cited:
            out += [f"{arch}:", f"  <<: *{base}", *extra, *cited]
        else:
            out.append(f"{arch}: *{base}")
    return out


def render_gemm_yaml(rows: list[Measured]) -> str:
    """The whole ``devices/profiles/gemm.yaml`` text from a fresh fit."""
    out = _yaml_header("gemm")
    for dev, arch in ARCH_OF_TABLE_DEVICE.items():
        x, e = fit_gemm(dev, rows)
        mu, eta, launch, tail, cta = x
        src = FIT_SOURCE[dev]
        reg = ("512 KiB", "amd-regs") if arch.startswith("cdna") else ("256 KiB", "nv-regs")
        out += [
            f"# {dev}: matmul MAPE {np.mean(abs(e)):.2%}, max {abs(e).max():.2%} "
            f"over {len(e)} rows",
            f"{arch}: &{arch}",
            "  matrix_fraction:",
            f"    fp16: {{value: {mu:.4f}, source: {src}, note: 'bf16, fp8 and int8 reuse it'}}",
            f"    default: {{value: {mu:.4f}, source: {src}}}",
            f"  hbm_fraction: {{value: {eta:.4f}, source: {src}}}",
            f"  host_launch: {{value: {launch:.3g} us, source: {src}}}",
            f"  host_tail: {{value: {tail:.3g} us, source: {src}}}",
            f"  cta_overhead: {{value: {cta:.3g} us, source: {src}}}",
            f"  register_file: {{value: {reg[0]}, source: {reg[1]}}}",
        ]
    # Blackwell keeps accumulators in Tensor Memory: the same rules, a larger accumulator budget
    tmem = {"blackwell": ["  register_file: {value: 512 KiB, source: nv-tmem}"]}
    return "\n".join(out + _inherit_lines(tmem)) + "\n"


def render_elementwise_yaml(rows: list[Measured]) -> str:
    """The whole ``devices/profiles/elementwise.yaml`` text from a fresh fit."""
    out = _yaml_header("elementwise")
    for dev, arch in ARCH_OF_TABLE_DEVICE.items():
        out.append(f"{arch}: &{arch}")
        src = FIT_SOURCE[dev]
        for fam in ("softmax", "layernorm", "gelu"):
            x, e = fit_stream(dev, fam, rows)
            eta, lf, launch, tail, cta = x
            out.append(
                f"  # {dev} {fam}: MAPE {np.mean(abs(e)):.2%}, max {abs(e).max():.2%} "
                f"over {len(e)} rows"
            )
            out.append(f"  {fam}: &{arch}_{fam}")
            if fam == "softmax":
                out.append("    row_on_chip: {value: 4 KiB, source: pytorch-softmax}")
            out += [
                f"    hbm_fraction: {{value: {eta:.4f}, source: {src}}}",
                f"    looped_fraction: {{value: {lf:.4f}, source: {src}}}",
                f"    host_launch: {{value: {launch:.3g} us, source: {src}}}",
                f"    host_tail: {{value: {tail:.3g} us, source: {src}}}",
                f"    cta_overhead: {{value: {cta:.3g} us, source: {src}}}",
            ]
    return "\n".join(out + _inherit_lines(parts=("softmax", "layernorm", "gelu"))) + "\n"


def main(argv: list[str] | None = None) -> None:
    """``gemm`` or ``elementwise``: print that profile YAML from a fresh fit (no files written)."""
    args = sys.argv[1:] if argv is None else argv
    rows = load_table()
    which = args[0] if args else "gemm"
    if which == "gemm":
        print(render_gemm_yaml(rows), end="")
    elif which == "elementwise":
        print(render_elementwise_yaml(rows), end="")
    else:
        raise SystemExit("usage: python -m hwsim.validate.gpu_ops_fit gemm|elementwise")


if __name__ == "__main__":
    main()
