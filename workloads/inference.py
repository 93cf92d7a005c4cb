"""LLM inference as an event graph: the prefill of a batch of prompts, then token-by-token decode.

One request batch of ``batch`` sequences, each a ``prompt``-token prompt followed by ``generate``
generated tokens, under tensor parallelism (``tp``) and pipeline parallelism (``pp``):

* prefill: one forward pass over ``batch x prompt`` tokens (causal attention), as one
  micro-batch; the KV cache of the prompt is written by the QKV GEMMs. Only each sequence's last
  position goes through the LM head (``batch`` rows), as inference servers do;
* decode step ``t{i}`` (``i = 0 .. generate-1``): a forward pass over ``batch x 1`` tokens, the
  token at position ``prompt + i`` of each sequence attending ``prompt + i + 1`` keys: the
  cache plus itself (``op_cost.Shard(decode=True)``). Its GEMMs read all of the rank's weights for
  ``batch`` rows and its attention reads the whole KV cache, so the roofline makes decode
  memory bound through the op bytes (small batches: weight reads dominate);
* tensor parallel: an all-reduce after the attention and MLP blocks of every layer (Megatron,
  no sequence parallelism), and an all-gather of the vocabulary-parallel logits
  (``batch x vocab``) after the LM head so every rank can sample;
* pipeline parallel: activations sent stage to stage (one micro-batch, so the pipeline is a
  chain); the last stage's sampled token ids (``batch x 4`` bytes) are sent back to stage 0,
  where the next decode step starts.

The prefill's last token is the first output token: TTFT is the end of the prefill on the last
stage and each decode step adds one token per sequence. Every node carries the ``category`` the
report groups time by: ``prefill`` and ``decode`` for compute, ``tp`` and ``pp`` for
communication; names start with the same word for readability (``tp/decode/t3/L7.ar1``).

Not modelled: the embedding's vocabulary-parallel all-reduce (as in :mod:`workloads.llm`),
sampling kernels, continuous batching and request scheduling, and CUDA graphs (every kernel pays
the hardware preset's launch overhead; set ``launch_overhead`` lower to model them).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, fields

from des.core.graph import CollectiveType, EventGraph
from des.core.hardware import DEFAULT_DTYPE_BYTES
from workloads import op_cost, ops
from workloads.memory import MemoryBreakdown, kv_cache_bytes
from workloads.models import ModelConfig
from workloads.op_cost import OpCost, Shard
from workloads.parallel import Layout, ParallelConfig, ParallelError, add_collective
from workloads.precision import KV_CACHE_DTYPES, dtype_bytes

AR, AG = CollectiveType.ALL_REDUCE, CollectiveType.ALL_GATHER
#: Bytes of one sampled token id sent back to the first stage.
TOKEN_ID_BYTES = 4

__all__ = ["InferenceBuilder", "InferenceConfig", "InferenceWorkload", "build_inference",
           "decode_context", "inference_memory"]


@dataclass(frozen=True)
class InferenceConfig:
    """How a batch of requests is served: ``tp`` x ``pp`` GPUs, ``batch`` sequences of
    ``prompt`` prompt tokens and ``generate`` generated tokens each; ``fold_tp`` simulates one
    rank per tensor-parallel group (see :class:`~workloads.parallel.ParallelConfig`).
    ``kv_cache_dtype`` (``fp32``, ``bf16``, ``fp16``, ``fp8``; default: ``dtype_bytes``) is the
    KV cache's precision: it sizes the cache in memory and the cached keys and values each
    decode step reads (:mod:`workloads.precision`)."""

    tp: int = 1
    pp: int = 1
    batch: int = 1
    prompt: int = 512
    generate: int = 128
    dtype_bytes: int = DEFAULT_DTYPE_BYTES
    flash: bool = True
    fold_tp: bool = False
    kv_cache_dtype: str | None = None

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "kv_cache_dtype":
                if value is not None:
                    dtype_bytes(value, KV_CACHE_DTYPES, "parallel.kv_cache_dtype")
            elif f.type in (bool, "bool"):
                if not isinstance(value, bool):
                    raise ParallelError(f"parallel.{f.name} must be true or false, "
                                        f"got {value!r}")
            elif isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ParallelError(f"parallel.{f.name} must be a whole number >= 1, "
                                    f"got {value!r}")

    @property
    def world(self) -> int:
        """GPUs serving the batch: ``tp * pp``."""
        return self.tp * self.pp

    @property
    def kv_bytes(self) -> int:
        """Bytes per cached K/V element: ``kv_cache_dtype``'s, else ``dtype_bytes``."""
        if self.kv_cache_dtype is None:
            return self.dtype_bytes
        return dtype_bytes(self.kv_cache_dtype, KV_CACHE_DTYPES, "parallel.kv_cache_dtype")

    @property
    def context(self) -> int:
        """Tokens per sequence at the end: ``prompt + generate`` (the KV cache's length)."""
        return self.prompt + self.generate


