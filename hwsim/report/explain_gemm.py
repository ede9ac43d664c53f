"""``hwsim explain gemm``: one GEMM on a GPU, timed by :func:`hwsim.sim.gpu_gemm.simulate_gemm`,
with what-ifs chosen by the resource that bounds it (dtype, matrix peak, shared-memory tiles,
HBM/L2 bandwidth, L2 capacity, host launch).

Spec changes go through :func:`hwsim.spec.overrides.apply_overrides`, so a what-if is exactly what
``hwsim whatif --set PATH=VALUE`` would run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hwsim.report.explain import (
    NO_CHANGE,
    Candidate,
    Change,
    Outcome,
    fmt_bytes,
    fmt_pct,
    fmt_time,
)
from hwsim.report.explain_common import _faster_dtype, _fill, _level_x2, compute_x2
from hwsim.spec.device import DTYPE_BYTES
from hwsim.spec.load import load_device
from hwsim.spec.overrides import apply_overrides


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
        pool["compute"] = compute_x2(d, self.dtype)
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
