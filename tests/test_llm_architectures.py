"""Model coverage beyond Llama-style blocks: multi-head latent attention (DeepSeek-V2/V3),
sliding-window attention (Mistral), DeepSeekMoE's shared experts and leading dense layers, the
KV-cache precision, and the HuggingFace importer for these families (with its warnings).

Closed forms: parameter counts by hand, FLOPs = 2 x active matmul parameters x tokens plus the
attention core, KV-cache bytes per the DeepSeek-V2 paper (arXiv 2405.04434, Table 1:
``(d_c + d_h^R) l`` elements per token) and Mistral 7B's rolling buffer (arXiv 2310.06825)."""

from __future__ import annotations

import logging
import math

import pytest

from des.app.config import scenario_from_dict
from workloads import ops
from workloads.hf_config import from_hf_config, import_hf_config
from workloads.inference import InferenceConfig, build_inference, inference_memory
from workloads.llm import build_training
from workloads.memory import activations_per_layer, kv_cache_bytes
from workloads.models import ModelConfigError, load_model, model_from_dict
from workloads.op_cost import Shard
from workloads.parallel import ParallelConfig

# DeepSeek-V2-Lite's config.json, transcribed field by field from the config that
# transformers 5.7 printed for deepseek-ai/DeepSeek-V2-Lite-Chat (a public model report found
# with the search tool; same architecture as the base model). transformers 5 adds "head_dim"
# (= qk_rope_head_dim), "dtype" and "rope_parameters" to what the hub file holds.
DEEPSEEK_V2_LITE_HF = {
    "architectures": ["DeepseekV2ForCausalLM"],
    "attention_bias": False,
    "attention_dropout": 0.0,
    "auto_map": {"AutoConfig": "configuration_deepseek.DeepseekV2Config",
                 "AutoModel": "modeling_deepseek.DeepseekV2Model",
                 "AutoModelForCausalLM": "modeling_deepseek.DeepseekV2ForCausalLM"},
    "aux_loss_alpha": 0.001,
    "bos_token_id": 100000,
    "dtype": "bfloat16",
    "eos_token_id": 100001,
    "first_k_dense_replace": 1,
    "head_dim": 64,
    "hidden_act": "silu",
    "hidden_size": 2048,
    "initializer_range": 0.02,
    "intermediate_size": 10944,
    "kv_lora_rank": 512,
    "max_position_embeddings": 163840,
    "mlp_bias": False,
    "model_type": "deepseek_v2",
    "moe_intermediate_size": 1408,
    "moe_layer_freq": 1,
    "n_group": 1,
    "n_routed_experts": 64,
    "n_shared_experts": 2,
    "norm_topk_prob": False,
    "num_attention_heads": 16,
    "num_experts_per_tok": 6,
    "num_hidden_layers": 27,
    "num_key_value_heads": 16,
    "pad_token_id": None,
    "pretraining_tp": 1,
    "q_lora_rank": None,
    "qk_nope_head_dim": 128,
    "qk_rope_head_dim": 64,
    "rms_norm_eps": 1e-06,
    "rope_parameters": {"beta_fast": 32, "beta_slow": 1, "factor": 40, "mscale": 0.707,
                        "mscale_all_dim": 0.707, "original_max_position_embeddings": 4096,
                        "rope_theta": 10000, "rope_type": "yarn", "type": "yarn"},
    "routed_scaling_factor": 1.0,
    "scoring_func": "softmax",
    "seq_aux": True,
    "tie_word_embeddings": False,
    "topk_group": 1,
    "topk_method": "greedy",
    "transformers_version": "5.7.0",
    "use_cache": True,
    "v_head_dim": 128,
    "vocab_size": 102400,
}