@dataclass
class InferenceWorkload:
    """The graph of one batch's prefill and decode, and the node ids the report reads.

    ``prefill_end[rank]``: the node that ends the rank's prefill; ``decode_end[rank][i]``: the
    node that ends its decode step ``i``. On the last stage these end with the logits (the
    token is ready); on earlier stages, with the last block (its activations then leave).
    ``last_stage_rank``: the simulated rank of the last stage the report times.
    """

    graph: EventGraph
    model: ModelConfig
    cfg: InferenceConfig
    simulated_ranks: list[int]
    memory: dict[int, MemoryBreakdown] = field(default_factory=dict)
    prefill_end: dict[int, int] = field(default_factory=dict)
    decode_end: dict[int, list[int]] = field(default_factory=dict)
    last_stage_rank: int = 0

    @property
    def output_tokens(self) -> int:
        """Tokens the decode steps produce: ``batch * generate``."""
        return self.cfg.batch * self.cfg.generate

    @property
    def total_tokens(self) -> int:
        """Prompt and generated tokens of the batch: ``batch * (prompt + generate)``."""
        return self.cfg.batch * self.cfg.context


def _check(model: ModelConfig, cfg: InferenceConfig, npus: int) -> None:
    if not isinstance(model, ModelConfig):
        raise ParallelError(f"model: expected a ModelConfig, got {type(model).__name__}")
    if not isinstance(cfg, InferenceConfig):
        raise ParallelError(f"cfg: expected an InferenceConfig, got {type(cfg).__name__}")
    if cfg.world != npus:
        raise ParallelError(f"tp x pp = {cfg.tp} x {cfg.pp} = {cfg.world}, but the topology "
                            f"has {npus} NPUs")
    if model.layers % cfg.pp:
        raise ParallelError(f"{model.name}: {model.layers} layers do not split into "
                            f"pp = {cfg.pp} equal stages")
    if model.heads % cfg.tp or (model.kv_heads % cfg.tp and cfg.tp % model.kv_heads):
        raise ParallelError(f"{model.name}: {model.heads} heads ({model.kv_heads} KV) do "
                            f"not split over tp = {cfg.tp}")
    widths = {model.expert_ffn} if model.is_moe else set()
    if model.layers > model.moe_layers:
        widths.add(model.ffn)
    for ffn in sorted(widths):
        if ffn % cfg.tp:
            raise ParallelError(f"{model.name}: the MLP's {ffn} columns do not split over "
                                f"tp = {cfg.tp}")


def _stage_params(model: ModelConfig, cfg: InferenceConfig, stage: int) -> float:
    """Parameters one GPU of ``stage`` holds: its layers, the embeddings on the first stage,
    the final norm and LM head on the last (split ``tp`` ways, but for MLA's replicated
    down-projections, :meth:`~workloads.models.ModelConfig.layer_params_local`)."""
    per_stage = model.layers // cfg.pp
    first = stage * per_stage
    params = sum(model.layer_params_local(cfg.tp, layer=layer)
                 for layer in range(first, first + per_stage))
    if stage == 0:
        params += model.embedding_params() / cfg.tp
    if stage == cfg.pp - 1:
        params += model.norm_params()
        if not model.tied_embeddings or cfg.pp > 1:
            params += model.vocab * model.hidden / cfg.tp
    return params


