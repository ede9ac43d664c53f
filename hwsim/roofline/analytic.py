"""The hierarchical roofline: attainable time = the slowest of compute and every memory level.

For a kernel with matrix FLOPs ``F_t`` per dtype ``t``, vector FLOPs ``F_v``, special-function ops
``F_s`` and bytes ``Q_l`` at each memory level ``l`` of a device with peaks ``P_t``, ``P_v``,
``P_s`` (FLOP/s) and chip-aggregate bandwidths ``B_l`` (B/s)::

    T_compute = Σ_t F_t / P_t          (the matrix units are shared by all dtypes)
    T_vector  = F_v / P_v,  T_special = F_s / P_s,  T_l = Q_l / B_l
    T         = max(T_compute, T_vector, T_special, max_l T_l)            [s]
    bound     = the argmax
    W         = Σ_t F_t  (or F_v + F_s for a kernel with no matrix work)  [FLOP]
    attainable FLOP/s = W / T,   I_l = W / Q_l                            [FLOP/B]

W counts matrix FLOPs only, as FLOP/s benchmarks do (FlashAttention counts its two matmuls), so
points sit under the matrix ceilings they are compared with.

The separate units overlap perfectly (the roofline's optimism). Two entry points compute this:
:func:`evaluate` on numpy arrays (any broadcastable shapes; 100k points in milliseconds) and
:func:`roofline` on one kernel and one device, written independently in plain Python so that the
tests can hold one against the other.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from hwsim.roofline.ops import COMPUTE_KINDS, SPECIAL, VECTOR, Kernel
from hwsim.spec.device import DTYPES, Device
from hwsim.spec.errors import SpecError

#: Names of the compute resources, in the order :func:`evaluate` stacks them before the levels.
#: "compute" is the matrix units (tensor cores, MXM, PCUs), the classic roofline's flat ceiling.
COMPUTE_RESOURCES: tuple[str, ...] = ("compute", VECTOR, SPECIAL)
_N_DTYPES = len(DTYPES)

FloatArray = NDArray[np.float64]


# ---- device ceilings ----------------------------------------------------------------------------
def matrix_rate_flops(device: Device, dtype: str) -> float:
    """Matrix peak FLOP/s for ``dtype`` (with the device's fallback), 0 if it has none."""
    try:
        return device.peak_flops(dtype)
    except KeyError:
        return 0.0


def vector_rate_flops(device: Device) -> float:
    """Vector FP32 FLOP/s; the fp32 peak when the spec lists no separate vector rate, and
    unlimited (``inf``: vector work is then no ceiling, the roofline's optimism) when it lists
    neither."""
    c = device.compute
    if c.vector_fp32:
        return c.vector_fp32.value
    return matrix_rate_flops(device, "fp32") or math.inf


def special_rate_flops(device: Device) -> float:
    """Special-function op/s; the vector rate when the spec lists none (an exp then costs one
    vector op, optimistic for devices that evaluate it by polynomial)."""
    c = device.compute
    return c.special.value if c.special else vector_rate_flops(device)


def device_rates(device: Device) -> FloatArray:
    """Peak rate per entry of ``COMPUTE_KINDS`` (dtypes, vector, special), FLOP/s."""
    rates = [matrix_rate_flops(device, t) for t in DTYPES]
    return np.array([*rates, vector_rate_flops(device), special_rate_flops(device)])


def device_bandwidths(device: Device, levels: Sequence[str]) -> FloatArray:
    """Chip-aggregate bandwidth (B/s) of each named level; NaN for a level the device lacks."""
    names = {m.name for m in device.memory}
    return np.array([device.level_bandwidth_Bps(n) if n in names else math.nan for n in levels])


def kernel_work(kernels: Sequence[Kernel], levels: Sequence[str]) -> tuple[FloatArray, FloatArray]:
    """Pack kernels into arrays: FLOPs (K, len(COMPUTE_KINDS)) and bytes (K, len(levels))."""
    flops = np.array([[k.flops.get(c, 0.0) for c in COMPUTE_KINDS] for k in kernels], dtype=float)
    qbytes = np.array([[k.level_bytes.get(n, 0.0) for n in levels] for k in kernels], dtype=float)
    return flops.reshape(len(kernels), len(COMPUTE_KINDS)), qbytes.reshape(
        len(kernels), len(levels)
    )


# ---- the vectorised roofline --------------------------------------------------------------------
@dataclass(frozen=True)
class RooflineArrays:
    """Results of :func:`evaluate`, each of the broadcast shape ``S`` of the inputs (SI units)."""

    time_s: FloatArray  #: S: attainable time
    bound_index: NDArray[np.intp]  #: S: index into ``resources`` of the limiting resource
    resource_time_s: FloatArray  #: S + (3 + L,): time on each resource
    attainable_flops: FloatArray  #: S: work W / time, FLOP/s
    intensity_flop_per_byte: FloatArray  #: S + (L,): W / bytes at each level (inf at 0 B)
    resources: tuple[str, ...]  #: ("compute", "vector", "special", *levels)

    def bound(self) -> NDArray[np.str_]:
        """Names of the limiting resource, shape S."""
        return np.asarray(self.resources)[self.bound_index]


def evaluate(
    flops: ArrayLike,
    level_bytes: ArrayLike,
    rates_flops: ArrayLike,
    bandwidths_Bps: ArrayLike,
    levels: Sequence[str] | None = None,
) -> RooflineArrays:
    """Hierarchical roofline over arrays. Last axes: ``flops`` and ``rates_flops`` have
    ``len(COMPUTE_KINDS)`` entries (the dtypes of ``DTYPES``, then vector, then special);
    ``level_bytes`` and ``bandwidths_Bps`` one per memory level. Leading axes broadcast, so
    kernels (K, 1, ·) against devices (1, D, ·) give a K×D grid.

    Work on a resource with a zero rate takes infinite time; bytes at a level with a NaN bandwidth
    (a level the device lacks) give a NaN time, which marks the point as not applicable.
    """
    f = np.asarray(flops, dtype=float)
    q = np.asarray(level_bytes, dtype=float)
    p = np.asarray(rates_flops, dtype=float)
    bw = np.asarray(bandwidths_Bps, dtype=float)
    if f.shape[-1] != len(COMPUTE_KINDS) or p.shape[-1] != len(COMPUTE_KINDS):
        raise ValueError(f"flops and rates need a last axis of {len(COMPUTE_KINDS)}")
    if q.shape[-1] != bw.shape[-1]:
        raise ValueError("level_bytes and bandwidths_Bps need the same number of levels")
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        t_kind = np.where(f > 0, f / p, 0.0)  # 0 work costs nothing, even on a missing unit
        t_levels = np.where(q > 0, q / bw, 0.0)  # NaN bandwidth with bytes stays NaN
        t_compute = np.stack(
            [t_kind[..., :_N_DTYPES].sum(-1), t_kind[..., _N_DTYPES], t_kind[..., _N_DTYPES + 1]],
            axis=-1,
        )
        shape = np.broadcast_shapes(t_compute.shape[:-1], t_levels.shape[:-1])
        times = np.concatenate(
            [
                np.broadcast_to(t_compute, (*shape, 3)),
                np.broadcast_to(t_levels, (*shape, t_levels.shape[-1])),
            ],
            axis=-1,
        )
        time = times.max(-1)
        matrix = f[..., :_N_DTYPES].sum(-1)
        total = np.broadcast_to(np.where(matrix > 0, matrix, f.sum(-1)), shape)  # W
        attainable = np.where(time > 0, total / time, 0.0)
        intensity = np.where(q > 0, total[..., None] / q, np.inf)
    names = tuple(levels) if levels is not None else tuple(f"L{i}" for i in range(q.shape[-1]))
    return RooflineArrays(
        time_s=time,
        bound_index=np.nan_to_num(times, nan=-np.inf).argmax(-1),
        resource_time_s=times,
        attainable_flops=attainable,
        intensity_flop_per_byte=np.broadcast_to(intensity, (*shape, q.shape[-1])),
        resources=(*COMPUTE_RESOURCES, *names),
    )


def level_union(devices: Sequence[Device]) -> list[str]:
    """All memory-level names of the devices, innermost first, each once."""
    out: list[str] = []
    for d in devices:
        out += [m.name for m in d.memory if m.name not in out]
    return out


def roofline_grid(kernels: Sequence[Kernel], devices: Sequence[Device]) -> RooflineArrays:
    """Every kernel on every device: arrays of shape (K, D). Levels are the union of the devices'
    level names; a kernel that moves bytes at a level a device lacks gets NaN there."""
    levels = level_union(devices)
    flops, qbytes = kernel_work(kernels, levels)
    rates = np.stack([device_rates(d) for d in devices])
    bws = np.stack([device_bandwidths(d, levels) for d in devices])
    return evaluate(flops[:, None, :], qbytes[:, None, :], rates[None], bws[None], levels)


# ---- one kernel on one device -------------------------------------------------------------------
@dataclass(frozen=True)
class RooflineResult:
    """One kernel on one device (SI units). ``bound`` is ``compute``/``vector``/``special`` or the
    name of the limiting memory level; ``bound_kind`` says which of the two it is."""

    kernel: str
    device: str
    dtype: str
    time_s: float
    bound: str
    bound_kind: str
    total_flops: float  #: matrix + vector + special
    work_flops: float  #: W: what attainable FLOP/s and intensity count
    attainable_flops: float
    peak_flops: float  #: matrix peak at ``dtype``
    fraction_of_peak: float  #: attainable / peak (matrix dtype)
    compute_time_s: dict[str, float]
    level_time_s: dict[str, float]
    level_bytes: dict[str, float]
    level_bandwidth_Bps: dict[str, float]
    intensity_flop_per_byte: dict[str, float]  #: inf where no bytes move at that level
    ridge_flop_per_byte: dict[str, float]  #: peak / bandwidth: intensity where the level stops
    params: dict[str, object]

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def roofline(kernel: Kernel, device: Device, device_name: str | None = None) -> RooflineResult:
    """The hierarchical roofline of one kernel on one device (see the module docstring)."""
    names = [m.name for m in device.memory]
    missing = [n for n, v in kernel.level_bytes.items() if n not in names and v > 0]
    if missing:
        raise SpecError(
            f"kernel {kernel.name!r} moves bytes at {missing}, which {device.name} does not have "
            f"(levels: {names})"
        )
    matrix = 0.0
    for dtype in DTYPES:
        work = kernel.flops.get(dtype, 0.0)
        if work > 0:
            rate = matrix_rate_flops(device, dtype)
            matrix += work / rate if rate > 0 else math.inf
    rates = {VECTOR: vector_rate_flops(device), SPECIAL: special_rate_flops(device)}
    other = {}
    for kind, rate in rates.items():
        work = kernel.flops.get(kind, 0.0)
        other[kind] = 0.0 if work == 0 else (work / rate if rate > 0 else math.inf)
    compute = {"compute": matrix, **other}
    qbytes = {n: kernel.level_bytes.get(n, 0.0) for n in names}
    bw = {n: device.level_bandwidth_Bps(n) for n in names}
    level_t = {n: qbytes[n] / bw[n] if qbytes[n] > 0 else 0.0 for n in names}
    candidates = [*compute.items(), *level_t.items()]
    bound, time_s = candidates[0]
    for name, t in candidates[1:]:  # first maximum wins, as numpy's argmax
        if t > time_s:
            bound, time_s = name, t
    total = kernel.work_flops
    peak = matrix_rate_flops(device, kernel.dtype)
    attainable = total / time_s if time_s > 0 else 0.0
    return RooflineResult(
        kernel=kernel.name,
        device=device_name or device.name,
        dtype=kernel.dtype,
        time_s=time_s,
        bound=bound,
        bound_kind="compute" if bound in COMPUTE_RESOURCES else "memory",
        total_flops=kernel.total_flops,
        work_flops=total,
        attainable_flops=attainable,
        peak_flops=peak,
        fraction_of_peak=attainable / peak if peak > 0 else 0.0,
        compute_time_s=compute,
        level_time_s=level_t,
        level_bytes=qbytes,
        level_bandwidth_Bps=bw,
        intensity_flop_per_byte={n: total / q if q > 0 else math.inf for n, q in qbytes.items()},
        ridge_flop_per_byte={n: peak / bw[n] for n in names},
        params=dict(kernel.params),
    )
