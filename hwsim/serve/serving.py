"""``hwsim serve``: a request-level serving simulation on any device kind (see
``docs/serving.md``).

:func:`simulate_serving` takes a frozen :class:`ServeRequest` (model, device, one replica's
layout, replicas, dtypes, traffic and its load, engine settings, SLOs) and returns a frozen
:class:`ServeResult`. It builds one step-time model per replica configuration
(:class:`hwsim.serve.steptime.StepTimeModel`: the step simulator, interpolated and cached),
sizes each replica's KV pool from the device memory its weights and activations leave, runs the
engines (:mod:`hwsim.serve.engine`) behind the router (:mod:`hwsim.serve.cluster`) on one simpy
engine, and measures (:mod:`hwsim.serve.metrics`).

KV pool per device (vLLM's sizing): ``memory × utilisation − weights − activations``, with
``utilisation`` from the engine profile (0.9, vLLM's ``gpu_memory_utilization`` default; 1.0 on
SRAM-only chips laid out at compile time) and activations estimated as
the peak of one iteration of ``token_budget`` tokens: the residual stream, the widest
projection output and the attention workspace, ``token_budget × (4·hidden + 2·intermediate /
tp) × 2 B``, plus the logits of ``max_batch`` rows in fp32. On SRAM-only devices the same
arithmetic runs on the SRAM.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hwsim.plan.layout import Layout
from hwsim.plan.model_step import (
    StepSpec,
    kv_bytes_per_token_per_layer,
    memory_per_device,
    shard,
)
from hwsim.serve.api import Target, make_target, resolve_layout
from hwsim.serve.cluster import ROUTERS, ReplicaSpec, ServingCluster, replica_busy
from hwsim.serve.engine import EngineConfig
from hwsim.serve.kv_route import kv_network
from hwsim.serve.ledger import Ledger
from hwsim.serve.metrics import SLO, RunMetrics, measure
from hwsim.serve.profile import EngineProfile, engine_profile
from hwsim.serve.request import STEP_DEFAULTS
from hwsim.serve.step import accepted_tokens
from hwsim.serve.steptime import StepTimeModel, default_cache_dir
from hwsim.serve.traffic import (
    DEFAULT_MAX_REQUESTS,
    ClosedLoop,
    Offline,
    Requests,
    Trace,
    Traffic,
    closed_loop,
    load_traffic,
    resolve_arrival,
    sample,
)
from hwsim.serve.watch import SloWatch
from hwsim.sim.engine import Engine
from hwsim.spec.device import DTYPE_BYTES, DTYPES
from hwsim.spec.errors import SpecError
from hwsim.spec.model import ModelConfig, load_model_config

if TYPE_CHECKING:
    from hwsim.spec.device import Device

#: Largest values of the engine's counts (beyond any engine's configuration; they bound the
#: step-time model's grids and the simulation's arrays, docs/reliability.md).
BOUNDS = {
    "replicas": 4096,
    "max_batch": 65_536,
    "token_budget": 1_048_576,
    "block_tokens": 4096,
}


@dataclass(frozen=True)
class ServeRequest:
    """One serving simulation (see the module docstring); defaults are vLLM's where it has
    one (max batch 256, token budget 8192, 16-token KV blocks, chunked prefill)."""

    model: str | ModelConfig
    device: str | Device | Target
    traffic: str | Traffic
    devices: int | str | None = "auto"  #: one replica's devices ('auto': capacity)
    layout: str | Layout | None = None  #: one replica's layout
    replicas: int = 1
    dtype: str = STEP_DEFAULTS["dtype"]
    kv_dtype: str = STEP_DEFAULTS["kv_dtype"]
    mtp: int = STEP_DEFAULTS["mtp"]
    mtp_acceptance: float = STEP_DEFAULTS["mtp_acceptance"]
    qps: float | None = None
    offline: bool = False
    concurrency: int | None = None
    think_s: float | None = None
    requests: int | None = None
    duration_s: float | None = None
    scheduler: str = "chunked"
    max_batch: int = 256
    token_budget: int = 8192
    block_tokens: int = 16
    router: str = "least-outstanding"
    prefix_caching: bool = True
    disaggregate: tuple[int, int] | None = None  #: (prefill replicas, decode replicas)
    slo: SLO | None = None  #: default: the traffic profile's
    seed: int = 0
    cluster: str | None = STEP_DEFAULTS["cluster"]
    context_overflow: str = "clip"
    step_cache: Path | None = field(default_factory=default_cache_dir)
    #: ``path=value`` changes to the engine profile (a what-if, or a trial value of its fit)
    engine_overrides: tuple[str, ...] = ()
    #: most requests a trace or a stream may hold (``--max-requests``)
    max_requests: int = DEFAULT_MAX_REQUESTS
    #: stop an open-loop run once a percentile limit is certainly missed
    #: (:mod:`hwsim.serve.watch`); its figures then cover only what ran
    stop_when_lost: bool = False

    def __post_init__(self) -> None:
        for name, lo in (
            ("replicas", 1),
            ("max_batch", 1),
            ("token_budget", 1),
            ("block_tokens", 1),
        ):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise SpecError(
                    f"expected a whole number >= {lo}, got {v!r}", key=f"--{name.replace('_', '-')}"
                )
        if self.scheduler not in ("chunked", "prefill-first"):
            raise SpecError(
                f"expected chunked or prefill-first, got {self.scheduler!r}", key="--scheduler"
            )
        if self.router not in ROUTERS:
            raise SpecError(
                f"expected one of {', '.join(ROUTERS)}, got {self.router!r}", key="--router"
            )
        for name, option in (("dtype", "--dtype"), ("kv_dtype", "--kv-dtype")):
            if getattr(self, name) not in DTYPES:
                raise SpecError(
                    f"{option} {getattr(self, name)!r}: expected one of {', '.join(DTYPES)}"
                )
        if self.token_budget < self.max_batch * (1 + self.mtp):
            raise SpecError(
                f"a token budget of {self.token_budget} cannot hold one decode step of "
                f"{self.max_batch} sequences x {1 + self.mtp} tokens; raise --token-budget or "
                "lower --max-batch",
                key="--token-budget",
            )
        if self.disaggregate is not None and min(self.disaggregate) < 1:
            raise SpecError(
                f"prefill={self.disaggregate[0]},decode={self.disaggregate[1]}: both pools need "
                "at least one replica",
                key="--disaggregate",
            )  # fmt: skip

    def at_qps(self, qps: float) -> ServeRequest:
        """The same run under Poisson load at ``qps`` (same seed: common random numbers)."""
        return replace(self, qps=qps, offline=False, concurrency=None)


@dataclass(frozen=True, eq=False)
class RunRecords:
    """The raw rows of a run, frozen (for charts and traces): per request its columns
    (:meth:`hwsim.serve.ledger.Ledger.arrays`), per iteration (or run of decode iterations)
    (replica, start, end, batch, prompt tokens, KV blocks, kind, output tokens, count), and
    the KV transfers of a disaggregated run (request, start, end, bytes)."""

    requests: dict[str, Any]
    iterations: tuple[tuple[str, float, float, int, int, int, str, float, int], ...]
    transfers: tuple[tuple[int, float, float, float], ...]

    @staticmethod
    def of(ledger: Ledger) -> RunRecords:
        cols = ledger.arrays()
        for v in cols.values():
            v.setflags(write=False)
        return RunRecords(cols, tuple(ledger.iterations), tuple(ledger.transfers))


@dataclass(frozen=True)
class ServeResult:
    """A serving run's answer (SI units; see :mod:`hwsim.serve.metrics`)."""

    model: str
    device: str
    layout: Layout
    replicas: int
    devices: int
    traffic: str
    load: str
    scheduler: str
    kv_blocks_per_replica: int
    metrics: RunMetrics
    busy: tuple[dict[str, Any], ...]
    step_points: int
    wall_s: float
    records: RunRecords = field(repr=False)
    max_qps: float | None = None
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out = {
            "model": self.model,
            "device": self.device,
            "layout": str(self.layout),
            "layout_detail": self.layout.to_dict(),
            "replicas": self.replicas,
            "devices": self.devices,
            "traffic": self.traffic,
            "load": self.load,
            "scheduler": self.scheduler,
            "kv_blocks_per_replica": self.kv_blocks_per_replica,
            **self.metrics.to_dict(),
            "replica_time_fractions": list(self.busy),
            "step_time_points": self.step_points,
            "wall_s": self.wall_s,
            "notes": list(self.notes),
        }
        if self.max_qps is not None:
            out["max_qps"] = self.max_qps
        return out


