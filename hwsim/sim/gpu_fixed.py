"""Fixed costs of a GPU serving step that do not shrink with the batch (SI units).

A decode step at batch 1 is a few hundred small kernels and dozens of small collectives; their
fixed costs, not bandwidth, set much of the per-user speed. Three are modelled, each from a
microbenchmark (``devices/profiles/fixed.yaml``), never from an end-to-end speed:

* ``graph_kernel_gap`` - the gap between kernels replayed from a CUDA graph, charged to every
  GEMM and streaming kernel (attention kernels already pay their profile's ``launch_overhead``);
* ``collective_floor`` - the smallest time of an intra-node all-reduce/all-gather/reduce-scatter
  (nccl-tests with CUDA graphs); the alpha-beta model applies above it;
* MoE routing - the top-k, permute and un-permute kernels between the router GEMM and the
  experts, each timed by the streaming-op simulator on its shape, plus its kernel gap.

The GPU mapper adds them and records each in the op's notes in one format
(:func:`fixed_note`); :func:`fixed_costs_of` reads them back, so ``hwsim explain decode`` can
say how much of a step they are.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from pydantic import Field

from hwsim.plan.workload import OpTiming
from hwsim.spec.profiles import load_profile
from hwsim.spec.quantity import Latency, Strict, WholeCount

FAMILY = "fixed"
#: kinds of fixed cost, in the order explain shows them
KINDS = ("kernel gaps", "collective floor", "MoE routing")
#: notes start with "kernel " so that step summaries, which list op caveats, leave them out
_NOTE = re.compile(r"^kernel fixed cost: (?P<kind>[^=]+) = (?P<us>[0-9.]+) us")


class FixedCosts(Strict):
    """Per-kernel and per-collective costs of one architecture's serving stack."""

    description: str
    graph_kernel_gap: Latency = Field(description="gap per kernel replayed from a CUDA graph")
    collective_floor: Latency = Field(
        description="smallest time of one intra-node all-reduce/all-gather/reduce-scatter"
    )
    moe_routing_kernels: WholeCount = Field(
        description="kernels between an MoE router GEMM and its experts (top-k, permute, ...)"
    )


def load_fixed_costs(arch: str) -> FixedCosts:
    """The fixed costs of ``arch`` (its entry, else ``default``)."""
    return load_profile(FAMILY, arch, FixedCosts)


def fixed_note(kind: str, seconds: float, why: str) -> str:
    """The note a timing carries for a fixed cost it includes (read by :func:`fixed_costs_of`)."""
    return f"kernel fixed cost: {kind} = {seconds * 1e6:.3f} us ({why})"


def fixed_costs_of(timing: OpTiming) -> dict[str, float]:
    """Seconds of each fixed-cost kind included in ``timing`` (from its notes)."""
    out: dict[str, float] = {}
    for n in timing.notes:
        m = _NOTE.match(n)
        if m:
            out[m["kind"]] = out.get(m["kind"], 0.0) + float(m["us"]) * 1e-6
    return out


def step_fixed_costs(ops: Iterable[tuple[OpTiming, float]]) -> dict[str, float]:
    """Fixed costs of a whole step per kind (seconds), from (timing, times per step) pairs."""
    total = dict.fromkeys(KINDS, 0.0)
    for timing, count in ops:
        for kind, s in fixed_costs_of(timing).items():
            total[kind] = total.get(kind, 0.0) + s * count
    return total
