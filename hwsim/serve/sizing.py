"""``hwsim size --traffic``: the cheapest deployment of one device type that serves a traffic
class at a load within its SLOs, found in stages.

1. **Enumerate** deployments of one replica: device counts from the capacity floor up through
   the powers of two of a fast domain (and whole domains), the first layouts that fit each
   count, weights at bf16 and (where the device runs it) fp8 with an fp8 KV cache.
2. **Bound** each with the step-time model alone (no request simulation): the decode step of
   one sequence is the TPOT floor and the whole p99 prompt in one iteration the TTFT floor (a
   deployment whose floor misses a limit cannot meet it at any size); the largest batch whose
   decode step meets the TPOT limit gives a replica's throughput, hence the replicas the load
   needs at 85% of it, hence an estimated cost.
3. **Simulate** the cheapest few with the serving simulation at the load, adding replicas
   until the SLOs hold (and trying prefill/decode disaggregation where the first token binds).
4. **Rank** what met the SLOs by devices, by power and by dollars per million output tokens
   (rental where a price is known, else capex; :mod:`hwsim.spec.cost`), and say why each
   runner-up lost.

Offline classes (no latency limit) run every request at once and are ranked by cost per token
alone (one replica: more replicas serve more tokens at the same cost per token).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from hwsim.plan.layout import Layout
from hwsim.plan.model_step import StepSpec
from hwsim.serve.api import Target, make_target, serve_step
from hwsim.serve.capacity import auto_device_counts, layouts_that_fit, min_devices
from hwsim.serve.metrics import SLO
from hwsim.serve.request import StepRequest
from hwsim.serve.serving import ServeRequest, ServeResult, prepare, run, traffic_slo
from hwsim.serve.sizing_result import Bound, Outcome, Plan, SizeAnswer, slo_limit
from hwsim.serve.steptime import default_cache_dir
from hwsim.serve.traffic import Lengths, Offline, Trace, Traffic, TrafficSpec, load_traffic, sample
from hwsim.spec.cost import Economics, economics, joules_per_token, load_costs, usd_per_million
from hwsim.spec.device import FP4_DTYPES, Device
from hwsim.spec.errors import SpecError
from hwsim.spec.fit import human_bytes
from hwsim.spec.model import ModelConfig, load_model_config

#: Candidates simulated after the bounds (cheapest estimates first).
SIMULATE = 4
#: Replicas added at most to a candidate that misses its SLOs.
EXTRA_REPLICAS = 2
#: Share of a replica's bounded throughput the load may use (queues grow near saturation).
TARGET_LOAD = 0.85
#: Requests per sizing simulation (open loop) and per offline run.
REQUESTS = 1200
OFFLINE_REQUESTS = 1000
MAX_BATCHES = (8, 16, 32, 64, 128, 256, 512)
#: Token budgets tried, largest first (SRAM-only chips hold only small iterations).
BUDGETS = (8192, 2048, 512, 128, 32, 8)


def precisions(device: Device) -> list[tuple[str, str]]:
    """(weights, KV cache) dtypes a deployment of ``device`` may use: bf16; 8-bit weights and
    cache where the chip has an 8-bit matrix path (fp8, or int8: Groq and SambaNova store 8-bit
    weights and compute at their 16-bit rate, which ``peak_flops('fp8')`` falls back to); each
    block-scaled FP4 format it runs (weights only; the cache stays at 8 bits where it can)."""
    peak = device.compute.peak
    eight = "fp8" in peak or "int8" in peak
    out = [("bf16", "bf16")] + ([("fp8", "fp8")] if eight else [])
    kv4 = "fp8" if eight else "bf16"
    out += [(f, kv4) for f in FP4_DTYPES if f in device.compute.fp4_formats and "fp4" in peak]
    return out


def _options(
    cfg: ModelConfig, target: Target, spec: StepSpec
) -> list[tuple[Layout, str, str]]:
    """(layout, weights dtype, KV dtype) deployments of one replica to bound (stage 1)."""
    out: list[tuple[Layout, str, str]] = []
    for dt, kv in precisions(target.device):
        s = StepSpec("decode", spec.batch, spec.context, dt, kv)
        try:
            floor = min_devices(cfg, target.mapper, s)
        except SpecError:
            continue
        dom = target.mapper.domain_devices
        counts = auto_device_counts(floor.devices, dom)[:4]
        # room for the KV cache beyond the weights' floor: 1.5x and 2x, in whole domains
        counts += [dom * math.ceil(f * floor.devices / dom) for f in (1.5, 2.0)]
        for n in dict.fromkeys(counts):
            out += [(lay, dt, kv) for lay in layouts_that_fit(cfg, target.mapper, n, s)[:2]]
    return list(dict.fromkeys(out))


def check_search(deployments: int) -> None:
    """Refuse up front a search that could run more simulations than ``--max-sims``: one
    batch search of decode steps per deployment bounded, then at most :data:`SIMULATE`
    candidates × (:data:`EXTRA_REPLICAS` + 2) serving runs."""
    from hwsim.spec.limits import check_sims

    runs = SIMULATE * (EXTRA_REPLICAS + 2)
    check_sims(
        deployments + runs,
        f"simulations ({deployments} batch searches to bound deployments, {runs} serving runs)",
        "raise --max-sims, or serve one deployment with hwsim serve",
    )  # fmt: skip


def size_for_traffic(
    model: str | ModelConfig,
    device: str | Target,
    traffic: str | Traffic,
    *,
    qps: float | None = None,
    slo: SLO | None = None,
    price: str | None = None,
    amortization: str | None = None,
    step_cache: Path | None = None,
    progress: Callable[[str], None] | None = None,
    requests: int | None = None,
    costs: Path | None = None,
) -> SizeAnswer:
    """Search deployments (see the module docstring). ``requests``: per simulation (default
    :data:`REQUESTS`, :data:`OFFLINE_REQUESTS` offline); ``costs``: a cost file instead of
    ``devices/costs/costs.yaml``."""
    cfg = load_model_config(model) if isinstance(model, str) else model
    target = device if isinstance(device, Target) else make_target(device)
    device = target.key  # the cost file's key (a modified device keeps its base's prices)
    tr = load_traffic(traffic) if isinstance(traffic, str) else traffic
    name = traffic if isinstance(traffic, str) else getattr(tr, "name", "custom")
    slo = slo if slo is not None else traffic_slo(tr)
    arrival = getattr(tr, "arrival", None)
    offline = qps is None and (arrival is None or isinstance(arrival, Offline))
    if qps is None and not offline:
        qps = float(getattr(arrival, "qps", 0.0)) or None
    if not offline and (qps is None or not qps > 0):
        raise SpecError("give the load: --qps X (requests per second > 0)", key="--qps")
    econ = economics(
        target.key, target.device, price=price, amortization=amortization,
        costs=load_costs(costs) if costs is not None else None,
    )  # fmt: skip
    cache = step_cache or default_cache_dir()
    r = tr.requests if isinstance(tr, Trace) else sample(tr, n=4000, arrival=Offline(), seed=1)
    mean_out = float(r.output_tokens.mean())
    mean_ctx = int(r.prompt_tokens.mean() + mean_out / 2)
    p99_prompt = int(np.percentile(r.prompt_tokens, 99))
    options = _options(cfg, target, StepSpec("decode", 1, max(1, mean_ctx + int(mean_out / 2))))
    if not options:
        raise SpecError(f"{cfg.name} does not fit any deployment of {device} hwsim searches")
    n_req = requests or (OFFLINE_REQUESTS if offline else REQUESTS)
    check_search(len(options))
    search = _Search(cfg, target, tr, slo, qps, offline, econ, cache, n_req, progress,
                     mean_out, mean_ctx, p99_prompt)  # fmt: skip
    bounds = [_bound(search, lay, dt, kv) for lay, dt, kv in options]
    alive = sorted(
        (b for b in bounds if not b.pruned), key=lambda b: (b.est_cost, b.layout.devices)
    )
    if progress is not None:
        progress(f"{len(bounds)} deployments bounded, {len(alive)} can meet the limits")
    outcomes: list[Outcome] = []
    for b in alive[:SIMULATE]:
        outcomes += search.simulate(b)
    stages = {
        "enumerated": len(bounds),
        "after_bounds": len(alive),
        "simulated": len(outcomes),
        "met_slo": sum(o.meets for o in outcomes),
    }
    return SizeAnswer(cfg.name, device, str(name), qps, slo, econ, stages, tuple(outcomes),
                      tuple(bounds), mean_context=mean_ctx, simulate=search.run)  # fmt: skip


def _bound(s: _Search, lay: Layout, dtype: str, kv_dtype: str) -> Bound:
    """Stage 2 for one replica deployment (see the module docstring)."""
    cfg, target, slo, qps, offline, econ, cache = (
        s.cfg, s.target, s.slo, s.qps, s.offline, s.econ, s.cache
    )
    mean_out, mean_ctx, p99_prompt = s.mean_out, s.mean_ctx, s.p99_prompt
    probe_traffic = TrafficSpec(
        name="probe", prompt_tokens=Lengths(fixed=max(1, mean_ctx)), output_tokens=Lengths(fixed=1)
    )
    dep, budget, why, best = None, 0, "", -1
    for tokens in BUDGETS:  # the iteration size whose activations leave the most sequences room
        probe = ServeRequest(
            cfg, target, probe_traffic, layout=lay, dtype=dtype, kv_dtype=kv_dtype,
            max_batch=min(MAX_BATCHES[-1], tokens), token_budget=tokens, offline=True,
            requests=1, step_cache=cache,
        )  # fmt: skip
        try:
            d = prepare(probe)
        except SpecError as err:
            why = why or str(err)
            continue
        seqs = min(tokens, d.spec.cfg.kv_blocks * d.spec.cfg.block_tokens // max(1, mean_ctx))
        if seqs > best:
            dep, budget, best = d, tokens, seqs
    if dep is None:
        return Bound(lay, dtype, kv_dtype, math.inf, math.inf, 0, 0.0, 0, math.inf, 0, why)
    st = dep.spec.model
    tpot_floor = st.step_time(1, mean_ctx)
    ttft_floor = st.step_time(0, 0.0, [p99_prompt])
    tpot_lim, ttft_lim = slo_limit(slo, "tpot"), slo_limit(slo, "ttft")
    kv_seqs = dep.spec.cfg.kv_blocks * dep.spec.cfg.block_tokens // max(1, mean_ctx)
    sizes = [b for b in MAX_BATCHES if b <= max(1, min(kv_seqs, budget))] or [1]

    def ok(b: int) -> bool:  # a decode step of b sequences within the TPOT limit (and margin)
        return tpot_lim is None or st.step_time(b, b * mean_ctx) <= tpot_lim * TARGET_LOAD

    lo, hi = -1, len(sizes)  # bisection: step time grows with the batch
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if ok(sizes[mid]) else (lo, mid)
    batch = sizes[lo] if lo >= 0 else 1
    if hi < len(sizes):
        limit = "tpot"
    elif kv_seqs <= budget and kv_seqs < MAX_BATCHES[-1]:
        limit = "kv"
    else:
        limit = "budget" if budget < MAX_BATCHES[-1] else "max-batch"
    tok_s = batch / st.step_time(batch, batch * mean_ctx)
    st.save()
    replicas = (
        1 if offline or qps is None else max(1, math.ceil(qps * mean_out / (tok_s * TARGET_LOAD)))
    )
    per_hour = econ.usd_per_hour
    est = replicas * lay.devices * (per_hour if per_hour is not None else 1.0)
    pruned = ""
    if tpot_lim is not None and tpot_floor > tpot_lim:
        one = serve_step(
            StepRequest(cfg, target, batch=1, context=mean_ctx, layout=lay, dtype=dtype,
                        kv_dtype=kv_dtype, overlap="none"),
            strict=False, timeline=False,
        )  # fmt: skip
        pruned = (
            f"TPOT floor {tpot_floor * 1e3:.3g} ms > limit {tpot_lim * 1e3:.3g} ms on {lay} "
            f"({dtype}): one sequence's decode step is {one.bound}-bound, "
            f"{human_bytes(one.weight_bytes_per_device)} of weights per {target.mapper.unit} "
            "read every token"
        )
    elif ttft_lim is not None and ttft_floor > ttft_lim:
        pruned = (
            f"TTFT floor {ttft_floor * 1e3:.3g} ms > limit {ttft_lim * 1e3:.3g} ms on {lay} "
            f"({dtype}): the p99 prompt ({p99_prompt} tokens) takes that long to prefill"
        )
    return Bound(
        lay, dtype, kv_dtype, tpot_floor, ttft_floor, batch, tok_s, replicas, est, budget, pruned,
        limit,
    )  # fmt: skip


@dataclass(frozen=True)
class _Search:
    """What every simulation of one search shares (stage 3)."""

    cfg: ModelConfig
    target: Target
    traffic: Traffic
    slo: SLO
    qps: float | None
    offline: bool
    econ: Economics
    cache: Path
    requests: int
    progress: Callable[[str], None] | None
    mean_out: float  #: output tokens per request, on average
    mean_ctx: int  #: tokens in a sequence's cache mid-answer, on average
    p99_prompt: int  #: the 99th-percentile prompt, tokens

    def simulate(self, b: Bound) -> list[Outcome]:
        """One bounded deployment: simulate, adding replicas until the SLOs hold, then (where
        the first token still binds) prefill/decode disaggregation."""
        batch = min((m for m in MAX_BATCHES if m >= b.batch), default=MAX_BATCHES[-1])
        batch = min(batch, b.token_budget)
        out: list[Outcome] = []
        plan = Plan(b.layout, b.replicas, b.dtype, b.kv_dtype, batch, b.token_budget)
        for extra in range(EXTRA_REPLICAS + 1):
            out.append(self.run(replace(plan, replicas=b.replicas + extra)))
            if out[-1].meets or self.offline:
                return out
        last = out[-1].reason
        if last.startswith("missed ttft") and "tpot" not in last:
            # prompts wait behind decodes: split prefill from decode
            n = b.replicas + EXTRA_REPLICAS
            out.append(self.run(replace(plan, replicas=n, disaggregate=(-(-n // 2), n))))
        return out

    def run(self, plan: Plan) -> Outcome:
        """One serving simulation of ``plan`` (stopped as soon as its SLO is lost)."""
        req = ServeRequest(
            self.cfg, self.target, self.traffic, layout=plan.layout, replicas=plan.replicas,
            dtype=plan.dtype, kv_dtype=plan.kv_dtype, max_batch=plan.max_batch,
            token_budget=plan.token_budget, qps=None if self.offline else self.qps,
            offline=self.offline, requests=self.requests, slo=self.slo, step_cache=self.cache,
            disaggregate=plan.disaggregate, stop_when_lost=True,
        )  # fmt: skip
        res = run(req, prepare(req))
        reason = self._verdict(res)
        tok = res.metrics.output_tokens_per_s
        econ = self.econ
        rental = usd_per_million(econ.rental_usd_per_hour, plan.devices, tok)
        capex = usd_per_million(econ.capex_usd_per_hour, plan.devices, tok)
        o = Outcome(
            plan, not reason, reason, res, rental if rental is not None else capex, capex,
            rental, joules_per_token(econ.power_W, plan.devices, tok), econ.power_W,
        )  # fmt: skip
        if self.progress is not None:
            self.progress(f"{plan}: {'meets' if o.meets else o.reason}")
        return o

    def _verdict(self, res: ServeResult) -> str:
        """'' if the run met every limit, else why not (an SLO missed, requests refused, or
        the load not served)."""
        m = res.metrics
        if m.stopped:
            return f"missed {m.stopped}"
        missed = [k for k, ok in m.slo_met.items() if not ok]
        if missed:
            parts = []
            for key in missed:
                metric, _, stat = key.rpartition("_")
                got = getattr(getattr(m, f"{metric}_s"), stat)
                lim = next(v for mm, st, v in self.slo.limits if mm == metric and st == stat)
                parts.append(f"{key} {got * 1e3:.3g} ms > {lim * 1e3:.3g} ms")
            return "missed " + ", ".join(parts)
        if m.rejected:
            why = next(iter(m.rejected_reasons), "")
            return f"refused {m.rejected} of {m.arrived} requests ({why})"
        if not self.offline and self.qps and m.requests_per_s < 0.9 * self.qps:
            return f"served {m.requests_per_s:.3g} of {self.qps:.3g} req/s"
        return ""


def decode_bound(
    model: str | ModelConfig, device: str, plan: Plan, batch: int, context: int
) -> str:
    """The dominant resource of one replica's decode step of ``batch`` sequences at
    ``context`` tokens (``memory``, ``compute``, ``communication``...)."""
    cfg = load_model_config(model) if isinstance(model, str) else model
    r = serve_step(
        StepRequest(cfg, make_target(device), batch=max(1, batch), context=max(1, context),
                    layout=plan.layout, dtype=plan.dtype, kv_dtype=plan.kv_dtype),
        strict=False, timeline=False,
    )  # fmt: skip
    return str(r.bound)