@dataclass(frozen=True)
class Deployment:
    """What :func:`prepare` resolved once and a QPS search reuses."""

    cfg: ModelConfig
    target: Target
    layout: Layout
    traffic: Traffic
    profile: EngineProfile
    spec: ReplicaSpec
    decode_spec: ReplicaSpec | None
    notes: tuple[str, ...]


def _pool_blocks(
    cfg: ModelConfig, target: Target, lay: Layout, req: ServeRequest, util: float
) -> tuple[int, float]:
    """KV blocks of one replica and the bytes resident per device (see the module docstring);
    ``util`` is the share of memory the engine allocates (its profile's)."""
    cap = target.mapper.capacity_bytes
    w, _ = memory_per_device(cfg, lay, StepSpec("decode", 1, 1, req.dtype, req.kv_dtype))
    act = req.token_budget * (4 * cfg.hidden + 2 * cfg.ffn.intermediate / lay.tp) * 2
    act += req.max_batch * math.ceil(cfg.vocab / lay.tp) * 4
    free = cap * util - w - act
    per_tok = kv_bytes_per_token_per_layer(cfg, shard(cfg, lay).kv_heads, req.kv_dtype)
    per_tok *= shard(cfg, lay).layers_per_stage
    blocks = int(free // (per_tok * req.block_tokens)) * lay.dp if free > 0 else 0
    if blocks * req.block_tokens < req.token_budget:
        raise SpecError(
            f"{cfg.name} with {lay} leaves {max(free, 0) / 1e9:.2f} GB per device for KV "
            f"(weights {w / 1e9:.2f} GB, activations {act / 1e9:.2f} GB of "
            f"{cap / 1e9:.2f} GB x {util:g}): fewer blocks than one iteration's "
            f"{req.token_budget} tokens; use more devices per replica or a smaller --token-budget",
            key="--layout",
        )
    return blocks, cap * util


def _replica_layout(cfg: ModelConfig, target: Target, req: ServeRequest, mean_len: int) -> Layout:
    """The layout of one replica: given, or the fewest devices that hold the weights and the
    KV of ``max_batch`` sequences of the traffic's mean length ('auto'), or ``devices``."""
    spec = StepSpec(
        "decode", req.max_batch, max(1, mean_len), req.dtype, req.kv_dtype, q_len=1 + req.mtp
    )
    return resolve_layout(cfg, target, spec, req.devices, req.layout)


def prepare(req: ServeRequest, *, progress: Callable[[str], None] | None = None) -> Deployment:
    """Resolve model, device, traffic, layout, engine profile and the step-time models."""
    cfg = load_model_config(req.model) if isinstance(req.model, str) else req.model
    dev = req.device
    target = dev if isinstance(dev, Target) else make_target(dev, req.cluster)
    traffic = (
        load_traffic(req.traffic, first=req.requests, max_requests=req.max_requests)
        if isinstance(req.traffic, str)
        else req.traffic
    )
    # a trace row past the model's context is clipped or refused later (context_overflow):
    # it must not size the replica first (a 900k-token row asked for hundreds of GPUs)
    mean_len = _mean_length(traffic, cfg.max_position or 131072)
    lay = _replica_layout(cfg, target, req, mean_len)
    profile = engine_profile(target.device, req.engine_overrides)
    blocks, resident = _pool_blocks(cfg, target, lay, req, profile.memory_utilization)
    max_ctx = cfg.max_position or 131072
    step = StepTimeModel(
        cfg, target.mapper, lay, dtype=req.dtype, kv_dtype=req.kv_dtype, mtp=req.mtp,
        max_batch=req.max_batch, token_budget=req.token_budget, max_context=max_ctx,
        resident_bytes=resident, cache_dir=req.step_cache, fingerprint=target.key,
    )  # fmt: skip
    ecfg = EngineConfig(
        max_batch=req.max_batch,
        token_budget=req.token_budget,
        scheduler=req.scheduler,  # type: ignore[arg-type]
        kv_blocks=blocks,
        block_tokens=req.block_tokens,
        q_len=1 + req.mtp,
        accepted=accepted_tokens(req.mtp, req.mtp_acceptance),
        overhead_s=profile.iteration_overhead.value,
        prefix_caching=req.prefix_caching,
    )
    fab = target.mapper.fabric
    kv_tok = cfg.kv_cache_bytes_per_token(DTYPE_BYTES[req.kv_dtype])
    spec = ReplicaSpec(
        step, ecfg, lay.pp, lay.devices, kv_tok, fab.inter_Bps * lay.devices, fab.inter_latency_s
    )
    overhead = profile.iteration_overhead.value
    notes = [f"{overhead * 1e3:.2f} ms per iteration of engine overhead ({profile.key})"]
    if lay.pp > 1:
        notes.append(
            f"{lay.pp} pipeline stages: each iteration runs as micro-batches, one per stage"
        )
    return Deployment(
        cfg, target, lay, traffic, profile, spec, spec if req.disaggregate else None, tuple(notes)
    )


def _mean_length(traffic: Traffic, cap: int) -> int:
    """Mean prompt + output tokens of a traffic profile (a short sample; a trace: its rows),
    each request counted at most ``cap`` tokens (the model's context: longer ones are clipped
    or refused later)."""
    r = (
        traffic.requests
        if isinstance(traffic, Trace)
        else sample(traffic, n=2000, arrival=Offline())
    )
    if not len(r):
        return 1
    total = np.minimum(r.prompt_tokens.astype(np.float64) + r.output_tokens, cap)
    return int(total.mean())


def _load_text(req: ServeRequest, traffic: Traffic) -> tuple[str, Any]:
    """The arrival process the run uses and a label for it."""
    default = getattr(traffic, "arrival", None)
    arr = resolve_arrival(
        default, qps=req.qps, offline=req.offline, concurrency=req.concurrency, think_s=req.think_s
    )
    if arr is None:
        return "trace timestamps", None
    if isinstance(arr, Offline):
        return "offline", arr
    if isinstance(arr, ClosedLoop):
        return f"closed loop of {arr.users} users", arr
    return f"{type(arr).__name__.lower()} at {arr.qps:g} req/s", arr


#: Event-equivalents and host bytes one replica costs before it serves a request (its engine,
#: scheduler arrays and block pool; measured: 10,000 replicas of Llama-3.1-8B add 2.1 s and
#: 165 MB to a 200-request run, ~0.23 ms and ~18 kB each, at ~10 us per event)
EVENTS_PER_REPLICA = 25
BYTES_PER_REPLICA = 32 * 1024


#: Latest arrival a run accepts, s (~32 years): float64 time resolves 0.2 us there, so engine
#: iterations of tens of microseconds still advance the clock (at 1e300 s they would not, and
#: a run would spin without simulated time moving)
MAX_HORIZON_S = 1e9


def check_horizon(last_arrival_s: float) -> None:
    """Refuse a stream whose last request arrives past :data:`MAX_HORIZON_S`."""
    if not last_arrival_s <= MAX_HORIZON_S:
        raise SpecError(
            f"the last request arrives at {last_arrival_s:.3g} s, past the {MAX_HORIZON_S:.0e} s "
            "a run can time to the microsecond; raise --qps or send fewer requests",
            key="--qps",
        )


def check_replicas(n: int) -> None:
    """Refuse, before any is built, more replicas than the event or memory budget holds."""
    from hwsim.spec.limits import check_budget, check_memory, format_count

    hint = f"{format_count(n)} replicas; use fewer replicas or a lower --qps"
    check_budget(n * EVENTS_PER_REPLICA, cheaper_mode_hint=hint)
    check_memory(n * BYTES_PER_REPLICA, cheaper_mode_hint=hint)


def run(req: ServeRequest, dep: Deployment) -> ServeResult:
    """Simulate ``req`` on a prepared deployment."""
    t0 = time.perf_counter()
    label, arrival = _load_text(req, dep.traffic)
    slo = req.slo if req.slo is not None else traffic_slo(dep.traffic)
    pre, dec = req.disaggregate or (req.replicas, 0)
    check_replicas(pre + dec)
    eng = Engine()
    ledger = Ledger()
    net = (
        kv_network(eng, dep.target.mapper.cluster, dep.target.device, dep.layout.devices, pre + dec)
        if dec
        else None
    )
    cluster = ServingCluster(eng, ledger, dep.spec, pre, req.router, dep.decode_spec, dec, net)  # type: ignore[arg-type]
    max_ctx = dep.cfg.max_position
    if isinstance(arrival, ClosedLoop):
        streams = closed_loop(dep.traffic, arrival.users, think_s=arrival.think_s,
                              think_dist=arrival.think_dist, seed=req.seed, max_context=max_ctx,
                              overflow=req.context_overflow)  # type: ignore[arg-type]  # fmt: skip
        users = cluster.closed_loop(streams, req.requests, req.duration_s)
        mode = "closed"
        eng.env.run(until=eng.env.all_of(users))
        eng.run()
    else:
        reqs: Requests = sample(
            dep.traffic, n=req.requests, duration_s=req.duration_s, arrival=arrival,
            seed=req.seed, max_context=max_ctx, overflow=req.context_overflow,  # type: ignore[arg-type]
            max_requests=req.max_requests,
        )  # fmt: skip
        check_horizon(float(reqs.arrival_s[-1]) if len(reqs) else 0.0)
        mode = "offline" if isinstance(arrival, Offline) else "open"
        if req.stop_when_lost and mode == "open":
            ledger.watch = SloWatch(slo, len(reqs))
        eng.env.process(cluster.open_loop(reqs))
        eng.run()
    dep.spec.model.save()
    metrics = measure(ledger, mode, slo)
    busy = replica_busy(cluster.replicas, metrics.makespan_s)
    devices = dep.layout.devices * (pre + dec)
    return ServeResult(
        model=dep.cfg.name,
        device=dep.target.key,
        layout=dep.layout,
        replicas=pre + dec,
        devices=devices,
        traffic=req.traffic if isinstance(req.traffic, str) else "custom",
        load=label,
        scheduler=req.scheduler,
        kv_blocks_per_replica=dep.spec.cfg.kv_blocks,
        metrics=metrics,
        busy=tuple(busy),
        step_points=dep.spec.model.points,
        wall_s=time.perf_counter() - t0,
        records=RunRecords.of(ledger),
        notes=dep.notes + ((f"KV hand-overs routed on the {net.name}",) if net else ()),
    )


def traffic_slo(traffic: Traffic) -> SLO:
    """The traffic profile's own SLOs (none for a trace)."""
    s = getattr(traffic, "slo", None)
    if s is None:
        return SLO()
    p = f"p{int(s.percentile)}" if getattr(s, "percentile", None) else "p99"
    lim = []
    if s.ttft is not None:
        lim.append(("ttft", p, float(s.ttft)))
    if s.tpot is not None:
        lim.append(("tpot", p, float(s.tpot)))
    return SLO(tuple(lim))


def simulate_serving(req: ServeRequest) -> ServeResult:
    """Prepare and run one serving simulation."""
    t0 = time.perf_counter()
    dep = prepare(req)
    res = run(req, dep)
    return replace(res, wall_s=time.perf_counter() - t0)


@dataclass(frozen=True)
class QpsSearch:
    """``find_max_qps``: the highest Poisson rate that met the SLOs, its run, and every rate
    tried (rate, met)."""

    max_qps: float
    result: ServeResult | None
    tried: tuple[tuple[float, bool], ...]


def find_max_qps(
    req: ServeRequest,
    *,
    rel_tol: float = 0.02,
    max_runs: int = 14,
    progress: Callable[[str], None] | None = None,
) -> QpsSearch:
    """The highest Poisson rate meeting every SLO (MLPerf Server's search), by bisection on
    ``req`` at varying QPS with the same seed (common random numbers: the same request lengths,
    arrival times scaled). The first rate tried is just under the throughput of the same
    requests sent all at once (where the server saturates); the bracket grows by 10% or shrinks
    by 20% from there until it holds the answer, then bisects. Give
    ``req`` a duration (MLPerf runs at least 600 s) so that an overloaded rate has time to
    fill the batch and the KV cache and show in the latencies. Every run reuses one deployment
    and its step-time model."""
    slo = req.slo
    dep = prepare(req)
    if slo is None:
        slo = traffic_slo(dep.traffic)
    if not slo.limits:
        raise SpecError(
            "needs SLOs to search against (e.g. ttft_p99=2s,tpot_p99=200ms)", key="--slo"
        )
    req = replace(req, slo=slo, offline=False, concurrency=None)
    probe_n = req.requests if req.requests is not None else 4 * req.max_batch * req.replicas
    off = run(replace(req, offline=True, qps=None, duration_s=None, requests=probe_n), dep)
    q = max(off.metrics.requests_per_s, 1e-6)
    lo, hi = 0.0, math.inf
    tried: list[tuple[float, bool]] = []
    best: ServeResult | None = None
    while len(tried) < max_runs:
        r = run(req.at_qps(q), dep)
        ok = all(r.metrics.slo_met.values()) and r.metrics.completed > 0
        tried.append((q, ok))
        if progress is not None:
            progress(f"{q:.4g} req/s: {'meets' if ok else 'misses'} the SLOs")
        if ok:
            lo, best = q, r
        else:
            hi = q
        if lo > 0 and hi < math.inf and (hi - lo) / lo <= rel_tol:
            break
        q = q * 1.1 if hi == math.inf else (q * 0.8 if lo == 0 else (lo + hi) / 2)
        if q < 1e-4:
            break
    if best is None:
        return QpsSearch(0.0, None, tuple(tried))
    return QpsSearch(lo, replace(best, max_qps=lo), tuple(tried))


def parse_disaggregate(text: str) -> tuple[int, int]:
    """``prefill=2,decode=6`` → (2, 6); a SpecError naming ``--disaggregate`` otherwise."""
    got: dict[str, int] = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        key, _, value = part.partition("=")
        if key.strip() not in ("prefill", "decode") or not value.strip().isdigit():
            raise SpecError(
                f"cannot read {part!r}: expected prefill=N,decode=M", key="--disaggregate"
            )
        got[key.strip()] = int(value)
    if set(got) != {"prefill", "decode"} or min(got.values()) < 1:
        raise SpecError(
            f"{text!r}: give both pools at least one replica, like prefill=2,decode=6",
            key="--disaggregate",
        )
    return got["prefill"], got["decode"]
