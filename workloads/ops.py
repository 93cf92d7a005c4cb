"""FLOPs and HBM bytes of the operations of a transformer layer, as run by one GPU.

Each function returns :class:`~workloads.op_cost.OpCost` records (name, op class for the
roofline of :mod:`des.core.hardware`, FLOPs, HBM bytes) for one GPU's share, described by a
:class:`~workloads.op_cost.Shard`. Pure formulas: no graphs, no times. Units: FLOPs and bytes.

Conventions:

* GEMM FLOPs: an ``(m x k) @ (k x n)`` product is ``2 m k n`` FLOPs (Narayanan et al.,
  "Efficient Large-Scale Language Model Training on GPU Clusters Using Megatron-LM", SC 2021).
  Bias adds and bias vectors are left out of FLOPs and bytes (under 0.01% of either).
* Bytes: every operand read once from HBM and every result written once, ``dtype_bytes`` per
  element (dropout masks 1 byte, softmax statistics 4). ``OpCost.weight_bytes`` is the part of
  ``bytes`` that is parameters (or their gradients, in backward).
* Causal attention: with ``causal=True`` (the default) each query attends on average ``seq/2``
  keys, so the score and context GEMMs count half the full square, as FlashAttention's FLOP
  counts do. The Megatron formula ``72 B s L h^2 (1 + s/(6h) + V/(12 L h))`` (Narayanan et al.
  2021) counts the full ``s^2``: use ``causal=False`` to reproduce it exactly.
* Attention core: ``flash=True`` is one ``"attention"`` op (FlashAttention, Dao et al. 2022)
  whose FLOPs are the two matmuls only (the convention behind FlashAttention's reported
  TFLOP/s, which the hardware presets' attention efficiencies are quoted against) and whose
  bytes are Q, K, V read and O written once (K/V tiles re-read per query block are assumed to
  hit L2). ``flash=False`` is the unfused Megatron path: ``attn_scores`` GEMM, ``attn_softmax``
  (and ``attn_dropout``), ``attn_context`` GEMM, with the ``s x s`` score matrix written and
  read in HBM. Both give the same matmul FLOPs; only the plain path adds softmax FLOPs.
* Tensor parallelism (Megatron, Shoeybi et al. 2019): heads, ``ffn`` columns and vocabulary
  columns are split ``tp`` ways, so GEMM FLOPs and weight bytes divide by ``tp`` exactly (GQA
  with fewer KV heads than ``tp`` replicates one KV head per GPU). Sequence parallelism
  (Korthikanti et al. 2022): norms, dropout and residual adds work on ``tokens / tp`` tokens.
  Context parallelism (ring attention): ``Shard.tokens`` is already this GPU's ``1/cp`` share;
  its queries attend the whole sequence, so attention FLOPs per GPU are ``1/cp`` of the
  sequence's and the K/V of all ``cp`` chunks are read.
* Backward (:func:`backward`): 2x forward FLOPs for GEMMs - one GEMM for the input gradient and
  one for the weight gradient (Narayanan et al. 2021: backward = 2x forward) - and 2.5x for
  the FlashAttention core, which recomputes ``QK^T`` (5 matmuls against 2). Bytes 2x for all.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from des.core.hardware import DEFAULT_DTYPE_BYTES
from workloads.models import ModelConfig, ModelConfigError
from workloads.op_cost import OpCost, OpsError, Shard, finite_number, positive_int

__all__ = [
    "ADAM_FLOPS_PER_PARAM",
    "BACKWARD_MULTIPLIERS",
    "OPTIMIZER_IMPLS",
    "attended_keys",
    "attention_forward",
    "backward",
    "balanced_tokens_per_expert",
    "embedding_forward",
    "forward_flops",
    "layer_flops_forward",
    "lm_head_forward",
    "loss_forward",
    "matmul_flops",
    "mlp_forward",
    "moe_forward",
    "optimizer_step",
    "total_bytes",
    "total_flops",
    "training_flops",
]

#: (FLOPs, bytes) multipliers of an op's backward relative to its forward, by op class.
BACKWARD_MULTIPLIERS: dict[str, tuple[float, float]] = {
    "gemm": (2.0, 2.0),  # dgrad + wgrad GEMMs; each reads/writes one more operand set
    "attention": (2.5, 2.0),  # FlashAttention bwd: recompute S, then dV, dP, dQ, dK
    "attention_unfused": (2.0, 2.0),  # matmuls: dgrad + wgrad; softmax/dropout: grad + saved
    "elementwise": (2.0, 2.0),  # reads grad out + saved input, writes grad in
    "reduction": (2.0, 2.0),
}

# FLOPs per element of the non-GEMM ops (rough operation counts; they are memory bound).
_NORM_FLOPS = {"layernorm": 8.0, "rmsnorm": 5.0}  # mean/var or mean-square, scale, shift
_SOFTMAX_FLOPS = 5.0  # scale+mask, max, subtract, exp, sum and divide
_GELU_FLOPS = 8.0  # tanh approximation
_SWIGLU_FLOPS = 5.0  # silu(gate) = gate * sigmoid(gate), times up
_DROPOUT_FLOPS = 2.0  # compare against the random draw, scale
_LOSS_FLOPS = 5.0  # per logit: max, subtract, exp, sum, log-softmax gather
#: FLOPs per parameter of one Adam step (moments, bias corrections, sqrt, divide, decay,
#: update; Kingma & Ba 2015).
ADAM_FLOPS_PER_PARAM = 12.0
#: Mixed-precision Adam's state per parameter: an fp32 master weight (bytes) and
#: ``ADAM_STATES`` fp32 moments of ``ADAM_STATE_BYTES`` each.
MASTER_BYTES = 4
ADAM_STATES = 2
ADAM_STATE_BYTES = 4


def _dims(model: ModelConfig, shard: Shard) -> tuple[int, int]:
    """(query heads, KV heads) per GPU; errors become :class:`OpsError`."""
    if not isinstance(model, ModelConfig):
        raise OpsError(f"model: must be a ModelConfig, got {type(model).__name__}")
    if not isinstance(shard, Shard):
        raise OpsError(f"shard: must be a Shard, got {type(shard).__name__}")
    try:
        return model.heads_per_rank(shard.tp), model.kv_heads_per_rank(shard.tp)
    except ModelConfigError as error:
        raise OpsError(str(error)) from error


def _cols(size: int, tp: int, label: str, model: ModelConfig) -> int:
    if size % tp:
        raise OpsError(f"{model.name}: tp={tp} must divide {label} ({size})")
    return size // tp


def _gemm(name: str, m: float, k: float, n: float, e: int, weight_elems: float) -> OpCost:
    """``(m x k) @ (k x n)``: reads the ``m x k`` input and the weights, writes ``m x n``."""
    weight = e * weight_elems
    return OpCost(name, "gemm", 2.0 * m * k * n, e * (m * k + m * n) + weight, weight)


def _norm(name: str, model: ModelConfig, shard: Shard) -> OpCost:
    elems = shard.norm_tokens * model.hidden
    e = shard.dtype_bytes
    weight = e * model.norm_params()
    return OpCost(name, "reduction", _NORM_FLOPS[model.norm] * elems, 2 * e * elems + weight,
                  weight)


def _dropout_residual(suffix: str, model: ModelConfig, shard: Shard) -> list[OpCost]:
    elems = shard.norm_tokens * model.hidden
    e = shard.dtype_bytes
    ops = []
    if shard.dropout:
        ops.append(OpCost(f"dropout{suffix}", "elementwise", _DROPOUT_FLOPS * elems,
                          2 * e * elems + elems))
    ops.append(OpCost(f"residual{suffix}", "elementwise", elems, 3 * e * elems))
    return ops


def attended_keys(model: ModelConfig, shard: Shard) -> float:
    """Keys each query attends on average: ``seq/2`` causal, ``seq`` when decoding or not
    causal. With a sliding window ``W`` shorter than the sequence (Mistral 7B, Jiang et al.,
    arXiv 2310.06825, Section 2: position ``i`` attends positions ``i-W .. i``) a causal query
    attends ``min(i, W)`` keys, on average ``W - W^2/(2 seq)`` over the sequence (``seq/2``
    again at ``seq = W``), a decoding one ``min(seq, W)``."""
    w = model.sliding_window
    if not w or w >= shard.seq:
        return shard.keys_per_query
    if shard.causal and not shard.decode:
        return w - w * w / (2.0 * shard.seq)
    return float(w)


def _kv_positions(model: ModelConfig, shard: Shard) -> float:
    """Key/value positions the attention reads: the cached ones when decoding (at most the
    window per sequence, :meth:`ModelConfig.cached_positions`), else ``Shard.kv_tokens``."""
    if shard.decode:
        return float(shard.tokens * model.cached_positions(shard.seq))
    return shard.kv_tokens


#: Op class of the unfused attention kernels (Megatron-LM's path before FlashAttention): the
#: score and context matmuls and the softmax / dropout over the materialised score matrix, timed
#: together as a streaming chain where the hardware preset measures one
#: (:data:`des.core.hardware.FALLBACK_CLASS` otherwise); their matmuls count as matmul FLOPs.
UNFUSED = "attention_unfused"
UNFUSED_MATMULS = ("attn_scores", "attn_context")


def _core(ops: list[OpCost], shard: Shard, t: float, heads: int, qk: float, v: float,
          keys: float, q_bytes: float, kv_bytes: float, o_bytes: float) -> None:
    """The attention core over ``heads`` local heads whose scores are ``qk`` wide and whose
    values ``v`` wide, ``keys`` keys per query: one FlashAttention op or the unfused path."""
    e = shard.dtype_bytes
    matmul = 2.0 * t * keys * heads * (qk + v)  # QK^T and PV, 2 m k n each
    if shard.flash:
        stats = 4 * t * heads  # fp32 log-sum-exp per query row, kept for the backward pass
        ops.append(OpCost("flash_attn", "attention", matmul,
                          q_bytes + kv_bytes + o_bytes + stats))
        return
    scores = float(t) * shard.seq * heads  # the full (masked) square is materialised
    k_share = qk / (qk + v)
    ops.append(OpCost("attn_scores", UNFUSED, 2.0 * t * keys * heads * qk,
                      q_bytes + kv_bytes * k_share + e * scores))
    ops.append(OpCost("attn_softmax", UNFUSED, _SOFTMAX_FLOPS * scores, 2 * e * scores))
    if shard.dropout:
        ops.append(OpCost("attn_dropout", UNFUSED, _DROPOUT_FLOPS * scores,
                          2 * e * scores + scores))
    ops.append(OpCost("attn_context", UNFUSED, 2.0 * t * keys * heads * v,
                      e * scores + kv_bytes * (1 - k_share) + o_bytes))


def attention_forward(model: ModelConfig, shard: Shard) -> list[OpCost]:
    """The attention half of a layer on one GPU: ``norm1``, ``qkv`` GEMM, the attention core
    (``flash_attn``, or ``attn_scores``/``attn_softmax``/[``attn_dropout``]/``attn_context``),
    ``attn_out`` GEMM, [``dropout1``] and ``residual1`` (see the module conventions).

    Keys attended follow :func:`attended_keys` (sliding windows). Decoding reads the cached
    keys and values at ``Shard.cache_bytes`` per element (an fp8 cache halves those bytes).
    Multi-head latent attention has its own projections (:func:`_mla_attention`)."""
    heads, kv_heads = _dims(model, shard)
    if model.is_mla:
        return _mla_attention(model, shard, heads)
    e, t, d, h = shard.dtype_bytes, shard.tokens, model.head_dim, model.hidden
    qkv_width = (heads + 2 * kv_heads) * d
    ops = [
        _norm("norm1", model, shard),
        _gemm("qkv", t, h, qkv_width, e, h * qkv_width),
    ]
    kv_e = shard.cache_bytes if shard.decode else e
    _core(ops, shard, t, heads, d, d, attended_keys(model, shard), e * t * heads * d,
          2 * kv_e * _kv_positions(model, shard) * kv_heads * d, e * t * heads * d)
    ops.append(_gemm("attn_out", t, heads * d, h, e, heads * d * h))
    ops.extend(_dropout_residual("1", model, shard))
    return ops


def _latent_norm(name: str, model: ModelConfig, tokens: float, width: int, e: int) -> OpCost:
    elems = tokens * width
    weight = e * (2 * width if model.norm == "layernorm" else width)
    return OpCost(name, "reduction", _NORM_FLOPS[model.norm] * elems, 2 * e * elems + weight,
                  weight)


def _mla_attention(model: ModelConfig, shard: Shard, heads: int) -> list[OpCost]:
    """Multi-head latent attention on one GPU (DeepSeek-V2, arXiv 2405.04434, Section 2.1),
    heads split ``tp`` ways, the down-projections replicated on every rank.

    Projections (ops named ``qkv_*`` so that the training builder keeps them before the
    core): the query down-projection ``qkv_q_down`` (``hidden -> q_lora_rank``), its norm and
    up-projection ``qkv_q_up`` (``-> heads * qk_head``), or one ``qkv_q`` when ``q_lora_rank``
    is 0; the joint KV down-projection ``qkv_kv_down`` (``hidden -> kv_lora_rank +
    qk_rope_head_dim``: the latent and the decoupled RoPE key, what the cache keeps) and its
    norm. Training and prefill then up-project keys and values, ``qkv_kv_up`` (``kv_lora_rank
    -> heads * (qk_nope_head_dim + v_head_dim)``), and run ordinary attention with
    ``qk_head``-wide scores and ``v_head_dim``-wide values. Decoding uses the absorbed form
    the paper describes (Section 2.1.3: ``W^UK`` folded into the query, ``W^UV`` into the
    output): ``mla_q_absorb`` maps each head's no-RoPE query into the latent space, the core
    attends the cached latents directly (``kv_lora_rank + qk_rope_head_dim``-wide scores,
    ``kv_lora_rank``-wide values, the cache read once for all heads at
    ``Shard.cache_bytes``), and ``mla_v_up`` maps each head's output back to ``v_head_dim``."""
    e, t, h = shard.dtype_bytes, shard.tokens, model.hidden
    nope, rope, v = model.qk_nope_head_dim, model.qk_rope_head_dim, model.v_head_dim
    qk, c = nope + rope, model.kv_lora_rank
    ops = [_norm("norm1", model, shard)]
    if model.q_lora_rank:
        r = model.q_lora_rank
        ops.append(_gemm("qkv_q_down", t, h, r, e, h * r))
        ops.append(_latent_norm("qkv_q_norm", model, t, r, e))
        ops.append(_gemm("qkv_q_up", t, r, heads * qk, e, r * heads * qk))
    else:
        ops.append(_gemm("qkv_q", t, h, heads * qk, e, h * heads * qk))
    ops.append(_gemm("qkv_kv_down", t, h, c + rope, e, h * (c + rope)))
    ops.append(_latent_norm("qkv_kv_norm", model, t, c, e))
    keys = attended_keys(model, shard)
    positions = _kv_positions(model, shard)
    if shard.decode:
        ops.append(_gemm("mla_q_absorb", t * heads, nope, c, e, heads * nope * c))
        _core(ops, shard, t, heads, c + rope, c, keys, e * t * heads * (c + rope),
              shard.cache_bytes * positions * (c + rope), e * t * heads * c)
        ops.append(_gemm("mla_v_up", t * heads, c, v, e, heads * c * v))
    else:
        ops.append(_gemm("qkv_kv_up", t, c, heads * (nope + v), e, c * heads * (nope + v)))
        _core(ops, shard, t, heads, qk, v, keys, e * t * heads * qk,
              e * positions * heads * (qk + v), e * t * heads * v)
    ops.append(_gemm("attn_out", t, heads * v, h, e, heads * v * h))
    ops.extend(_dropout_residual("1", model, shard))
    return ops


