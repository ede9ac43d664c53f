"""The engine loop of one serving replica, as vLLM, SGLang and TensorRT-LLM run it: continuous
(iteration-level) batching over a paged KV cache.

Every iteration the scheduler picks what runs, the step-time model
(:class:`hwsim.serve.steptime.StepTimeModel`) says how long it takes, and the results land when
the last pipeline stage finishes:

* **decode**: every running sequence gets the step's accepted tokens (``1`` without MTP, ``1 +
  a + … + a^d`` on average with ``d`` drafts at acceptance ``a``; progress is kept as a float);
* **chunked** (Sarathi-Serve; vLLM's default since v1): decodes first, then the rest of the
  token budget goes to prompts, partly prefilled ones first, then new ones in arrival order,
  each cut to what the budget leaves;
* **prefill-first** (vLLM's old default): while whole prompts that fit the budget are waiting,
  an iteration prefills only them; otherwise it decodes.

KV blocks (:class:`hwsim.serve.kvcache.BlockPool`): a prompt chunk takes the blocks of its
tokens, a decode step the blocks its sequences grow into. When a step cannot grow, unused cached
prefixes are evicted first, then the most recently admitted sequence is **preempted by
recompute** (its blocks freed, back to the front of the queue, its prompt and the tokens it had
generated prefilled again when it is readmitted), as vLLM does. New prompts are admitted only
while their first chunk's blocks are free.

A replica with ``pp`` pipeline stages keeps its batch in flight as micro-batches, one per stage,
as the step simulator plays a pipeline (:meth:`hwsim.serve.steptime.StepTimeModel.step_time`):
an iteration is one round through the stages.

Simulation cost grows with iterations: per iteration the work is a few numpy operations over
the running sequences plus one step-time lookup, never a loop over tokens.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import simpy

from hwsim.serve.kvcache import BlockPool
from hwsim.serve.ledger import Ledger
from hwsim.serve.steptime import StepTimeModel

Scheduler = Literal["chunked", "prefill-first"]
#: Most decode iterations played as one event (bounds the arrays of a run).
MAX_RUN = 4096
#: What a replica does: everything, or one side of a disaggregated deployment.
Role = Literal["both", "prefill", "decode"]


@dataclass(frozen=True)
class EngineConfig:
    """One replica's engine settings (counts; seconds)."""

    max_batch: int  #: sequences in flight (decoding + prefilling)
    token_budget: int  #: tokens per iteration (decode tokens + prompt chunk tokens)
    scheduler: Scheduler
    kv_blocks: int  #: blocks in the replica's pool
    block_tokens: int  #: tokens per block
    q_len: int = 1  #: tokens verified per sequence per decode step (1 + MTP drafts)
    accepted: float = 1.0  #: tokens a decode step yields per sequence on average
    overhead_s: float = 0.0  #: scheduler/CPU time per iteration before the device runs it
    prefix_caching: bool = True  #: reuse cached blocks of shared prefixes


@dataclass
class _Prefill:
    """A sequence whose prompt (or, after a preemption, prompt and generated tokens) is being
    computed."""

    rid: int
    need: int  #: tokens to compute (the cached prefix excluded)
    cached: int  #: prefix tokens found in the cache
    generated: float  #: tokens generated before a preemption (0 for a new request)
    done: int = 0
    blocks: int = 0


@dataclass
class _Running:
    """Decoding sequences as parallel arrays (first ``n`` entries live)."""

    cap: int
    n: int = 0
    rid: np.ndarray = field(init=False)
    kv: np.ndarray = field(init=False)  #: tokens in the cache, private part
    left: np.ndarray = field(init=False)  #: tokens still to generate
    gen: np.ndarray = field(init=False)  #: tokens generated (after the first)
    cached: np.ndarray = field(init=False)  #: shared prefix tokens
    admitted: np.ndarray = field(init=False)  #: admission order, for preemption

    def __post_init__(self) -> None:
        self.rid = np.zeros(self.cap, dtype=np.int64)
        self.admitted = np.zeros(self.cap, dtype=np.int64)
        self.cached = np.zeros(self.cap, dtype=np.int64)
        self.kv = np.zeros(self.cap)
        self.left = np.zeros(self.cap)
        self.gen = np.zeros(self.cap)

    def add(self, rid: int, kv: float, left: float, gen: float, cached: int, order: int) -> None:
        i = self.n
        self.rid[i], self.kv[i], self.left[i], self.gen[i] = rid, kv, left, gen
        self.cached[i], self.admitted[i] = cached, order
        self.n += 1

    def remove(self, i: int) -> None:
        """Drop entry ``i`` (the last entry takes its place)."""
        j = self.n - 1
        for a in (self.rid, self.kv, self.left, self.gen, self.cached, self.admitted):
            a[i] = a[j]
        self.n -= 1


