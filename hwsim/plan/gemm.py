"""GEMM tile plan: CTA tiles, waves, split-K, L2 reuse and epilogue bytes for ``C = A @ B``.

``A`` is ``[m, k]``, ``B`` is ``[k, n]``, ``C`` is ``[m, n]``. The plan is what a tuned GPU BLAS
(cuBLAS/CUTLASS, rocBLAS/Tensile) decides before launch, made explicit so that the numpy executor
(:mod:`hwsim.functional.gemm`) and the timing simulator (:mod:`hwsim.sim.gpu_gemm`) consume the
same decisions:

* **CTA tile** ``bm x bn x bk`` from a list of library-like shapes, kept only if its multi-stage
  operand buffers fit the unit's shared memory (``stages * (bm + bn) * bk * bytes``) and its
  fp32 accumulators fit half the register file (the other half holds fragments and addresses).
  Occupancy (CTAs resident per SM/CU) follows from the same two limits.
* **Waves**: ``slots = units * occupancy`` CTAs run at once; a GEMM of ``ctas`` CTAs runs in
  ``ceil(ctas / slots)`` waves, the last one partial (*wave quantisation*). Edge tiles compute a
  full padded tile but load only valid elements (*tile quantisation*).
* **Split-K** for shapes with fewer tiles than slots: K is cut into ``split`` slices, partial
  sums go to an fp32 workspace and a reduction pass adds them (extra epilogue bytes).
* **L2 reuse**: CTAs are launched in a swizzled order (groups of ``swizzle`` tile rows, column by
  column, as CUTLASS's threadblock swizzle does), so a wave touches a compact rectangle of tiles
  and each A row-panel / B column-panel it needs is fetched from HBM once per wave. See
  :func:`wave_hbm_panel_bytes` for the exact rule, which the executor re-implements by counting.

The choice is an autotuner's (cuBLASLt's heuristic shortlist, then timing): every candidate gets
a closed-form lower bound on its kernel time, and candidates are timed wave by wave with the
simulator's own rule (:mod:`hwsim.plan.gemm_waves`) in order of that bound until the bound
passes the best time found. The plan is therefore the fastest candidate as the simulator times
it, so more bandwidth or FLOP/s never picks a slower plan; its byte counts are exact.
All sizes in bytes, rates in FLOP/s and B/s, times in seconds.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
from pydantic import Field

from hwsim.plan.gemm_waves import (
    ACC_BYTES,
    L2_RESIDENT_FRACTION,
    SMEM_READ_FACTOR,
    WaveArrays,
    WaveRates,
    cta_order,
    hbm_bytes_estimate,
    kernel_time_lower_bound_s,
    kernel_time_s,
    wave_arrays,
    wave_hbm_panel_bytes,
)
from hwsim.plan.gpu_view import GpuView, gpu_view
from hwsim.spec.device import DTYPE_BYTES, DTYPES, Device
from hwsim.spec.errors import SpecError
from hwsim.spec.fit import require_fits
from hwsim.spec.profiles import load_profile, profile_key_used
from hwsim.spec.quantity import Bytes, Count, Latency, Strict

# the wave model lives in hwsim.plan.gemm_waves; its public names are re-exported here
__all__ = [
    "ACC_BYTES",
    "L2_RESIDENT_FRACTION",
    "SMEM_READ_FACTOR",
    "GemmPlan",
    "GemmProfile",
    "TileConfig",
    "Wave",
    "cta_order",
    "gemm_profile",
    "merged",
    "plan_gemm",
    "wave_hbm_panel_bytes",
]

#: Output element type of a GEMM per input dtype (fp8 GEMMs write bf16, int8 accumulates int32).
OUT_DTYPE: dict[str, str] = {
    "fp32": "fp32",
    "tf32": "fp32",
    "fp16": "fp16",
    "bf16": "bf16",
    "fp8": "bf16",
    "int8": "fp32",
    "nvfp4": "bf16",
    "mxfp4": "bf16",
}
#: (bm, bn) CTA tiles a GPU BLAS library ships (CUTLASS/Tensile macro tiles), largest first.
TILE_SHAPES: tuple[tuple[int, int], ...] = (
    (256, 256),
    (256, 128),
    (128, 256),
    (128, 128),
    (256, 64),
    (64, 256),
    (128, 64),
    (64, 128),
    (64, 64),
    (32, 128),
    (128, 32),
    (32, 64),
    (64, 32),
    (32, 32),
)
#: Bytes of one K-slab row: bk = 64 B / element size (32 fp16, 64 fp8, 16 fp32) - a 64-byte
#: (half cache line) vector per row is what cp.async / buffer_load move per thread group.
K_SLAB_BYTES = 64
MAX_STAGES = 4
MAX_CTAS_PER_UNIT = 4
SPLIT_CHOICES: tuple[int, ...] = (1, 2, 3, 4, 6, 8, 12, 16)
SWIZZLE_CHOICES: tuple[int, ...] = (1, 2, 4, 8, 16)


class GemmProfile(Strict):
    """Calibrated GEMM kernel-profile parameters of one architecture generation
    (``devices/profiles/gemm.yaml``; fitted in ``hwsim.validate.gpu_ops_fit``)."""

    matrix_fraction: dict[str, Count] = Field(
        description="achievable fraction of the dense matrix peak per dtype (a 'default' key "
        "covers dtypes without their own entry)"
    )
    hbm_fraction: Count = Field(description="achievable fraction of HBM peak bandwidth")
    host_launch: Latency = Field(description="host dispatch + launch before the kernel starts")
    host_tail: Latency = Field(
        description="host work after the launch that overlaps the kernel (a floor on short ones)"
    )
    cta_overhead: Latency = Field(
        description="fixed cost per CTA (prologue, pipeline fill, epilogue sync), paid per wave"
    )
    register_file: Bytes = Field(description="register file per SM/CU if the device lists none")

    def matrix_fraction_for(self, dtype: str) -> float:
        if dtype in self.matrix_fraction:
            return self.matrix_fraction[dtype].value
        for alt in {"bf16": ["fp16"], "fp16": ["bf16"], "tf32": ["fp32"]}.get(dtype, []):
            if alt in self.matrix_fraction:
                return self.matrix_fraction[alt].value
        if "default" in self.matrix_fraction:
            return self.matrix_fraction["default"].value
        raise SpecError(f"gemm profile has no matrix_fraction for {dtype} and no 'default'")


def gemm_profile(device: Device) -> tuple[GemmProfile, str]:
    """The GEMM profile of ``device``'s architecture and the profile key actually used."""
    return load_profile("gemm", device.arch, GemmProfile), profile_key_used("gemm", device.arch)


