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
  ``top_k`` experts per token (Jiang et al., "Mixtral of Experts", 2024).

With these rules the presets reproduce published totals: Llama-2-7B 6,738,415,616 (6.74B),
GPT-3 175B 174.6B, Mixtral-8x7B 46.7B total / 12.9B active, GPT-2 small 124,439,808 exactly.
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
         "position_embeddings", "bias")


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
    out["kv_heads"] = sec.get("kv_heads", optional(_dim), default=None) or out["heads"]
    out["head_dim"] = sec.get("head_dim", optional(_dim), default=None)
    if out["head_dim"] is None:
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
    if out["heads"] % out["kv_heads"]:
        raise sec.fail("kv_heads", f"heads ({out['heads']}) must be a multiple of kv_heads "
                       f"({out['kv_heads']}); use kv_heads = heads for MHA, 1 for MQA, a divisor "
                       "for GQA")
    if out["experts"] == 0:
        for key in ("top_k", "expert_ffn"):
            if out[key]:
                raise sec.fail(key, f"must be 0 for a dense model (experts = 0), got {out[key]!r}")
    else:
        if not 1 <= out["top_k"] <= out["experts"]:
            raise sec.fail("top_k", f"must be in 1..experts ({out['experts']}) for an MoE model, "
                           f"got {out['top_k']!r}")
        if out["expert_ffn"] == 0:
            out["expert_ffn"] = out["ffn"]
    return out


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

    def attention_params(self) -> int:
        """Q ``hidden*heads*head_dim``, K and V ``hidden*kv_heads*head_dim`` each, O
        ``heads*head_dim*hidden``; plus per-output-feature biases when ``bias``."""
        weights = 2 * self.hidden * self.q_dim + 2 * self.hidden * self.kv_dim
        biases = self.q_dim + 2 * self.kv_dim + self.hidden if self.bias else 0
        return weights + biases

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

    def layer_params(self) -> int:
        """One transformer block: attention + MLP (or all experts + router) + 2 norms."""
        if self.is_moe:
            mlp = self.experts * self.expert_params() + self.router_params()
        else:
            mlp = self.mlp_params()
        return self.attention_params() + mlp + 2 * self.norm_params()

    def embedding_params(self) -> int:
        """Input embeddings: ``vocab * hidden`` (+ ``seq * hidden`` learned positions)."""
        positions = self.seq * self.hidden if self.position_embeddings else 0
        return self.vocab * self.hidden + positions

    def lm_head_params(self) -> int:
        """The output projection: ``vocab * hidden``, 0 when tied to the embeddings."""
        return 0 if self.tied_embeddings else self.vocab * self.hidden

    def params(self) -> int:
        """Total: embeddings + layers + final norm + LM head."""
        return (
            self.embedding_params()
            + self.layers * self.layer_params()
            + self.norm_params()
            + self.lm_head_params()
        )

    def active_params(self) -> int:
        """Parameters used per token: ``params()`` less the ``experts - top_k`` unused experts
        of every MoE layer (Mixtral-8x7B: 12.9B of 46.7B)."""
        idle = (self.experts - self.top_k) * self.expert_params() if self.is_moe else 0
        return self.params() - self.layers * idle


def _check_tp(tp: object) -> None:
    check(positive_int, tp, "tp", ModelConfigError)


# -- dictionaries and YAML -----------------------------------------------------------------------


def model_from_dict(data: Mapping[str, Any], where: str = "model") -> ModelConfig:
    """A :class:`ModelConfig` from a YAML-style mapping.

    Required keys: ``name, layers, hidden, heads, ffn, activation, vocab, seq``; optional:
    ``kv_heads`` (default ``heads``), ``head_dim`` (default ``hidden // heads``, which must then
    divide exactly), ``tied_embeddings``, ``experts``, ``top_k``, ``expert_ffn``, ``norm``,
    ``position_embeddings``, ``bias``. Errors name the key under ``where``, e.g.
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
