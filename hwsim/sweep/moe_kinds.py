"""Cluster metric kinds: one MoE all-to-all (dispatch or combine) per unique sub-problem, timed
by the flow simulator on the cluster graph (:func:`hwsim.sim.alltoall_run.run_alltoall`, the
same call as ``hwsim moe``).

This is the sweep's link-speed × EP-degree path: ``axes.cluster`` overrides (``nics.bandwidth``,
``intra_node.bandwidth``, ``network.link_bandwidth``) reach the kind as ``cluster.<path>``
parameters and are applied to its cluster; ``axes.spec`` overrides change the device the
cluster is built of (its SMs, its ports). :func:`cluster_with` is shared with ``serve_step``.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from hwsim.spec.device import Device
from hwsim.spec.errors import SpecError
from hwsim.sweep.kinds import CLUSTER_PREFIX, MetricKind, Scalar, register_kind

if TYPE_CHECKING:
    from hwsim.spec.cluster import Cluster


def cluster_overrides(params: Mapping[str, Any]) -> dict[str, float]:
    """The ``cluster.<path>`` parameters of a point, as ``{path: SI value}``."""
    return {
        k[len(CLUSTER_PREFIX) :]: float(v)
        for k, v in sorted(params.items())
        if k.startswith(CLUSTER_PREFIX)
    }


def cluster_with(name: str, overrides: Mapping[str, float]) -> Cluster:
    """Built-in cluster ``name`` (or a path) with SI ``overrides`` applied (validated)."""
    return _cluster_with(name, tuple(sorted(overrides.items())))


@functools.lru_cache(maxsize=64)
def _cluster_with(name: str, overrides: tuple[tuple[str, float], ...]) -> Cluster:
    # a worker evaluates many points of one cluster: load and validate each variant once
    from hwsim.spec.cluster import load_cluster
    from hwsim.spec.overrides import apply_overrides

    base = load_cluster(name)
    return apply_overrides(base, dict(overrides), si_numbers=True) if overrides else base


class AllToAllOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    cluster: str | None = Field(None, description="cluster name or path; default: base.cluster")
    phase: Literal["dispatch", "combine"] = "dispatch"
    kernel: Literal["normal", "low-latency", "nccl"] = "normal"
    routing: str = Field("deepep", description="deepep | uniform | zipf:S")
    wire_dtype: Literal["fp8", "bf16"] | None = Field(
        None, description="on the wire; default fp8 dispatch, bf16 combine (DeepSeek-V3)"
    )
    comm_sms: int | None = Field(None, ge=1, description="communication SMs (normal kernel)")


@register_kind
class MoeAllToAll(MetricKind):
    """One MoE dispatch or combine on a cluster, flow by flow (DeepEP normal / low-latency
    kernels or a plain NCCL all-to-all). ``ep`` comes from the layout axis or the workload."""

    name = "moe_alltoall"
    description = "MoE dispatch/combine on a cluster from the flow simulator (hwsim moe)"
    vectorised = False
    reads_cluster = True
    #: the routing draw depends on these only: every link speed and device sees the same tokens
    seed_params = ("ep", "tokens", "experts", "top_k", "topk_groups", "redundant")
    params: ClassVar[dict[str, Scalar | None]] = {
        "ep": 8,
        "tokens": 4096,  #: per rank, as DeepEP's tests count them
        "hidden": None,
        "experts": None,
        "top_k": None,
        "topk_groups": 1,
        "redundant": 0,
    }
    metrics: ClassVar[dict[str, str]] = {
        "time_s": "slowest rank's dispatch/combine time, s",
        "rdma_gbps": "DeepEP internode metric (RDMA bytes per rank / time), GB/s",
        "nvlink_gbps": "DeepEP intranode metric, GB/s",
        "ll_gbps": "DeepEP low-latency metric, GB/s",
        "nodes": "nodes the EP group spans",
        "bound": "link kind of the busiest link (or 'latency' under 50 % utilisation)",
        "max_link_utilization": "busiest link's average utilisation, 0-1",
        "imbalance": "max/mean tokens received per rank",
    }
    code_paths = (
        "hwsim/sim",
        "hwsim/plan",
        "hwsim/spec",
        "hwsim/sweep/moe_kinds.py",
        "devices/clusters",
        "devices/profiles",
    )
    #: the graph reads the device's ports and the kernel its SM count
    device_fields = ("kind", "arch", "compute", "interconnect")
    Options: ClassVar[type[BaseModel]] = AllToAllOptions

    def subproblem(self, params: Mapping[str, Any]) -> dict[str, Any]:
        experts = int(params["experts"])
        if experts < 1:
            raise SpecError("moe_alltoall needs an MoE model (base.model) or workload 'experts'")
        return {k: int(params[k]) for k in self.params}

    def evaluate_point(
        self, device: Device, params: Mapping[str, Any], seed: int
    ) -> dict[str, Any]:
        from hwsim.sim.alltoall_run import Routing, run_alltoall

        o = self.options
        assert isinstance(o, AllToAllOptions)
        if o.cluster is None:
            raise SpecError("moe_alltoall needs a cluster: set base.cluster or options.cluster")
        c = cluster_with(o.cluster, cluster_overrides(params))
        problem = Routing(
            c,
            params["ep"],
            params["tokens"],
            params["hidden"],
            params["experts"],
            params["top_k"],
            params["topk_groups"],
            o.routing,
            seed,
            redundant=params["redundant"],
        )
        _, r, _ = run_alltoall(
            problem, o.phase, o.wire_dtype, o.kernel, sms=o.comm_sms, device=device
        )
        return {
            "time_s": r.time_s,
            "rdma_gbps": r.rdma_gbps,
            "nvlink_gbps": r.nvlink_gbps,
            "ll_gbps": r.ll_gbps,
            "nodes": r.nodes,
            "bound": r.bound,
            "max_link_utilization": r.max_link_utilization,
            "imbalance": r.imbalance,
        }
