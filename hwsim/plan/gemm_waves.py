"""The wave model of a GEMM plan: CTA launch order, per-wave bytes and FLOPs, the L2 panel-reuse
rule, and the time of each wave under the simulator's rule.

:mod:`hwsim.plan.gemm` uses it twice: to *time* candidate plans (the autotuner keeps the
fastest, as cuBLASLt's heuristic shortlist plus timing does) and to account the chosen plan's
waves exactly. The time rule is the one :func:`hwsim.sim.gpu_gemm.run_plan` charges on the
engine; waves run back to back and alone, so each wave's single flow gets a closed-form rate.
``tests/sim/test_gemm_sim.py`` checks that the two agree to 1e-9 on random plans.
All sizes in bytes, rates in FLOP/s and B/s, times in seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from hwsim.plan.gpu_view import GpuView

#: Accumulator bytes per output element (fp32 / int32).
ACC_BYTES = 4
#: Warps of a CTA form a 2x2 grid, so every A and B element in shared memory is read by two
#: warps: shared-memory read traffic is twice the tile's operand bytes.
SMEM_READ_FACTOR = 2.0
#: Fraction of L2 that can keep operand panels across waves (the rest holds the streaming
#: k-slabs and C writes; A100 also replicates shared lines in its two partitions).
L2_RESIDENT_FRACTION = 0.5


@dataclass(frozen=True)
class WaveRates:
    """What a wave's time depends on: per-unit matrix rate, per-unit shared-memory bandwidth,
    chip L2 bandwidth, *achievable* HBM bandwidth, HBM latency and the per-CTA fixed cost."""

    unit_flops: float
    smem_Bps: float
    l2_Bps: float
    hbm_Bps: float
    hbm_latency_s: float
    cta_s: float
    units: int

    @property
    def unit_port_Bps(self) -> float:
        """Most one SM/CU can pull from L2: its share of the L2 bandwidth (bytes/s)."""
        return self.l2_Bps / self.units


@dataclass(frozen=True)
class WaveArrays:
    """Per-wave accounting of one candidate plan (one entry per wave, numpy arrays)."""

    ctas: np.ndarray
    active_units: np.ndarray
    flops: np.ndarray  #: useful FLOPs
    busy_flops: np.ndarray  #: padded FLOPs of the busiest unit
    busy_smem_bytes: np.ndarray
    l2_bytes: np.ndarray  #: operand reads + epilogue writes through L2
    hbm_bytes: np.ndarray  #: panels read from HBM + epilogue writes
    panel_bytes: np.ndarray  #: the HBM operand reads alone
    epilogue_bytes: np.ndarray
    padded_flops: float
    l2_read_bytes: float  #: operand reads alone, all waves


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


def valid(extent: int, block: int, idx: np.ndarray) -> np.ndarray:
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
    """HBM bytes each wave reads for its operand panels (the L2 reuse rule); the readable
    reference that :func:`panel_bytes` computes without a loop over waves.

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


