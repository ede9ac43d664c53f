"""Cluster YAML schema, graph building at any node count, routing/ECMP, and bad-input errors."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from hwsim.sim.topology import build_topology
from hwsim.spec.cluster import list_clusters, load_cluster
from hwsim.spec.errors import SpecError

REQUIRED = (
    "dgx-h100",
    "h800-deepseek",
    "dgx-b200",
    "mi300x-8",
    "groq-rack",
    "sn40l-rack-16",
    "cerebras-cs3",
)

BASE = """
name: tiny
sources: {s: "test"}
device: h100-sxm
nodes: {value: 2, source: s}
devices_per_node: {value: 2, source: s}
intra_node:
  kind: switch
  name: nvswitch
  bandwidth: {value: 100 GB/s, source: s}
  latency: {value: 1 us, source: s}
nics:
  name: nic
  per_device: {value: 1, source: s}
  bandwidth: {value: 50 GB/s, source: s}
  latency: {value: 0.5 us, source: s}
network:
  kind: fat_tree
  switch_radix: {value: 8, source: s}
  oversubscription: {value: 1, source: s}
  link_bandwidth: {value: 50 GB/s, source: s}
  switch_latency: {value: 100 ns, source: s}
"""


def _write(tmp_path: Path, text: str) -> str:
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return str(p)


@pytest.mark.parametrize("name", REQUIRED)
def test_required_clusters_load_build_and_route(name: str) -> None:
    assert name in list_clusters()
    c = load_cluster(name)
    topo = build_topology(c, 2)
    assert topo.ranks == 2 * c.devices_per_node_count
    # every device reaches every other one, and each route's fractions leave the source whole
    for src in range(topo.ranks):
        dst = (src + topo.per_node + 1) % topo.ranks
        if dst == src:
            continue
        r = topo.route(src, dst)
        first = [
            f
            for li, f in zip(r.links.tolist(), r.fractions.tolist(), strict=True)
            if topo.links[li].src == topo.devices[src]
        ]
        assert sum(first) == pytest.approx(1.0, abs=1e-12)  # ECMP splits conserve traffic
        assert math.isfinite(r.latency_s) and r.latency_s > 0


@pytest.mark.parametrize("nodes", [1, 3, 17, 40])
def test_scales_to_any_node_count(nodes: int) -> None:
    topo = build_topology("h800-deepseek", nodes)
    assert topo.ranks == 8 * nodes
    assert topo.distance(0, topo.ranks - 1) < math.inf


def test_hop_counts_on_a_rail_optimised_fat_tree() -> None:
    topo = build_topology("h800-deepseek", 4)
    assert topo.distance(0, 1) == 2  # GPU -> NVSwitch -> GPU
    assert topo.distance(0, 8) == 4  # same rail: GPU -> NIC -> leaf -> NIC -> GPU
    assert topo.distance(0, 9) == 6  # other rail: up through a spine
    cross = topo.route(0, 9)
    spine_up = [
        f
        for li, f in zip(cross.links.tolist(), cross.fractions.tolist(), strict=True)
        if topo.links[li].dst.startswith("spine")
    ]
    # 4 modelled spines, even ECMP: a quarter each (exact)
    assert spine_up == pytest.approx([0.25] * 4, abs=1e-12)


def test_full_mesh_and_dragonfly_and_swarmx_routes() -> None:
    mi = build_topology("mi300x-8", 1)
    assert mi.distance(0, 7) == 1  # Infinity Fabric: a direct link to every peer
    groq = build_topology("groq-rack", 2)
    r = groq.route(0, 15)  # TSPs forward: chip -> chip over C2C links only
    assert all(groq.links[li].kind == "c2c" for li in r.links.tolist())
    cs3 = build_topology("cerebras-cs3", 8)
    r = cs3.route(0, 7)
    assert any(cs3.links[li].src.startswith("swx.") for li in r.links.tolist())
    assert "memx0" in cs3.graph


def test_mesh2d_network(tmp_path: Path) -> None:
    text = BASE.replace(
        "devices_per_node: {value: 2, source: s}", "devices_per_node: {value: 1, source: s}"
    )
    text = (
        text[: text.index("intra_node:")]
        + """network:
  kind: mesh2d
  columns: {value: 3, source: s}
  link_bandwidth: {value: 10 GB/s, source: s}
  hop_latency: {value: 10 ns, source: s}
