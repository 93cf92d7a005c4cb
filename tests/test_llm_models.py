"""Tests for workloads.models: parameter counts of the presets against published numbers, the
HuggingFace config import, YAML loading and validation errors."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml

from des.core.paths import bundled
from workloads.hf_config import from_hf_config
from workloads.models import (
    ModelConfig,
    ModelConfigError,
    available_models,
    load_model,
    model_from_dict,
    model_to_yaml,
)

# Published totals (and active parameters for MoE): papers / model cards.
PUBLISHED: dict[str, tuple[float, float | None]] = {
    "gpt3-175b": (174.6e9, None),  # Brown et al. 2020 ("175B"; 174.6B with 50257 vocab)
    "llama2-7b": (6.74e9, None),  # Touvron et al. 2023 / HF model card
    "llama2-13b": (13.0e9, None),
    "llama2-70b": (68.98e9, None),
    "llama3-8b": (8.03e9, None),  # Llama 3 herd, HF model card
    "llama3-70b": (70.55e9, None),
    "mixtral-8x7b": (46.7e9, 12.9e9),  # Jiang et al. 2024
    "megatron-22b": (22.0e9, None),  # Korthikanti et al. 2022, Table 3 "22B"
    "stage-llama-70b": (68.98e9, None),  # Llama-2-70B's shape
    "stage-gpt-175b": (175.0e9, None),  # GPT-3 175B's shape, untied embeddings
    "mistral-7b": (7.24e9, None),  # HF model card, mistralai/Mistral-7B-v0.1
    # DeepSeek-V2-Lite model card: 15.7B total, 2.4B activated (without the input embedding
    # table, see ACTIVE_WITHOUT_EMBEDDINGS)
    "deepseek-v2-lite": (15.7e9, 2.4e9),
}
#: Presets whose published activated count leaves the input embedding table out.
ACTIVE_WITHOUT_EMBEDDINGS = {"deepseek-v2-lite"}

# Exact parameter counts of the HuggingFace checkpoints (sum of tensor sizes).
EXACT = {
    "llama2-7b": 6_738_415_616,
    "llama2-13b": 13_015_864_320,
    "llama2-70b": 68_976_648_192,
    "llama3-8b": 8_030_261_248,
    "llama3-70b": 70_553_706_496,
    "mixtral-8x7b": 46_702_792_704,
}


def gpt_like(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "toy",
        "layers": 2,
        "hidden": 64,
        "heads": 4,
        "kv_heads": 4,
        "head_dim": 16,
        "ffn": 256,
        "activation": "gelu",
        "vocab": 1000,
        "seq": 128,
    }
    data.update(changes)
    return data


# -- HF config.json dictionaries (the fields of the published files) ---------------------------

LLAMA2_7B_HF = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_act": "silu",
    "hidden_size": 4096,
    "intermediate_size": 11008,
    "max_position_embeddings": 4096,
    "num_attention_heads": 32,
    "num_hidden_layers": 32,
    "num_key_value_heads": 32,
    "rms_norm_eps": 1e-05,
    "tie_word_embeddings": False,
    "vocab_size": 32000,
}

MIXTRAL_HF = {
    "architectures": ["MixtralForCausalLM"],
    "model_type": "mixtral",
    "hidden_act": "silu",
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "max_position_embeddings": 32768,
    "num_attention_heads": 32,
    "num_experts_per_tok": 2,
    "num_hidden_layers": 32,
    "num_key_value_heads": 8,
    "num_local_experts": 8,
    "rms_norm_eps": 1e-05,
    "rope_theta": 1e6,
    "tie_word_embeddings": False,
    "vocab_size": 32000,
}

# GPT-2 small's config.json: no n_inner (None = 4 * n_embd), no tie_word_embeddings (HF
# default true), activation_function instead of hidden_act.
GPT2_HF = {
    "activation_function": "gelu_new",
    "architectures": ["GPT2LMHeadModel"],
    "layer_norm_epsilon": 1e-05,
    "model_type": "gpt2",
    "n_ctx": 1024,
    "n_embd": 768,
    "n_head": 12,
    "n_layer": 12,
    "n_positions": 1024,
    "vocab_size": 50257,
}


# -- presets -------------------------------------------------------------------------------------


def test_every_preset_is_listed_and_has_a_published_count() -> None:
    assert available_models() == sorted(PUBLISHED)
    assert set(bundled("models")) == set(PUBLISHED)


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_preset_params_match_published(name: str) -> None:
    model = load_model(name)
    total, active = PUBLISHED[name]
    assert model.params() == pytest.approx(total, rel=0.02)
    embeddings = name not in ACTIVE_WITHOUT_EMBEDDINGS
    # "2.4B" is a rounded figure: des counts 2.451B (2.1% above)
    rel = 0.025 if not embeddings else 0.02
    assert model.active_params(embeddings) == pytest.approx(active or total, rel=rel)


@pytest.mark.parametrize("name", sorted(EXACT))
def test_preset_params_match_checkpoint_exactly(name: str) -> None:
    assert load_model(name).params() == EXACT[name]


def test_gpt3_175b_breakdown() -> None:
    m = load_model("gpt3-175b")
    h = 12288
    assert m.bias and m.norm == "layernorm" and m.position_embeddings and m.tied_embeddings
    assert m.attention_params() == 4 * h * h + 4 * h
    assert m.mlp_params() == 8 * h * h + 4 * h + h
    assert m.layer_params() == 12 * h * h + 13 * h
    assert m.embedding_params() == 50257 * h + 2048 * h
    assert m.lm_head_params() == 0
    assert m.params() == 174_604_259_328


def test_mixtral_active_and_components() -> None:
    m = load_model("mixtral-8x7b")
    assert m.is_moe and m.expert_ffn == 14336 and not m.bias
    assert m.expert_params() == 3 * 4096 * 14336
    assert m.router_params() == 4096 * 8
    assert m.mlp_params() == m.expert_params()  # ffn == expert_ffn here
    assert m.active_params() == 12_879_925_248
    assert m.params() - m.active_params() == 32 * 6 * m.expert_params()


def test_gqa_attention_params() -> None:
    m = load_model("llama2-70b")
    assert (m.q_dim, m.kv_dim) == (8192, 1024)
    assert m.attention_params() == 2 * 8192 * 8192 + 2 * 8192 * 1024


def test_head_dim_independent_of_hidden() -> None:
    # Gemma-7B style: hidden 3072, 16 heads of 256 (16 * 256 = 4096 != 3072).
    m = ModelConfig(name="g", layers=1, hidden=3072, heads=16, kv_heads=16, head_dim=256,
                    ffn=24576, activation="swiglu", vocab=256000, seq=8192, norm="rmsnorm")
    assert m.attention_params() == 2 * 3072 * 4096 + 2 * 3072 * 4096


def test_megatron_22b_head_dim_is_hidden_over_heads() -> None:
    m = load_model("megatron-22b")
    assert m.head_dim == 96 == m.hidden // m.heads


def test_stage_presets_follow_stage() -> None:
    llama, gpt = load_model("stage-llama-70b"), load_model("stage-gpt-175b")
    assert (llama.kv_heads, llama.seq, llama.vocab) == (8, 1024, 32000)
    assert dataclasses.replace(llama, name="llama2-70b", seq=4096) == load_model("llama2-70b")
    assert (gpt.kv_heads, gpt.seq, gpt.bias, gpt.tied_embeddings) == (96, 1024, False, False)


@pytest.mark.parametrize("stem", sorted(PUBLISHED))
def test_preset_files_cite_a_source_and_match_their_stem(stem: str) -> None:
    text = bundled("models")[stem].read_text(encoding="utf-8")
    assert any(line.startswith("# source:") for line in text.splitlines())
    assert yaml.safe_load(text)["name"] == stem


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_yaml_round_trip(name: str) -> None:
    model = load_model(name)
    assert model_from_dict(yaml.safe_load(model_to_yaml(model))) == model


# -- loading -------------------------------------------------------------------------------------


def test_load_model_case_insensitive_and_from_path(tmp_path: Path) -> None:
    assert load_model("LLAMA2-7B") == load_model("llama2-7b")
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(gpt_like(name="mine")), encoding="utf-8")
    assert load_model(str(path)).name == "mine"
    assert load_model(path).params() > 0


def test_load_model_unknown_name_lists_presets() -> None:
    with pytest.raises(ModelConfigError, match="llama2-7b") as info:
        load_model("gpt-5")
    assert "unknown model 'gpt-5'" in str(info.value)


def test_load_model_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ModelConfigError, match="not found"):
        load_model(str(tmp_path / "none.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("layers: [1,\n", encoding="utf-8")
    with pytest.raises(ModelConfigError, match="not valid YAML"):
        load_model(str(bad))
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(yaml.safe_dump(gpt_like(layers=0)), encoding="utf-8")
    with pytest.raises(ModelConfigError, match=r"wrong\.yaml: model\.layers"):
        load_model(str(wrong))


def test_model_from_dict_defaults() -> None:
    data = gpt_like()
    del data["kv_heads"], data["head_dim"]
    m = model_from_dict(data)
    assert (m.kv_heads, m.head_dim, m.bias, m.norm) == (4, 16, True, "layernorm")


def test_model_from_dict_unknown_key_lists_allowed() -> None:
    pattern = r"model\.n_layers: unknown key 'n_layers'.*; expected one of .*layers"
    with pytest.raises(ModelConfigError, match=pattern):
        model_from_dict(gpt_like(n_layers=3))


def test_model_from_dict_missing_key() -> None:
    data = gpt_like()
    del data["vocab"]
    with pytest.raises(ModelConfigError, match=r"model\.vocab: required key is missing"):
        model_from_dict(data)


def test_model_from_dict_head_dim_needed_when_not_divisible() -> None:
    data = gpt_like(hidden=100, heads=3)
    del data["head_dim"], data["kv_heads"]
    with pytest.raises(ModelConfigError, match=r"custom\.head_dim: missing"):
        model_from_dict(data, where="custom")


def test_model_from_dict_not_a_mapping() -> None:
    with pytest.raises(ModelConfigError, match="must be a mapping"):
        model_from_dict([1, 2])  # type: ignore[arg-type]


# -- validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "pattern"),
    [
        ({"heads": 6, "kv_heads": 4}, r"model\.kv_heads: heads \(6\) must be a multiple"),
        ({"activation": "relu"}, r"model\.activation: unknown activation 'relu'.*one of gelu"),
        ({"norm": "batchnorm"}, r"model\.norm: unknown norm 'batchnorm'; expected one of"),
        ({"layers": 0}, r"model\.layers: must be a positive integer"),
        ({"hidden": 64.0}, r"model\.hidden: must be a positive integer"),
        ({"vocab": True}, r"model\.vocab: must be a positive integer"),
        ({"name": ""}, r"model\.name: must be a non-empty string"),
        ({"top_k": 2}, r"model\.top_k: must be 0 for a dense model"),
        ({"expert_ffn": 128}, r"model\.expert_ffn: must be 0 for a dense model"),
        ({"experts": 4, "top_k": 5}, r"model\.top_k: must be in 1\.\.experts \(4\)"),
        ({"experts": 4}, r"model\.top_k: must be in 1\.\.experts"),
        ({"experts": -1}, r"model\.experts: must be an integer >= 0"),
        ({"tied_embeddings": "yes"}, r"model\.tied_embeddings: must be true or false"),
        ({"bias": 1}, r"model\.bias: must be true, false or omitted"),
    ],
)
def test_invalid_fields_name_the_key(changes: dict[str, Any], pattern: str) -> None:
    with pytest.raises(ModelConfigError, match=pattern):
        model_from_dict(gpt_like(**changes))


def test_dataclass_validates_too() -> None:
    with pytest.raises(ModelConfigError, match=r"ModelConfig\[x\]\.kv_heads"):
        ModelConfig(name="x", layers=1, hidden=64, heads=4, kv_heads=3, head_dim=16, ffn=1,
                    activation="gelu", vocab=1, seq=1)
    assert issubclass(ModelConfigError, ValueError)


def test_expert_ffn_defaults_to_ffn_and_bias_rule() -> None:
    m = model_from_dict(gpt_like(experts=4, top_k=1, activation="swiglu", norm="rmsnorm"))
    assert m.expert_ffn == m.ffn and m.bias is False
    assert model_from_dict(gpt_like(bias=False)).bias is False
    assert model_from_dict(gpt_like()).bias is True
    with_bias = model_from_dict(gpt_like())
    without = model_from_dict(gpt_like(bias=False))
    h, q, kv, f = 64, 64, 64, 256
    assert with_bias.attention_params() - without.attention_params() == q + 2 * kv + h
    assert with_bias.mlp_params() - without.mlp_params() == f + h


def test_tensor_parallel_head_split() -> None:
    m = load_model("llama2-70b")
    assert m.heads_per_rank(8) == 8
    assert m.kv_heads_per_rank(4) == 2
    assert m.kv_heads_per_rank(16) == 1  # replicated KV heads, as Megatron-LM does
    with pytest.raises(ModelConfigError, match="tp=3 must divide heads"):
        m.heads_per_rank(3)
    with pytest.raises(ModelConfigError, match="tp: must be a positive integer"):
        m.kv_heads_per_rank(0)
    odd = ModelConfig(name="o", layers=1, hidden=96, heads=12, kv_heads=6, head_dim=8, ffn=1,
                      activation="gelu", vocab=1, seq=1)
    with pytest.raises(ModelConfigError, match="must divide one another"):
        odd.kv_heads_per_rank(4)


# -- HuggingFace import --------------------------------------------------------------------------


def test_hf_llama2_7b_equals_preset() -> None:
    assert from_hf_config(LLAMA2_7B_HF, name="llama2-7b") == load_model("llama2-7b")


def test_hf_mixtral_equals_preset() -> None:
    assert from_hf_config(MIXTRAL_HF, name="mixtral-8x7b") == load_model("mixtral-8x7b")


def test_hf_gpt2_style_with_gpt3_dims_equals_preset() -> None:
    config = dict(GPT2_HF, n_layer=96, n_embd=12288, n_head=96, n_positions=2048, n_ctx=2048)
    assert from_hf_config(config, name="gpt3-175b") == load_model("gpt3-175b")


def test_hf_gpt2_small_exact_count() -> None:
    m = from_hf_config(GPT2_HF, name="gpt2")
    assert (m.ffn, m.activation, m.norm, m.seq) == (3072, "gelu", "layernorm", 1024)
    assert m.tied_embeddings and m.position_embeddings and m.bias
    assert m.params() == 124_439_808  # HF gpt2 checkpoint


def test_hf_seq_override_and_kv_defaults() -> None:
    config = dict(LLAMA2_7B_HF)
    del config["num_key_value_heads"]
    m = from_hf_config(config, name="x", seq=1024)
    assert (m.seq, m.kv_heads) == (1024, 32)
    assert from_hf_config(dict(GPT2_HF, multi_query=True), name="mq").kv_heads == 1


def test_hf_explicit_head_dim() -> None:
    config = dict(LLAMA2_7B_HF, head_dim=64)
    assert from_hf_config(config, name="x").head_dim == 64


def test_hf_missing_key_names_aliases() -> None:
    config = dict(LLAMA2_7B_HF)
    del config["num_hidden_layers"]
    with pytest.raises(ModelConfigError,
                       match="tried num_hidden_layers, n_layer, num_layers"):
        from_hf_config(config, name="x")
    config = dict(LLAMA2_7B_HF)
    del config["intermediate_size"]
    with pytest.raises(ModelConfigError, match="intermediate_size, n_inner, ffn_dim"):
        from_hf_config(config, name="x")


def test_hf_unsupported_activation() -> None:
    opt = {"model_type": "opt", "architectures": ["OPTForCausalLM"], "activation_function":
           "relu", "hidden_size": 768, "num_attention_heads": 12, "num_hidden_layers": 12,
           "ffn_dim": 3072, "vocab_size": 50272, "max_position_embeddings": 2048}
    with pytest.raises(ModelConfigError, match="unsupported activation 'relu'"):
        from_hf_config(opt, name="opt")


def test_hf_silu_outside_known_families_is_gated() -> None:
    config = dict(LLAMA2_7B_HF, architectures=["SomethingNew"], model_type="new")
    assert from_hf_config(config, name="x").activation == "swiglu"


def test_hf_invalid_values() -> None:
    with pytest.raises(ModelConfigError, match="num_attention_heads must be a positive integer"):
        from_hf_config(dict(LLAMA2_7B_HF, num_attention_heads="32"), name="x")
    with pytest.raises(ModelConfigError, match=r"kv_heads: heads \(32\) must be a multiple"):
        from_hf_config(dict(LLAMA2_7B_HF, num_key_value_heads=5), name="x")
    with pytest.raises(ModelConfigError, match="tie_word_embeddings must be true or false"):
        from_hf_config(dict(LLAMA2_7B_HF, tie_word_embeddings="no"), name="x")
    with pytest.raises(ModelConfigError, match="must be a mapping"):
        from_hf_config([], name="x")  # type: ignore[arg-type]
