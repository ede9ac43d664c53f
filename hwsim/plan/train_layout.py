"""Parallel layouts of a training step: ``tp=8,pp=16,dp=48,ep=1,cp=1`` (and ``vpp``), parsed and
checked against a model, a GPU count and a batch, with one-line errors that say what was
expected.

Conventions (Megatron-Core's process-group order, tensor-parallel innermost):

* ``gpus = tp · cp · pp · dp``. A pipeline stage is ``tp · cp · dp`` GPUs; TP ranks are
  adjacent (inside a node), then CP, then DP; PP neighbours are ``tp · cp · dp`` ranks apart.
* MoE layers: ``ep`` ranks of a stage share the routed experts (``ep`` divides ``tp · cp · dp``
  and the expert count); experts are not tensor-split when ``ep > 1`` (expert TP = 1, the
  Megatron-Bridge default for Qwen3 and DeepSeek recipes); the expert weights' data-parallel
  degree is ``tp · cp · dp / ep``. With ``ep = 1`` the experts are split ``tp`` ways like a dense
  FFN.
* ``vpp`` virtual stages (interleaved 1F1B): each GPU holds ``vpp`` chunks of ``layers /
  (pp · vpp)`` layers; stage ``s`` holds chunks ``s, s + pp, …``.
* ``cp``: the sequence is split ``cp`` ways (load-balanced zig-zag chunks, as Megatron-Core's
  ring attention), so ``seqlen`` must be a multiple of ``2 · cp``.
"""

from __future__ import annotations

from dataclasses import dataclass

from hwsim.plan.layout import check_degrees, parse_degrees
from hwsim.spec.errors import SpecError
from hwsim.spec.model import ModelConfig

KEYS = ("tp", "pp", "dp", "cp", "ep", "vpp")
SCHEDULES = ("gpipe", "1f1b", "interleaved", "zb", "dualpipe")
#: how layers are split over stages when ``pp · vpp`` does not divide them
PP_SPLITS = ("exact", "balanced")


@dataclass(frozen=True)
class TrainLayout:
    """Degrees of parallelism of a training step (all ≥ 1)."""

    tp: int = 1
    pp: int = 1
    dp: int = 1
    cp: int = 1
    ep: int = 1
    vpp: int = 1

    def __post_init__(self) -> None:
        check_degrees(self, KEYS)

    @property
    def gpus(self) -> int:
        return self.tp * self.cp * self.pp * self.dp

    @property
    def stage_gpus(self) -> int:
        """GPUs of one pipeline stage (``tp · cp · dp``)."""
        return self.tp * self.cp * self.dp

    @property
    def expert_dp(self) -> int:
        """Data-parallel degree of the routed-expert weights."""
        return self.stage_gpus // self.ep if self.ep > 1 else self.cp * self.dp

    @property
    def chunks(self) -> int:
        """Model chunks of the pipeline (``pp · vpp``)."""
        return self.pp * self.vpp

    def __str__(self) -> str:
        return ",".join(
            f"{k}={getattr(self, k)}"
            for k in KEYS
            if k in ("tp", "pp", "dp") or getattr(self, k) > 1
        )

    def to_dict(self) -> dict[str, int]:
        return {**{k: getattr(self, k) for k in KEYS}, "gpus": self.gpus}


def parse_train_layout(text: str, vpp: int | None = None) -> TrainLayout:
    """``"tp=8,pp=16,dp=48"`` → :class:`TrainLayout` (missing keys are 1; ``vpp`` from
    ``--vpp`` unless the text gives it)."""
    vals = parse_degrees(text, KEYS, "--layout")
    if vpp is not None:
        if "vpp" in vals and vals["vpp"] != vpp:
            raise SpecError(f"vpp={vals['vpp']} in the layout but --vpp {vpp}", key="--vpp")
        vals["vpp"] = vpp
    return TrainLayout(**vals)


@dataclass(frozen=True)
class BatchSplit:
    """How the global batch is cut: ``micro_batches`` of ``micro_batch`` sequences per DP
    replica per step."""

    global_batch: int
    micro_batch: int
    micro_batches: int


