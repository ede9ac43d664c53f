"""Sweeps over a cluster: ``axes.cluster`` link-speed overrides and the ``moe_alltoall`` kind.

The overrides must act exactly as an edited cluster YAML would, the all-to-all kind must give
the time ``hwsim moe`` gives for the same arguments, and a what-if device must build its own
graph (its ports), not the one the cluster file names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from hwsim.sim.alltoall_run import Routing, run_alltoall
from hwsim.sim.topology import build_topology
from hwsim.spec.cluster import load_cluster
from hwsim.spec.errors import SpecError
from hwsim.spec.load import load_device
from hwsim.spec.overrides import apply_overrides
from hwsim.sweep.kinds import get_kind
from hwsim.sweep.moe_kinds import cluster_with
from hwsim.sweep.run import run_sweep
from hwsim.sweep.spec import load_sweep

CLUSTERS = Path(__file__).resolve().parents[2] / "devices" / "clusters"
# DeepSeek-V3 routing on a small problem: 128 tokens per rank keeps each run under ~0.1 s
A2A = {"tokens": 128, "hidden": 7168, "experts": 256, "top_k": 8, "topk_groups": 4}


def _sweep(tmp_path: Path, **changes: Any) -> Path:
    data: dict[str, Any] = {
        "name": "a2a",
        "base": {"device": "h800", "model": "deepseek-v3", "cluster": "h800-deepseek"},
        "workload": {"tokens": A2A["tokens"]},
        "axes": {
            "cluster": {"nics.bandwidth": ["25 GB/s", "x1", "x4"]},
            "layout": ["ep=8", "ep=32"],
        },
        "metrics": [{"kind": "moe_alltoall", "name": "dispatch"}],
    }
    data.update(changes)
    path = tmp_path / "a2a.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def test_cluster_axis_columns_are_si_and_ep8_ignores_the_nics(tmp_path: Path) -> None:
    res = run_sweep(load_sweep(_sweep(tmp_path)))
    bw = res.columns["cluster.nics.bandwidth"]
    assert sorted(set(bw.tolist())) == [25e9, 50e9, 200e9]  # x1, x4 of the cited 50 GB/s
    t, ep = res.columns["dispatch.time_s"], res.columns["ep"]
    # one node: no byte crosses a NIC, and the routing draw is shared (seed_params), so the
    # three NIC speeds give bit-identical times
    assert len(set(t[ep == 8].tolist())) == 1
    # four nodes: halving the NIC (25 GB/s) slows the IB-bound dispatch; 4x the NIC does not
    # help because the fat tree's 400 Gb/s switch links still carry every byte
    t32 = dict(zip(bw[ep == 32].tolist(), t[ep == 32].tolist(), strict=True))
    assert t32[25e9] > 1.5 * t32[50e9]
    assert t32[200e9] == pytest.approx(t32[50e9], rel=1e-9)
    assert set(res.columns["dispatch.bound"][ep == 32].tolist()) == {"rdma"}


def test_overrides_equal_an_edited_cluster_file(tmp_path: Path) -> None:
    """A sweep point with overrides == ``hwsim moe`` on a YAML with the same numbers."""
    data = yaml.safe_load((CLUSTERS / "h800-deepseek.yaml").read_text(encoding="utf-8"))
    data["nics"]["bandwidth"]["value"] = "100 GB/s"
    data["network"]["link_bandwidth"]["value"] = "800 Gb/s"
    edited = tmp_path / "h800-fast-ib.yaml"
    edited.write_text(yaml.safe_dump(data), encoding="utf-8")
    kind = get_kind("moe_alltoall")({"cluster": "h800-deepseek"})
    sub = kind.subproblem({"ep": 16, "redundant": 0, **A2A})
    # as run_sweep does: the point's axes.cluster values join a cluster kind's sub-problem
    sub.update({"cluster.nics.bandwidth": 100e9, "cluster.network.link_bandwidth": 100e9})
    got = kind.evaluate_point(load_device("h800"), sub, seed=7)
    problem = Routing(
        str(edited), 16, A2A["tokens"], A2A["hidden"], A2A["experts"], A2A["top_k"],
        A2A["topk_groups"], "deepep", 7,
    )  # fmt: skip
    _, ref, _ = run_alltoall(problem, "dispatch", None, "normal")
    assert got["time_s"] == ref.time_s  # same graph, same plan, same engine: exact
    assert got["bound"] == ref.bound


def test_a_what_if_device_builds_its_own_ports() -> None:
    """SN40L's rack fabric takes its bandwidth from the device's ports: doubling them in a
    what-if device must double the graph's intra-node links."""
    base = load_device("sambanova-sn40l")
    fast = apply_overrides(base, {"interconnect.rdu_fabric.bandwidth": "x2"})
    bw = [
        {lk.bandwidth_Bps for lk in build_topology("sn40l-rack-16", 1, d).links if lk.kind == k}
        for d in (base, fast)
        for k in ("rdu_fabric",)
    ]
    assert bw[0] and {2 * b for b in bw[0]} == bw[1]


