"""One training-step request: every option of ``hwsim train`` with its default, checked on
construction (a :class:`~hwsim.spec.errors.SpecError` naming the option)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from hwsim.plan.train_layout import PP_SPLITS, SCHEDULES
from hwsim.plan.train_memory import ZERO_STAGES
from hwsim.plan.train_step import ATTENTION, RECOMPUTE
from hwsim.spec.errors import SpecError
from hwsim.spec.model import ModelConfig

TRAIN_DTYPES = ("bf16", "fp8")


@dataclass(frozen=True)
class TrainRequest:
    """What to simulate. ``model`` a built-in name, a YAML/``config.json`` path or a config;
    ``cluster`` a built-in cluster (its device by default); ``layout`` ``tp=..,pp=..,dp=..``
    (None: data parallelism over every GPU); ``tokens`` to train (for time and GPU-hours);
    ``price`` in USD per GPU-hour."""

    model: str | ModelConfig
    gpus: int
    seqlen: int
    global_batch: int
    device: str | None = None
    cluster: str | None = None
    layout: str | None = None
    vpp: int | None = None
    zero: int = 1
    recompute: str = "none"
    schedule: str = "1f1b"
    micro_batch: int = 1
    dtype: str = "bf16"
    routing: str = "uniform"
    node_limit: int | None = None
    sp: bool = True
    attention: str = "flash"
    dropout: bool = False
    tp_overlap: bool = False
    dp_overlap: bool = True
    pp_split: str = "exact"
    tokens: float | None = None
    price: float | None = None
    profile: tuple[str, ...] = field(default=())  #: training-profile overrides "path=value"
    timeline: bool = False  #: keep the event log for a timeline / trace

    def __post_init__(self) -> None:
        def need(cond: bool, key: str, msg: str) -> None:
            if not cond:
                raise SpecError(msg, key=key)

        for k in ("gpus", "seqlen", "global_batch", "micro_batch"):
            v = getattr(self, k)
            need(isinstance(v, int) and not isinstance(v, bool) and v >= 1,
                 f"--{k.replace('_', '-')}", f"expected a positive integer, got {v!r}")  # fmt: skip
        need(self.zero in ZERO_STAGES, "--zero", f"expected 0, 1, 2 or 3, got {self.zero!r}")
        need(self.recompute in RECOMPUTE, "--recompute",
             f"expected one of {', '.join(RECOMPUTE)}, got {self.recompute!r}")  # fmt: skip
        need(self.schedule in SCHEDULES, "--schedule",
             f"expected one of {', '.join(SCHEDULES)}, got {self.schedule!r}")  # fmt: skip
        need(self.dtype in TRAIN_DTYPES, "--dtype",
             f"expected one of {', '.join(TRAIN_DTYPES)}, got {self.dtype!r}")  # fmt: skip
        need(self.attention in ATTENTION, "--attention",
             f"expected one of {', '.join(ATTENTION)}, got {self.attention!r}")  # fmt: skip
        need(self.pp_split in PP_SPLITS, "--pp-split",
             f"expected one of {', '.join(PP_SPLITS)}, got {self.pp_split!r}")  # fmt: skip
        need(self.device is not None or self.cluster is not None, "--device",
             "give --device or --cluster")  # fmt: skip
        need(self.vpp is None or (isinstance(self.vpp, int) and self.vpp >= 1), "--vpp",
             f"expected a positive integer, got {self.vpp!r}")  # fmt: skip
        need(self.node_limit is None or self.node_limit >= 0, "--node-limit",
             f"expected 0 (unrestricted) or a node count, got {self.node_limit!r}")  # fmt: skip
        need(self.tokens is None or self.tokens > 0, "--tokens",
             f"expected a positive token count, got {self.tokens!r}")  # fmt: skip
        need(self.price is None or self.price >= 0, "--price",
             f"expected a price ≥ 0 USD per GPU-hour, got {self.price!r}")  # fmt: skip

    def replace(self, **kw: Any) -> TrainRequest:
        vals = {f.name: getattr(self, f.name) for f in fields(self)}
        vals.update(kw)
        return TrainRequest(**vals)
