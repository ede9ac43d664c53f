"""``hwsim explain serve``: why the deployment ``hwsim size --traffic`` picked won, in sentences
backed by re-simulated what-ifs (one replica fewer and one more, the other KV-cache dtype, the
other weight precision, prefill/decode disaggregated or not), each run by the same serving
simulation, load, SLOs and prices as the search (never estimated)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from hwsim.serve.sizing import size_for_traffic
from hwsim.serve.sizing_result import Outcome, Plan, SizeAnswer, lost_because
from hwsim.spec.errors import SpecError


@dataclass(frozen=True)
class ServeWhatIf:
    """One re-simulated alternative to the winner."""

    title: str
    outcome: Outcome

    def to_dict(self) -> dict[str, Any]:
        return {"whatif": self.title, **self.outcome.to_dict()}


@dataclass(frozen=True)
class ServeExplanation:
    """The winner, the what-ifs and the story (SI units in the data, words in ``sentences``)."""

    answer: SizeAnswer
    winner: Outcome
    whatifs: tuple[ServeWhatIf, ...]
    sentences: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.answer.model,
            "device": self.answer.device,
            "traffic": self.answer.traffic,
            "qps": self.answer.qps,
            "slo": str(self.answer.slo),
            "winner": self.winner.to_dict(),
            "whatifs": [w.to_dict() for w in self.whatifs],
            "sentences": list(self.sentences),
        }


def _variants(p: Plan, device_runs_fp8: bool) -> list[tuple[str, Plan]]:
    """The alternatives worth re-simulating around ``p`` (titles say what changed)."""
    out: list[tuple[str, Plan]] = []
    if p.disaggregate is None:
        if p.replicas > 1:
            out.append(("one replica fewer", replace(p, replicas=p.replicas - 1)))
        out.append(("one replica more", replace(p, replicas=p.replicas + 1)))
        n = p.replicas
        out.append(("prefill and decode disaggregated",
                    replace(p, disaggregate=(max(1, -(-n // 2)), n))))  # fmt: skip
    else:
        pre, dec = p.disaggregate
        out.append(("aggregated (every replica prefills and decodes)",
                    replace(p, replicas=pre + dec, disaggregate=None)))  # fmt: skip
        if dec > 1:
            out.append(("one decode replica fewer", replace(p, disaggregate=(pre, dec - 1))))
    if p.kv_dtype != "fp8" and device_runs_fp8:
        out.append(("fp8 KV cache", replace(p, kv_dtype="fp8")))
    elif p.kv_dtype == "fp8":
        out.append(("bf16 KV cache", replace(p, kv_dtype="bf16")))
    if p.dtype != "bf16":
        out.append(("bf16 weights", replace(p, dtype="bf16", kv_dtype="bf16")))
    return out


def _ms(v: float) -> str:
    return f"{v * 1e3:,.0f} ms" if math.isfinite(v) else "n/a"


def _usd(o: Outcome) -> str:
    return f"${o.usd_per_mtok:,.2f}/Mtok" if o.usd_per_mtok is not None else "no known price"


def _verdict(w: ServeWhatIf, best: Outcome) -> str:
    o = w.outcome
    if not o.meets:
        return f"{w.title}: {o.plan.devices} devices, {o.reason}"
    if o.usd_per_mtok is not None and best.usd_per_mtok:
        rel = o.usd_per_mtok / best.usd_per_mtok - 1
        return (
            f"{w.title}: meets the SLOs too, at {_usd(o)} ({rel:+.0%}; {o.plan.devices} "
            f"devices, TTFT p99 {_ms(o.result.metrics.ttft_s.p99)}, TPOT p99 "
            f"{_ms(o.result.metrics.tpot_s.p99)})"
        )
    return f"{w.title}: meets the SLOs too, on {o.plan.devices} devices"


def explain_serve(
    model: str,
    device: str,
    traffic: str,
    *,
    qps: float | None = None,
    price: str | None = None,
    hours: str | None = None,
    on_step: Callable[[str], None] | None = None,
) -> ServeExplanation:
    """Search (as ``hwsim size --traffic``), then re-simulate the winner's what-ifs."""
    from hwsim.spec.load import load_device

    ans = size_for_traffic(model, device, traffic, qps=qps, price=price, amortization=hours,
                           progress=on_step)  # fmt: skip
    best = ans.best("dollars") or ans.best("devices")
    if best is None or ans.simulate is None:
        raise SpecError(f"no deployment of {device} meets the SLOs: {ans.why_not()}")
    peak = load_device(device).compute.peak
    whatifs = []
    for title, plan in _variants(best.plan, "fp8" in peak or "int8" in peak):
        if on_step is not None:
            on_step(title)
        try:
            whatifs.append(ServeWhatIf(title, ans.simulate(plan)))
        except SpecError as err:  # e.g. the cache no longer fits: a what-if that cannot run
            if on_step is not None:
                on_step(f"{title}: {err}")
    m = best.result.metrics
    limits = ", ".join(f"{k} <= {_ms(v)}" for k, v in
                       ((f"{mm.upper()} {st}", lim) for mm, st, lim in ans.slo.limits))  # fmt: skip
    load = f"{ans.qps:g} req/s of {ans.traffic}" if ans.qps else f"{ans.traffic} (offline)"
    sentences = [
        f"{best.plan} won for {ans.model} on {device} at {load}: {best.plan.devices} "
        f"device{'s' * (best.plan.devices != 1)}, "
        f"{_usd(best)}, TTFT p99 {_ms(m.ttft_s.p99)} and TPOT p99 {_ms(m.tpot_s.p99)}"
        + (f" against {limits}." if limits else "."),
        f"The search bounded {ans.stages['enumerated']} deployments, kept "
        f"{ans.stages['after_bounds']}, simulated {ans.stages['simulated']}; "
        f"{ans.stages['met_slo']} met the SLOs.",
    ]
    sentences += [_verdict(w, best) + "." for w in whatifs]
    lost = lost_because(ans)
    if lost:
        sentences.append(
            "Other candidates: " + "; ".join(f"{o.plan} ({why})" for o, why in lost[:4]) + "."
        )
    return ServeExplanation(ans, best, tuple(whatifs), tuple(sentences))
