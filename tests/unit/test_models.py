"""Model configs: built-in YAMLs load and cite, parameter counts match published numbers,
the HF importer agrees with the YAMLs, and bad configs raise SpecError naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from hwsim.spec.errors import SpecError
from hwsim.spec.model import ModelConfig, from_hf_config, list_models, load_model_config

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "hf_configs"

# (model, published total, published active) in parameters. Tolerance 3%: published figures are
# rounded to 2-3 significant digits and differ on small items (norms, embedding conventions).
PUBLISHED = [
    ("deepseek-v3", 671e9, 37e9),
    ("deepseek-v2", 236e9, 21e9),
    ("mixtral-8x7b", 46.7e9, 12.9e9),
    ("llama-3.1-8b", 8.03e9, 8.03e9),
    ("llama-3.1-70b", 70.6e9, 70.6e9),
    ("llama-3.1-405b", 405e9, 405e9),
    ("qwen1.5-moe-a2.7b", 14.3e9, 2.7e9),
    ("qwen3-30b-a3b", 30.5e9, 3.3e9),
]
REL_TOL = 0.03


def test_builtin_models_present() -> None:
    assert {m for m, _, _ in PUBLISHED} <= set(list_models())


@pytest.mark.parametrize("name", list_models())
def test_builtin_model_loads_and_cites(name: str) -> None:
    cfg = load_model_config(name)
    assert cfg.citations, "every number should carry a citation"
    assert set(cfg.citations.values()) <= set(cfg.sources)
    assert "layers" in cfg.citations and "hidden" in cfg.citations


@pytest.mark.parametrize(("name", "total", "active"), PUBLISHED)
def test_param_counts_match_published(name: str, total: float, active: float) -> None:
    cfg = load_model_config(name)
    assert cfg.total_params() == pytest.approx(total, rel=REL_TOL)
    assert cfg.active_params() == pytest.approx(active, rel=REL_TOL)


def test_deepseek_v3_activated_excluding_input_embedding() -> None:
    # DeepSeek's weight README: 36.6B activated incl. the 0.9B output head (no input embedding);
    # 1% tolerance covers the rounding to 0.1B.
    cfg = load_model_config("deepseek-v3")
    assert cfg.active_params(include_input_embedding=False) == pytest.approx(36.6e9, rel=0.01)
    assert cfg.moe_layers == 58
    # MTP module: 11.5B unique parameters per DeepSeek (embedding/head shared); 5% tolerance
    # since the published figure is rounded and the projection/norm layout is approximate.
    assert cfg.mtp_params() == pytest.approx(11.5e9, rel=0.05)


def test_kv_cache_per_token() -> None:
    # exact arithmetic: MLA caches kv_lora_rank + rope per layer; GQA caches 2 × kv_heads × d
    v3 = load_model_config("deepseek-v3")
    assert v3.kv_cache_bytes_per_token(2) == 61 * (512 + 64) * 2
    l70 = load_model_config("llama-3.1-70b")
    assert l70.kv_cache_bytes_per_token(2) == 80 * 8 * 256 * 2


@pytest.mark.parametrize(
    "name",
    ["deepseek-v3", "deepseek-v2", "mixtral-8x7b", "qwen1.5-moe-a2.7b", "llama-3.1-8b"],
)
def test_hf_importer_matches_yaml(name: str) -> None:
    hf = from_hf_config(FIXTURES / f"{name}.json")
    ref = load_model_config(name)
    assert hf.total_params() == ref.total_params()
    assert hf.active_params() == ref.active_params()
    assert hf.attention.kind == ref.attention.kind
    if ref.moe is not None:
        assert hf.moe is not None
        for key in ("n_routed_experts", "top_k", "n_groups", "topk_groups", "scoring"):
            assert getattr(hf.moe, key) == getattr(ref.moe, key), key
        assert hf.moe.routed_scaling_factor == ref.moe.routed_scaling_factor
        assert hf.moe.norm_topk_prob == ref.moe.norm_topk_prob
    assert set(hf.citations.values()) == {"hf-config"}
    assert load_model_config(str(FIXTURES / f"{name}.json")).total_params() == hf.total_params()


def _yaml(tmp_path: Path, text: str) -> str:
    p = tmp_path / "m.yaml"
    p.write_text(text)
    return str(p)


BASE = """
name: t
family: test
sources: {s: "test"}
layers: {value: 2, source: s}
hidden: {value: 64, source: s}
vocab: {value: 100, source: s}
attention: {kind: gqa, heads: {value: 8, source: s}, kv_heads: {value: KV, source: s},
            head_dim: {value: 8, source: s}}
ffn: {intermediate: {value: 128, source: s}}
moe: {n_routed_experts: {value: 8, source: s}, top_k: {value: TOPK, source: s},
      moe_intermediate: {value: 32, source: s}, n_groups: {value: 4, source: s},
      topk_groups: {value: TG, source: s}}
"""


@pytest.mark.parametrize(
    ("kv", "topk", "tg", "match"),
    [
        (3, 2, 2, "divisible by attention.kv_heads"),
        (2, 9, 2, "top_k"),
        (2, 2, 5, "topk_groups"),
        (2, 5, 2, "exceeds the experts reachable"),
    ],
)
def test_bad_model_config(tmp_path: Path, kv: int, topk: int, tg: int, match: str) -> None:
    text = BASE.replace("KV", str(kv)).replace("TOPK", str(topk)).replace("TG", str(tg))
    with pytest.raises(SpecError, match=match) as err:
        load_model_config(_yaml(tmp_path, text))
    assert "m.yaml" in str(err.value)


def test_good_base_config_loads(tmp_path: Path) -> None:
    text = BASE.replace("KV", "2").replace("TOPK", "2").replace("TG", "2")
    cfg = load_model_config(_yaml(tmp_path, text))
    assert isinstance(cfg, ModelConfig) and cfg.moe is not None and cfg.moe.top_k == 2


def test_bare_number_and_unknown_source_rejected(tmp_path: Path) -> None:
    text = BASE.replace("KV", "2").replace("TOPK", "2").replace("TG", "2")
    with pytest.raises(SpecError, match="bare number"):
        load_model_config(_yaml(tmp_path, text.replace("{value: 64, source: s}", "64")))
    with pytest.raises(SpecError, match="not in the sources table"):
        load_model_config(
            _yaml(tmp_path, text.replace("{value: 64, source: s}", "{value: 64, source: x}"))
        )
    with pytest.raises(SpecError, match="did you mean"):
        load_model_config(_yaml(tmp_path, text.replace("vocab:", "vocabb:")))


def test_unknown_model_name_suggests() -> None:
    with pytest.raises(SpecError, match="did you mean 'deepseek-v3'"):
        load_model_config("deepseek-v4")


def test_hf_importer_missing_field(tmp_path: Path) -> None:
    p = tmp_path / "config.json"
    p.write_text('{"hidden_size": 64, "num_attention_heads": 4}')
    with pytest.raises(SpecError, match="num_hidden_layers"):
        from_hf_config(p)
    p.write_text("{not json")
    with pytest.raises(SpecError, match="cannot read JSON"):
        from_hf_config(p)