def _touched(ids: np.ndarray, wave: np.ndarray, n_ids: int) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (wave, id) pairs, sorted by wave then id, as (wave, id) arrays."""
    key = np.unique(wave * n_ids + ids)
    return key // n_ids, key % n_ids


def panel_bytes(
    a_id: np.ndarray,
    b_id: np.ndarray,
    wave: np.ndarray,
    n_waves: int,
    a_bytes: np.ndarray,
    b_bytes: np.ndarray,
    resident_bytes: float,
    operands_fit: bool,
) -> np.ndarray:
    """:func:`wave_hbm_panel_bytes` from per-CTA panel ids and wave numbers, vectorised (the
    panel sizes are whole numbers of bytes, so every sum is exact and equals the reference)."""
    (wa, ia), (wb, ib) = _touched(a_id, wave, len(a_bytes)), _touched(b_id, wave, len(b_bytes))
    if operands_fit:  # each panel once, by the first wave touching it (pairs sorted by wave)
        fa = np.unique(ia, return_index=True)[1]
        fb = np.unique(ib, return_index=True)[1]
        return np.bincount(wa[fa], a_bytes[ia[fa]], n_waves) + np.bincount(
            wb[fb], b_bytes[ib[fb]], n_waves
        )
    cur = np.bincount(wa, a_bytes[ia], n_waves) + np.bincount(wb, b_bytes[ib], n_waves)
    # panels also touched by the previous wave: (w - 1, id) among the pairs
    ka, kb = wa * len(a_bytes) + ia, wb * len(b_bytes) + ib
    pa = np.isin(ka - len(a_bytes), ka)
    pb = np.isin(kb - len(b_bytes), kb)
    shared = np.bincount(wa[pa], a_bytes[ia[pa]], n_waves) + np.bincount(
        wb[pb], b_bytes[ib[pb]], n_waves
    )
    prev = np.concatenate(([0.0], cur[:-1]))
    kept = (np.arange(n_waves) > 0) & (prev + cur - shared <= resident_bytes)
    out: np.ndarray = np.where(kept, cur - shared, cur)
    return out


def wave_arrays(
    bm: int,
    bn: int,
    bk: int,
    occupancy: int,
    split: int,
    swizzle: int,
    m: int,
    n: int,
    k: int,
    in_b: float,
    out_b: int,
    gv: GpuView,
) -> WaveArrays:
    """Exact per-wave bytes and FLOPs of the plan (tile ``bm x bn x bk``, ``split`` slices of
    K already reduced to the non-empty ones, ``swizzle`` rows per group)."""
    tm, tn = math.ceil(m / bm), math.ceil(n / bn)
    ks = math.ceil(math.ceil(k / split) / bk) * bk
    s_idx, r_idx, c_idx = cta_order(tm, tn, split, swizzle)
    ctas = len(s_idx)
    slots = gv.units * occupancy
    n_waves = math.ceil(ctas / slots)
    starts = np.arange(n_waves) * slots
    nc = np.diff(np.append(starts, ctas))
    k_lo = s_idx * ks
    k_len = np.minimum(k, k_lo + ks) - k_lo
    k_pad = -(-k_len // bk) * bk
    rows, cols = valid(m, bm, r_idx), valid(n, bn, c_idx)
    s_all = np.arange(split)
    kl_s = np.minimum(k, s_all * ks + ks) - s_all * ks
    a_sz = (np.outer(kl_s, valid(m, bm, np.arange(tm))) * in_b).ravel().astype(float)
    b_sz = (np.outer(kl_s, valid(n, bn, np.arange(tn))) * in_b).ravel().astype(float)
    fit = (m * k + k * n) * in_b <= L2_RESIDENT_FRACTION * gv.l2_bytes
    wave = np.arange(ctas) // slots
    panel = panel_bytes(
        s_idx * tm + r_idx,
        s_idx * tn + c_idx,
        wave,
        n_waves,
        a_sz,
        b_sz,
        L2_RESIDENT_FRACTION * gv.l2_bytes,
        fit,
    )
    epi = np.add.reduceat(rows * cols * (out_b if split == 1 else ACC_BYTES), starts)
    opnd = np.add.reduceat((rows + cols) * k_len, starts) * in_b
    busy = -(-nc // gv.units)
    kp = np.maximum.reduceat(k_pad, starts).astype(float)
    return WaveArrays(
        ctas=nc,
        active_units=np.minimum(nc, gv.units),
        flops=2.0 * np.add.reduceat(rows * cols * k_len, starts),
        busy_flops=busy * 2.0 * bm * bn * kp,
        busy_smem_bytes=busy * SMEM_READ_FACTOR * (bm + bn) * kp * in_b,
        l2_bytes=(opnd + epi).astype(float),
        hbm_bytes=panel + epi,
        panel_bytes=panel,
        epilogue_bytes=epi.astype(float),
        padded_flops=float(2.0 * bm * bn * k_pad.sum()),
        l2_read_bytes=float(opnd.sum()),
    )


def wave_times_s(
    active_units: np.ndarray,
    busy_flops: np.ndarray,
    busy_smem_bytes: np.ndarray,
    l2_bytes: np.ndarray,
    hbm_bytes: np.ndarray,
    r: WaveRates,
) -> np.ndarray:
    """Seconds each wave lasts, as the engine times it: the fixed CTA cost, then the wave's
    bytes (after one HBM latency) and its busiest unit's math run together. The wave's one flow
    crosses L2 (weight 1) and HBM (weight hbm/l2), capped by its active units' L2 ports."""
    with np.errstate(divide="ignore", invalid="ignore"):
        w_hbm = np.where(l2_bytes > 0, hbm_bytes / l2_bytes, 0.0)
        hbm_cap = np.where(w_hbm > 0, r.hbm_Bps / w_hbm, np.inf)
    rate = np.minimum(np.minimum(active_units * r.unit_port_Bps, r.l2_Bps), hbm_cap)
    mem = np.where(l2_bytes > 0, l2_bytes / rate, 0.0) + r.hbm_latency_s
    comp = np.maximum(busy_flops / r.unit_flops, busy_smem_bytes / r.smem_Bps)
    out: np.ndarray = r.cta_s + np.maximum(mem, comp)
    return out


