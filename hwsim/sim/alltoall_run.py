"""One MoE dispatch or combine from its parameters: check them, build the cluster graph and the
synthetic routing plan, simulate (:func:`run_alltoall`). The routing problem (ranks, tokens,
experts, distribution) is one :class:`Routing` value.

``hwsim moe`` and the sweep's ``moe_alltoall`` metric kind both call it, so a sweep point and the
CLI run with the same arguments give the same time. The cluster may be a name or an already
modified :class:`~hwsim.spec.cluster.Cluster` (sweep ``axes.cluster`` overrides), the device a
what-if :class:`~hwsim.spec.device.Device` (sweep ``axes.spec``); by default the cluster's own.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
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


#: largest Zipf exponent: popularity k^-S of the k-th expert; past ~10 every token already
#: goes to the same experts, and k^-S underflows float64 for large S
MAX_ZIPF_S = 10.0


def check_routing(routing: str) -> None:
    """``deepep``, ``uniform`` or ``zipf:S`` with 0 < S <= :data:`MAX_ZIPF_S`."""
    if routing in ("deepep", "uniform"):
        return
    if routing.startswith("zipf:"):
        try:
            s = float(routing[5:])
        except ValueError:
            s = math.nan
        if 0 < s <= MAX_ZIPF_S:
            return
        if s > MAX_ZIPF_S:
            raise SpecError(
                f"--routing {routing!r}: S must be at most {MAX_ZIPF_S:g} (popularity k^-S: "
                "beyond it every token goes to the same experts)",
                key="routing",
            )
    raise SpecError(
        f"--routing must be deepep, uniform or zipf:S with S > 0 (e.g. zipf:1.2), got {routing!r}",
        key="routing",
    )


@dataclass(frozen=True)
class Routing:
    """Who sends what to whom in one MoE all-to-all: ``ep`` ranks on ``cluster`` (a name or a
    modified :class:`~hwsim.spec.cluster.Cluster`), ``tokens`` per rank of ``hidden`` values,
    each routed to ``topk`` of ``experts`` within ``topk_groups`` nodes, by the ``routing``
    distribution (``deepep``, ``uniform``, ``zipf:S``) drawn with ``seed``; ``nodes`` defaults
    to the fewest that hold ``ep`` ranks; ``redundant`` extra expert copies (EPLB)."""

    cluster: str | Cluster
    ep: int
    tokens: int
    hidden: int
    experts: int
    topk: int
    topk_groups: int
    routing: str = "deepep"
    seed: int = 0
    nodes: int | None = None
    redundant: int = 0

    def check(self) -> None:
        """SpecError naming the option on a value no plan can use."""
        check_routing(self.routing)
        for name, v in (
            ("ep", self.ep),
            ("tokens", self.tokens),
            ("hidden", self.hidden),
            ("experts", self.experts),
            ("topk", self.topk),
            ("topk-groups", self.topk_groups),
        ):
            if v < 1:
                raise SpecError(f"--{name} must be at least 1, got {v}", key=name)
        if self.seed < 0:
            raise SpecError(f"--seed must be 0 or more, got {self.seed}", key="seed")
        if self.redundant < 0:
            raise SpecError(f"--redundant must be 0 or more, got {self.redundant}", key="redundant")
        if self.topk > self.experts:
            raise SpecError(
                f"--topk ({self.topk}) cannot exceed --experts ({self.experts})", key="topk"
            )
        if self.ep > self.experts + self.redundant:
            # every EP rank hosts at least one expert (a routed one or a redundant copy):
            # ranks beyond that would hold nothing and receive no tokens
            raise SpecError(
                f"--ep {self.ep} is larger than --experts {self.experts} plus --redundant "
                f"{self.redundant} copies ({self.experts + self.redundant}): every EP rank must "
                "hold at least one expert; lower --ep or add --redundant copies",
                key="ep",
            )


def run_alltoall(
    problem: Routing,
    phase: str,
    dtype: str | None,
    kernel: str,
    sms: int | None = None,
    trace: bool = False,
    device: Device | None = None,
    nvlink_intranode: bool | None = None,
) -> tuple[Topology, AllToAllResult, float]:
    """Build the topology and the plan, simulate ``phase`` with ``kernel`` on the wire format
    ``dtype`` (None: the phase's own); ``nvlink_intranode`` overrides the kernel profile's
    transport to peers in the same node (``--ll-nvlink``: DeepEP low-latency only); returns
    (topology, result, plan wall s)."""
    from hwsim.sim.alltoall import simulate_alltoall

    check_choice("phase", phase, PHASES)
    check_choice("kernel", kernel, KERNELS)
    if dtype is not None:
        check_choice("dtype", dtype, WIRE_DTYPES)
    if nvlink_intranode is not None and kernel != "low-latency":
        raise SpecError(
            f"--ll-nvlink applies to --kernel low-latency only, got --kernel {kernel}",
            key="ll-nvlink",
        )
    topo, plan, plan_s = prepare_alltoall(
        problem,
        dispatch_dtype=dtype if (dtype and phase == "dispatch") else "fp8",
        device=device,
    )
    res = simulate_alltoall(
        topo,
        plan,
        kernel,
        phase,
        dtype=dtype,
        comm_sms=sms,
        trace=trace,
        nvlink_intranode=nvlink_intranode,
    )
    return topo, res, plan_s


def prepare_alltoall(
    problem: Routing, dispatch_dtype: str = "fp8", device: Device | None = None
) -> tuple[Topology, DispatchPlan, float]:
    """Check ``problem``, build the topology and the synthetic routing plan; returns
    (topology, plan, plan wall s). One plan serves both phases (the combine reverses the
    dispatch's routes), so a caller timing both builds it once."""
    from hwsim.plan.moe import synthetic_dispatch_plan
    from hwsim.sim.topology import build_topology
    from hwsim.spec.cluster import for_device, load_cluster

    problem.check()
    c = problem.cluster
    cluster = load_cluster(c) if isinstance(c, str) else c
    if device is not None:  # a what-if device brings its own ports into the node
        cluster = for_device(cluster, device)
    ep, nodes = problem.ep, problem.nodes
    per = cluster.devices_per_node_count
    if ep > per and ep % per:
        raise SpecError(
            f"--ep {ep} is not a multiple of the {per} devices per node of '{cluster.name}'",
            key="ep",
        )
    need = max(1, math.ceil(ep / per))
    n = need if nodes is None else nodes
    if n < need:
        raise SpecError(f"--ep {ep} needs at least {need} node(s), got --nodes {n}", key="nodes")
    topo = build_topology(cluster, n, device)
    t0 = time.perf_counter()
    p = problem
    plan, _, _ = synthetic_dispatch_plan(
        ep,
        p.tokens,
        p.hidden,
        p.experts,
        p.topk,
        p.topk_groups,
        p.routing,
        min(per, ep),
        p.redundant,
        p.seed,
        dispatch_dtype=dispatch_dtype,
    )
    return topo, plan, time.perf_counter() - t0
