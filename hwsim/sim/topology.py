"""Cluster YAML → networkx graph with per-direction links, shortest-path routing and ECMP.

Every cable becomes two directed edges (one per direction) carrying ``bandwidth_Bps``,
``latency_s`` (paid when a message enters the edge: host link, NIC processing, one switch
traversal) and ``kind`` (``nvlink``, ``pcie``, ``rdma`` …, the key of ``bytes_by_link_kind``).
Graph elements are named ``n3.g5`` (device 5 of node 3), ``n3.sw`` (the node switch),
``n3.g5.nic0``, ``leaf.r5.0``, ``spine2``, ``swx.1.0``, ``memx0``.

Routing is shortest path by hop count over elements that forward traffic (switches, NICs,
devices whose ``intra_node.devices_forward`` is set); a non-forwarding device is only ever a
path's first or last element. Equal-cost paths share traffic by per-hop ECMP: at every element
the traffic splits evenly over the next hops that stay on a shortest path, so a route is a set
of (link, fraction) pairs. Distances come from one batched breadth-first search per destination
(scipy), and routes are memoised per (element, destination), so routing all pairs of a
1024-GPU cluster costs seconds, not minutes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import networkx as nx
import numpy as np
from numpy.typing import NDArray
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import shortest_path

from hwsim.spec.cluster import (
    Cluster,
    Dragonfly,
    FatTree,
    Mesh2D,
    NoNetwork,
    SwarmX,
    cluster_file,
    leaf_ports,
    load_cluster,
)
from hwsim.spec.device import Device
from hwsim.spec.errors import SpecError
from hwsim.spec.load import load_device

FArr = NDArray[np.float64]
IArr = NDArray[np.int64]


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


@dataclass(frozen=True)
class Route:
    """Where traffic from one element to another goes: links and the fraction on each."""

    links: IArr
    fractions: FArr
    latency_s: float  #: the slowest equal-hop path (seconds)
    hops: int


@dataclass
class Topology:
    """A cluster instance with a given node count: graph, devices in rank order, links."""

    cluster: Cluster
    device: Device
    nodes: int
    graph: nx.DiGraph
    devices: tuple[str, ...]
    links: tuple[LinkSpec, ...]
    _node_ix: dict[str, int] = field(default_factory=dict, repr=False)
    _dist: dict[int, list[float]] = field(default_factory=dict, repr=False)
    _memo: dict[tuple[int, int], Route] = field(default_factory=dict, repr=False)
    _succ: list[list[tuple[int, int, float]]] = field(default_factory=list, repr=False)
    _transit: list[bool] = field(default_factory=list, repr=False)

    @property
    def name(self) -> str:
        return self.cluster.name

    @property
    def per_node(self) -> int:
        return self.cluster.devices_per_node_count

    @property
    def ranks(self) -> int:
        return len(self.devices)

    def node_of(self, rank: int) -> int:
        return rank // self.per_node

    def link_kinds(self) -> list[str]:
        return sorted({lk.kind for lk in self.links})

    def transit(self, element: str) -> bool:
        return bool(self.graph.nodes[element]["transit"])

    # ---- routing ---------------------------------------------------------------------------
    def route(self, src: int | str, dst: int | str) -> Route:
        """ECMP route between two ranks (or element names)."""
        s = self._ix(src)
        d = self._ix(dst)
        if s == d:
            return Route(np.zeros(0, np.int64), np.zeros(0), 0.0, 0)
        return self._route_from(s, d, first=True)

    def distance(self, src: int | str, dst: int | str) -> float:
        """Hop count of the shortest route (``inf`` when there is none)."""
        return self._dist_from(self._ix(src), self._ix(dst), first=True)

    def prepare(self, destinations: Iterable[int | str]) -> None:
        """Batch the breadth-first searches for many destinations (one scipy call)."""
        todo = [n for n in dict.fromkeys(self._ix(x) for x in destinations) if n not in self._dist]
        if not todo:
            return
        dist = shortest_path(
            self._reverse_transit_csr(), directed=True, unweighted=True, indices=todo
        )
        for n, row in zip(todo, np.atleast_2d(dist), strict=True):
            self._dist[n] = row.tolist()

    def _ix(self, x: int | str) -> int:
        """Graph index of a rank (int) or an element name (str)."""
        name = self.devices[x] if isinstance(x, int) else x
        try:
            return self._node_ix[name]
        except KeyError:
            raise SpecError(f"no element named {name!r} in cluster '{self.name}'") from None

    def _tables(self) -> None:
        """Integer adjacency: successors with (edge index, latency); transit flags."""
        if self._succ:
            return
        names = list(self._node_ix)
        self._transit = [bool(self.graph.nodes[n]["transit"]) for n in names]
        self._succ = [
            [
                (self._node_ix[v], int(e["index"]), float(e["latency_s"]))
                for v, e in self.graph.adj[n].items()
            ]
            for n in names
        ]

    def _reverse_transit_csr(self) -> csr_matrix:
        self._tables()
        n = len(self._node_ix)
        rows, cols = [], []
        for u, nbrs in enumerate(self._succ):
            if self._transit[u]:  # only forwarding elements may sit in the middle of a path
                for v, _, _ in nbrs:
                    rows.append(v)
                    cols.append(u)
        return csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))

    def _dist_row(self, d: int) -> list[float]:
        row = self._dist.get(d)
        if row is None:
            self.prepare([self._names()[d]])
            row = self._dist[d]
        return row

    def _names(self) -> list[str]:
        return list(self._node_ix)

    def _dist_from(self, x: int, d: int, first: bool) -> float:
        if x == d:
            return 0.0
        self._tables()
        dist = self._dist_row(d)
        if first and not self._transit[x]:
            return min(
                (1.0 + (0.0 if y == d else dist[y]) for y, _, _ in self._succ[x]),
                default=math.inf,
            )
        return dist[x]

    def _route_from(self, x: int, d: int, first: bool = False) -> Route:
        key = (x, d)
        hit = self._memo.get(key)
        if hit is not None:
            return hit
        here = self._dist_from(x, d, first)
        if not math.isfinite(here):
            names = self._names()
            raise SpecError(
                f"no route from {names[x]} to {names[d]} in cluster '{self.name}' with "
                f"{self.nodes} node(s)",
                file=cluster_file(self.cluster),
                key="network",
            )
        dist = self._dist_row(d)
        transit = self._transit
        nxt = [
            (y, ei, lt)
            for y, ei, lt in self._succ[x]
            if y == d or (transit[y] and dist[y] == here - 1)
        ]
        share = 1.0 / len(nxt)
        if len(nxt) == 1:  # the common case: one next hop, nothing to merge
            y, ei, lt = nxt[0]
            if y == d:
                route = Route(np.array([ei], np.int64), np.array([1.0]), lt, int(here))
            else:
                sub = self._route_from(y, d)
                route = Route(
                    np.concatenate(([ei], sub.links)),
                    np.concatenate(([1.0], sub.fractions)),
                    lt + sub.latency_s,
                    int(here),
                )
            self._memo[key] = route
            return route
        parts_l: list[IArr] = []
        parts_f: list[FArr] = []
        lat = 0.0
        for y, ei, lt in nxt:
            parts_l.append(np.array([ei], dtype=np.int64))
            parts_f.append(np.array([share]))
            sub_lat = 0.0
            if y != d:
                sub = self._route_from(y, d)
                parts_l.append(sub.links)
                parts_f.append(share * sub.fractions)
                sub_lat = sub.latency_s
            lat = max(lat, lt + sub_lat)
        # paths that split may meet again: merge repeated links
        links, where = np.unique(np.concatenate(parts_l), return_inverse=True)
        fracs: FArr = np.bincount(
            where, weights=np.concatenate(parts_f), minlength=len(links)
        ).astype(float)
        route = Route(links, fracs, lat, int(here))
        self._memo[key] = route
        return route


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
    def build(self) -> Topology:
        c, per = self.c, self.c.devices_per_node_count
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
        ix = {name: i for i, name in enumerate(self.g.nodes)}
        return Topology(c, self.dev, self.n, self.g, tuple(devices), tuple(self.links), ix)

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
        radix = int(net.switch_radix.value)
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
        if len(leaves) > radix:
            raise SpecError(
                f"{self.n} nodes need {len(leaves)} leaf switches, more than a two-tier fat tree "
                f"of radix {radix} connects (at most {radix}); use fewer nodes or a larger radix",
                file=self.file,
                key="network.switch_radix",
            )
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


def build_topology(cluster: Cluster | str, nodes: int | None = None) -> Topology:
    """Build the graph of ``cluster`` (a :class:`Cluster` or a name/path) with ``nodes`` nodes
    (default: the YAML's ``nodes``). Raises :class:`SpecError` for an unknown device, a
    dangling extra link, a network too large for its switches, or a disconnected graph."""
    c = load_cluster(cluster) if isinstance(cluster, str) else cluster
    n = c.default_nodes if nodes is None else int(nodes)
    if n < 1:
        raise SpecError(f"--nodes must be at least 1, got {n}", key="nodes")
    try:
        device = load_device(c.device)
    except SpecError as err:
        raise SpecError(f"device: {err}", file=cluster_file(c), key="device") from None
    return _Builder(c, device, n).build()
