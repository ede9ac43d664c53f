"""Cross-kind sanity: llama-3.1-70b decode on the four kinds of device, and capacity planning
against hand arithmetic.

Deployments are the ones the vendors published: Cerebras ran 70B at 16 bit over four CS-3
(Hot Chips 2024), SambaNova on one 16-socket SambaRack at 16 bit, Groq at 8 bit on a few
hundred chips (here the smallest layout :func:`hwsim.serve.capacity.min_devices` finds), and
the GPU baseline is one 8×H100 node with TP8 at 16 bit (SambaNova's blog of 10 Sep 2024 lists
Artificial Analysis's per-user speeds: SambaNova 457, Cerebras 445, Groq 250 tok/s against
71 and 49 tok/s for the GPU clouds)."""

from __future__ import annotations

import math

import pytest

from hwsim.plan.layout import Layout
from hwsim.plan.model_step import StepSpec, memory_per_device
from hwsim.serve.capacity import min_devices
from hwsim.serve.step import simulate_step
from hwsim.sim.mapper import mapper_for
from hwsim.spec.load import load_device
from hwsim.spec.model import load_model_config

CONTEXT = 2048


@pytest.fixture(scope="module")
def llama70():  # type: ignore[no-untyped-def]
    return load_model_config("llama-3.1-70b")


def _decode(model, device: str, layout: Layout, batch: int, dtype: str):  # type: ignore[no-untyped-def]
    mapper = mapper_for(load_device(device))
    spec = StepSpec("decode", batch, CONTEXT, dtype, dtype)
    return simulate_step(model, mapper, layout, spec)


def _smallest_pipeline(model, device: str, batch: int, dtype: str) -> Layout:  # type: ignore[no-untyped-def]
    """Wafers hold whole layers in a pipeline: the fewest pp stages whose stage fits a wafer."""
    mapper = mapper_for(load_device(device))
    spec = StepSpec("decode", batch, CONTEXT, dtype, dtype)
    for pp in range(1, model.layers + 1):
        w, kv = memory_per_device(model, Layout(pp=pp), spec)
        if w + kv <= mapper.capacity_bytes:
            return Layout(pp=pp)
    raise AssertionError("no pipeline fits")


def test_batch1_decode_ranks_spatial_kinds_ahead_of_an_h100_node(llama70) -> None:  # type: ignore[no-untyped-def]
    gpu = _decode(llama70, "h100-sxm", Layout(tp=8), 1, "bf16")
    lpu_layout = min_devices(
        llama70, mapper_for(load_device("groq-lpu")), StepSpec("decode", 1, CONTEXT, "fp8", "fp8")
    ).layout
    others = {
        "groq-lpu": _decode(llama70, "groq-lpu", lpu_layout, 1, "fp8"),
        "cerebras-wse3": _decode(llama70, "cerebras-wse3", Layout(pp=4), 1, "bf16"),
        "sambanova-sn40l": _decode(llama70, "sambanova-sn40l", Layout(tp=16), 1, "bf16"),
    }
    for name, r in others.items():
        assert r.fits, name
        # the published ranking: every spatial kind beats the GPU node per user at batch 1
        assert r.time_per_token_s < gpu.time_per_token_s, (name, r.time_per_token_s)
    # and the SRAM-resident ones by a clear margin. Published: 250 (Groq) and 445 (Cerebras)
    # tok/s/user against 71 for the fastest GPU cloud (SambaNova blog, Sep 2024), but GPU clouds
    # serve at batch; a batch-1 node is faster than that (~120 tok/s here), so the check is
    # >= 1.5x, not the published 3.5-6x (the suite nongpu-decode holds each kind to its own speed)
    for name in ("groq-lpu", "cerebras-wse3"):
        assert others[name].time_per_token_s * 1.5 < gpu.time_per_token_s, name
    # the GPU node and the SN40L rack are both HBM-bound: within the weights / bandwidth floor
    floor = 141.1e9 / (8 * 3.35e12)
    assert floor < gpu.time_per_token_s < 3 * floor
    assert others["sambanova-sn40l"].time_per_token_s > 141.1e9 / 25.6e12


