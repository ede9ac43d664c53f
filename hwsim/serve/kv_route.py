"""Where a disaggregated request's KV cache travels between a prefill and a decode replica.

With a cluster (the target's mapper has one: ``devices/clusters/*.yaml``) the replicas are
placed on its graph (:mod:`hwsim.sim.topology`) in rank order, prefill replicas first, and the
cache moves shard by shard: device ``k`` of the prefill replica sends its share (``1/d`` of the
bytes, the cache being split over the replica's ``d`` devices by TP and PP alike) to device
``k`` of the decode replica along the ECMP route between them. The whole hand-over is one flow
on the simulation's engine (:meth:`hwsim.sim.engine.Engine.transfer`) that loads every link it
crosses by the share of its bytes that crosses it, so it shares NICs, leaf and spine links and
NVLink max-min fairly with every other KV transfer in flight, and an oversubscribed fabric slows
it. Without a cluster, the hand-over crosses the two replicas' NICs (the aggregate link model:
a non-blocking network).

Cost: one route per (device pair) the first time a (prefill, decode) replica pair meets,
memoised, and one engine link per graph link a transfer uses: it grows with replica pairs and
links, not with requests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from hwsim.sim.engine import Engine, Link
from hwsim.sim.topology import Topology, build_topology
from hwsim.spec.cluster import Cluster
from hwsim.spec.device import Device


@dataclass(frozen=True)
class KvPath:
    """The links one hand-over loads, the fraction of its bytes on each, and its latency (s)."""

    links: tuple[Link, ...]
    weights: tuple[float, ...]
    latency_s: float


@dataclass
class KvNetwork:
    """Replicas placed on a cluster graph; :meth:`path` routes a hand-over between two."""

    eng: Engine
    topo: Topology
    devices_per_replica: int
    _links: dict[int, Link] = field(default_factory=dict)
    _paths: dict[tuple[int, int], KvPath] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.topo.name} graph, {self.topo.nodes} nodes"

    def path(self, src_replica: int, dst_replica: int) -> KvPath:
        """``src_replica`` and ``dst_replica`` index the placement (prefill ones first)."""
        key = (src_replica, dst_replica)
        if key not in self._paths:
            self._paths[key] = self._route(*key)
        return self._paths[key]

    def _route(self, src: int, dst: int) -> KvPath:
        d = self.devices_per_replica
        loads: dict[int, float] = {}
        latency = 0.0
        for k in range(d):
            r = self.topo.route(src * d + k, dst * d + k)
            latency = max(latency, r.latency_s)
            for li, frac in zip(r.links.tolist(), r.fractions.tolist(), strict=True):
                loads[li] = loads.get(li, 0.0) + frac / d
        links = tuple(self._link(li) for li in loads)
        return KvPath(links, tuple(loads.values()), latency)

    def _link(self, index: int) -> Link:
        if index not in self._links:
            spec = self.topo.links[index]
            self._links[index] = self.eng.link(spec.name, spec.bandwidth_Bps, 0.0, spec.kind)
        return self._links[index]


def kv_network(
    eng: Engine,
    cluster: Cluster | None,
    device: Device,
    devices_per_replica: int,
    replicas: int,
) -> KvNetwork | None:
    """The placement of ``replicas`` replicas of ``devices_per_replica`` devices on ``cluster``
    (as many nodes as they fill), or None without a cluster (the NIC model applies)."""
    if cluster is None:
        return None
    per_node = max(1, cluster.devices_per_node_count)
    nodes = max(1, math.ceil(replicas * devices_per_replica / per_node))
    topo = build_topology(cluster, nodes, device)
    return KvNetwork(eng, topo, devices_per_replica)


__all__ = ["KvNetwork", "KvPath", "kv_network"]