"""
    )
    topo = build_topology(_write(tmp_path, text), 9)
    # 3x3 grid: corner to corner is 4 hops; minimal paths are split evenly (ECMP)
    assert topo.distance(0, 8) == 4
    r = topo.route(0, 8)
    out = sum(
        f
        for li, f in zip(r.links.tolist(), r.fractions.tolist(), strict=True)
        if topo.links[li].src == "n0.g0"
    )
    assert out == pytest.approx(1.0, abs=1e-12)


def test_unknown_device_names_file_and_key(tmp_path: Path) -> None:
    path = _write(tmp_path, BASE.replace("device: h100-sxm", "device: h100-sxn"))
    with pytest.raises(SpecError) as err:
        load_cluster(path)
    assert err.value.key == "device" and "h100-sxm" in str(err.value)  # did-you-mean
    assert err.value.file and err.value.file.endswith("c.yaml")


def test_dangling_extra_link(tmp_path: Path) -> None:
    text = (
        BASE
        + """extra_links:
  - a: n0.g0
    b: storage9
    bandwidth: {value: 1 GB/s, source: s}
    latency: {value: 1 us, source: s}
"""
    )
    with pytest.raises(SpecError) as err:
        build_topology(_write(tmp_path, text))
    assert err.value.key == "extra_links[0].b" and "dangling" in str(err.value)


def test_disconnected_topology(tmp_path: Path) -> None:
    text = BASE[: BASE.index("nics:")]  # no NICs and no network
    with pytest.raises(SpecError) as err:
        build_topology(_write(tmp_path, text), 2)
    assert err.value.key == "network" and "disconnected" in str(err.value)
    assert build_topology(_write(tmp_path, text), 1).ranks == 2  # one node is fine


def test_isolated_extra_node_is_disconnected(tmp_path: Path) -> None:
    text = BASE + "extra_nodes:\n  - {name: lonely}\n"
    with pytest.raises(SpecError, match="disconnected"):
        build_topology(_write(tmp_path, text))


@pytest.mark.parametrize(
    ("edit", "key"),
    [
        (("source: s}\nnics", "source: t}\nnics"), "intra_node.latency.source"),
        (("switch_radix:", "switch_radixx:"), "network"),
        (("  kind: fat_tree", "  kind: fat_three"), "network"),
        (("bandwidth: {value: 100 GB/s", "bandwidth: {value: 100 GHz"), "intra_node.bandwidth"),
    ],
)
def test_schema_errors_name_the_key(tmp_path: Path, edit: tuple[str, str], key: str) -> None:
    text = BASE.replace(*edit)
    assert text != BASE
    with pytest.raises(SpecError) as err:
        load_cluster(_write(tmp_path, text))
    assert err.value.key is not None and err.value.key.startswith(key)
    assert err.value.line is not None


def test_too_many_nodes_for_two_tiers() -> None:
    with pytest.raises(SpecError) as err:
        build_topology("h800-deepseek", 300)  # 8 rails x 10 leaves > radix 64
    assert err.value.key == "network.switch_radix"


def test_fat_tree_needs_nics(tmp_path: Path) -> None:
    text = BASE[: BASE.index("nics:")] + BASE[BASE.index("network:") :]
    with pytest.raises(SpecError) as err:
        load_cluster(_write(tmp_path, text))
    assert err.value.key == "nics"


def test_link_bandwidth_is_payload_rate() -> None:
    topo = build_topology("h800-deepseek", 2)
    ib = [lk for lk in topo.links if lk.kind == "rdma" and "nic" in lk.name]
    # 50 GB/s line rate over a 4096 B MTU with 26 B of headers per packet (exact arithmetic)
    assert np.allclose([lk.bandwidth_Bps for lk in ib], 50e9 / (1 + 26 / 4096), rtol=1e-12)