def _mlp_core(prefix: str, model: ModelConfig, tokens: float, ffn_local: int, e: int,
              experts: int = 1) -> list[OpCost]:
    """up (+gate), activation, down GEMMs of ``experts`` MLPs over ``tokens`` rows in all."""
    h = model.hidden
    ops = [_gemm(f"{prefix}_up", tokens, h, ffn_local, e, experts * h * ffn_local)]
    elems = tokens * ffn_local
    if model.activation == "swiglu":
        ops.append(_gemm(f"{prefix}_gate", tokens, h, ffn_local, e, experts * h * ffn_local))
        ops.append(OpCost(f"{prefix}_act", "elementwise", _SWIGLU_FLOPS * elems, 3 * e * elems))
    else:
        ops.append(OpCost(f"{prefix}_act", "elementwise", _GELU_FLOPS * elems, 2 * e * elems))
    ops.append(_gemm(f"{prefix}_down", tokens, ffn_local, h, e, experts * ffn_local * h))
    return ops


def mlp_forward(model: ModelConfig, shard: Shard) -> list[OpCost]:
    """The dense MLP half of a layer on one GPU: ``norm2``, ``mlp_up`` (+ ``mlp_gate`` for
    swiglu) GEMMs over ``ffn/tp`` columns, ``mlp_act``, ``mlp_down`` GEMM, [``dropout2``],
    ``residual2``."""
    _dims(model, shard)
    ffn_local = _cols(model.ffn, shard.tp, "ffn", model)
    ops = [_norm("norm2", model, shard)]
    ops.extend(_mlp_core("mlp", model, shard.tokens, ffn_local, shard.dtype_bytes))
    ops.extend(_dropout_residual("2", model, shard))
    return ops


