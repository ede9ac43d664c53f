"""One call for a served step: resolve model, device, cluster, device count and layout, pick the
overlap, simulate. The CLI commands (decode, prefill, size, compare, whatif) and the report all
go through :func:`serve_step`.

Device count and layout:

* ``layout`` given: it fixes the device count (``devices``, if also given, must agree);
* ``devices = N``: the layouts of N devices that hold the model, fewest pipeline stages and
  then most TP first (:func:`hwsim.serve.capacity.layouts_that_fit`);
* ``devices = "auto"`` (default): the fastest per token of a few counts, one rule for every
  kind (:func:`hwsim.serve.capacity.auto_device_counts`): the fewest devices that hold weights
  and KV cache (:func:`hwsim.serve.capacity.min_devices`), the powers of two above them up to
  one fast domain (a GPU node, a SambaRack, a wafer), and whole domains; ties go to fewer
  devices.

Overlap ``auto`` simulates one micro-batch and, where there is communication to hide, dual
micro-batch, and keeps the faster (what a serving engineer would choose).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hwsim.plan.layout import Layout, check_layout, parse_layout
from hwsim.plan.model_step import StepSpec
from hwsim.serve.capacity import auto_layouts, layouts_that_fit, min_devices
from hwsim.serve.request import StepRequest
from hwsim.serve.step import StepResult, simulate_step
from hwsim.sim.mapper import Mapper, mapper_for
from hwsim.spec.device import Device
from hwsim.spec.errors import SpecError
from hwsim.spec.load import load_device
from hwsim.spec.model import ModelConfig, load_model_config

if TYPE_CHECKING:
    from hwsim.spec.cluster import Cluster


def default_cluster_name(device_key: str, device: Device) -> str | None:
    """The built-in cluster made of ``device_key`` devices, else one of the same architecture
    (an H200 box is wired like a DGX H100), else None (device ports only)."""
    try:
        from hwsim.spec.cluster import list_clusters, load_cluster
    except ImportError:  # pragma: no cover - clusters are part of the spec package
        return None
    same_arch = None
    for name in list_clusters():
        c = load_cluster(name)
        if c.device == device_key:
            return name
        if same_arch is None:
            try:
                if load_device(c.device).arch == device.arch:
                    same_arch = name
            except SpecError:
                continue
    return same_arch


@dataclass(frozen=True)
class Target:
    """A device (possibly with ``--set`` overrides applied) and the mapper that times it."""

    key: str
    device: Device
    mapper: Mapper
    cluster: str | None


def make_target(
    device: str | Device, cluster: str | Cluster | None = "default", key: str = ""
) -> Target:
    """Load ``device`` (a name or an already-modified :class:`Device`) and its mapper. ``cluster``
    ``"default"`` picks the built-in cluster of that device, ``None`` uses the device's ports; a
    :class:`Cluster` object (e.g. with overridden link speeds) is used as it is."""
    dev = load_device(device) if isinstance(device, str) else device
    k = key or (device if isinstance(device, str) else dev.name)
    if cluster is not None and not isinstance(cluster, str):
        return Target(k, dev, mapper_for(dev, cluster), cluster.name)
    name = default_cluster_name(k, dev) if cluster == "default" else cluster
    spec = None
    if name:
        from hwsim.spec.cluster import load_cluster

        spec = load_cluster(name)
    return Target(k, dev, mapper_for(dev, spec), name)


def profile_target(target: Target, overrides: Sequence[str]) -> Target:
    """``target`` with its wafer/dataflow/LPU mapper's profile changed by ``overrides``
    (``"path=value"``, the ``profile.*`` what-ifs); errors name the profile, and a kind without
    one is refused."""
    from hwsim.sim.mapper import mapper_profile, profile_message

    mapper = target.mapper
    try:
        mapper_profile(mapper)
    except SpecError as err:  # on the command line, the --set option said it
        raise SpecError(str(err), key="set") from None
    try:
        changed = mapper.with_profile(overrides)
    except SpecError as err:  # name the profile file, not the schema class
        raise SpecError(profile_message(str(err), mapper), key="set") from None
    return dataclasses.replace(target, mapper=changed)


def resolve_layout(
    model: ModelConfig,
    target: Target,
    spec: StepSpec,
    devices: int | str | None = "auto",
    layout: str | Layout | None = None,
) -> Layout:
    """The layout to simulate (see the module docstring); ``"auto"`` gives the capacity floor's
    (:func:`serve_step` also tries :func:`auto_candidates`)."""
    if layout:
        lay = parse_layout(layout) if isinstance(layout, str) else layout
        if isinstance(devices, int) and devices != lay.devices:
            raise SpecError(
                f"--devices {devices} disagrees with layout {lay} ({lay.devices} devices)",
                key="devices",
            )
        check_layout(model, lay)
        return lay
    if devices in (None, "auto"):
        return min_devices(model, target.mapper, spec, device_name=target.key).layout
    if isinstance(devices, str):
        if not devices.isdigit() or int(devices) < 1:
            raise SpecError(
                f"expected a positive integer or 'auto', got {devices!r}", key="devices"
            )
        devices = int(devices)
    fit = layouts_that_fit(model, target.mapper, devices, spec)
    if not fit:
        plan = min_devices(model, target.mapper, spec, device_name=target.key)
        raise SpecError(
            f"{model.name} does not fit {devices} × {target.key} at {spec.dtype} with batch "
            f"{spec.batch} × {spec.context} tokens; needs ≥ {plan.devices} ({plan.layout})",
            key="devices",
        )
    return fit[0]


def auto_candidates(model: ModelConfig, target: Target, spec: StepSpec) -> list[Layout]:
    """The layouts ``devices="auto"`` chooses among (see the module docstring)."""
    plan = min_devices(model, target.mapper, spec, device_name=target.key)
    return auto_layouts(model, target.mapper, plan, spec)


def resolve(req: StepRequest) -> tuple[ModelConfig, Target]:
    """The request's model config and target (device, mapper, cluster), loaded."""
    cfg = load_model_config(req.model) if isinstance(req.model, str) else req.model
    dev = req.device
    target = dev if isinstance(dev, Target) else make_target(dev, req.cluster)
    return cfg, target


