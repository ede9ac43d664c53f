"""Building a cluster's graph (see :mod:`hwsim.sim.topology`): elements, cables, and the checks
that come first - a fat tree's switch capacity and the graph's size against the memory budget
(:func:`hwsim.sim.budget.check_memory`) are checked *before* anything is built, so 10^6 nodes
are refused in one line instead of exhausting memory."""

from __future__ import annotations

import math
from dataclasses import dataclass

import networkx as nx

from hwsim.sim.budget import check_memory
from hwsim.spec.cluster import (
    Cluster,
    Dragonfly,
    FatTree,
    Mesh2D,
    NoNetwork,
    SwarmX,
    cluster_file,
    leaf_ports,
)
from hwsim.spec.device import Device
from hwsim.spec.errors import SpecError

#: Host memory per graph element or directed link, bytes. Measured with tracemalloc on the
#: built-in clusters at 64 and 256 nodes: 470-550 B per (element + directed link) for the graph
#: and the link table; doubled because routing tables and memos grow on top of the graph.
BYTES_PER_GRAPH_ITEM = 1024


@dataclass(frozen=True)
class LinkSpec:
    """One direction of one cable (or of a bundle of parallel cables)."""

    index: int
    src: str
    dst: str
    bandwidth_Bps: float  #: payload capacity (line rate divided by the wire framing factor)
    latency_s: float
    kind: str

    @property
    def name(self) -> str:
        return f"{self.src}->{self.dst}"


def _fat_tree_leaves(c: Cluster, net: FatTree, nodes: int) -> int:
    """Leaf switches a two-tier fat tree needs for ``nodes`` nodes (as :class:`_Builder`)."""
    assert c.nics is not None
    rails = c.devices_per_node_count * int(c.nics.per_device.value)
    down, _ = leaf_ports(net)
    if net.rail_optimized:
        return rails * math.ceil(nodes / down)
    return math.ceil(nodes * rails / down)


def graph_size(c: Cluster, nodes: int) -> tuple[int, int]:
    """(elements, directed links) of ``c`` built with ``nodes`` nodes, counted without building
    (upper bounds where parallel cables merge)."""
    per = c.devices_per_node_count
    k = int(c.nics.per_device.value) if c.nics is not None else 0
    elements, cables = nodes * per, 0
    intra = c.intra_node
    if intra is not None and per > 1:
        if intra.kind == "switch":
            elements, cables = elements + nodes, cables + nodes * per
        else:
            cables += nodes * per * (per - 1) // 2
    elements, cables = elements + nodes * per * k, cables + nodes * per * k
    net = c.network
    if isinstance(net, FatTree) and c.nics is not None:
        leaves = _fat_tree_leaves(c, net, nodes)
        spines = min(net.modeled_spines, leaf_ports(net)[1]) if leaves > 1 else 0
        elements += leaves + spines
        cables += nodes * per * k + spines * leaves
    elif isinstance(net, Dragonfly):
        npg = int(net.nodes_per_group.value)
        groups = math.ceil(nodes / npg)
        cables += groups * npg * (npg - 1) // 2 * int(net.links_per_node_pair.value)
        cables += groups * (groups - 1) // 2 * int(net.links_per_group_pair.value)
    elif isinstance(net, Mesh2D):
        cables += 2 * nodes
    elif isinstance(net, SwarmX):
        leaves_n = nodes * per * k
        switches = leaves_n // max(1, int(net.fan_out.value) - 1) + 1
        memx = int(net.memoryx_nodes.value)
        elements += switches + memx
        cables += leaves_n + switches + memx
    elements += len(c.extra_nodes)
    cables += len(c.extra_links)
    return elements, 2 * cables