def balanced_tokens_per_expert(model: ModelConfig, tokens: float, ep: int = 1) -> float:
    """Tokens each expert receives under perfectly balanced routing when each of ``ep``
    expert-parallel GPUs routes ``tokens`` tokens: ``tokens * ep * top_k / experts``."""
    if not isinstance(model, ModelConfig) or not model.is_moe:
        raise OpsError("balanced_tokens_per_expert: model must be an MoE ModelConfig "
                       "(experts > 0)")
    positive_int(ep, "ep")
    return finite_number(tokens, "tokens") * ep * model.top_k / model.experts


def moe_forward(model: ModelConfig, shard: Shard, tokens_per_expert: float,
                local_experts: int) -> list[OpCost]:
    """The MoE half of a layer on one GPU (replaces :func:`mlp_forward`): ``norm2``,
    ``router`` GEMM (``hidden x experts``, on the norm's tokens), ``moe_permute`` (gather the
    routed token copies), the ``local_experts`` experts' ``expert_up``/[``expert_gate``]/
    ``expert_act``/``expert_down`` over ``tokens_per_expert`` rows each (expert columns split
    ``tp`` ways), ``moe_unpermute`` (scatter back, weight and sum the ``top_k`` outputs),
    the shared experts' ``shared_up``/[``shared_gate``]/``shared_act``/``shared_down`` over
    every token when ``shared_experts`` > 0, [``dropout2``], ``residual2``. See
    :func:`balanced_tokens_per_expert`."""
    _dims(model, shard)
    if not model.is_moe:
        raise OpsError(f"{model.name}: moe_forward needs an MoE model (experts > 0)")
    routed_per_expert = finite_number(tokens_per_expert, "tokens_per_expert")
    positive_int(local_experts, "local_experts")
    if local_experts > model.experts:
        raise OpsError(f"local_experts: must be in 1..{model.experts} (the model's experts), "
                       f"got {local_experts}")
    ffn_local = _cols(model.expert_ffn, shard.tp, "expert_ffn", model)
    e, h = shard.dtype_bytes, model.hidden
    routed = routed_per_expert * local_experts
    t_n = shard.norm_tokens
    ops = [
        _norm("norm2", model, shard),
        _gemm("router", t_n, h, model.experts, e, h * model.experts),
        OpCost("moe_permute", "elementwise", 0.0, 2 * e * routed * h),
    ]
    ops.extend(_mlp_core("expert", model, routed, ffn_local, e, experts=local_experts))
    ops.append(OpCost("moe_unpermute", "elementwise", 2.0 * routed * h, 2 * e * routed * h))
    if model.shared_experts:
        # DeepSeekMoE's shared experts see every token: one MLP of shared_experts x expert_ffn
        # columns (HF DeepseekV2MoE builds them so), split tp ways like a dense MLP
        ops.extend(_mlp_core("shared", model, shard.tokens,
                             ffn_local * model.shared_experts, e))
    ops.extend(_dropout_residual("2", model, shard))
    return ops


