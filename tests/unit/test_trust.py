"""Error bars (hwsim.sim.trust, devices/profiles/trust.yaml) stay equal to the measurements they
cite: every calibrated value is its suite's MAPE, every leave-one-out value the transfer run's.

Tolerances: suite MAPEs are written to 0.01 percentage point (fa3, deepep) or 0.1 (gpu-ops
groups, as `hwsim validate` prints them), so a value may differ from a rerun by half of that;
leave-one-out values are the mean of two MAPEs printed to 1 %, so within 1 point."""

from __future__ import annotations

import numpy as np
import pytest

from hwsim.plan.workload import Gemm
from hwsim.sim.gpu_fixed import fixed_costs_of, load_fixed_costs
from hwsim.sim.gpu_gemm import simulate_gemm
from hwsim.sim.mapper import mapper_for
from hwsim.sim.trust import combine, elementwise_class, trust_for
from hwsim.spec.load import load_device
from hwsim.validate import deepep, fa3, fa3_bwd, gpu_ops, training
from hwsim.validate.gpu_ops_transfer import transfer_errors

ARCH = {"a100-sxm-80gb": "ampere", "mi210": "cdna2"}


@pytest.mark.slow
def test_calibrated_values_are_the_suites_mape() -> None:
    pairs = [
        (trust_for("attention", "hopper", "fa3", "fwd"), fa3.suite().mape, 0.005),
        (trust_for("attention", "hopper", "fa3", "bwd"), fa3_bwd.suite().mape, 0.005),
        (trust_for("alltoall", "h800-deepseek", "normal"), deepep.suite().mape, 0.005),
    ]
    groups = gpu_ops.suite().group_mape()
    for group, mape in groups.items():
        dev, op = group.split()
        family = "gemm" if op == "matmul" else op
        pairs.append((trust_for(family, ARCH[dev]), mape, 0.05))
    for t, mape, tol in pairs:
        assert t.calibrated
        assert t.expected_error_pct == pytest.approx(100 * mape, abs=tol), t.basis


@pytest.mark.slow
def test_training_values_are_the_suites_mape_per_architecture() -> None:
    """A training step's error bar is the training suite's MAPE over the rows of its GPU's
    architecture (groups end in the GPU: 'megatron h100', 'sc21 a100'); written to 0.01 point."""
    gpu_arch = {"h100": "hopper", "a100": "ampere"}
    errs: dict[str, list[float]] = {}
    for row in training.suite().rows:
        arch = gpu_arch[row.group.split()[-1]]
        errs.setdefault(arch, []).append(abs(row.predicted / row.measured - 1))
    for arch, e in errs.items():
        t = trust_for("train", arch)
        assert t.calibrated
        assert t.expected_error_pct == pytest.approx(100 * float(np.mean(e)), abs=0.005), arch
    assert not trust_for("train", "cdna3").calibrated  # no MI300X training table


@pytest.mark.slow
def test_uncalibrated_values_are_the_leave_one_out_mean() -> None:
    errs = transfer_errors(gpu_ops.load_table(), "inherit")
    by_op: dict[str, list[float]] = {}
    for (_device, op), rows in errs.items():
        by_op.setdefault(op, []).append(float(np.mean([abs(e) for e in rows])))
    for op, mapes in by_op.items():
        family = "gemm" if op == "matmul" else op
        t = trust_for(family, "hopper")  # no measured table: the transfer error
        assert not t.calibrated
        assert t.expected_error_pct == pytest.approx(100 * np.mean(mapes), abs=1.0), op


def test_lookup_rules() -> None:
    assert not trust_for("attention", "hopper", "fa2", "fwd").calibrated
    assert not trust_for("attention", "blackwell", "fa3", "fwd").calibrated
    assert trust_for("step", "groq-lpu").calibrated
    assert elementwise_class("input rmsnorm") == "layernorm"
    assert elementwise_class("experts act") == "gelu"
    a, b = trust_for("gemm", "ampere"), trust_for("gemm", "hopper")
    mix = combine([(a, 1.0), (b, 3.0)])
    # time-weighted, exact arithmetic on the two table values
    assert mix.expected_error_pct == pytest.approx(
        (a.expected_error_pct + 3 * b.expected_error_pct) / 4, rel=1e-12
    )
    assert not mix.calibrated


def test_gpu_mapper_adds_the_graph_gap_to_a_gemm() -> None:
    dev = load_device("h100-sxm")
    m = mapper_for(dev)
    t = m.time(Gemm(16, 4096, 4096, "bf16", name="up"))
    gap = load_fixed_costs(dev.arch).graph_kernel_gap.value
    # the kernel time plus exactly one gap (1e-12: the same float sum)
    assert t.time_s == pytest.approx(simulate_gemm(dev, 16, 4096, 4096, "bf16").kernel_s + gap,
                                     rel=1e-12)  # fmt: skip
    assert fixed_costs_of(t) == {"kernel gaps": pytest.approx(gap, rel=1e-3)}
    router = m.time(Gemm(16, 256, 7168, "bf16", name="router"))
    assert fixed_costs_of(router)["MoE routing"] > 3 * gap  # 3 kernels, each with a gap
