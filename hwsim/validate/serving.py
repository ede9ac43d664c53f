"""Suite ``serving``: ``hwsim serve`` against measured H100 serving throughput.

The table (``workloads/measured/gpu_serving_h100.csv``, provenance in the ``.md`` beside it)
holds MLPerf Inference Llama-2-70B results (Offline and Server, rounds v4.1 and v5.0, 8× H100,
TensorRT-LLM) and TensorRT-LLM's ``trtllm-bench`` maximum throughput at 1000/1000 tokens (FP8,
Llama-3.1-8B on 1 H100, Llama-3.3-70B on 2, Llama-3.1-405B on 8). Each row is predicted by
:func:`hwsim.serve.serving.simulate_serving` with the deployment the submitter states (layout,
replicas, batch size, FP8) and the row's traffic:

* MLPerf Offline: the ``mlperf-llama2-70b`` profile, every request at t = 0, output tokens over
  the time until the last one finished (the Offline metric);
* MLPerf Server: the highest Poisson rate with p99 TTFT ≤ 2 s and p99 TPOT ≤ 200 ms
  (:func:`hwsim.serve.serving.find_max_qps`), and the output tokens/s at that rate;
* ``trtllm-bench``: 1000-token prompts and 1000-token outputs, all at once, output tokens over
  the makespan (its "Total Output Throughput").

One engine parameter, the per-iteration overhead (``devices/profiles/engine.yaml``), is fitted
on the rows of the newest software generation only (``python -m hwsim.validate.serving_fit``):
MLPerf v5.0 and the TensorRT-LLM v1.0 page. The v4.1 rows (an older TensorRT-LLM on the same
hardware, 22-28% slower) are predicted with the same engine and scored separately (group
``mlperf v4.1``): they show what one software generation is worth, not a model error to fit
away.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from hwsim.serve.metrics import SLO
from hwsim.serve.serving import ServeRequest, ServeResult, find_max_qps, simulate_serving
from hwsim.serve.steptime import default_cache_dir
from hwsim.serve.traffic import Lengths, Offline, TrafficSpec
from hwsim.spec.errors import SpecError
from hwsim.validate.core import Row, SuiteResult, register

HERE = Path(__file__).resolve().parents[2] / "workloads" / "measured"
TABLE = HERE / "gpu_serving_h100.csv"
#: Targets on the calibrated generation (v5.0 and TensorRT-LLM v1.0); the v4.1 rows are shown.
TARGETS = {"mape v5.0": 0.15, "mape trtllm-bench": 0.15}
#: MLPerf Llama-2-70B Server latency limits (inference_rules.adoc, v4.1 and v5.0).
MLPERF_SLO = SLO((("ttft", "p99", 2.0), ("tpot", "p99", 0.2)))
#: Requests simulated per MLPerf run (the data set's 24,576 samples: the Offline metric counts
#: the tail of the run, so the run has the measured one's length).
MLPERF_REQUESTS = 24576
#: Seconds of arrivals per Server search run: LoadGen's minimum duration (600 s), long enough
#: for an overloaded rate to fill the batch slots and the KV cache and show in TTFT.
SERVER_DURATION_S = 600.0
#: trtllm-bench's request count for 1000/1000 in the Performance Overview.
TRTLLM_REQUESTS = 3000


@dataclass(frozen=True)
class Case:
    """How hwsim runs one row (the deployment as its source states it)."""

    model: str
    layout: str
    replicas: int
    max_batch: int
    scenario: str  #: offline | server
    traffic: str  #: mlperf | fixed-1000
    group: str


#: Row index (in table order) → the deployment its source describes.
CASES = (
    Case("llama-2-70b", "tp=2", 4, 896, "offline", "mlperf", "mlperf v4.1"),  # TP2 x4, bs 896
    Case("llama-2-70b", "tp=2", 4, 896, "server", "mlperf", "mlperf v4.1"),
    Case("llama-2-70b", "pp=2", 4, 1024, "offline", "mlperf", "mlperf v5.0"),  # PP2 x4, bs 1024
    Case("llama-2-70b", "pp=2", 4, 1024, "server", "mlperf", "mlperf v5.0"),
    Case("llama-3.1-405b", "tp=8", 1, 2048, "offline", "fixed-1000", "trtllm-bench"),
    Case("llama-3.1-70b", "tp=2", 1, 2048, "offline", "fixed-1000", "trtllm-bench"),
    Case("llama-3.1-8b", "tp=1", 1, 2048, "offline", "fixed-1000", "trtllm-bench"),
)

FIXED_1000 = TrafficSpec(
    name="trtllm-bench 1000/1000",
    prompt_tokens=Lengths(fixed=1000),
    output_tokens=Lengths(fixed=1000),
    arrival=Offline(),
)


@dataclass(frozen=True)
class Measured:
    row: int
    system: str
    value: float
    case: Case

    @property
    def label(self) -> str:
        c = self.case
        reps = f"{c.replicas} x " if c.replicas > 1 else ""
        return f"{c.group} {c.scenario} {c.model} {reps}{c.layout}"


def load_table(path: Path = TABLE) -> list[Measured]:
    """The table's rows with the deployment each is run with."""
    try:
        rows = list(csv.DictReader(path.read_text(encoding="utf-8").splitlines()))
    except OSError as err:
        raise SpecError(f"cannot read the serving table: {err}", file=str(path)) from None
    if len(rows) != len(CASES):
        raise SpecError(f"expected {len(CASES)} rows, found {len(rows)}", file=str(path))
    return [
        Measured(i + 2, r["system"], float(r["value"]), c)
        for i, (r, c) in enumerate(zip(rows, CASES, strict=True))
    ]


def request_for(m: Measured, *, overhead: str | None = None) -> ServeRequest:
    """The :class:`ServeRequest` that predicts row ``m`` (FP8 weights and KV cache)."""
    c = m.case
    traffic = "mlperf-llama2-70b" if c.traffic == "mlperf" else FIXED_1000
    n = TRTLLM_REQUESTS if c.traffic != "mlperf" else MLPERF_REQUESTS
    server = c.scenario == "server"
    return ServeRequest(
        model=c.model, device="h100-sxm", traffic=traffic, layout=c.layout, replicas=c.replicas,
        dtype="fp8", kv_dtype="fp8", offline=not server, requests=None if server else n,
        duration_s=SERVER_DURATION_S if server else None,
        max_batch=c.max_batch, token_budget=max(8192, c.max_batch), slo=MLPERF_SLO,
        step_cache=default_cache_dir(), engine_overrides=(overhead,) if overhead else (),
    )  # fmt: skip


def predict(m: Measured, *, overhead: str | None = None) -> ServeResult:
    """Row ``m``'s simulation (its Server search, for a Server row)."""
    req = request_for(m, overhead=overhead)
    if m.case.scenario == "server":
        found = find_max_qps(req)
        if found.result is None:
            raise SpecError(f"{m.label}: no rate meets the MLPerf SLOs")
        return found.result
    return simulate_serving(req)


@register("serving")
def suite() -> SuiteResult:
    rows = []
    for m in load_table():
        r = predict(m)
        rows.append(
            Row(m.label, m.value, r.metrics.output_tokens_per_s, "output tok/s", m.case.group)
        )
    return SuiteResult("serving", tuple(rows), dict(TARGETS))
