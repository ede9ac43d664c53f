"""MoE all-to-all (dispatch / combine) simulated flow by flow on a cluster topology.

Input is the dispatch plan of :mod:`hwsim.plan.moe` (who sends which token to which rank, the
same plan the functional executor runs), a :class:`~hwsim.sim.topology.Topology` and a kernel:

* ``normal`` - DeepEP normal kernels. Across nodes a token crosses InfiniBand once per
  destination node, to the GPU with the same local index, which forwards it over NVLink to every
  rank of that node that needs it (two hops, chunked and pipelined, so both legs stream at
  once). The kernel runs on ``comm_sms`` SMs: half send over RDMA and receive from NVLink, half
  forward; each half copies at most ``comm_sms/2 · bytes/cycle · clock`` (a shared virtual
  link per GPU and half). One node: the intranode kernel (senders copy straight into peers).
* ``low-latency`` - DeepEP low-latency kernels: one RDMA write (IBGDA) per (token, expert),
  direct to the expert's rank, no deduplication; by default every peer, those in the same node
  included, through the sender's NIC (pure RDMA, as DeepEP's README measured them);
  ``nvlink_intranode=True`` reaches peers in the node over NVLink (DeepEP since 2025-06,
  ``allow_nvlink_for_low_latency_mode``); a completion flag follows the data.
* ``nccl`` - a plain all-to-all of tokens permuted per expert over direct shortest paths, every
  (src, dst) flow progressing independently.

Combine moves the same tokens back along the reversed paths. Flows are grouped into engine
transfers per sender (``coupling: source``) or one per flow (``coupling: flow``); see
:mod:`hwsim.sim.network`. Results report DeepEP's byte metrics exactly as DeepEP defines them:
``rdma_gbps`` = (token, destination node) pairs including the rank's own node x bytes per token
/ kernel time; ``nvlink_gbps`` = tokens received (own included) x bytes per token / kernel time,
both per rank and averaged over ranks.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.sparse import coo_matrix, csr_matrix

from hwsim.plan.moe_dispatch import DispatchPlan, bytes_per_token
from hwsim.sim.alltoall_profiles import (
    ClusterProfile,
    KernelProfile,
    load_cluster_profile,
    load_kernel_profile,
)
from hwsim.sim.alltoall_run import PHASES
from hwsim.sim.network import LinkLoad, Transfer, VirtualLink, run_transfers
from hwsim.sim.topology import Route, Topology, build_topology
from hwsim.spec.errors import SpecError
from hwsim.spec.limits import LimitExceeded, event_limit

FArr = NDArray[np.float64]
IArr = NDArray[np.int64]
#: average utilisation of the busiest link above which a run counts as bandwidth-bound
BOUND_UTILIZATION = 0.5


@dataclass(frozen=True)
class AllToAllResult:
    """One simulated dispatch or combine (SI units; GB/s = 1e9 B/s as DeepEP prints)."""

    cluster: str
    kernel: str
    phase: str
    dtype: str
    ep: int
    nodes: int
    hidden: int
    time_s: float  #: slowest rank
    rank_time_s: tuple[float, ...]
    rdma_gbps: float  #: DeepEP internode metric, mean over ranks
    nvlink_gbps: float  #: DeepEP intranode metric, mean over ranks
    ll_gbps: float  #: DeepEP low-latency metric (selections x message bytes / time)
    bytes_by_link_kind: dict[str, float]  #: bytes crossing each link kind (once per flow)
    hop_bytes_by_link_kind: dict[str, float]  #: summed over every link of the kind
    sm_bytes: float  #: bytes copied by communication SMs (virtual links)
    max_link_utilization: float
    imbalance: float  #: max/mean tokens received per rank
    time_imbalance: float  #: max/mean rank time
    flows: int
    transfers: int
    events: int
    rate_updates: int
    wall_s: float
    links: tuple[LinkLoad, ...] = field(repr=False)
    leg_bytes: dict[str, FArr] = field(repr=False)  #: link kind → [R, R] sender→receiver bytes
    params: dict[str, Any] = field(default_factory=dict)
    trace: tuple[Any, ...] = field(default=(), repr=False)  #: TraceEvent spans (trace=True)
    rate_log: tuple[tuple[float, tuple[float, ...]], ...] = field(default=(), repr=False)

    @property
    def bound(self) -> str:
        """Kind of the busiest link, or ``latency`` when no link averages 50 % utilisation
        (the run is then set by hop latencies and per-message costs, not bandwidth)."""
        top = max(self.links, key=lambda lk: lk.utilization, default=None)
        return top.kind if top is not None and top.utilization >= BOUND_UTILIZATION else "latency"

    def to_dict(self, links: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            k: getattr(self, k)
            for k in (
                "cluster",
                "kernel",
                "phase",
                "dtype",
                "ep",
                "nodes",
                "hidden",
                "time_s",
                "bound",
                "rdma_gbps",
                "nvlink_gbps",
                "ll_gbps",
                "bytes_by_link_kind",
                "hop_bytes_by_link_kind",
                "sm_bytes",
                "max_link_utilization",
                "imbalance",
                "time_imbalance",
                "flows",
                "transfers",
                "events",
                "rate_updates",
                "wall_s",
                "params",
            )
        }
        out["rank_time_s"] = {"min": min(self.rank_time_s), "max": max(self.rank_time_s)}
        if links:
            out["links"] = [lk.__dict__ for lk in self.links]
        return out


# ------------------------------------------------------------------------------ flow tables
@dataclass
class _Flows:
    """Flows as arrays: owner (engine group), element pair, leg kind, bytes."""

    owner: list[IArr] = field(default_factory=list)
    a: list[IArr] = field(default_factory=list)
    b: list[IArr] = field(default_factory=list)
    leg: list[str] = field(default_factory=list)
    legs: list[IArr] = field(default_factory=list)
    nbytes: list[FArr] = field(default_factory=list)

    def add(self, owner: IArr, a: IArr, b: IArr, leg: str, nbytes: FArr) -> None:
        keep = (nbytes > 0) & (a != b)
        self.owner.append(owner[keep])
        self.a.append(a[keep])
        self.b.append(b[keep])
        self.leg.append(leg)
        self.legs.append(np.full(int(keep.sum()), len(self.leg) - 1))
        self.nbytes.append(nbytes[keep])

    def cat(self) -> tuple[IArr, IArr, IArr, IArr, FArr]:
        c = np.concatenate
        z = np.zeros(0, np.int64)
        return (
            c(self.owner) if self.owner else z,
            c(self.a) if self.a else z,
            c(self.b) if self.b else z,
            c(self.legs) if self.legs else z,
            c(self.nbytes) if self.nbytes else np.zeros(0),
        )


def _normal_flows(plan: DispatchPlan, bpt: float, phase: str, vbase: int) -> tuple[_Flows, FArr]:
    """Two-hop (or intranode) DeepEP flows and per-GPU SM copy loads [R, 2] (A: RDMA
    send + NVLink receive SMs, B: forwarding SMs), grouped by token owner."""
    r, g = plan.n_ranks, plan.gpus_per_node
    nodes = r // g
    t = plan.tokens.astype(float)  # [s, d] unique (token, rank) pairs incl. s == d
    s_idx, d_idx = np.nonzero(t)
    tb = t[s_idx, d_idx] * bpt
    fl = _Flows()
    sm = np.zeros((r, r, 2))  # [owner, gpu, half]
    if nodes == 1:  # intranode kernel: the sender copies into every peer's buffer directly
        fwd = s_idx
    else:
        fwd = (d_idx // g) * g + s_idx % g
        p = plan.rdma_pairs.astype(float)  # [s, m] incl. own node
        ps, pm = np.nonzero(p)
        pb = p[ps, pm] * bpt
        f_ib = pm * g + ps % g
        a, b = (ps, f_ib) if phase == "dispatch" else (f_ib, ps)
        fl.add(ps, a, b, "rdma", pb)
        np.add.at(sm, (ps, ps, np.zeros_like(ps)), pb)  # RDMA senders copy every (token, node) pair
    a, b = (fwd, d_idx) if phase == "dispatch" else (d_idx, fwd)
    fl.add(s_idx, a, b, "nvlink", tb)
    np.add.at(
        sm, (s_idx, fwd, np.ones_like(s_idx)), tb
    )  # forwarders write each token into each rank's buffer
    np.add.at(sm, (s_idx, d_idx, np.zeros_like(s_idx)), tb)  # receivers copy it out
    return fl, sm


def _direct_flows(plan: DispatchPlan, counts: IArr, msg_bytes: float, phase: str) -> _Flows:
    s_idx, d_idx = np.nonzero(counts)
    nb = counts[s_idx, d_idx].astype(float) * msg_bytes
    fl = _Flows()
    a, b = (s_idx, d_idx) if phase == "dispatch" else (d_idx, s_idx)
    fl.add(s_idx, a, b, "direct", nb)
    return fl


# ------------------------------------------------------------------------------ routing
def _route_matrix(
    topo: Topology, pa: IArr, pb: IArr, via_nic: FArr | None = None
) -> tuple[csr_matrix, FArr, FArr, list[frozenset[str]]]:
    """Routes of element pairs as a sparse [pairs x links] fraction matrix, plus each pair's
    latency, bottleneck bandwidth and set of link kinds.

    The topology memoises each route; everything per pair past that lookup is done on the
    concatenated arrays (bottleneck by ``minimum.reduceat``, kinds by one sparse product), so
    the Python work per pair is one call: at EP320 with 52k pairs this halves the time."""
    topo.prepare(np.unique(pb).tolist())
    n_pairs, n = len(pa), len(topo.links)
    routes = [
        _nic_route(topo, x, y) if (via_nic is not None and via_nic[i]) else topo.route(x, y)
        for i, (x, y) in enumerate(zip(pa.tolist(), pb.tolist(), strict=True))
    ]
    length = np.fromiter((len(rt.links) for rt in routes), np.int64, n_pairs)
    lat = np.fromiter((rt.latency_s for rt in routes), float, n_pairs)
    cols: IArr = np.concatenate([rt.links for rt in routes]) if n_pairs else np.zeros(0, np.int64)
    vals: FArr = np.concatenate([rt.fractions for rt in routes]) if n_pairs else np.zeros(0)
    rows = np.repeat(np.arange(n_pairs), length)
    mat = coo_matrix((vals, (rows, cols)), shape=(n_pairs, n)).tocsr()
    bw = np.array([lk.bandwidth_Bps for lk in topo.links])
    bott = np.full(n_pairs, np.inf)
    has = length > 0
    if has.any():
        starts = np.concatenate(([0], np.cumsum(length)[:-1]))[has]
        bott[has] = np.minimum.reduceat(bw[cols], starts)
    names = sorted({lk.kind for lk in topo.links})
    kind_ix = np.array([names.index(lk.kind) for lk in topo.links], np.int64)
    ones = np.ones(len(cols))
    seen = coo_matrix((ones, (rows, kind_ix[cols])), shape=(n_pairs, len(names))).tocsr()
    by_set: dict[tuple[int, ...], frozenset[str]] = {}
    kinds = []
    for i in range(n_pairs):
        key = tuple(seen.indices[seen.indptr[i] : seen.indptr[i + 1]].tolist())
        ks = by_set.get(key)
        if ks is None:
            ks = by_set[key] = frozenset(names[k] for k in key)
        kinds.append(ks)
    return mat, lat, bott, kinds


def _nic_route(topo: Topology, x: int, y: int) -> Route:
    """Route from rank x to rank y forced through x's first NIC (RDMA loopback in a node)."""
    nic = f"{topo.devices[x]}.nic0"
    if nic not in topo.graph:
        return topo.route(x, y)
    first = topo.graph.edges[topo.devices[x], nic]
    rest = topo.route(nic, y)
    return Route(
        np.concatenate([[first["index"]], rest.links]),
        np.concatenate([[1.0], rest.fractions]),
        first["latency_s"] + rest.latency_s,
        rest.hops + 1,
    )


