"""Transformer model shapes and their parameter counts, and the bundled presets
(``configs/models/*.yaml``).

A :class:`ModelConfig` is a decoder-only transformer: ``layers`` identical blocks of attention
(multi-head, grouped-query or multi-query) and an MLP (dense, or a mixture of experts on every
layer), token embeddings, optional learned position embeddings and an LM head that may share the
embedding matrix. Presets are loaded with :func:`load_model`; HuggingFace ``config.json``
dictionaries are read with :func:`workloads.hf_config.from_hf_config`.

Parameter-count conventions (stated once, used by every method):

* Biases: ``bias`` defaults to the GPT-style rule - biases on every linear layer when the model
  uses ``gelu`` with ``layernorm`` (GPT-2/3, Megatron GPT), none otherwise (Llama, Mistral,
  Mixtral use ``swiglu`` with ``rmsnorm`` and no biases). Set ``bias`` explicitly to override.
  Biases are per output feature: Q/K/V/O projections, MLP up (and gate) and down. The MoE router
  never has a bias (Mixtral's has none).
* Norms: ``layernorm`` has a weight and a bias (``2 * hidden``), ``rmsnorm`` a weight only
  (``hidden``); two per layer plus one final norm before the LM head.
* Embeddings: ``vocab * hidden`` token embeddings, plus ``seq * hidden`` learned position
  embeddings when ``position_embeddings`` (GPT-2/3 style; rotary models have none). The LM head
  adds ``vocab * hidden`` unless ``tied_embeddings``.
* MoE (``experts > 0``): every layer's MLP is replaced by ``experts`` expert MLPs of
  ``expert_ffn`` intermediate size plus a ``hidden x experts`` router; ``active_params`` counts
  ``top_k`` experts per token (Jiang et al., "Mixtral of Experts", 2024). DeepSeekMoE adds
  ``shared_experts`` always-active experts of the same width and keeps a dense ``ffn`` MLP in
  the first ``dense_layers`` layers (DeepSeek-V2, arXiv 2405.04434, Section 2.2).
* Multi-head latent attention (``kv_lora_rank > 0``): low-rank query and joint key/value
  projections with a decoupled RoPE key (DeepSeek-V2, Section 2.1); ``head_dim`` is the
  query/key head width ``qk_nope_head_dim + qk_rope_head_dim``, values are ``v_head_dim`` wide,
  and the KV cache keeps ``kv_lora_rank + qk_rope_head_dim`` elements per token and layer.
* ``sliding_window`` > 0: each position attends at most that many keys and the KV cache keeps
  at most that many positions (Mistral 7B, arXiv 2310.06825).

With these rules the presets reproduce published totals: Llama-2-7B 6,738,415,616 (6.74B),
GPT-3 175B 174.6B, Mixtral-8x7B 46.7B total / 12.9B active, GPT-2 small 124,439,808 exactly,
Mistral-7B 7.24B, DeepSeek-V2-Lite 15.7B total / 2.45B activated (model card: 2.4B; DeepSeek
counts activated parameters without the input embedding table).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import yaml

from des.core import limits
from des.core.paths import bundled, load_preset
from des.core.schema import (
    SchemaError,
    Section,
    boolean,
    check,
    nonempty_text,
    nonneg_int,
    optional,
    positive_int,
    show,
)

__all__ = [
    "ACTIVATIONS",
    "NORMS",
    "ModelConfig",
    "ModelConfigError",
    "available_models",
    "load_model",
    "model_from_dict",
    "model_to_yaml",
]

#: MLP kinds: ``gelu`` has 2 matrices (up, down); ``swiglu`` (any gated MLP) has 3 (gate, up,
#: down) - Shazeer, "GLU Variants Improve Transformer", 2020.
ACTIVATIONS: tuple[str, ...] = ("gelu", "swiglu")
#: Normalisation layers: LayerNorm (Ba et al. 2016) or RMSNorm (Zhang & Sennrich 2019).
NORMS: tuple[str, ...] = ("layernorm", "rmsnorm")

_KEYS = ("name", "layers", "hidden", "heads", "ffn", "activation", "vocab", "seq", "kv_heads",
         "head_dim", "tied_embeddings", "experts", "top_k", "expert_ffn", "norm",
         "position_embeddings", "bias", "sliding_window", "kv_lora_rank", "q_lora_rank",
         "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim", "shared_experts", "dense_layers")
#: Multi-head latent attention's dimensions (DeepSeek-V2, arXiv 2405.04434, Section 2.1).
_MLA_KEYS = ("kv_lora_rank", "q_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim")


class ModelConfigError(SchemaError):
    """An invalid model description; the message names the key at fault and what is allowed."""


def _dim(value: Any, where: str) -> int:
    """A positive whole model dimension no larger than ``max_model_dim``
    (:mod:`des.core.limits`): a 10^200-wide model is refused, not overflowed."""
    number = positive_int(value, where)
    limits.check("max_model_dim", number, where)
    return number


def _count(value: Any, where: str) -> int:
    """A whole count >= 0 no larger than ``max_model_dim``."""
    number = nonneg_int(value, where)
    limits.check("max_model_dim", number, where)
    return number


def _read(sec: Section) -> dict[str, Any]:
    """Every :class:`ModelConfig` field from ``sec``, checked, with defaults resolved:
    ``kv_heads`` -> ``heads``, ``head_dim`` -> ``hidden // heads`` (which must divide),
    ``expert_ffn`` 0 -> ``ffn`` for MoE, ``bias`` None -> the GPT-style rule."""
    out: dict[str, Any] = {"name": sec.get("name", nonempty_text)}
    for key in ("layers", "hidden", "heads"):
        out[key] = sec.get(key, _dim)
    for key in (*_MLA_KEYS, "sliding_window", "shared_experts", "dense_layers"):
        out[key] = sec.get(key, _count, default=0)
    mla = out["kv_lora_rank"] > 0
    out["kv_heads"] = sec.get("kv_heads", optional(_dim), default=None) or out["heads"]
    out["head_dim"] = sec.get("head_dim", optional(_dim), default=None)
    if mla:
        _check_mla(sec, out)
    elif out["head_dim"] is None:
        if out["hidden"] % out["heads"]:
            raise sec.fail("head_dim", f"missing, and hidden ({out['hidden']}) is not a multiple "
                           f"of heads ({out['heads']}); give head_dim explicitly")
        out["head_dim"] = out["hidden"] // out["heads"]
    for key in ("ffn", "vocab", "seq"):
        out[key] = sec.get(key, _dim)
    out["activation"] = sec.choice("activation", ACTIVATIONS, what="activation")
    out["norm"] = sec.choice("norm", NORMS, default="layernorm", what="norm")
    for key in ("experts", "top_k", "expert_ffn"):
        out[key] = sec.get(key, _count, default=0)
    for key in ("tied_embeddings", "position_embeddings"):
        out[key] = sec.get(key, boolean, default=False)
    bias = sec.get("bias", default=None)
    if bias is None:
        bias = out["activation"] == "gelu" and out["norm"] == "layernorm"
    elif not isinstance(bias, bool):
        raise sec.fail("bias", f"must be true, false or omitted (GPT-style default), "
                       f"got {show(bias)}")
    out["bias"] = bias
    sec.finish()
    if not mla:
        _check_no_mla(sec, out)
    if out["heads"] % out["kv_heads"]:
        raise sec.fail("kv_heads", f"heads ({out['heads']}) must be a multiple of kv_heads "
                       f"({out['kv_heads']}); use kv_heads = heads for MHA, 1 for MQA, a divisor "
                       "for GQA")
    if out["experts"] == 0:
        for key in ("top_k", "expert_ffn"):
            if out[key]:
                raise sec.fail(key, f"must be 0 for a dense model (experts = 0), got {out[key]!r}")
        for key in ("shared_experts", "dense_layers"):
            if out[key]:
                raise sec.fail(key, f"must be 0 for a dense model (experts = 0), got {out[key]!r}")
    else:
        if not 1 <= out["top_k"] <= out["experts"]:
            raise sec.fail("top_k", f"must be in 1..experts ({out['experts']}) for an MoE model, "
                           f"got {out['top_k']!r}")
        if out["expert_ffn"] == 0:
            out["expert_ffn"] = out["ffn"]
        if out["dense_layers"] >= out["layers"]:
            raise sec.fail("dense_layers", f"must be below layers ({out['layers']}) so that some "
                           f"layers are MoE, got {out['dense_layers']!r}")
    return out


def _check_mla(sec: Section, out: dict[str, Any]) -> None:
    """MLA's rules: query/key heads split into ``qk_nope_head_dim`` + ``qk_rope_head_dim``
    (the latter the decoupled RoPE part, which must be > 0 as in DeepSeek-V2), values of
    ``v_head_dim``, one KV head per query head; ``head_dim`` becomes the query/key head width
    ``qk_nope_head_dim + qk_rope_head_dim``."""
    for key in ("qk_rope_head_dim", "v_head_dim"):
        if out[key] == 0:
            raise sec.fail(key, f"must be >= 1 with multi-head latent attention "
                           f"(kv_lora_rank = {out['kv_lora_rank']}), got 0")
    qk = out["qk_nope_head_dim"] + out["qk_rope_head_dim"]
    if out["head_dim"] not in (None, qk):
        raise sec.fail("head_dim", f"with multi-head latent attention head_dim is "
                       f"qk_nope_head_dim + qk_rope_head_dim = {qk}; omit it, got "
                       f"{out['head_dim']!r}")
    if out["kv_heads"] != out["heads"]:
        raise sec.fail("kv_heads", f"multi-head latent attention has one key/value head per "
                       f"query head (heads = {out['heads']}); omit kv_heads, got "
                       f"{out['kv_heads']!r}")
    out["head_dim"] = qk


def _check_no_mla(sec: Section, out: dict[str, Any]) -> None:
    for key in _MLA_KEYS:
        if out[key]:
            raise sec.fail(key, f"is a multi-head latent attention dimension: set kv_lora_rank "
                           f"(> 0) to use MLA, got {key} = {out[key]!r} without it")


@dataclass(frozen=True)
class ModelConfig:
    """Shape of a decoder-only transformer (see the module docstring for the conventions).

    ``head_dim`` is usually ``hidden // heads`` but need not be; ``kv_heads`` equals ``heads``
    for MHA, 1 for MQA, a divisor of ``heads`` for GQA (Ainslie et al. 2023). ``expert_ffn`` 0
    means ``ffn`` for MoE models; ``bias`` None means the GPT-style rule. Invalid values raise
    :class:`ModelConfigError`.
    """

    name: str
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    ffn: int
    activation: str
    vocab: int
    seq: int
    tied_embeddings: bool = False
    experts: int = 0
    top_k: int = 0
    expert_ffn: int = 0
    norm: str = "layernorm"
    position_embeddings: bool = False
    bias: bool | None = None
    sliding_window: int = 0
    kv_lora_rank: int = 0
    q_lora_rank: int = 0
    qk_nope_head_dim: int = 0
    qk_rope_head_dim: int = 0
    v_head_dim: int = 0
    shared_experts: int = 0
    dense_layers: int = 0

    def __post_init__(self) -> None:
        where = f"ModelConfig[{self.name}]" if isinstance(self.name, str) else "ModelConfig"
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        for key, value in _read(Section(values, where, error=ModelConfigError)).items():
            object.__setattr__(self, key, value)

    # -- derived sizes ------------------------------------------------------------------------

    @property
    def is_moe(self) -> bool:
        """True for a mixture-of-experts model (``experts > 0``)."""
        return self.experts > 0

    @property
    def is_mla(self) -> bool:
        """True for multi-head latent attention (``kv_lora_rank > 0``; DeepSeek-V2)."""
        return self.kv_lora_rank > 0

    @property
    def moe_layers(self) -> int:
        """Layers whose MLP is a mixture of experts: all but the first ``dense_layers`` of an
        MoE model (DeepSeek's ``first_k_dense_replace``), none of a dense one."""
        return self.layers - self.dense_layers if self.is_moe else 0

    def is_moe_layer(self, layer: int | None) -> bool:
        """Whether layer ``layer`` (0-based) has the MoE MLP: the first ``dense_layers`` of an
        MoE model keep a dense MLP of ``ffn`` (DeepSeek-V2, arXiv 2405.04434, Section 3.1.1).
        ``None`` stands for an MoE layer of an MoE model (any layer of a dense one)."""
        return self.is_moe and (layer is None or layer >= self.dense_layers)

    def attention_widths(self) -> tuple[int, int, int, int]:
        """Full (unsharded) widths of the query, key, value and attention-output-input
        activations: ``(q_dim, kv_dim, kv_dim, q_dim)``; with MLA the keys are ``heads *
        (qk_nope_head_dim + qk_rope_head_dim)`` wide like the queries and values and the
        output input ``heads * v_head_dim``."""
        if self.is_mla:
            qk, v = self.heads * self.head_dim, self.heads * self.v_head_dim
            return qk, qk, v, v
        return self.q_dim, self.kv_dim, self.kv_dim, self.q_dim

    def kv_cache_width(self) -> int:
        """Elements one token caches per layer: ``2 * kv_heads * head_dim`` (K and V), or with
        MLA the compressed latent plus the decoupled RoPE key, ``kv_lora_rank +
        qk_rope_head_dim`` - DeepSeek-V2 (arXiv 2405.04434), Section 2.1.4 and Table 1:
        ``(d_c + d_h^R) l`` elements per token over ``l`` layers."""
        if self.is_mla:
            return self.kv_lora_rank + self.qk_rope_head_dim
        return 2 * self.kv_heads * self.head_dim

    def cached_positions(self, context: int) -> int:
        """Positions a sequence of ``context`` tokens keeps in the KV cache: all of them, or
        at most ``sliding_window`` with sliding-window attention (Mistral 7B's rolling buffer
        cache of fixed size W; Jiang et al., arXiv 2310.06825, Section 2)."""
        return min(context, self.sliding_window) if self.sliding_window else context

    @property
    def q_dim(self) -> int:
        """Width of the query (and attention output) projection: ``heads * head_dim``."""
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        """Width of each of the key and value projections: ``kv_heads * head_dim``."""
        return self.kv_heads * self.head_dim

    @property
    def mlp_matrices(self) -> int:
        """Weight matrices per MLP: 2 for ``gelu`` (up, down), 3 for ``swiglu`` (gate, up,
        down)."""
        return 3 if self.activation == "swiglu" else 2

    def norm_params(self) -> int:
        """Parameters of one norm layer: ``2 * hidden`` (LayerNorm), ``hidden`` (RMSNorm)."""
        return 2 * self.hidden if self.norm == "layernorm" else self.hidden

    def heads_per_rank(self, tp: int) -> int:
        """Query heads on each of ``tp`` tensor-parallel ranks (Megatron splits heads)."""
        _check_tp(tp)
        if self.heads % tp:
            raise ModelConfigError(
                f"{self.name}: tp={tp} must divide heads ({self.heads}); tensor parallelism "
                "splits attention by heads"
            )
        return self.heads // tp

    def kv_heads_per_rank(self, tp: int) -> int:
        """Key/value heads held by each of ``tp`` tensor-parallel ranks.

        ``kv_heads / tp`` when ``tp`` divides ``kv_heads``; when ``tp`` is a multiple of
        ``kv_heads`` each rank holds one replicated KV head, as Megatron-LM does for GQA with
        ``num_query_groups < tp``. Other combinations raise :class:`ModelConfigError`.
        """
        self.heads_per_rank(tp)
        if self.kv_heads % tp == 0:
            return self.kv_heads // tp
        if tp % self.kv_heads == 0:
            return 1
        raise ModelConfigError(
            f"{self.name}: tp={tp} and kv_heads ({self.kv_heads}) must divide one another"
        )

    # -- parameter counts ---------------------------------------------------------------------

    def _width_norm(self, width: int) -> int:
        return 2 * width if self.norm == "layernorm" else width

    def attention_params(self) -> int:
        """Q ``hidden*heads*head_dim``, K and V ``hidden*kv_heads*head_dim`` each, O
        ``heads*head_dim*hidden``; plus per-output-feature biases when ``bias``. With MLA
        (DeepSeek-V2, arXiv 2405.04434, Section 2.1; the HF ``DeepseekV2Attention`` layers):
        the query down-projection ``hidden*q_lora_rank``, its norm and up-projection
        ``q_lora_rank*heads*qk_head`` (or one ``hidden*heads*qk_head`` projection when
        ``q_lora_rank`` is 0), the joint KV down-projection ``hidden*(kv_lora_rank +
        qk_rope_head_dim)`` and its norm, the KV up-projection ``kv_lora_rank*heads*
        (qk_nope_head_dim + v_head_dim)`` and O ``heads*v_head_dim*hidden``."""
        if self.is_mla:
            return self.attention_replicated_params() + self._mla_split_params()
        weights = 2 * self.hidden * self.q_dim + 2 * self.hidden * self.kv_dim
        biases = self.q_dim + 2 * self.kv_dim + self.hidden if self.bias else 0
        return weights + biases

    def attention_replicated_params(self) -> int:
        """Attention parameters every tensor-parallel rank holds whole: MLA's down-projections
        and latent norms, which are not split by heads (as vLLM and TGI shard DeepSeek-V2:
        ``q_a_proj`` and ``kv_a_proj_with_mqa`` replicated); 0 for other attention."""
        if not self.is_mla:
            return 0
        h, kv_a = self.hidden, self.kv_lora_rank + self.qk_rope_head_dim
        params = h * kv_a + self._width_norm(self.kv_lora_rank) + (kv_a if self.bias else 0)
        if self.q_lora_rank:
            params += h * self.q_lora_rank + self._width_norm(self.q_lora_rank)
            params += self.q_lora_rank if self.bias else 0
        return params

    def _mla_split_params(self) -> int:
        """MLA's head-split projections: query (up-)projection, KV up-projection, output."""
        q_in = self.q_lora_rank or self.hidden
        q_out, kv_out = self.q_dim, self.heads * (self.qk_nope_head_dim + self.v_head_dim)
        o_in = self.heads * self.v_head_dim
        weights = q_in * q_out + self.kv_lora_rank * kv_out + o_in * self.hidden
        return weights + (q_out + kv_out + self.hidden if self.bias else 0)

    def _mlp_params(self, ffn: int) -> int:
        weights = self.mlp_matrices * self.hidden * ffn
        biases = (self.mlp_matrices - 1) * ffn + self.hidden if self.bias else 0
        return weights + biases

    def mlp_params(self) -> int:
        """One dense MLP: ``mlp_matrices * hidden * ffn`` (+ biases)."""
        return self._mlp_params(self.ffn)

    def expert_params(self) -> int:
        """One expert MLP of ``expert_ffn`` intermediate size (0 for a dense model)."""
        return self._mlp_params(self.expert_ffn) if self.is_moe else 0

    def router_params(self) -> int:
        """The MoE router: ``hidden * experts``, no bias (0 for a dense model)."""
        return self.hidden * self.experts

    def shared_expert_params(self) -> int:
        """The always-active shared experts of an MoE layer: ``shared_experts`` expert MLPs
        of ``expert_ffn`` (DeepSeekMoE's shared expert isolation; DeepSeek-V2, arXiv
        2405.04434, Section 2.2.1)."""
        return self.shared_experts * self.expert_params()

    def moe_mlp_params(self) -> int:
        """One MoE MLP: the routed experts, the shared experts and the router."""
        return (self.experts * self.expert_params() + self.shared_expert_params()
                + self.router_params())

    def layer_params(self, layer: int | None = None) -> int:
        """One transformer block: attention + MLP (or all experts, shared experts and the
        router) + 2 norms. ``layer`` (0-based) picks the dense MLP for the first
        ``dense_layers`` of an MoE model; None means an MoE layer of an MoE model."""
        moe = self.is_moe_layer(layer)
        mlp = self.moe_mlp_params() if moe else self.mlp_params()
        return self.attention_params() + mlp + 2 * self.norm_params()

    def layer_params_local(self, tp: int = 1, ep: int = 1, layer: int | None = None) -> float:
        """One layer's parameters on one GPU: split ``tp`` ways (Megatron), except MLA's
        down-projections, which every tensor-parallel rank holds whole
        (:meth:`attention_replicated_params`); routed experts are further split ``ep`` ways.
        ``layer`` as in :meth:`layer_params`."""
        _check_tp(tp)
        check(positive_int, ep, "ep", ModelConfigError)
        moe = self.is_moe_layer(layer)
        routed = self.experts * self.expert_params() if moe else 0
        replicated = self.attention_replicated_params()
        rest = self.layer_params(layer) - routed - replicated
        return rest / tp + routed / ep / tp + replicated

    def embedding_params(self) -> int:
        """Input embeddings: ``vocab * hidden`` (+ ``seq * hidden`` learned positions)."""
        positions = self.seq * self.hidden if self.position_embeddings else 0
        return self.vocab * self.hidden + positions

    def lm_head_params(self) -> int:
        """The output projection: ``vocab * hidden``, 0 when tied to the embeddings."""
        return 0 if self.tied_embeddings else self.vocab * self.hidden

    def params(self) -> int:
        """Total: embeddings + layers + final norm + LM head."""
        dense = self.layers - self.moe_layers
        return (
            self.embedding_params()
            + dense * self.layer_params(0 if self.is_moe else None)
            + self.moe_layers * self.layer_params()
            + self.norm_params()
            + self.lm_head_params()
        )

    def active_params(self, embeddings: bool = True) -> int:
        """Parameters used per token: ``params()`` less the ``experts - top_k`` unused routed
        experts of every MoE layer (Mixtral-8x7B: 12.9B of 46.7B). ``embeddings=False`` also
        leaves out the input embedding table (a lookup, no FLOPs), the convention of
        DeepSeek's "activated parameters" (DeepSeek-V2-Lite: 2.4B of 15.7B)."""
        idle = (self.experts - self.top_k) * self.expert_params() if self.is_moe else 0
        active = self.params() - self.moe_layers * idle
        return active if embeddings else active - self.embedding_params()


def _check_tp(tp: object) -> None:
    check(positive_int, tp, "tp", ModelConfigError)


# -- dictionaries and YAML -----------------------------------------------------------------------


def model_from_dict(data: Mapping[str, Any], where: str = "model") -> ModelConfig:
    """A :class:`ModelConfig` from a YAML-style mapping.

    Required keys: ``name, layers, hidden, heads, ffn, activation, vocab, seq``; optional:
    ``kv_heads`` (default ``heads``), ``head_dim`` (default ``hidden // heads``, which must then
    divide exactly), ``tied_embeddings``, ``experts``, ``top_k``, ``expert_ffn``, ``norm``,
    ``position_embeddings``, ``bias``, ``sliding_window``, ``shared_experts``,
    ``dense_layers`` and MLA's ``kv_lora_rank``, ``q_lora_rank``, ``qk_nope_head_dim``,
    ``qk_rope_head_dim``, ``v_head_dim`` (all 0 = off). Errors name the key under ``where``, e.g.
    ``model.kv_heads``; unknown keys are errors listing the allowed ones.
    """
    return ModelConfig(**_read(Section(data, where, keys=_KEYS, error=ModelConfigError)))


def model_to_yaml(model: ModelConfig) -> str:
    """YAML text for ``model`` with every field explicit; :func:`model_from_dict` of its
    ``yaml.safe_load`` gives back an equal :class:`ModelConfig`."""
    data = {f.name: getattr(model, f.name) for f in fields(model)}
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False)


def available_models() -> list[str]:
    """Names of the bundled model presets (file stems in ``configs/models``), sorted."""
    return sorted(bundled("models"), key=str.lower)


def load_model(name_or_path: str | os.PathLike[str]) -> ModelConfig:
    """A model from a YAML file path, or a bundled preset by case-insensitive name.

    ``load_model("Llama2-70B")`` finds ``configs/models/llama2-70b.yaml``. A value ending in
    ``.yaml``/``.yml`` or containing a path separator is read as a path; a bare name that is no
    preset is tried as a file last. Unknown names raise :class:`ModelConfigError` listing the
    presets.
    """
    return load_preset("models", name_or_path, model_from_dict, ModelConfigError, "model")