def test_cluster_with_validates_and_caches() -> None:
    a = cluster_with("h800-deepseek", {"nics.bandwidth": 100e9})
    assert a is cluster_with("h800-deepseek", {"nics.bandwidth": 100e9})
    assert a.nics is not None and a.nics.bandwidth.value == 100e9
    assert load_cluster("h800-deepseek").nics.bandwidth.value == 50e9  # type: ignore[union-attr]
    with pytest.raises(SpecError, match=r"nics\.bandwidth"):
        cluster_with("h800-deepseek", {"nics.bandwidth": -1.0})


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        (  # nothing runs on a cluster
            {"metrics": [{"kind": "fa_decode"}], "workload": {}},
            "no metric kind runs on a cluster",
        ),
        (  # no cluster named
            {"base": {"device": "h800", "model": "deepseek-v3"}},
            "set base.cluster",
        ),
        (  # a typo in the path
            {"axes": {"cluster": {"nics.bandwith": ["25 GB/s"]}}},
            "did you mean",
        ),
        (  # a bandwidth where a time is meant
            {"axes": {"cluster": {"nics.latency": ["25 GB/s"]}}},
            "nics.latency",
        ),
        (  # two clusters: 'x2' would mean two different numbers
            {
                "metrics": [
                    {"kind": "moe_alltoall"},
                    {"kind": "moe_alltoall", "name": "b", "options": {"cluster": "dgx-h100"}},
                ]
            },
            "different clusters",
        ),
    ],
)
def test_cluster_axis_errors(tmp_path: Path, changes: dict[str, Any], match: str) -> None:
    with pytest.raises(SpecError, match=match) as info:
        load_sweep(_sweep(tmp_path, **changes))
    assert "axes" in str(info.value) or "base" in str(info.value)


def test_dense_model_has_no_all_to_all(tmp_path: Path) -> None:
    path = _sweep(tmp_path, base={"device": "h800", "model": "llama-3.1-70b",
                                  "cluster": "h800-deepseek"})  # fmt: skip
    with pytest.raises(SpecError, match="needs an MoE model"):
        run_sweep(load_sweep(path))


def test_builtin_link_speed_sweep_is_monotone() -> None:
    """The built-in link-speed x EP sweep: more NIC and switch bandwidth never slows a point."""
    res = run_sweep(load_sweep("ib-bandwidth-x-ep-dispatch"))
    c = res.columns
    keys = ("ep", "tokens")
    for combo in {tuple(c[k][i] for k in keys) for i in range(res.n)}:
        sel = np.all([c[k] == v for k, v in zip(keys, combo, strict=True)], axis=0)
        order = np.argsort(c["cluster.nics.bandwidth"][sel], kind="stable")
        t = c["dispatch.time_s"][sel][order]
        # 1e-9: the same flows on faster links; only float rounding may differ
        assert np.all(np.diff(t) <= 1e-9 * t[:-1]), combo


def test_serve_step_reads_cluster_axes(tmp_path: Path) -> None:
    """A whole decode step of an MoE model across two nodes: halving the NIC slows it, and the
    point equals serve_step on an edited cluster file."""
    from hwsim.serve.api import serve_step
    from hwsim.serve.request import StepRequest

    data = {
        "name": "serve-ib",
        "base": {"device": "h800", "model": "qwen3-30b-a3b", "cluster": "h800-deepseek"},
        "workload": {"batch": 512, "context": 2048},
        "axes": {"cluster": {"nics.bandwidth": ["25 GB/s", "50 GB/s"]}, "layout": ["ep=16,dp=16"]},
        "metrics": [{"kind": "serve_step", "options": {"overlap": "none"}}],
    }
    path = tmp_path / "serve.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    res = run_sweep(load_sweep(path))
    t = dict(zip(res.columns["cluster.nics.bandwidth"].tolist(),
                 res.columns["serve_step.step_time_s"].tolist(), strict=True))  # fmt: skip
    assert t[25e9] > t[50e9]  # EP16 spans two nodes: the dispatch/combine cross the NICs
    edited = yaml.safe_load((CLUSTERS / "h800-deepseek.yaml").read_text(encoding="utf-8"))
    edited["nics"]["bandwidth"]["value"] = "25 GB/s"
    cpath = tmp_path / "slow-ib.yaml"
    cpath.write_text(yaml.safe_dump(edited), encoding="utf-8")
    ref = serve_step(
        StepRequest(
            "qwen3-30b-a3b",
            "h800",
            "decode",
            batch=512,
            context=2048,
            layout="ep=16,dp=16",
            overlap="none",
            cluster=str(cpath),
        )
    )
    assert t[25e9] == ref.step_time_s