def check_size(c: Cluster, nodes: int, file: str | None) -> None:
    """Refuse, before building, a fat tree its switches cannot connect, or a graph whose
    estimated host memory exceeds the budget (:func:`hwsim.sim.budget.check_memory`)."""
    net = c.network
    if isinstance(net, FatTree) and c.nics is not None:
        leaves, radix = _fat_tree_leaves(c, net, nodes), int(net.switch_radix.value)
        if leaves > radix:
            raise SpecError(
                f"{nodes} nodes need {leaves} leaf switches, more than a two-tier fat tree "
                f"of radix {radix} connects (at most {radix}); use fewer nodes or a larger radix",
                file=file,
                key="network.switch_radix",
            )
    elements, links = graph_size(c, nodes)
    try:
        check_memory((elements + links) * BYTES_PER_GRAPH_ITEM, cheaper_mode_hint="use fewer nodes")
    except SpecError as err:
        raise SpecError(
            f"{nodes:,} nodes make a graph of ~{elements:,} elements and ~{links:,} links: "
            f"{err.message}",
            file=file,
            key="nodes",
        ) from None


# ---------------------------------------------------------------------------------- building
class _Builder:
    def __init__(self, cluster: Cluster, device: Device, nodes: int) -> None:
        self.c = cluster
        self.dev = device
        self.n = nodes
        self.g = nx.DiGraph()
        self.links: list[LinkSpec] = []
        self.file = cluster_file(cluster)

    def element(self, name: str, role: str, transit: bool) -> None:
        self.g.add_node(name, role=role, transit=transit)

    def cable(
        self, a: str, b: str, bw: float, lat_ab: float, kind: str, lat_ba: float | None = None
    ) -> None:
        """Two directed links; parallel cables between the same pair add up."""
        for u, v, lat in ((a, b, lat_ab), (b, a, lat_ab if lat_ba is None else lat_ba)):
            if self.g.has_edge(u, v):
                old = self.links[self.g.edges[u, v]["index"]]
                new = LinkSpec(old.index, u, v, old.bandwidth_Bps + bw, old.latency_s, old.kind)
                self.links[old.index] = new
                self.g.edges[u, v]["bandwidth_Bps"] = new.bandwidth_Bps
                continue
            spec = LinkSpec(len(self.links), u, v, bw, lat, kind)
            self.links.append(spec)
            self.g.add_edge(u, v, index=spec.index, bandwidth_Bps=bw, latency_s=lat, kind=kind)

    def port(self, kind: str) -> tuple[float, float, int]:
        """(per-port bandwidth, latency, count) of the device's ports of ``kind``."""
        for p in self.dev.interconnect:
            if p.kind == kind:
                return p.bandwidth_Bps, p.latency.value, int(p.count.value)
        raise SpecError(
            f"device '{self.c.device}' has no interconnect port of kind '{kind}'",
            file=self.file,
            key="intra_node.port_kind",
        )

    # ---- the parts ---------------------------------------------------------------------------
    def build(self) -> tuple[nx.DiGraph, tuple[str, ...], tuple[LinkSpec, ...]]:
        """The graph, the devices in rank order and the links; refuses (before building
        anything) a network its switches cannot connect or one too large for host memory."""
        c, per = self.c, self.c.devices_per_node_count
        check_size(c, self.n, self.file)
        forward = bool(c.intra_node and c.intra_node.devices_forward) or (
            per == 1 and isinstance(c.network, Dragonfly | Mesh2D)
        )
        devices = [f"n{n}.g{j}" for n in range(self.n) for j in range(per)]
        for d in devices:
            self.element(d, "device", forward)
        self.intra(per)
        self.nics(per)
        net = c.network
        if isinstance(net, FatTree):
            self.fat_tree(net, per)
        elif isinstance(net, Dragonfly):
            self.dragonfly(net, per)
        elif isinstance(net, Mesh2D):
            self.mesh2d(net, per)
        elif isinstance(net, SwarmX):
            self.swarmx(net, per)
        self.extras()
        self.check_connected(devices)
        return self.g, tuple(devices), tuple(self.links)

    def intra(self, per: int) -> None:
        intra = self.c.intra_node
        if intra is None or per == 1:
            return
        bw = intra.bandwidth.value if intra.bandwidth else None
        lat = intra.latency.value if intra.latency else None
        pairs = int(intra.links_per_pair.value) if intra.links_per_pair else None
        if intra.port_kind and (bw is None or lat is None or pairs is None):
            p_bw, p_lat, p_count = self.port(intra.port_kind)
            if intra.kind == "switch":
                bw = p_bw * p_count if bw is None else bw
            else:
                bw = p_bw if bw is None else bw
                pairs = max(1, p_count // (per - 1)) if pairs is None else pairs
            lat = p_lat if lat is None else lat
        assert bw is not None and lat is not None
        for n in range(self.n):
            if intra.kind == "switch":
                sw = f"n{n}.sw"
                self.element(sw, "switch", True)
                for j in range(per):
                    # half the hop latency each way: device → switch → device is one hop
                    self.cable(f"n{n}.g{j}", sw, bw, lat / 2, intra.link_kind)
            else:
                for i in range(per):
                    for j in range(i + 1, per):
                        self.cable(
                            f"n{n}.g{i}", f"n{n}.g{j}", bw * (pairs or 1), lat, intra.link_kind
                        )

    def nics(self, per: int) -> None:
        nic = self.c.nics
        if nic is None:
            return
        k_per = int(nic.per_device.value)
        for n in range(self.n):
            for j in range(per):
                for k in range(k_per):
                    name = f"n{n}.g{j}.nic{k}"
                    self.element(name, "nic", True)
                    if nic.host_link is not None:
                        h = nic.host_link
                        self.cable(
                            f"n{n}.g{j}",
                            name,
                            h.bandwidth.value,
                            h.latency.value,
                            "pcie",
                            lat_ba=h.latency.value + nic.latency.value,
                        )
                    else:
                        self.cable(
                            f"n{n}.g{j}",
                            name,
                            nic.bandwidth.value,
                            0.0,
                            nic.link_kind,
                            lat_ba=nic.latency.value,
                        )

    def nic_bw(self) -> tuple[float, float]:
        """(payload bandwidth, NIC latency) of one NIC's network port."""
        assert self.c.nics is not None
        return (self.c.nics.bandwidth.value / self.c.nics.wire_factor(), self.c.nics.latency.value)

    def fat_tree(self, net: FatTree, per: int) -> None:
        assert self.c.nics is not None
        k_per = int(self.c.nics.per_device.value)
        rails = per * k_per
        down, up = leaf_ports(net)
        link_bw = net.link_bandwidth.value / self.c.nics.wire_factor()
        nic_bw, nic_lat = self.nic_bw()
        sw_lat = net.switch_latency.value
        if net.rail_optimized:
            per_rail = math.ceil(self.n / down)
            leaf_of = {
                (n, r): f"leaf.r{r}.{n // down}" for n in range(self.n) for r in range(rails)
            }
            leaves = [f"leaf.r{r}.{i}" for r in range(rails) for i in range(per_rail)]
        else:
            total = self.n * rails
            leaf_of = {
                (n, r): f"leaf.{(n * rails + r) // down}"
                for n in range(self.n)
                for r in range(rails)
            }
            leaves = [f"leaf.{i}" for i in range(math.ceil(total / down))]
        for leaf in leaves:
            self.element(leaf, "switch", True)
        for (n, r), leaf in leaf_of.items():
            j, k = divmod(r, k_per)
            self.cable(
                f"n{n}.g{j}.nic{k}",
                leaf,
                min(nic_bw, link_bw),
                nic_lat,
                net.link_kind,
                lat_ba=sw_lat,
            )
        if len(leaves) > 1:
            spines = min(net.modeled_spines, up)
            for s in range(spines):
                self.element(f"spine{s}", "switch", True)
                for leaf in leaves:
                    self.cable(leaf, f"spine{s}", link_bw * up / spines, sw_lat, net.link_kind)

    def _attach(self, node: int, slot: int, per: int) -> str:
        return f"n{node}.g{slot % per}"

    def dragonfly(self, net: Dragonfly, per: int) -> None:
        npg = int(net.nodes_per_group.value)
        bw, lat = net.link_bandwidth.value, net.hop_latency.value
        groups = math.ceil(self.n / npg)
        for g in range(groups):
            members = range(g * npg, min(self.n, (g + 1) * npg))
            for a in members:
                for b in members:
                    if a < b:
                        for k in range(int(net.links_per_node_pair.value)):
                            self.cable(
                                self._attach(a, b + k, per),
                                self._attach(b, a + k, per),
                                bw,
                                lat,
                                net.link_kind,
                            )
        for x in range(groups):
            for y in range(x + 1, groups):
                size_x = min(npg, self.n - x * npg)
                size_y = min(npg, self.n - y * npg)
                for k in range(int(net.links_per_group_pair.value)):
                    a = x * npg + (y + k) % size_x
                    b = y * npg + (x + k) % size_y
                    self.cable(
                        self._attach(a, y + k, per),
                        self._attach(b, x + k, per),
                        bw,
                        lat,
                        net.link_kind,
                    )

    def mesh2d(self, net: Mesh2D, per: int) -> None:
        cols = int(net.columns.value) if net.columns else math.ceil(math.sqrt(self.n))
        rows = math.ceil(self.n / cols)
        bw, lat = net.link_bandwidth.value, net.hop_latency.value
        for n in range(self.n):
            r, c = divmod(n, cols)
            right = r * cols + (c + 1) % cols if (c + 1 < cols or net.torus) else None
            below = ((r + 1) % rows) * cols + c if (r + 1 < rows or net.torus) else None
            for m, slot in ((right, 0), (below, 1)):
                if m is not None and m < self.n and m != n:
                    self.cable(
                        self._attach(n, slot, per),
                        self._attach(m, slot + 2, per),
                        bw,
                        lat,
                        net.link_kind,
                    )

    def swarmx(self, net: SwarmX, per: int) -> None:
        assert self.c.nics is not None
        k_per = int(self.c.nics.per_device.value)
        fan = max(2, int(net.fan_out.value))
        bw, lat = net.link_bandwidth.value, net.switch_latency.value
        nic_bw, nic_lat = self.nic_bw()
        level = [
            f"n{n}.g{j}.nic{k}" for n in range(self.n) for j in range(per) for k in range(k_per)
        ]
        depth = 0
        while True:
            parents = [f"swx.{depth}.{i}" for i in range(math.ceil(len(level) / fan))]
            for p in parents:
                self.element(p, "switch", True)
            for i, child in enumerate(level):
                child_bw = min(nic_bw, bw) if depth == 0 else bw
                self.cable(
                    child,
                    parents[i // fan],
                    child_bw,
                    nic_lat if depth == 0 else lat,
                    net.link_kind,
                    lat_ba=lat,
                )
            level, depth = parents, depth + 1
            if len(level) == 1:
                break
        for m in range(int(net.memoryx_nodes.value)):
            self.element(f"memx{m}", "endpoint", False)
            self.cable(level[0], f"memx{m}", net.memoryx_bandwidth.value, lat, net.link_kind)

    def extras(self) -> None:
        for x in self.c.extra_nodes:
            if x.name in self.g:
                raise SpecError(
                    f"'{x.name}' already names a graph element", file=self.file, key="extra_nodes"
                )
            self.element(x.name, x.role, x.role == "switch")
        for i, lk in enumerate(self.c.extra_links):
            for end in ("a", "b"):
                name = getattr(lk, end)
                if name not in self.g:
                    raise SpecError(
                        f"dangling endpoint '{name}': no such element (elements look like "
                        f"n0.g0, n0.sw, n0.g0.nic0, leaf.r0.0, spine0, or an extra_nodes name)",
                        file=self.file,
                        key=f"extra_links[{i}].{end}",
                    )
            self.cable(lk.a, lk.b, lk.bandwidth.value, lk.latency.value, lk.kind)

    def check_connected(self, devices: list[str]) -> None:
        if len(devices) > 1 and isinstance(self.c.network, NoNetwork) and self.n > 1:
            raise SpecError(
                f"{self.n} nodes but network kind 'none': the nodes are disconnected",
                file=self.file,
                key="network",
            )
        if self.g.number_of_nodes() > 1 and not nx.is_weakly_connected(self.g):
            parts = sorted(nx.weakly_connected_components(self.g), key=len)
            lonely = sorted(parts[0])[:3]
            raise SpecError(
                f"the topology is disconnected: {len(parts)} separate parts; e.g. "
                f"{', '.join(lonely)} reach nothing else",
                file=self.file,
                key="network",
            )
