"""The runs ``hwsim explain`` can take apart: a GEMM (:mod:`hwsim.sim.gpu_gemm`), attention
(:mod:`hwsim.sim.gpu_attention`) and an MoE all-to-all (:mod:`hwsim.sim.alltoall`). Each subject
repeats its simulation with a :class:`~hwsim.report.explain.Change` and proposes what-ifs chosen
by the resource that bounds it. Whole-model decode lives in :mod:`hwsim.report.explain_decode`.

Spec changes go through :func:`hwsim.spec.overrides.apply_overrides` (device, cluster and kernel
profiles alike), so a what-if is exactly what ``hwsim whatif --set PATH=VALUE`` would run.
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
    fmt_time,
    rname,
)
from hwsim.spec.device import DTYPE_BYTES, Device
from hwsim.spec.errors import SpecError
from hwsim.spec.load import load_device
from hwsim.spec.overrides import apply_overrides

#: A dtype one step narrower (the "dtype" lever): half the bytes, and more FLOP/s where the
#: device has a faster matrix peak for it.
NARROWER = {"fp32": "bf16", "tf32": "bf16", "fp16": "fp8", "bf16": "fp8"}


def _peak_path(d: Device, dtype: str) -> str:
    """Override path of the matrix peak ``dtype`` actually uses (its own entry or the entry it
    falls back to)."""
    if dtype in d.compute.peak:
        return f"compute.peak.{dtype}"
    rate = d.peak_flops(dtype)
    for key, val in d.compute.peak.items():
        if val.value == rate:
            return f"compute.peak.{key}"
    raise SpecError(f"{d.name} lists no matrix peak for {dtype}", key="compute.peak")


def _faster_dtype(d: Device, dtype: str) -> str | None:
    """The narrower dtype when the device has its own, higher matrix peak for it."""
    nxt = NARROWER.get(dtype)
    if nxt is None or nxt not in d.compute.peak:
        return None
    return nxt if d.peak_flops(nxt) > d.peak_flops(dtype) else None


def _level_x2(level: str, why: str, relieves: tuple[str, ...] | None = None) -> Candidate:
    return Candidate(
        key=f"{level}-bandwidth-x2",
        title=f"2× {level} bandwidth",
        lever="bandwidth",
        relieves=relieves or (level,),
        change=Change(spec={f"memory.{level}.bandwidth": "x2"}),
        reason=why,
    )


def _value(sourced: Any) -> float:
    """The SI value of a sourced profile number (profiles type them dynamically)."""
    return float(sourced.value)


def _fill(cands: list[Candidate], pool: list[Candidate], at_least: int = 3) -> list[Candidate]:
    """Top up ``cands`` from ``pool`` (in order) to ``at_least`` distinct candidates."""
    keys = {c.key for c in cands}
    for c in pool:
        if len(cands) >= at_least:
            break
        if c.key not in keys:
            cands.append(c)
            keys.add(c.key)
    return cands


# ---- GEMM ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GemmSubject:
    """``C[m,n] = A[m,k] @ B[k,n]`` on one GPU, timed by :func:`simulate_gemm`."""

    device: str
    m: int
    n: int
    k: int
    dtype: str = "fp16"
    kind = "gemm"

    def params(self) -> dict[str, Any]:
        return {"device": self.device, "m": self.m, "n": self.n, "k": self.k, "dtype": self.dtype}

    def label(self) -> str:
        return f"GEMM {self.m}×{self.n}×{self.k} {self.dtype} on {load_device(self.device).name}"

    def run(self, change: Change = NO_CHANGE) -> Outcome:
        from hwsim.plan.gemm import gemm_profile
        from hwsim.sim.gpu_gemm import simulate_gemm

        d = apply_overrides(load_device(self.device), change.spec)
        p = {**self.params(), **change.params}
        prof = apply_overrides(gemm_profile(d)[0], change.profile) if change.profile else None
        r = simulate_gemm(d, int(p["m"]), int(p["n"]), int(p["k"]), str(p["dtype"]), profile=prof)
        bd = r.breakdown_s
        busy = {
            "compute": bd["compute"],
            "l2": bd["l2"],
            "hbm": bd["hbm"],
            "overhead": bd["cta_overhead"] + bd["launch"],
        }
        smem = next((m.name for m in d.memory if m.scope == "per_unit"), "smem")
        levels = [lvl for lvl in (smem, "l2", "hbm") if lvl in {m.name for m in d.memory}]
        byts = {lvl: float(r.bytes.get("smem" if lvl == smem else lvl, 0.0)) for lvl in levels}
        plan = r.plan
        return Outcome(
            time_s=r.time_s,
            bound=r.bound,
            busy_s=busy,
            bytes=byts,
            bandwidth_Bps={lvl: d.level_bandwidth_Bps(lvl) for lvl in levels},
            work_flops=r.flops,
            peak_flops=d.peak_flops(r.dtype),
            metric=("TFLOP/s", r.tflops),
            details={
                "tile": plan.get("tile"),
                "stages": plan.get("stages"),
                "ctas": plan.get("ctas"),
                "waves": plan.get("waves"),
                "wave_efficiency": plan.get("wave_efficiency"),
                "split_k": plan.get("split_k"),
                "smem_bytes_per_cta": plan.get("smem_bytes_per_cta"),
                "smem_capacity_bytes": d.level(smem).capacity_bytes,
                "compulsory_bytes": r.bytes.get("compulsory", 0.0),
                "launch_s": r.launch_s,
                "units": d.compute.units_count,
                "dtype": r.dtype,
            },
            result=r.to_dict(),
        )

    def describe(self, base: Outcome) -> list[str]:
        x = base.details
        out = []
        if x.get("tile"):
            tm, tn, tk = x["tile"]
            out.append(
                f"Each CTA computes a {tm}×{tn} output tile in k-steps of {tk} with "
                f"{x['stages']} pipeline stages ({fmt_bytes(x['smem_bytes_per_cta'])} of the "
                f"{fmt_bytes(x['smem_capacity_bytes'])} of shared memory per SM); {x['ctas']} CTAs "
                f"run in {x['waves']} wave(s) over {x['units']} SMs, the waves "
                f"{fmt_pct(x['wave_efficiency'])} full on average."
            )
        hbm, comp = base.bytes.get("hbm", 0.0), x.get("compulsory_bytes", 0.0)
        if hbm and comp:
            l2 = base.bytes.get("l2", 0.0)
            out.append(
                f"HBM moves {fmt_bytes(hbm)}, {hbm / comp:.2f}× the compulsory A + B + C "
                f"({fmt_bytes(comp)}); the L2 serves {fmt_bytes(l2)}, {l2 / hbm:.1f}× as much, "
                "because every tile row and column re-reads its operands from it."
            )
        if base.share("overhead") > 0.2:
            out.append(
                f"The host launch alone costs {fmt_time(x['launch_s'])}, "
                f"{fmt_pct(x['launch_s'] / base.time_s)} of the call: too little work per launch."
            )
        return out

    def candidates(self, base: Outcome) -> list[Candidate]:
        d = load_device(self.device)
        narrow = _faster_dtype(d, self.dtype)
        pool: dict[str, Candidate] = {}
        if narrow:
            ratio = d.peak_flops(narrow) / d.peak_flops(self.dtype)
            pool["dtype"] = Candidate(
                f"dtype-{narrow}",
                f"{narrow} instead of {self.dtype}",
                "dtype",
                ("compute", "hbm", "l2"),
                Change(params={"dtype": narrow}),
                f"{ratio:.3g}× the matrix peak and "
                f"{DTYPE_BYTES[narrow] / DTYPE_BYTES[self.dtype]:.2g}× the bytes per element",
            )
        pool["compute"] = Candidate(
            "compute-x2",
            "2× tensor-core rate",
            "compute",
            ("compute",),
            Change(spec={_peak_path(d, self.dtype): "x2"}),
            f"a chip with twice the {self.dtype} matrix peak",
        )
        smem = next((m.name for m in d.memory if m.scope == "per_unit"), "smem")
        pool["tile"] = Candidate(
            "smem-capacity-x2",
            f"2× {smem} per SM",
            "tile/SRAM",
            ("l2", "hbm"),
            Change(spec={f"memory.{smem}.capacity": "x2"}),
            "room for larger tiles, so fewer re-reads from L2 and HBM",
        )
        pool["hbm"] = _level_x2("hbm", "operands stream twice as fast from HBM")
        pool["l2"] = _level_x2("l2", "tiles re-read from the L2 twice as fast")
        pool["l2cap"] = Candidate(
            "l2-capacity-x2",
            "2× L2 capacity",
            "tile/SRAM",
            ("hbm",),
            Change(spec={"memory.l2.capacity": "x2"}),
            "more of A and B stays in the L2 between tiles",
        )
        pool["launch"] = Candidate(
            "launch-graph",
            "launch from a CUDA graph",
            "overlap/profile",
            ("overhead",),
            Change(profile={"host_launch": "x0.1"}),
            "a tenth of the host launch cost, as a captured graph replays it",
        )
        order = {
            "compute": ["dtype", "compute", "tile"],
            "hbm": ["hbm", "dtype", "l2cap"],
            "l2": ["l2", "tile", "dtype"],
            "overhead": ["launch", "dtype", "compute"],
        }.get(base.bound, ["compute", "hbm", "dtype"])
        cands = [pool[k] for k in order if k in pool]
        rest = [pool[k] for k in ("compute", "hbm", "l2", "tile", "launch") if k in pool]
        return _fill(cands, rest)


# ---- attention ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class AttentionSubject:
    """One attention call on one GPU, timed by :func:`simulate_attention`."""

    device: str
    batch: int
    heads: int
    seqlen: int
    head_dim: int = 128
    kv_heads: int | None = None
    seqlen_kv: int | None = None
    head_dim_v: int | None = None
    causal: bool = False
    dtype: str = "bf16"
    kernel: str = "fa3"
    pass_: str = "fwd"
    kind = "attention"

    def params(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items()}

    def shape(self, p: dict[str, Any]) -> Any:
        from hwsim.plan.attention import AttentionShape

        return AttentionShape(
            batch=int(p["batch"]),
            heads=int(p["heads"]),
            kv_heads=int(p["kv_heads"] or p["heads"]),
            seqlen_q=int(p["seqlen"]),
            seqlen_kv=int(p["seqlen_kv"] or p["seqlen"]),
            head_dim=int(p["head_dim"]),
            head_dim_v=p["head_dim_v"],
            causal=bool(p["causal"]),
            dtype=str(p["dtype"]),
            pass_=str(p["pass_"]),
        )

    def label(self) -> str:
        kv = f"/{self.kv_heads}" if self.kv_heads and self.kv_heads != self.heads else ""
        L = self.seqlen if not self.seqlen_kv else f"{self.seqlen}×{self.seqlen_kv}"
        mask = " causal" if self.causal else ""
        return (
            f"{self.kernel} attention {self.pass_} (batch {self.batch}, {self.heads}{kv} heads, "
            f"seqlen {L}, head dim {self.head_dim}{mask}, {self.dtype}) on "
            f"{load_device(self.device).name}"
        )

    def run(self, change: Change = NO_CHANGE) -> Outcome:
        from hwsim.sim.gpu_attention import simulate_attention
        from hwsim.sim.kernel_profiles import load_attention_profile

        d = apply_overrides(load_device(self.device), change.spec)
        p = {**self.params(), **change.params}
        shape = self.shape(p)
        kernel = str(p["kernel"])
        prof = None
        if change.profile:
            prof = apply_overrides(load_attention_profile(kernel, d.arch), change.profile)
        r = simulate_attention(d, shape, kernel, profile=prof)
        names = [m.name for m in d.memory]
        levels = [lvl for lvl in names if lvl in r.bytes]
        busy = {res: u * r.time_s for res, u in r.utilization.items()}
        plan = r.plan
        onchip = next((lvl for lvl in levels if lvl not in ("l2", d.main_memory.name)), None)
        return Outcome(
            time_s=r.time_s,
            bound=r.bound,
            busy_s=busy,
            bytes={lvl: float(r.bytes[lvl]) for lvl in levels},
            bandwidth_Bps={lvl: d.level_bandwidth_Bps(lvl) for lvl in levels},
            work_flops=r.flash_flops,
            peak_flops=d.peak_flops("fp8" if shape.dtype.startswith("fp8") else shape.dtype),
            metric=("TFLOP/s", r.tflops),
            details={
                "block_q": plan.get("block_q"),
                "block_kv": plan.get("block_kv"),
                "stages": plan.get("stages"),
                "num_splits": plan.get("num_splits"),
                "footprint_bytes": plan.get("footprint_bytes"),
                "budget_bytes": plan.get("budget_bytes"),
                "q_blocks": math.ceil(shape.seqlen_q / max(1, int(plan.get("block_q") or 1))),
                "global_bytes": float(plan.get("bytes", {}).get("global", 0.0)),
                "onchip": onchip,
                "kernel": kernel,
                "notes": list(r.notes),
            },
            result=r.to_dict(),
        )

    def describe(self, base: Outcome) -> list[str]:
        x = base.details
        out = []
        if x.get("block_q"):
            out.append(
                f"Each CTA keeps a {x['block_q']}-row Q block in shared memory and streams K and V "
                f"past it in {x['block_kv']}-row blocks with {x['stages']} buffers: "
                f"{fmt_bytes(x['footprint_bytes'])} of the {fmt_bytes(x['budget_bytes'])} per SM."
            )
        hbm = base.bytes.get("hbm", 0.0)
        if x.get("q_blocks", 0) > 1 and x.get("global_bytes"):
            out.append(
                f"K and V are re-read once per Q block ({x['q_blocks']}×), so the kernels load "
                f"{fmt_bytes(x['global_bytes'])}; the L2 catches the re-reads and "
                f"{fmt_bytes(hbm)} cross HBM."
            )
        for note in x.get("notes", []):
            out.append(f"Note: {note}.")
        return out

    def candidates(self, base: Outcome) -> list[Candidate]:
        from hwsim.sim.kernel_profiles import load_attention_profile

        d = load_device(self.device)
        prof = load_attention_profile(self.kernel, d.arch)
        overlap = _value(prof.softmax_overlap)
        l2_share = _value(prof.l2_usable_fraction)
        onchip = base.details.get("onchip") or "smem"
        pool: dict[str, Candidate] = {}
        if overlap < 1.0:
            pool["overlap"] = Candidate(
                "softmax-overlap",
                "perfect softmax/matmul overlap",
                "overlap/profile",
                ("compute", "special", "latency"),
                Change(profile={"softmax_overlap": "1"}),
                f"the {self.kernel} profile hides {overlap:.2g} of the shorter "
                "of softmax and matmul per step; 1 hides all of it",
            )
        if self.kernel == "fa2" and d.arch == "hopper":
            pool["kernel"] = Candidate(
                "kernel-fa3",
                "FlashAttention-3 instead of FA2",
                "overlap/profile",
                ("compute", "special", "latency"),
                Change(params={"kernel": "fa3"}),
                "warp-specialised ping-pong of softmax and matmul",
            )
        narrow = _faster_dtype(d, self.dtype)
        if narrow and self.pass_ == "fwd":
            pool["dtype"] = Candidate(
                f"dtype-{narrow}",
                f"{narrow} instead of {self.dtype}",
                "dtype",
                ("compute", "hbm", "l2"),
                Change(params={"dtype": narrow}),
                f"{d.peak_flops(narrow) / d.peak_flops(self.dtype):.3g}× the matrix peak and half "
                "the bytes of Q, K and V",
            )
        pool["compute"] = Candidate(
            "compute-x2",
            "2× tensor-core rate",
            "compute",
            ("compute",),
            Change(spec={_peak_path(d, self.dtype): "x2"}),
            f"a chip with twice the {self.dtype} matrix peak",
        )
        if d.compute.special is not None:
            pool["special"] = Candidate(
                "special-x2",
                "2× exp throughput",
                "compute",
                ("special", "compute", "latency"),
                Change(spec={"compute.special": "x2"}),
                "twice the special-function (exp) rate for the softmax",
            )
        pool["tile"] = Candidate(
            f"{onchip}-capacity-x2",
            f"2× {onchip} per SM",
            "tile/SRAM",
            ("hbm", "l2"),
            Change(spec={f"memory.{onchip}.capacity": "x2"}),
            "room for larger K/V tiles (the Q block is capped at 128 rows by the registers)",
        )
        for lvl in base.bytes:
            pool[lvl] = _level_x2(lvl, f"{lvl} traffic moves twice as fast")
        if l2_share < 1.0:
            pool["l2reuse"] = Candidate(
                "l2-reuse",
                "the whole L2 for K/V reuse",
                "overlap/profile",
                ("hbm",),
                Change(profile={"l2_usable_fraction": "1"}),
                f"the profile lets {l2_share:.2g} of the L2 hold shared K/V",
            )
        order = {
            "compute": ["overlap", "kernel", "dtype", "compute", "special"],
            "special": ["special", "overlap", "kernel", "dtype"],
            "latency": ["overlap", "kernel", "special", "compute", "dtype"],
            "hbm": ["hbm", "l2reuse", "dtype", "tile"],
            "l2": ["l2", "tile", "dtype"],
        }.get(base.bound, [base.bound, "tile", "dtype"])
        cands = [pool[k] for k in order if k in pool]
        rest = [pool[k] for k in ("compute", "hbm", "l2", "tile", "dtype") if k in pool]
        return _fill(cands, rest)


# ---- MoE all-to-all -----------------------------------------------------------------------------
@functools.lru_cache(maxsize=8)
def _moe_plan(
    ep: int, tokens: int, hidden: int, experts: int, topk: int, groups: int | None, routing: str,
    per_node: int, seed: int, dtype: str,
) -> Any:  # fmt: skip
    from hwsim.plan.moe import synthetic_dispatch_plan

    plan, _, _ = synthetic_dispatch_plan(
        ep, tokens, hidden, experts, topk, groups, routing, per_node, 0, seed, dispatch_dtype=dtype
    )
    return plan


@dataclass(frozen=True)
class MoeSubject:
    """One MoE dispatch or combine over a cluster, timed by :func:`simulate_alltoall` on the
    routing of :func:`hwsim.plan.moe.synthetic_dispatch_plan` (DeepEP's test distribution by
    default). ``tokens`` per rank; ``topk_groups`` = the node limit M."""

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
        per = c.devices_per_node_count
        ep = int(p["ep"])
        nodes = max(1, math.ceil(ep / per))
        topo = build_topology(c, nodes)
        plan = _moe_plan(
            ep, int(p["tokens"]), int(p["hidden"]), int(p["experts"]), int(p["topk"]),
            p["topk_groups"], str(p["routing"]), per, int(p["seed"]), str(p["dtype"]),
        )  # fmt: skip
        sms = p["comm_sms"]
        r = simulate_alltoall(
            topo, plan, str(p["kernel"]), str(p["phase"]), dtype=str(p["dtype"]),
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
                Change(params={"ep": self.ep // 2}),
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


def describe_bound(outcome: Outcome) -> str:
    return rname(outcome.bound)


# ---- rebuilding a subject from saved JSON --------------------------------------------------------
def device_key(name_or_display: str) -> str:
    """A device file stem from a stem, a path or a display name (``NVIDIA H100 SXM5 80GB``), as
    simulator JSON records it."""
    from hwsim.spec.load import list_devices

    stems = list_devices()
    if name_or_display in stems or name_or_display.endswith((".yaml", ".yml")):
        return name_or_display
    for stem in stems:
        if load_device(stem).name == name_or_display:
            return stem
    raise SpecError(
        f"unknown device {name_or_display!r} in the JSON (built-in: {', '.join(stems)})",
        key="device",
    )


def _need(data: dict[str, Any], keys: tuple[str, ...], what: str) -> None:
    missing = [k for k in keys if k not in data]
    if missing:
        raise SpecError(
            f"the JSON looks like {what} but lacks {', '.join(missing)}; run `hwsim explain "
            f"{what.split()[0].lower()} ...` with options instead",
            key=missing[0],
        )


def subject_from_json(data: Any) -> Any:
    """The subject a saved result describes: ``hwsim explain --json`` output (any kind),
    ``hwsim gemm --json``, ``hwsim attention --json``, ``hwsim moe --json`` or a decode step's
    JSON. Raises :class:`SpecError` naming what is missing."""
    from hwsim.report.explain_decode import DecodeSubject

    kinds: dict[str, Any] = {
        "gemm": GemmSubject,
        "attention": AttentionSubject,
        "moe": MoeSubject,
        "decode": DecodeSubject,
    }
    if not isinstance(data, dict):
        raise SpecError("expected a JSON object (a result printed with --json)")
    if "explain" in data and "params" in data:
        cls = kinds.get(str(data["explain"]))
        if cls is None:
            raise SpecError(f"unknown explain kind {data['explain']!r}", key="explain")
        return cls(**data["params"])
    if {"m", "n", "k"} <= set(data):
        _need(data, ("device", "dtype"), "GEMM result")
        return GemmSubject(
            device_key(str(data["device"])), int(data["m"]), int(data["n"]), int(data["k"]),
            str(data["dtype"]),
        )  # fmt: skip
    if "shape" in data and "kernel" in data:
        s = data["shape"]
        _need(data, ("device",), "attention result")
        _need(s, ("batch", "heads", "seqlen_q", "head_dim"), "attention result")
        return AttentionSubject(
            device=device_key(str(data["device"])),
            batch=int(s["batch"]),
            heads=int(s["heads"]),
            seqlen=int(s["seqlen_q"]),
            head_dim=int(s["head_dim"]),
            kv_heads=s.get("kv_heads"),
            seqlen_kv=s.get("seqlen_kv"),
            head_dim_v=s.get("head_dim_v"),
            causal=bool(s.get("causal", False)),
            dtype=str(s.get("dtype", "bf16")),
            kernel=str(data["kernel"]),
            pass_=str(s.get("pass", "fwd")),
        )
    if "cluster" in data and "ep" in data:
        args = {**data.get("args", {}), **data}
        if "tokens" not in args and "tokens_per_rank" in args:
            args["tokens"] = args["tokens_per_rank"]
        _need(args, ("tokens", "experts", "topk"), "MoE all-to-all result")
        return MoeSubject(
            cluster=str(args["cluster"]),
            ep=int(args["ep"]),
            tokens=int(args["tokens"]),
            hidden=int(args.get("hidden", 7168)),
            experts=int(args["experts"]),
            topk=int(args["topk"]),
            topk_groups=args.get("topk_groups"),
            phase=str(args.get("phase", "dispatch")),
            dtype=str(args.get("dtype", "fp8")),
            kernel=str(args.get("kernel", "normal")),
            routing=str(args.get("routing", "deepep")),
            seed=int(args.get("seed", 0)),
        )
    if "model" in data and "phase" in data and "layout" in data:
        from hwsim.report.explain_decode import model_key

        lay = data["layout"] if isinstance(data["layout"], dict) else {}
        return DecodeSubject(
            model=model_key(str(data["model"])),
            device=device_key(str(data["device"])),
            batch=int(data["batch"]),
            context=int(data["context"]),
            dtype=str(data.get("dtype", "bf16")),
            kv_dtype=str(data.get("kv_dtype", "bf16")),
            tp=int(lay.get("tp", 1)),
            ep=int(lay.get("ep", 1)),
            pp=int(lay.get("pp", 1)),
            dp=int(lay.get("dp", 1)),
            phase=str(data["phase"]),
        )
    raise SpecError(
        "cannot tell which run this JSON describes (expected the --json output of hwsim "
        "explain, gemm, attention, moe or a model step)"
    )