def test_a_what_if_device_brings_its_ports_into_an_explicit_cluster() -> None:
    """dgx-h100 states its NVLink bandwidth itself; an H100 with 2x NVLink ports must still
    get 2x inside the node (it used to be silently ignored: whatif reported +0.0 %)."""
    from hwsim.serve.api import serve_step
    from hwsim.serve.request import StepRequest
    from hwsim.spec.cluster import for_device

    base = load_device("h100-sxm")
    fast = apply_overrides(base, {"interconnect.nvlink.bandwidth": "x2"})
    c = load_cluster("dgx-h100")
    assert for_device(c, base) is c
    scaled = for_device(c, fast)
    assert c.intra_node is not None and scaled.intra_node is not None
    assert scaled.intra_node.bandwidth.value == pytest.approx(2 * c.intra_node.bandwidth.value)  # type: ignore[union-attr]
    kw = {"batch": 64, "context": 2048, "layout": "tp=8"}
    slow_r = serve_step(StepRequest("llama-3.1-70b", base, "decode", **kw))  # type: ignore[arg-type]
    fast_r = serve_step(StepRequest("llama-3.1-70b", fast, "decode", **kw))  # type: ignore[arg-type]
    assert fast_r.comm_exposed_s < slow_r.comm_exposed_s
    assert fast_r.step_time_s < slow_r.step_time_s


# ---- profile.<path> spec axes: a spatial kind's mapper parameters ---------------------------
def _groq_sweep(tmp_path: Path, device: str = "groq-lpu", metric: str = "serve_step") -> Path:
    data = {
        "name": "groq-op-latency",
        "base": {"device": device, "model": "llama-3.1-8b"},
        "workload": {"dtype": "fp8", "batch": 1, "context": 2048},
        "axes": {"spec": {"profile.op_latency": ["x0.5", "x1", "5 us"]}, "layout": ["tp=16,pp=3"]},
        "metrics": [{"kind": metric}],
    }
    path = tmp_path / "groq.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def test_profile_axis_equals_the_whatif_and_columns_are_si(tmp_path: Path) -> None:
    from hwsim.serve.request import StepRequest
    from hwsim.serve.whatif import whatif

    res = run_sweep(load_sweep(_groq_sweep(tmp_path)))
    lat = res.columns["profile.op_latency"].tolist()
    assert sorted(lat) == pytest.approx([1.75e-6, 3.5e-6, 5e-6], rel=1e-12)
    tps = dict(zip(lat, res.columns["serve_step.tokens_per_s_per_user"].tolist(), strict=True))
    req = StepRequest("llama-3.1-8b", "groq-lpu", dtype="fp8", layout="tp=16,pp=3")
    w = whatif(req, ["profile.op_latency=x0.5"])
    # the same mapper rebuilt from the same numbers: exact
    assert tps[min(lat)] == w.modified.tokens_per_s_per_user
    assert tps[3.5e-6] == w.baseline.tokens_per_s_per_user
    assert tps[min(lat)] > tps[3.5e-6] > tps[max(lat)]  # more latency per op, slower


@pytest.mark.parametrize(
    ("device", "metric", "message"),
    [
        ("h100-sxm", "serve_step", "profile.* paths change the parameters of the dataflow"),
        ("groq-lpu", "decode_roofline", "no metric kind reads a mapper profile"),
    ],
)
def test_profile_axis_errors_name_the_key(
    tmp_path: Path, device: str, metric: str, message: str
) -> None:
    with pytest.raises(SpecError) as err:
        load_sweep(_groq_sweep(tmp_path, device, metric))
    assert message in str(err.value) and "profile.op_latency" in str(err.value)
