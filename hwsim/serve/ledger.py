"""What happened in a serving run, as it happens: one row per request (arrival, admission,
first token, finish, preemptions, or the reason it was refused) and one row per engine
iteration (when, which replica, batch, prompt tokens, KV blocks in use, tokens produced).
Engines and the cluster write it; :mod:`hwsim.serve.metrics` turns it into a frozen result.
Times are seconds of simulated time; ``nan`` marks what did not happen."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from hwsim.serve.watch import SloWatch

NAN = math.nan


@dataclass
class Ledger:
    """The growing record of one run (see the module docstring)."""

    arrival: list[float] = field(default_factory=list)
    prompt_tokens: list[int] = field(default_factory=list)
    output_tokens: list[int] = field(default_factory=list)
    prefix_ids: list[int] = field(default_factory=list)
    prefix_lens: list[int] = field(default_factory=list)
    admit: list[float] = field(default_factory=list)
    first: list[float] = field(default_factory=list)
    finish: list[float] = field(default_factory=list)
    preemptions: list[int] = field(default_factory=list)
    replica: list[int] = field(default_factory=list)
    rejected: dict[int, str] = field(default_factory=dict)
    #: per iteration, or run of identical decode iterations: (replica name, start, end,
    #: decode batch, prompt tokens, KV blocks used, kind, output tokens, iterations)
    iterations: list[tuple[str, float, float, int, int, int, str, float, int]] = field(
        default_factory=list
    )
    #: KV transfers of a disaggregated run: (request, start, end, bytes)
    transfers: list[tuple[int, float, float, float]] = field(default_factory=list)
    on_finish: Callable[[int, float], None] | None = None
    #: stops the run once its SLO is certainly lost (a search's runs); engines check ``lost``
    watch: SloWatch | None = None

    # ---- requests --------------------------------------------------------------------------
    def add(self, arrival: float, prompt: int, output: int, prefix_id: int, prefix: int) -> int:
        """A request that arrived; returns its id."""
        self.arrival.append(arrival)
        self.prompt_tokens.append(int(prompt))
        self.output_tokens.append(int(output))
        self.prefix_ids.append(int(prefix_id))
        self.prefix_lens.append(int(prefix))
        for col in (self.admit, self.first, self.finish):
            col.append(NAN)
        self.preemptions.append(0)
        self.replica.append(-1)
        return len(self.arrival) - 1

    def prompt(self, rid: int) -> int:
        return self.prompt_tokens[rid]

    def output(self, rid: int) -> int:
        return self.output_tokens[rid]

    def prefix_id(self, rid: int) -> int:
        return self.prefix_ids[rid]

    def prefix_tokens(self, rid: int) -> int:
        return self.prefix_lens[rid]

    def admitted(self, rid: int, t: float) -> None:
        if math.isnan(self.admit[rid]):
            self.admit[rid] = t

    def first_token(self, rid: int, t: float) -> None:
        self.first[rid] = t
        if self.watch is not None:
            self.watch.first(rid, t - self.arrival[rid])

    @property
    def lost(self) -> str:
        """Why the run's SLO can no longer be met ('' while it can, or when not watched)."""
        return self.watch.lost if self.watch is not None else ""

    def finished(self, rid: int, t: float) -> None:
        self.finish[rid] = t
        if self.watch is not None and self.output_tokens[rid] > 1:
            self.watch.finished(rid, (t - self.first[rid]) / (self.output_tokens[rid] - 1))
        if self.on_finish is not None:
            self.on_finish(rid, t)

    def preempted(self, rid: int) -> None:
        self.preemptions[rid] += 1

    def reject(self, rid: int, reason: str, t: float) -> None:
        """A request the deployment can never serve (it is counted, with the reason)."""
        self.rejected[rid] = reason
        if self.on_finish is not None:
            self.on_finish(rid, t)

    # ---- iterations ------------------------------------------------------------------------
    def iteration(
        self,
        replica: str,
        start: float,
        end: float,
        batch: int,
        prompt_tokens: int,
        kv_blocks: int,
        kind: str,
        tokens_out: float,
        count: int = 1,
    ) -> None:
        self.iterations.append(
            (replica, start, end, batch, prompt_tokens, kv_blocks, kind, tokens_out, count)
        )

    # ---- arrays ------------------------------------------------------------------------------
    def arrays(self) -> dict[str, np.ndarray]:
        """The request columns as numpy arrays."""
        return {
            "arrival_s": np.asarray(self.arrival, dtype=float),
            "prompt_tokens": np.asarray(self.prompt_tokens, dtype=np.int64),
            "output_tokens": np.asarray(self.output_tokens, dtype=np.int64),
            "admit_s": np.asarray(self.admit, dtype=float),
            "first_s": np.asarray(self.first, dtype=float),
            "finish_s": np.asarray(self.finish, dtype=float),
            "preemptions": np.asarray(self.preemptions, dtype=np.int64),
            "replica": np.asarray(self.replica, dtype=np.int64),
        }
