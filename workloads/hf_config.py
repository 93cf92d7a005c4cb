"""Importing a HuggingFace ``config.json`` as a :class:`~workloads.models.ModelConfig`
(:func:`import_hf_config`, :func:`from_hf_config`): the key aliases of the common families, the
rules that derive the MLP kind, norm, position embeddings and biases the config does not state,
DeepSeek-V2/V3 (multi-head latent attention, shared and routed experts, leading dense layers)
and Mistral/Mixtral/Qwen2 sliding windows, and a warning for every field that is not modelled."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import replace as dc_replace
from pathlib import Path
from typing import Any

from des.core.schema import SchemaError, short, show
from des.core.yaml_safe import LIMITS, load_json, read_text
from workloads.models import ModelConfig, ModelConfigError, model_from_dict

__all__ = ["COST_NEUTRAL_KEYS", "HF_LIMITS", "MAX_HF_CONFIG_BYTES", "HFImport", "from_hf_config",
           "import_hf_config", "read_hf_config"]

logger = logging.getLogger(__name__)

#: Upper bounds of the sizes a config may state (des model field -> largest accepted), far above
#: any published model (hidden <= 32k, ffn <= 128k, vocab <= 1M, context <= 10M tokens, <= 1k
#: experts) so that a typo or a hostile file (a 10**200-wide model) is refused up front
#: instead of overflowing every cost to infinity.
HF_LIMITS: dict[str, int] = {
    "layers": 1 << 12,
    "hidden": 1 << 20,
    "heads": 1 << 16,
    "kv_heads": 1 << 16,
    "head_dim": 1 << 16,
    "ffn": 1 << 22,
    "vocab": 1 << 24,
    "seq": 1 << 24,
    "experts": 1 << 14,
    "top_k": 1 << 14,
    "expert_ffn": 1 << 22,
    "sliding_window": 1 << 24,
    "kv_lora_rank": 1 << 16,
    "q_lora_rank": 1 << 16,
    "qk_nope_head_dim": 1 << 16,
    "qk_rope_head_dim": 1 << 16,
    "v_head_dim": 1 << 16,
    "shared_experts": 1 << 14,
    "dense_layers": 1 << 12,
}
#: A config.json larger than this is not a model configuration.
MAX_HF_CONFIG_BYTES = 16 << 20


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def read_hf_config(path: str | Path) -> dict[str, Any]:
    """The JSON object of a HuggingFace ``config.json``; a :class:`ModelConfigError` naming the
    file when it cannot be read, is too large, is not UTF-8 JSON, is nested too deeply or is
    not an object."""
    path = Path(path)
    limits = dc_replace(LIMITS, max_bytes=MAX_HF_CONFIG_BYTES)
    try:  # the one bounded reader: size, UTF-8, nesting, integer length, duplicate keys
        config = load_json(read_text(path, "HuggingFace config", limits), str(path), limits)
    except SchemaError as err:
        raise ModelConfigError(str(err)) from None
    if not isinstance(config, dict):
        raise ModelConfigError(f"{path}: expected a JSON object, got {show(config)}")
    return config


# Architectures whose MLP is gated (gate * act(up), 3 matrices) - modelled as "swiglu" whatever
# the activation function inside the gate.
_GATED_ARCHITECTURES = (
    "llama",
    "mistral",
    "mixtral",
    "qwen2",
    "qwen3",
    "gemma",
    "phi3",
    "olmo",
    "deepseek",
    "internlm",
)
# model_type values with learned absolute position embeddings (GPT-2 style wpe).
_LEARNED_POSITION_TYPES = ("gpt2", "gpt_bigcode", "gpt_neo", "opt", "biogpt")


def _hf_get(config: Mapping[str, Any], aliases: tuple[str, ...], name: str) -> Any:
    """The first alias present with a non-null value, else a clear error naming them all."""
    for key in aliases:
        if config.get(key) is not None:
            return config[key]
    raise ModelConfigError(
        f"HF config for {name!r}: missing required key; tried {', '.join(aliases)}"
    )


def _hf_int(config: Mapping[str, Any], aliases: tuple[str, ...], name: str, field: str) -> int:
    """A positive integer under the first alias present, at most ``HF_LIMITS[field]``."""
    value = _hf_get(config, aliases, name)
    key = next(k for k in aliases if config.get(k) is not None)
    return _bounded(value, key, name, field)


def _bounded(value: Any, key: str, name: str, field: str) -> int:
    limit = HF_LIMITS[field]
    if not _is_int(value) or not 1 <= value <= limit:
        raise ModelConfigError(
            f"HF config for {name!r}: {key} must be a positive integer (at most {limit}), "
            f"got {show(value)}"
        )
    return value


def _hf_text(config: Mapping[str, Any], key: str, name: str) -> str:
    """An optional string key ("" when absent or null)."""
    value = config.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ModelConfigError(f"HF config for {name!r}: {key} must be a string, got "
                               f"{show(value)}")
    return value


def _hf_flag(config: Mapping[str, Any], key: str, name: str, default: bool) -> bool:
    """An optional true/false key."""
    value = config.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ModelConfigError(f"HF config for {name!r}: {key} must be true or false, got "
                               f"{show(value)}")
    return value


def _hf_family(config: Mapping[str, Any], name: str) -> str:
    """Lower-cased model_type plus architectures, for substring checks."""
    parts = [_hf_text(config, "model_type", name)]
    architectures = config.get("architectures") or ()
    if isinstance(architectures, str):
        architectures = (architectures,)
    if not isinstance(architectures, list | tuple) or not all(
            isinstance(a, str) for a in architectures):
        raise ModelConfigError(f"HF config for {name!r}: architectures must be a list of "
                               f"class names (strings), got {show(architectures)}")
    parts.extend(architectures)
    return " ".join(parts).lower()



#: Fields that change no FLOP, byte, memory or message count des computes (token ids,
#: initialisation, numerical epsilons, rotary-embedding frequencies and scaling, caching and
#: output switches, training-loss coefficients, routing-weight normalisation and scaling,
#: bookkeeping): read silently. Every other field not modelled is reported by
#: :func:`import_hf_config`.
COST_NEUTRAL_KEYS: frozenset[str] = frozenset({
    "_name_or_path", "transformers_version", "torch_dtype", "dtype", "auto_map",
    "bos_token_id", "eos_token_id", "pad_token_id", "sep_token_id", "decoder_start_token_id",
    "initializer_range", "initializer_factor", "use_cache", "rope_theta", "rope_scaling",
    "rope_parameters", "rope_interleave", "rms_norm_eps", "layer_norm_eps", "layer_norm_epsilon",
    "pretraining_tp", "tokenizer_class", "return_dict", "output_attentions",
    "output_hidden_states", "output_router_logits", "torchscript", "id2label", "label2id",
    "problem_type", "aux_loss_alpha", "router_aux_loss_coef", "router_z_loss_coef", "seq_aux",
    "norm_topk_prob", "routed_scaling_factor", "scoring_func", "router_jitter_noise",
    "summary_activation", "summary_first_dropout", "summary_proj_to_labels", "summary_type",
    "summary_use_proj", "task_specific_params", "scale_attn_weights",
    "scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn", "gradient_checkpointing",
    "is_decoder", "architectures", "model_type",
})
# Dropout probabilities: des adds dropout kernels through the scenario's parallel.dropout switch.
_DROPOUT_KEYS = ("attention_dropout", "hidden_dropout", "resid_pdrop", "embd_pdrop",
                 "attn_pdrop", "dropout", "activation_dropout", "hidden_dropout_prob",
                 "attention_probs_dropout_prob", "classifier_dropout")


@dataclass(frozen=True)
class HFImport:
    """The model a HuggingFace config describes and what the import could not model: one
    sentence per field (also logged at WARNING by :func:`import_hf_config`)."""

    model: ModelConfig
    warnings: tuple[str, ...] = ()


class _Reader:
    """The config being read, the keys used so far and the warnings so far."""

    def __init__(self, config: Mapping[str, Any], name: str) -> None:
        self.config, self.name = config, name
        self.used: set[str] = set()
        self.warnings: list[str] = []

    def required(self, aliases: tuple[str, ...], field: str) -> int:
        """A required positive integer under the first alias present."""
        self.used.update(aliases)
        return _hf_int(self.config, aliases, self.name, field)

    def count(self, key: str, field: str) -> int:
        """An optional whole number >= 0 (0 when absent or null)."""
        self.used.add(key)
        value = self.config.get(key)
        if value is None or (value == 0 and _is_int(value)):
            return 0
        return _bounded(value, key, self.name, field)

    def warn(self, key: str, text: str) -> None:
        self.used.add(key)
        self.warnings.append(f"{key}: {text}")


def from_hf_config(config: Mapping[str, Any], name: str, seq: int | None = None) -> ModelConfig:
    """The :class:`ModelConfig` of :func:`import_hf_config` (its warnings are logged)."""
    return import_hf_config(config, name, seq).model


def import_hf_config(config: Mapping[str, Any], name: str, seq: int | None = None, *,
                     log: bool = True) -> HFImport:
    """A :class:`ModelConfig` from a HuggingFace ``config.json`` dictionary (best effort), with
    a warning for every field it does not model.

    Keys read (first alias found): layers ``num_hidden_layers``/``n_layer``/``num_layers``;
    hidden ``hidden_size``/``n_embd``/``d_model``; heads ``num_attention_heads``/``n_head``;
    kv_heads ``num_key_value_heads`` (``multi_query: true`` -> 1; else ``heads``); head_dim
    ``head_dim`` (else ``hidden // heads``); ffn ``intermediate_size``/``n_inner``/``ffn_dim``
    (GPT-2 naming without one: ``4 * n_embd``, HF GPT2Config's ``n_inner=None``); activation
    ``hidden_act``/``activation_function``/``hidden_activation``; vocab ``vocab_size``; seq the
    ``seq`` argument or ``max_position_embeddings``/``n_positions``/``n_ctx``/``seq_length``;
    ``tie_word_embeddings`` (HF default true); MoE ``num_local_experts``/``num_experts``/
    ``n_routed_experts``, ``num_experts_per_tok``, ``moe_intermediate_size``, shared experts
    ``n_shared_experts`` (DeepSeek) or ``shared_expert_intermediate_size`` in multiples of
    ``moe_intermediate_size`` (Qwen2-MoE), leading dense layers ``first_k_dense_replace``;
    multi-head latent attention ``kv_lora_rank``, ``q_lora_rank``, ``qk_nope_head_dim``,
    ``qk_rope_head_dim``, ``v_head_dim`` (DeepSeek-V2/V3; ``head_dim`` is then ignored:
    transformers 5 writes the RoPE part there); ``sliding_window`` (Mistral, Mixtral; Qwen2
    only with ``use_sliding_window``; ignored when ``layer_types`` mixes sliding and full
    attention layers, which des does not model).

    Derived: ``swiglu`` for gated-MLP families (Llama, Mistral, Mixtral, Qwen2, Gemma,
    DeepSeek, ...) and for any ``silu``/``swish`` activation, ``gelu`` for other ``gelu*``
    activations; ``rmsnorm`` when ``rms_norm_eps`` is present, else ``layernorm``; learned
    position embeddings for GPT-2-style families (``model_type`` gpt2, gpt_bigcode, gpt_neo,
    opt, biogpt); ``bias`` by the GPT-style rule (per-layer bias flags such as Qwen2's QKV-only
    bias are not modelled and are warned about when true).

    Warnings: every field that is neither read above nor in :data:`COST_NEUTRAL_KEYS`, and
    every read value des approximates (a MoE layer frequency other than 1, device-limited
    routing groups, multi-token-prediction layers, quantised weights, dropout probabilities),
    each logged at WARNING (unless ``log`` is False: a caller that shows them itself) and
    returned in :attr:`HFImport.warnings`.

    A missing required key raises :class:`ModelConfigError` naming the aliases tried; other
    activations (e.g. ``relu``) are refused; so are values of the wrong type (a string where a
    count is due, ``architectures: 5``, a non-boolean ``multi_query``), non-finite or
    non-integral sizes, and sizes above :data:`HF_LIMITS`.
    """
    if not isinstance(config, Mapping):
        raise ModelConfigError(f"HF config for {name!r}: must be a mapping, got "
                               f"{type(config).__name__}")
    r = _Reader(config, name)
    family = _hf_family(config, name)
    layers = r.required(("num_hidden_layers", "n_layer", "num_layers"), "layers")
    hidden = r.required(("hidden_size", "n_embd", "d_model"), "hidden")
    heads = r.required(("num_attention_heads", "n_head", "num_heads"), "heads")
    mla = _mla(r)
    r.used.update(("num_key_value_heads", "multi_query", "head_dim"))
    if mla:  # one KV head per query head; head_dim is qk_nope + qk_rope (models._check_mla)
        kv_heads, head_dim = heads, None
    else:
        kv_heads, head_dim = _attention_heads(r, hidden, heads)
    ffn_aliases = ("intermediate_size", "n_inner", "ffn_dim")
    r.used.update(ffn_aliases)
    if any(config.get(k) is not None for k in ffn_aliases) or "n_embd" not in config:
        ffn = _hf_int(config, ffn_aliases, name, "ffn")
    else:  # GPT-2 naming: n_inner None means 4 * n_embd
        ffn = _bounded(4 * hidden, "4 * n_embd (no n_inner)", name, "ffn")
    activation = _activation(r, family)
    vocab = r.required(("vocab_size",), "vocab")
    seq_keys = ("max_position_embeddings", "n_positions", "n_ctx", "max_sequence_length",
                "seq_length")
    r.used.update(seq_keys)
    if seq is None:
        seq = _hf_int(config, seq_keys, name, "seq")
    else:
        seq = _bounded(seq, "the seq argument", name, "seq")
    r.used.add("tie_word_embeddings")
    tied = config.get("tie_word_embeddings", True)
    if not isinstance(tied, bool):
        raise ModelConfigError(
            f"HF config for {name!r}: tie_word_embeddings must be true or false, got "
            f"{show(tied)}"
        )
    moe = _moe(r, ffn_aliases, layers)
    window = _sliding_window(r, layers)
    _approximations(r)

    model_type = _hf_text(config, "model_type", name).lower()
    values = {
        "name": name,
        "layers": layers,
        "hidden": hidden,
        "heads": heads,
        "kv_heads": kv_heads,
        "head_dim": head_dim,
        "ffn": ffn,
        "activation": activation,
        "vocab": vocab,
        "seq": seq,
        "tied_embeddings": tied,
        "norm": "rmsnorm" if "rms_norm_eps" in config else "layernorm",
        "position_embeddings": model_type in _LEARNED_POSITION_TYPES,
        "bias": None,
        "sliding_window": window,
        **moe,
        **mla,
    }
    model = model_from_dict(values, f"HF config for {name!r}")
    for key in config:
        if key not in r.used and key not in COST_NEUTRAL_KEYS:
            r.warnings.append(f"{key}: not modelled, ignored (value {short(config[key])})")
    for text in r.warnings if log else ():
        logger.warning("HF config for %r: %s", name, text)
    return HFImport(model, tuple(r.warnings))


def _attention_heads(r: _Reader, hidden: int, heads: int) -> tuple[int, int]:
    """(kv_heads, head_dim) of ordinary attention."""
    config, name = r.config, r.name
    if config.get("num_key_value_heads") is not None:
        kv_heads = _hf_int(config, ("num_key_value_heads",), name, "kv_heads")
    elif _hf_flag(config, "multi_query", name, False):
        kv_heads = 1
    else:
        kv_heads = heads
    if config.get("head_dim") is not None:
        head_dim = _hf_int(config, ("head_dim",), name, "head_dim")
    elif hidden % heads == 0:
        head_dim = hidden // heads
    else:
        raise ModelConfigError(
            f"HF config for {name!r}: no head_dim and hidden size {hidden} is not a multiple "
            f"of {heads} heads"
        )
    return kv_heads, head_dim


def _activation(r: _Reader, family: str) -> str:
    act_key = ("hidden_act", "activation_function", "hidden_activation")
    r.used.update(act_key)
    act = _hf_get(r.config, act_key, r.name)
    if not isinstance(act, str):
        key = next(k for k in act_key if r.config.get(k) is not None)
        raise ModelConfigError(f"HF config for {r.name!r}: {key} must be an activation name "
                               f"(a string), got {show(act)}")
    act_lower = act.lower()
    gated = any(key in family for key in _GATED_ARCHITECTURES)
    if gated or act_lower in ("silu", "swish", "swiglu"):
        return "swiglu"
    if act_lower.startswith("gelu"):
        return "gelu"
    raise ModelConfigError(
        f"HF config for {r.name!r}: unsupported activation {short(act)}; supported: silu/swish "
        "(gated MLP -> swiglu) and gelu* (2-matrix MLP -> gelu)"
    )


def _mla(r: _Reader) -> dict[str, int]:
    """Multi-head latent attention's dimensions (DeepSeek-V2, arXiv 2405.04434, Section 2.1),
    empty without ``kv_lora_rank``."""
    keys = ("kv_lora_rank", "q_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim",
            "v_head_dim")
    values = {key: r.count(key, key) for key in keys}
    if not values["kv_lora_rank"]:
        for key in keys[1:]:
            if values[key]:
                r.warn(key, "ignored: multi-head latent attention needs kv_lora_rank")
        return {}
    return values


def _moe(r: _Reader, ffn_aliases: tuple[str, ...], layers: int) -> dict[str, int]:
    """Routed experts, top-k, expert width, shared experts and leading dense layers."""
    config, name = r.config, r.name
    expert_keys = ("num_local_experts", "num_experts", "n_routed_experts")
    r.used.update((*expert_keys, "num_experts_per_tok", "moe_intermediate_size",
                   "n_shared_experts", "shared_expert_intermediate_size",
                   "first_k_dense_replace"))
    if not any(config.get(k) for k in expert_keys):
        for key in ("n_shared_experts", "first_k_dense_replace"):
            if config.get(key):
                r.warn(key, "ignored: the config names no routed experts")
        return {}
    experts = _hf_int(config, expert_keys, name, "experts")
    top_k = _hf_int(config, ("num_experts_per_tok",), name, "top_k")
    expert_ffn = _hf_int(config, ("moe_intermediate_size", *ffn_aliases), name, "expert_ffn")
    shared = r.count("n_shared_experts", "shared_experts")
    width = config.get("shared_expert_intermediate_size")
    if width is not None and not shared:
        width = _bounded(width, "shared_expert_intermediate_size", name, "expert_ffn")
        if width % expert_ffn:
            r.warn("shared_expert_intermediate_size",
                   f"{width} is not a multiple of the expert width {expert_ffn}; the shared "
                   "expert is not modelled")
        else:
            shared = width // expert_ffn
    dense = r.count("first_k_dense_replace", "dense_layers")
    if dense >= layers:
        raise ModelConfigError(f"HF config for {name!r}: first_k_dense_replace ({dense}) must "
                               f"be below num_hidden_layers ({layers})")
    return {"experts": experts, "top_k": top_k, "expert_ffn": expert_ffn,
            "shared_experts": shared, "dense_layers": dense}


def _sliding_window(r: _Reader, layers: int) -> int:
    """The attention window of every layer (Mistral 7B, arXiv 2310.06825), or 0."""
    config = r.config
    r.used.update(("sliding_window", "use_sliding_window", "layer_types", "max_window_layers",
                   "sliding_window_pattern"))
    window = r.count("sliding_window", "sliding_window")
    if not window:
        return 0
    if not _hf_flag(config, "use_sliding_window", r.name, True):
        return 0  # Qwen2 and kin: the window is configured but switched off
    kinds = config.get("layer_types")
    mixed = (isinstance(kinds, list) and len(set(map(str, kinds))) > 1) or bool(
        config.get("sliding_window_pattern"))
    if mixed:
        r.warn("sliding_window", f"{window} applies to some layers only (layer_types / "
               "sliding_window_pattern); des applies one window to all layers or none, so it "
               "is ignored: every layer attends the whole sequence")
        return 0
    limit = config.get("max_window_layers")
    if _is_int(limit) and "use_sliding_window" in config and 0 < limit < layers:
        r.warn("max_window_layers", f"{limit}: only the layers below it use the window in "
               "some families; des applies it to every layer")
    return window


def _approximations(r: _Reader) -> None:
    """Warnings for read fields whose value des approximates."""
    config = r.config
    freq = config.get("moe_layer_freq")
    r.used.add("moe_layer_freq")
    if freq is not None and freq != 1:
        r.warn("moe_layer_freq", f"{short(freq)}: des makes every layer after "
               "first_k_dense_replace an MoE layer")
    for key in ("n_group", "topk_group"):
        r.used.add(key)
        if _is_int(config.get(key)) and config[key] > 1:
            r.warn(key, f"{config[key]}: device-limited (group) routing is not modelled; "
                   "tokens are routed to experts uniformly")
    method = config.get("topk_method")
    r.used.add("topk_method")
    if method not in (None, "greedy"):
        r.warn("topk_method", f"{short(method)}: modelled as balanced top-k routing")
    mtp = config.get("num_nextn_predict_layers")
    r.used.add("num_nextn_predict_layers")
    if mtp:
        r.warn("num_nextn_predict_layers", f"{short(mtp)}: the multi-token-prediction "
               "module is not modelled (neither its parameters nor its compute)")
    if config.get("quantization_config") is not None:
        r.warn("quantization_config", "quantised weights are not modelled: weights count at "
               "the scenario's dtype_bytes")
    for key in ("attention_bias", "mlp_bias", "qkv_bias", "use_bias", "bias"):
        r.used.add(key)
        if config.get(key) is True:
            r.warn(key, "true: biases follow the GPT-style rule (gelu with layernorm), not "
                   "this flag")
    for key in _DROPOUT_KEYS:
        value = config.get(key)
        r.used.add(key)
        if value not in (None, 0, 0.0):
            r.warn(key, f"{short(value)}: dropout is the scenario's parallel.dropout switch, "
                   "not imported")
    r.used.add("ep_size")
    if _is_int(config.get("ep_size")) and config["ep_size"] > 1:
        r.warn("ep_size", f"{config['ep_size']}: parallelism comes from the scenario")
    for key in ("decoder_sparse_step", "mlp_only_layers"):
        r.used.add(key)
        value = config.get(key)
        if value not in (None, 1, [], ()):
            r.warn(key, f"{short(value)}: des makes every layer (after first_k_dense_replace) "
                   "an MoE layer")
