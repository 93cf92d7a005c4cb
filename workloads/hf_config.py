"""Importing a HuggingFace ``config.json`` as a :class:`~workloads.models.ModelConfig`
(:func:`from_hf_config`): the key aliases of the common families, and the rules that derive the
MLP kind, norm, position embeddings and biases the config does not state."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from des.core.schema import SchemaError, short, show
from des.core.yaml_safe import LIMITS, load_json, read_text
from workloads.models import ModelConfig, ModelConfigError, model_from_dict

__all__ = ["HF_LIMITS", "MAX_HF_CONFIG_BYTES", "from_hf_config", "read_hf_config"]

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
    limits = replace(LIMITS, max_bytes=MAX_HF_CONFIG_BYTES)
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


def from_hf_config(config: Mapping[str, Any], name: str, seq: int | None = None) -> ModelConfig:
    """A :class:`ModelConfig` from a HuggingFace ``config.json`` dictionary (best effort).

    Keys read (first alias found): layers ``num_hidden_layers``/``n_layer``/``num_layers``;
    hidden ``hidden_size``/``n_embd``/``d_model``; heads ``num_attention_heads``/``n_head``;
    kv_heads ``num_key_value_heads`` (``multi_query: true`` -> 1; else ``heads``); head_dim
    ``head_dim`` (else ``hidden // heads``); ffn ``intermediate_size``/``n_inner``/``ffn_dim``
    (GPT-2 naming without one: ``4 * n_embd``, HF GPT2Config's ``n_inner=None``); activation
    ``hidden_act``/``activation_function``/``hidden_activation``; vocab ``vocab_size``; seq the
    ``seq`` argument or ``max_position_embeddings``/``n_positions``/``n_ctx``/``seq_length``;
    ``tie_word_embeddings`` (HF default true); MoE ``num_local_experts``/``num_experts``,
    ``num_experts_per_tok``, ``moe_intermediate_size``.

    Derived: ``swiglu`` for gated-MLP families (Llama, Mistral, Mixtral, Qwen2, Gemma, ...) and
    for any ``silu``/``swish`` activation, ``gelu`` for other ``gelu*`` activations; ``rmsnorm``
    when ``rms_norm_eps`` is present, else ``layernorm``; learned position embeddings for
    GPT-2-style families (``model_type`` gpt2, gpt_bigcode, gpt_neo, opt, biogpt); ``bias`` by
    the GPT-style rule (per-layer bias flags such as Qwen2's QKV-only bias are not modelled).
    A missing required key raises :class:`ModelConfigError` naming the aliases tried; other
    activations (e.g. ``relu``) are refused; so are values of the wrong type (a string where a
    count is due, ``architectures: 5``, a non-boolean ``multi_query``), non-finite or
    non-integral sizes, and sizes above :data:`HF_LIMITS`.
    """
    if not isinstance(config, Mapping):
        raise ModelConfigError(f"HF config for {name!r}: must be a mapping, got "
                               f"{type(config).__name__}")
    family = _hf_family(config, name)
    layers = _hf_int(config, ("num_hidden_layers", "n_layer", "num_layers"), name, "layers")
    hidden = _hf_int(config, ("hidden_size", "n_embd", "d_model"), name, "hidden")
    heads = _hf_int(config, ("num_attention_heads", "n_head", "num_heads"), name, "heads")
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
    ffn_aliases = ("intermediate_size", "n_inner", "ffn_dim")
    if any(config.get(k) is not None for k in ffn_aliases) or "n_embd" not in config:
        ffn = _hf_int(config, ffn_aliases, name, "ffn")
    else:  # GPT-2 naming: n_inner None means 4 * n_embd
        ffn = _bounded(4 * hidden, "4 * n_embd (no n_inner)", name, "ffn")

    act_key = ("hidden_act", "activation_function", "hidden_activation")
    act = _hf_get(config, act_key, name)
    if not isinstance(act, str):
        key = next(k for k in act_key if config.get(k) is not None)
        raise ModelConfigError(f"HF config for {name!r}: {key} must be an activation name "
                               f"(a string), got {show(act)}")
    act_lower = act.lower()
    gated = any(key in family for key in _GATED_ARCHITECTURES)
    if gated or act_lower in ("silu", "swish", "swiglu"):
        activation = "swiglu"
    elif act_lower.startswith("gelu"):
        activation = "gelu"
    else:
        raise ModelConfigError(
            f"HF config for {name!r}: unsupported activation {short(act)}; supported: silu/swish "
            "(gated MLP -> swiglu) and gelu* (2-matrix MLP -> gelu)"
        )
    vocab = _hf_int(config, ("vocab_size",), name, "vocab")
    if seq is None:
        seq = _hf_int(
            config,
            ("max_position_embeddings", "n_positions", "n_ctx", "max_sequence_length",
             "seq_length"),
            name,
            "seq",
        )
    else:
        seq = _bounded(seq, "the seq argument", name, "seq")
    tied = config.get("tie_word_embeddings", True)
    if not isinstance(tied, bool):
        raise ModelConfigError(
            f"HF config for {name!r}: tie_word_embeddings must be true or false, got "
            f"{show(tied)}"
        )

    experts = top_k = expert_ffn = 0
    if any(config.get(k) for k in ("num_local_experts", "num_experts")):
        experts = _hf_int(config, ("num_local_experts", "num_experts"), name, "experts")
        top_k = _hf_int(config, ("num_experts_per_tok",), name, "top_k")
        expert_ffn = _hf_int(config, ("moe_intermediate_size", *ffn_aliases), name,
                             "expert_ffn")

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
        "experts": experts,
        "top_k": top_k,
        "expert_ffn": expert_ffn,
        "norm": "rmsnorm" if "rms_norm_eps" in config else "layernorm",
        "position_embeddings": model_type in _LEARNED_POSITION_TYPES,
        "bias": None,
    }
    return model_from_dict(values, f"HF config for {name!r}")

