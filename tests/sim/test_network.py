"""Flow-level all-to-all simulation: hand-checked sharing, conservation, determinism, routing
limits, agreement with the functional executor, and the two executions (engine / vector)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hwsim.functional.moe import execute_moe, random_weights
from hwsim.plan.moe import (
    deepseek_v3,
    make_dispatch_plan,
    place_experts,
    synthetic_dispatch_plan,
    synthetic_logits,
)
from hwsim.sim.alltoall import simulate_alltoall
from hwsim.sim.engine import class_rates, class_rates_vectorized
from hwsim.sim.moe_overlap import dual_microbatch_overlap
from hwsim.sim.network import Transfer, run_transfers
from hwsim.sim.topology import build_topology

TWO_GPU = """
name: two
sources: {s: "test"}
device: h100-sxm
nodes: {value: 1, source: s}
devices_per_node: {value: 2, source: s}
intra_node:
  kind: switch
  name: sw
  bandwidth: {value: 10 GB/s, source: s}
  latency: {value: 0 us, source: s}
"""


@pytest.fixture(scope="module")
def h800_4() -> object:
    return build_topology("h800-deepseek", 4)


@pytest.fixture(scope="module")
def plan32() -> object:
    plan, _, _ = synthetic_dispatch_plan(32, 512, 7168, 256, 8, 4, "deepep", 8, 0, 0)
    return plan


@pytest.mark.parametrize("mode", ["engine", "vector"])
def test_two_flows_share_one_link_by_hand(tmp_path: Path, mode: str) -> None:
    # g0 -> sw -> g1 at 10 GB/s. A = 100 MB and B = 50 MB start together: 5 GB/s each.
    # B ends at 50 MB / 5 GB/s = 10 ms; A then runs alone at 10 GB/s: 50 MB more in 5 ms,
    # so A ends at 15 ms. Exact up to float rounding (rel 1e-9).
    p = tmp_path / "two.yaml"
    p.write_text(TWO_GPU)
    topo = build_topology(str(p))
    up, down = (
        topo.graph.edges["n0.g0", "n0.sw"]["index"],
        topo.graph.edges["n0.sw", "n0.g1"]["index"],
    )
    trs = [
        Transfer("A", 0, 100e6, {up: 100e6, down: 100e6}, receivers=(1,)),
        Transfer("B", 0, 50e6, {up: 50e6, down: 50e6}, receivers=(1,)),
    ]
    run = run_transfers(topo, trs, mode=mode)
    assert run.finish_s == pytest.approx((15e-3, 10e-3), rel=1e-9)
    assert run.time_s == pytest.approx(15e-3, rel=1e-9)
    assert sum(lk.bytes for lk in run.links) == pytest.approx(300e6, rel=1e-12)
    assert max(lk.peak for lk in run.links) == pytest.approx(1.0, rel=1e-9)


def test_vectorised_max_min_equals_the_engine_solver() -> None:
    rng = np.random.default_rng(7)
    for _ in range(60):
        n_links, n = int(rng.integers(1, 30)), int(rng.integers(1, 40))
        classes = []
        for _c in range(n):
            k = int(rng.integers(1, n_links + 1))
            links = tuple(sorted(rng.choice(n_links, k, replace=False).tolist()))
            cap = float(rng.choice([np.inf, rng.uniform(0.5, 5)]))
            classes.append((links, rng.uniform(0.1, 3, k).tolist(), cap))
        caps = rng.uniform(1, 10, n_links).tolist()
        # same algorithm, two implementations: equal to float rounding
        assert np.allclose(
            class_rates(classes, caps), class_rates_vectorized(classes, caps), rtol=1e-9
        )


@pytest.mark.parametrize("kernel", ["normal", "low-latency", "nccl"])
def test_engine_and_vector_executions_agree(h800_4: object, kernel: str) -> None:
    import hwsim.sim.network as net

    plan, _, _ = synthetic_dispatch_plan(16, 64, 1024, 64, 4, 2, "zipf:1.2", 8, 0, 5)
    topo = build_topology("h800-deepseek", 2)
    out = {}
    for mode, limit in (("engine", 10**9), ("vector", 0)):
        old = net.VECTOR_ABOVE
        net.VECTOR_ABOVE = limit
        try:
            out[mode] = simulate_alltoall(topo, plan, kernel, "dispatch")
        finally:
            net.VECTOR_ABOVE = old
    a, b = out["engine"], out["vector"]
    # identical fluid rules; only float summation order differs (rel 1e-9)
    assert a.time_s == pytest.approx(b.time_s, rel=1e-9)
    assert np.allclose(a.rank_time_s, b.rank_time_s, rtol=1e-9)
    for k in a.hop_bytes_by_link_kind:
        assert a.hop_bytes_by_link_kind[k] == pytest.approx(b.hop_bytes_by_link_kind[k], rel=1e-9)


@pytest.mark.parametrize("kernel", ["normal", "low-latency", "nccl"])
@pytest.mark.parametrize("phase", ["dispatch", "combine"])
def test_bytes_sent_equal_bytes_received_per_link_kind(
    h800_4: object, plan32: object, kernel: str, phase: str
) -> None:
    res = simulate_alltoall(h800_4, plan32, kernel, phase)  # type: ignore[arg-type]
    roles = {n: d["role"] for n, d in h800_4.graph.nodes(data=True)}  # type: ignore[attr-defined]
    sent: dict[str, float] = {}
    recv: dict[str, float] = {}
    for lk in res.links:
        if lk.kind == "sm":
            continue
        a, b = lk.name.split("->")
        if roles[a] in ("device", "nic") and roles[b] == "switch":
            sent[lk.kind] = sent.get(lk.kind, 0.0) + lk.bytes
        if roles[b] in ("device", "nic") and roles[a] == "switch":
            recv[lk.kind] = recv.get(lk.kind, 0.0) + lk.bytes
        if roles[a] in ("device", "nic") and roles[b] in ("device", "nic"):  # pcie: dev <-> nic
            side = sent if roles[a] == "device" else recv
            side[lk.kind] = side.get(lk.kind, 0.0) + lk.bytes
    assert sent.keys() == recv.keys() and sent
    for k in sent:  # every injected byte is delivered; float integration only (rel 1e-9)
        assert sent[k] == pytest.approx(recv[k], rel=1e-9), k


def test_deterministic_with_a_seed(h800_4: object) -> None:
    def run(seed: int) -> tuple[float, dict[str, float]]:
        plan, _, _ = synthetic_dispatch_plan(32, 256, 7168, 256, 8, 4, "deepep", 8, 0, seed)
        r = simulate_alltoall(h800_4, plan, "normal", "dispatch")  # type: ignore[arg-type]
        return r.time_s, r.hop_bytes_by_link_kind

    assert run(3) == run(3)  # bit-identical
    assert run(3) != run(4)


def test_node_limited_routing_never_crosses_more_than_topk_groups(plan32: object) -> None:
    plan = plan32
    for groups in (1, 2, 4):
        p, _, _ = synthetic_dispatch_plan(32, 256, 7168, 256, 8, groups, "deepep", 8, 0, 1)
        nodes = np.where(p.dst_rank >= 0, p.dst_rank // 8, -1)
        per_token = [len(set(r[r >= 0].tolist())) for r in nodes]
        assert max(per_token) <= groups
        # the RDMA pairs the simulator moves are exactly those (token, node) pairs
        assert p.rdma_pairs.sum() == sum(per_token)
    assert plan.rdma_pairs.sum(axis=1).max() <= 4 * 512  # type: ignore[attr-defined]


@pytest.mark.parametrize("path_kernel", [("two_hop", "normal"), ("direct", "nccl")])
def test_functional_executor_and_simulated_flows_agree_in_bytes(
    path_kernel: tuple[str, str],
) -> None:
    path, kernel = path_kernel
    tokens, hidden, n_exp, ranks = 128, 256, 32, 16
    logits = synthetic_logits(tokens, n_exp, "deepep", seed=2)
    routing = deepseek_v3(logits, 4, n_groups=2, topk_groups=2)
    placement = place_experts(n_exp, ranks, 8)
    plan = make_dispatch_plan(routing, placement, hidden)
    x = np.random.default_rng(0).standard_normal((tokens, hidden))
    fres = execute_moe(
        x, routing, plan, placement, random_weights(hidden, n_exp, 64), path, "fp8", "bf16"
    )
    topo = build_topology("h800-deepseek", 2)
    for phase in ("dispatch", "combine"):
        sim = simulate_alltoall(topo, plan, kernel, phase)
        bpt = plan.bytes_per_token(phase)  # fp8 dispatch 264 B, bf16 combine 512 B at 256
        if kernel == "normal":
            for kind in ("rdma", "nvlink"):
                # same plan, same bytes per token: exact, sender x receiver
                assert np.array_equal(sim.leg_bytes[kind], fres.bytes[(phase, kind)]), kind
            continue
        # direct path. The executor sends one copy per unique (token, rank) pair straight to
        # the rank (the plan's direct legs, by link kind); NCCL's plain all-to-all permutes
        # tokens per expert, so the simulator sends one copy per (token, expert): the plan's
        # expert copies. A rank's own experts cost no link in either. Exact integers x bytes.
        for kind, leg in (("nvlink", "direct_nvl"), ("rdma", "direct_rdma")):
            assert np.array_equal(fres.bytes[(phase, kind)], plan.matrix(leg, phase) * bpt)
        copies = plan.matrix("expert_copies", phase).astype(float)
        np.fill_diagonal(copies, 0.0)
        assert set(sim.leg_bytes) == {"direct"}
        assert np.array_equal(sim.leg_bytes["direct"], copies * bpt), phase
        pairs = fres.bytes[(phase, "nvlink")] + fres.bytes[(phase, "rdma")]
        assert np.all(sim.leg_bytes["direct"] >= pairs)  # copies per expert >= per rank
        # 2 experts per rank: some tokens pick both experts of a rank, so strictly more here
        assert sim.leg_bytes["direct"].sum() > pairs.sum()


def test_zipf_hot_experts_make_a_slow_rank_and_redundancy_helps(h800_4: object) -> None:
    def run(routing: str, redundant: int) -> tuple[float, float]:
        plan, _, _ = synthetic_dispatch_plan(32, 512, 7168, 256, 8, 4, routing, 8, redundant, 0)
        r = simulate_alltoall(h800_4, plan, "normal", "dispatch")  # type: ignore[arg-type]
        return r.time_s, r.imbalance

    t_uni, imb_uni = run("uniform", 0)
    t_hot, imb_hot = run("zipf:1.2", 0)
    t_fix, imb_fix = run("zipf:1.2", 32)
    assert imb_hot > 1.5 * imb_uni and t_hot > 1.2 * t_uni
    assert imb_fix < imb_hot and t_fix < t_hot


def test_low_latency_is_latency_bound_at_small_batches(h800_4: object) -> None:
    plan, _, _ = synthetic_dispatch_plan(32, 1, 7168, 256, 8, 4, "deepep", 8, 0, 0)
    r = simulate_alltoall(h800_4, plan, "low-latency", "dispatch")  # type: ignore[arg-type]
    setup = r.params["setup_s"]
    lat = h800_4.route(0, 31).latency_s  # type: ignore[attr-defined]
    # 1 token x 8 experts per rank = 59 KB: ~1.3 us on the wire at ~45 GB/s, so the setup and
    # two path latencies (data, then the completion flag) are most of the time
    assert setup + 2 * lat < r.time_s < setup + 2 * lat + 3e-6


def test_dual_microbatch_overlap_by_hand() -> None:
    # attention 100, experts 200, dispatch 150, combine 250 us, no SM sharing:
    # compute: attn0 0-100, attn1 100-200, exp0 250-450, exp1 450-650
    # comm: disp0 100-250, disp1 250-400, comb0 450-700, comb1 700-950 -> total 950 us
    r = dual_microbatch_overlap(100e-6, 200e-6, 150e-6, 250e-6)
    assert r.total_s == pytest.approx(950e-6, rel=1e-12)
    assert r.compute_s == pytest.approx(600e-6, rel=1e-12)
    assert r.exposed_comm_s == pytest.approx(350e-6, rel=1e-12)
    assert r.hidden_comm_s == pytest.approx(800e-6 - 350e-6, rel=1e-12)
    assert r.serial_s == pytest.approx(1400e-6, rel=1e-12)
    slow = dual_microbatch_overlap(100e-6, 200e-6, 150e-6, 250e-6, comm_sm_fraction=0.15)
    assert slow.total_s > r.total_s  # compute loses SMs while communication runs