# ------------------------------------------------------------------------------ simulate
#: Event-equivalents (~12 µs of CPU, as one simpy event) per flow: routing it, its loads and
#: its share of the rate updates. Measured 9 µs (normal) to 31 µs (low-latency) per flow at
#: EP 512-800 (257k-596k flows).
EVENTS_PER_FLOW = 3.0
#: Event-equivalents per (rate update × active transfer) when every flow is its own transfer
#: (nccl): each of the ~T updates re-shares all T transfers, ~1.3 µs each (measured: EP 64,
#: 4032 transfers, 20 s; EP 128, 16256 transfers, 330 s).
EVENTS_PER_UPDATE_TRANSFER = 1.3 / 12


def check_flow_work(flows: int, independent: bool, what: str) -> None:
    """Refuse a run whose estimated CPU, in simpy-event equivalents, is over ``--max-events``:
    ``flows`` × :data:`EVENTS_PER_FLOW`, plus flows² × :data:`EVENTS_PER_UPDATE_TRANSFER`
    when every flow is an independent transfer (``independent``). O(1)."""
    work = flows * EVENTS_PER_FLOW
    if independent:
        work += flows * flows * EVENTS_PER_UPDATE_TRANSFER
    cap = event_limit()
    if work > cap:
        hint = "use --kernel normal or a smaller --ep" if independent else "use a smaller --ep"
        raise LimitExceeded(
            f"{what} has ~{flows:,} flows and would cost ~{work:,.0f} event-equivalents of "
            f"simulation (limit {cap:,}; --max-events raises it); {hint}"
        )


