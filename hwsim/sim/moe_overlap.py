"""Dual micro-batch overlap of MoE communication with computation (DeepSeek-V3 style).

DeepSeek-V3 splits a batch into two micro-batches so that one micro-batch's dispatch and
combine run while the other computes (prefill: attention + MoE of batch A overlap the
all-to-all of batch B; decode does the same with attention split in two stages). Here a layer
is four operations per micro-batch - attention, dispatch, experts, combine - on two in-order
streams (compute: attention and experts; communication: dispatch and combine) with the data
dependencies attention → dispatch → experts → combine → next layer's attention.

While the communication stream is busy, the kernels on it hold ``comm_sm_fraction`` of the
SMs (DeepSeek-V3 reserves 20 of 132 H800 SMs), so compute that overlaps communication runs
proportionally slower: compute and communication are flows over one "SM" link of capacity 1
(work-seconds per second), the communication flow capped at its SM share, so the engine's
max-min rule gives compute the rest while they overlap and everything when they do not.

The result separates *exposed* communication (time the compute stream waits for the
network) from *hidden* communication (communication time overlapped by compute).
"""

from __future__ import annotations

from dataclasses import dataclass

import simpy

from hwsim.sim.engine import Engine


@dataclass(frozen=True)
class OverlapResult:
    """Timeline of ``layers`` MoE layers with two micro-batches (seconds)."""

    total_s: float
    compute_s: float  #: compute stream busy time
    comm_s: float  #: communication stream busy time
    exposed_comm_s: float  #: total minus compute-only time: communication not hidden
    hidden_comm_s: float  #: communication that ran under compute
    serial_s: float  #: the same work without overlap (one micro-batch after the other)
    spans: tuple[tuple[str, str, float, float], ...]  #: (stream, op, start, end)

    def to_dict(self) -> dict[str, float]:
        return {
            k: getattr(self, k)
            for k in (
                "total_s",
                "compute_s",
                "comm_s",
                "exposed_comm_s",
                "hidden_comm_s",
                "serial_s",
            )
        }


def dual_microbatch_overlap(
    attention_s: float,
    experts_s: float,
    dispatch_s: float,
    combine_s: float,
    *,
    layers: int = 1,
    comm_sm_fraction: float = 0.0,
) -> OverlapResult:
    """Overlap two micro-batches; every argument is the time of one operation of one
    micro-batch when it runs alone (compute times on all SMs)."""
    if not 0.0 <= comm_sm_fraction <= 0.5:
        raise ValueError(f"comm_sm_fraction must be in [0, 0.5], got {comm_sm_fraction}")
    eng = Engine()
    env = eng.env
    # compute progresses in "seconds of full-GPU work"; its link loses SMs while comm runs
    sm = eng.link("sm", 1.0, kind="sm")
    spans: list[tuple[str, str, float, float]] = []
    comm_q = env.event()
    comm_q.succeed()
    comp_q = env.event()
    comp_q.succeed()
    state: dict[str, simpy.Event] = {"comm": comm_q, "comp": comp_q}

    def run_comm(name: str, dur: float):
        start = env.now
        if comm_sm_fraction > 0 and dur > 0:
            # the communication kernel holds its SMs for its whole duration: a flow capped at
            # its SM share, so max-min leaves the rest to the compute flow
            yield eng.transfer(sm, comm_sm_fraction * dur, max_rate_Bps=comm_sm_fraction)
        elif dur > 0:
            yield eng.delay(dur)
        spans.append(("comm", name, start, env.now))

    def comp(name: str, work_s: float):
        start = env.now
        if work_s > 0:
            yield eng.transfer(sm, work_s)
        spans.append(("compute", name, start, env.now))

    def stage(prev: simpy.Event, after: list[simpy.Event], gen):
        yield prev  # in-order stream: the previous operation on it has finished
        yield from after  # data dependencies
        yield env.process(gen)

    ops: dict[tuple[str, int, int], simpy.Event] = {}

    def add(stream: str, kind: str, layer: int, mb: int, deps: list[simpy.Event], gen) -> None:
        p = env.process(stage(state[stream], deps, gen))
        state[stream] = p
        ops[(kind, layer, mb)] = p

    for layer in range(layers):
        for mb in (0, 1):
            dep = [ops[("combine", layer - 1, mb)]] if layer else []
            add(
                "comp", "attention", layer, mb, dep, comp(f"L{layer} attention mb{mb}", attention_s)
            )
        for mb in (0, 1):
            add(
                "comm",
                "dispatch",
                layer,
                mb,
                [ops[("attention", layer, mb)]],
                run_comm(f"L{layer} dispatch mb{mb}", dispatch_s),
            )
        for mb in (0, 1):
            add(
                "comp",
                "experts",
                layer,
                mb,
                [ops[("dispatch", layer, mb)]],
                comp(f"L{layer} experts mb{mb}", experts_s),
            )
        for mb in (0, 1):
            add(
                "comm",
                "combine",
                layer,
                mb,
                [ops[("experts", layer, mb)]],
                run_comm(f"L{layer} combine mb{mb}", combine_s),
            )
    total = eng.run()
    compute = sum(e - s for st, _, s, e in spans if st == "compute")
    comm = sum(e - s for st, _, s, e in spans if st == "comm")
    serial = 2 * layers * (attention_s + experts_s + dispatch_s + combine_s)
    exposed = max(0.0, total - compute)
    return OverlapResult(
        total_s=total,
        compute_s=compute,
        comm_s=comm,
        exposed_comm_s=exposed,
        hidden_comm_s=max(0.0, comm - exposed),
        serial_s=serial,
        spans=tuple(sorted(spans, key=lambda x: (x[2], x[0]))),
    )