def serve_step(req: StepRequest, *, strict: bool = True, timeline: bool = True) -> StepResult:
    """Simulate one prefill or decode step (see the module docstring). ``strict``: refuse a
    layout whose weights and KV cache do not fit (else report ``fits=False``); ``timeline``:
    keep the first stage's spans (off for searches)."""
    cfg, target = resolve(req)
    base = req.step_spec(target.mapper.fabric.devices_per_node)
    if not req.layout and req.devices in (None, "auto"):
        layouts = auto_candidates(cfg, target, base)
    else:
        layouts = [resolve_layout(cfg, target, base, req.devices, req.layout)]
    best: StepResult | None = None
    for lay in layouts:  # in growing device count: a tie keeps the fewer devices
        r = _best_overlap(cfg, target, lay, base, req, strict, timeline)
        if best is None or _per_token(r) < _per_token(best):
            best = r
    assert best is not None
    return best


def _per_token(r: StepResult) -> float:
    return r.step_time_s / r.tokens_per_step


def overlap_options(req: StepRequest, lay: Layout, base: StepSpec) -> list[int]:
    """Micro-batch counts to try: one, two (dual micro-batch overlap) or both (``auto``); a
    pipeline's micro-batches are one per stage, as far as sequences allow."""
    if lay.pp > 1:
        return [max(1, min(lay.pp, -(-base.batch // lay.dp)))]
    return {"none": [1], "dual": [2]}.get(req.overlap, [1, 2])


def _best_overlap(
    cfg: ModelConfig,
    target: Target,
    lay: Layout,
    base: StepSpec,
    req: StepRequest,
    strict: bool,
    timeline: bool,
) -> StepResult:
    """``lay`` simulated with the overlap options ``req.overlap`` allows; the fastest per
    token."""
    best: StepResult | None = None
    for mb in overlap_options(req, lay, base):
        spec = dataclasses.replace(base, micro_batches=mb)
        r = simulate_step(
            cfg,
            target.mapper,
            lay,
            spec,
            mtp_acceptance=req.mtp_acceptance,
            strict=strict,
            device_name=target.key,
            timeline=timeline,
        )
        if best is None or _per_token(r) < _per_token(best):
            best = r
        if r.micro_batches < mb or lay.pp > 1:  # too few sequences to split: the same again
            break
    assert best is not None
    return best
