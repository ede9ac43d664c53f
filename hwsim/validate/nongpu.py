"""Suite ``nongpu-decode``: the wafer-scale, dataflow and LPU mappers against the per-user decode
speeds the vendors published (``workloads/measured/nongpu_decode_published.csv``, provenance in
the ``.md`` beside it). A check, not a fit: no parameter is derived from these rows and the suite
has no target; docs/devices/*.md discusses each gap (SambaNova's 70B/405B speeds exceed the HBM
bound of plain decode; Groq's are ~4x slower per layer than the model's chip-to-chip network).
"""

from __future__ import annotations

import csv
from pathlib import Path

from hwsim.plan.model_step import StepSpec, memory_per_device
from hwsim.serve.capacity import min_devices
from hwsim.serve.layout import Layout, parse_layout
from hwsim.serve.step import simulate_step
from hwsim.sim.mapper import mapper_for
from hwsim.spec.errors import SpecError
from hwsim.spec.load import load_device
from hwsim.spec.model import ModelConfig, load_model_config
from hwsim.validate.core import Row, SuiteResult, register

TABLE = (
    Path(__file__).resolve().parents[2] / "workloads" / "measured" / ("nongpu_decode_published.csv")
)
CONTEXT = 2048


def _layout(model: ModelConfig, device: str, text: str, spec: StepSpec) -> Layout:
    mapper = mapper_for(load_device(device))
    if text == "auto":
        return min_devices(
            model, mapper, batch=1, context=CONTEXT, dtype=spec.dtype, kv_dtype=spec.kv_dtype
        ).layout
    if text == "auto-pp":
        for pp in range(1, model.layers + 1):
            w, kv = memory_per_device(model, Layout(pp=pp), spec)
            if w + kv <= mapper.capacity_bytes:
                return Layout(pp=pp)
        raise SpecError(f"{model.name} fits no pipeline of {device}")
    return parse_layout(text)


def rows() -> list[Row]:
    out = []
    with TABLE.open(newline="") as fh:
        for rec in csv.DictReader(fh):
            model = load_model_config(rec["model"])
            dt = rec["dtype"]
            spec = StepSpec("decode", 1, CONTEXT, dt, dt)
            lay = _layout(model, rec["device"], rec["layout"], spec)
            r = simulate_step(model, mapper_for(load_device(rec["device"])), lay, spec)
            out.append(
                Row(
                    f"{rec['model']} {dt} on {lay.devices} {rec['device']} ({lay})",
                    float(rec["tokens_per_s_per_user"]),
                    r.tokens_per_s_per_user,
                    "tok/s/user",
                    rec["device"],
                )
            )
    return out


@register("nongpu-decode")
def suite() -> SuiteResult:
    return SuiteResult("nongpu-decode", tuple(rows()), {})
