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

from hwsim.sim.topology_build import LinkSpec, _Builder
from hwsim.spec.cluster import Cluster, cluster_file, load_cluster
from hwsim.spec.device import Device
from hwsim.spec.errors import SpecError
from hwsim.spec.load import load_device

__all__ = ["LinkSpec", "Route", "Topology", "build_topology"]

FArr = NDArray[np.float64]
IArr = NDArray[np.int64]


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


def build_topology(
    cluster: Cluster | str, nodes: int | None = None, device: Device | None = None
) -> Topology:
    """Build the graph of ``cluster`` (a :class:`Cluster` or a name/path) with ``nodes`` nodes
    (default: the YAML's ``nodes``). ``device`` replaces the cluster's ``device:`` (a what-if
    device with overridden ports or SMs; default: the device the YAML names). Raises
    :class:`SpecError` for an unknown device, a dangling extra link, a network too large for its
    switches, or a disconnected graph."""
    c = load_cluster(cluster) if isinstance(cluster, str) else cluster
    n = c.default_nodes if nodes is None else int(nodes)
    if n < 1:
        raise SpecError(f"--nodes must be at least 1, got {n}", key="nodes")
    if device is None:
        try:
            device = load_device(c.device)
        except SpecError as err:
            raise SpecError(f"device: {err}", file=cluster_file(c), key="device") from None
    graph, devices, links = _Builder(c, device, n).build()
    ix = {name: i for i, name in enumerate(graph.nodes)}
    return Topology(c, device, n, graph, devices, links, ix)