def simulate_alltoall(
    topology: Topology | str,
    plan: DispatchPlan,
    kernel: str = "normal",
    phase: str = "dispatch",
    *,
    dtype: str | None = None,
    comm_sms: int | None = None,
    kernel_profile: KernelProfile | None = None,
    cluster_profile: ClusterProfile | None = None,
    trace: bool = False,
    nvlink_intranode: bool | None = None,
) -> AllToAllResult:
    """Simulate one MoE dispatch or combine of ``plan`` on ``topology``.

    ``dtype`` is the wire format of this phase (default: the plan's dispatch dtype, or its
    combine dtype). ``comm_sms`` overrides the kernel profile's SM count; ``nvlink_intranode``
    the profile's transport to peers in the same node (True: NVLink, False: through the NIC,
    None: the profile's; direct kernels only). The plan's ranks are
    the first ``plan.n_ranks`` devices of the topology (rank = node x devices per node + local
    index). Returns an :class:`AllToAllResult`."""
    t0 = time.perf_counter()
    topo = build_topology(topology) if isinstance(topology, str) else topology
    if phase not in PHASES:
        raise SpecError(f"phase must be one of {', '.join(PHASES)}, got {phase!r}", key="phase")
    if plan.n_ranks > topo.ranks:
        raise SpecError(
            f"the plan has {plan.n_ranks} ranks but '{topo.name}' with {topo.nodes} node(s) has "
            f"{topo.ranks} devices; raise --nodes",
            key="ep",
        )
    if plan.n_ranks > topo.per_node and plan.gpus_per_node != topo.per_node:
        raise SpecError(
            f"the plan puts {plan.gpus_per_node} ranks per node, the cluster has "
            f"{topo.per_node} devices per node",
            key="ep",
        )
    kp = kernel_profile or load_kernel_profile(kernel)
    if nvlink_intranode is not None:
        kp = kp.model_copy(update={"nvlink_intranode": nvlink_intranode})
    cp = cluster_profile or load_cluster_profile(topo.name)
    wire = dtype or (plan.dispatch_dtype if phase == "dispatch" else plan.combine_dtype)
    bpt = bytes_per_token(plan.hidden, wire)
    header = kp.header if phase == "dispatch" else 0.0
    r = plan.n_ranks
    n_phys = len(topo.links)
    clock = topo.device.compute.clock_Hz if hasattr(topo.device.compute, "clock_Hz") else 0.0
    sms = comm_sms if comm_sms is not None else (int(kp.comm_sms.value) if kp.comm_sms else None)
    copy_Bps = None
    if sms is not None and kp.copy_bytes_per_cycle_per_sm is not None and topo.device.kind == "gpu":
        copy_Bps = sms / 2 * kp.copy_bytes_per_cycle_per_sm.value * clock
    counts = plan.tokens if kp.dedup == "rank" else plan.expert_copies
    check_flow_work(
        int(np.count_nonzero(counts)) * (2 if kp.path == "two_hop" else 1),
        kp.coupling == "flow",
        f"the {kernel} {phase} over EP {r}",
    )
    sm = np.zeros((r, r, 2))
    if kp.path == "two_hop":
        flows, sm = _normal_flows(plan, bpt, phase, n_phys)
    else:
        flows = _direct_flows(plan, counts, bpt + header, phase)
    owner, fa, fb, legs, nbytes = flows.cat()
    # unique element pairs → routes
    key = fa * r + fb
    uniq, inv = np.unique(key, return_inverse=True)
    pa, pb = uniq // r, uniq % r
    via_nic = None
    if not kp.nvlink_intranode:
        via_nic = (pa // topo.per_node == pb // topo.per_node).astype(float)
    rmat, plat, pbott, pkinds = _route_matrix(topo, pa, pb, via_nic)
    # groups: per owner (coupled) or per flow
    grp = owner if kp.coupling == "source" else np.arange(len(owner))
    n_grp = int(grp.max()) + 1 if len(grp) else 0
    flow_to_pair = coo_matrix((nbytes, (grp, inv)), shape=(n_grp, len(uniq))).tocsr()
    loads = (flow_to_pair @ rmat).tocsr()  # [group, link] bytes
    # latency: setup + slowest route per leg (+ one chunk per hop to fill the pipeline)
    lat_leg = np.zeros((n_grp, max(1, len(flows.leg))))
    fill = np.zeros((n_grp, max(1, len(flows.leg))))
    chunk = {"rdma": kp.rdma_chunk_tokens, "nvlink": kp.nvl_chunk_tokens}
    for li, leg in enumerate(flows.leg):
        sel = legs == li
        np.maximum.at(lat_leg[:, li], grp[sel], plat[inv[sel]])
        ck = chunk.get(leg)
        if ck is not None:
            eff = np.array([cp.scale().get(leg, 1.0)])[0]
            np.maximum.at(fill[:, li], grp[sel], ck.value * bpt / (pbott[inv[sel]] * eff))
    group_lat = kp.setup.value + lat_leg.sum(axis=1) + fill.sum(axis=1)
    tail = lat_leg.max(axis=1) if kp.dedup == "expert" else np.zeros(n_grp)
    # progress unit of a group: the bytes it sends (its first leg)
    size = np.bincount(grp, weights=nbytes * (legs == 0), minlength=n_grp)
    size = np.where(size > 0, size, np.bincount(grp, weights=nbytes, minlength=n_grp))
    virtual: list[VirtualLink] = []
    sm_g = np.zeros((n_grp, 0))
    if copy_Bps is not None and kp.path == "two_hop":
        virtual = [
            VirtualLink(f"{topo.devices[i]}.sm{'ab'[h]}", copy_Bps)
            for i in range(r)
            for h in range(2)
        ]
        sm_g = sm.reshape(r, 2 * r)
    receivers: list[set[int]] = [set() for _ in range(n_grp)]
    for gi, x, y in zip(grp.tolist(), fa.tolist(), fb.tolist(), strict=True):
        receivers[gi].add(x)
        receivers[gi].add(y)
    transfers: list[Transfer] = []
    for gi in range(n_grp):
        row = loads.getrow(gi)
        ld = dict(zip(row.indices.tolist(), row.data.tolist(), strict=True))
        if sm_g.shape[1]:
            nz = np.flatnonzero(sm_g[gi])
            for j in nz.tolist():
                ld[n_phys + j] = float(sm_g[gi, j])
        transfers.append(
            Transfer(
                label=f"{phase}:{gi}",
                owner=int(owner[grp == gi][0]) if kp.coupling == "flow" else gi,
                size_bytes=float(size[gi]),
                loads=ld,
                latency_s=float(group_lat[gi]),
                tail_s=float(tail[gi]),
                receivers=tuple(sorted(receivers[gi])),
            )
        )
    run = run_transfers(
        topo, transfers, virtual=virtual, link_scale=cp.scale(), ranks=r, trace=trace
    )
    rank_t = np.array(run.rank_time_s)
    rank_t = np.where(rank_t > 0, rank_t, run.time_s)
    rdma_b = plan.rdma_pairs.sum(axis=1) * bpt
    nvl_b = plan.tokens.sum(axis=0) * bpt
    sel_b = plan.expert_copies.sum(axis=1) * (bpt + header)  # DeepEP: header on FP8 dispatch
    leg_bytes: dict[str, FArr] = {}
    by_kind: dict[str, float] = {}
    pair_bytes = np.bincount(inv, weights=nbytes, minlength=len(uniq))
    for i, kinds in enumerate(pkinds):
        for k in kinds:
            by_kind[k] = by_kind.get(k, 0.0) + float(pair_bytes[i])
    for li, leg in enumerate(flows.leg):
        sel = legs == li
        m = np.zeros((r, r))
        np.add.at(m, (fa[sel], fb[sel]), nbytes[sel])
        leg_bytes[leg] = m
    recv = plan.tokens.sum(axis=0) if kp.dedup == "rank" else counts.sum(axis=0)
    # a rank that moves nothing (EP 1) takes no time: it has no bandwidth, not an infinite one
    per_s = np.where(rank_t > 0, rank_t, np.inf)
    return AllToAllResult(
        cluster=topo.name,
        kernel=kernel,
        phase=phase,
        dtype=wire,
        ep=r,
        nodes=max(1, r // topo.per_node),
        hidden=plan.hidden,
        time_s=float(rank_t.max()),
        rank_time_s=tuple(rank_t.tolist()),
        rdma_gbps=float(np.mean(rdma_b / per_s) / 1e9),
        nvlink_gbps=float(np.mean(nvl_b / per_s) / 1e9),
        ll_gbps=float(np.mean(sel_b / per_s) / 1e9),
        bytes_by_link_kind=by_kind,
        hop_bytes_by_link_kind=run.bytes_by_kind(),
        sm_bytes=run.bytes_by_kind(include_virtual=True).get("sm", 0.0),
        max_link_utilization=run.max_utilization(),
        imbalance=float(recv.max() / recv.mean()) if recv.mean() > 0 else 1.0,
        time_imbalance=float(rank_t.max() / rank_t.mean()) if rank_t.mean() > 0 else 1.0,
        flows=len(nbytes),
        transfers=len(transfers),
        events=run.events,
        rate_updates=run.rate_updates,
        wall_s=time.perf_counter() - t0,
        links=run.links,
        leg_bytes=leg_bytes,
        params={
            "comm_sms": sms,
            "copy_Bps_per_half": copy_Bps,
            "setup_s": kp.setup.value,
            "efficiency": cp.scale(),
            "coupling": kp.coupling,
            "path": kp.path,
            "nvlink_intranode": kp.nvlink_intranode,
        },
        trace=run.trace,
        rate_log=run.rate_log,
    )
