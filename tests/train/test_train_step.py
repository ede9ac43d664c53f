"""Whole training steps: the invariants of issue 20 and the accounting that the rest relies
on (breakdown adds up, memory orders by ZeRO stage and recompute, cost independent of the
number of identical layers).

A small GPT (12 layers, hidden 2048) on DGX H100 keeps each step under a second; the
invariants hold for any model, so nothing here is tuned to it."""

from __future__ import annotations

import pytest

from hwsim.plan.train_layout import TrainLayout
from hwsim.train.request import TrainRequest
from hwsim.train.step import simulate_train
from hwsim.train.whatif import train_whatif
from hwsim.validate.training import gpt_model

SMALL = gpt_model("gpt-test", 12, 2048, 16, 32768, "test config")
DEEP = gpt_model("gpt-test-deep", 48, 2048, 16, 32768, "test config")
#: relative tolerance of identities that only round floating-point sums
SUM_TOL = 1e-9


def _req(**kw: object) -> TrainRequest:
    base: dict[str, object] = dict(model=SMALL, gpus=16, seqlen=2048, global_batch=32,
                                   cluster="dgx-h100", layout="tp=2,pp=2,dp=4")  # fmt: skip
    base.update(kw)
    return TrainRequest(**base)  # type: ignore[arg-type]


def test_json_has_the_issue_keys() -> None:
    d = simulate_train(_req()).to_dict()
    for k in ("step_time_s", "tokens_per_s_per_gpu", "model_tflops_per_gpu", "mfu",
              "memory_per_gpu_bytes", "bubble_fraction", "breakdown",
              "gpu_hours_per_trillion_tokens", "layout", "wall_s"):  # fmt: skip
        assert k in d, k
    assert d["layout"]["tp"] == 2 and d["layout"]["gpus"] == 16


@pytest.mark.parametrize("schedule", ["1f1b", "gpipe", "interleaved", "zb", "dualpipe"])
def test_breakdown_adds_up_to_the_step(schedule: str) -> None:
    kw: dict[str, object] = {"schedule": schedule}
    if schedule == "interleaved":
        kw["vpp"] = 2
    r = simulate_train(_req(**kw))
    assert sum(r.breakdown_s.values()) == pytest.approx(r.step_time_s, rel=SUM_TOL)
    assert 0 <= r.bubble_fraction < 1


@pytest.mark.parametrize(
    "kw",
    [{}, {"layout": "tp=8,pp=1,dp=2", "tp_overlap": True}, {"layout": "tp=1,pp=4,dp=4"},
     {"layout": "tp=2,pp=2,dp=2,cp=2", "seqlen": 8192, "global_batch": 16},
     {"recompute": "full"}, {"zero": 3, "layout": "tp=1,pp=1,dp=16"}],
)  # fmt: skip
def test_step_is_at_least_the_compute_roofline(kw: dict[str, object]) -> None:
    """No step beats its busiest GPU doing only its FLOPs at the dense peak."""
    r = simulate_train(_req(**kw))
    assert r.step_time_s >= r.busiest_flops / (r.peak_tflops * 1e12)
    assert r.busiest_flops > 0


def test_more_gpus_at_fixed_work_per_gpu_never_lower_throughput() -> None:
    """Data parallelism 2 → 4 → 8 → 16 replicas, each with the same micro-batches: aggregate
    tokens/s never falls (per-GPU throughput may, by the longer gradient reduction)."""
    last = 0.0
    for dp in (2, 4, 8, 16):
        r = simulate_train(_req(gpus=4 * dp, layout=f"tp=2,pp=2,dp={dp}", global_batch=8 * dp))
        total = r.tokens_per_s_per_gpu * r.gpus
        assert total >= last
        last = total


def test_zero_stages_order_memory() -> None:
    """ZeRO-3 < ZeRO-1 < ZeRO-0 in total, and each stage shards what it says: optimizer states
    from ZeRO-1, gradients from ZeRO-2, parameters from ZeRO-3 (16 replicas: 1/16 each)."""
    z = {s: simulate_train(_req(zero=s, layout="tp=1,pp=1,dp=16")).memory for s in (0, 1, 2, 3)}
    assert z[3].total < z[1].total < z[0].total
    assert z[1].optimizer == pytest.approx(z[0].optimizer / 16, rel=SUM_TOL)
    assert z[2].grads == pytest.approx(z[1].grads / 16, rel=SUM_TOL)
    assert z[3].params < z[2].params / 4  # 1/16 plus the two layers gathered at a time


