"""What the three non-GPU mappers share: capacity refusals, the attention tile plan from the
kind's own SRAM, a profile loader, and collectives that pick their algorithm by message size.

The wafer-scale (:mod:`hwsim.sim.wafer`), dataflow (:mod:`hwsim.sim.dataflow`) and LPU
(:mod:`hwsim.sim.lpu`) mappers are *spatial*: a model is laid out in space (regions of a wafer,
stages of a fused pipeline, chips of a rack) instead of being run kernel by kernel. Each
subclasses :class:`SpatialMapper`, loads its profile (``_setup``), describes its links
(``_links``) and overrides the op hooks ``gemm``, ``attention`` and ``elementwise``; MoE blocks
are timed part by part (:meth:`hwsim.sim.mapper.Mapper.moe`) unless a kind overrides ``moe``.

Collectives (:func:`collective_on`) follow the alpha-beta model of
:mod:`hwsim.sim.collectives`, but choose, as NCCL does by message size, the faster of

* ``ring``: ``2(n-1)`` steps of ``S/n`` bytes over one peer link
  (all-reduce ``2(n-1)/n · S / B_peer + 2(n-1) α``);
* ``direct`` (two-shot): every device sends ``S/n`` to each of its ``n-1`` peers at once over
  its own ports, reduces, and sends the result back
  (all-reduce ``2 · (S/n) / min(B_peer, B_inject/(n-1)) + 2 α``); small decode messages
  (16 KB per token) are latency-bound, so this is what a 16-way SN40L or 8-way Groq node uses;
* ``hierarchical`` when the group spans several fast domains (Groq nodes of 8 chips, racks):
  direct inside the domain, then across domains over the slower outer links.

Sources: R. Thakur, R. Rabenseifner, W. Gropp, "Optimization of collective communication
operations in MPICH", IJHPCA 19(1), 2005 (ring, direct and hierarchical algorithms).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, Self, TypeVar

from hwsim.plan.attention import AttentionPlan, AttentionShape, plan_attention
from hwsim.plan.workload import Attention, Collective, Gemm, MoE, Op, OpTiming
from hwsim.sim.mapper import Mapper, capacity_error, override
from hwsim.spec.device import DTYPE_BYTES, Device
from hwsim.spec.fit import human_bytes
from hwsim.spec.profiles import load_profile, profile_key_used
from hwsim.spec.quantity import Strict

if TYPE_CHECKING:
    from hwsim.spec.cluster import Cluster

P = TypeVar("P", bound=Strict)

#: Streaming ops that need a reduction along the row (a max or a sum over ``cols``).
ROW_REDUCTIONS = ("rmsnorm", "layernorm", "softmax")


@dataclass(frozen=True)
class Links:
    """What one device sees of the network, for collectives (bytes/s per direction, seconds).

    ``domain`` devices (a Groq node, a SambaRack) are one hop apart over ``peer_Bps`` links, with
    ``inject_Bps`` out of the device to all of them at once; beyond the domain, ``outer_Bps``
    per device and ``outer_latency_s`` end to end."""

    peer_Bps: float
    inject_Bps: float
    hop_latency_s: float
    domain: int
    outer_Bps: float
    outer_latency_s: float
    kind: str
    outer_kind: str
    source: str


def _ar_factor(kind: str) -> tuple[float, int]:
    """(bytes on the wire per rank in units of S·(n-1)/n, latency steps of the direct form)."""
    if kind == "all-reduce":
        return 2.0, 2
    return 1.0, 1


def _direct(kind: str, s: float, n: int, peer: float, inject: float, lat: float) -> float:
    """Direct algorithm inside one domain (every pair has its own path)."""
    if kind == "p2p":
        return s / peer + lat
    wire, steps = _ar_factor(kind)
    per_peer = min(peer, inject / max(1, n - 1))
    return wire * (s / n) / per_peer + steps * lat if n > 1 else 0.0


def _ring(kind: str, s: float, n: int, peer: float, lat: float) -> float:
    if kind in ("p2p", "all-to-all"):
        return math.inf  # no ring form
    wire, _ = _ar_factor(kind)
    steps = int(wire) * (n - 1)
    return steps * (s / n / peer + lat)


def collective_on(op: Collective, links: Links) -> OpTiming:
    """Time of ``op`` on ``links``: the fastest of ring, direct and hierarchical (see above)."""
    n, s = op.group, op.bytes
    name = op.name or op.kind
    if n <= 1 or s <= 0:
        return OpTiming(name, 0.0, "none", source="collective:spatial")
    options: dict[str, float] = {}
    # a group that fits the fast domain is one hop apart whatever the layout called it (the
    # serving layer guesses scopes from 8-GPU nodes); a p2p send keeps its scope: it says
    # whether the next pipeline stage sits in the same domain
    inside = op.scope == "intra" if op.kind == "p2p" else n <= links.domain
    if inside:
        options["direct"] = _direct(
            op.kind, s, n, links.peer_Bps, links.inject_Bps, links.hop_latency_s
        )
        options["ring"] = _ring(op.kind, s, n, links.peer_Bps, links.hop_latency_s)
        wire_kind = links.kind
    else:
        local = max(1, min(n, links.domain))
        groups = math.ceil(n / local)
        if op.kind == "p2p":
            options["direct"] = s / links.outer_Bps + links.outer_latency_s
        elif op.kind == "all-to-all":
            # the share for other domains leaves over the outer links; local peers in parallel
            outer = s * (n - local) / n / links.outer_Bps + links.outer_latency_s
            inner = _direct(
                op.kind, s * local / n, local, links.peer_Bps, links.inject_Bps, links.hop_latency_s
            )
            options["hierarchical"] = max(outer, inner)
        else:
            # reduce-scatter (or gather) inside the domain, the collective on a 1/local shard
            # across domains, then the reverse inside the domain
            inner = (
                _direct(op.kind, s, local, links.peer_Bps, links.inject_Bps, links.hop_latency_s)
                if local > 1
                else 0.0
            )
            shard = s / local
            wire, steps = _ar_factor(op.kind)
            across = wire * (shard / groups) * (groups - 1) / links.outer_Bps + (
                steps * links.outer_latency_s
            )
            options["hierarchical"] = inner + across
            ring_lat = links.outer_latency_s if local == 1 else links.hop_latency_s
            ring_bw = links.outer_Bps if local == 1 else min(links.peer_Bps, links.outer_Bps)
            options["ring"] = _ring(op.kind, s, n, ring_bw, ring_lat)
        wire_kind = links.outer_kind
    algo = min(options, key=lambda k: options[k])
    t = options[algo]
    frac = (n - 1) / n
    wire_bytes = {"all-reduce": 2 * frac * s, "p2p": s}.get(op.kind, frac * s)
    lat_part = (2 if op.kind == "all-reduce" else 1) * links.hop_latency_s
    return OpTiming(
        op=name,
        time_s=t,
        bound=wire_kind if t > 2 * lat_part else "latency",
        bytes_by_level={wire_kind: wire_bytes},
        notes=(
            f"{op.kind} over {n} {op.scope}: {algo} algorithm ({', '.join(sorted(options))} "
            f"considered) on {links.source}",
        ),
        source="collective:spatial",
    )


class SpatialMapper(Mapper, Generic[P]):
    """Base of the wafer-scale, dataflow and LPU mappers (see the module docstring): a
    calibration profile that what-ifs may change, collectives on the kind's :class:`Links`,
    and capacity refusals for ops whose resident data does not fit one device."""

    def __init__(
        self,
        device: Device,
        cluster: Cluster | None = None,
        profile_overrides: Sequence[str] = (),
    ) -> None:
        #: ``"path=value"`` changes to the kind's profile (a what-if: ``op_latency=x0.5``)
        self.profile_overrides = tuple(profile_overrides)
        self._cluster_arg = cluster  # as given: the base class adapts it to the device
        super().__init__(device, cluster)
        self._profile, self._profile_key = self._setup()
        self.links = self._links()

    @property
    @override
    def profile(self) -> P:
        return self._profile

    @property
    @override
    def profile_key(self) -> str:
        return self._profile_key

    @override
    def with_profile(self, overrides: Sequence[str]) -> Self:
        """A fresh mapper of the same device and cluster whose profile has ``overrides``
        (``"path=value"``, as ``hwsim whatif --set profile.PATH=VALUE``) on top of this one's:
        the kind's parameters that are not datasheet values (a fitted per-operator latency, a
        per-core data budget, an HBM efficiency) become what-if levers like the device's."""
        return self._rebuild(self.profile_overrides + tuple(overrides))

    def _rebuild(self, profile_overrides: tuple[str, ...]) -> Self:
        return type(self)(self.device, self._cluster_arg, profile_overrides=profile_overrides)

    @property
    @override
    def domain_devices(self) -> int:
        """Devices one hop apart on the kind's fast links: a GroqNode, a SambaRack, one wafer."""
        return max(1, self.links.domain)

    # ---- what a kind provides -------------------------------------------------------------
    def _setup(self) -> tuple[P, str]:
        """Load the kind's profile (:meth:`load`) and anything derived from it; returns the
        profile and its key. Called before :meth:`_links`."""
        raise NotImplementedError(f"{type(self).__name__} loads no profile")

    def _links(self) -> Links:
        raise NotImplementedError(f"{type(self).__name__} describes no links")

    # ---- shared --------------------------------------------------------------------------
    def load(self, model: type[P]) -> tuple[P, str]:
        """This device's entry of the kind's profile (with :attr:`profile_overrides` applied),
        and which key was used."""
        key = profile_key_used(self.profile_family, self.device.arch)
        prof = load_profile(self.profile_family, self.device.arch, model)
        if self.profile_overrides:
            from hwsim.spec.overrides import apply_overrides

            prof = apply_overrides(prof, list(self.profile_overrides))
            key += f" with {', '.join(self.profile_overrides)}"
        return prof, key

    @override
    def collective(self, op: Collective) -> OpTiming:
        return collective_on(op, self.links)

    @override
    def refuse_reason(self, op: Op) -> str | None:
        """Why ``op`` cannot run on one device (weights or KV that do not fit), else None."""
        need: tuple[str, float] | None = None
        if isinstance(op, Gemm) and op.weights == "resident":
            need = (f"weights of {op.name}", op.weight_bytes)
        elif isinstance(op, Attention):
            need = (f"KV cache of {op.name}", op.kv_bytes)
        elif isinstance(op, MoE):
            local = op.local_experts * op.expert_weight_bytes
            need = (f"weights of the {op.local_experts} local experts of {op.name}", local)
        if need is not None and need[1] > self.resident_capacity_bytes(op):
            return self.capacity_message(*need, capacity=self.resident_capacity_bytes(op))
        return None

    def resident_capacity_bytes(self, op: Op) -> float:
        """Bytes of ``op``'s resident data one device can hold (main memory by default)."""
        return self.capacity_bytes

    def capacity_message(self, what: str, need: float, capacity: float | None = None) -> str:
        cap = self.capacity_bytes if capacity is None else capacity
        if cap == self.capacity_bytes:
            return str(capacity_error(what, need, self))
        level = self.device.main_memory.name.upper()
        return (
            f"{what} of {human_bytes(need)} does not fit the {human_bytes(cap)} {level} of 1 "
            f"{self.unit}; needs ≥ {math.ceil(need / cap)} {self.unit}s"
        )

    def attention_plan(self, shape: AttentionShape, kernel: str = "flash") -> AttentionPlan:
        """The attention tile plan with tiles sized from this device's own on-chip SRAM (per
        core on a wafer, per superlane on an LPU, per PCU on an RDU); the functional executor
        runs the same plan and counts the same bytes."""
        return plan_attention(shape, self.device, kernel=kernel)

    def rate(self, dtype: str) -> float:
        """Dense matrix FLOP/s of the whole device at ``dtype``."""
        return self.device.peak_flops(dtype)

    def vector_rate(self) -> float:
        """Vector FP32 FLOP/s of the whole device (a quarter of the matrix rate if unlisted)."""
        v = self.device.compute.vector_fp32
        return v.value if v is not None else self.device.peak_flops("bf16") / 4


def gemm_activation_bytes(op: Gemm) -> float:
    """A and C of a GEMM (the activations; B is the weight or the second activation)."""
    b = DTYPE_BYTES[op.dtype]
    extra = op.n * op.k if op.weights == "activation" else 0
    return float(op.count) * (op.m * op.k + op.m * op.n + extra) * b
