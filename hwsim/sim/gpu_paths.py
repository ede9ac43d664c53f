"""Which matrix instructions an attention kernel issues on a GPU, and what they allow.

The device spec lists the matrix-instruction families a chip issues and the rate each sustains
(``compute.matrix_paths``: Ampere ``mma_sync``; Hopper ``mma_sync`` at about 2/3 of ``wgmma``;
Blackwell ``tcgen05``; CDNA ``mfma``) and its register file (``registers_per_unit``,
``max_registers_per_thread``). A kernel profile names the family it issues
(``instruction_path``), how it moves tiles (``data_movement``) and how many warps share a CTA's
matmuls (``mma_warps``). From those, with no fitted number:

* :func:`matrix_rate` - the chip's dense FLOP/s on the kernel's path for a dtype (a path the
  chip does not have falls back to its native one, with a note);
* :func:`accumulator_budget` - the FP32 accumulator bytes a CTA's threads can hold in
  registers: ``threads × (min(max per thread, register file ÷ threads) − reserved) × 4 B``,
  which bounds the tile (:func:`hwsim.plan.attention.choose_blocks`);
* :func:`operand_bytes` - the shared-memory bytes one inner-loop step reads into registers on a
  path whose operands live in registers (``mma_sync``, ``mfma``): every warp loads the whole
  B tile it multiplies, so shared-memory bandwidth bounds those paths as well.

:func:`sm_rates` combines them with the kernel profile's inner-loop efficiency into one SM's
rates (:class:`SmRates`), which :mod:`hwsim.sim.gpu_attention` uses for every step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hwsim.plan.attention import AttentionShape, onchip_budget_bytes
from hwsim.plan.gemm import GemmProfile
from hwsim.sim.kernel_profiles import AttentionProfile
from hwsim.spec.device import Device
from hwsim.spec.errors import SpecError
from hwsim.spec.profiles import load_profile


@dataclass(frozen=True)
class MatrixRate:
    """The matrix instructions a kernel runs on here and their dense rate (whole chip)."""

    requested: str  #: the family the kernel profile names ("native": the chip's fastest)
    path: str  #: the family it runs on
    peak_flops: float  #: dense FLOP/s of that family for the dtype, whole chip
    fraction: float  #: of compute.peak (device spec)
    source: str  #: source key of ``fraction`` in the device YAML ("compute.peak": no section)
    operands: str  #: "registers" (loaded per warp from shared memory) or "shared"
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, object]:
        return {
            "requested": self.requested,
            "path": self.path,
            "peak_flops": self.peak_flops,
            "fraction_of_peak": self.fraction,
            "source": self.source,
            "operands": self.operands,
        }


def matrix_rate(device: Device, requested: str, dtype: str) -> MatrixRate:
    """Dense FLOP/s of ``dtype`` on the matrix path ``requested`` (a key of the device's
    ``compute.matrix_paths`` or ``native``). Without a ``matrix_paths`` section every kernel
    runs at ``compute.peak``; a path the chip lacks runs on its native (first) one, and a dtype
    the path does not issue at its 16-bit rate, each with a note."""
    pdtype = "fp8" if dtype.startswith("fp8") else dtype
    try:
        chip = device.peak_flops(pdtype)
    except KeyError:
        raise SpecError(f"{device.name} lists no matrix peak usable for {dtype}") from None
    paths = device.compute.matrix_paths
    if not paths:
        return MatrixRate(requested, requested, chip, 1.0, "compute.peak", "shared")
    native = next(iter(paths))
    name = native if requested == "native" else requested
    notes: list[str] = []
    if name not in paths:
        notes.append(
            f"{requested} is not among {device.arch}'s matrix paths ({', '.join(paths)}): "
            f"timed on {native}, the rate its port would use"
        )
        name = native
    p = paths[name]
    if p.dtypes is not None and pdtype not in p.dtypes:
        wide = next((d for d in ("bf16", "fp16") if d in p.dtypes), None)
        if wide is None:
            raise SpecError(f"{device.name}: matrix path {name} issues no {dtype} or 16-bit MMA")
        chip = device.peak_flops(wide)
        notes.append(f"{name} issues no {pdtype} on {device.arch}: run at its {wide} rate")
    frac = float(p.fraction.value)
    src = p.fraction.source
    return MatrixRate(requested, name, chip * frac, frac, src, p.operands, tuple(notes))


def accumulator_budget(
    device: Device, prof: AttentionProfile, head_dim: int, bwd: bool
) -> float | None:
    """FP32 accumulator bytes one CTA can keep in registers (None: not limited, when the
    profile gives no warp count or the spec no register file). Threads = 32 × warps; each may
    use ``min(max_registers_per_thread, registers_per_unit / 4 B / threads)`` registers, of
    which ``reserved_registers`` hold operands, statistics and addresses."""
    warps = prof.warps(head_dim, bwd)
    c = device.compute
    if warps is None or c.registers_per_unit is None or c.max_registers_per_thread is None:
        return None
    threads = 32 * warps
    per_thread = min(c.max_registers_per_thread.value, c.registers_per_unit.value / 4 / threads)
    reserved = prof.reserved_registers.value if prof.reserved_registers is not None else 0.0
    return threads * max(0.0, per_thread - reserved) * 4


def occupancy(
    device: Device, prof: AttentionProfile, head_dim: int, bwd: bool, footprint_bytes: float
) -> int:
    """CTAs resident per SM: the profile's ``ctas_per_sm`` when it gives no warp count; else
    the fewer of register-file and shared-memory limits, each thread using all the registers
    it may (FA2's kernels compile to ~255 per thread): ``register file ÷ (threads × per-thread
    limit)`` and ``SMEM ÷ the plan's footprint``."""
    base = int(prof.ctas_per_sm.value)
    warps = prof.warps(head_dim, bwd)
    c = device.compute
    if warps is None or c.registers_per_unit is None or c.max_registers_per_thread is None:
        return base
    regs = c.registers_per_unit.value / 4
    threads = 32 * warps
    per_thread = min(c.max_registers_per_thread.value, regs / threads)
    by_regs = int(regs // (threads * per_thread))
    smem, _, _ = onchip_budget_bytes(device)
    by_smem = int(smem // footprint_bytes) if footprint_bytes > 0 else by_regs
    return max(1, min(by_regs, by_smem))


def operand_bytes(role: str, outer: int, inner: int, d: int, dv: int, e: int, warps: int) -> float:
    """Shared-memory bytes one inner step reads into registers on a registers-operand path.

    Forward (outer = Q rows): the warps split the Q rows, so Q is read once and every warp reads
    all of K and V. Backward (outer = KV rows): the five matmuls' operands, each read by about
    √warps warps (2-D warp grids; an estimate). Other roles: 0 (not modelled)."""
    if role in ("fwd", "fwd_split"):
        return float(e * (outer * d + warps * inner * (d + dv)))
    if role == "bwd":
        bo, bi = outer, inner
        sizes = (bi * d + bo * d) + (bi * dv + bo * dv) + (bo * bi + bi * dv)
        sizes += (bo * bi + bi * d) + (bi * bo + bo * d)
        return float(e * sizes * math.sqrt(warps))
    return 0.0


@dataclass(frozen=True)
class SmRates:
    """One SM's share of the chip: tensor FLOP/s (after efficiency), exp/s, ALU instr/s."""

    peak_flops: float  #: whole chip, dense, the dtype's rate on the kernel's matrix path
    mma_flops: float  #: one SM, forward inner loop
    mma_flops_bwd: float  #: one SM, backward inner loop
    exp_per_s: float
    valu_per_s: float
    clock_Hz: float
    smem_Bps: float  #: one SM's shared-memory bandwidth (operand loads on register paths)
    path: MatrixRate


def sm_rates(device: Device, dtype: str, prof: AttentionProfile) -> tuple[SmRates, list[str]]:
    """Per-SM rates; falls back (with a note) where the spec lists no special/vector rate."""
    notes: list[str] = []
    n = device.compute.units_count
    path = matrix_rate(device, prof.instruction_path, dtype)
    notes += path.notes
    c = device.compute
    vec = c.vector_fp32.value if c.vector_fp32 else path.peak_flops / 16
    if not c.vector_fp32:
        notes.append("no vector_fp32 rate in the spec: assumed 1/16 of the matrix peak")
    if c.special:
        sfu = c.special.value
    else:
        sfu = vec / 8  # 16 SFU vs 128 FP32 lanes per SM on NVIDIA parts
        notes.append("no special-function rate in the spec: assumed 1/8 of vector FP32")
    scale = _arch_matrix_scale(device, dtype, prof, notes)
    if prof.data_movement == "tma" and c.data_movement and "tma" not in c.data_movement:
        notes.append(f"{device.arch} has no TMA: the kernel's TMA loads are timed as issued")
    _, names, _ = onchip_budget_bytes(device)
    onchip = names.get("onchip")
    level = next((m for m in device.memory if m.name == onchip), None)
    smem = level.bandwidth_Bps if level is not None and level.scope == "per_unit" else math.inf
    rates = SmRates(
        peak_flops=path.peak_flops,
        mma_flops=path.peak_flops / n * prof.efficiency(False) * scale,
        mma_flops_bwd=path.peak_flops / n * prof.efficiency(True) * scale,
        exp_per_s=sfu / n,
        valu_per_s=vec / 2 / n,  # an FMA is two FLOPs but one instruction
        clock_Hz=c.clock_Hz,
        smem_Bps=smem,
        path=path,
    )
    return rates, notes


def _arch_matrix_scale(
    device: Device, dtype: str, prof: AttentionProfile, notes: list[str]
) -> float:
    """How well this architecture's matrix units sustain their peak relative to the one the
    attention profile was calibrated on, taken from the GEMM fit (``gemm.yaml``, measured
    GEMMs): 1 across NVIDIA generations, ~0.72 for CDNA. No attention measurement is used."""
    if device.arch == prof.calibration_arch:
        return 1.0
    try:
        here = load_profile("gemm", device.arch, GemmProfile).matrix_fraction_for(dtype)
        ref = load_profile("gemm", prof.calibration_arch, GemmProfile).matrix_fraction_for(dtype)
    except SpecError:
        return 1.0
    scale = here / ref
    if abs(scale - 1.0) > 1e-9:
        notes.append(
            f"matrix efficiency scaled by {scale:.2f}: sustained GEMM fraction of {device.arch} "
            f"vs {prof.calibration_arch} (devices/profiles/gemm.yaml)"
        )
    return scale


def register_limits(
    device: Device, shape: AttentionShape, prof: AttentionProfile
) -> tuple[float | None, float | None]:
    """Forward and backward accumulator bytes a CTA of ``prof`` can hold in registers on
    ``device`` (None: unlimited), for :func:`hwsim.plan.attention.choose_blocks`."""
    return (
        accumulator_budget(device, prof, shape.head_dim, bwd=False),
        accumulator_budget(device, prof, shape.head_dim, bwd=True),
    )


def register_notes(
    device: Device, prof: AttentionProfile, shape: AttentionShape, footprint: float
) -> list[str]:
    """What the register file allows a kernel with a warp count: the accumulator budget that
    bounded its tiles and the CTAs per SM it would let run (reported; the timing keeps the
    profile's ``ctas_per_sm``)."""
    out = []
    for bwd in (False, True):
        if (shape.pass_ == "fwd" and bwd) or (shape.pass_ == "bwd" and not bwd):
            continue
        acc = accumulator_budget(device, prof, shape.head_dim, bwd)
        warps = prof.warps(shape.head_dim, bwd)
        if acc is None or warps is None:
            continue
        occ = occupancy(device, prof, shape.head_dim, bwd, footprint)
        out.append(
            f"kernel registers ({'backward' if bwd else 'forward'}): {warps} warps, "
            f"{acc / 1024:.0f} KiB of registers for accumulators bound the tile; registers "
            f"and SMEM allow {occ} CTA(s) per SM"
        )
    return out
