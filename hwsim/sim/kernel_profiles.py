"""Attention kernel profiles: the few parameters that differ between implementations.

A profile is an entry of ``devices/profiles/attention.yaml`` keyed by kernel name (``naive``,
``fa2``, ``fa3``, ``flash-decoding``); an entry ``<kernel>@<arch>`` (e.g. ``fa2@cdna3``), when
present, overrides it for one architecture generation. Everything else - SM count, tensor and
special-function rates, memory bandwidths and capacities - comes from the device spec, so a new
device needs no new profile. Each number is sourced (``{value, source}``); the ``fit-fa3``
values are fitted once by :mod:`hwsim.validate.fit_attention` (see docs/calibration-attention.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field, model_validator

from hwsim.spec.errors import SpecError
from hwsim.spec.profiles import load_profile, profile_entries, profile_path
from hwsim.spec.quantity import Latency, Sourced, Strict, sourced
from hwsim.spec.units import Dim

if TYPE_CHECKING:  # for mypy both are plain Sourced values
    Number = Sourced
    Whole = Sourced
else:
    #: A dimensionless sourced number ≥ 0 (fractions, instruction counts, cycles).
    Number = sourced(Dim.COUNT, positive=False)
    #: A whole sourced number ≥ 1.
    Whole = sourced(Dim.COUNT, integer=True)

KERNELS = ("naive", "fa2", "fa3", "flash-decoding")


class AttentionProfile(Strict):
    """How one attention kernel uses a GPU (all times per CTA slot unless stated)."""

    description: str
    plan_kernel: Literal["flash", "naive", "split_kv"] = Field(
        description="which tile plan the kernel executes (hwsim.plan.attention kernels)"
    )
    native_archs: list[str] = Field(
        default_factory=list,
        description="architectures the kernel is written for; others get a note in results",
    )
    instruction_path: Literal["mma_sync", "wgmma", "tcgen05", "mfma", "native"] = Field(
        "native",
        description="matrix instructions the kernel issues (a key of the device's "
        "compute.matrix_paths); native: the device's fastest family (vendor GEMMs)",
    )
    data_movement: Literal["cp_async", "tma", "ld"] = Field(
        "cp_async",
        description="how K/V tiles reach shared memory: cp_async (issued by the compute warps), "
        "tma (one producer thread per tile, multicast to a cluster) or ld (plain loads)",
    )
    mma_warps: dict[int, Whole] = Field(
        default_factory=dict,
        description="forward: warps that share one CTA's matmuls, by head dim (the entry with "
        "the smallest key >= head_dim); empty: the register file does not limit the tile",
    )
    bwd_mma_warps: dict[int, Whole] = Field(
        default_factory=dict, description="backward: like mma_warps"
    )
    reserved_registers: Number | None = Field(
        None,
        description="32-bit registers per thread not available to accumulators (MMA operand "
        "fragments, softmax statistics, pointers, loop state)",
    )
    calibration_arch: str = Field(
        "hopper",
        description="architecture the efficiencies were fitted on; other architectures scale "
        "mma_efficiency by their sustained GEMM fraction relative to it (gemm.yaml)",
    )
    mma_efficiency: Number = Field(
        description="fraction of the dense tensor-core peak the inner-loop matmuls sustain"
    )
    softmax_overlap: Number = Field(
        description="fraction of the softmax work of a KV step that runs beside the matmuls "
        "(the rest is on the critical path): 0 = synchronous (FA2), 1 = perfect ping-pong"
    )
    bwd_mma_efficiency: Number | None = Field(
        None,
        description="backward: fraction of the path's rate the five matmuls of a step sustain "
        "(None: mma_efficiency)",
    )
    bwd_softmax_overlap: Number | None = Field(
        None,
        description="backward: fraction of the recomputed softmax and dS work that runs beside "
        "the matmuls (None: softmax_overlap)",
    )
    softmax_valu_ops: Number = Field(
        description="FP32 ALU instructions per score element in the forward softmax (row max, "
        "scale-and-subtract FMA, row sum, conversion to 16 bit), besides the exp on the SFU"
    )
    bwd_valu_ops: Number = Field(
        description="FP32 ALU instructions per score element in the backward (recomputed P, "
        "dS = P∘(dP - D), conversions), besides the exp"
    )
    mask_valu_ops: Number = Field(
        description="extra ALU instructions per score element of a partially masked tile"
    )
    tile_overhead_cycles: Number = Field(
        description="fixed SM cycles per CTA tile: scheduling, barrier set-up, epilogue sync"
    )
    launch_overhead: Latency = Field(description="gap per kernel launch on the GPU stream")
    scheduler: Literal["static", "lpt", "grid"] = Field(
        description="static: persistent CTAs take tiles round-robin; lpt: persistent, longest "
        "tile first to the first free SM, heads in L2-sized sections (FA3 causal); grid: one "
        "CTA per tile, the hardware block scheduler fills free SMs in launch order"
    )
    lpt_when_masked: bool = Field(
        True, description="use 'lpt' instead of 'scheduler' when the mask is causal/windowed"
    )
    prefetch_next_tile: bool = Field(
        description="a producer warp loads the next tile's Q and first K/V during this drain"
    )
    stages: Whole = Field(description="K/V shared-memory buffers in flight")
    ctas_per_sm: Whole = Field(description="CTAs resident per SM (sharing its compute)")
    kv_multicast: Whole = Field(
        description="CTAs of a thread-block cluster that share each K/V load (TMA multicast), "
        "used when the mask is full, head_dim ≥ multicast_min_head_dim and the Q blocks pair up"
    )
    multicast_min_head_dim: Number = Field(
        description="smallest head dim for which the kernel launches clusters"
    )
    l2_bandwidth_fraction: Number = Field(
        description="fraction of the spec L2 bandwidth sustained when every SM streams the "
        "same K/V lines (both L2 partitions, crossbar)"
    )
    l2_usable_fraction: Number = Field(
        description="part of the L2 that holds K/V shared by many SMs (partitioned L2s "
        "replicate data read from both sides)"
    )

    @model_validator(mode="after")
    def _ranges(self) -> AttentionProfile:
        for name in (
            "mma_efficiency",
            "softmax_overlap",
            "l2_usable_fraction",
            "l2_bandwidth_fraction",
        ):
            v = getattr(self, name).value
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name}: expected a fraction in [0, 1], got {v}")
        for name in ("bwd_mma_efficiency", "bwd_softmax_overlap"):
            q = getattr(self, name)
            if q is not None and not 0.0 <= q.value <= 1.0:
                raise ValueError(f"{name}: expected a fraction in [0, 1], got {q.value}")
        for name in ("mma_efficiency", "l2_bandwidth_fraction"):
            if getattr(self, name).value <= 0:
                raise ValueError(f"{name}: must be greater than zero")
        if self.bwd_mma_efficiency is not None and self.bwd_mma_efficiency.value <= 0:
            raise ValueError("bwd_mma_efficiency: must be greater than zero")
        return self

    def efficiency(self, bwd: bool) -> float:
        """Fraction of the path's matrix rate the inner loop sustains (forward or backward)."""
        q = self.bwd_mma_efficiency if bwd and self.bwd_mma_efficiency is not None else None
        q = q if q is not None else self.mma_efficiency
        return float(q.value)

    def overlap(self, bwd: bool) -> float:
        """Fraction of a step's softmax (backward: softmax and dS) beside the matmuls."""
        q = self.bwd_softmax_overlap if bwd and self.bwd_softmax_overlap is not None else None
        q = q if q is not None else self.softmax_overlap
        return float(q.value)

    def warps(self, head_dim: int, bwd: bool) -> int | None:
        """Warps of one CTA's matmuls at ``head_dim`` (None: not modelled)."""
        table = self.bwd_mma_warps if bwd else self.mma_warps
        keys = sorted(k for k in table if k >= head_dim)
        if keys:
            return int(table[keys[0]].value)
        return int(table[max(table)].value) if table else None

    # ---- SI accessors ------------------------------------------------------------------------
    @property
    def launch_overhead_s(self) -> float:
        return self.launch_overhead.value