def embedding_forward(model: ModelConfig, shard: Shard) -> list[OpCost]:
    """Token embedding lookup on one GPU (vocabulary split ``tp`` ways, Megatron's
    VocabParallelEmbedding): ``embedding`` reads the ``tokens/tp`` rows that fall in this GPU's
    vocabulary shard on average and writes the full ``tokens x hidden`` (masked) output;
    ``pos_embedding`` adds learned positions; [``embedding_dropout``]."""
    _dims(model, shard)
    e, t, h = shard.dtype_bytes, shard.tokens, model.hidden
    rows = e * t * h / shard.tp
    ops = [OpCost("embedding", "elementwise", 0.0, rows + e * t * h, rows)]
    if model.position_embeddings:
        ops.append(OpCost("pos_embedding", "elementwise", float(t * h), 3 * e * t * h,
                          e * t * h))
    if shard.dropout:
        elems = shard.norm_tokens * h
        ops.append(OpCost("embedding_dropout", "elementwise", _DROPOUT_FLOPS * elems,
                          2 * e * elems + elems))
    return ops


def lm_head_forward(model: ModelConfig, shard: Shard) -> list[OpCost]:
    """The final norm (``final_norm``) and the ``lm_head`` GEMM over ``vocab/tp`` columns
    (vocabulary padding for divisibility is not modelled)."""
    _dims(model, shard)
    e, t, h = shard.dtype_bytes, shard.tokens, model.hidden
    vocab_local = model.vocab / shard.tp
    return [
        _norm("final_norm", model, shard),
        _gemm("lm_head", t, h, vocab_local, e, h * vocab_local),
    ]


