"""Where a model lives on a deployment, as plain data: what ``hwsim map`` prints and what the
report draws, for every device kind.

A mapper describes its own placement (:meth:`hwsim.sim.mapper.Mapper.placement`): a JSON
``summary`` and ``views``, each a titled explanation with one or more :class:`Panel` drawings
made of :class:`Mark` items in a few generic forms. The report turns any view into a plotly
figure (:func:`hwsim.report.mapping_figures.view_figure`) without knowing the device kind, so a
new kind that wants its own picture describes it here, in its mapper, and touches nothing else.

Panel forms (``Panel.form``):

* ``rects``: rectangles ``[x0, x1] × [y0, y1]`` coloured by ``category`` (wafer regions);
* ``points``: square markers at ``(x, y)`` coloured by ``value`` on a scale (LPU chips);
* ``bars``: horizontal bars on row ``y`` from ``base`` to ``base + length``, stacked in order
  when ``base`` is None, coloured by ``category``, one legend entry per ``series`` (RDU units,
  pipeline timelines, op times);
* ``columns``: vertical bars at category ``x`` of height ``length``, one trace per ``series``
  (bytes per memory tier).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from hwsim.plan.model_step import build_step, memory_per_device
from hwsim.plan.workload import op_name
from hwsim.spec.fit import human_bytes

if TYPE_CHECKING:
    from hwsim.plan.layout import Layout
    from hwsim.plan.model_step import StepSpec
    from hwsim.sim.mapper import Mapper
    from hwsim.spec.model import ModelConfig

Form = Literal["rects", "points", "bars", "columns"]


@dataclass(frozen=True)
class Mark:
    """One drawn item (which fields matter depends on the panel's form; see the module
    docstring). ``hover`` is the text shown on hover, ``label`` text drawn on the item."""

    x: float | str = 0.0
    y: float | str = 0.0
    x1: float = 0.0
    y1: float = 0.0
    length: float = 0.0
    base: float | None = None
    category: str = ""
    series: str = ""
    value: float = 0.0
    hover: str = ""
    label: str = ""


@dataclass(frozen=True)
class Panel:
    """One drawing: marks of one form with axis titles (ranges in the axis's units)."""

    form: Form
    title: str
    marks: tuple[Mark, ...]
    x_title: str = ""
    y_title: str = ""
    x_range: tuple[float, float] | None = None
    y_range: tuple[float, float] | None = None
    y_reversed: bool = False
    equal_aspect: bool = False
    log_y: bool = False
    colour_title: str = ""


@dataclass(frozen=True)
class View:
    """A section of the page: a title, a paragraph that explains it, and its panels drawn as
    one figure (``heading`` its title, ``height`` in pixels)."""

    title: str
    text: str
    heading: str
    panels: tuple[Panel, ...]
    height: int = 720


@dataclass(frozen=True)
class Placement:
    """A deployment's placement: ``summary`` (JSON-able, printed by ``hwsim map``; its scalar
    entries are table rows), ``views`` (drawings) and ``reasoning`` (lines the capacity
    reasoning gains, e.g. why this layout)."""

    kind: str
    summary: dict[str, Any]
    views: tuple[View, ...] = ()
    reasoning: tuple[str, ...] = field(default=())


def us(t: float) -> str:
    """Seconds as microseconds for hover texts."""
    return f"{t * 1e6:.2f} us"


def default_placement(
    mapper: Mapper, model: ModelConfig, layout: Layout, spec: StepSpec, stage_time_s: float = 0.0
) -> Placement:
    """What every kind can say: one device's memory (weights, KV cache, capacity) and the
    operators of the first layer of stage 0 with their times, as the mapper times them."""
    w, kv = memory_per_device(model, layout, spec)
    graph = build_step(model, layout, spec)
    layer = graph.stages[0][0]
    marks = []
    for so in layer.ops:
        t = mapper.time(so.op)
        marks.append(
            Mark(
                y="one layer",
                length=t.time_s * 1e6,
                category=so.category,
                series=op_name(so.op),
                hover=f"{op_name(so.op)}: {us(t.time_s)}, bound {t.bound}",
            )
        )
    cap = mapper.capacity_bytes
    level = mapper.device.main_memory.name
    memory = (
        Mark(x="weights", length=w, series="this layout", hover=human_bytes(w)),
        Mark(x="KV cache", length=kv, series="this layout", hover=human_bytes(kv)),
        Mark(x=level, length=cap, series="capacity", hover=human_bytes(cap)),
    )
    view = View(
        title=f"One {layer.name} on one {mapper.unit}",
        text=(
            f"The operators of one {layer.name} as the {mapper.kind} mapper times them, in "
            f"order (each bar a share of the layer's time), and what one {mapper.unit} holds "
            f"against its {level.upper()} capacity."
        ),
        heading=f"{model.name} on {layout.devices} × {mapper.device.name} ({layout})",
        panels=(
            Panel("bars", f"one {layer.name}: time per operator", tuple(marks), x_title="us"),
            Panel(
                "columns",
                f"one {mapper.unit}: bytes held and capacity",
                memory,
                y_title="bytes",
                log_y=True,
            ),
        ),
    )
    summary = {
        "kind": mapper.kind,
        "devices": layout.devices,
        "stages": layout.pp,
        "weights_per_device_bytes": w,
        "kv_per_device_bytes": kv,
        "capacity_per_device_bytes": cap,
    }
    if stage_time_s > 0:
        summary["stage_time_s"] = stage_time_s
    return Placement(mapper.kind, summary, (view,))