def profile_key(kernel: str, arch: str) -> str:
    """The YAML entry used for ``kernel`` on ``arch``: ``kernel@arch`` if present, else
    ``kernel``; unknown kernels raise :class:`SpecError` listing the known ones."""
    data, _ = profile_entries("attention")
    if f"{kernel}@{arch}" in data:
        return f"{kernel}@{arch}"
    if kernel in data:
        return kernel
    known = sorted(k for k in data if k != "sources" and "@" not in k)
    raise SpecError(
        f"unknown attention kernel {kernel!r} (known: {', '.join(known)})",
        file=str(profile_path("attention")),
    )


def load_attention_profile(kernel: str, arch: str) -> AttentionProfile:
    """The validated profile of ``kernel`` for architecture ``arch``."""
    key = profile_key(kernel, arch)
    prof = load_profile("attention", key, AttentionProfile, fallback=None)
    data, _ = profile_entries("attention")
    sources = data.get("sources", {})
    for name in type(prof).model_fields:
        q = getattr(prof, name)
        items = [(f"{name}.{k}", v) for k, v in q.items()] if isinstance(q, dict) else [(name, q)]
        for label, v in items:
            src = getattr(v, "source", None)
            if src is not None and (not isinstance(sources, dict) or src not in sources):
                raise SpecError(
                    f"source {src!r} is not in the sources table",
                    file=str(profile_path("attention")),
                    key=f"{key}.{label}",
                )
    return prof
