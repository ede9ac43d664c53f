"""Facts for docs/workload-classes.md: ``hwsim compare --traffic`` for Llama-3.1-70B on the seven
device types and the three workload classes (the answer table, the generated paragraphs, the
Pareto chart), and the published per-user speeds each device's result can be checked against."""

from __future__ import annotations

from typing import Any

from _gen.core import Table
from hwsim.report.class_figures import class_paragraph, pareto_figure
from hwsim.report.workload_sections import DEVICES, comparisons
from hwsim.serve.classes import ClassComparison
from hwsim.validate.nongpu import load_table

MODEL = "llama-3.1-70b"
#: Published per-user decode speeds of this model (or its predecessor, where that is all a
#: vendor published) in workloads/measured/nongpu_decode_published.csv.
CHECK_MODELS = ("llama-3.1-70b", "llama-2-70b")


def _usd(v: float | None) -> str:
    return "—" if v is None else f"${v:,.2f}"


def _table(cmp: ClassComparison) -> Table:
    rows = []
    for r in cmp.rows:
        ok = r.meets_slo
        rows.append([
            r.cls, r.device, "yes" if ok else "no", r.devices if ok else "—",
            (r.deployment or "—") if ok else "—", _usd(r.usd_per_million_output_tokens),
            f"{r.kwh_per_million_output_tokens:,.1f}" if r.kwh_per_million_output_tokens else "—",
            f"{r.tokens_per_s_per_user:,.0f}" if r.tokens_per_s_per_user else "—",
            r.binding_constraint,
        ])  # fmt: skip
    return Table(
        ["class", "device", "meets SLO", "devices", "deployment", "$/Mtok", "kWh/Mtok",
         "tok/s/user", "binding constraint"],
        rows,
        "llcrlrrrl",
    )  # fmt: skip


def _checks(cmp: ClassComparison) -> Table:
    """Each published per-user speed next to hwsim's single-sequence speed on the deployment
    the chat search chose (1 / TPOT floor) and the chat class's mean speed under load."""
    rows = []
    chat = {r.device: r for r in cmp.of("chat")}
    for p in load_table():
        if p.model not in CHECK_MODELS or p.metric != "tok/s/user" or p.device not in chat:
            continue
        r = chat[p.device]
        one = 1.0 / r.tpot_floor_s if r.tpot_floor_s else None
        gap = f"{one / p.value - 1:+.0%}" if one else "—"
        rows.append([
            p.device, p.model, f"{p.value:,.0f} ({p.decode}, {p.dtype}, {p.date})", p.source,
            r.deployment or "—", f"{one:,.0f}" if one else "—", gap,
            f"{r.tokens_per_s_per_user:,.0f}" if r.tokens_per_s_per_user else "—",
        ])  # fmt: skip
    return Table(
        ["device", "published for", "published tok/s/user", "source", "hwsim chat deployment",
         "hwsim 1 user", "gap", "hwsim chat load"],
        rows,
        "llrllrrr",
    )  # fmt: skip


def facts() -> dict[str, Any]:
    (cmp,) = comparisons((MODEL,), DEVICES, workers=2)
    paragraphs = "\n\n".join(class_paragraph(cmp, c) for c in cmp.classes)
    return {
        "table": _table(cmp),
        "paragraphs": paragraphs,
        "figure": pareto_figure(cmp),
        "checks": _checks(cmp),
    }
