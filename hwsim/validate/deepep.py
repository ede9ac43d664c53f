"""Suite ``deepep-normal``: DeepEP normal dispatch/combine on H800, EP 8-64 (and its fit).

The table (``workloads/measured/deepep_normal_h800.csv``, provenance in the ``.md`` beside it)
is DeepEP's README: GB/s per rank with DeepEP's own byte counts. Each row is predicted by
:func:`hwsim.sim.alltoall.simulate_alltoall` on ``h800-deepseek`` with the table's setup (4096
tokens per rank, hidden 7168, 256 experts, top-8, ``abs(randn)+1`` scores with group-limited
top-k over ``min(nodes, 4)`` nodes, FP8 dispatch, BF16 combine, 24 SMs) and reported in the
row's metric (``rdma_gbps`` or ``nvlink_gbps``, exactly as the reference README defines them).

Four parameters are fitted on this table by :func:`fit` (``python -m hwsim.validate.deepep
--fit`` prints them; they live in ``devices/profiles/alltoall.yaml``): the achievable fraction
of NVLink and of InfiniBand payload bandwidth (cluster ``h800-deepseek``), the bytes one
communication SM copies per clock and the fixed per-launch cost (kernel ``deepep-normal``).
"""

from __future__ import annotations

import functools
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hwsim.plan.moe import DispatchPlan, synthetic_dispatch_plan
from hwsim.sim.alltoall import simulate_alltoall
from hwsim.sim.alltoall_profiles import (
    ClusterProfile,
    KernelProfile,
    load_cluster_profile,
    load_kernel_profile,
)
from hwsim.sim.topology import build_topology
from hwsim.spec.errors import SpecError
from hwsim.spec.quantity import Sourced
from hwsim.spec.units import Dim
from hwsim.validate.core import Row, SuiteResult, register, table_rows

TABLE = Path(__file__).resolve().parents[2] / "workloads" / "measured" / "deepep_normal_h800.csv"
CLUSTER = "h800-deepseek"
TOKENS, HIDDEN, EXPERTS, TOPK, TOPK_GROUPS = 4096, 7168, 256, 8, 4
TARGETS = {"mape": 0.06, "max": 0.10}


@dataclass(frozen=True)
class Measured:
    ep: int
    nodes: int
    gpus_per_node: int
    phase: str
    dtype: str
    bottleneck: str
    gbps: float

    @property
    def case(self) -> str:
        return f"EP{self.ep} {self.phase} {self.dtype} ({self.bottleneck})"


def load_table(path: Path = TABLE) -> list[Measured]:
    """Rows of the DeepEP table; SpecError on a malformed line."""
    out = []
    for i, r in table_rows(path):
        try:
            out.append(
                Measured(
                    int(r["ep"]),
                    int(r["nodes"]),
                    int(r["gpus_per_node"]),
                    r["phase"],
                    r["dtype"],
                    r["bottleneck"],
                    float(r["gbps"]),
                )
            )
        except (KeyError, ValueError, TypeError) as err:
            raise SpecError(f"malformed row: {err}", file=str(path), line=i) from None
    return out


@functools.lru_cache(maxsize=16)
def deepep_plan(ep: int, seed: int = 0) -> DispatchPlan:
    """DeepEP's test routing for ``ep`` ranks (cached: the fit evaluates each plan many times)."""
    plan, _, _ = synthetic_dispatch_plan(
        ep, TOKENS, HIDDEN, EXPERTS, TOPK, TOPK_GROUPS, "deepep", 8, 0, seed
    )
    return plan


def predict(
    m: Measured,
    kernel_profile: KernelProfile | None = None,
    cluster_profile: ClusterProfile | None = None,
) -> float:
    """The row's metric (GB/s) as simulated."""
    topo = build_topology(CLUSTER, m.nodes)
    res = simulate_alltoall(
        topo,
        deepep_plan(m.ep),
        "normal",
        m.phase,
        dtype=m.dtype,
        kernel_profile=kernel_profile,
        cluster_profile=cluster_profile,
    )
    return res.rdma_gbps if m.bottleneck == "rdma" else res.nvlink_gbps


@register("deepep-normal")
def suite() -> SuiteResult:
    rows = tuple(Row(m.case, m.gbps, predict(m), "GB/s", f"{m.bottleneck}") for m in load_table())
    return SuiteResult("deepep-normal", rows, dict(TARGETS))


# ---------------------------------------------------------------------------------- fitting
PARAMS = ("eff_nvlink", "eff_rdma", "copy_bytes_per_cycle_per_sm", "setup_s")


def _num(value: float, dim: Dim = Dim.COUNT) -> Sourced:
    return Sourced(value=value, dim=dim, text=repr(value), source="fit-deepep")


def profiles_with(x: np.ndarray) -> tuple[KernelProfile, ClusterProfile]:
    """Profiles with the four fitted parameters set to ``x`` (order: :data:`PARAMS`)."""
    kp = load_kernel_profile("normal")
    cp = load_cluster_profile(CLUSTER)
    eff = dict(cp.efficiency)
    eff["nvlink"], eff["rdma"] = _num(float(x[0])), _num(float(x[1]))
    cp2 = cp.model_copy(update={"efficiency": eff})
    kp2 = kp.model_copy(
        update={
            "copy_bytes_per_cycle_per_sm": _num(float(x[2])),
            "setup": _num(float(x[3]), Dim.TIME),
        }
    )
    return kp2, cp2


def fit() -> tuple[np.ndarray, list[tuple[str, float, float]]]:
    """Least-squares fit (relative errors) of :data:`PARAMS` on the table. Returns the values
    and (case, measured, predicted) per row."""
    from scipy.optimize import least_squares

    table = load_table()

    def residuals(x: np.ndarray) -> np.ndarray:
        kp, cp = profiles_with(x)
        return np.array([np.log(predict(m, kp, cp) / m.gbps) for m in table])

    x0 = np.array([0.9, 0.9, 8.0, 30e-6])
    lo = np.array([0.5, 0.5, 1.0, 0.0])
    hi = np.array([1.0, 1.0, 64.0, 300e-6])
    sol = least_squares(
        residuals, x0, bounds=(lo, hi), x_scale=np.array([0.1, 0.1, 2, 2e-5]), diff_step=1e-3
    )
    kp, cp = profiles_with(sol.x)
    rows = [(m.case, m.gbps, predict(m, kp, cp)) for m in table]
    return sol.x, rows


def main(argv: list[str]) -> int:
    if "--fit" not in argv:
        res = suite()
        for r in res.rows:
            print(
                f"{r.case:36s} measured {r.measured:7.1f} predicted {r.predicted:7.1f} "
                f"{r.error:+.1%}"
            )
        print(f"MAPE {res.mape:.2%}  max {res.max_error:.2%}")
        return 0
    x, rows = fit()
    for name, v in zip(PARAMS, x, strict=True):
        print(f"{name} = {v:.6g}")
    errs = [abs(p / m - 1) for _, m, p in rows]
    for case, m, p in rows:
        print(f"{case:36s} measured {m:7.1f} predicted {p:7.2f} {p / m - 1:+.2%}")
    print(f"MAPE {np.mean(errs):.2%}  max {max(errs):.2%}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
