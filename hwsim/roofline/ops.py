"""Kernels for the hierarchical roofline: how much work they do and how many bytes they move at
each memory level of a device.

A :class:`Kernel` is plain data: FLOPs per kind of compute (matrix FLOPs per dtype, plus vector
FLOPs and special-function ops such as the ``exp`` of a softmax) and bytes per memory level, by
the level names of the device it was built for (``smem``/``l2``/``hbm`` on a GPU, ``sram`` on an
LPU, ``sram``/``hbm``/``ddr`` on a dataflow chip). Anything can build one: the closed forms below,
or later a tile plan or a simulator that counted the bytes itself (``Kernel(name, flops={...},
level_bytes={...})``).

The built-in example kernels are pure functions of a shape and a device. Their byte counts follow
one rule, the *ideal-reuse tiling rule*, so that every device kind is handled without branching:

* Bytes "at" a level are the bytes that level serves to the next level inward (reads) plus the
  results written back to it. Levels outside the device's main memory (a DDR capacity tier, an
  external weight store) move nothing: weights and KV are assumed resident in main memory.
* The next level inward holds a reusable tile sized to *its* capacity per instance (one SM's shared
  memory, the whole L2). The innermost level serves the compute units' registers, which hold an
  output tile of ``REGISTER_TILE`` × ``REGISTER_TILE`` elements (the spec does not list registers).
* With a tile of ``S`` elements a GEMM re-reads its operands ``n/√S`` and ``m/√S`` times, the
  Hong–Kung communication bound ``2mnk/√S`` (Smith & van de Geijn, "A tight I/O lower bound for
  matrix multiplication", 2019), never less than the compulsory A+B+C once. A roofline is an
  upper bound on speed, so it uses this lower bound on bytes.

All results are SI: FLOPs, bytes.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from hwsim.spec.device import DTYPE_BYTES, DTYPES, Device
from hwsim.spec.errors import SpecError

ArrayOrFloat = float | NDArray[np.float64]

#: Non-matrix compute kinds a kernel may count, besides matrix FLOPs per dtype.
VECTOR = "vector"  # FP32 vector-unit FLOPs (softmax arithmetic, norms, activations)
SPECIAL = "special"  # special-function ops (exp, rsqrt, sigmoid) on the SFU/MUFU
COMPUTE_KINDS: tuple[str, ...] = (*DTYPES, VECTOR, SPECIAL)

#: Edge (elements) of the output tile a compute unit accumulates in registers. 128 is the common
#: MMA tile edge (CUTLASS/Hopper WGMMA 128x128 and 128x256 tiles, FlashAttention-3 128-row Q
#: blocks); it only sets the bytes served by the innermost listed level.
REGISTER_TILE = 128

#: FP32 vector FLOPs per attention score besides the exp: subtract the running max (scaled, one
#: FMA = 2 FLOPs), update the running max (1) and the row sum (1). The O rescale is per row, not per
#: score, and is ignored.
SOFTMAX_VECTOR_FLOPS_PER_SCORE = 4


@dataclass(frozen=True)
class Kernel:
    """One kernel's work and traffic on one device (treat the mappings as read-only).

    ``flops`` keys are dtype names (matrix FLOPs at that dtype), ``"vector"`` and ``"special"``;
    ``"matrix"`` is accepted as shorthand for ``dtype``. ``level_bytes`` maps a memory-level name
    of the device to the bytes moved at that level; levels not named move nothing.
    """

    name: str
    flops: Mapping[str, float]
    level_bytes: Mapping[str, float]
    dtype: str = "bf16"  #: dtype the matrix work and the stored data use (display, "matrix" key)
    params: Mapping[str, float | int | str | bool] = field(default_factory=dict)
    note: str = ""

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise SpecError(f"kernel {self.name!r}: dtype {self.dtype!r} is not one of {DTYPES}")
        flops = dict(self.flops)
        if "matrix" in flops:
            flops[self.dtype] = flops.get(self.dtype, 0.0) + flops.pop("matrix")
        for key, value in [*flops.items(), *self.level_bytes.items()]:
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise SpecError(
                    f"kernel {self.name!r}: {key} = {value!r}; expected a finite number >= 0"
                )
        unknown = set(flops) - set(COMPUTE_KINDS)
        if unknown:
            raise SpecError(
                f"kernel {self.name!r}: unknown compute kind(s) {sorted(unknown)}; expected a "
                f"dtype ({', '.join(DTYPES)}), 'matrix', 'vector' or 'special'"
            )
        object.__setattr__(self, "flops", {k: float(v) for k, v in flops.items()})
        object.__setattr__(self, "level_bytes", {k: float(v) for k, v in self.level_bytes.items()})

    @property
    def matrix_flops(self) -> float:
        """Matrix FLOPs over all dtypes."""
        return sum(v for k, v in self.flops.items() if k in DTYPES)

    @property
    def total_flops(self) -> float:
        """All counted operations: matrix + vector + special."""
        return sum(self.flops.values())

    @property
    def work_flops(self) -> float:
        """The work the roofline plots (y = work / time, x = work / bytes): the matrix FLOPs, as
        FLOP/s benchmarks count them; all operations for a kernel with no matrix work."""
        return self.matrix_flops or self.total_flops

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "dtype": self.dtype,
            "flops": dict(self.flops),
            "level_bytes": dict(self.level_bytes),
            "params": dict(self.params),
            "note": self.note,
        }


# ---- the tiling rule ----------------------------------------------------------------------------
def _main_index(device: Device) -> int:
    main = device.main_memory.name
    return next(i for i, m in enumerate(device.memory) if m.name == main)


def inner_tile_bytes(device: Device) -> dict[str, float]:
    """For each level at or inside main memory, the capacity (bytes, one instance) of the next
    level inward, which holds the tile that level serves. The innermost level maps to NaN: it
    serves the registers, whose tile :func:`_tile_elems` takes as ``REGISTER_TILE²`` elements."""
    out: dict[str, float] = {}
    for i, lvl in enumerate(device.memory[: _main_index(device) + 1]):
        out[lvl.name] = math.nan if i == 0 else device.memory[i - 1].capacity_bytes
    return out


def _tile_elems(inner_bytes: float, elem_bytes: float) -> float:
    """Elements in the reusable tile the next level inward holds (register tile if innermost)."""
    if math.isnan(inner_bytes):
        return float(REGISTER_TILE * REGISTER_TILE)
    return max(inner_bytes / elem_bytes, 1.0)


def gemm_traffic_bytes(
    m: ArrayOrFloat,
    n: ArrayOrFloat,
    k: ArrayOrFloat,
    tile_elems: ArrayOrFloat,
    in_bytes: float,
    out_bytes: float,
) -> ArrayOrFloat:
    """Bytes a level serves for C[m,n] = A[m,k] @ B[k,n] when the next level inward holds a
    ``√S × √S`` output tile (S = ``tile_elems``): A is re-read once per column of tiles, B once per
    row of tiles (never fewer than once), C is written once. Works elementwise on numpy arrays
    (for sweeps over shapes or on-chip capacities) as well as on floats."""
    edge = np.sqrt(tile_elems)
    a_reads = m * k * np.maximum(1.0, n / edge)
    b_reads = k * n * np.maximum(1.0, m / edge)
    out = (a_reads + b_reads) * in_bytes + m * n * out_bytes
    return float(out) if np.ndim(out) == 0 else out


def attention_traffic_bytes(
    qo_bytes: ArrayOrFloat,
    kv_bytes: ArrayOrFloat,
    rows: ArrayOrFloat,
    block_rows: ArrayOrFloat,
    causal: bool = False,
) -> ArrayOrFloat:
    """Bytes a level serves for FlashAttention: Q and O once (``qo_bytes``), K and V
    (``kv_bytes``) once per block of ``block_rows`` of the ``rows`` query rows that share a KV
    head; causal attention skips about half of the K/V blocks when there are several. Elementwise
    on numpy arrays as well as floats."""
    blocks = np.maximum(1.0, rows / np.maximum(block_rows, 1.0))
    share = 0.5 * (1.0 + 1.0 / blocks) if causal else 1.0
    out = qo_bytes + kv_bytes * blocks * share
    return float(out) if np.ndim(out) == 0 else out


def _per_level(device: Device, traffic: Callable[[float], float]) -> dict[str, float]:
    """Apply a traffic function of the inner tile size (bytes) to every level; outer levels 0."""
    tiles = inner_tile_bytes(device)
    return {m.name: traffic(tiles[m.name]) if m.name in tiles else 0.0 for m in device.memory}


# ---- built-in example kernels -------------------------------------------------------------------
def gemm(
    m: int, n: int, k: int, device: Device, dtype: str = "bf16", name: str | None = None
) -> Kernel:
    """C[m,n] = A[m,k] @ B[k,n]: ``2mnk`` matrix FLOPs at ``dtype``; inputs and output stored at
    ``dtype``. Bytes per level by the ideal-reuse tiling rule (module docstring); at main memory
    this is A+B+C once whenever a panel of the smaller dimension fits the next level inward."""
    b = DTYPE_BYTES[dtype]
    level_bytes = _per_level(
        device, lambda inner: float(gemm_traffic_bytes(m, n, k, _tile_elems(inner, b), b, b))
    )
    return Kernel(
        name=name or f"gemm {m}x{n}x{k}",
        flops={dtype: 2.0 * m * n * k},
        level_bytes=level_bytes,
        dtype=dtype,
        params={"m": m, "n": n, "k": k},
        note="C = A @ B; ideal-reuse tiling per level",
    )


def attention(
    device: Device,
    *,
    batch: int,
    q_len: int,
    kv_len: int,
    heads: int,
    kv_heads: int | None = None,
    head_dim: int = 128,
    head_dim_v: int | None = None,
    causal: bool = False,
    dtype: str = "bf16",
    name: str | None = None,
) -> Kernel:
    """FlashAttention forward, closed form (Dao et al. 2022, section 3.2, generalised to a level
    hierarchy and to GQA).

    FLOPs: ``2·B·H·Lq·Lk·(d + d_v)`` matrix (QKᵀ and PV), ``B·H·Lq·Lk`` exps and
    ``SOFTMAX_VECTOR_FLOPS_PER_SCORE`` vector FLOPs per score; causal masks about half
    (``Lq = Lk``: exactly the FA benchmark's halving).
    Bytes at a level: Q and O once, K and V once per *Q block*. A Q block is the rows of Q that the
    next level inward holds together with their O accumulators (half its capacity, the other half
    streams K/V tiles); the ``H/H_kv`` query heads that share a KV head are packed into the same
    block (GQA). Causal skips about half of the K/V blocks when there is more than one Q block.
    """
    kv_heads = kv_heads or heads
    if heads % kv_heads:
        raise SpecError(f"attention: heads ({heads}) must be a multiple of kv_heads ({kv_heads})")
    d_v = head_dim_v or head_dim
    b = DTYPE_BYTES[dtype]
    group = heads // kv_heads
    scores = float(batch) * heads * q_len * kv_len * (0.5 if causal else 1.0)
    qo_bytes = batch * heads * q_len * (head_dim + d_v) * b
    kv_bytes = batch * kv_heads * kv_len * (head_dim + d_v) * b
    rows = group * q_len  # query rows that reuse one KV head's K and V

    def traffic(inner: float) -> float:
        # Q and O tiles take half of the next level inward; the other half streams K/V tiles
        block_rows = REGISTER_TILE if math.isnan(inner) else inner / 2.0 / ((head_dim + d_v) * b)
        return float(attention_traffic_bytes(qo_bytes, kv_bytes, rows, block_rows, causal))

    return Kernel(
        name=name or f"attention B{batch} q{q_len} kv{kv_len} h{heads}/{kv_heads} d{head_dim}",
        flops={
            dtype: 2.0 * scores * (head_dim + d_v),
            VECTOR: SOFTMAX_VECTOR_FLOPS_PER_SCORE * scores,
            SPECIAL: scores,
        },
        level_bytes=_per_level(device, traffic),
        dtype=dtype,
        params={
            "batch": batch,
            "q_len": q_len,
            "kv_len": kv_len,
            "heads": heads,
            "kv_heads": kv_heads,
            "head_dim": head_dim,
            "head_dim_v": d_v,
            "causal": causal,
        },
        note="FlashAttention closed form: Q+O once, K+V once per Q block",
    )


def attention_prefill(
    device: Device,
    *,
    batch: int,
    seq_len: int,
    heads: int,
    kv_heads: int | None = None,
    head_dim: int = 128,
    causal: bool = False,
    dtype: str = "bf16",
    name: str | None = None,
) -> Kernel:
    """Prefill attention: ``seq_len`` queries against ``seq_len`` keys (see :func:`attention`)."""
    return attention(
        device,
        batch=batch,
        q_len=seq_len,
        kv_len=seq_len,
        heads=heads,
        kv_heads=kv_heads,
        head_dim=head_dim,
        causal=causal,
        dtype=dtype,
        name=name or f"attn prefill B{batch} L{seq_len} h{heads} d{head_dim}",
    )


def attention_decode(
    device: Device,
    *,
    batch: int,
    context: int,
    heads: int,
    kv_heads: int | None = None,
    head_dim: int = 128,
    head_dim_v: int | None = None,
    q_len: int = 1,
    dtype: str = "bf16",
    name: str | None = None,
) -> Kernel:
    """Decode attention: ``q_len`` new tokens (1, or more for speculative decoding) per sequence
    against a KV cache of ``context`` tokens, which every level reads once."""
    return attention(
        device,
        batch=batch,
        q_len=q_len,
        kv_len=context,
        heads=heads,
        kv_heads=kv_heads,
        head_dim=head_dim,
        head_dim_v=head_dim_v,
        dtype=dtype,
        name=name or f"attn decode B{batch} ctx{context} h{heads}/{kv_heads or heads}",
    )


def moe_experts(
    device: Device,
    *,
    tokens: int,
    d_model: int,
    d_ff: int,
    experts: int,
    top_k: int,
    gated: bool = True,
    dtype: str = "bf16",
    name: str | None = None,
) -> Kernel:
    """The expert FFNs of one MoE layer for ``tokens`` tokens routed top-``k`` of ``experts``.

    Routing is taken as uniform, so the expected number of distinct experts touched is
    ``E·(1 − (1 − k/E)^T)`` and each touched expert sees ``T·k / touched`` tokens. Each expert is a
    (gated) FFN: up (and gate) ``d_model → d_ff``, down ``d_ff → d_model``, as GEMMs under the
    tiling rule. At small batch the touched experts' weights dominate the bytes.
    Vector/special work: the SiLU-and-multiply (one sigmoid exp and ~4 FLOPs per element).
    """
    b = DTYPE_BYTES[dtype]
    touched = experts * (1.0 - (1.0 - top_k / experts) ** tokens)
    m = tokens * top_k / touched  # tokens per touched expert (expected)
    n_up = d_ff * (2 if gated else 1)

    def traffic(inner: float) -> float:
        s = _tile_elems(inner, b)
        per_expert = float(gemm_traffic_bytes(m, n_up, d_model, s, b, b)) + float(
            gemm_traffic_bytes(m, d_model, d_ff, s, b, b)
        )
        return touched * per_expert

    routed = float(tokens) * top_k
    return Kernel(
        name=name or f"moe T{tokens} E{experts} top{top_k} {d_model}x{d_ff}",
        flops={
            dtype: 2.0 * routed * d_model * (n_up + d_ff),
            VECTOR: 4.0 * routed * d_ff if gated else routed * d_ff,
            SPECIAL: routed * d_ff,
        },
        level_bytes=_per_level(device, traffic),
        dtype=dtype,
        params={
            "tokens": tokens,
            "d_model": d_model,
            "d_ff": d_ff,
            "experts": experts,
            "top_k": top_k,
            "gated": gated,
            "experts_touched": round(touched, 3),
        },
        note="expert FFNs; uniform routing; weights of touched experts read once",
    )


# ---- the named examples the CLI and the report use ----------------------------------------------
KernelFactory = Callable[[Device, str], Kernel]

#: Built-in example kernels by name: shapes a student meets in LLM inference.
EXAMPLES: dict[str, tuple[str, KernelFactory]] = {
    "gemm-8192": (
        "square GEMM N=8192 (training/prefill-sized)",
        lambda d, t: gemm(8192, 8192, 8192, d, t, name="gemm 8192³"),
    ),
    "gemm-2048": (
        "square GEMM N=2048",
        lambda d, t: gemm(2048, 2048, 2048, d, t, name="gemm 2048³"),
    ),
    "gemm-512": ("square GEMM N=512", lambda d, t: gemm(512, 512, 512, d, t, name="gemm 512³")),
    "gemm-decode": (
        "skinny GEMM m=16 tokens x 8192x8192 weights (a decode projection)",
        lambda d, t: gemm(16, 8192, 8192, d, t, name="gemm 16x8192x8192"),
    ),
    "attn-prefill": (
        "FlashAttention prefill, batch 2, 8k tokens, 16 heads of 128, non-causal (FA3 benchmark)",
        lambda d, t: attention_prefill(
            d, batch=2, seq_len=8192, heads=16, head_dim=128, dtype=t, name="attn prefill 8k"
        ),
    ),
    "attn-decode": (
        "decode attention, batch 1, 8k context, 64 heads / 8 KV heads of 128 (Llama-3-70B)",
        lambda d, t: attention_decode(
            d,
            batch=1,
            context=8192,
            heads=64,
            kv_heads=8,
            head_dim=128,
            dtype=t,
            name="attn decode 8k",
        ),
    ),
    "moe-decode": (
        "MoE experts, 16 tokens, 256 experts top-8, 7168x2048 (DeepSeek-V3 layer)",
        lambda d, t: moe_experts(
            d,
            tokens=16,
            d_model=7168,
            d_ff=2048,
            experts=256,
            top_k=8,
            dtype=t,
            name="moe 16 tok",
        ),
    ),
}


def example_names() -> list[str]:
    return list(EXAMPLES)


def example_kernels(
    device: Device, dtype: str = "bf16", names: list[str] | None = None
) -> list[Kernel]:
    """Build the named example kernels (all by default) for ``device`` at ``dtype``."""
    if dtype not in DTYPES:
        raise SpecError(f"unknown dtype {dtype!r}; expected one of {', '.join(DTYPES)}")
    out = []
    for n in names or list(EXAMPLES):
        if n not in EXAMPLES:
            guess = difflib.get_close_matches(n, list(EXAMPLES), n=1)
            hint = f"; did you mean '{guess[0]}'?" if guess else ""
            raise SpecError(f"unknown kernel {n!r}{hint} (built-in: {', '.join(EXAMPLES)})")
        out.append(EXAMPLES[n][1](device, dtype))
    return out
