"""``hwsim explain attention``: one attention call on a GPU, timed by
:func:`hwsim.sim.gpu_attention.simulate_attention`, with what-ifs chosen by the resource that
bounds it (softmax overlap, FA3, dtype, matrix and exp rates, on-chip tiles, bandwidth per level,
L2 reuse).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from hwsim.report.explain import (
    NO_CHANGE,
    Candidate,
    Change,
    Outcome,
    fmt_bytes,
)
from hwsim.report.explain_common import (
    _faster_dtype,
    _fill,
    _level_x2,
    _value,
    compute_x2,
    mapping_candidates,
)
from hwsim.spec.load import load_device
from hwsim.spec.overrides import apply_overrides


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
    detail: str = "cta"  #: "cta" (analytic inner loop) or "tile" (every tile step), as recorded
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

    def _gpu(self) -> bool:
        return load_device(self.device).kind == "gpu"

    def label(self) -> str:
        kv = f"/{self.kv_heads}" if self.kv_heads and self.kv_heads != self.heads else ""
        L = self.seqlen if not self.seqlen_kv else f"{self.seqlen}×{self.seqlen_kv}"
        mask = " causal" if self.causal else ""
        kernel = f"{self.kernel} " if self._gpu() else ""  # other kinds: the mapper, no kernel
        return (
            f"{kernel}attention {self.pass_} (batch {self.batch}, {self.heads}{kv} heads, "
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
        r: Any
        if d.kind != "gpu":  # the wafer, dataflow and LPU mappers time attention themselves
            from hwsim.sim.spatial_attention import simulate_attention_spatial

            ovs = [f"{k}={v}" for k, v in change.profile.items()]
            r = simulate_attention_spatial(d, shape, profile_overrides=ovs)
        else:
            prof = None
            if change.profile:
                prof = apply_overrides(load_attention_profile(kernel, d.arch), change.profile)
            r = simulate_attention(d, shape, kernel, detail=str(p["detail"]), profile=prof)
        names = [m.name for m in d.memory]
        levels = [lvl for lvl in names if lvl in r.bytes]
        busy = {res: u * r.time_s for res, u in r.utilization.items()}
        if d.kind != "gpu" and r.bound != "latency":
            # a spatial mapper's utilisation is of the whole chip, its bound of the op's own
            # region (a wafer runs one attention on a few thousand of its 900k cores), which
            # that resource keeps busy for the whole call
            busy[r.bound] = max(busy.get(r.bound, 0.0), r.time_s)
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
                "device_kind": d.kind,
                "notes": list(r.notes),
            },
            result=r.to_dict(),
        )

    def describe(self, base: Outcome) -> list[str]:
        x = base.details
        out = []
        if x.get("device_kind", "gpu") != "gpu":
            out.append(
                f"No GPU kernel here: the {x['device_kind']} mapper times the whole call from the "
                "device's own memories and rates (K and V stream from where they reside)."
            )
        elif x.get("block_q"):
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
        if d.kind != "gpu":
            return self._spatial_candidates(d, base)
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
        pool["compute"] = compute_x2(d, self.dtype)
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

    def _spatial_candidates(self, d: Any, base: Outcome) -> list[Candidate]:
        """Hardware levers for a non-GPU kind: its matrix peak, a narrower dtype, twice the
        bandwidth of every level the call moves bytes through."""
        pool: dict[str, Candidate] = {"compute": compute_x2(d, self.dtype)}
        narrow = _faster_dtype(d, self.dtype)
        if narrow:
            pool["dtype"] = Candidate(
                f"dtype-{narrow}",
                f"{narrow} instead of {self.dtype}",
                "dtype",
                ("compute", d.main_memory.name),
                Change(params={"dtype": narrow}),
                "half the bytes of Q, K and V and a faster matrix peak",
            )
        for lvl in base.bytes:
            pool[lvl] = _level_x2(lvl, f"{lvl} traffic moves twice as fast")
        software = mapping_candidates(d.kind)  # the mapper's own levers (per-operator latency)
        pool.update(software)
        first = [base.bound] if base.bound in pool else []
        if base.bound == "latency":
            first = list(software)
        cands = [pool[k] for k in first]
        return _fill(cands, list(pool.values()))