def inference_memory(model: ModelConfig, cfg: InferenceConfig, stage: int) -> MemoryBreakdown:
    """Peak memory of one GPU of ``stage``: weights (``dtype_bytes`` per parameter), the KV
    cache of its layers for ``batch`` sequences of ``prompt + generate`` tokens
    (:func:`~workloads.memory.kv_cache_bytes`), and as activations the prefill's transient
    working set of one layer (nothing is kept across layers): the residual stream and the norm
    output (``2 x hidden``), the local Q/K/V, the MLP's local intermediates (2 x ``ffn/tp``, or
    ``top_k`` routed and the shared copies for MoE) over ``batch x prompt`` tokens, plus the
    unfused attention scores when ``flash`` is off and the ``batch x vocab/tp`` logits on the
    last stage. The KV cache is held at ``kv_cache_dtype``'s bytes (``cfg.kv_bytes``)."""
    weights = _stage_params(model, cfg, stage) * cfg.dtype_bytes
    kv = kv_cache_bytes(model, batch=cfg.batch, context=cfg.context, tp=cfg.tp,
                        dtype_bytes=cfg.kv_bytes) / cfg.pp
    tokens = cfg.batch * cfg.prompt
    q, k, v, _ = model.attention_widths()
    qkv = (q + k + v) / cfg.tp
    ffn = model.ffn
    if model.is_moe:
        ffn = max((model.top_k + model.shared_experts) * model.expert_ffn,
                  model.ffn if model.dense_layers else 0)
    width = 2 * model.hidden + qkv + 2 * ffn / cfg.tp
    acts = cfg.dtype_bytes * tokens * width
    if not cfg.flash:
        acts += cfg.dtype_bytes * cfg.batch * model.heads / cfg.tp * cfg.prompt ** 2
    if stage == cfg.pp - 1:
        acts += cfg.dtype_bytes * cfg.batch * model.vocab / cfg.tp
    return MemoryBreakdown(weights, 0.0, 0.0, acts, kv_cache=kv)


