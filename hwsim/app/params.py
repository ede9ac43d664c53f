"""What each page's controls say, as frozen (hashable) records: the key of a cached result
(:mod:`hwsim.app.jobs`), the input of its computation (:mod:`hwsim.app.compute`) and of its
command line (:mod:`hwsim.app.commands`). Defaults are the CLI's defaults."""

from __future__ import annotations

from dataclasses import dataclass

from hwsim.serve.request import STEP_DEFAULTS


@dataclass(frozen=True)
class WhatIf:
    """The what-if toggle and its ``PATH=VALUE`` edits (``hwsim whatif --set`` syntax)."""

    on: bool = False
    overrides: tuple[str, ...] = ()

    @property
    def active(self) -> bool:
        """Whether there is a changed run to show next to the baseline."""
        return self.on and bool(self.overrides)


@dataclass(frozen=True)
class DeviceParams:
    device: str = "h100-sxm"
    dtype: str = "bf16"
    kernels: tuple[str, ...] = ()  #: empty: every example kernel (the CLI's default)
    whatif: WhatIf = WhatIf()


@dataclass(frozen=True)
class StepParams:
    model: str = "llama-3.1-70b"
    device: str = "h100-sxm"
    phase: str = "decode"
    layout: str = "tp=8"  #: empty: ``--devices auto``
    batch: int = int(STEP_DEFAULTS["batch"])
    context: int = int(STEP_DEFAULTS["context"])
    dtype: str = str(STEP_DEFAULTS["dtype"])
    kv_dtype: str = str(STEP_DEFAULTS["kv_dtype"])
    whatif: WhatIf = WhatIf()


@dataclass(frozen=True)
class AttentionParams:
    device: str = "h100-sxm"
    batch: int = 4
    heads: int = 16
    kv_heads: int = 16
    seqlen: int = 4096
    head_dim: int = 128
    causal: bool = True
    dtype: str = "fp16"
    kernel: str = "fa3"
    pass_: str = "fwd"
    whatif: WhatIf = WhatIf()


@dataclass(frozen=True)
class ServingParams:
    model: str = "llama-3.1-8b"
    device: str = "h100-sxm"
    layout: str = ""  #: empty: ``--devices auto``
    traffic: str = "sharegpt"
    qps: float = 4.0
    requests: int = 200
    seed: int = 0
    whatif: WhatIf = WhatIf()


@dataclass(frozen=True)
class MoeParams:
    cluster: str = "h800-deepseek"
    ep: int = 32
    tokens: int = 4096
    hidden: int = 7168
    experts: int = 256
    topk: int = 8
    topk_groups: int = 4
    phase: str = "dispatch"
    kernel: str = "normal"
    routing: str = "deepep"
    whatif: WhatIf = WhatIf()  #: edits of the cluster spec (``nics.bandwidth=x2``)