# https://huggingface.co/mistralai/Mistral-7B-v0.1/blob/main/config.json, transcribed from
# copies of it quoted in public repositories (found with the search tool).
MISTRAL_7B_HF = {
    "architectures": ["MistralForCausalLM"],
    "bos_token_id": 1,
    "eos_token_id": 2,
    "hidden_act": "silu",
    "hidden_size": 4096,
    "initializer_range": 0.02,
    "intermediate_size": 14336,
    "max_position_embeddings": 32768,
    "model_type": "mistral",
    "num_attention_heads": 32,
    "num_hidden_layers": 32,
    "num_key_value_heads": 8,
    "rms_norm_eps": 1e-05,
    "rope_theta": 10000.0,
    "sliding_window": 4096,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "transformers_version": "4.34.0.dev0",
    "use_cache": True,
    "vocab_size": 32000,
}

LITE = load_model("deepseek-v2-lite")
MISTRAL = load_model("mistral-7b")
# a small DeepSeek-style model for graph builds: MLA with query compression, 2 shared + 8
# routed experts (top 2), the first layer dense
SMALL_DS = model_from_dict({
    "name": "small-ds", "layers": 4, "hidden": 256, "heads": 4, "ffn": 1024,
    "activation": "swiglu", "norm": "rmsnorm", "vocab": 512, "seq": 256,
    "kv_lora_rank": 64, "q_lora_rank": 96, "qk_nope_head_dim": 32, "qk_rope_head_dim": 16,
    "v_head_dim": 32, "experts": 8, "top_k": 2, "expert_ffn": 128, "shared_experts": 2,
    "dense_layers": 1})


# -- parameter counts -----------------------------------------------------------------------------


def test_mla_attention_parameters_by_hand():
    h, n = 2048, 16
    q = h * n * (128 + 64)  # no query compression in the Lite model
    kv_down = h * (512 + 64) + 512  # latent + RoPE key, and the latent's RMSNorm
    kv_up = 512 * n * (128 + 128)  # keys' no-RoPE part and values, every head
    out = n * 128 * h
    assert LITE.attention_params() == q + kv_down + kv_up + out
    # with query compression: down-projection, its RMSNorm, up-projection
    r = 96
    q_small = 256 * r + r + r * 4 * 48
    kv_small = 256 * (64 + 16) + 64 + 64 * 4 * (32 + 32) + 4 * 32 * 256
    assert SMALL_DS.attention_params() == q_small + kv_small


def test_deepseek_v2_lite_totals_match_the_model_card():
    assert LITE.params() == 15_706_484_224  # model card: 15.7B
    assert LITE.active_params(embeddings=False) == pytest.approx(2.4e9, rel=0.025)  # 2.4B
    # one dense layer, 26 MoE layers: 2 shared + 64 routed experts of 3 x 2048 x 1408
    expert = 3 * 2048 * 1408
    moe_mlp = (64 + 2) * expert + 2048 * 64
    assert LITE.layer_params() - LITE.layer_params(0) == moe_mlp - 3 * 2048 * 10944
    idle = 26 * (64 - 6) * expert
    assert LITE.params() - LITE.active_params() == idle


def test_mla_down_projections_are_replicated_over_tensor_parallel_ranks():
    replicated = 2048 * (512 + 64) + 512
    assert LITE.attention_replicated_params() == replicated
    for tp in (1, 2, 4):
        local = LITE.layer_params_local(tp, layer=0)
        assert local == pytest.approx((LITE.layer_params(0) - replicated) / tp + replicated)


@pytest.mark.parametrize(("change", "key"), [
    ({"v_head_dim": 0}, "v_head_dim"),
    ({"qk_rope_head_dim": 0}, "qk_rope_head_dim"),
    ({"kv_heads": 2}, "kv_heads"),
    ({"head_dim": 64}, "head_dim"),
    ({"kv_lora_rank": 0}, "q_lora_rank"),
    ({"dense_layers": 4}, "dense_layers"),
])
def test_inconsistent_mla_and_moe_settings_are_refused(change, key):
    base = {k: getattr(SMALL_DS, k) for k in (
        "name", "layers", "hidden", "heads", "ffn", "activation", "norm", "vocab", "seq",
        "kv_lora_rank", "q_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim",
        "experts", "top_k", "expert_ffn", "shared_experts", "dense_layers")}
    with pytest.raises(ModelConfigError, match=rf"model\.{key}"):
        model_from_dict({**base, **change})


