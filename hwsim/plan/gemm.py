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

The choice among candidates minimises an analytic estimate of the same wave costs the simulator
charges (mimicking a library's heuristic/autotuner); the chosen plan's byte counts are exact.
All sizes in bytes, rates in FLOP/s and B/s, times in seconds.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
from pydantic import Field

from hwsim.plan.gpu_view import GpuView, gpu_view
from hwsim.spec.device import DTYPE_BYTES, DTYPES, Device
from hwsim.spec.errors import SpecError
from hwsim.spec.fit import require_fits
from hwsim.spec.profiles import load_profile, profile_key_used
from hwsim.spec.quantity import Bytes, Count, Latency, Strict

#: Output element type of a GEMM per input dtype (fp8 GEMMs write bf16, int8 accumulates int32).
OUT_DTYPE: dict[str, str] = {
    "fp32": "fp32",
    "tf32": "fp32",
    "fp16": "fp16",
    "bf16": "bf16",
    "fp8": "bf16",
    "int8": "fp32",
}
#: Accumulator bytes per output element (fp32 / int32).
ACC_BYTES = 4
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
#: Warps of a CTA form a 2x2 grid, so every A and B element in shared memory is read by two
#: warps: shared-memory read traffic is twice the tile's operand bytes.
SMEM_READ_FACTOR = 2.0
#: Fraction of L2 that can keep operand panels across waves (the rest holds the streaming
#: k-slabs and C writes; A100 also replicates shared lines in its two partitions).
L2_RESIDENT_FRACTION = 0.5


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
    in_bytes: int
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
    estimate_s: float  #: the selection estimate of kernel time (not the simulated time)
    candidates: int  #: how many (tile, split, swizzle) candidates were scored

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


def cta_order(
    tiles_m: int, tiles_n: int, split: int, swizzle: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(split, row, col) of every CTA in launch order.

    Within a split, tile rows are taken in groups of ``swizzle``; a group is walked column by
    column, rows fastest. The last group may have fewer rows. Splits are launched one after the
    other (each is a sub-GEMM over its K slice)."""
    per = tiles_m * tiles_n
    i = np.arange(per, dtype=np.int64)
    g = i // (swizzle * tiles_n)
    rows_in_group = np.minimum(swizzle, tiles_m - g * swizzle)
    j = i - g * swizzle * tiles_n
    row = g * swizzle + j % rows_in_group
    col = j // rows_in_group
    s = np.repeat(np.arange(split, dtype=np.int64), per)
    return s, np.tile(row, split), np.tile(col, split)


def _valid(extent: int, block: int, idx: np.ndarray) -> np.ndarray:
    """Valid elements of block ``idx`` along an axis of ``extent`` cut in ``block``s."""
    return np.minimum(block, extent - idx * block)


def wave_hbm_panel_bytes(
    a_keys: list[np.ndarray],
    b_keys: list[np.ndarray],
    a_bytes: np.ndarray,
    b_bytes: np.ndarray,
    resident_bytes: float,
    operands_fit: bool,
) -> np.ndarray:
    """HBM bytes each wave reads for its operand panels (the L2 reuse rule).

    ``a_keys[w]`` / ``b_keys[w]`` are the distinct A / B panel ids wave ``w`` touches, and
    ``a_bytes[id]`` / ``b_bytes[id]`` each panel's size. The rule:

    * if both operands together fit the resident part of L2 (``operands_fit``), every panel is
      read from HBM once, by the first wave that touches it;
    * otherwise a wave reads each panel it touches once, except panels the previous wave also
      touched when the two waves' panels together fit ``resident_bytes`` (still in L2).
    """
    out = np.zeros(len(a_keys))
    seen_a: set[int] = set()
    seen_b: set[int] = set()
    prev_a = np.zeros(0, dtype=np.int64)
    prev_b = np.zeros(0, dtype=np.int64)
    for w, (ka, kb) in enumerate(zip(a_keys, b_keys, strict=True)):
        if operands_fit:
            new_a = np.array([x for x in ka.tolist() if x not in seen_a], dtype=np.int64)
            new_b = np.array([x for x in kb.tolist() if x not in seen_b], dtype=np.int64)
            seen_a.update(new_a.tolist())
            seen_b.update(new_b.tolist())
        else:
            union = float(
                a_bytes[np.union1d(prev_a, ka)].sum() + b_bytes[np.union1d(prev_b, kb)].sum()
            )
            if w > 0 and union <= resident_bytes:
                new_a = np.setdiff1d(ka, prev_a, assume_unique=True)
                new_b = np.setdiff1d(kb, prev_b, assume_unique=True)
            else:
                new_a, new_b = ka, kb
        out[w] = a_bytes[new_a].sum() + b_bytes[new_b].sum()
        prev_a, prev_b = ka, kb
    return out


@dataclass(frozen=True)
class _Cand:
    bm: int
    bn: int
    bk: int
    stages: int
    occupancy: int
    smem_cta: int


def _tile_candidates(gv: GpuView, in_bytes: int) -> list[_Cand]:
    bk = max(8, K_SLAB_BYTES // in_bytes)
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


def _estimate(
    c: _Cand,
    split: int,
    swizzle: int,
    m: int,
    n: int,
    k: int,
    in_b: int,
    out_b: int,
    gv: GpuView,
    unit_flops: float,
    hbm_Bps: float,
    cta_s: float,
) -> tuple[float, float]:
    """Analytic (kernel time s, HBM bytes) estimate, used only to rank candidates."""
    tm, tn = math.ceil(m / c.bm), math.ceil(n / c.bn)
    ks = math.ceil(math.ceil(k / split) / c.bk) * c.bk
    ctas = tm * tn * split
    slots = gv.units * c.occupancy
    waves = math.ceil(ctas / slots)
    t_cta = max(
        2.0 * c.bm * c.bn * ks / unit_flops,
        SMEM_READ_FACTOR * (c.bm + c.bn) * ks * in_b / gv.smem_Bps,
    )
    full, rem = divmod(ctas, slots)
    compute = full * c.occupancy * t_cta + (math.ceil(rem / gv.units) * t_cta if rem else 0.0)
    a_b, b_b = m * k * in_b, k * n * in_b
    hbm: float = a_b + b_b
    if a_b + b_b > L2_RESIDENT_FRACTION * gv.l2_bytes:
        rows = min(swizzle, tm)
        cols = min(tn, math.ceil(min(ctas, slots) / rows))
        per_wave = (rows * c.bm * ks + cols * c.bn * ks) * in_b
        hbm = max(a_b + b_b, per_wave * ctas / min(ctas, slots))
    l2 = (m * tn + n * tm) * k * in_b
    epi = m * n * (out_b if split == 1 else 2 * ACC_BYTES * split + out_b)
    port = min(ctas, gv.units) * gv.unit_port_Bps
    mem = max((hbm + epi) / hbm_Bps, (l2 + epi) / min(gv.l2_Bps, port))
    return max(compute, mem) + waves * cta_s, hbm + epi


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
    in_b = int(DTYPE_BYTES[dtype])
    out_dtype = OUT_DTYPE[dtype]
    out_b = int(DTYPE_BYTES[out_dtype])
    unit_flops = prof.matrix_fraction_for(dtype) * device.peak_flops(dtype) / gv.units
    hbm_Bps = prof.hbm_fraction.value * gv.hbm_Bps
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
    best: tuple[float, float, int, int, _Cand] | None = None
    scored = 0
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
            for sw in swizzles if swizzle is None else (swizzle,):
                t, hb = _estimate(
                    c, sp, sw, m, n, k, in_b, out_b, gv, unit_flops, hbm_Bps,
                    prof.cta_overhead.value,
                )  # fmt: skip
                scored += 1
                # fastest wins; within 0.1 % the one moving fewer HBM bytes (better L2 reuse)
                if (
                    best is None
                    or t < best[0] * (1 - 1e-3)
                    or (t <= best[0] * (1 + 1e-3) and hb < best[1] * (1 - 1e-9))
                ):
                    best = (t, hb, sp, sw, c)
    assert best is not None
    est, _, sp, sw, c = best
    return _build(device, gv, m, n, k, dtype, out_dtype, in_b, out_b, c, sp, sw, est, scored)


def _build(
    device: Device,
    gv: GpuView,
    m: int,
    n: int,
    k: int,
    dtype: str,
    out_dtype: str,
    in_b: int,
    out_b: int,
    c: _Cand,
    split: int,
    sw: int,
    est: float,
    scored: int,
) -> GemmPlan:
    tm, tn = math.ceil(m / c.bm), math.ceil(n / c.bn)
    ks = math.ceil(math.ceil(k / split) / c.bk) * c.bk
    split = math.ceil(k / ks)  # rounding ks up may leave fewer non-empty splits
    s_idx, r_idx, c_idx = cta_order(tm, tn, split, sw)
    ctas = len(s_idx)
    slots = gv.units * c.occupancy
    k_lo = s_idx * ks
    k_len = np.minimum(k, k_lo + ks) - k_lo
    k_pad = np.ceil(k_len / c.bk) * c.bk
    rows = _valid(m, c.bm, r_idx)
    cols = _valid(n, c.bn, c_idx)
    # panel ids and sizes: A panel (split, row), B panel (split, col)
    a_id = s_idx * tm + r_idx
    b_id = s_idx * tn + c_idx
    s_all = np.arange(split)
    kl_s = np.minimum(k, s_all * ks + ks) - s_all * ks
    a_sz = (np.outer(kl_s, _valid(m, c.bm, np.arange(tm))) * in_b).ravel().astype(float)
    b_sz = (np.outer(kl_s, _valid(n, c.bn, np.arange(tn))) * in_b).ravel().astype(float)
    a_b, b_b = m * k * in_b, k * n * in_b
    fit = a_b + b_b <= L2_RESIDENT_FRACTION * gv.l2_bytes
    n_waves = math.ceil(ctas / slots)
    bounds = [(w * slots, min(ctas, (w + 1) * slots)) for w in range(n_waves)]
    a_keys = [np.unique(a_id[lo:hi]) for lo, hi in bounds]
    b_keys = [np.unique(b_id[lo:hi]) for lo, hi in bounds]
    panel = wave_hbm_panel_bytes(
        a_keys, b_keys, a_sz, b_sz, L2_RESIDENT_FRACTION * gv.l2_bytes, fit
    )
    epi_per_cta = rows * cols * (out_b if split == 1 else ACC_BYTES)
    waves: list[Wave] = []
    for w, (lo, hi) in enumerate(bounds):
        sl = slice(lo, hi)
        nc = hi - lo
        busy = math.ceil(nc / gv.units)
        kp = float(k_pad[sl].max())
        opnd = float(((rows[sl] + cols[sl]) * k_len[sl]).sum() * in_b)
        epi = float(epi_per_cta[sl].sum())
        waves.append(
            Wave(
                index=w,
                ctas=nc,
                active_units=min(nc, gv.units),
                flops=float((2.0 * rows[sl] * cols[sl] * k_len[sl]).sum()),
                busy_flops=busy * 2.0 * c.bm * c.bn * kp,
                busy_smem_bytes=busy * SMEM_READ_FACTOR * (c.bm + c.bn) * kp * in_b,
                l2_bytes=opnd + epi,
                hbm_bytes=float(panel[w]) + epi,
            )
        )
    epilogue = float(epi_per_cta.sum())
    reduction = float(split * m * n * ACC_BYTES + m * n * out_b) if split > 1 else 0.0
    return GemmPlan(
        m=m,
        n=n,
        k=k,
        dtype=dtype,
        out_dtype=out_dtype,
        in_bytes=in_b,
        out_bytes=out_b,
        tile=TileConfig(c.bm, c.bn, c.bk, c.stages, c.occupancy, split, sw),
        tiles_m=tm,
        tiles_n=tn,
        k_split=ks,
        ctas=ctas,
        slots=slots,
        units=gv.units,
        waves=tuple(waves),
        flops=2.0 * m * n * k,
        padded_flops=float(2.0 * c.bm * c.bn * k_pad.sum()),
        hbm_read_bytes=float(panel.sum()),
        l2_read_bytes=float(((rows + cols) * k_len).sum() * in_b),
        epilogue_bytes=epilogue,
        reduction_bytes=reduction,
        smem_bytes_per_cta=c.smem_cta,
        l2_resident_bytes=L2_RESIDENT_FRACTION * gv.l2_bytes,
        operands_fit_l2=fit,
        estimate_s=est,
        candidates=scored,
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
