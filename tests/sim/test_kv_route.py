"""KV hand-overs of disaggregated serving on the cluster graph (hwsim.serve.kv_route)."""

from __future__ import annotations

import pytest

from hwsim.serve.kv_route import kv_network
from hwsim.serve.serving import ServeRequest, prepare, run
from hwsim.sim.engine import Engine
from hwsim.spec.cluster import load_cluster
from hwsim.spec.load import load_device


def _net(devices_per_replica: int, replicas: int):  # type: ignore[no-untyped-def]
    cluster = load_cluster("dgx-h100")
    net = kv_network(Engine(), cluster, load_device("h100-sxm"), devices_per_replica, replicas)
    assert net is not None
    return net


@pytest.mark.parametrize(("d", "src", "dst"), [(8, 0, 1), (8, 0, 3), (2, 0, 3), (1, 0, 7)])
def test_every_byte_leaves_the_source_and_reaches_the_destination(
    d: int, src: int, dst: int
) -> None:
    """Per device pair the ECMP fractions of a route sum to 1 on the first and the last hop, so
    the weights of the links out of the source replica's devices (and into the destination's)
    sum to 1: the flow carries all the bytes, once (1e-12: sums of a few fractions)."""
    net = _net(d, 4 if d > 1 else 8)
    p = net.path(src, dst)
    topo = net.topo
    srcs = set(topo.devices[src * d : (src + 1) * d])
    dsts = set(topo.devices[dst * d : (dst + 1) * d])
    specs = {topo.links[i].name: topo.links[i] for i in range(len(topo.links))}
    out = sum(w for lk, w in zip(p.links, p.weights, strict=True) if specs[lk.name].src in srcs)
    into = sum(w for lk, w in zip(p.links, p.weights, strict=True) if specs[lk.name].dst in dsts)
    assert out == pytest.approx(1.0, abs=1e-12) and into == pytest.approx(1.0, abs=1e-12)


def test_inside_a_node_the_cache_moves_over_nvlink_across_nodes_over_the_network() -> None:
    inside = _net(1, 8).path(0, 5)
    assert {lk.kind for lk in inside.links} == {"nvlink"}
    across = _net(8, 2).path(0, 1)
    assert "rdma" in {lk.kind for lk in across.links}


def test_disaggregated_run_routes_every_handover_on_the_graph() -> None:
    """Two prefill and two decode replicas of 8 H100s (4 DGX nodes): every completed request
    moved its cache once, on the cluster graph (the run says so), not the NIC pools."""
    req = ServeRequest("llama-3.1-8b", "h100-sxm", "sharegpt", layout="tp=8", qps=10.0,
                       requests=60, disaggregate=(2, 2))  # fmt: skip
    res = run(req, prepare(req))
    m = res.metrics
    assert m.completed == 60
    assert len(res.records.transfers) == 60
    assert "KV hand-overs routed on the dgx-h100 graph, 4 nodes" in res.notes
