"""The report's "Which hardware for which workload" section: ``hwsim compare --traffic`` for
Llama-3.1-70B and DeepSeek-V3 on the seven device types and the three workload classes, the
Pareto charts and one generated paragraph per class (:mod:`hwsim.report.class_figures`)."""

from __future__ import annotations

from typing import Any

from hwsim.report.class_figures import compare_sections
from hwsim.report.page import Section
from hwsim.serve.classes import CLASSES, ClassComparison, compare_classes

#: The models and device types the report compares (one of each device kind, and the GPUs
#: people choose between).
MODELS: tuple[str, ...] = ("llama-3.1-70b", "deepseek-v3")
DEVICES: tuple[str, ...] = (
    "h100-sxm", "h200", "b200", "mi300x", "cerebras-wse3", "groq-lpu", "sambanova-sn40l",
)  # fmt: skip


def comparisons(
    models: tuple[str, ...] = MODELS,
    devices: tuple[str, ...] = DEVICES,
    workers: int | None = None,
) -> list[ClassComparison]:
    """Every (model, class, device) search, spread over a local process pool."""
    from hwsim.sweep.executors import LocalExecutor

    with LocalExecutor(workers) as ex:
        return [compare_classes(m, CLASSES, devices, map_fn=ex.map_unordered) for m in models]


def workload_sections(ctx: Any) -> list[Section]:
    """One section per model of the report context (``compare_models`` on
    ``compare_devices``): chart, paragraphs, table."""
    models = getattr(ctx, "compare_models", MODELS)
    devices = getattr(ctx, "compare_devices", DEVICES)
    return [s for cmp in comparisons(models, devices) for s in compare_sections(cmp)]