def test_shared_experts_need_an_moe_model():
    with pytest.raises(ModelConfigError, match=r"model\.shared_experts"):
        model_from_dict({"name": "x", "layers": 2, "hidden": 64, "heads": 4, "ffn": 128,
                         "activation": "swiglu", "vocab": 8, "seq": 16, "shared_experts": 1})


# -- FLOPs ----------------------------------------------------------------------------------------


def _matrix_params(model) -> float:
    """Active matmul parameters per token: active parameters less the input embedding table
    and every norm weight (the final norm, two per layer and MLA's latent norms)."""
    latent = model.kv_lora_rank + model.q_lora_rank if model.is_mla else 0
    norms = model.norm_params() * (2 * model.layers + 1) + latent * model.layers
    return model.active_params(embeddings=False) - norms


@pytest.mark.parametrize("model", [LITE, SMALL_DS, MISTRAL], ids=lambda m: m.name)
def test_forward_flops_are_two_per_active_parameter_plus_the_attention_core(model):
    tokens, seq = 512, 512  # under Mistral's window: seq/2 keys per query
    qk = model.head_dim
    v = model.v_head_dim if model.is_mla else model.head_dim
    core = 2.0 * tokens * (seq / 2) * model.heads * (qk + v) * model.layers
    assert ops.forward_flops(model, tokens, seq) == pytest.approx(
        2.0 * tokens * _matrix_params(model) + core, rel=1e-12)


def test_mla_decode_reads_the_compressed_latent_once_for_all_heads():
    context = 4096
    shard = Shard(tokens=1, seq=context, decode=True)
    attn = {op.name: op for op in ops.attention_forward(LITE, shard)}
    width = 512 + 64
    q_bytes, o_bytes = 2 * 16 * width, 2 * 16 * 512
    assert attn["flash_attn"].bytes == q_bytes + 2 * context * width + o_bytes + 4 * 16
    # absorbed form (DeepSeek-V2 Section 2.1.3): scores over the latent and RoPE key,
    # values over the latent, per head
    assert attn["flash_attn"].flops == 2.0 * context * 16 * (width + 512)
    assert attn["mla_q_absorb"].flops == 2.0 * 16 * 128 * 512
    assert attn["mla_v_up"].flops == 2.0 * 16 * 512 * 128
    # an fp8 cache halves the cached bytes read and nothing else
    fp8 = {op.name: op for op in ops.attention_forward(
        LITE, Shard(tokens=1, seq=context, decode=True, kv_bytes=1))}
    assert attn["flash_attn"].bytes - fp8["flash_attn"].bytes == context * width
    assert fp8["flash_attn"].flops == attn["flash_attn"].flops