class VirtualEngine:
    """One scheduler and its share of a replica (see the module docstring)."""

    def __init__(
        self,
        env: simpy.Environment,
        name: str,
        cfg: EngineConfig,
        model: StepTimeModel,
        ledger: Ledger,
        role: Role = "both",
        on_prefilled: Callable[[int, float], None] | None = None,
        macro: bool = True,
    ) -> None:
        self.env, self.name, self.cfg, self.model = env, name, cfg, model
        self.ledger, self.role, self.on_prefilled = ledger, role, on_prefilled
        self.pool = BlockPool(cfg.kv_blocks, cfg.block_tokens)
        self.waiting: deque[int] = deque()  #: requests not admitted, in arrival order
        self.resume: dict[int, float] = {}  #: preempted requests: tokens generated so far
        self.migrated: deque[tuple[int, float]] = deque()  #: (rid, KV tokens) to decode
        self.prefills: list[_Prefill] = []
        self.run = _Running(cfg.max_batch)
        self.order = 0
        self.wake: simpy.Event = env.event()
        self.busy = {"prefill": 0.0, "decode": 0.0, "mixed": 0.0}
        #: play runs of decode-only iterations as one event (see _decode_run)
        self.macro = macro
        env.process(self.loop())

    # ---- the outside world ---------------------------------------------------------------
    @property
    def outstanding(self) -> int:
        """Requests here that have not finished (the router's least-outstanding load)."""
        return len(self.waiting) + len(self.migrated) + len(self.prefills) + self.run.n

    def submit(self, rid: int) -> None:
        """A new request routed here."""
        self.waiting.append(rid)
        self._poke()

    def accept(self, rid: int, kv_tokens: float) -> None:
        """A request prefilled elsewhere whose KV cache has arrived (disaggregated decode)."""
        self.migrated.append((rid, kv_tokens))
        self._poke()

    def _poke(self) -> None:
        if not self.wake.triggered:
            self.wake.succeed()

    # ---- the loop --------------------------------------------------------------------------
    def loop(self) -> Generator[Any, Any, None]:
        while not self.ledger.lost:  # a watched run stops once its SLO is lost
            plan = self._schedule()
            if plan is None:  # nothing runnable: sleep until something arrives
                self.wake = self.env.event()
                yield self.wake
                continue
            b, kv, pieces = plan
            if b and not pieces and self.macro:
                yield from self._decode_run(b, kv)
                continue
            t = self.model.step_time(b, kv, [t for _, t in pieces])
            start = self.env.now
            yield self.env.timeout(t + self.cfg.overhead_s)
            kind = "mixed" if b and pieces else ("decode" if b else "prefill")
            self.busy[kind] += self.env.now - start
            out = self._complete(b, pieces)
            prompt = sum(t for _, t in pieces)
            self.ledger.iteration(
                self.name, start, self.env.now, b, prompt, self.pool.used, kind, out
            )

    def _decode_run(self, b: int, kv: float) -> Generator[Any, Any, None]:
        """Consecutive decode-only iterations, played as one event: nothing changes a decode
        batch until a sequence finishes, its blocks run out, or something arrives. Planned up
        to the first finish (and the blocks free now); an arrival cuts the run at the end of
        the iteration in progress. Equal to iterating one by one (a test holds it), at a cost
        per event, not per iteration."""
        r, a, q, bt = self.run, self.cfg.accepted, self.cfg.q_len, self.pool.block_tokens
        kvs = r.kv[:b].copy()
        k = int(np.ceil(float(r.left[:b].min()) / a - 1e-9))
        k = max(1, min(k, MAX_RUN))
        if k > 1:  # blocks for iterations 2..k beyond what this one took
            steps = np.arange(1, k)[:, None] * a
            have = np.ceil((kvs + q) / bt).sum()
            need = np.ceil((kvs[None, :] + steps + q) / bt).sum(axis=1) - have
            room = self.pool.free + self.pool.evictable()
            k = 1 + int(np.searchsorted(need, room, side="right"))
        extra = 0 if k == 1 else int(need[k - 2])
        ok = self.pool.take(extra)
        assert ok, "planned decode blocks were free"
        per_iter = float(self.run.cached[:b].sum()) + kvs.sum()
        times = self.model.decode_times(b, per_iter + np.arange(k) * b * a)
        cum = np.cumsum(times + self.cfg.overhead_s)
        start = self.env.now
        self.wake = self.env.event()
        yield self.env.any_of([self.env.timeout(float(cum[-1])), self.wake])
        done = k
        elapsed = self.env.now - start
        if elapsed < cum[-1]:  # cut short: finish the iteration in progress
            done = min(k, int(np.searchsorted(cum, elapsed, side="left")) + 1)
            yield self.env.timeout(max(0.0, float(cum[done - 1]) - elapsed))
            if done < k:
                self.pool.give(extra - (0 if done == 1 else int(need[done - 2])))
        self.busy["decode"] += self.env.now - start
        out = float(np.minimum(r.left[:b], done * a).sum())
        r.kv[:b] += done * a
        r.gen[:b] += done * a
        r.left[:b] -= done * a
        for i in sorted(np.nonzero(r.left[: r.n] <= 1e-9)[0].tolist(), reverse=True):
            self._finish(i, self.env.now)
        self.ledger.iteration(
            self.name, start, self.env.now, b, 0, self.pool.used, "decode", out, done
        )

    # ---- scheduling ------------------------------------------------------------------------
    def _schedule(self) -> tuple[int, float, list[tuple[_Prefill, int]]] | None:
        """What the next iteration runs: (decode sequences, their KV tokens, prompt pieces),
        or None when nothing can run."""
        cfg = self.cfg
        if self.role == "prefill":
            pieces = self._pick_prefills(cfg.token_budget, whole=cfg.scheduler == "prefill-first")
            if not pieces:
                self._unstick()
                return None
            return 0, 0.0, pieces
        self._admit_migrated()
        if self.role == "both" and cfg.scheduler == "prefill-first":
            pieces = self._pick_prefills(cfg.token_budget, whole=True)
            if pieces:
                return 0, 0.0, pieces
        self._grow_decode()
        b = self.run.n
        pieces = []
        if self.role == "both" and cfg.scheduler == "chunked":
            pieces = self._pick_prefills(cfg.token_budget - b * cfg.q_len)
        if not b and not pieces:
            if self.role != "decode":
                self._unstick()
            return None
        kv = float(self.run.kv[:b].sum() + self.run.cached[:b].sum())
        return b, kv, pieces

    def _unstick(self) -> None:
        """Nothing runs although prompts wait: partial prefills hold the blocks the rest
        need. Preempt the newest one (vLLM would too); the next schedule makes progress."""
        if self.prefills and not self.run.n:
            pf = self.prefills.pop()
            self._drop_prefill(pf)
            self.env.process(self._retry())

    def _retry(self) -> Generator[Any, Any, None]:
        yield self.env.timeout(0)
        self._poke()

    def _pid(self, rid: int) -> int:
        """The request's prefix group, or -1 (none) with prefix caching off."""
        return self.ledger.prefix_id(rid) if self.cfg.prefix_caching else -1

    def _need(self, rid: int, cached: int) -> int:
        return self.ledger.prompt(rid) + int(self.resume.get(rid, 0.0)) - cached

    def _pick_prefills(self, budget: int, whole: bool = False) -> list[tuple[_Prefill, int]]:
        """Prompt pieces for this iteration: started prefills first, then new admissions in
        arrival order; ``whole`` admits only prompts that finish in this iteration."""
        out: list[tuple[_Prefill, int]] = []
        for pf in self.prefills:
            if budget <= 0:
                break
            take = min(pf.need - pf.done, budget)
            blocks = self.pool.blocks_for(pf.done + take) - pf.blocks
            if not self.pool.take(blocks):
                break
            pf.blocks += blocks
            out.append((pf, take))
            budget -= take
        while self.waiting and budget > 0 and self.run.n + len(self.prefills) < self.cfg.max_batch:
            rid = self.waiting[0]
            pid = self._pid(rid)
            cached = self.pool.lookup(pid, self.ledger.prefix_tokens(rid))
            need = self._need(rid, cached)
            take = min(need, budget)
            blocks = self.pool.blocks_for(take)
            if (whole and take < need) or not self.pool.take(blocks):
                self.pool.release(pid)
                break
            self.waiting.popleft()
            pf = _Prefill(rid, need, cached, self.resume.pop(rid, 0.0), blocks=blocks)
            self.ledger.admitted(rid, self.env.now)
            self.prefills.append(pf)
            out.append((pf, take))
            budget -= take
        return out

    def _drop_prefill(self, pf: _Prefill) -> None:
        self.pool.give(pf.blocks)
        self.pool.release(self._pid(pf.rid))
        if pf.generated:
            self.resume[pf.rid] = pf.generated
        self.waiting.appendleft(pf.rid)
        self.ledger.preempted(pf.rid)

    def _admit_migrated(self) -> None:
        """Disaggregated decode: sequences whose KV arrived join while blocks and slots last."""
        while self.migrated and self.run.n < self.cfg.max_batch:
            rid, kv = self.migrated[0]
            if not self.pool.take(self.pool.blocks_for(kv)):
                break
            self.migrated.popleft()
            self.order += 1
            self.run.add(rid, kv, self.ledger.output(rid) - 1.0, 0.0, 0, self.order)

    def _grow_decode(self) -> None:
        """Take the blocks this step's decode tokens grow into; preempt (newest first) until
        they fit."""
        r, q, bt = self.run, self.cfg.q_len, self.pool.block_tokens
        while r.n:
            kv = r.kv[: r.n]
            grow = int((np.ceil((kv + q) / bt) - np.ceil(kv / bt)).sum())
            if self.pool.take(grow):
                return
            self._preempt(int(np.argmax(r.admitted[: r.n])))

    def _preempt(self, i: int) -> None:
        r = self.run
        rid = int(r.rid[i])
        self.pool.give(self.pool.blocks_for(r.kv[i]))
        self.pool.release(self._pid(rid))
        self.resume[rid] = float(r.gen[i]) + 1.0  # the first token and the decoded ones
        self.waiting.appendleft(rid)
        self.ledger.preempted(rid)
        r.remove(i)

    # ---- results ---------------------------------------------------------------------------
    def _complete(self, b: int, pieces: list[tuple[_Prefill, int]]) -> float:
        """Apply the iteration's results; returns the output tokens it produced."""
        now, r, a = self.env.now, self.run, self.cfg.accepted
        out = 0.0
        if b:
            out += float(np.minimum(r.left[:b], a).sum())
            r.kv[:b] += a
            r.gen[:b] += a
            r.left[:b] -= a
            for i in sorted(np.nonzero(r.left[: r.n] <= 1e-9)[0].tolist(), reverse=True):
                self._finish(i, now)
        for pf, take in pieces:
            pf.done += take
            if pf.done < pf.need:
                continue
            self.prefills.remove(pf)
            out += self._prefilled(pf, now)
        return out

    def _prefilled(self, pf: _Prefill, now: float) -> float:
        """A prompt (or a preempted sequence's recompute) is in the cache: its first token
        (new requests), then decode here, a hand-over to a decode replica, or done."""
        rid = pf.rid
        pid = self._pid(rid)
        first = pf.generated == 0
        if first:
            self.ledger.first_token(rid, now)
        kv = pf.cached + pf.done
        moved = self.pool.publish(pid, min(kv, self.ledger.prefix_tokens(rid)), pf.blocks)
        private = pf.blocks - moved
        gen = max(0.0, pf.generated - 1.0)
        left = self.ledger.output(rid) - 1.0 - gen
        if left <= 1e-9 or (self.role == "prefill" and self.on_prefilled is not None):
            self.pool.give(private)
            self.pool.release(pid)
            if left <= 1e-9:
                self.ledger.finished(rid, now)
            else:
                assert self.on_prefilled is not None
                self.on_prefilled(rid, float(kv))
        else:
            self.order += 1
            shared = pf.cached + moved * self.pool.block_tokens
            self.run.add(rid, kv - shared, left, gen, shared, self.order)
        return 1.0 if first else 0.0

    def _finish(self, i: int, now: float) -> None:
        r = self.run
        rid = int(r.rid[i])
        pid = self._pid(rid)
        private = self.pool.blocks_for(r.kv[i])
        moved = self.pool.publish(pid, r.kv[i] + r.cached[i], private)
        self.pool.give(private - moved)
        self.pool.release(pid)
        self.ledger.finished(rid, now)
        r.remove(i)