@dataclass(frozen=True)
class TileConfig:
    bm: int
    bn: int
    bk: int
    stages: int
    occupancy: int  #: CTAs resident per unit
    split: int  #: split-K factor
    swizzle: int  #: tile rows per raster group


@dataclass(frozen=True)
class Wave:
    """One wave of concurrently resident CTAs and what it costs (bytes, FLOPs)."""

    index: int
    ctas: int
    active_units: int
    flops: float  #: useful FLOPs (valid elements only)
    busy_flops: float  #: padded FLOPs of the busiest unit (tile quantisation)
    busy_smem_bytes: float  #: shared-memory reads of the busiest unit
    l2_bytes: float  #: L2 → SM operand reads + epilogue writes through L2
    hbm_bytes: float  #: HBM reads (panels fetched this wave) + epilogue writes
    count: int = 1  #: identical consecutive waves this entry stands for (see ``merged``);
    #: every other field is per wave


@dataclass(frozen=True)
class GemmPlan:
    """The chosen tiling of one GEMM and its exact per-wave byte/FLOP accounting."""

    m: int
    n: int
    k: int
    dtype: str
    out_dtype: str
    in_bytes: float  #: per input element (fractional for block-scaled FP4)
    out_bytes: int
    tile: TileConfig
    tiles_m: int
    tiles_n: int
    k_split: int  #: K elements per split (a multiple of bk, last split shorter)
    ctas: int
    slots: int
    units: int
    waves: tuple[Wave, ...]
    flops: float  #: 2 m n k
    padded_flops: float  #: FLOPs the tensor cores execute including edge-tile padding
    hbm_read_bytes: float
    l2_read_bytes: float
    epilogue_bytes: float  #: C writes (+ split-K workspace writes)
    reduction_bytes: float  #: split-K reduction pass: workspace reads + C writes (0 if split 1)
    smem_bytes_per_cta: int
    l2_resident_bytes: float  #: L2 bytes that keep operand panels across waves
    operands_fit_l2: bool
    estimate_s: float  #: kernel time by the wave rule the planner ranks with (= simulated)
    candidates: int  #: how many (tile, split, swizzle) candidates were scored
    timed: int = 0  #: how many of them were timed wave by wave (the rest were bounded out)

    @property
    def hbm_bytes(self) -> float:
        """All HBM traffic: operand reads, epilogue writes and the split-K reduction pass."""
        return self.hbm_read_bytes + self.epilogue_bytes + self.reduction_bytes

    @property
    def compulsory_bytes(self) -> float:
        """A, B read once and C written once: the roofline's byte count."""
        return (self.m * self.k + self.k * self.n) * self.in_bytes + self.m * self.n * (
            self.out_bytes
        )

    @property
    def wave_count(self) -> int:
        return sum(w.count for w in self.waves)

    def cta_order(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Launch order of the CTAs as (split, tile_row, tile_col) arrays (the swizzle)."""
        return cta_order(self.tiles_m, self.tiles_n, self.tile.split, self.tile.swizzle)

    def k_range(self, s: int) -> tuple[int, int]:
        """K elements [start, stop) of split ``s``."""
        return s * self.k_split, min(self.k, (s + 1) * self.k_split)

    def summary(self) -> dict[str, object]:
        t = self.tile
        return {
            "tile": [t.bm, t.bn, t.bk],
            "stages": t.stages,
            "occupancy": t.occupancy,
            "split_k": t.split,
            "swizzle": t.swizzle,
            "tiles": [self.tiles_m, self.tiles_n],
            "ctas": self.ctas,
            "slots": self.slots,
            "waves": self.wave_count,
            "wave_efficiency": self.ctas / (self.wave_count * self.slots),
            "smem_bytes_per_cta": self.smem_bytes_per_cta,
            "operands_fit_l2": self.operands_fit_l2,
            "candidates": self.candidates,
        }


@dataclass(frozen=True)
class _Cand:
    bm: int
    bn: int
    bk: int
    stages: int
    occupancy: int
    smem_cta: int


def _tile_candidates(gv: GpuView, in_bytes: float) -> list[_Cand]:
    # K elements per slab, a power of two (block-scaled FP4: 4.25-4.5 bits per value -> 128)
    bk = max(8, 2 ** round(math.log2(K_SLAB_BYTES / in_bytes)))
    out = []
    for bm, bn in TILE_SHAPES:
        acc_rf = 2 * bm * bn * ACC_BYTES  # accumulators + an equal share for fragments/addresses
        if acc_rf > gv.rf_bytes:
            continue
        for stages in range(MAX_STAGES, 1, -1):
            smem = stages * (bm + bn) * bk * in_bytes
            if smem <= gv.smem_bytes:
                occ = int(min(gv.smem_bytes // smem, gv.rf_bytes // acc_rf, MAX_CTAS_PER_UNIT))
                out.append(_Cand(bm, bn, bk, stages, occ, smem))
                break
    return out


def plan_gemm(
    device: Device,
    m: int,
    n: int,
    k: int,
    dtype: str = "fp16",
    profile: GemmProfile | None = None,
    *,
    tile: tuple[int, int] | None = None,
    split: int | None = None,
    swizzle: int | None = None,
) -> GemmPlan:
    """Choose the CTA tile, split-K and swizzle for ``[m,k] @ [k,n]`` on ``device`` and account
    the bytes each wave moves. ``tile`` (bm, bn), ``split`` and ``swizzle`` pin a choice (tests,
    what-ifs); the rest is still chosen. Raises :class:`SpecError` for bad shapes or dtypes."""
    for name, v in (("m", m), ("n", n), ("k", k)):
        if not isinstance(v, int | np.integer) or v < 1:
            raise SpecError(f"expected a positive integer, got {v!r}", key=name)
        if v > 1 << 24:
            raise SpecError(f"{v} is larger than the 2^24 this simulator supports", key=name)
    if dtype not in DTYPES:
        raise SpecError(
            f"unknown dtype {dtype!r}; expected one of {', '.join(DTYPES)}", key="dtype"
        )
    prof = profile if profile is not None else gemm_profile(device)[0]
    m, n, k = int(m), int(n), int(k)
    in_b0, out_b0 = DTYPE_BYTES[dtype], DTYPE_BYTES[OUT_DTYPE[dtype]]
    # refuse before building per-CTA arrays: a GEMM whose operands exceed the device memory
    # has no meaningful time (and ~1e9 CTAs would exhaust host memory)
    mem = device.main_memory
    require_fits(
        "GEMM operands A, B and C",
        (m * k + k * n) * in_b0 + m * n * out_b0,
        device.level_capacity_bytes(mem.name),
        f"{device.name} {mem.name.upper()}",
        hint="split the GEMM over more devices",
    )
    gv = gpu_view(device, prof.register_file.value)
    in_b = DTYPE_BYTES[dtype]  # fractional for block-scaled FP4 (values + their scales)
    out_dtype = OUT_DTYPE[dtype]
    out_b = int(DTYPE_BYTES[out_dtype])
    rates = WaveRates(
        unit_flops=prof.matrix_fraction_for(dtype) * device.peak_flops(dtype) / gv.units,
        smem_Bps=gv.smem_Bps,
        l2_Bps=gv.l2_Bps,
        hbm_Bps=prof.hbm_fraction.value * gv.hbm_Bps,
        hbm_latency_s=gv.hbm_latency_s,
        cta_s=prof.cta_overhead.value,
        units=gv.units,
    )
    cands = [c for c in _tile_candidates(gv, in_b) if tile is None or (c.bm, c.bn) == tuple(tile)]
    if not cands:
        what = f"tile {tile[0]}x{tile[1]} is not a library tile that" if tile else "no CTA tile"
        raise SpecError(
            f"{what} fits {gv.smem_bytes:.0f} B of shared memory per {gv.unit_name}",
            key="tile" if tile else "memory",
        )
    for label, pin in (("split", split), ("swizzle", swizzle)):
        if pin is not None and (not isinstance(pin, int) or pin < 1):
            raise SpecError(f"expected a positive integer, got {pin!r}", key=label)
    # every candidate gets a closed-form lower bound on its kernel time; they are then timed
    # exactly (the simulator's wave rule) in order of that bound until the bound exceeds the
    # best time found. So the plan is the fastest candidate by the simulator's own timing, and
    # a device with more bandwidth or FLOP/s (which makes no candidate slower) never gets a
    # slower plan.
    shortlist: list[tuple[float, float, int, _Cand, int, int]] = []
    for c in cands:
        tiles = math.ceil(m / c.bm) * math.ceil(n / c.bn)
        slots = gv.units * c.occupancy
        swizzles = sorted({min(sw, math.ceil(m / c.bm)) for sw in SWIZZLE_CHOICES})
        for sp in SPLIT_CHOICES if split is None else (split,):
            # split-K only pays when the tiles alone leave slots idle, and each slice keeps
            # at least 4 K-slabs of work
            if split is None and sp > 1:
                if tiles >= slots or tiles * sp > 2 * slots or k < 4 * sp * c.bk:
                    continue
            ks = math.ceil(math.ceil(k / sp) / c.bk) * c.bk
            sp_eff = math.ceil(k / ks)  # rounding ks up may leave fewer non-empty splits
            lb = kernel_time_lower_bound_s(
                c.bm, c.bn, c.bk, c.occupancy, sp_eff, m, n, k, in_b, out_b, rates
            )
            for sw in swizzles if swizzle is None else (swizzle,):
                hb = hbm_bytes_estimate(
                    c.bm, c.bn, c.bk, c.occupancy, sp_eff, sw, m, n, k, in_b, gv.l2_bytes,
                    gv.units,
                )  # fmt: skip
                shortlist.append((lb, hb, len(shortlist), c, sp_eff, sw))
    # equal bounds (the compute-bound case, where swizzles differ only in HBM bytes): the one
    # likely to move the fewest bytes first
    shortlist.sort(key=lambda e: (e[0], e[1], e[2]))
    best: tuple[float, float, _Cand, int, int, WaveArrays] | None = None
    timed = 0
    for lb, _, _, c, sp, sw in shortlist:
        # a candidate that can at best tie the fastest is not timed (1e-12: the bound may round
        # one ulp above the exact time it equals)
        if best is not None and lb >= best[0] * (1 - 1e-12):
            break
        wa = wave_arrays(c.bm, c.bn, c.bk, c.occupancy, sp, sw, m, n, k, in_b, out_b, gv)
        reduction = _reduction_bytes(sp, m, n, out_b)
        t = kernel_time_s(wa, reduction, rates)
        hb = float(wa.hbm_bytes.sum()) + reduction
        timed += 1
        # fastest wins; an exact tie goes to the plan moving fewer HBM bytes (better L2 reuse)
        if best is None or t < best[0] or (t == best[0] and hb < best[1]):
            best = (t, hb, c, sp, sw, wa)
    assert best is not None
    t, _, c, sp, sw, wa = best
    return _build(
        m, n, k, dtype, out_dtype, in_b, out_b, gv, c, sp, sw, wa, t, len(shortlist), timed
    )


def _reduction_bytes(split: int, m: int, n: int, out_b: int) -> float:
    """The split-K pass: read every slice's fp32 partials, write C (0 without split-K)."""
    return float(split * m * n * ACC_BYTES + m * n * out_b) if split > 1 else 0.0


def _build(
    m: int,
    n: int,
    k: int,
    dtype: str,
    out_dtype: str,
    in_b: float,
    out_b: int,
    gv: GpuView,
    c: _Cand,
    split: int,
    sw: int,
    wa: WaveArrays,
    kernel_s: float,
    scored: int,
    timed: int,
) -> GemmPlan:
    """The plan of candidate ``c`` with ``split`` (non-empty) K slices and swizzle ``sw``,
    from its per-wave accounting ``wa``."""
    waves = tuple(
        Wave(
            index=w,
            ctas=int(wa.ctas[w]),
            active_units=int(wa.active_units[w]),
            flops=float(wa.flops[w]),
            busy_flops=float(wa.busy_flops[w]),
            busy_smem_bytes=float(wa.busy_smem_bytes[w]),
            l2_bytes=float(wa.l2_bytes[w]),
            hbm_bytes=float(wa.hbm_bytes[w]),
        )
        for w in range(len(wa.ctas))
    )
    return GemmPlan(
        m=m,
        n=n,
        k=k,
        dtype=dtype,
        out_dtype=out_dtype,
        in_bytes=in_b,
        out_bytes=out_b,
        tile=TileConfig(c.bm, c.bn, c.bk, c.stages, c.occupancy, split, sw),
        tiles_m=math.ceil(m / c.bm),
        tiles_n=math.ceil(n / c.bn),
        k_split=math.ceil(math.ceil(k / split) / c.bk) * c.bk,
        ctas=int(wa.ctas.sum()),
        slots=gv.units * c.occupancy,
        units=gv.units,
        waves=waves,
        flops=2.0 * m * n * k,
        padded_flops=wa.padded_flops,
        hbm_read_bytes=float(wa.panel_bytes.sum()),
        l2_read_bytes=wa.l2_read_bytes,
        epilogue_bytes=float(wa.epilogue_bytes.sum()),
        reduction_bytes=_reduction_bytes(split, m, n, out_b),
        smem_bytes_per_cta=c.smem_cta,
        l2_resident_bytes=L2_RESIDENT_FRACTION * gv.l2_bytes,
        operands_fit_l2=(m * k + k * n) * in_b <= L2_RESIDENT_FRACTION * gv.l2_bytes,
        estimate_s=kernel_s,
        candidates=scored,
        timed=timed,
    )


def merged(waves: tuple[Wave, ...], limit: int = 256) -> tuple[Wave, ...]:
    """Merge runs of identical consecutive waves into one entry with ``count`` when there are
    more than ``limit`` waves. Waves run back to back and alone, so ``count`` identical waves
    cost exactly ``count`` times one; this bounds simulator events for huge GEMMs."""
    if len(waves) <= limit:
        return waves
    out: list[Wave] = []
    for w in waves:
        if out:
            p = out[-1]
            key = (p.ctas, p.flops, p.busy_flops, p.busy_smem_bytes, p.l2_bytes, p.hbm_bytes)
            if key == (w.ctas, w.flops, w.busy_flops, w.busy_smem_bytes, w.l2_bytes, w.hbm_bytes):
                out[-1] = dataclasses.replace(p, count=p.count + w.count)
                continue
        out.append(w)
    return tuple(out)