def check_train_layout(
    model: ModelConfig,
    layout: TrainLayout,
    gpus: int,
    seqlen: int,
    global_batch: int,
    micro_batch: int,
    schedule: str,
    pp_split: str = "exact",
) -> BatchSplit:
    """Every bad-input rule of a training layout, each a one-line :class:`SpecError` naming the
    option and what was expected; returns the batch split."""
    lay = layout
    if lay.gpus != gpus:
        raise SpecError(
            f"tp·cp·pp·dp = {lay.tp}·{lay.cp}·{lay.pp}·{lay.dp} = {lay.gpus}, expected the "
            f"{gpus} GPUs of --gpus",
            key="--layout",
        )
    a = model.attention
    if a.heads % lay.tp:
        raise SpecError(
            f"tp={lay.tp} does not divide the {a.heads} attention heads of {model.name}",
            key="--layout",
        )
    if model.ffn.intermediate % lay.tp and _has_dense_layers(model):
        raise SpecError(
            f"tp={lay.tp} does not divide the FFN width {model.ffn.intermediate} of {model.name}",
            key="--layout",
        )
    if schedule not in SCHEDULES:
        raise SpecError(
            f"expected one of {', '.join(SCHEDULES)}, got {schedule!r}", key="--schedule"
        )
    if pp_split not in PP_SPLITS:
        raise SpecError(
            f"expected one of {', '.join(PP_SPLITS)}, got {pp_split!r}", key="--pp-split"
        )
    if lay.vpp > 1 and schedule != "interleaved":
        raise SpecError(f"vpp={lay.vpp} needs --schedule interleaved (got {schedule})", key="--vpp")
    if schedule == "interleaved" and lay.pp < 2:
        raise SpecError("the interleaved schedule needs pp ≥ 2", key="--schedule")
    if schedule == "dualpipe" and (lay.pp < 2 or lay.pp % 2):
        raise SpecError(f"DualPipe needs an even pp ≥ 2, got pp={lay.pp}", key="--schedule")
    chunks = lay.chunks  # DualPipe: each direction runs the whole model over pp stages
    if chunks > model.layers:
        raise SpecError(
            f"pp·vpp = {chunks} model chunks exceed the {model.layers} layers of {model.name}",
            key="--layout",
        )
    if model.layers % chunks and pp_split == "exact":
        what = f"pp·vpp = {lay.pp}·{lay.vpp}" if lay.vpp > 1 else f"pp={lay.pp}"
        raise SpecError(
            f"{what} does not divide the {model.layers} layers of {model.name}; choose a divisor "
            "or pass --pp-split balanced (larger chunks first)",
            key="--layout",
        )
    moe = model.moe
    if moe is None and lay.ep > 1:
        raise SpecError(f"ep={lay.ep}: {model.name} has no experts", key="--layout")
    if moe is not None:
        if moe.n_routed_experts % lay.ep:
            raise SpecError(
                f"ep={lay.ep} does not divide the {moe.n_routed_experts} experts of {model.name}",
                key="--layout",
            )
        if lay.stage_gpus % lay.ep:
            raise SpecError(
                f"ep={lay.ep} must divide the tp·cp·dp = {lay.stage_gpus} GPUs of a pipeline stage",
                key="--layout",
            )
        if lay.ep == 1 and moe.moe_intermediate % lay.tp:
            raise SpecError(
                f"tp={lay.tp} does not divide the expert width {moe.moe_intermediate} (use ep > 1)",
                key="--layout",
            )
    if lay.cp > 1 and seqlen % (2 * lay.cp):
        raise SpecError(
            f"cp={lay.cp} needs a sequence length that is a multiple of 2·cp = {2 * lay.cp} "
            f"(load-balanced ring attention), got {seqlen}",
            key="--seqlen",
        )
    if seqlen < 1:
        raise SpecError(f"expected a positive sequence length, got {seqlen}", key="--seqlen")
    if micro_batch < 1:
        raise SpecError(f"expected a positive micro-batch, got {micro_batch}", key="--micro-batch")
    if global_batch < 1 or global_batch % (lay.dp * micro_batch):
        raise SpecError(
            f"global batch {global_batch} is not a multiple of dp × micro-batch = {lay.dp} × "
            f"{micro_batch} = {lay.dp * micro_batch}",
            key="--global-batch",
        )
    m = global_batch // (lay.dp * micro_batch)
    if schedule == "interleaved" and m % lay.pp:
        raise SpecError(
            f"the interleaved schedule needs micro-batches per replica ({m}) to be a multiple of "
            f"pp={lay.pp} (Megatron-Core's rule)",
            key="--global-batch",
        )
    if schedule == "dualpipe" and (m % 2 or m < 2 * lay.pp):
        raise SpecError(
            f"DualPipe needs an even number of micro-batches per replica ≥ 2·pp = {2 * lay.pp}, "
            f"got {m}",
            key="--global-batch",
        )
    return BatchSplit(global_batch, micro_batch, m)


def _has_dense_layers(model: ModelConfig) -> bool:
    return model.moe is None or model.moe_layers < model.layers


def chunk_layers(layers: int, chunks: int, chunk: int) -> tuple[int, int]:
    """Layers ``[lo, hi)`` of model chunk ``chunk`` of ``chunks``: an even split, the larger
    chunks first (``--pp-split balanced``; exact when ``chunks`` divides ``layers``)."""
    base, extra = divmod(layers, chunks)
    lo = chunk * base + min(chunk, extra)
    return lo, lo + base + (1 if chunk < extra else 0)