def reduction_time_s(reduction_bytes: float, r: WaveRates) -> float:
    """The split-K reduction pass: one flow over L2 and HBM after one HBM latency."""
    if reduction_bytes <= 0:
        return 0.0
    return r.hbm_latency_s + reduction_bytes / min(r.l2_Bps, r.hbm_Bps)


def kernel_time_s(wa: WaveArrays, reduction_bytes: float, r: WaveRates) -> float:
    """Kernel seconds of a whole plan: its waves back to back, then the split-K reduction."""
    t = wave_times_s(
        wa.active_units, wa.busy_flops, wa.busy_smem_bytes, wa.l2_bytes, wa.hbm_bytes, r
    )
    return float(t.sum()) + reduction_time_s(reduction_bytes, r)


def kernel_time_lower_bound_s(
    bm: int,
    bn: int,
    bk: int,
    occupancy: int,
    split: int,
    m: int,
    n: int,
    k: int,
    in_b: float,
    out_b: int,
    r: WaveRates,
) -> float:
    """A closed-form lower bound on :func:`kernel_time_s` for a candidate (any swizzle), in
    O(1): every wave pays its CTA cost plus the larger of its math and its memory time, and
    the sum of maxima is at least the maximum of the sums. The memory sum is at least one HBM
    latency per wave plus all L2 bytes at full L2 bandwidth, or the compulsory HBM bytes (A and
    B once, the epilogue) at the achievable HBM bandwidth. Math uses the shortest K slice."""
    tm, tn = math.ceil(m / bm), math.ceil(n / bn)
    ks = math.ceil(math.ceil(k / split) / bk) * bk
    split = math.ceil(k / ks)
    k_min = min(ks, math.ceil((k - (split - 1) * ks) / bk) * bk)
    ctas = tm * tn * split
    slots = r.units * occupancy
    waves = math.ceil(ctas / slots)
    full, rem = divmod(ctas, slots)
    busy = full * occupancy + (math.ceil(rem / r.units) if rem else 0)
    t_cta = max(
        2.0 * bm * bn * k_min / r.unit_flops,
        SMEM_READ_FACTOR * (bm + bn) * k_min * in_b / r.smem_Bps,
    )
    epi = m * n * (out_b if split == 1 else ACC_BYTES)
    l2 = (m * tn + n * tm) * k * in_b + epi
    hbm = (m * k + k * n) * in_b + epi
    mem = waves * r.hbm_latency_s + max(l2 / r.l2_Bps, hbm / r.hbm_Bps)
    reduction = (split * ACC_BYTES + out_b) * m * n if split > 1 else 0.0
    return waves * r.cta_s + max(busy * t_cta, mem) + reduction_time_s(reduction, r)


def hbm_bytes_estimate(
    bm: int,
    bn: int,
    bk: int,
    occupancy: int,
    split: int,
    swizzle: int,
    m: int,
    n: int,
    k: int,
    in_b: float,
    l2_bytes: float,
    units: int,
) -> float:
    """Rough operand bytes read from HBM (a wave re-reads the panels of its
    ``swizzle x columns`` rectangle unless A and B fit L2), in O(1): it only orders candidates
    whose time bounds tie, so the one likely to reuse L2 best is timed first."""
    tm, tn = math.ceil(m / bm), math.ceil(n / bn)
    ks = math.ceil(math.ceil(k / split) / bk) * bk
    ctas = tm * tn * split
    once = (m * k + k * n) * in_b
    if once <= L2_RESIDENT_FRACTION * l2_bytes:
        return float(once)
    wave = min(ctas, units * occupancy)
    rows = min(swizzle, tm)
    cols = min(tn, math.ceil(wave / rows))
    return float(max(once, (rows * bm + cols * bn) * ks * in_b * ctas / wave))
