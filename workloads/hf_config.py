"""Importing a HuggingFace ``config.json`` as a :class:`~workloads.models.ModelConfig`
(:func:`from_hf_config`): the key aliases of the common families, and the rules that derive the
MLP kind, norm, position embeddings and biases the config does not state."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from workloads.models import ModelConfig, ModelConfigError, model_from_dict

__all__ = ["from_hf_config"]


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


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


def _hf_int(config: Mapping[str, Any], aliases: tuple[str, ...], name: str) -> int:
    value = _hf_get(config, aliases, name)
    if not _is_int(value) or value < 1:
        key = next(k for k in aliases if config.get(k) is not None)
        raise ModelConfigError(
            f"HF config for {name!r}: {key} must be a positive integer, got {value!r}"
        )
    return value


def _hf_family(config: Mapping[str, Any]) -> str:
    """Lower-cased model_type plus architectures, for substring checks."""
    parts = [str(config.get("model_type") or "")]
    architectures = config.get("architectures") or ()
    if isinstance(architectures, str):
        architectures = (architectures,)
    parts.extend(str(a) for a in architectures)
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
    activations (e.g. ``relu``) are refused.
    """
    if not isinstance(config, Mapping):
        raise ModelConfigError(f"HF config for {name!r}: must be a mapping, got "
                               f"{type(config).__name__}")
    family = _hf_family(config)
    layers = _hf_int(config, ("num_hidden_layers", "n_layer", "num_layers"), name)
    hidden = _hf_int(config, ("hidden_size", "n_embd", "d_model"), name)
    heads = _hf_int(config, ("num_attention_heads", "n_head", "num_heads"), name)
    if config.get("num_key_value_heads") is not None:
        kv_heads = _hf_int(config, ("num_key_value_heads",), name)
    elif config.get("multi_query"):
        kv_heads = 1
    else:
        kv_heads = heads
    if config.get("head_dim") is not None:
        head_dim = _hf_int(config, ("head_dim",), name)
    elif hidden % heads == 0:
        head_dim = hidden // heads
    else:
        raise ModelConfigError(
            f"HF config for {name!r}: no head_dim and hidden size {hidden} is not a multiple "
            f"of {heads} heads"
        )
    ffn_aliases = ("intermediate_size", "n_inner", "ffn_dim")
    if any(config.get(k) is not None for k in ffn_aliases) or "n_embd" not in config:
        ffn = _hf_int(config, ffn_aliases, name)
    else:
        ffn = 4 * hidden  # GPT-2 naming: n_inner None means 4 * n_embd

    act = str(_hf_get(config, ("hidden_act", "activation_function", "hidden_activation"), name))
    act_lower = act.lower()
    gated = any(key in family for key in _GATED_ARCHITECTURES)
    if gated or act_lower in ("silu", "swish", "swiglu"):
        activation = "swiglu"
    elif act_lower.startswith("gelu"):
        activation = "gelu"
    else:
        raise ModelConfigError(
            f"HF config for {name!r}: unsupported activation {act!r}; supported: silu/swish "
            "(gated MLP -> swiglu) and gelu* (2-matrix MLP -> gelu)"
        )
    vocab = _hf_int(config, ("vocab_size",), name)
    if seq is None:
        seq = _hf_int(
            config,
            ("max_position_embeddings", "n_positions", "n_ctx", "max_sequence_length",
             "seq_length"),
            name,
        )
    tied = config.get("tie_word_embeddings", True)
    if not isinstance(tied, bool):
        raise ModelConfigError(
            f"HF config for {name!r}: tie_word_embeddings must be true or false, got {tied!r}"
        )

    experts = top_k = expert_ffn = 0
    if any(config.get(k) for k in ("num_local_experts", "num_experts")):
        experts = _hf_int(config, ("num_local_experts", "num_experts"), name)
        top_k = _hf_int(config, ("num_experts_per_tok",), name)
        expert_ffn = _hf_int(config, ("moe_intermediate_size", *ffn_aliases), name)

    model_type = str(config.get("model_type") or "").lower()
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

