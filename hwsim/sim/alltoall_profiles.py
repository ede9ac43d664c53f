"""Calibrated parameters of the all-to-all model: per cluster and per kernel profile.

Entries of ``devices/profiles/alltoall.yaml``:

* ``cluster/<name>`` (fallback ``cluster/default``): the achievable fraction of line rate per
  link kind (``nvlink``, ``rdma`` …) - what a real transport sustains after protocol and
  flow-control overheads that the wire-framing factor does not cover.
* ``kernel/<name>`` (``deepep-normal``, ``deepep-low-latency``, ``nccl``): how a kernel moves data
  - SMs it dedicates to communication and how many bytes one SM copies per clock, a fixed
  per-launch cost, chunk sizes, message header bytes, and whether its flows progress coupled per
  sender or independently.

Every number is sourced (``{value, source}``); ``fit-deepep`` values come from the one scipy fit
in :mod:`hwsim.validate.deepep` on ``workloads/measured/deepep_normal_h800.csv`` (see
docs/moe-alltoall.md); the rest are physical estimates or DeepEP's own configuration.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from hwsim.spec.errors import SpecError
from hwsim.spec.profiles import load_profile, profile_entries, profile_path
from hwsim.spec.quantity import Count, Latency, Strict, WholeCount

FAMILY = "alltoall"
KERNELS = ("normal", "low-latency", "nccl")
_KERNEL_KEY = {"normal": "deepep-normal", "low-latency": "deepep-low-latency", "nccl": "nccl"}


class ClusterProfile(Strict):
    """Achievable fraction of each link kind's payload bandwidth on one cluster."""

    description: str
    efficiency: dict[str, Count] = Field(
        description="link kind → fraction of payload bandwidth a transfer sustains (0, 1]"
    )

    def scale(self) -> dict[str, float]:
        return {k: float(v.value) for k, v in self.efficiency.items()}


class KernelProfile(Strict):
    """How one all-to-all implementation moves tokens."""

    description: str
    path: Literal["two_hop", "direct"] = Field(
        description="two_hop: InfiniBand once per (token, node) to the same local index, then "
        "NVLink (DeepEP normal); direct: every (token, rank) straight to its rank"
    )
    dedup: Literal["rank", "expert"] = Field(
        description="rank: a token goes once to each rank holding any of its experts; expert: "
        "once per selected expert (LL messages, plain permute + all-to-all)"
    )
    coupling: Literal["source", "flow"] = Field(
        description="source: a sender's flows progress together (token order, bounded "
        "buffers); flow: every (src, dst, path) flow is shared independently"
    )
    comm_sms: WholeCount | None = Field(
        None,
        description="SMs the kernel runs on (half send/receive, half forward); none: not SM-bound",
    )
    copy_bytes_per_cycle_per_sm: Count | None = Field(
        None, description="bytes one communication SM moves per clock (fitted)"
    )
    setup: Latency = Field(description="fixed cost per launch: start, in-kernel barriers, tail")
    rdma_chunk_tokens: WholeCount | None = None
    nvl_chunk_tokens: WholeCount | None = None
    header_bytes: Count | None = Field(
        None, description="metadata bytes sent with every token message (none: 0)"
    )
    nvlink_intranode: bool = Field(
        True, description="peers in the same node are reached over the intra-node fabric"
    )

    @property
    def header(self) -> float:
        return 0.0 if self.header_bytes is None else float(self.header_bytes.value)

    def copy_rate_Bps(self, clock_Hz: float) -> float | None:
        """Copy throughput of one SM group (half the communication SMs), bytes/s."""
        if self.comm_sms is None or self.copy_bytes_per_cycle_per_sm is None:
            return None
        return self.comm_sms.value / 2 * self.copy_bytes_per_cycle_per_sm.value * clock_Hz


def kernel_key(kernel: str) -> str:
    if kernel not in _KERNEL_KEY:
        raise SpecError(
            f"unknown all-to-all kernel {kernel!r} (known: {', '.join(KERNELS)})", key="kernel"
        )
    return f"kernel/{_KERNEL_KEY[kernel]}"


def load_kernel_profile(kernel: str) -> KernelProfile:
    prof = load_profile(FAMILY, kernel_key(kernel), KernelProfile, fallback=None)
    _check_sources(prof, kernel_key(kernel))
    return prof


def cluster_key(cluster: str) -> str:
    data, _ = profile_entries(FAMILY)
    key = f"cluster/{cluster}"
    return key if key in data else "cluster/default"


def load_cluster_profile(cluster: str) -> ClusterProfile:
    key = cluster_key(cluster)
    prof = load_profile(FAMILY, key, ClusterProfile, fallback=None)
    _check_sources(prof, key)
    for kind, v in prof.efficiency.items():
        if not 0.0 < v.value <= 1.0:
            raise SpecError(
                f"efficiency of '{kind}' must be in (0, 1], got {v.value}",
                file=str(profile_path(FAMILY)),
                key=f"{key}.efficiency.{kind}",
            )
    return prof


def _check_sources(prof: Strict, key: str) -> None:
    data, _ = profile_entries(FAMILY)
    known = data.get("sources", {})
    assert isinstance(known, dict)
    values: list[tuple[str, object]] = []
    for name in type(prof).model_fields:
        v = getattr(prof, name)
        if isinstance(v, dict):
            values += [(f"{name}.{k}", x) for k, x in v.items()]
        else:
            values.append((name, v))
    for name, v in values:
        src = getattr(v, "source", None)
        if src is not None and src not in known:
            raise SpecError(
                f"source {src!r} is not in the sources table",
                file=str(profile_path(FAMILY)),
                key=f"{key}.{name}",
            )