def test_large_batch_throughput_per_chip_favours_the_gpu_node(llama70) -> None:  # type: ignore[no-untyped-def]
    batch = 256
    gpu = _decode(llama70, "h100-sxm", Layout(tp=8), batch, "bf16")
    gpu_per_chip = gpu.tokens_per_s_total / gpu.devices
    lpu_plan = min_devices(
        llama70,
        mapper_for(load_device("groq-lpu")),
        StepSpec("decode", batch, CONTEXT, "fp8", "fp8"),
    )
    lpu = _decode(llama70, "groq-lpu", lpu_plan.layout, batch, "fp8")
    rdu = _decode(llama70, "sambanova-sn40l", Layout(tp=16), batch, "bf16")
    for r in (lpu, rdu):
        assert r.fits
        assert gpu_per_chip > r.tokens_per_s_total / r.devices, r.device
    # a WSE-3 is one "chip" with 57x an H100's silicon and a 23 kW system around it: compared
    # per watt of the datasheet power (the fair unit for a whole wafer), the GPU node wins too
    wse_layout = _smallest_pipeline(llama70, "cerebras-wse3", batch, "bf16")
    wse = _decode(llama70, "cerebras-wse3", wse_layout, batch, "bf16")
    assert wse.fits and wse_layout.pp > 4  # the batch's KV cache needs more wafers
    h100_w = load_device("h100-sxm").tdp_W
    wse_w = load_device("cerebras-wse3").tdp_W
    assert gpu_per_chip / h100_w > wse.tokens_per_s_total / (wse.devices * wse_w)


# ---- capacity planning against hand arithmetic ---------------------------------------------
#: Parameters (billions) of the Llama 3.1 configs, and KV bytes per token per 16-bit value
#: count: layers x kv_heads x (k + v) x head_dim. From the model cards: 8B 32 layers 8 KV heads,
#: 70B 80 layers 8 KV heads, 405B 126 layers 8 KV heads, head_dim 128.
LLAMA = {
    "llama-3.1-8b": (8.03, 32),
    "llama-3.1-70b": (70.55, 80),
    "llama-3.1-405b": (405.85, 126),
}
CAPACITY = {  # bytes one device holds (datasheets)
    "groq-lpu": 220 * 2**20,
    "cerebras-wse3": 900_000 * 48 * 2**10,
    "sambanova-sn40l": 64e9,
    "h100-sxm": 80e9,
}


@pytest.mark.parametrize("model_name", sorted(LLAMA))
@pytest.mark.parametrize("dtype", ["bf16", "fp8"])
def test_capacity_matches_hand_arithmetic(model_name: str, dtype: str) -> None:
    model = load_model_config(model_name)
    params_b, layers = LLAMA[model_name]
    # the config's parameter count agrees with the model card to 0.5%
    assert model.total_params() / 1e9 == pytest.approx(params_b, rel=0.005)
    nbytes = 2 if dtype == "bf16" else 1
    batch = 8
    kv = batch * (CONTEXT + 1) * layers * 8 * 2 * 128 * nbytes
    for device, cap in CAPACITY.items():
        mapper = mapper_for(load_device(device))
        assert mapper.capacity_bytes == pytest.approx(cap, rel=1e-6)
        plan = min_devices(model, mapper, StepSpec("decode", batch, CONTEXT, dtype, dtype))
        hand = math.ceil((model.total_params() * nbytes + kv) / cap)
        assert plan.lower_bound_devices == hand, (device, plan.reasoning)
        assert plan.kv_bytes_total == pytest.approx(kv, rel=1e-12)
        assert plan.devices >= hand and plan.memory_per_device_bytes <= cap
        assert any("at least" in line for line in plan.reasoning)


