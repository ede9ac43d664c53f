"""The mapper interface: registry, fallbacks with notes, refusals with numbers, MoE parts."""

from __future__ import annotations

import pytest

from hwsim.plan.attention import AttentionShape
from hwsim.sim.collectives import Fabric, collective_time
from hwsim.sim.mapper import _FACTORIES as FACTORIES
from hwsim.sim.mapper import (
    Attention,
    Collective,
    Elementwise,
    Gemm,
    Mapper,
    MoE,
    capacity_error,
    mapper_for,
    register_mapper,
)
from hwsim.spec.errors import SpecError
from hwsim.spec.load import load_device


@pytest.fixture(scope="module")
def h100():  # type: ignore[no-untyped-def]
    return load_device("h100-sxm")


def test_every_kind_maps_every_op() -> None:
    ops = [
        Gemm(4, 4096, 4096),
        Elementwise("rmsnorm", 4, 4096),
        Attention(AttentionShape(1, 8, 8, 1, 512, 128), "decode"),
        Collective("all-reduce", 1e6, 8),
        MoE(tokens=4, hidden=1024, intermediate=512, n_experts=16, top_k=2, ep=4),
    ]
    for name in ("h100-sxm", "groq-lpu", "cerebras-wse3", "sambanova-sn40l", "mi300x"):
        m = mapper_for(load_device(name))
        assert isinstance(m, Mapper)
        for op in ops:
            t = m.time(op)
            assert t.time_s > 0, (name, op)


def test_gpu_decode_gemm_is_weight_streaming(h100) -> None:  # type: ignore[no-untyped-def]
    # a 1-token GEMM reads the 8192x8192 bf16 weight once: time >= bytes / HBM peak, and within
    # 1.6x of it (simulated kernels reach 60-95% of HBM peak)
    t = mapper_for(h100).time(Gemm(1, 8192, 8192, "bf16"))
    floor = 8192 * 8192 * 2 / h100.level_bandwidth_Bps("hbm")
    assert floor * 0.999 <= t.time_s <= 1.6 * floor


def test_roofline_fallback_is_noted(h100) -> None:  # type: ignore[no-untyped-def]
    """Where no simulator times an op, the analytic roofline does, and the timing says so: the
    GPU mapper times a GEMM whose weights are streamed (GPU weights live in HBM) by the
    roofline, with a note, and the time is the mapper's own ``gemm_roofline`` (the same
    arithmetic, so exactly equal)."""
    op = Gemm(1, 1024, 1024, weights="streamed")
    m = mapper_for(h100)
    t = m.time(op)
    assert t.source == "roofline"
    assert any("streamed" in n and "roofline" in n for n in t.notes), t.notes
    assert t.time_s == m.gemm_roofline(op).time_s
    # the resident GEMM is simulated, not a fallback: no roofline note
    resident = m.time(Gemm(1, 1024, 1024))
    assert resident.source != "roofline"
    assert not any("roofline" in n for n in resident.notes), resident.notes


def test_registry_override(h100) -> None:  # type: ignore[no-untyped-def]
    saved = FACTORIES.get("gpu")

    class Fixed:
        def __init__(self, device, cluster):  # type: ignore[no-untyped-def]
            self.device = device

    try:
        register_mapper("gpu", Fixed)  # type: ignore[arg-type]
        assert isinstance(mapper_for(h100), Fixed)
    finally:
        assert saved is not None
        register_mapper("gpu", saved)


def test_capacity_error_names_numbers() -> None:
    m = mapper_for(load_device("groq-lpu"))
    err = capacity_error("KV cache", 12e9, m)
    # 12e9 / 230.7e6 = 52.02 -> 53 chips
    assert "needs ≥ 53 chips" in str(err) and "12 GB" in str(err)


def test_moe_touches_only_routed_experts() -> None:
    # 1 token, top-8 of 256 experts on one rank: exactly 8 experts' weights are read
    moe = MoE(tokens=1, hidden=7168, intermediate=2048, n_experts=256, top_k=8)
    assert moe.touched_experts == pytest.approx(8.0, rel=1e-9)
    ups = [p for p in moe.parts() if isinstance(p, Gemm) and p.name == "experts up"]
    assert ups[0].count == 8
    weights = sum(
        p.weight_bytes for p in moe.parts() if isinstance(p, Gemm) and "experts" in p.name
    )
    assert weights == pytest.approx(8 * moe.expert_weight_bytes, rel=1e-12)


def test_alpha_beta_collectives() -> None:
    f = Fabric(100e9, 1e-6, 50e9, 2e-6, 8)
    # all-reduce of 8 MB over 8: ring bytes 2*(7/8)*8e6/100e9 = 140 us; latency the tree's
    # 2*log2(8) = 6 steps of 1 us (fewer than the ring's 14)
    t = collective_time(Collective("all-reduce", 8e6, 8), f)
    assert t.time_s == pytest.approx(140e-6 + 6e-6, rel=1e-12)
    # 3 ranks: ring 2*2 = 4 steps, tree 2*2 = 4 steps
    t = collective_time(Collective("all-reduce", 0.0 + 3e6, 3), f)
    assert t.time_s == pytest.approx(2 * 2 / 3 * 3e6 / 100e9 + 4e-6, rel=1e-12)
    t = collective_time(Collective("all-to-all", 8e6, 8, "inter"), f)
    assert t.time_s == pytest.approx(7 / 8 * 8e6 / 50e9 + 2e-6, rel=1e-12)
    assert collective_time(Collective("p2p", 0, 2), f).time_s == 0


def test_bad_ops_are_spec_errors() -> None:
    with pytest.raises(SpecError):
        Gemm(0, 1, 1)
    with pytest.raises(SpecError):
        Elementwise("tanh", 1, 1)
    with pytest.raises(SpecError):
        Collective("broadcast", 1, 2)  # type: ignore[arg-type]
