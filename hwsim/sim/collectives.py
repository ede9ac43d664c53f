"""Analytic collectives on a device's fabric (the alpha-beta model), used by every mapper until a
flow-level simulator times the collective on the cluster graph.

A :class:`Fabric` is what one device sees of the network: its bandwidth per direction into the
node fabric (NVLink/NVSwitch, Infinity Fabric, C2C links) and into the inter-node network (its
NICs), with the one-hop latency of each. Times (seconds) for ``n`` ranks and ``S`` bytes per
rank, bandwidth ``B`` and latency ``α`` of the scope (Thakur, Rabenseifner & Gropp, "Optimization
of collective communication operations in MPICH", IJHPCA 2005; ring algorithms as in NCCL)::

    all-reduce      2 (n-1)/n · S / B + min(2 (n-1), 2 ⌈log2 n⌉) α
    all-gather      (n-1)/n · S / B + min(n-1, ⌈log2 n⌉) α
    reduce-scatter  (n-1)/n · S / B + min(n-1, ⌈log2 n⌉) α
    all-to-all      (n-1)/n · S / B + α                  (all pairs at once, one hop)
    p2p             S / B + α

The latency term takes the better of a ring (``n - 1`` steps) and a tree or recursive doubling
(``⌈log2 n⌉`` steps), as NCCL switches to trees for small messages; the bandwidth term is the
ring's, which is optimal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hwsim.plan.workload import Collective, OpTiming

if TYPE_CHECKING:  # cluster specs are only read through their attributes
    from hwsim.spec.cluster import Cluster
from hwsim.spec.device import Device

#: Port kinds that join devices inside a node (or a wafer/rack), best first.
_INTRA_PORTS = ("nvlink", "xgmi", "c2c", "rdu_fabric", "wafer_fabric")
#: Port kinds that leave the node, best first.
_INTER_PORTS = ("infiniband", "ethernet", "swarmx", "c2c", "pcie")


@dataclass(frozen=True)
class Fabric:
    """One device's view of the network (bytes/s per direction, seconds)."""

    intra_Bps: float
    intra_latency_s: float
    inter_Bps: float
    inter_latency_s: float
    devices_per_node: int
    intra_kind: str = "nvlink"
    inter_kind: str = "rdma"
    source: str = "device ports"

    def scope_of(self, group: int, stride: int = 1) -> str:
        """``intra`` when ``group`` ranks spaced ``stride`` apart fit in one node."""
        return "intra" if group * stride <= self.devices_per_node else "inter"


def fabric_for(device: Device, cluster: Cluster | None = None) -> Fabric:
    """The fabric a device sees: from the cluster spec when given, else from its own ports (all
    ports of the best intra-node kind together; one inter-node port group)."""
    if cluster is not None:
        per = cluster.devices_per_node_count
        intra_bw, intra_lat, intra_kind = 0.0, 0.0, "none"
        if cluster.intra_node is not None:
            it = cluster.intra_node
            port = next((p for p in device.interconnect if p.kind == it.port_kind), None)
            bw = it.bandwidth.value if it.bandwidth else (port.bandwidth_Bps if port else 0.0)
            lat = it.latency.value if it.latency else (port.latency.value if port else 0.0)
            if it.kind == "full_mesh":
                # a ring or all-to-all uses every peer link at once
                pairs = it.links_per_pair.value if it.links_per_pair else 1.0
                bw *= pairs * max(1, per - 1)
            intra_bw, intra_lat, intra_kind = bw, lat, it.link_kind
        inter_bw, inter_lat, inter_kind = intra_bw, intra_lat, intra_kind
        if cluster.nics is not None:
            n = cluster.nics
            inter_bw = n.per_device.value * n.bandwidth.value / n.wire_factor()
            sw = getattr(cluster.network, "switch_latency", None)
            # NIC out, (up to three) switches, NIC in
            inter_lat = 2 * n.latency.value + (3 * sw.value if sw is not None else 0.0)
            inter_kind = n.link_kind
        elif cluster.network.kind != "none":
            net = cluster.network
            bw = getattr(net, "link_bandwidth", None)
            lat = getattr(net, "hop_latency", None) or getattr(net, "switch_latency", None)
            if bw is not None:
                inter_bw = bw.value
                inter_lat = lat.value if lat is not None else intra_lat
                inter_kind = getattr(net, "link_kind", inter_kind)
        return Fabric(
            intra_bw or inter_bw,
            intra_lat,
            inter_bw,
            inter_lat,
            per,
            intra_kind,
            inter_kind,
            f"cluster {cluster.name}",
        )
    ports = {p.kind: p for p in device.interconnect}
    intra = next((ports[k] for k in _INTRA_PORTS if k in ports), None)
    inter = next((ports[k] for k in _INTER_PORTS if k in ports and ports[k] is not intra), None)
    intra_bw = intra.total_bandwidth_Bps if intra else 0.0
    inter_bw = inter.total_bandwidth_Bps if inter else intra_bw
    return Fabric(
        intra_Bps=intra_bw or inter_bw or 1.0,
        intra_latency_s=intra.latency.value if intra else 0.0,
        inter_Bps=inter_bw or 1.0,
        inter_latency_s=inter.latency.value if inter else 0.0,
        devices_per_node=1 if intra is None else 8,
        intra_kind=intra.kind if intra else "none",
        inter_kind=inter.kind if inter else "none",
        source=f"{device.name} ports (no cluster given"
        + ("; 8 devices per node assumed)" if intra else ")"),
    )


def collective_time(op: Collective, fabric: Fabric) -> OpTiming:
    """Alpha-beta time of ``op`` on ``fabric`` (see the module docstring)."""
    n, s = op.group, op.bytes
    name = op.name or op.kind
    if n <= 1 or s <= 0:
        return OpTiming(name, 0.0, "none", source="collective:alpha-beta")
    inter = op.scope == "inter"
    bw = fabric.inter_Bps if inter else fabric.intra_Bps
    lat = fabric.inter_latency_s if inter else fabric.intra_latency_s
    kind = fabric.inter_kind if inter else fabric.intra_kind
    frac = (n - 1) / n
    log_n = math.ceil(math.log2(n))
    if op.kind == "all-reduce":
        wire, steps = 2 * frac * s, 2 * min(n - 1, log_n)
    elif op.kind in ("all-gather", "reduce-scatter"):
        wire, steps = frac * s, min(n - 1, log_n)
    elif op.kind == "all-to-all":
        wire, steps = frac * s, 1
    else:
        wire, steps = s, 1
    t_bw, t_lat = wire / bw, steps * lat
    return OpTiming(
        op=name,
        time_s=t_bw + t_lat,
        bound=kind if t_bw >= t_lat else "latency",
        bytes_by_level={kind: wire},
        notes=(f"{op.kind} over {n} ranks ({op.scope}): alpha-beta model on {fabric.source}",),
        source="collective:alpha-beta",
    )