def test_capacity_hand_values() -> None:
    """A few answers worked out on paper (weights only dominate at batch 1)."""
    cases = {
        # 70.55e9 B + 0.34 GB KV (fp8) over 230.7 MB -> 307.3 -> 308 chips
        ("llama-3.1-70b", "groq-lpu", "fp8"): 308,
        # 141.1 GB + 0.67 GB over 44.24 GB -> 3.2 -> 4 wafers (Cerebras ran it on 4 CS-3)
        ("llama-3.1-70b", "cerebras-wse3", "bf16"): 4,
        # 811.7 GB + 1.06 GB over 44.24 GB -> 18.4 -> 19 wafers
        ("llama-3.1-405b", "cerebras-wse3", "bf16"): 19,
        # 811.7 GB + 1.06 GB over 64 GB -> 12.7 -> 13 sockets (a 16-socket rack holds it)
        ("llama-3.1-405b", "sambanova-sn40l", "bf16"): 13,
    }
    for (model_name, device, dtype), want in cases.items():
        plan = min_devices(
            load_model_config(model_name),
            mapper_for(load_device(device)),
            StepSpec("decode", 1, CONTEXT, dtype, dtype),
        )
        assert plan.lower_bound_devices == want, (model_name, device, dtype)


# ---- layout choice: one rule for every kind ------------------------------------------------
def test_tensor_parallelism_stays_in_one_fast_domain(llama70) -> None:  # type: ignore[no-untyped-def]
    from hwsim.serve.api import make_target
    from hwsim.serve.capacity import max_tp_for

    # the widest TP group follows a property of the mapper, not the device's name: a node of 8
    # GPUs, a 16-socket SambaRack, a wafer alone (wafers pipeline across systems), and every head
    # on the LPU, whose statically scheduled Dragonfly carries a layer over many nodes
    want = {"h100-sxm": 8, "sambanova-sn40l": 16, "cerebras-wse3": 1, "groq-lpu": 64}
    for name, tp in want.items():
        assert max_tp_for(llama70, make_target(name).mapper) == tp, name


def test_wafers_pipeline_across_systems(llama70) -> None:  # type: ignore[no-untyped-def]
    from hwsim.serve.api import make_target, serve_step
    from hwsim.serve.request import StepRequest

    wse = make_target("cerebras-wse3")
    auto = serve_step(StepRequest(llama70, wse, batch=1, context=CONTEXT))
    # Cerebras ran 70B over four CS-3 as a pipeline (Hot Chips 2024); TP over the same four
    # wafers would put two all-reduces per layer on the 1.2 Tb/s system I/O
    assert auto.layout.pp == 4 and auto.layout.tp == 1
    tp4 = serve_step(StepRequest(llama70, wse, batch=1, context=CONTEXT, layout="tp=4"))
    assert auto.time_per_token_s < tp4.time_per_token_s


def test_auto_device_counts() -> None:
    from hwsim.serve.capacity import auto_device_counts

    assert auto_device_counts(3, 16) == [3, 4, 8, 16]  # SN40L 70B: floor 3, a rack of 16
    assert auto_device_counts(2, 8) == [2, 4, 8]  # H100 70B: floor 2, a node of 8
    assert auto_device_counts(12, 8) == [12, 16]  # H100 405B: whole nodes past the floor
    assert auto_device_counts(4, 1) == [4]  # wafers: a domain of one adds nothing
    assert auto_device_counts(448, 8) == [448]  # Groq 70B: 56 whole nodes already


def test_auto_picks_the_fastest_candidate(llama70) -> None:  # type: ignore[no-untyped-def]
    from hwsim.plan.model_step import StepSpec
    from hwsim.serve.api import auto_candidates, make_target, serve_step
    from hwsim.serve.request import StepRequest

    rdu = make_target("sambanova-sn40l")
    auto = serve_step(StepRequest(llama70, rdu, batch=1, context=CONTEXT))
    # 3 sockets hold 70B but only as a 3-stage pipeline (tp must divide 64 heads), no faster
    # than one socket; auto takes the rack-scale TP16 that SambaNova serves it on
    assert auto.devices == 16 and auto.layout.tp == 16
    spec = StepSpec("decode", 1, CONTEXT, devices_per_node=16)
    cands = auto_candidates(llama70, rdu, spec)
    assert [lay.devices for lay in cands] == [3, 4, 8, 16]
    times = [serve_step(StepRequest(llama70, rdu, layout=lay)).time_per_token_s for lay in cands]
    assert auto.time_per_token_s == min(times)  # the same simulation, exactly
    assert times == sorted(times, reverse=True)  # HBM-bound: more sockets, less to read each
