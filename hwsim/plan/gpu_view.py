"""What a tile plan needs to know about a GPU: SMs, shared memory, registers, L2 and HBM.

Read from a device spec's memory levels by name (``smem``/``lds``, ``l2``, the main memory), in
SI units. Shared by the GEMM and streaming-op plans.
"""

from __future__ import annotations

from dataclasses import dataclass

from hwsim.spec.device import Device
from hwsim.spec.errors import SpecError

#: Names of a per-unit register-file level in a device YAML; without one, the kernel profile's
#: ``register_file`` is used (256 KiB per NVIDIA SM since Volta, 512 KiB VGPR+AGPR per CDNA CU).
REG_LEVEL_NAMES = ("registers", "rf", "regs", "vgpr")
SMEM_LEVEL_NAMES = ("smem", "lds", "shared")


@dataclass(frozen=True)
class GpuView:
    """The numbers of a GPU a tile plan needs, in SI units (per unit = per SM/CU)."""

    units: int
    unit_name: str
    smem_bytes: float
    smem_Bps: float  #: per unit
    rf_bytes: float  #: per unit
    l2_bytes: float
    l2_Bps: float  #: chip
    hbm_Bps: float  #: chip, peak
    hbm_latency_s: float

    @property
    def unit_port_Bps(self) -> float:
        """Most an SM/CU can pull from L2: its share of the L2 bandwidth (bytes/s)."""
        return self.l2_Bps / self.units


def gpu_view(device: Device, register_file_bytes: float) -> GpuView:
    """Read the shared-memory, L2 and HBM levels of a GPU spec (SpecError if not a GPU)."""
    if device.kind != "gpu":
        raise SpecError(
            f"the GEMM/op simulators model GPUs; {device.name!r} is a {device.kind!r} device",
            key="kind",
        )
    per_unit = [lv for lv in device.memory if lv.scope == "per_unit"]
    rf = next((lv for lv in per_unit if lv.name.lower() in REG_LEVEL_NAMES), None)
    smem = next((lv for lv in per_unit if lv.name.lower() in SMEM_LEVEL_NAMES), None)
    if smem is None:
        others = [lv for lv in per_unit if lv is not rf]
        if not others:
            raise SpecError("a GPU needs a per_unit shared-memory level (smem/lds)", key="memory")
        smem = max(others, key=lambda lv: lv.capacity_bytes)
    chip = [lv for lv in device.memory if lv.scope == "per_chip" and lv is not device.main_memory]
    l2 = next((lv for lv in chip if lv.name.lower() == "l2"), chip[0] if chip else None)
    if l2 is None:
        raise SpecError("a GPU needs a per_chip L2 level between smem and HBM", key="memory")
    hbm = device.main_memory
    return GpuView(
        units=device.compute.units_count,
        unit_name=device.compute.unit_name,
        smem_bytes=smem.capacity_bytes,
        smem_Bps=smem.bandwidth_Bps,
        rf_bytes=rf.capacity_bytes if rf is not None else register_file_bytes,
        l2_bytes=l2.capacity_bytes,
        l2_Bps=l2.bandwidth_Bps,
        hbm_Bps=hbm.bandwidth_Bps,
        hbm_latency_s=hbm.latency_s,
    )
