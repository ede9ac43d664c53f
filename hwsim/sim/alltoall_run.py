"""One MoE dispatch or combine from its parameters: check them, build the cluster graph and the
synthetic routing plan, simulate (:func:`run_alltoall`).

``hwsim moe`` and the sweep's ``moe_alltoall`` metric kind both call it, so a sweep point and the
CLI run with the same arguments give the same time. The cluster may be a name or an already
modified :class:`~hwsim.spec.cluster.Cluster` (sweep ``axes.cluster`` overrides), the device a
what-if :class:`~hwsim.spec.device.Device` (sweep ``axes.spec``); by default the cluster's own.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

from hwsim.sim.alltoall_profiles import KERNELS
from hwsim.spec.errors import SpecError

if TYPE_CHECKING:
    from hwsim.plan.moe_dispatch import DispatchPlan
    from hwsim.sim.alltoall import AllToAllResult
    from hwsim.sim.topology import Topology
    from hwsim.spec.cluster import Cluster
    from hwsim.spec.device import Device

PHASES = ("dispatch", "combine")
WIRE_DTYPES = ("fp8", "bf16")


def check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    """A :class:`SpecError` naming ``name`` unless ``value`` is one of ``allowed``."""
    if value not in allowed:
        raise SpecError(f"{name} must be one of {', '.join(allowed)}, got {value!r}", key=name)


def check_routing(routing: str) -> None:
    """``deepep``, ``uniform`` or ``zipf:S`` with S > 0."""
    if routing in ("deepep", "uniform"):
        return
    if routing.startswith("zipf:"):
        try:
            if float(routing[5:]) > 0:
                return
        except ValueError:
            pass
    raise SpecError(
        f"--routing must be deepep, uniform or zipf:S with S > 0 (e.g. zipf:1.2), got {routing!r}",
        key="routing",
    )


def run_alltoall(
    cluster: str | Cluster,
    ep: int,
    tokens: int,
    hidden: int,
    experts: int,
    topk: int,
    topk_groups: int,
    phase: str,
    dtype: str | None,
    kernel: str,
    routing: str,
    seed: int,
    nodes: int | None = None,
    redundant: int = 0,
    sms: int | None = None,
    trace: bool = False,
    device: Device | None = None,
) -> tuple[Topology, AllToAllResult, float]:
    """Build the topology and the plan, simulate; returns (topology, result, plan wall s).

    ``tokens`` are per rank; ``nodes`` defaults to the fewest that hold ``ep`` ranks."""
    from hwsim.sim.alltoall import simulate_alltoall

    check_choice("phase", phase, PHASES)
    check_choice("kernel", kernel, KERNELS)
    if dtype is not None:
        check_choice("dtype", dtype, WIRE_DTYPES)
    topo, plan, plan_s = prepare_alltoall(
        cluster, ep, tokens, hidden, experts, topk, topk_groups, routing, seed, nodes, redundant,
        dispatch_dtype=dtype if (dtype and phase == "dispatch") else "fp8", device=device,
    )  # fmt: skip
    res = simulate_alltoall(topo, plan, kernel, phase, dtype=dtype, comm_sms=sms, trace=trace)
    return topo, res, plan_s


def prepare_alltoall(
    cluster: str | Cluster,
    ep: int,
    tokens: int,
    hidden: int,
    experts: int,
    topk: int,
    topk_groups: int,
    routing: str,
    seed: int,
    nodes: int | None = None,
    redundant: int = 0,
    dispatch_dtype: str = "fp8",
    device: Device | None = None,
) -> tuple[Topology, DispatchPlan, float]:
    """Check the routing parameters, build the topology and the synthetic routing plan;
    returns (topology, plan, plan wall s). One plan serves both phases (the combine reverses
    the dispatch's routes), so a caller timing both builds it once."""
    from hwsim.plan.moe import synthetic_dispatch_plan
    from hwsim.sim.topology import build_topology

    if device is not None:  # a what-if device brings its own ports into the node
        from hwsim.spec.cluster import for_device, load_cluster

        cluster = for_device(load_cluster(cluster) if isinstance(cluster, str) else cluster, device)
    check_routing(routing)
    for name, v in (
        ("ep", ep),
        ("tokens", tokens),
        ("hidden", hidden),
        ("experts", experts),
        ("topk", topk),
        ("topk-groups", topk_groups),
    ):
        if v < 1:
            raise SpecError(f"--{name} must be at least 1, got {v}", key=name)
    if topk > experts:
        raise SpecError(f"--topk ({topk}) cannot exceed --experts ({experts})", key="topk")
    probe = build_topology(cluster, 1, device)
    per = probe.per_node
    if ep > per and ep % per:
        raise SpecError(
            f"--ep {ep} is not a multiple of the {per} devices per node of '{probe.name}'",
            key="ep",
        )
    need = max(1, math.ceil(ep / per))
    n = need if nodes is None else nodes
    if n < need:
        raise SpecError(f"--ep {ep} needs at least {need} node(s), got --nodes {n}", key="nodes")
    topo = build_topology(cluster, n, device)
    t0 = time.perf_counter()
    plan, _, _ = synthetic_dispatch_plan(
        ep,
        tokens,
        hidden,
        experts,
        topk,
        topk_groups,
        routing,
        min(per, ep),
        redundant,
        seed,
        dispatch_dtype=dispatch_dtype,
    )
    return topo, plan, time.perf_counter() - t0
