"""Activation memory per pipeline stage: the count the memory check (and the refusal) uses
equals the peak the pipeline simulation reaches on every stage, for every schedule, and both
follow each schedule's in-flight micro-batches (``F`` the bytes a forward keeps, ``D`` the
bytes a deferred weight gradient keeps, stage ``s`` of ``p``, ``m`` micro-batches):

* GPipe holds every micro-batch on every stage: ``m·F`` (the last stage's LM-head logits of
  every micro-batch included);
* 1F1B holds ``p − s``: ``(p − s)·F``;
* ZB-H1 holds 1F1B's forwards and up to ``s`` pending weight gradients, one more for a moment
  after each input-gradient backward: ``(p − s − 1)·F + s·D + max(F, D)``;
* interleaved 1F1B and DualPipe: what their orders give per chunk.

A small GPT (12 layers, hidden 2048) on 16 H100s, PP4 DP4 with 8 micro-batches (DualPipe needs
``m ≥ 2p``). Tolerance: the count and the simulation add the same per-chunk bytes in different
orders, so they agree to a relative 1e-12 (float rounding)."""

from __future__ import annotations

from typing import Any

import pytest

from hwsim.plan.train_memory import inflight_chunks
from hwsim.spec.limits import LimitExceeded
from hwsim.train.memory import chunk_bytes, inflight_states, stage_memory, walk_states
from hwsim.train.request import TrainRequest
from hwsim.train.result import TrainResult
from hwsim.train.step import Prepared, play, prepare
from hwsim.validate.training import gpt_model

SMALL = gpt_model("gpt-test", 12, 2048, 16, 32768, "test config")
REL = 1e-12


def _step(
    schedule: str, recompute: str = "none", **kw: Any
) -> tuple[TrainRequest, Prepared, TrainResult]:
    req = TrainRequest(model=SMALL, cluster="dgx-h100", gpus=16, layout="tp=1,pp=4,dp=4",
                       seqlen=2048, global_batch=32, schedule=schedule, recompute=recompute,
                       timeline=True, **kw)  # fmt: skip
    p = prepare(req)
    return req, p, play(p)


@pytest.mark.parametrize("recompute", ["none", "full"])
@pytest.mark.parametrize("schedule", ["gpipe", "1f1b", "zb", "dualpipe", "interleaved"])
def test_counted_peak_equals_simulated_peak_per_stage(schedule: str, recompute: str) -> None:
    kw: dict[str, Any] = {"vpp": 3} if schedule == "interleaved" else {}
    req, p, r = _step(schedule, recompute, **kw)
    assert r.pipeline is not None and p.m == 8
    lay = p.layout
    for s in range(lay.pp):
        mem = stage_memory(p.model, lay, req, p.m, p.layers, 1.0, 0.0, s)
        counted = mem.activations + mem.logits
        assert counted == pytest.approx(r.pipeline.peak_activation_bytes[s], rel=REL), s
        assert counted > 0
    # the step's (and the refusal's) figure is the busiest stage's count
    totals = [stage_memory(p.model, lay, req, p.m, p.layers, 1.0, 0.0, s).total
              for s in range(lay.pp)]  # fmt: skip
    assert r.memory.total - r.memory.reserved == pytest.approx(max(totals), rel=REL)


@pytest.mark.parametrize("recompute", ["none", "selective", "full"])
def test_in_flight_bytes_per_schedule(recompute: str) -> None:
    """The closed forms of the module docstring, stage by stage."""
    for schedule in ("gpipe", "1f1b", "zb"):
        req, p, _ = _step(schedule, recompute)
        pp, m = p.layout.pp, p.m
        for s in range(pp):
            cb = chunk_bytes(p.model, p.layout, p.layers, s)
            f, d = cb.forward, cb.deferred
            want = {
                "gpipe": m * f,
                "1f1b": (pp - s) * f,
                "zb": (pp - s - 1) * f + s * d + max(f, d),
            }[schedule]
            mem = stage_memory(p.model, p.layout, req, m, p.layers, 1.0, 0.0, s)
            assert mem.activations + mem.logits == pytest.approx(want, rel=REL), (schedule, s)
            # logits: the last stage's LM head, per micro-batch it holds
            assert (mem.logits > 0) == (s == pp - 1)


def test_gpipe_last_stage_holds_every_micro_batchs_logits() -> None:
    """The audit's case: GPipe's last stage keeps the LM head's fp32 logits of all ``m``
    micro-batches until their backwards (not two)."""
    req, p, r = _step("gpipe")
    last = p.layout.pp - 1
    head = chunk_bytes(p.model, p.layout, p.layers, last).head
    mem = stage_memory(p.model, p.layout, req, p.m, p.layers, 1.0, 0.0, last)
    assert mem.logits == pytest.approx(p.m * head, rel=REL)
    assert r.memory.activations + r.memory.logits == pytest.approx(
        r.simulated_peak_activation_bytes, rel=REL
    )


def test_zb_pending_weight_gradients_hold_the_wgrad_operands() -> None:
    """A deferred weight gradient keeps both operands of its GEMMs (input and output
    gradient): without recompute about what a forward keeps (Qi et al.'s M_W ≈ M_B); with full
    recompute far more than the forward's layer input."""
    _, p, _ = _step("zb")
    cb = chunk_bytes(p.model, p.layout, p.layers, 1)
    assert 0.5 * cb.forward < cb.deferred < 1.5 * cb.forward
    _, p, _ = _step("zb", "full")
    cb = chunk_bytes(p.model, p.layout, p.layers, 1)
    assert cb.deferred > 4 * cb.forward


@pytest.mark.parametrize(
    ("schedule", "pp", "vpp", "m"),
    [("gpipe", 4, 1, 6), ("1f1b", 4, 1, 8), ("1f1b", 4, 1, 2), ("interleaved", 4, 2, 8),
     ("interleaved", 4, 3, 12), ("zb", 4, 1, 8), ("dualpipe", 4, 1, 8)],
)  # fmt: skip
def test_walk_counts_the_memory_arithmetics_chunks(
    schedule: str, pp: int, vpp: int, m: int
) -> None:
    """The walk's largest in-flight count (forwards plus pending weight gradients) is the
    chunk count of the memory arithmetic (``hwsim.plan.train_memory.inflight_chunks``)."""
    for rank in range(pp):
        _, states = inflight_states(schedule, pp, vpp, m, rank)
        most = max(sum(s) for s in states)
        assert most == inflight_chunks(schedule, pp, vpp, m, rank), rank


@pytest.mark.parametrize("schedule", ["gpipe", "1f1b", "zb"])
@pytest.mark.parametrize(("pp", "m"), [(4, 2), (4, 4), (4, 5), (4, 9), (4, 20), (6, 40)])
def test_short_walk_is_the_full_walk(schedule: str, pp: int, m: int) -> None:
    """GPipe's, 1F1B's and ZB-H1's states, taken without walking every micro-batch, are the
    full walk's."""
    for rank in range(pp):
        assert inflight_states(schedule, pp, 1, m, rank) == walk_states(schedule, pp, 1, m, rank)


def test_memory_count_is_bounded_work() -> None:
    """10^8 micro-batches: 1F1B's count is immediate, DualPipe's walk is refused by the
    pipeline's own event budget before it starts."""
    _, states = inflight_states("1f1b", 4, 1, 10**8, 0)
    assert states == ((4, 0),)
    with pytest.raises(LimitExceeded, match="--max-events raises it"):
        inflight_states("dualpipe", 4, 1, 10**8, 0)