def loss_forward(model: ModelConfig, shard: Shard) -> list[OpCost]:
    """Vocabulary-parallel softmax cross-entropy over ``tokens x vocab/tp`` logits: reads the
    logits, writes the softmax kept for the backward pass (Megatron stores it in place) and a
    fp32 loss per token."""
    _dims(model, shard)
    logits = shard.tokens * model.vocab / shard.tp
    e = shard.dtype_bytes
    return [OpCost("loss", "reduction", _LOSS_FLOPS * logits, 2 * e * logits
                   + 4 * shard.tokens)]


def backward(ops: Iterable[OpCost]) -> list[OpCost]:
    """Backward ops of forward ``ops``, in execution order (reversed), named ``"bwd." +
    name``, with FLOPs and bytes (and weight bytes: weights read for the input gradient plus
    weight gradients written) scaled by :data:`BACKWARD_MULTIPLIERS` of their op class: GEMMs
    2x (Narayanan et al. 2021), the FlashAttention core 2.5x FLOPs (recomputation), elementwise
    and reductions 2x."""
    out = []
    for op in reversed(list(ops)):
        if not isinstance(op, OpCost):
            raise OpsError(f"backward: expected OpCost items, got {type(op).__name__}")
        flops_x, bytes_x = BACKWARD_MULTIPLIERS[op.op_class]
        out.append(OpCost(f"bwd.{op.name}", op.op_class, op.flops * flops_x,
                          op.bytes * bytes_x, op.weight_bytes * bytes_x))
    return out


