"""The step-time model of a serving replica: how long one engine iteration takes, from the step
simulator, cheap enough to ask tens of thousands of times.

An iteration of a continuous-batching engine runs ``b`` decode sequences (``q = 1 + mtp``
tokens each, their KV caches holding ``kv`` tokens in all) and prompt chunks of lengths
``pieces`` (chunked prefill mixed with decode, or whole prompts in a prefill-only iteration).
The step simulator (:func:`hwsim.serve.step.simulate_step`, through
:func:`hwsim.plan.model_step.build_step` and the device's mapper) plays one pipeline stage as a
chain of ops; with one micro-batch the stage time is the sum of its op times, and every op of
the graph says what it scales with (:data:`hwsim.plan.step_types.Part`). So the model splits
each stage's time into parts and evaluates each on its own grid, with the step simulator's own
op timings:

* ``tokens``: projections, FFN/MoE, norms and collectives, a function of the tokens one rank
  processes, ``M = b·q + Σ pieces`` (per DP rank). Exact at every grid value: the engine pads
  an iteration's tokens up to the grid, as CUDA-graph capture sizes and GEMM tiles do
  (decode batches to 1, 2, 4, 8, multiples of 8 to 64, of 16 to 256, of 32 to 1024, then
  of 64, as vLLM's capture sizes grow coarser; mixed iterations to multiples of ``quantum``
  tokens). GEMM time is a staircase in ``M`` (tile and wave quantisation), which
  no interpolation between sparse points could follow within a few percent; padding makes the
  model exact there instead.
* ``decode``: attention over the KV caches (MLA's latent attention included) at the padded
  batch, whose slots share the real sequences' KV bytes (mean context ``c = kv / b_pad``):
  exact in the batch (attention has its own wave staircase in the number of sequences, around
  multiples of the SM count), linear in the context between powers of two (attention reads
  ``b × c`` KV bytes, so its time is close to affine in ``c``).
* ``chunk``: a prompt piece's causal attention over itself, per piece, linear in the piece
  length between grid lengths about 1.5× apart (its FLOPs grow as ``l²``, so the chord
  overestimates the part by under 4%; the part is a few percent of a chunk's time).
* ``batch``: GEMMs over the decode tokens only (MLA's absorbed per-head products), and the
  head (final norm, LM head) and MTP modules: exact at the padded batch, like ``tokens``.

Interpolation is linear (never above the larger neighbour, never below the smaller), so more
bandwidth or compute never makes a modelled iteration slower when the simulator does not, and
step time stays monotone in every argument. ``tests/sim/test_steptime.py`` holds the model to
the simulator: exact at grid points, within 2% off the grid.

Values are computed on first use and kept on disk (one JSON file per replica configuration,
keyed by everything they depend on: model, device, cluster, layout, dtypes, MTP depth, grid and
the code of the simulators), so a second run starts warm.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hwsim.plan.model_step import StepSpec, build_step, memory_per_device
from hwsim.plan.step_types import StepGraph
from hwsim.spec.errors import SpecError
from hwsim.spec.fingerprint import code_version

if TYPE_CHECKING:
    from hwsim.plan.layout import Layout
    from hwsim.sim.mapper import Mapper
    from hwsim.spec.model import ModelConfig

#: Code whose change invalidates a cached model.
CODE_PATHS = (
    "hwsim/plan",
    "hwsim/roofline",
    "hwsim/sim",
    "hwsim/spec",
    "hwsim/serve/steptime.py",
    "devices/profiles",
    "devices/clusters",
)
#: Decode batch sizes that are their own grid points (CUDA-graph capture sizes).
SMALL_BATCHES = (1, 2, 4, 8)
#: Padded batch sizes above 8: (up to, step), coarser as batches grow (vLLM captures multiples
#: of 8, then of 16; the relative padding stays under 12%).
BATCH_STEPS = ((64, 8), (256, 16), (1024, 32), (1 << 30, 64))
#: Default token quantum of mixed iterations (a GEMM M tile; TensorRT-LLM's KV block).
QUANTUM = 64
#: Context grid: powers of two from here up to the model's maximum context.
MIN_CONTEXT = 16
#: Prompt-piece grid (tokens; capped at the token budget).
PIECES = (16, 32, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096, 6144,
          8192, 12288, 16384, 24576, 32768)  # fmt: skip


def default_cache_dir() -> Path:
    """Where step-time models are kept between runs (``--step-cache`` overrides)."""
    return Path.home() / ".cache" / "hwsim" / "steptime"


def _pad(value: int, grid: Sequence[int]) -> int:
    """The smallest grid value ≥ ``value`` (the largest if none)."""
    i = bisect.bisect_left(grid, value)
    return grid[min(i, len(grid) - 1)]


class StepTimeModel:
    """The iteration time of one replica (see the module docstring). ``max_batch`` decode
    sequences and ``token_budget`` tokens per iteration bound the grids; ``max_context`` the
    context grid. Times are seconds; token counts are for the whole replica."""

    def __init__(
        self,
        model: ModelConfig,
        mapper: Mapper,
        layout: Layout,
        *,
        dtype: str,
        kv_dtype: str,
        mtp: int = 0,
        max_batch: int,
        token_budget: int,
        max_context: int,
        resident_bytes: float | None = None,
        quantum: int = QUANTUM,
        cache_dir: Path | None = None,
        fingerprint: str = "",
    ) -> None:
        if layout.pp < 1 or max_batch < 1 or token_budget < 1 or max_context < 1:
            raise SpecError("a step-time model needs a positive batch, budget and context")
        self.model, self.layout = model, layout
        self.dtype, self.kv_dtype, self.mtp, self.q = dtype, kv_dtype, mtp, 1 + mtp
        self.dp = layout.dp
        self.per_node = mapper.fabric.devices_per_node
        if resident_bytes is None:
            w, kv = memory_per_device(model, layout, self._spec(1, max_context, 0))
            resident_bytes = w + kv
        self.mapper = mapper.for_resident(resident_bytes)
        self.quantum = quantum
        rank_batch = math.ceil(max_batch / self.dp)
        self.batch_grid = self._batch_grid(rank_batch)
        top = self.batch_grid[-1] * self.q + math.ceil(token_budget / self.dp)
        self.token_grid = sorted(
            {b * self.q for b in self.batch_grid}
            | set(range(quantum, math.ceil(top / quantum) * quantum + 1, quantum))
        )
        self.context_grid = self._pow2_grid(MIN_CONTEXT, max_context)
        #: prompt pieces about 1.5x apart up to the budget (a piece's own attention is a few
        #: percent of its time; the chord over l² between neighbours overestimates it by <4%)
        top_piece = math.ceil(token_budget / self.dp)
        self.piece_grid = sorted({p for p in PIECES if p < top_piece} | {top_piece})
        self._memo: dict[tuple[Any, ...], float] = {}
        # stages with the same layer groups take the same time: time one of each kind
        g = build_step(model, layout, self._spec(1, 1, 0))
        kinds: dict[tuple[Any, ...], int] = {}
        self.stage_rep = [
            kinds.setdefault(tuple((lg.name, lg.repeat) for lg in st), s)
            for s, st in enumerate(g.stages)
        ]
        self.rep_stages = sorted(set(self.stage_rep))
        self._dirty = False
        self._path: Path | None = None
        if cache_dir is not None:
            key = hashlib.sha256(
                json.dumps(
                    [
                        fingerprint,
                        model.model_dump_json(exclude={"citations", "sources", "description"}),
                        mapper.device.model_dump_json(),
                        str(mapper.cluster.model_dump_json() if mapper.cluster else None),
                        str(layout),
                        dtype,
                        kv_dtype,
                        mtp,
                        quantum,
                        resident_bytes,
                        code_version(CODE_PATHS),
                    ]
                ).encode()
            ).hexdigest()[:24]
            self._path = cache_dir / f"{key}.json"
            self._load()

    # ---- grids ---------------------------------------------------------------------------
    @staticmethod
    def _batch_grid(top: int) -> list[int]:
        grid = {b for b in SMALL_BATCHES if b < top}
        lo = SMALL_BATCHES[-1]
        for hi, step in BATCH_STEPS:
            grid |= set(range(lo + step, min(hi, top - 1) + 1, step))
            lo = hi
        return sorted({*grid, top})

    @staticmethod
    def _pow2_grid(lo: int, hi: int) -> list[int]:
        grid = [lo]
        while grid[-1] < hi:
            grid.append(min(hi, grid[-1] * 2))
        return grid

    @property
    def points(self) -> int:
        """Grid values computed so far (each a few op simulations, or a cache hit)."""
        return len(self._memo)

    # ---- the model -----------------------------------------------------------------------
    def stage_times(self, batch: int, kv_tokens: float, pieces: Sequence[int] = ()) -> list[float]:
        """Seconds each pipeline stage spends on one iteration: ``batch`` decode sequences
        with ``kv_tokens`` cached in all, and prompt pieces of ``pieces`` tokens. Stages with
        the same layers are timed once (a deep pipeline has a first, a middle and a last)."""
        b = -(-batch // self.dp)
        chunk = -(-sum(pieces) // self.dp)
        if b == 0 and chunk == 0:
            return [0.0] * self.layout.pp
        b_pad = _pad(b, self.batch_grid) if b else 0
        m = _pad(b_pad * self.q + chunk, self.token_grid)
        ctx = kv_tokens / self.dp / b_pad if b_pad else 0.0  # the real sequences' KV bytes
        last = self.layout.pp - 1
        times: dict[int, float] = {}
        for s in self.rep_stages:
            t = self._value(("tokens", s, m))
            if b_pad:
                t += self._decode_one(s, b_pad, ctx) + self._value(("batch", s, b_pad))
            for p in pieces:
                t += self._piece(s, p) / self.dp
            if s == last:
                t += self._value(("head", s, b_pad, 1 if chunk else 0))
            times[s] = t
        return [times[self.stage_rep[s]] for s in range(self.layout.pp)]

    def step_time(self, batch: int, kv_tokens: float, pieces: Sequence[int] = ()) -> float:
        """Seconds of one engine iteration (every decode sequence gets its tokens, the pieces
        are prefilled). One stage: the stage time. A pipeline of ``P`` stages runs the batch
        as ``m = min(P, batch)`` micro-batches, as the step simulator plays it
        (:func:`hwsim.serve.step.pipeline_times`): a round of ``max(m, P)`` stage times of one
        micro-batch, or ``P + m - 1`` for a prefill-only iteration (the first token waits for
        the prompt to pass every stage)."""
        P = self.layout.pp
        if P == 1:
            return sum(self.stage_times(batch, kv_tokens, pieces))
        m = min(P, batch) if batch else 1
        mb_pieces = [-(-p // m) for p in pieces]
        stage = max(self.stage_times(-(-batch // m), kv_tokens / m, mb_pieces))
        return (max(m, P) if batch else P + m - 1) * stage

    def decode_times(self, batch: int, kv_tokens: np.ndarray) -> np.ndarray:
        """Seconds of consecutive decode-only iterations of ``batch`` sequences whose caches
        hold ``kv_tokens[i]`` tokens at iteration ``i``: what :meth:`step_time` gives for
        each, in one vectorised call."""
        P = self.layout.pp
        m = min(P, batch)
        mb = -(-batch // m)  # sequences of one micro-batch
        b = -(-mb // self.dp)
        b_pad = _pad(b, self.batch_grid)
        tok = _pad(b_pad * self.q, self.token_grid)
        ctx = np.asarray(kv_tokens, dtype=float) / m / self.dp / b_pad
        stages = []
        for s in self.rep_stages:
            t = self._value(("tokens", s, tok)) + self._value(("batch", s, b_pad))
            if s == P - 1:
                t += self._value(("head", s, b_pad, 0))
            stages.append(self._decode(s, b_pad, ctx) + t)
        per = stages[0] if P == 1 else np.max(np.vstack(stages), axis=0)
        return per * (max(m, P) if P > 1 else 1)

    def _decode_one(self, stage: int, b: int, ctx: float) -> float:
        """:meth:`_decode` at one context, without numpy (the engine asks it every iteration)."""
        grid = self.context_grid
        i = bisect.bisect_left(grid, ctx)
        if i == 0:
            return self._value(("decode", stage, b, grid[0]))
        if i >= len(grid):
            return self._value(("decode", stage, b, grid[-1]))
        x0, x1 = grid[i - 1], grid[i]
        y0, y1 = self._value(("decode", stage, b, x0)), self._value(("decode", stage, b, x1))
        return y0 + (y1 - y0) * (ctx - x0) / (x1 - x0)

    def _decode(self, stage: int, b: int, ctx: np.ndarray) -> np.ndarray:
        """The decode part of ``b`` sequences (a grid batch) at mean contexts ``ctx``: linear
        between the powers of two of the context grid around them, clamped at its ends."""
        grid = self.context_grid
        lo = max(0, bisect.bisect_right(grid, float(ctx.min())) - 1)
        hi = min(len(grid) - 1, bisect.bisect_left(grid, float(ctx.max())))
        xs = grid[lo : hi + 1]
        ys = [self._value(("decode", stage, b, c)) for c in xs]
        if len(xs) == 1:
            return np.full(len(ctx), ys[0])
        return np.interp(ctx, xs, ys)

    def _piece(self, stage: int, p: int) -> float:
        """One prompt piece's own attention (linear in the piece grid, clamped)."""
        grid = self.piece_grid
        i = bisect.bisect_left(grid, p)
        if i == 0:
            return self._value(("chunk", stage, grid[0]))
        if i >= len(grid):
            return self._value(("chunk", stage, grid[-1]))
        x0, x1 = grid[i - 1], grid[i]
        y0, y1 = self._value(("chunk", stage, x0)), self._value(("chunk", stage, x1))
        return y0 + (y1 - y0) * (p - x0) / (x1 - x0)

    # ---- grid values from the step simulator -------------------------------------------------
    def _spec(self, batch_rank: int, context: int, chunk_rank: int) -> StepSpec:
        return StepSpec(
            "decode",
            batch_rank * self.dp,
            max(1, context),
            self.dtype,
            self.kv_dtype,
            q_len=self.q,
            devices_per_node=self.per_node,
            mtp_depth=self.mtp,
            chunk_tokens=chunk_rank * self.dp,
        )

    def _value(self, key: tuple[Any, ...]) -> float:
        """One grid value, keyed (part, stage, *arguments); simulated on first use."""
        hit = self._memo.get(key)
        if hit is None:
            hit = self._memo[key] = self._simulate(key[0], key[1], *key[2:])
            self._dirty = True
        return hit

    def _simulate(self, part: str, stage: int, *args: int) -> float:
        """One grid value: the op times of ``part`` in ``stage`` of a step built to exercise
        it, summed with their layer counts (the step simulator's own arithmetic for one
        micro-batch)."""
        if part == "tokens":  # M tokens per rank, as prompt chunk tokens (no attention needed)
            graph = build_step(self.model, self.layout, self._spec(0, 1, args[0]))
        elif part == "decode":
            graph = build_step(self.model, self.layout, self._spec(args[0], args[1], 0))
        elif part == "batch":
            graph = build_step(self.model, self.layout, self._spec(args[0], 1, 0))
        elif part == "chunk":
            graph = build_step(self.model, self.layout, self._spec(0, 1, args[0]))
        else:  # head and MTP modules for args[0] sequences (and a chunk's last token)
            graph = build_step(self.model, self.layout, self._spec(args[0], 1, args[1]))
        return self._sum(graph, stage, part)

    def _sum(self, graph: StepGraph, stage: int, part: str) -> float:
        total = 0.0
        for lg in graph.stages[stage]:
            whole = lg.name in ("head", "mtp")
            if whole != (part == "head"):
                continue
            for so in lg.ops:
                if whole or so.part == part:
                    total += self.mapper.time(so.op).time_s * lg.repeat
        return total

    # ---- the disk cache ------------------------------------------------------------------
    def _load(self) -> None:
        assert self._path is not None
        try:
            data = json.loads(self._path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return  # no cache yet, or a damaged one: recomputed
        if isinstance(data, dict):
            for k, v in data.items():
                part, stage, *args = str(k).split(":")
                self._memo[(part, int(stage), *(int(a) for a in args))] = float(v)

    def save(self) -> None:
        """Write new grid values to the disk cache (no-op without one)."""
        if self._path is None or not self._dirty:
            return
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self._path.with_suffix(".tmp")
            data = {":".join(str(x) for x in k): v for k, v in self._memo.items()}
            tmp.write_text(json.dumps(data, sort_keys=True), encoding="utf-8")
            tmp.replace(self._path)
        except OSError:
            return  # a read-only home: the model still works, only uncached
        self._dirty = False