def test_sliding_window_bounds_the_keys_attended():
    w = MISTRAL.sliding_window
    for seq, expected in [(1024, 512.0), (w, w / 2), (2 * w, 0.75 * w), (8 * w, w - w / 16)]:
        assert ops.attended_keys(MISTRAL, Shard(tokens=1, seq=seq)) == expected
    assert ops.attended_keys(MISTRAL, Shard(tokens=1, seq=3 * w, decode=True)) == w
    assert ops.attended_keys(MISTRAL, Shard(tokens=1, seq=w // 2, decode=True)) == w // 2
    # FLOPs: equal to the windowless model up to the window, smaller and linear beyond it
    full = model_from_dict({**_fields(MISTRAL), "sliding_window": 0})
    core = [ops.total_flops(ops.attention_forward(m, Shard(tokens=s, seq=s)))
            for s in (w, 4 * w) for m in (MISTRAL, full)]
    assert core[0] == core[1] and core[2] < core[3]


def _fields(model) -> dict:
    return {k: getattr(model, k) for k in model.__dataclass_fields__}


# -- KV cache and memory --------------------------------------------------------------------------


def test_mla_kv_cache_is_the_latent_plus_the_rope_key_per_layer():
    # DeepSeek-V2 Table 1: (d_c + d_h^R) l elements per token
    for tp in (1, 2, 8):
        assert kv_cache_bytes(LITE, batch=2, context=4096, tp=tp) == 27 * 576 * 4096 * 2 * 2
    # against multi-head attention with the same 16 heads of 192/128: 2 n_h d_h l
    mha = 27 * 16 * (192 + 128) * 4096 * 2 * 2
    assert mha / kv_cache_bytes(LITE, batch=2, context=4096) == pytest.approx(8.888, rel=1e-3)


def test_sliding_window_caps_the_kv_cache():
    w = MISTRAL.sliding_window
    per_token = 2 * 32 * 8 * 128 * 2
    assert kv_cache_bytes(MISTRAL, batch=1, context=w // 2) == per_token * (w // 2)
    assert kv_cache_bytes(MISTRAL, batch=1, context=w) == per_token * w
    assert kv_cache_bytes(MISTRAL, batch=1, context=8 * w) == per_token * w


def test_kv_cache_dtype_halves_kv_memory_and_decode_kv_reads():
    model = load_model("llama2-7b")
    bf16 = InferenceConfig(tp=1, batch=4, prompt=256, generate=2)
    fp8 = InferenceConfig(tp=1, batch=4, prompt=256, generate=2, kv_cache_dtype="fp8")
    assert (bf16.kv_bytes, fp8.kv_bytes) == (2, 1)
    m16, m8 = inference_memory(model, bf16, 0), inference_memory(model, fp8, 0)
    assert m8.kv_cache == m16.kv_cache / 2
    assert (m8.weights, m8.activations) == (m16.weights, m16.activations)

    def decode_attention_bytes(cfg):
        graph = build_inference(model, cfg, 1).graph
        node = next(n for n in graph.nodes(0) if n.name == "decode/t1/L0.attn")
        return sum(b for _, b, kind in node.kernels if kind == "attention")

    cached = 4 * (256 + 2) * 2 * 32 * 128  # keys and values read by decode step t1
    assert decode_attention_bytes(bf16) - decode_attention_bytes(fp8) == cached
    with pytest.raises(ValueError, match="kv_cache_dtype"):
        InferenceConfig(kv_cache_dtype="int4")


def test_moe_activations_keep_the_shared_experts_and_dense_layers_their_mlp():
    kwargs = dict(micro_batch=1, seq=128, flash=True, recompute="none")
    moe, dense = (activations_per_layer(SMALL_DS, layer=i, **kwargs) for i in (1, 0))
    # per token: 3 stored SwiGLU intermediates x 2 bytes of (top_k + shared) x expert_ffn,
    # plus the routed copies of the input and the router's fp32 probabilities, against the
    # dense layer's ffn
    routed = 2 * 2 * 256 + 4 * 8
    assert moe - dense == 128 * (2 * 3 * ((2 + 2) * 128 - 1024) + routed)


# -- graphs ---------------------------------------------------------------------------------------


def test_expert_all_to_alls_only_in_moe_layers_sized_by_routed_copies():
    par = ParallelConfig(dp=2, ep=2, global_batch=2, seq=128, fold="none")
    workload = build_training(SMALL_DS, par, 2)
    workload.graph.validate()
    a2a = [n for n in workload.graph.nodes(0)
           if n.collective is not None and n.collective.value == "all_to_all"]
    moe_layers = SMALL_DS.layers - SMALL_DS.dense_layers
    assert len(a2a) == 2 * 2 * moe_layers  # dispatch + combine, forward + backward
    assert all("/L0." not in n.name for n in a2a)
    # the send buffer: top_k routed copies of every token (shared experts run locally)
    assert {n.nbytes for n in a2a} == {128 * 2 * 256 * 2}


def test_training_and_inference_graphs_of_an_mla_moe_model_build():
    par = ParallelConfig(tp=2, dp=2, ep=2, global_batch=2, seq=128, fold="none", zero=3)
    workload = build_training(SMALL_DS, par, 4)
    workload.graph.validate()
    flops = math.fsum(n.flops or math.fsum(k[0] for k in n.kernels or ())
                      for r in range(4) for n in workload.graph.nodes(r))
    assert flops > 0
    inference = build_inference(SMALL_DS, InferenceConfig(tp=2, batch=2, prompt=64,
                                                          generate=2), 2)
    inference.graph.validate()
    assert inference.memory[0].kv_cache == kv_cache_bytes(SMALL_DS, batch=2, context=66)


# -- HuggingFace import ---------------------------------------------------------------------------


def test_deepseek_v2_lite_imports_with_mla_and_moe(caplog):
    with caplog.at_level(logging.WARNING, logger="workloads.hf_config"):
        imported = import_hf_config(DEEPSEEK_V2_LITE_HF, "deepseek-v2-lite")
    model = imported.model
    assert model == LITE  # the bundled preset, field by field
    assert model.params() == pytest.approx(15.7e9, rel=0.005)
    assert model.active_params(embeddings=False) == pytest.approx(2.4e9, rel=0.025)
    assert (model.kv_lora_rank, model.qk_rope_head_dim, model.head_dim) == (512, 64, 192)
    assert (model.shared_experts, model.dense_layers, model.top_k) == (2, 1, 6)
    assert imported.warnings == () and not caplog.records  # every field is modelled or inert


def test_mistral_7b_imports_with_its_window():
    model = from_hf_config(MISTRAL_7B_HF, "mistral-7b")
    assert model == MISTRAL
    assert model.params() == pytest.approx(7.24e9, rel=0.002)
    assert model.sliding_window == 4096


def test_every_field_not_modelled_is_warned_about(caplog):
    config = {**DEEPSEEK_V2_LITE_HF, "num_nextn_predict_layers": 1, "n_group": 8,
              "topk_group": 4, "topk_method": "noaux_tc", "moe_layer_freq": 2,
              "quantization_config": {"fmt": "e4m3"}, "attention_dropout": 0.1,
              "mystery_knob": 7}
    with caplog.at_level(logging.WARNING, logger="workloads.hf_config"):
        imported = import_hf_config(config, "v3ish")
    keys = [w.split(":")[0] for w in imported.warnings]
    assert sorted(keys) == sorted(["num_nextn_predict_layers", "n_group", "topk_group",
                                   "topk_method", "moe_layer_freq", "quantization_config",
                                   "attention_dropout", "mystery_knob"])
    assert len(caplog.records) == len(keys)
    assert import_hf_config(config, "quiet", log=False).warnings == imported.warnings


def test_windows_that_are_off_or_per_layer_are_not_applied():
    qwen = {**MISTRAL_7B_HF, "model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"],
            "use_sliding_window": False}
    assert import_hf_config(qwen, "q").model.sliding_window == 0
    mixed = {**MISTRAL_7B_HF, "layer_types": ["sliding_attention", "full_attention"] * 16}
    imported = import_hf_config(mixed, "g")
    assert imported.model.sliding_window == 0
    assert any(w.startswith("sliding_window") for w in imported.warnings)


def test_qwen2_moe_shared_expert_width_becomes_shared_experts():
    config = {**MISTRAL_7B_HF, "model_type": "qwen2_moe", "num_experts": 8,
              "num_experts_per_tok": 2, "moe_intermediate_size": 1024,
              "shared_expert_intermediate_size": 4096}
    assert import_hf_config(config, "q").model.shared_experts == 4


def test_inference_scenario_takes_an_fp8_cache():
    doc = {"topology": {"kind": "switch", "npus": 2, "bandwidth": "300 GB/s"},
           "hardware": "A100-SXM4-80GB",
           "workload": {"kind": "llm_inference", "model": "mistral-7b",
                        "parallel": {"tp": 2, "batch": 1, "prompt": 64, "generate": 1,
                                     "kv_cache_dtype": "fp8"}}}
    fp8 = scenario_from_dict(doc).workload.memory[0]
    doc["workload"]["parallel"]["kv_cache_dtype"] = "bf16"
    bf16 = scenario_from_dict(doc).workload.memory[0]
    assert fp8.kv_cache > 0 and fp8.kv_cache == pytest.approx(bf16.kv_cache / 2)
    assert fp8.weights == bf16.weights  # only the cache changes precision
