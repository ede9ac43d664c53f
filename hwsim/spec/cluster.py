"""Cluster specs: nodes of devices, the intra-node fabric, NICs and the inter-node network.

A cluster YAML (``devices/clusters/<name>.yaml``) says what one node looks like and how nodes
are wired; the node count is only a default, so every cluster scales from the command line
(``--nodes``). :mod:`hwsim.sim.topology` turns a :class:`Cluster` into a networkx graph.

* ``intra_node``: ``switch`` (NVLink + NVSwitch, the SN40L rack fabric: every device has one
  port of ``bandwidth`` per direction into a node switch) or ``full_mesh`` (AMD Infinity
  Fabric, Groq chip-to-chip: ``links_per_pair`` links of ``bandwidth`` between every two
  devices). ``devices_forward`` says whether a device relays traffic for others (a Groq TSP is
  also a network switch; a GPU is not).
* ``nics``: NICs per device, their line rate, the host link (PCIe) and the wire framing (MTU
  and per-packet header bytes) that makes payload throughput lower than line rate.
* ``network``: ``fat_tree`` (optionally rail-optimised: NIC *k* of every node on the leaves of
  rail *k*; sized from switch radix and oversubscription), ``dragonfly`` (groups of nodes,
  node-to-node links inside a group, group-to-group global links; devices are the routers),
  ``mesh2d`` (nodes on a 2-D grid with nearest-neighbour links, e.g. wafer regions), ``swarmx``
  (Cerebras: a broadcast/reduce tree of SwarmX nodes with MemoryX at the root) or ``none``.
* ``extra_nodes`` / ``extra_links``: explicit additions (a storage box, a custom cable) whose
  endpoints are checked when the graph is built.

Every number is a sourced quantity (``{value, source}``) citing the file's ``sources`` table.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field, model_validator

from hwsim.spec.errors import FieldError, SpecError
from hwsim.spec.load import DEVICES_DIR, load_model, resolve_path
from hwsim.spec.quantity import Bandwidth, Bytes, Count, Latency, Sourced, Strict, WholeCount

if TYPE_CHECKING:
    from hwsim.spec.device import Device

#: Built-in cluster YAML files (names are file stems).
CLUSTERS_DIR = DEVICES_DIR / "clusters"


class IntraNode(Strict):
    """The fabric inside one node."""

    kind: Literal["switch", "full_mesh"]
    name: str = Field(description="e.g. 'NVLink 4 + NVSwitch 3'")
    link_kind: str = Field("nvlink", description="label used in bytes_by_link_kind")
    bandwidth: Bandwidth | None = Field(
        None,
        description="switch: per device and direction into the switch; full_mesh: per link "
        "and direction. Default: from the device's interconnect ports of kind 'port_kind'",
    )
    links_per_pair: WholeCount | None = Field(
        None,
        description="full_mesh: parallel links between two devices (default: the device's "
        "port count / (devices per node - 1), at least 1)",
    )
    latency: Latency | None = Field(
        None, description="one hop: device to switch, or device to device (default: port's)"
    )
    port_kind: str | None = Field(
        None, description="device interconnect port kind to take bandwidth/latency from"
    )
    devices_forward: bool = Field(False, description="devices relay traffic (Groq TSPs do)")


class HostLink(Strict):
    """Device ↔ NIC link (PCIe)."""

    name: str = "pcie"
    bandwidth: Bandwidth
    latency: Latency


class Nics(Strict):
    """Network interfaces of every device."""

    name: str = Field(description="e.g. 'ConnectX-7 400G NDR InfiniBand'")
    link_kind: str = Field("rdma", description="label used in bytes_by_link_kind")
    per_device: WholeCount
    bandwidth: Bandwidth = Field(description="line rate per NIC and direction")
    latency: Latency = Field(description="NIC processing, one direction")
    host_link: HostLink | None = None
    mtu: Bytes | None = Field(None, description="payload bytes per packet")
    packet_overhead: Bytes | None = Field(None, description="header/trailer bytes per packet")

    def wire_factor(self) -> float:
        """Wire bytes per payload byte (≥ 1): packet headers cost bandwidth, not data."""
        if self.mtu is None or self.packet_overhead is None:
            return 1.0
        return 1.0 + self.packet_overhead.value / self.mtu.value


class FatTree(Strict):
    """Two-tier leaf/spine (Clos) network; rail-optimised when ``rail_optimized``."""

    kind: Literal["fat_tree"]
    rail_optimized: bool = True
    switch_radix: WholeCount
    oversubscription: Count = Field(description="leaf down:up port ratio; 1 = non-blocking")
    link_bandwidth: Bandwidth = Field(description="per switch port and direction")
    switch_latency: Latency = Field(description="port to port, cut-through")
    link_kind: str = "rdma"
    modeled_spines: int = Field(
        4,
        ge=1,
        description="spine switches drawn in the graph; a leaf's uplinks are bundled evenly "
        "onto them (exact for a fluid model with even ECMP hashing)",
    )


class Dragonfly(Strict):
    """Groups of nodes; all node pairs inside a group linked, all group pairs linked."""

    kind: Literal["dragonfly"]
    nodes_per_group: WholeCount
    links_per_node_pair: WholeCount = Field(description="node-to-node links inside a group")
    links_per_group_pair: WholeCount = Field(description="global links between two groups")
    link_bandwidth: Bandwidth = Field(description="per link and direction")
    hop_latency: Latency
    link_kind: str = "c2c"


class Mesh2D(Strict):
    """Nodes on a ``columns``-wide grid with nearest-neighbour links (a torus if ``torus``)."""

    kind: Literal["mesh2d"]
    columns: WholeCount | None = Field(None, description="default: a near-square grid")
    link_bandwidth: Bandwidth
    hop_latency: Latency
    torus: bool = False
    link_kind: str = "mesh"


class SwarmX(Strict):
    """Cerebras SwarmX: a tree of broadcast/reduce nodes; MemoryX servers at the root."""

    kind: Literal["swarmx"]
    fan_out: WholeCount = Field(description="children per broadcast/reduce node")
    link_bandwidth: Bandwidth = Field(description="per tree link and direction")
    switch_latency: Latency
    memoryx_nodes: WholeCount
    memoryx_bandwidth: Bandwidth = Field(description="per MemoryX server and direction")
    link_kind: str = "swarmx"


class NoNetwork(Strict):
    """A single node; nothing between nodes."""

    kind: Literal["none"]


Network = Annotated[FatTree | Dragonfly | Mesh2D | SwarmX | NoNetwork, Field(discriminator="kind")]


class ExtraNode(Strict):
    """An additional graph element (storage, a host, a switch)."""

    name: str
    role: Literal["switch", "endpoint"] = "endpoint"


class ExtraLink(Strict):
    """An additional bidirectional link between two named graph elements."""

    a: str
    b: str
    bandwidth: Bandwidth
    latency: Latency
    kind: str = "extra"


class Cluster(Strict):
    """A cluster as written in ``devices/clusters/<name>.yaml``."""

    name: str
    description: str | None = None
    sources: dict[str, str] = Field(description="citation table: key → datasheet, paper or URL")
    device: str = Field(description="device name in devices/ (or a path to a device YAML)")
    nodes: WholeCount = Field(description="default node count; --nodes overrides it")
    devices_per_node: WholeCount
    intra_node: IntraNode | None = None
    nics: Nics | None = None
    network: Network = Field(default_factory=lambda: NoNetwork(kind="none"))
    extra_nodes: list[ExtraNode] = Field(default_factory=list)
    extra_links: list[ExtraLink] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> Cluster:
        for loc, q in self.iter_sourced():
            if q.source not in self.sources:
                raise FieldError(
                    (*loc, "source"),
                    f"{q.source!r} is not in the sources table "
                    f"(known: {', '.join(sorted(self.sources)) or 'none'})",
                )
        if self.devices_per_node_count > 1 and self.intra_node is None:
            raise FieldError(
                ("intra_node",), "a node of several devices needs an intra_node fabric"
            )
        intra = self.intra_node
        if intra is not None and intra.port_kind is None:
            for key in ("bandwidth", "latency"):
                if getattr(intra, key) is None:
                    raise FieldError(
                        ("intra_node", key), "give it, or name the device's 'port_kind' to use"
                    )
        kind = self.network.kind
        if kind in ("fat_tree", "swarmx") and (self.nics is None):
            raise FieldError(("nics",), f"a '{kind}' network needs a 'nics' section")
        if kind in ("dragonfly", "mesh2d") and self.devices_per_node_count > 1:
            if self.intra_node is None or not self.intra_node.devices_forward:
                raise FieldError(
                    ("intra_node", "devices_forward"),
                    f"a '{kind}' network attaches to the devices, so they must forward "
                    "(devices_forward: true)",
                )
        if isinstance(self.network, FatTree):
            radix = int(self.network.switch_radix.value)
            down = _leaf_down_ports(radix, self.network.oversubscription.value)
            if down < 1 or down >= radix:
                raise FieldError(
                    ("network", "oversubscription"),
                    f"leaves of radix {radix} at {self.network.oversubscription.value}:1 leave "
                    f"{down} down ports",
                )
        names = [n.name for n in self.extra_nodes]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise FieldError(("extra_nodes",), f"names must be unique, repeated: {sorted(dup)}")
        return self

    # ---- accessors (SI / plain ints) ---------------------------------------------------------
    @property
    def devices_per_node_count(self) -> int:
        return int(self.devices_per_node.value)

    @property
    def default_nodes(self) -> int:
        return int(self.nodes.value)

    def iter_sourced(self) -> list[tuple[tuple[int | str, ...], Sourced]]:
        """Every sourced number with its key path."""
        return _walk(self, ())


def _leaf_down_ports(radix: int, oversubscription: float) -> int:
    """Leaf ports facing NICs for a down:up ratio of ``oversubscription`` (1 → radix/2)."""
    return int(radix * oversubscription / (1.0 + oversubscription))


def leaf_ports(net: FatTree) -> tuple[int, int]:
    """(down, up) ports of a leaf switch."""
    radix = int(net.switch_radix.value)
    down = _leaf_down_ports(radix, net.oversubscription.value)
    return down, radix - down


def _walk(obj: object, loc: tuple[int | str, ...]) -> list[tuple[tuple[int | str, ...], Sourced]]:
    if isinstance(obj, Sourced):
        return [(loc, obj)]
    out: list[tuple[tuple[int | str, ...], Sourced]] = []
    if isinstance(obj, Strict):
        for name in type(obj).model_fields:
            out += _walk(getattr(obj, name), (*loc, name))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _walk(v, (*loc, i))
    return out


#: id(cluster) → the YAML file it was read from (clusters are cached, so ids are stable)
_FILES: dict[int, str] = {}


@functools.lru_cache(maxsize=64)
def _load_cached(path: str, mtime: float) -> Cluster:
    cluster = load_model(Cluster, Path(path))
    _FILES[id(cluster)] = path
    try:
        resolve_path(cluster.device, DEVICES_DIR, "device")
    except SpecError as err:
        raise SpecError(err.message, file=path, key="device") from None
    return cluster


def load_cluster(name_or_path: str) -> Cluster:
    """Load a cluster by built-in name (``h800-deepseek``) or by path to a YAML file.

    Checks the schema, the citations and that the named device exists (``SpecError`` with the
    file and key otherwise). Wiring problems (dangling extra links, a disconnected graph) are
    found when :func:`hwsim.sim.topology.build_topology` builds the graph."""
    path = resolve_path(name_or_path, CLUSTERS_DIR, "cluster")
    return _load_cached(str(path.resolve()), path.stat().st_mtime)


def cluster_file(cluster: Cluster | str) -> str:
    """The YAML file a cluster came from (for error messages)."""
    if isinstance(cluster, Cluster):
        if id(cluster) in _FILES:
            return _FILES[id(cluster)]
        cluster = cluster.name
    try:
        return str(resolve_path(cluster, CLUSTERS_DIR, "cluster"))
    except SpecError:
        return f"{cluster}.yaml"


def list_clusters() -> list[str]:
    """Names of the built-in clusters, sorted."""
    return sorted(p.stem for p in CLUSTERS_DIR.glob("*.yaml"))


def for_device(cluster: Cluster, device: Device) -> Cluster:
    """``cluster`` built of ``device`` instead of the device its file names: an explicit
    intra-node bandwidth scales with the device's own port of that link kind (all ports of the
    kind together) against the named device's, so a what-if device with 2x NVLink gets 2x
    NVLink inside the node. Unchanged when the ports agree, a side lacks the port, or the
    bandwidth comes from the device's ports anyway (``port_kind`` without ``bandwidth``)."""
    intra = cluster.intra_node
    if intra is None or intra.bandwidth is None:
        return cluster
    kind = intra.port_kind or intra.link_kind
    from hwsim.spec.load import load_device
    from hwsim.spec.overrides import apply_overrides

    def aggregate(d: Device) -> float | None:
        rates = [p.bandwidth_Bps * p.count.value for p in d.interconnect if p.kind == kind]
        return sum(rates) if rates else None

    mine, named = aggregate(device), aggregate(load_device(cluster.device))
    if mine is None or named is None or mine == named:
        return cluster
    return apply_overrides(cluster, {"intra_node.bandwidth": f"x{mine / named!r}"})
