"""LLM model configs: the shapes whole-model prefill/decode and MoE routing need.

A model YAML (``workloads/models/<name>.yaml``) cites every number, like a device YAML::

    name: DeepSeek-V3
    family: deepseek_v3
    sources:
      hf: "huggingface.co/deepseek-ai/DeepSeek-V3 config.json"
    layers: {value: 61, source: hf}
    hidden: {value: 7168, source: hf}
    attention:
      kind: mla
      heads: {value: 128, source: hf}
      ...
    moe:
      n_routed_experts: {value: 256, source: hf}
      ...

Inside the code numbers are plain ``int``/``float`` (``cfg.moe.top_k``); the citation of each
one is kept in ``cfg.citations`` (``{"moe.top_k": "hf"}``) and must name an entry of ``sources``.

API:

* :class:`ModelConfig` (with :class:`Attention`, :class:`FFN`, :class:`MoE` sections).
* ``cfg.total_params()``, ``cfg.active_params(include_input_embedding=True)``,
  ``cfg.layer_params(i)``, ``cfg.is_moe_layer(i)``, ``cfg.moe_layers``,
  ``cfg.kv_cache_bytes_per_token(bytes_per_elem)``, ``cfg.mtp_params()``.
* :func:`load_model_config` (built-in name or YAML path), :func:`list_models`,
  :func:`from_hf_config` (a Hugging Face ``config.json``: Llama, Mixtral, Qwen2-MoE/Qwen3-MoE,
  DeepSeek-V2/V3 field names).

Parameter counts follow the published convention: the main model (no multi-token-prediction
module), both the input embedding and the LM head counted unless tied, norms and router
included. DeepSeek's own "36.6B activated" excludes the input embedding (a lookup, not a matmul);
``active_params(include_input_embedding=False)`` gives that number.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from hwsim.spec.errors import SpecError
from hwsim.spec.load import read_json, read_yaml, resolve_path, validate
from hwsim.spec.quantity import Strict

#: Folder of the built-in model YAML files (names are file stems).
MODELS_DIR = Path(__file__).resolve().parents[2] / "workloads" / "models"

_LEAF_KEYS = {"value", "source", "derived", "note"}


class Attention(Strict):
    """Attention shape. ``kind`` mha/gqa use heads × head_dim; ``mla`` (DeepSeek) uses the
    low-rank fields, and its QK head dim is ``qk_nope_head_dim + qk_rope_head_dim``."""

    kind: Literal["mha", "gqa", "mqa", "mla"]
    heads: int = Field(gt=0)
    kv_heads: int = Field(gt=0)
    head_dim: int = Field(gt=0, description="QK head dim (MLA: nope + rope)")
    head_dim_v: int | None = Field(None, gt=0, description="V head dim; default head_dim")
    qkv_bias: bool = False
    q_lora_rank: int | None = Field(None, gt=0, description="MLA query compression (None: none)")
    kv_lora_rank: int | None = Field(None, gt=0)
    qk_nope_head_dim: int | None = Field(None, gt=0)
    qk_rope_head_dim: int | None = Field(None, gt=0)
    v_head_dim: int | None = Field(None, gt=0)

    @property
    def v_dim(self) -> int:
        """V head dim actually used."""
        return self.v_head_dim or self.head_dim_v or self.head_dim

    @model_validator(mode="after")
    def _check(self) -> Attention:
        if self.heads % self.kv_heads:
            raise ValueError(
                f"attention.heads ({self.heads}) must be divisible by attention.kv_heads "
                f"({self.kv_heads})"
            )
        mla = (self.kv_lora_rank, self.qk_nope_head_dim, self.qk_rope_head_dim, self.v_head_dim)
        if self.kind == "mla":
            if any(v is None for v in mla):
                raise ValueError(
                    "attention: kind 'mla' needs kv_lora_rank, qk_nope_head_dim, "
                    "qk_rope_head_dim and v_head_dim"
                )
            assert self.qk_nope_head_dim and self.qk_rope_head_dim
            if self.head_dim != self.qk_nope_head_dim + self.qk_rope_head_dim:
                raise ValueError(
                    f"attention.head_dim ({self.head_dim}) must equal qk_nope_head_dim + "
                    f"qk_rope_head_dim ({self.qk_nope_head_dim + self.qk_rope_head_dim})"
                )
        elif any(v is not None for v in (*mla, self.q_lora_rank)):
            raise ValueError(f"attention: MLA fields given but kind is '{self.kind}'")
        if self.kind == "mha" and self.kv_heads != self.heads:
            raise ValueError("attention: kind 'mha' needs kv_heads == heads (use 'gqa')")
        if self.kind == "mqa" and self.kv_heads != 1:
            raise ValueError("attention: kind 'mqa' needs kv_heads == 1")
        return self


class FFN(Strict):
    """Dense feed-forward block (also the dense layers of an MoE model)."""

    intermediate: int = Field(gt=0)
    activation: Literal["swiglu", "gelu"] = "swiglu"

    @property
    def matrices(self) -> int:
        """Weight matrices per FFN: gate, up, down for SwiGLU; up, down for GELU."""
        return 3 if self.activation == "swiglu" else 2


class MoE(Strict):
    """Mixture-of-experts block. Layers ``first_k_dense .. layers-1`` with
    ``(i - first_k_dense) % layer_freq == 0`` are MoE; the others use the dense FFN."""

    n_routed_experts: int = Field(gt=0)
    n_shared_experts: int = Field(0, ge=0)
    top_k: int = Field(gt=0)
    moe_intermediate: int = Field(gt=0, description="intermediate size of one routed expert")
    shared_intermediate: int | None = Field(
        None, gt=0, description="total shared-expert width; default n_shared × moe_intermediate"
    )
    shared_expert_gate: bool = Field(False, description="Qwen-MoE: sigmoid gate on shared expert")
    n_groups: int = Field(1, gt=0)
    topk_groups: int = Field(1, gt=0)
    scoring: Literal["softmax", "sigmoid"] = "softmax"
    topk_method: Literal["greedy", "group_limited_greedy", "noaux_tc"] = "greedy"
    routed_scaling_factor: float = Field(1.0, gt=0)
    norm_topk_prob: bool = False
    first_k_dense: int = Field(0, ge=0)
    layer_freq: int = Field(1, gt=0)
    capacity_factor: float | None = Field(None, gt=0)
    aux_loss_alpha: float | None = Field(None, ge=0, description="balance-loss weight α")
    seq_aux: bool = False
    bias_update_speed: float | None = Field(
        None, gt=0, description="γ of the aux-loss-free bias update (DeepSeek-V3)"
    )

    @property
    def shared_width(self) -> int:
        """Total intermediate width of the shared expert(s)."""
        if self.shared_intermediate is not None:
            return self.shared_intermediate
        return self.n_shared_experts * self.moe_intermediate

    @model_validator(mode="after")
    def _check(self) -> MoE:
        e, k = self.n_routed_experts, self.top_k
        if k > e:
            raise ValueError(f"moe.top_k ({k}) must be <= moe.n_routed_experts ({e})")
        if e % self.n_groups:
            raise ValueError(
                f"moe.n_routed_experts ({e}) must be divisible by moe.n_groups ({self.n_groups})"
            )
        if self.topk_groups > self.n_groups:
            raise ValueError(
                f"moe.topk_groups ({self.topk_groups}) must be <= moe.n_groups ({self.n_groups})"
            )
        if k > self.topk_groups * (e // self.n_groups):
            raise ValueError(
                f"moe.top_k ({k}) exceeds the experts reachable in topk_groups "
                f"({self.topk_groups} × {e // self.n_groups})"
            )
        if self.shared_expert_gate and self.shared_width == 0:
            raise ValueError("moe.shared_expert_gate needs a shared expert")
        return self


class ModelConfig(Strict):
    """One LLM: sizes, attention, dense FFN, optional MoE, and the citations of its numbers."""

    name: str
    family: str
    description: str | None = None
    sources: dict[str, str]
    citations: dict[str, str] = Field(default_factory=dict, description="key path → source key")
    layers: int = Field(gt=0)
    hidden: int = Field(gt=0)
    vocab: int = Field(gt=0)
    attention: Attention
    ffn: FFN
    moe: MoE | None = None
    tied_embeddings: bool = False
    norm: Literal["rmsnorm", "layernorm"] = "rmsnorm"
    max_position: int | None = Field(None, gt=0)
    mtp_layers: int = Field(0, ge=0, description="DeepSeek-V3 multi-token-prediction modules")

    @model_validator(mode="before")
    @classmethod
    def _unwrap_sourced(cls, data: Any) -> Any:
        """Turn ``{value, source}`` leaves into plain numbers and record their citations;
        a bare number (no source) or a source missing from ``sources`` is an error."""
        if not isinstance(data, dict) or "citations" in data:
            return data
        sources = data.get("sources")
        if not isinstance(sources, dict) or not sources:
            raise ValueError("sources: a non-empty table of citations is required")
        citations: dict[str, str] = {}

        def walk(node: Any, path: str) -> Any:
            if isinstance(node, dict):
                if "value" in node and set(node) <= _LEAF_KEYS:
                    src = node.get("source")
                    if not src:
                        raise ValueError(f"{path}: missing 'source' (every number cites one)")
                    if not isinstance(src, str):
                        # a list or mapping is unhashable: `in sources` would raise TypeError
                        raise ValueError(
                            f"{path}.source: expected the key of one entry of the sources table "
                            f"({', '.join(sorted(sources))}), got a {type(src).__name__}"
                        )
                    if src not in sources:
                        raise ValueError(
                            f"{path}: source '{src}' is not in the sources table "
                            f"({', '.join(sorted(sources))})"
                        )
                    citations[path] = str(src)
                    return node["value"]
                return {k: walk(v, f"{path}.{k}" if path else str(k)) for k, v in node.items()}
            if isinstance(node, (int, float)) and not isinstance(node, bool):
                raise ValueError(
                    f"{path}: bare number {node!r}; write {{value: {node!r}, source: <key>}}"
                )
            return node

        out = {k: (v if k == "sources" else walk(v, k)) for k, v in data.items()}
        out["citations"] = citations
        return out

    @model_validator(mode="after")
    def _check(self) -> ModelConfig:
        if self.moe is not None and self.moe.first_k_dense > self.layers:
            raise ValueError(
                f"moe.first_k_dense ({self.moe.first_k_dense}) exceeds layers ({self.layers})"
            )
        return self

    # ---------------------------------------------------------------- layer layout
    def is_moe_layer(self, i: int) -> bool:
        """Whether decoder layer ``i`` (0-based) has an MoE block instead of the dense FFN."""
        m = self.moe
        return m is not None and i >= m.first_k_dense and (i - m.first_k_dense) % m.layer_freq == 0

    @property
    def moe_layers(self) -> int:
        """Number of MoE layers (arithmetic: every ``layer_freq``-th from ``first_k_dense``)."""
        m = self.moe
        if m is None or self.layers <= m.first_k_dense:
            return 0
        return -(-(self.layers - m.first_k_dense) // m.layer_freq)

    def _body_params(self, active: bool) -> int:
        """All decoder layers' weights: MoE layers and dense layers each alike, so counted as
        ``count × one`` (independent of the number of layers)."""
        n_moe = self.moe_layers
        total = 0
        if n_moe:
            first_moe = self.moe.first_k_dense if self.moe is not None else 0
            total += n_moe * self.layer_params(first_moe, active)
        n_dense = self.layers - n_moe
        if n_dense:
            dense = next(i for i in range(self.layers) if not self.is_moe_layer(i))
            total += n_dense * self.layer_params(dense, active)
        return total

    # ---------------------------------------------------------------- parameter counts
    def attention_params(self) -> int:
        """Weights of one attention block (projections, MLA norms, biases)."""
        a, h = self.attention, self.hidden
        if a.kind == "mla":
            assert a.kv_lora_rank and a.qk_rope_head_dim and a.qk_nope_head_dim
            qk = a.qk_nope_head_dim + a.qk_rope_head_dim
            if a.q_lora_rank:
                q = h * a.q_lora_rank + a.q_lora_rank + a.q_lora_rank * a.heads * qk
            else:
                q = h * a.heads * qk
            kv = (
                h * (a.kv_lora_rank + a.qk_rope_head_dim)
                + a.kv_lora_rank
                + a.kv_lora_rank * a.heads * (a.qk_nope_head_dim + a.v_dim)
            )
            return q + kv + a.heads * a.v_dim * h
        q = h * a.heads * a.head_dim
        k = h * a.kv_heads * a.head_dim
        v = h * a.kv_heads * a.v_dim
        o = a.heads * a.v_dim * h
        bias = (a.heads + a.kv_heads) * a.head_dim + a.kv_heads * a.v_dim if a.qkv_bias else 0
        return q + k + v + o + bias

    def ffn_params(self, intermediate: int | None = None) -> int:
        """Weights of one dense FFN (or one expert when ``intermediate`` is given)."""
        return self.ffn.matrices * self.hidden * (intermediate or self.ffn.intermediate)

    def expert_params(self) -> int:
        """Weights of one routed expert."""
        assert self.moe is not None
        return self.ffn_params(self.moe.moe_intermediate)

    def _moe_fixed_params(self) -> int:
        """Router + shared expert(s) + shared gate: always active in an MoE layer."""
        m = self.moe
        assert m is not None
        shared = self.ffn_params(m.shared_width) if m.shared_width else 0
        return (
            self.hidden * m.n_routed_experts + shared + (self.hidden if m.shared_expert_gate else 0)
        )

    def layer_params(self, i: int, active: bool = False) -> int:
        """Weights of decoder layer ``i``; ``active`` counts only top-k routed experts."""
        norms = 2 * self.hidden
        if self.is_moe_layer(i):
            assert self.moe is not None
            n = self.moe.top_k if active else self.moe.n_routed_experts
            mlp = self._moe_fixed_params() + n * self.expert_params()
        else:
            mlp = self.ffn_params()
        return self.attention_params() + mlp + norms

    def embedding_params(self) -> int:
        """Input embedding table (vocab × hidden)."""
        return self.vocab * self.hidden

    def head_params(self) -> int:
        """LM head (0 when tied to the embedding)."""
        return 0 if self.tied_embeddings else self.vocab * self.hidden

    def total_params(self) -> int:
        """All weights of the main model (MTP modules excluded, as published)."""
        return self._body_params(False) + self.embedding_params() + self.head_params() + self.hidden

    def active_params(self, include_input_embedding: bool = True) -> int:
        """Weights touched per token: attention, dense FFNs, router, shared and top-k experts,
        final norm and LM head; plus the input embedding table unless excluded."""
        body = self._body_params(True)
        emb = self.embedding_params() if include_input_embedding else 0
        head = self.head_params() or self.embedding_params()
        return body + emb + head + self.hidden

    def mtp_params(self) -> int:
        """Extra weights of the multi-token-prediction modules (one decoder layer, two norms and
        a 2·hidden → hidden projection each; embedding and head are shared)."""
        per = self.layer_params(self.layers - 1) + 2 * self.hidden + 2 * self.hidden * self.hidden
        return self.mtp_layers * per

    def kv_cache_bytes_per_token(self, bytes_per_elem: float) -> float:
        """KV-cache bytes one token adds across all layers (MLA caches the latent + rope key)."""
        a = self.attention
        if a.kind == "mla":
            assert a.kv_lora_rank and a.qk_rope_head_dim
            per_layer = a.kv_lora_rank + a.qk_rope_head_dim
        else:
            per_layer = a.kv_heads * (a.head_dim + a.v_dim)
        return float(self.layers * per_layer * bytes_per_elem)


# ---------------------------------------------------------------------- loading
def list_models(directory: Path = MODELS_DIR) -> list[str]:
    """Names (file stems) of the built-in model YAMLs, sorted."""
    return sorted(p.stem for p in directory.glob("*.yaml"))


def load_model_config(name_or_path: str) -> ModelConfig:
    """Load a model by built-in name (``deepseek-v3``), a YAML path, or an HF ``config.json``."""
    if name_or_path.endswith(".json"):
        return from_hf_config(name_or_path)
    path = resolve_path(name_or_path, MODELS_DIR, "model")
    data, node = read_yaml(path)
    return validate(ModelConfig, data, file=str(path), node=node)


def _need(cfg: dict[str, Any], file: str, *keys: str) -> Any:
    for k in keys:
        if k in cfg and cfg[k] is not None:
            return cfg[k]
    raise SpecError(f"required field missing (one of: {', '.join(keys)})", file=file, key=keys[0])


def _count(v: Any, file: str, key: str) -> None:
    """A positive whole number of at most 2^53 (exact in float64), else a SpecError naming
    ``key``."""
    if isinstance(v, int) and not isinstance(v, bool) and v > 2**53:
        raise SpecError(f"{v:.3g} is larger than 2^53, no model's size", file=file, key=key)
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise SpecError(f"expected a positive whole number, got {v!r}"[:120], file=file, key=key)


def from_hf_config(path: str | Path, name: str | None = None) -> ModelConfig:
    """Build a :class:`ModelConfig` from a Hugging Face ``config.json``.

    Understands Llama/Mistral, Mixtral (``num_local_experts``), Qwen2-MoE/Qwen3-MoE
    (``num_experts``, ``shared_expert_intermediate_size``) and DeepSeek-V2/V3 (``n_routed_experts``,
    ``n_group``, ``topk_group``, ``scoring_func``, ``kv_lora_rank``, ...). Every number is cited
    to the file itself (source key ``hf-config``).
    """
    file = str(path)
    # sized before it is read (a config.json is a few kB), nesting and syntax errors one line
    cfg = read_json(Path(path), what="model configs")
    if not isinstance(cfg, dict):
        raise SpecError("expected a JSON object", file=file)
    if isinstance(cfg.get("text_config"), dict):  # multimodal wrappers keep the LM inside
        cfg = {**cfg, **cfg["text_config"]}

    def s(v: Any) -> dict[str, Any]:
        return {"value": v, "source": "hf-config"}

    hidden = _need(cfg, file, "hidden_size")
    heads = _need(cfg, file, "num_attention_heads")
    kv_heads = cfg.get("num_key_value_heads") or heads
    # the numbers divided or added here must be counts before the arithmetic, not after it
    for key, v in (
        ("hidden_size", hidden),
        ("num_attention_heads", heads),
        ("num_key_value_heads", kv_heads),
        ("head_dim", cfg.get("head_dim") or 1),
        ("qk_nope_head_dim", cfg.get("qk_nope_head_dim") or 1),
        ("qk_rope_head_dim", cfg.get("qk_rope_head_dim") or 1),
    ):
        _count(v, file, key)
    mtype = str(cfg.get("model_type", "")).lower()
    act = str(cfg.get("hidden_act", "silu")).lower()
    attn: dict[str, Any] = {"heads": s(heads), "kv_heads": s(kv_heads)}
    if cfg.get("kv_lora_rank"):
        nope = _need(cfg, file, "qk_nope_head_dim")
        rope = _need(cfg, file, "qk_rope_head_dim")
        attn.update(
            kind="mla",
            head_dim=s(nope + rope),
            kv_lora_rank=s(cfg["kv_lora_rank"]),
            qk_nope_head_dim=s(nope),
            qk_rope_head_dim=s(rope),
            v_head_dim=s(_need(cfg, file, "v_head_dim")),
        )
        if cfg.get("q_lora_rank"):
            attn["q_lora_rank"] = s(cfg["q_lora_rank"])
    else:
        kind = "mha" if kv_heads == heads else ("mqa" if kv_heads == 1 else "gqa")
        attn.update(kind=kind, head_dim=s(cfg.get("head_dim") or hidden // heads))
        # Qwen2 attention has q/k/v biases (no config flag); others say attention_bias
        attn["qkv_bias"] = bool(cfg.get("attention_bias", mtype.startswith("qwen2")))
    data: dict[str, Any] = {
        "name": name or cfg.get("_name_or_path") or Path(path).parent.name or mtype or "model",
        "family": mtype or "unknown",
        "sources": {"hf-config": file},
        "layers": s(_need(cfg, file, "num_hidden_layers")),
        "hidden": s(hidden),
        "vocab": s(_need(cfg, file, "vocab_size")),
        "attention": attn,
        "ffn": {
            "intermediate": s(_need(cfg, file, "intermediate_size")),
            "activation": "gelu" if act.startswith("gelu") else "swiglu",
        },
        "tied_embeddings": bool(cfg.get("tie_word_embeddings", False)),
    }
    if cfg.get("max_position_embeddings"):
        data["max_position"] = s(cfg["max_position_embeddings"])
    if cfg.get("num_nextn_predict_layers"):
        data["mtp_layers"] = s(cfg["num_nextn_predict_layers"])
    experts = cfg.get("n_routed_experts") or cfg.get("num_local_experts") or cfg.get("num_experts")
    if experts:
        moe: dict[str, Any] = {
            "n_routed_experts": s(experts),
            "top_k": s(_need(cfg, file, "num_experts_per_tok")),
            "moe_intermediate": s(cfg.get("moe_intermediate_size") or cfg["intermediate_size"]),
            "norm_topk_prob": bool(cfg.get("norm_topk_prob", "num_local_experts" in cfg)),
            "scoring": "sigmoid" if cfg.get("scoring_func") == "sigmoid" else "softmax",
        }
        if cfg.get("n_shared_experts"):
            moe["n_shared_experts"] = s(cfg["n_shared_experts"])
        if cfg.get("shared_expert_intermediate_size"):
            moe["n_shared_experts"] = s(1)
            moe["shared_intermediate"] = s(cfg["shared_expert_intermediate_size"])
            moe["shared_expert_gate"] = True
        for hf, ours in (
            ("n_group", "n_groups"),
            ("topk_group", "topk_groups"),
            ("routed_scaling_factor", "routed_scaling_factor"),
            ("first_k_dense_replace", "first_k_dense"),
            ("aux_loss_alpha", "aux_loss_alpha"),
        ):
            if cfg.get(hf) is not None:
                moe[ours] = s(cfg[hf])
        freq = cfg.get("moe_layer_freq") or cfg.get("decoder_sparse_step")
        if freq:
            moe["layer_freq"] = s(freq)
        if cfg.get("topk_method") in ("greedy", "group_limited_greedy", "noaux_tc"):
            moe["topk_method"] = cfg["topk_method"]
        if cfg.get("seq_aux") is not None:
            moe["seq_aux"] = bool(cfg["seq_aux"])
        data["moe"] = moe
    return validate(ModelConfig, data, file=file)