def optimizer_step(params_local: float, *, zero_shard: int = 1,
                   master_bytes: int = MASTER_BYTES, grad_bytes: int = DEFAULT_DTYPE_BYTES,
                   param_bytes: int = DEFAULT_DTYPE_BYTES, state_bytes: int = ADAM_STATE_BYTES,
                   optimizer_states: int = ADAM_STATES, clip_grad: bool = True,
                   impl: str = "fused") -> list[OpCost]:
    """One mixed-precision Adam step over this GPU's ``params_local / zero_shard`` parameters
    (ZeRO shards the optimizer ``zero_shard`` ways; Rajbhandari et al. 2020).

    ``grad_norm`` (if ``clip_grad``): reads the gradients, 2 FLOPs per parameter.
    ``adam``: reads the gradient, reads and writes the fp32 master weight and the
    ``optimizer_states`` moments, and writes the ``param_bytes`` working copy: with the defaults
    ``2 + (4+4+4)*2 + 2 = 28`` bytes and :data:`ADAM_FLOPS_PER_PARAM` (12) FLOPs per parameter.
    ``master_bytes=0`` means no master copy (weights updated in place in ``param_bytes``).

    ``impl`` (:data:`OPTIMIZER_IMPLS`): ``fused`` is the above, one kernel reading the working
    gradients and writing the working weights. ``megatron_fp16`` / ``megatron_bf16`` are the
    separate passes of Megatron-LM's ``Float16OptimizerWithFloat16Params.step`` (2021-22,
    ``megatron/optimizer/optimizer.py``) and its local DDP: zero the gradient buffer; copy the
    gradients to fp32 main gradients (``main_grad.float()``, a no-op when the buffer is already
    fp32); with fp16, unscale them and check for inf/NaN; the gradient norm over the fp32
    gradients; Adam on fp32 gradients, weights and moments; copy the fp32 weights to the working
    ones.
    """
    if impl not in OPTIMIZER_IMPLS:
        raise OpsError(f"optimizer impl: expected one of {', '.join(OPTIMIZER_IMPLS)}, "
                       f"got {impl!r}")
    params = finite_number(params_local, "params_local")
    positive_int(zero_shard, "zero_shard")
    for label, value in (("grad_bytes", grad_bytes), ("param_bytes", param_bytes),
                         ("state_bytes", state_bytes)):
        positive_int(value, label)
    for label, value in (("master_bytes", master_bytes), ("optimizer_states", optimizer_states)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise OpsError(f"{label}: must be an integer >= 0, got {value!r}")
    n = params / zero_shard
    if impl != "fused":
        if master_bytes != MASTER_BYTES:  # Megatron's main weights are always fp32
            raise OpsError(f"optimizer impl {impl}: keeps fp32 main weights; master_bytes "
                           f"{master_bytes} needs impl 'fused'")
        return _megatron_optimizer(n, grad_bytes, param_bytes, state_bytes, optimizer_states,
                                   clip_grad, unscale=impl == "megatron_fp16")
    # master read + written and the working copy written; without a master, the weights in place
    weights = 2 * master_bytes + param_bytes if master_bytes else 2 * param_bytes
    per_param = grad_bytes + weights + 2 * optimizer_states * state_bytes
    ops = []
    if clip_grad:
        ops.append(OpCost("grad_norm", "reduction", 2.0 * n, grad_bytes * n))
    ops.append(OpCost("adam", "elementwise", ADAM_FLOPS_PER_PARAM * n, per_param * n))
    return ops


#: Optimizer implementations :func:`optimizer_step` models.
OPTIMIZER_IMPLS = ("fused", "megatron_fp16", "megatron_bf16")


def _megatron_optimizer(n: float, grad_bytes: int, param_bytes: int, state_bytes: int,
                        optimizer_states: int, clip_grad: bool, unscale: bool) -> list[OpCost]:
    """Megatron-LM's mixed-precision step over ``n`` parameters as separate passes (see
    :func:`optimizer_step`, which checked the arguments): with fp16 gradient buffers
    ``2 + 6 + 8 + 4 + 28 + 6 = 54`` bytes per parameter."""
    main = MASTER_BYTES
    ops = [OpCost("zero_grad_buffer", "elementwise", 0.0, grad_bytes * n)]
    if grad_bytes != main:
        ops.append(OpCost("copy_main_grads", "elementwise", 0.0, (grad_bytes + main) * n))
    if unscale:  # _amp_foreach_non_finite_check_and_unscale_: read, scale, write
        ops.append(OpCost("unscale_check", "elementwise", 2.0 * n, 2 * main * n))
    if clip_grad:
        ops.append(OpCost("grad_norm", "reduction", 2.0 * n, main * n))
    adam = main + 2 * main + 2 * optimizer_states * state_bytes
    ops.append(OpCost("adam", "elementwise", ADAM_FLOPS_PER_PARAM * n, adam * n))
    ops.append(OpCost("copy_to_model", "elementwise", 0.0, (main + param_bytes) * n))
    return ops


# -- sums ----------------------------------------------------------------------------------------


def total_flops(ops: Iterable[OpCost]) -> float:
    """Sum of ``flops`` over ``ops``."""
    return math.fsum(op.flops for op in ops)


def total_bytes(ops: Iterable[OpCost]) -> float:
    """Sum of ``bytes`` over ``ops``."""
    return math.fsum(op.bytes for op in ops)


def matmul_flops(ops: Iterable[OpCost]) -> float:
    """Sum of ``flops`` of the matmul ops (classes ``gemm`` and ``attention``) - the FLOPs of
    model-FLOPs-utilisation accounting."""
    return math.fsum(op.flops for op in ops if op.op_class in ("gemm", "attention")
                     or (op.op_class == UNFUSED and op.name.removeprefix("bwd.")
                         in UNFUSED_MATMULS))


def layer_flops_forward(model: ModelConfig, tokens: int, seq: int, *,
                        causal: bool = True, layer: int | None = None) -> float:
    """Matmul FLOPs of one whole layer's forward pass, unsharded: ``tokens`` tokens attending
    ``seq`` keys (halved when ``causal``). MoE layers count ``top_k`` experts per token plus
    the router and the shared experts; ``layer`` (0-based) picks the dense MLP for the first
    ``dense_layers`` of an MoE model (None: an MoE layer of an MoE model)."""
    shard = Shard(tokens=tokens, seq=seq, causal=causal)
    ops = attention_forward(model, shard)
    if model.is_moe_layer(layer):
        per_expert = balanced_tokens_per_expert(model, tokens)
        ops += moe_forward(model, shard, per_expert, model.experts)
    else:
        ops += mlp_forward(model, shard)
    return matmul_flops(ops)


def forward_flops(model: ModelConfig, tokens: int, seq: int, *, causal: bool = True) -> float:
    """Matmul FLOPs of a forward pass of the whole model over ``tokens`` tokens: all layers
    plus the LM head."""
    head = matmul_flops(lm_head_forward(model, Shard(tokens=tokens, seq=seq, causal=causal)))
    moe = model.moe_layers
    total = moe * layer_flops_forward(model, tokens, seq, causal=causal) if moe else 0.0
    if model.layers > moe:
        total += (model.layers - moe) * layer_flops_forward(model, tokens, seq, causal=causal,
                                                            layer=0)
    return total + head


def training_flops(model: ModelConfig, tokens: int, seq: int, *, causal: bool = True) -> float:
    """Model FLOPs of one training step over ``tokens`` tokens: 3x :func:`forward_flops`
    (forward + 2x backward, recomputation not counted; Narayanan et al. 2021)."""
    return 3.0 * forward_flops(model, tokens, seq, causal=causal)