def test_recompute_trades_time_for_memory() -> None:
    rs = [simulate_train(_req(recompute=x)) for x in ("none", "selective", "full")]
    assert rs[0].memory.activations > rs[1].memory.activations > rs[2].memory.activations
    assert rs[0].step_time_s < rs[1].step_time_s < rs[2].step_time_s
    assert rs[2].hfu > rs[2].mfu and rs[0].hfu == rs[0].mfu


CLUSTER_X2 = ["cluster.intra_node.bandwidth=x2", "cluster.nics.bandwidth=x2",
              "cluster.network.link_bandwidth=x2"]  # fmt: skip


@pytest.mark.parametrize(
    "kw",
    [{}, {"layout": "tp=8,pp=1,dp=2"}, {"layout": "tp=1,pp=4,dp=4", "schedule": "zb"},
     {"model": "mixtral-8x7b", "layout": "tp=1,pp=4,dp=4,ep=4", "seqlen": 1024,
      "global_batch": 16, "zero": 3, "recompute": "full"}],
)  # fmt: skip
def test_doubling_every_link_never_slows_a_step(kw: dict[str, object]) -> None:
    w = train_whatif(_req(**kw), CLUSTER_X2)
    assert w.modified.step_time_s <= w.baseline.step_time_s * (1 + SUM_TOL)


def test_cost_does_not_grow_with_identical_layers() -> None:
    """Four times the layers (same stages and micro-batches): the same pipeline tasks and
    the same distinct ops; the step is about four times longer."""
    a = simulate_train(_req(layout="tp=2,pp=2,dp=4", timeline=True))
    b = simulate_train(_req(model=DEEP, layout="tp=2,pp=2,dp=4", timeline=True))
    assert a.pipeline is not None and b.pipeline is not None
    assert len(a.pipeline.spans) == len(b.pipeline.spans)
    # 4x the layers of the same shape: 2.5-4x the time (the embedding, the 32k-vocabulary head
    # and the optimizer step do not grow; they are a third of the 12-layer step)
    assert 2.5 < b.step_time_s / a.step_time_s < 4.0


def test_dualpipe_overlaps_expert_all_to_all() -> None:
    """An MoE step with EP across nodes: DualPipe hides dispatch/combine under the other
    chunk's compute, so less EP communication is exposed than under 1F1B."""
    kw: dict[str, object] = dict(
        model="qwen3-30b-a3b",
        gpus=32,
        layout="tp=1,pp=2,dp=16,ep=16",
        seqlen=1024,
        global_batch=64,
        zero=1,
        recompute="full",
    )
    one = simulate_train(_req(**kw))
    dual = simulate_train(_req(**kw, schedule="dualpipe"))
    assert one.breakdown_s.get("ep_exposed", 0) > 0
    assert dual.breakdown_s.get("ep_exposed", 0) < one.breakdown_s["ep_exposed"]


def test_routing_imbalance_slows_experts() -> None:
    """Hot experts (Zipf 1.5) load the busiest rank ~3x the mean: its grouped GEMMs and the
    all-to-all's slowest rank take longer. (ZeRO-1: under ZeRO-3 this model's per-layer
    parameter gathers over InfiniBand hide every difference.)"""
    kw: dict[str, object] = dict(
        model="qwen3-30b-a3b",
        gpus=16,
        layout="tp=1,pp=1,dp=16,ep=16",
        seqlen=1024,
        global_batch=16,
        zero=1,
        recompute="full",
    )
    flat = simulate_train(_req(**kw, routing="uniform"))
    hot = simulate_train(_req(**kw, routing="zipf:1.5"))
    assert hot.step_time_s > flat.step_time_s


def test_layout_default_is_data_parallel() -> None:
    r = simulate_train(_req(layout=None, gpus=8, global_batch=8, zero=3))
    assert r.layout == TrainLayout(dp=8)


def test_measured_load_vector_routing() -> None:
    """A measured per-expert load (here: the first 8 of 128 experts take half the tokens)
    routes like its vector: slower than balanced; a vector of the wrong length is refused."""
    from hwsim.spec.errors import SpecError

    kw: dict[str, object] = dict(
        model="qwen3-30b-a3b",
        gpus=16,
        layout="tp=1,pp=1,dp=16,ep=16",
        seqlen=1024,
        global_batch=16,
        zero=1,
        recompute="full",
    )
    hot = ",".join(["15"] * 8 + ["1"] * 120)
    flat = simulate_train(_req(**kw, routing="load:" + ",".join(["1"] * 128)))
    skew = simulate_train(_req(**kw, routing="load:" + hot))
    assert skew.step_time_s > flat.step_time_s
    with pytest.raises(SpecError, match="one per expert"):
        simulate_train(_req(**kw, routing="load:1,2,3"))
