"""Per-GPU memory of LLM training and inference, in bytes: weights, gradients and optimizer
state under ZeRO, activations (Korthikanti et al. 2022), pipeline in-flight micro-batches and
the KV cache.

Pure formulas; they take a :class:`~workloads.models.ModelConfig` and parallelism degrees and
return bytes.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, fields

from des.core.hardware import DEFAULT_DTYPE_BYTES
from workloads.models import ModelConfig, ModelConfigError
from workloads.ops import ADAM_STATE_BYTES, ADAM_STATES, MASTER_BYTES

__all__ = [
    "RECOMPUTE",
    "SCHEDULES",
    "MemoryBreakdown",
    "MemoryModelError",
    "activations_per_layer",
    "fits",
    "in_flight_microbatches",
    "kv_cache_bytes",
    "pipeline_activation_memory",
    "weights_and_optimizer",
]

#: Activation recomputation policies of :func:`activations_per_layer`.
RECOMPUTE: tuple[str, ...] = ("none", "selective", "full")
#: Pipeline schedules of :func:`in_flight_microbatches`.
SCHEDULES: tuple[str, ...] = ("gpipe", "1f1b", "interleaved")


class MemoryModelError(ValueError):
    """An invalid memory-model argument; the message names it and what is allowed."""


def _number(value: object, label: str) -> float:
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise MemoryModelError(f"{label}: must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise MemoryModelError(f"{label}: must be a finite number >= 0, got {value!r}")
    return number


def _int(value: object, label: str, minimum: int = 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise MemoryModelError(f"{label}: must be an integer >= {minimum}, got {value!r}")
    return value


def _model(model: object) -> ModelConfig:
    if not isinstance(model, ModelConfig):
        raise MemoryModelError(f"model: must be a ModelConfig, got {type(model).__name__}")
    return model


@dataclass(frozen=True)
class MemoryBreakdown:
    """Bytes one GPU holds, by kind; :attr:`total` is their sum."""

    weights: float
    gradients: float
    optimizer: float
    activations: float
    kv_cache: float = 0.0
    other: float = 0.0

    def __post_init__(self) -> None:
        for f in fields(self):
            object.__setattr__(self, f.name, _number(getattr(self, f.name),
                                                     f"MemoryBreakdown.{f.name}"))

    @property
    def total(self) -> float:
        """Sum of all parts, in bytes."""
        return math.fsum(getattr(self, f.name) for f in fields(self))


def weights_and_optimizer(params_local: float, *, zero_stage: int, dp: int,
                          dtype_bytes: int = DEFAULT_DTYPE_BYTES,
                          master_bytes: int = MASTER_BYTES,
                          optimizer_states: int = ADAM_STATES,
                          state_bytes: int = ADAM_STATE_BYTES,
                          grad_bytes: int | None = None) -> tuple[float, float, float]:
    """(weights, gradients, optimizer) bytes for ``params_local`` parameters under ZeRO
    (Rajbhandari et al., "ZeRO: Memory Optimizations Toward Training Trillion Parameter
    Models", SC 2020).

    Mixed-precision Adam keeps ``dtype_bytes`` weights and gradients (2 + 2) and an optimizer
    state of an fp32 master copy plus ``optimizer_states`` fp32 moments (4 + 4 + 4 = 12): 16
    bytes per parameter unsharded. Stage 1 shards the optimizer state ``dp`` ways, stage 2 also
    the gradients, stage 3 also the weights (stage 3 at dp=8: 16P/8 per GPU).
    ``grad_bytes`` (default ``dtype_bytes``) is the gradient buffer's precision, the one the
    data-parallel reduction sends: bf16 weights with fp32 gradients hold 2 + 4 + 12 = 18 bytes
    per parameter unsharded (NVIDIA Megatron Core, "Distributed Optimizer", bytes-per-parameter
    table).
    """
    params = _number(params_local, "params_local")
    if zero_stage not in (0, 1, 2, 3) or isinstance(zero_stage, bool):
        raise MemoryModelError(f"zero_stage: must be 0, 1, 2 or 3, got {zero_stage!r}")
    _int(dp, "dp")
    _int(dtype_bytes, "dtype_bytes")
    _int(master_bytes, "master_bytes", minimum=0)
    _int(optimizer_states, "optimizer_states", minimum=0)
    _int(state_bytes, "state_bytes")
    grad_size = dtype_bytes if grad_bytes is None else _int(grad_bytes, "grad_bytes")
    weights = dtype_bytes * params / (dp if zero_stage >= 3 else 1)
    grads = grad_size * params / (dp if zero_stage >= 2 else 1)
    optimizer = (master_bytes + optimizer_states * state_bytes) * params
    optimizer /= dp if zero_stage >= 1 else 1
    return weights, grads, optimizer


def activations_per_layer(model: ModelConfig, *, micro_batch: int, seq: int, tp: int = 1,
                          sp: bool = False, recompute: str = "none", flash: bool = False,
                          dropout: bool = True, layer: int | None = None) -> float:
    """Activation bytes one transformer layer keeps for its backward pass, per GPU.

    Korthikanti et al., "Reducing Activation Recomputation in Large Transformer Models", MLSys
    2023, Section 4 and Table 2, with 16-bit activations and 1-byte dropout masks. For a GPT
    layer (MHA, ``ffn = 4h``, GELU, dropout) with ``s`` = ``seq``, ``b`` = ``micro_batch``,
    ``h`` = hidden, ``a`` = heads, ``t`` = ``tp``:

    ===================  =================================
    no parallelism       ``s b h (34 + 5 a s / h)``
    tensor parallel      ``s b h (10 + 24/t + 5 a s/(h t))``
    TP + sequence par.   ``s b h (34/t + 5 a s/(h t))``
    selective recompute  the same without the ``5 a s`` term
    full recompute       ``2 s b h`` (the layer input; ``/t`` with sequence parallelism)
    ===================  =================================

    The terms are built per tensor so other shapes follow: kept unsplit by TP (``/t`` only with
    SP) are the two norm inputs ``4sbh``, the QKV and MLP inputs ``2sbh`` each and two dropout
    masks ``sbh`` each; split by TP are Q and the attention-output input ``2 s b q_dim`` each,
    K and V ``2 s b kv_dim`` each (GQA shrinks them), the MLP's ``2 s b ffn`` per stored
    intermediate (2 for GELU, 3 for SwiGLU); the attention core keeps softmax output
    ``2 a s^2 b``, its dropout mask ``a s^2 b`` and dropout output ``2 a s^2 b``. ``flash=True``
    keeps only the fp32 log-sum-exp ``4 a s b`` instead (FlashAttention recomputes the scores);
    ``dropout=False`` drops masks and the dropout output. MoE layers keep ``top_k`` copies of
    the expert intermediates (``expert_ffn``) and inputs plus fp32 router probabilities
    (``4 s b experts``), assuming balanced routing, and the shared experts' intermediates
    (``shared_experts * expert_ffn`` wide) for every token; ``layer`` (0-based) picks the dense
    MLP for the first ``dense_layers`` of an MoE model (None: an MoE layer). Multi-head latent
    attention keeps its ``heads * qk_head``-wide Q and K, ``heads * v_head_dim``-wide V and
    output input (:meth:`ModelConfig.attention_widths`) plus the replicated inputs of its two
    latent up-projections (``2 s b (q_lora_rank + kv_lora_rank)``). With context parallelism
    pass the local ``seq`` (and ``flash=True``; the score term would need the full key length).
    """
    model = _model(model)
    b = _int(micro_batch, "micro_batch")
    s = _int(seq, "seq")
    t = _int(tp, "tp")
    for label, flag in (("sp", sp), ("flash", flash), ("dropout", dropout)):
        if not isinstance(flag, bool):
            raise MemoryModelError(f"{label}: must be True or False, got {flag!r}")
    if recompute not in RECOMPUTE:
        raise MemoryModelError(
            f"recompute: unknown policy {recompute!r}; allowed: {', '.join(RECOMPUTE)}"
        )
    try:
        model.heads_per_rank(t)
    except ModelConfigError as error:
        raise MemoryModelError(str(error)) from error
    sb = float(s) * b
    sbh = sb * model.hidden
    if recompute == "full":
        return 2 * sbh / (t if sp else 1)

    masks = 1 if dropout else 0
    # Not split by TP: norm inputs 4sbh, QKV input 2sbh, MLP input 2sbh, dropout masks sbh each.
    replicated = (8 + 2 * masks) * sbh
    # MLP intermediates kept, 2 bytes each: GELU input and down input (2), SwiGLU gate, up and
    # down input (3).
    stored = model.mlp_matrices
    if model.is_moe_layer(layer):
        replicated += 2 * model.top_k * sbh + 4 * sb * model.experts
        mlp = 2 * stored * (model.top_k + model.shared_experts) * sb * model.expert_ffn
    else:
        mlp = 2 * stored * sb * model.ffn
    if model.is_mla:  # the latents feeding the up-projections, on every TP rank
        replicated += 2 * sb * (model.q_lora_rank + model.kv_lora_rank)
    split = 2 * sb * sum(model.attention_widths()) + mlp
    if recompute == "selective":
        core = 0.0
    elif flash:
        core = 4 * model.heads * sb
    else:
        core = (2 + 3 * masks) * model.heads * sb * s
    if sp:
        return (replicated + split + core) / t
    return replicated + (split + core) / t


def pipeline_activation_memory(per_layer: float, layers_per_stage: float,
                               in_flight_microbatches: int) -> float:
    """Activation bytes of one pipeline stage: ``per_layer * layers_per_stage *
    in_flight_microbatches`` (for the interleaved schedule pass the layers of one model chunk,
    ``layers_per_stage / virtual``, with the chunk count of :func:`in_flight_microbatches`)."""
    return (_number(per_layer, "per_layer") * _number(layers_per_stage, "layers_per_stage")
            * _int(in_flight_microbatches, "in_flight_microbatches", minimum=0))


def in_flight_microbatches(schedule: str, pp: int, stage: int, micro_batches: int,
                           virtual: int = 1) -> int:
    """Micro-batches whose activations stage ``stage`` (0-based) holds at its peak.

    ``gpipe`` (Huang et al. 2019): all ``micro_batches``. ``1f1b`` (PipeDream-Flush, Narayanan
    et al. 2021): ``min(pp - stage, micro_batches)``, so stage 0 holds ``pp``. ``interleaved``
    (Megatron-LM's virtual pipeline, ``virtual >= 2`` model chunks per GPU): Megatron's warm-up
    count plus the one in flight, ``min(2 (pp - stage - 1) + (virtual - 1) pp + 1,
    micro_batches * virtual)``, counted in model-chunk micro-batches of ``layers / (pp *
    virtual)`` layers each - stage 0 then holds ``L (1 + (pp - 1)/(pp virtual))`` layers'
    worth, as in Korthikanti et al. 2022, Section 4.2.3.
    """
    if not isinstance(schedule, str) or schedule.lower() not in SCHEDULES:
        raise MemoryModelError(
            f"schedule: unknown {schedule!r}; allowed: {', '.join(SCHEDULES)}"
        )
    kind = schedule.lower()
    _int(pp, "pp")
    _int(stage, "stage", minimum=0)
    if stage >= pp:
        raise MemoryModelError(f"stage: must be in 0..{pp - 1} for pp={pp}, got {stage}")
    m = _int(micro_batches, "micro_batches")
    v = _int(virtual, "virtual")
    if kind == "interleaved":
        if v < 2:
            raise MemoryModelError(
                f"virtual: the interleaved schedule needs virtual >= 2 model chunks per GPU, "
                f"got {v}; use '1f1b' for one"
            )
        return min(2 * (pp - stage - 1) + (v - 1) * pp + 1, m * v)
    if v != 1:
        raise MemoryModelError(f"virtual: must be 1 for the {kind!r} schedule, got {v}")
    return m if kind == "gpipe" else min(pp - stage, m)


def kv_cache_bytes(model: ModelConfig, *, batch: int, context: int, tp: int = 1,
                   dtype_bytes: int = DEFAULT_DTYPE_BYTES) -> float:
    """KV-cache bytes per GPU: ``2 * layers * kv_heads/tp * head_dim * context * batch *
    dtype_bytes`` (K and V; one replicated KV head per GPU when ``tp > kv_heads``). Llama-2-70B,
    batch 1, 4096 tokens, fp16: ``2*80*8*128*4096*2 = 1,342,177,280`` bytes.

    ``dtype_bytes`` is the cache's precision (1 for fp8). With a sliding window the cache
    holds at most ``sliding_window`` positions per sequence (Mistral 7B's rolling buffer,
    arXiv 2310.06825). Multi-head latent attention caches ``kv_lora_rank + qk_rope_head_dim``
    elements per token and layer (DeepSeek-V2, arXiv 2405.04434, Section 2.1.4 and Table 1),
    shared by all heads and so kept whole on every tensor-parallel rank."""
    model = _model(model)
    _int(batch, "batch")
    _int(context, "context")
    _int(dtype_bytes, "dtype_bytes")
    try:
        kv_local = model.kv_heads_per_rank(_int(tp, "tp"))
    except ModelConfigError as error:
        raise MemoryModelError(str(error)) from error
    width = model.kv_cache_width() if model.is_mla else 2 * kv_local * model.head_dim
    return float(model.layers) * width * model.cached_positions(context) * batch * dtype_bytes


def fits(breakdown: MemoryBreakdown, capacity: float, reserve: float = 0.0) -> bool:
    """Whether ``breakdown.total + reserve <= capacity`` (all bytes; ``reserve`` covers e.g.
    the CUDA context and allocator fragmentation)."""
    if not isinstance(breakdown, MemoryBreakdown):
        raise MemoryModelError(
            f"breakdown: must be a MemoryBreakdown, got {type(breakdown).__name__}"
        )
    return breakdown.total + _number(reserve, "reserve") <= _number(capacity, "capacity")
