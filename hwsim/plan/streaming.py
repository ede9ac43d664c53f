"""Memory-bound operators as streaming kernels: softmax, layernorm, RMSNorm, GELU, SwiGLU, add.

A streaming kernel reads its inputs once (or twice, see below), does a few vector operations per
element and writes its output: its time is bytes over the achievable HBM bandwidth, plus fixed
costs. The plan decides, from the shape and the device:

* the **CTA decomposition**: an elementwise op gives each CTA ``ELEMS_PER_CTA`` elements; a
  row op (softmax and the norms reduce along ``n``) gives each CTA one row (``ROW_PACK_ELEMS``).
  ``RESIDENT_CTAS`` CTAs per SM/CU run at once, so the grid runs in waves, and a grid of few
  CTAs leaves SMs idle (each SM pulls at most its L2 port's share of bandwidth);
* whether a **row fits on chip**: a row whose fp32 copy fits a quarter of the SM's shared memory
  (so that four CTAs stay resident), or the kernel family's own limit (``row_on_chip``, e.g.
  PyTorch's softmax keeps rows of at most 1024 elements in registers), is read once; a longer
  row is reduced in a loop and read a second time from HBM (a *looped* reduction, which also
  keeps fewer loads in flight: ``looped_fraction``);
* the **bytes** at each level: inputs x reads + outputs (+ the norm's weight vectors).

Which kernel-profile entry times an op: softmax → ``softmax``; layernorm and RMSNorm →
``layernorm``; GELU, SwiGLU and residual add → ``gelu`` (all one-pass elementwise kernels).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pydantic import Field

from hwsim.plan.gpu_view import GpuView, gpu_view
from hwsim.spec.device import DTYPE_BYTES, DTYPES, Device
from hwsim.spec.errors import SpecError
from hwsim.spec.fit import require_fits
from hwsim.spec.profiles import load_profile, profile_key_used
from hwsim.spec.quantity import Bytes, Count, Latency, Strict

#: Elements one CTA of an elementwise kernel handles (256 threads x 4 elements).
ELEMS_PER_CTA = 1024
#: Row ops pack rows shorter than this many elements several to a CTA. 1 = one row per CTA,
#: which the fit preferred (MI210 layernorm on 4096 short rows costs more than on 32 long rows
#: of the same size: per-CTA costs scale with rows).
ROW_PACK_ELEMS = 1
#: CTAs of a streaming kernel resident per SM/CU (2048 threads per SM / 256 per CTA).
RESIDENT_CTAS = 8
#: Accumulation is fp32: bytes per element of a row held on chip.
ACC_BYTES = 4
#: A row stays on chip if its fp32 copy fits this fraction of one unit's shared memory.
ROW_SMEM_FRACTION = 0.25
#: Register file assumed when gpu_view needs one (unused by streaming kernels).
_RF_UNUSED = 256 * 1024


@dataclass(frozen=True)
class OpSpec:
    """What a streaming operator reads, writes and computes per (output) element."""

    name: str
    row: bool  #: reduces along n (needs whole rows per CTA)
    inputs: int  #: input tensors of the output's shape
    outputs: int
    param_vectors: int  #: length-n weight vectors (gamma, beta)
    flops: float  #: vector FLOPs per element
    special: float  #: special-function ops (exp, tanh, rsqrt) per element
    profile: str  #: entry of the elementwise profile that times it
    passes: int = 1  #: reads of the input when the row does not fit on chip (looped kernel)


OPS: dict[str, OpSpec] = {
    # a looped reduction reads the row once for its statistics (online max/sum, mean/var)
    # and once more to normalise it
    "softmax": OpSpec("softmax", True, 1, 1, 0, 5.0, 1.0, "softmax", 2),
    "layernorm": OpSpec("layernorm", True, 1, 1, 2, 8.0, 0.0, "layernorm", 2),
    "rmsnorm": OpSpec("rmsnorm", True, 1, 1, 1, 5.0, 0.0, "layernorm", 2),
    "gelu": OpSpec("gelu", False, 1, 1, 0, 10.0, 1.0, "gelu"),
    "swiglu": OpSpec("swiglu", False, 2, 1, 0, 6.0, 1.0, "gelu"),
    "add": OpSpec("add", False, 2, 1, 0, 1.0, 0.0, "gelu"),
}


class StreamKernelProfile(Strict):
    """Calibrated parameters of one streaming-kernel family on one architecture."""

    hbm_fraction: Count = Field(description="achievable fraction of HBM peak bandwidth")
    looped_fraction: Count = Field(
        description="fraction of that bandwidth a looped (row-does-not-fit) reduction reaches"
    )
    host_launch: Latency = Field(description="host dispatch + launch before the kernel starts")
    host_tail: Latency = Field(description="host work after launch overlapping the kernel")
    cta_overhead: Latency = Field(description="fixed cost per CTA (index math, reduction sync)")
    row_on_chip: Bytes | None = Field(
        None,
        description="longest row (as fp32 bytes) the kernel keeps on chip and reads once; "
        "default: ROW_SMEM_FRACTION of one unit's shared memory",
    )


class ElementwiseProfile(Strict):
    """``devices/profiles/elementwise.yaml`` entry of one architecture."""

    softmax: StreamKernelProfile
    layernorm: StreamKernelProfile
    gelu: StreamKernelProfile

    def for_op(self, op: str) -> StreamKernelProfile:
        prof: StreamKernelProfile = getattr(self, OPS[op].profile)
        return prof


def elementwise_profile(device: Device) -> tuple[ElementwiseProfile, str]:
    return (
        load_profile("elementwise", device.arch, ElementwiseProfile),
        profile_key_used("elementwise", device.arch),
    )


@dataclass(frozen=True)
class StreamWave:
    index: int
    ctas: int
    active_units: int
    hbm_bytes: float
    l2_bytes: float
    flops: float
    special: float
    count: int = 1  #: identical consecutive waves this entry stands for (fields are per wave)


@dataclass(frozen=True)
class StreamPlan:
    op: str
    m: int
    n: int
    dtype: str
    elements: int
    rows_per_cta: int  #: rows per CTA (row ops), 0 for elementwise
    ctas: int
    slots: int
    units: int
    fits_on_chip: bool  #: row ops: the row is held on chip (read once)
    reads: int  #: passes over the input
    hbm_bytes: float
    l2_bytes: float
    compulsory_bytes: float  #: inputs once + outputs once
    flops: float
    special: float
    waves: tuple[StreamWave, ...]

    @property
    def wave_count(self) -> int:
        return sum(w.count for w in self.waves)

    def summary(self) -> dict[str, object]:
        return {
            "elements": self.elements,
            "rows_per_cta": self.rows_per_cta,
            "ctas": self.ctas,
            "slots": self.slots,
            "waves": self.wave_count,
            "fits_on_chip": self.fits_on_chip,
            "reads": self.reads,
        }


def plan_stream(
    device: Device,
    op: str,
    m: int,
    n: int | None = None,
    dtype: str = "fp16",
    row_on_chip_bytes: float | None = None,
) -> StreamPlan:
    """Plan ``op`` over an ``[m, n]`` tensor (elementwise ops: ``m`` elements if ``n`` is None).

    For SwiGLU ``[m, n]`` is the output; the input is ``[m, 2n]`` (gate and up halves)."""
    if op not in OPS:
        raise SpecError(f"unknown operator {op!r}; expected one of {', '.join(OPS)}", key="op")
    spec = OPS[op]
    if dtype not in DTYPES:
        raise SpecError(
            f"unknown dtype {dtype!r}; expected one of {', '.join(DTYPES)}", key="dtype"
        )
    if spec.row and n is None:
        raise SpecError(f"{op} reduces over rows: give --n (the row length)", key="n")
    nn = 1 if n is None else n
    for name, v in (("m", m), ("n", nn)):
        if not isinstance(v, int) or v < 1:
            raise SpecError(f"expected a positive integer, got {v!r}", key=name)
        if v > 1 << 34:
            raise SpecError(f"{v} is larger than the 2^34 this simulator supports", key=name)
    gv = gpu_view(device, _RF_UNUSED)
    b = DTYPE_BYTES[dtype]
    elements = m * nn
    mem = device.main_memory
    require_fits(
        f"{op} input and output",
        elements * b * (spec.inputs + spec.outputs),
        device.level_capacity_bytes(mem.name),
        f"{device.name} {mem.name.upper()}",
        hint="split the tensor over more devices",
    )
    if spec.row:
        limit = row_on_chip_bytes
        if limit is None:
            limit = ROW_SMEM_FRACTION * gv.smem_bytes
        fits = nn * ACC_BYTES <= limit
        rpc = max(1, ROW_PACK_ELEMS // nn)
        ctas = math.ceil(m / rpc)
    else:
        fits, rpc = True, 0
        ctas = math.ceil(elements / ELEMS_PER_CTA)
    reads = 1 if fits else spec.passes
    slots = gv.units * RESIDENT_CTAS
    params = spec.param_vectors * nn * b
    compulsory = elements * b * (spec.inputs + spec.outputs) + params
    # the second read of a looped reduction comes from HBM: the rows in flight of a wave
    # (slots x row bytes) overflow the L2 for the long rows that need a loop
    hbm = compulsory + elements * b * spec.inputs * (reads - 1)
    l2 = hbm
    waves = _waves(gv, ctas, hbm, l2, elements * spec.flops, elements * spec.special)
    return StreamPlan(
        op=op,
        m=m,
        n=nn,
        dtype=dtype,
        elements=elements,
        rows_per_cta=rpc,
        ctas=ctas,
        slots=slots,
        units=gv.units,
        fits_on_chip=fits,
        reads=reads,
        hbm_bytes=hbm,
        l2_bytes=l2,
        compulsory_bytes=compulsory,
        flops=elements * spec.flops,
        special=elements * spec.special,
        waves=waves,
    )


def _waves(
    gv: GpuView, ctas: int, hbm: float, l2: float, flops: float, special: float
) -> tuple[StreamWave, ...]:
    """Full waves merged into one entry (they are identical), then the partial last wave.
    Bytes and FLOPs are shared out in proportion to CTAs."""
    slots = gv.units * RESIDENT_CTAS
    full, rem = divmod(ctas, slots)
    out = []
    if full:
        f = slots / ctas
        out.append(StreamWave(0, slots, gv.units, hbm * f, l2 * f, flops * f, special * f, full))
    if rem:
        f = rem / ctas
        out.append(
            StreamWave(full, rem, min(rem, gv.units), hbm * f, l2 * f, flops * f, special * f)
        )
    return tuple(out)