class InferenceBuilder:
    """Builds :class:`InferenceWorkload` for a model, a serving config and a number of NPUs."""

    def __init__(self, model: ModelConfig, cfg: InferenceConfig, npus: int) -> None:
        _check(model, cfg, npus)
        self.model, self.cfg = model, cfg
        self.layout = Layout(ParallelConfig(tp=cfg.tp, pp=cfg.pp, dtype_bytes=cfg.dtype_bytes,
                                            flash=cfg.flash, fold_tp=cfg.fold_tp))
        label = " x ".join(f"{k}{getattr(cfg, k)}" for k in ("tp", "pp")
                           if getattr(cfg, k) > 1) or "1 GPU"
        self.graph = EventGraph(npus, f"{model.name} inference {label}, batch {cfg.batch}, "
                                f"{cfg.prompt}+{cfg.generate} tokens")
        self.layers_per_stage = model.layers // cfg.pp

    # ------------------------------------------------------------------ costs
    def _shard(self, tokens: int, seq: int, decode: bool) -> Shard:
        c = self.cfg
        return Shard(tokens=tokens, seq=seq, tp=c.tp, flash=c.flash,
                     dtype_bytes=c.dtype_bytes, decode=decode, kv_bytes=c.kv_bytes)

    def _costs(self, shard: Shard, moe: bool = True) -> tuple[list[OpCost], list[OpCost]]:
        """(attention block, MLP block) op costs of one layer on one GPU; ``moe`` False gives
        an MoE model's leading dense layer."""
        m = self.model
        attn = ops.attention_forward(m, shard)
        if m.is_moe and moe:  # every expert on every GPU, columns split tp ways
            per_expert = ops.balanced_tokens_per_expert(m, shard.tokens)
            mlp = ops.moe_forward(m, shard, per_expert, m.experts)
        else:
            mlp = ops.mlp_forward(m, shard)
        return attn, mlp

    # ------------------------------------------------------------------ helpers
    def _coll(self, rank: int, kind: CollectiveType, nbytes: float, name: str,
              deps: Iterable[int]) -> int:
        return add_collective(self.graph, rank, kind, nbytes, self.layout.group(rank, "tp"),
                              fold=self.cfg.fold_tp, name=name, deps=deps, category="tp")

    def _compute(self, rank: int, cat: str, name: str, costs: list[OpCost],
                 deps: Iterable[int]) -> int:
        return self._kernels(rank, cat, name, op_cost.kernels(costs), deps)

    def _kernels(self, rank: int, cat: str, name: str, kernels: list[tuple[float, float, str]],
                 deps: Iterable[int]) -> int:
        return self.graph.compute(rank, name=name, kernels=kernels, deps=deps, category=cat)

    def _tag(self, step: int, boundary: int) -> int:
        """Tag of the pipeline message of ``step`` (0 prefill, ``i + 1`` decode ``t{i}``) into
        stage ``boundary`` (0: the sampled tokens going back to the first stage)."""
        return step * self.cfg.pp + boundary

    # ------------------------------------------------------------------ one forward pass
    def _forward(self, rank: int, stage: int, step: int, tokens: int, seq: int, decode: bool,
                 prev: int | None) -> int:
        """One forward pass of this rank's stage over ``tokens`` tokens; returns its last node.
        ``prev`` is what the pass waits for on this rank (the previous pass's end)."""
        c, m, g = self.cfg, self.model, self.graph
        cat = "decode" if decode else "prefill"
        phase = f"decode/t{step - 1}" if decode else "prefill"
        shard = self._shard(tokens, seq, decode)
        attn, mlp = (op_cost.kernels(costs) for costs in self._costs(shard))
        dense_mlp = (op_cost.kernels(self._costs(shard, moe=False)[1])
                     if m.dense_layers else mlp)
        act_bytes = float(tokens * m.hidden * c.dtype_bytes)
        deps = [] if prev is None else [prev]
        if stage > 0:
            src = self.layout.stage_rank(rank, stage - 1)
            deps.append(g.recv(rank, src, act_bytes, tag=self._tag(step, stage),
                               name=f"pp/{phase}/s{stage}", category="pp"))
        elif step > 0 and c.pp > 1:
            src = self.layout.stage_rank(rank, c.pp - 1)
            deps.append(g.recv(rank, src, float(c.batch * TOKEN_ID_BYTES),
                               tag=self._tag(step, 0), name=f"pp/{phase}/tokens",
                               category="pp"))
        if stage == 0:
            h = self._compute(rank, cat, f"{phase}/embed", ops.embedding_forward(m, shard),
                              deps)
        else:
            h = g.compute(rank, name=f"{phase}/begin", duration_ns=0.0, deps=deps,
                          category=cat)
        first = stage * self.layers_per_stage
        for layer in range(first, first + self.layers_per_stage):
            h = self._kernels(rank, cat, f"{phase}/L{layer}.attn", attn, (h,))
            if c.tp > 1:
                h = self._coll(rank, AR, act_bytes, f"tp/{phase}/L{layer}.ar1", (h,))
            h = self._kernels(rank, cat, f"{phase}/L{layer}.mlp",
                              mlp if m.is_moe_layer(layer) else dense_mlp, (h,))
            if c.tp > 1:
                h = self._coll(rank, AR, act_bytes, f"tp/{phase}/L{layer}.ar2", (h,))
        if stage < c.pp - 1:
            dst = self.layout.stage_rank(rank, stage + 1)
            g.send(rank, dst, act_bytes, tag=self._tag(step, stage + 1),
                   name=f"pp/{phase}/s{stage + 1}", deps=(h,), category="pp")
            return h
        # last stage: the LM head over each sequence's newest position only
        head = self._shard(c.batch, seq, decode)
        h = self._compute(rank, cat, f"{phase}/head", ops.lm_head_forward(m, head), (h,))
        if c.tp > 1:
            h = self._coll(rank, AG, float(c.batch * m.vocab * c.dtype_bytes),
                           f"tp/{phase}/logits", (h,))
        if c.pp > 1 and step < c.generate:  # the sampled tokens feed the next step
            dst = self.layout.stage_rank(rank, 0)
            g.send(rank, dst, float(c.batch * TOKEN_ID_BYTES), tag=self._tag(step + 1, 0),
                   name=f"pp/decode/t{step}/tokens", deps=(h,), category="pp")
        return h

    # ------------------------------------------------------------------ whole request batch
    def build(self) -> InferenceWorkload:
        """The graph over every simulated rank: prefill, then ``generate`` decode steps."""
        c = self.cfg
        ranks = [r for r in range(c.world)
                 if not (c.fold_tp and self.layout.coords(r)["tp"] != 0)]
        workload = InferenceWorkload(self.graph, self.model, c, ranks)
        for rank in ranks:
            stage = self.layout.coords(rank)["pp"]
            h = self._forward(rank, stage, 0, c.batch * c.prompt, c.prompt, False, None)
            workload.prefill_end[rank] = h
            ends = []
            for i in range(c.generate):
                h = self._forward(rank, stage, i + 1, c.batch, c.prompt + i + 1, True, h)
                ends.append(h)
            workload.decode_end[rank] = ends
            workload.memory[rank] = inference_memory(self.model, c, stage)
        workload.last_stage_rank = min(r for r in ranks
                                       if self.layout.coords(r)["pp"] == c.pp - 1)
        return workload


def build_inference(model: ModelConfig, cfg: InferenceConfig, npus: int) -> InferenceWorkload:
    """The prefill and decode of one request batch of ``model`` served as ``cfg`` on ``npus``
    NPUs (``cfg.tp * cfg.pp`` must equal ``npus``)."""
    return InferenceBuilder(model, cfg, npus).build()


def decode_context(cfg: InferenceConfig, step: int) -> int:
    """Keys decode step ``step`` (0-based) attends per sequence: ``prompt + step + 1``."""
    if not 0 <= step < cfg.generate:
        raise ParallelError(f"decode step {step} is outside 0..{cfg.generate - 1}")
    return cfg.prompt + step + 1

