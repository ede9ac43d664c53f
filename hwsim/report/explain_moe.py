"""``hwsim explain moe``: one MoE dispatch or combine over a cluster, timed by
:func:`hwsim.sim.alltoall.simulate_alltoall` on the plan of
:func:`hwsim.plan.moe.synthetic_dispatch_plan`, built exactly as ``hwsim moe`` builds it, with
what-ifs chosen by the link kind that bounds it (NIC and NVLink bandwidth, the node limit M,
the wire dtype, the EP degree, communication SMs).
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass
from typing import Any

from hwsim.report.explain import (
    NO_CHANGE,
    Candidate,
    Change,
    Outcome,
    bound_of,
    fmt_bw,
    fmt_bytes,
    fmt_pct,
)
from hwsim.report.explain_common import _fill
from hwsim.sim.alltoall_profiles import KERNELS
from hwsim.sim.alltoall_run import Routing, check_choice
from hwsim.spec.errors import SpecError
from hwsim.spec.overrides import apply_overrides


@functools.lru_cache(maxsize=8)
def _moe_plan(
    ep: int, tokens: int, hidden: int, experts: int, topk: int, groups: int | None, routing: str,
    per_node: int, redundant: int, seed: int, dtype: str,
) -> Any:  # fmt: skip
    from hwsim.plan.moe import synthetic_dispatch_plan

    plan, _, _ = synthetic_dispatch_plan(
        ep, tokens, hidden, experts, topk, groups, routing, per_node, redundant, seed,
        dispatch_dtype=dtype,
    )  # fmt: skip
    return plan


@dataclass(frozen=True)
class MoeSubject:
    """One MoE dispatch or combine over a cluster, timed by :func:`simulate_alltoall` on the
    routing of :func:`hwsim.plan.moe.synthetic_dispatch_plan` (DeepEP's test distribution by
    default). ``tokens`` per rank; ``topk_groups`` = the node limit M.

    The plan and topology are built exactly as ``hwsim moe`` builds them (same node count,
    ranks per node, redundant experts, plan wire format and communication SMs), so explaining
    the ``--json`` of a ``hwsim moe`` run reproduces its ``time_s``."""

    cluster: str
    ep: int
    tokens: int = 4096
    hidden: int = 7168
    experts: int = 256
    topk: int = 8
    topk_groups: int | None = 4
    phase: str = "dispatch"
    dtype: str = "fp8"
    kernel: str = "normal"
    routing: str = "deepep"
    seed: int = 0
    comm_sms: int | None = None  #: SMs the kernel copies with (None: the kernel profile's)
    nodes: int | None = None  #: nodes in the topology (None: just enough for ``ep``)
    redundant: int = 0  #: redundant expert copies in the placement
    kind = "moe"

    def params(self) -> dict[str, Any]:
        return dict(asdict(self))

    def label(self) -> str:
        m = f", tokens to at most {self.topk_groups} nodes" if self.topk_groups else ""
        return (
            f"MoE {self.phase} ({self.kernel} kernel, {self.dtype}) at EP {self.ep} on "
            f"{self.cluster}: {self.tokens} tokens per rank, {self.experts} experts top-"
            f"{self.topk}{m}"
        )

    def run(self, change: Change = NO_CHANGE) -> Outcome:
        from hwsim.sim.alltoall import simulate_alltoall
        from hwsim.sim.topology import build_topology
        from hwsim.spec.cluster import load_cluster

        c = apply_overrides(load_cluster(self.cluster), change.spec)
        p = {**self.params(), **change.params}
        check_choice("kernel", str(p["kernel"]), KERNELS)
        groups = p["topk_groups"]
        Routing(  # the option checks of `hwsim moe`: positive counts, a routing it knows
            c, int(p["ep"]), int(p["tokens"]), int(p["hidden"]), int(p["experts"]),
            int(p["topk"]), 1 if groups is None else int(groups), str(p["routing"]),
            int(p["seed"]), p["nodes"], int(p["redundant"]),
        ).check()  # fmt: skip
        per = c.devices_per_node_count
        ep = int(p["ep"])
        need = max(1, math.ceil(ep / per))
        nodes = need if p["nodes"] is None else int(p["nodes"])
        if nodes < need:
            raise SpecError(f"EP {ep} needs at least {need} node(s), got {nodes}", key="nodes")
        topo = build_topology(c, nodes)
        phase, dtype = str(p["phase"]), str(p["dtype"])
        # as `hwsim moe`: ranks of one node capped at EP, and the plan's dispatch bytes in the
        # wire format only for a dispatch (a combine's plan is the fp8 dispatch's, sent back)
        plan = _moe_plan(
            ep, int(p["tokens"]), int(p["hidden"]), int(p["experts"]), int(p["topk"]),
            p["topk_groups"], str(p["routing"]), min(per, ep), int(p["redundant"]),
            int(p["seed"]), dtype if phase == "dispatch" else "fp8",
        )  # fmt: skip
        sms = p["comm_sms"]
        r = simulate_alltoall(
            topo, plan, str(p["kernel"]), phase, dtype=dtype,
            comm_sms=None if sms is None else int(sms),
        )  # fmt: skip
        busy: dict[str, float] = {}
        for lk in r.links:
            busy[lk.kind] = max(busy.get(lk.kind, 0.0), lk.utilization * r.time_s)
        bw: dict[str, float] = {}
        for ls in topo.links:
            bw[ls.kind] = bw.get(ls.kind, 0.0) + ls.bandwidth_Bps
        kinds: list[str] = [
            k for k in ("sm", "nvlink", "pcie", "rdma") if k in r.bytes_by_link_kind
        ]
        kinds += [k for k in r.bytes_by_link_kind if k not in kinds]
        rdma = nodes > 1
        return Outcome(
            time_s=r.time_s,
            bound=bound_of(busy, r.time_s),
            busy_s=busy,
            bytes={k: float(r.bytes_by_link_kind[k]) for k in kinds},
            bandwidth_Bps={k: bw.get(k, math.nan) for k in kinds},
            work_flops=0.0,
            peak_flops=0.0,
            metric=(
                "RDMA GB/s per rank" if rdma else "NVLink GB/s per rank",
                r.rdma_gbps if rdma else r.nvlink_gbps,
            ),
            details={
                "nodes": nodes,
                "per_node": per,
                "imbalance": r.imbalance,
                "time_imbalance": r.time_imbalance,
                "max_link_utilization": r.max_link_utilization,
                "rdma_gbps": r.rdma_gbps,
                "nvlink_gbps": r.nvlink_gbps,
                "nic_Bps": float(c.nics.bandwidth.value) if c.nics is not None else math.nan,
                "flows": r.flows,
                "comm_sms": r.params.get("comm_sms"),
            },
            result=r.to_dict(),
        )

    def describe(self, base: Outcome) -> list[str]:
        x = base.details
        out = [
            f"{self.ep} ranks on {x['nodes']} node(s) of {x['per_node']}; the busiest link runs "
            f"at {fmt_pct(x['max_link_utilization'])} of its bandwidth on average, and the most "
            f"loaded rank receives {x['imbalance']:.2f}× the mean number of tokens."
        ]
        if "rdma" in base.bytes and x["nodes"] > 1:
            nic = x["nic_Bps"]
            out.append(
                f"The NICs carry {fmt_bytes(base.bytes['rdma'])} in all ({fmt_bw(nic)} each); "
                f"every rank reaches {x['rdma_gbps']:.1f} GB/s in DeepEP's RDMA metric. "
                + (
                    f"With tokens limited to {min(self.topk_groups, x['nodes'])} of {x['nodes']} "
                    "nodes, a token crosses InfiniBand once per destination node, not once per "
                    "expert."
                    if self.topk_groups
                    else "Tokens may go to any node."
                )
            )
        return out

    def candidates(self, base: Outcome) -> list[Candidate]:
        from hwsim.spec.cluster import load_cluster

        c = load_cluster(self.cluster)
        nodes = base.details["nodes"]
        pool: dict[str, Candidate] = {}
        if c.nics is not None:
            pool["rdma"] = Candidate(
                "nic-bandwidth-x2",
                "2× NIC bandwidth",
                "bandwidth",
                ("rdma", "pcie"),
                Change(
                    spec={
                        "nics.bandwidth": "x2",
                        "network.link_bandwidth": "x2",
                        "nics.host_link.bandwidth": "x2",
                    }
                ),
                "twice the InfiniBand rate per GPU (NIC, switch ports and the host link)",
            )
        pool["nvlink"] = Candidate(
            "nvlink-bandwidth-x2",
            "2× NVLink bandwidth",
            "bandwidth",
            ("nvlink",),
            Change(spec={"intra_node.bandwidth": "x2"}),
            "twice the intra-node bandwidth per GPU",
        )
        m = self.topk_groups or nodes
        if nodes > 1 and m > 1:
            half = max(1, m // 2)
            pool["limit"] = Candidate(
                f"node-limit-{half}",
                f"tokens to at most {half} nodes",
                "layout",
                ("rdma", "pcie"),
                Change(params={"topk_groups": half}),
                f"node-limited routing with M = {half} instead of {m}: fewer InfiniBand copies "
                "per token",
            )
        if self.dtype != "fp8":
            pool["dtype"] = Candidate(
                "dtype-fp8",
                f"fp8 instead of {self.dtype} on the wire",
                "dtype",
                ("rdma", "nvlink", "pcie", "sm"),
                Change(params={"dtype": "fp8"}),
                "half the bytes per token (plus a small scale per 128 values)",
            )
        if self.ep > c.devices_per_node_count:
            pool["ep"] = Candidate(
                f"ep-{self.ep // 2}",
                f"EP {self.ep // 2} instead of {self.ep}",
                "layout",
                ("rdma", "pcie"),
                Change(params={"ep": self.ep // 2, "nodes": None}),
                "half as many ranks (and nodes) for the same tokens per rank",
            )
        sms = base.details.get("comm_sms")
        if sms:
            pool["sms"] = Candidate(
                f"comm-sms-{2 * int(sms)}",
                f"{2 * int(sms)} SMs for communication instead of {int(sms)}",
                "overlap/profile",
                ("sm",),
                Change(params={"comm_sms": 2 * int(sms)}),
                "twice the copy throughput of the kernel, at the cost of SMs for compute",
            )
        order = {
            "rdma": ["rdma", "limit", "dtype", "ep"],
            "pcie": ["rdma", "limit", "dtype"],
            "nvlink": ["nvlink", "dtype", "limit"],
            "sm": ["sms", "nvlink", "dtype", "limit"],
        }.get(base.bound, ["limit", "rdma", "nvlink", "dtype"])
        cands = [pool[k] for k in order if k in pool]
        return _fill(cands, list(pool.values()))
