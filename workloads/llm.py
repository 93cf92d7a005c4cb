"""LLM training as an event graph: one iteration of a transformer under a parallel strategy.

Every GPU gets, in its pipeline schedule's order, a forward and a backward pass per micro-batch
and model chunk; within a pass, per layer, compute nodes (kernel sequences with FLOPs and bytes
from :mod:`workloads.ops`) and the communication the strategy implies, where Megatron-LM puts it
(Shoeybi et al. 2019; Narayanan et al. 2021; Korthikanti et al. 2022):

* tensor parallel: an all-reduce after the attention and MLP blocks in the forward pass and one
  before each in the backward pass; with sequence parallelism an all-gather before and a
  reduce-scatter after each block instead (and the conjugates in the backward pass);
* context parallel: ring attention, the KV blocks passed around the context group while each
  block's attention runs, exchange by exchange or (opt-in, approximate) as one phase
  (:mod:`workloads.ring_attention`);
* expert parallel: an all-to-all dispatching tokens to experts and one combining them;
* pipeline parallel: activations and gradients as send/recv between stages;
* data parallel: gradients reduced in buckets as the last micro-batch's backward produces them
  (all-reduce; reduce-scatter then a parameter all-gather with ZeRO 1-2; per-layer parameter
  all-gathers and gradient reduce-scatters with ZeRO 3), then the optimizer step;
* recomputation: full reruns each layer's forward (communication included) before its
  backward; selective reruns the attention core.

Local work after a communication (applying gradients, the optimizer) is its own compute node.
Every node carries a ``category`` the report groups time by (``fwd``, ``bwd``, ``recompute``,
``optimizer`` for compute; ``tp``, ``cp``, ``ep``, ``pp``, ``dp`` for communication); node
names start with the same word for readability, but nothing parses them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from functools import cached_property

from des.core.gc_pause import cyclic_gc_paused
from des.core.graph import CollectiveType, EventGraph
from topologies.base import Topology
from topologies.dims import neighbour_ring
from workloads import ops
from workloads.folding import choose_fold, collectives_match
from workloads.memory import (
    MemoryBreakdown,
    activations_per_layer,
    in_flight_microbatches,
    weights_and_optimizer,
)
from workloads.models import ModelConfig
from workloads.op_cost import OpCost, Shard, kernels
from workloads.parallel import (
    Layout,
    ParallelConfig,
    ParallelError,
    add_collective,
    pipeline_schedule,
)
from workloads.ring_attention import RingAttention

#: Forward GEMMs that are column-parallel linears reading a block's (replicated) input.
COLUMN_LINEARS = ("qkv", "mlp_up", "mlp_gate")


def split_column_backward(costs: list[OpCost]) -> tuple[list[OpCost], list[OpCost],
                                                         list[OpCost]]:
    """A block's backward ops (:func:`workloads.ops.backward` order) split where Megatron-LM
    starts the input-gradient all-reduce: (everything up to the column-parallel linears' input
    gradients, their weight gradients, what follows them). A backward GEMM is the input- and
    the weight-gradient GEMM, each the forward's size (Narayanan et al. 2021), so each half
    takes half its FLOPs and bytes."""
    names = {f"bwd.{n}" for n in COLUMN_LINEARS}
    last = max((i for i, c in enumerate(costs) if c.name in names), default=None)
    if last is None:
        return list(costs), [], []
    head, wgrad = [], []
    for c in costs[:last + 1]:
        if c.name in names:
            half = OpCost(c.name + ".dgrad", c.op_class, c.flops / 2, c.bytes / 2,
                          c.weight_bytes / 2)
            head.append(half)
            wgrad.append(OpCost(c.name + ".wgrad", c.op_class, c.flops / 2, c.bytes / 2,
                                c.weight_bytes / 2))
        else:
            head.append(c)
    return head, wgrad, list(costs[last + 1:])


AR, AG, RS, A2A = (CollectiveType.ALL_REDUCE, CollectiveType.ALL_GATHER,
                   CollectiveType.REDUCE_SCATTER, CollectiveType.ALL_TO_ALL)


@dataclass
class TrainingWorkload:
    """The graph of one training iteration and what the report needs to read it."""

    graph: EventGraph
    model: ModelConfig
    par: ParallelConfig
    seq: int
    simulated_ranks: list[int]
    memory: dict[int, MemoryBreakdown] = field(default_factory=dict)

    @property
    def tokens(self) -> int:
        """Tokens per iteration."""
        return self.par.global_batch * self.seq


def _is_core(cost: OpCost) -> bool:
    return cost.op_class == "attention" or (cost.name.startswith("attn_")
                                            and cost.name != "attn_out")


class TrainingBuilder:
    """Builds :class:`TrainingWorkload` for a model, a strategy and a number of NPUs."""

    def __init__(self, model: ModelConfig, par: ParallelConfig, npus: int,
                 topology: Topology | None = None, symmetric: bool = True,
                 contention: bool = True) -> None:
        self.model, self.par = model, par
        self.seq = par.seq or model.seq
        if par.world != npus:
            raise ParallelError(f"dp x tp x pp x cp = {par.dp} x {par.tp} x {par.pp} x "
                                f"{par.cp} = {par.world}, but the topology has {npus} NPUs")
        chunks = par.pp * par.virtual_stages
        if model.layers % chunks:
            raise ParallelError(f"{model.name}: {model.layers} layers do not split into "
                                f"pp x virtual_stages = {chunks} equal chunks")
        if model.heads % par.tp or (model.kv_heads % par.tp and par.tp % model.kv_heads):
            raise ParallelError(f"{model.name}: {model.heads} heads ({model.kv_heads} KV) do "
                                f"not split over tp = {par.tp}")
        if self.seq % par.cp:
            raise ParallelError(f"sequence {self.seq} does not split over cp = {par.cp}")
        if model.experts and model.experts % par.ep:
            raise ParallelError(f"{model.name}: {model.experts} experts do not split over "
                                f"ep = {par.ep}")
        if par.ep > 1 and not model.experts:
            raise ParallelError(f"ep = {par.ep} but {model.name} has no experts")
        self.layout = Layout(par)
        self.topology = topology
        self._rings: dict[tuple[int, ...], tuple[int, ...]] = {}
        self.graph = EventGraph(npus, f"{model.name} {self._label()}")
        self.fold = choose_fold(self.layout, topology, par.fold_request, par.foldable,
                                symmetric=symmetric, contention=contention)
        self.graph.fold = self.fold
        self._coll_axes: dict[str, tuple[tuple[str, ...], bool]] = {}  # axis -> (axes, fold)
        self.layers_per_chunk = model.layers // chunks
        self.tokens = par.micro_batch * self.seq // par.cp
        self.shard = Shard(tokens=self.tokens, seq=self.seq, tp=par.tp, sp=par.sp,
                           cp=par.cp, flash=par.flash, dtype_bytes=par.dtype_bytes,
                           dropout=par.dropout)
        self.act_bytes = float(self.tokens * model.hidden * par.dtype_bytes)
        self._tag = 0
        self._prepare_costs()

    def _label(self) -> str:
        p = self.par
        parts = [f"{k}{getattr(p, k)}" for k in ("dp", "tp", "pp", "cp", "ep")
                 if getattr(p, k) > 1]
        label = " x ".join(parts) or "1 GPU"
        return f"{label} [approximate: {'; '.join(p.approximations)}]" if p.approximations \
            else label

    # ------------------------------------------------------------------ per-layer costs
    def _prepare_costs(self) -> None:
        m, s = self.model, self.shard
        attn = ops.attention_forward(m, s)
        self.attn_pre = [c for c in attn if not _is_core(c)
                         and (c.name == "norm1" or c.name.startswith("qkv"))]
        self.attn_core = [c for c in attn if _is_core(c)]
        self.attn_post = [c for c in attn if c not in self.attn_pre and c not in self.attn_core]
        self.dense_mlp = ops.mlp_forward(m, s) if m.layers > m.moe_layers else []
        if m.experts:
            routed = self.tokens * m.top_k / max(self.par.tp if self.par.sp else 1, 1)
            local = m.experts // self.par.ep
            self.mlp = ops.moe_forward(m, s, routed / local, local)
        else:
            self.mlp = self.dense_mlp
        self.bwd_mlp = ops.backward(self.mlp)
        self.bwd_dense_mlp = ops.backward(self.dense_mlp)
        self.bwd_attn_post = ops.backward(self.attn_post)
        self.bwd_attn_core = ops.backward(self.attn_core)
        self.bwd_attn_pre = ops.backward(self.attn_pre)
        # tp_grad_overlap: the backward blocks split where the all-reduce starts, once
        overlap = self.par.tp > 1 and self.par.tp_grad_overlap and not self.par.sp
        self._split_mlp = split_column_backward(self.bwd_dense_mlp) if overlap else None
        self._split_attn_pre = split_column_backward(self.bwd_attn_pre) if overlap else None
        p = self.par
        # one layer's parameters on one GPU (an MoE layer of an MoE model; see _layer_local)
        self.layer_params_local = m.layer_params_local(p.tp, p.ep)

    def _layer_local(self, layer: int) -> float:
        """Parameters of layer ``layer`` on one GPU: split tp ways (MLA's down-projections
        whole), routed experts ep ways; the leading dense layers of an MoE model have theirs."""
        p, m = self.par, self.model
        if m.is_moe_layer(layer) or not m.is_moe:
            return self.layer_params_local
        return m.layer_params_local(p.tp, p.ep, layer)

    # ------------------------------------------------------------------ helpers
    def _next_tag(self) -> int:
        self._tag += 1
        return self._tag

    def _coll(self, rank: int, kind: CollectiveType, nbytes: float, axis: str, name: str,
              deps: Iterable[int]) -> int:
        """A collective over ``axis``: ``dp`` is every data-parallel replica (expert shards
        included), ``edp`` the replicas of one expert shard; ``tp`` groups fold when asked."""
        known = self._coll_axes.get(axis)
        if known is None:  # once per axis: the layout and the fold are fixed by now
            axes = {"dp": ("ep", "dp"), "edp": ("dp",)}.get(axis, (axis,))
            sizes = self.layout.sizes
            known = self._coll_axes[axis] = (axes, self.fold is not None and all(
                a in self.fold.axes for a in axes if sizes[a] > 1))
        axes, fold = known
        return add_collective(self.graph, rank, kind, nbytes, self.layout.group(rank, *axes),
                              fold=fold, name=name, deps=deps,
                              category="dp" if axis == "edp" else axis)

    def _compute(self, rank: int, cat: str, name: str, costs: list[OpCost],
                 deps: Iterable[int]) -> int:
        return self.graph.compute(rank, name=name, kernels=kernels(costs), deps=deps,
                                  category=cat)

    # ------------------------------------------------------------------ one layer
    def _layer_forward(self, rank: int, h: int, cat: str, layer: int) -> int:
        p, g = self.par, f"{cat}/L{layer}"
        tp = p.tp > 1
        if p.zero == 3 and p.dp > 1:  # the gathered layer: the whole buffer (see _zero3_gather)
            h = self._coll(rank, AG, self._layer_local(layer) * p.dtype_bytes, "dp",
                           f"dp/{g}.params", (h,))
        if tp and p.sp:
            h = self._coll(rank, AG, self.act_bytes, "tp", f"tp/{g}.ag1", (h,))
        h = self._compute(rank, cat, f"{g}.attn_in", self.attn_pre, (h,))
        h = self._attention_core(rank, h, cat, g, self.attn_core)
        h = self._compute(rank, cat, f"{g}.attn_out", self.attn_post, (h,))
        if tp:
            h = self._coll(rank, RS if p.sp else AR, self.act_bytes, "tp",
                           f"tp/{g}.{'rs' if p.sp else 'ar'}1", (h,))
            if p.sp:
                h = self._coll(rank, AG, self.act_bytes, "tp", f"tp/{g}.ag2", (h,))
        moe = self.model.is_moe_layer(layer)
        h = self._mlp(rank, h, cat, g, self.mlp if moe else self.dense_mlp, moe)
        if tp:
            h = self._coll(rank, RS if p.sp else AR, self.act_bytes, "tp",
                           f"tp/{g}.{'rs' if p.sp else 'ar'}2", (h,))
        return h

    def _attention_core(self, rank: int, h: int, cat: str, g: str, core: list[OpCost],
                        passes: int = 1) -> int:
        """The attention core; with context parallelism, ring attention, exchange by exchange
        or by phase as ``parallel.ring_attention`` says (:mod:`workloads.ring_attention`; in
        the backward pass the KV gradients travel with the blocks: ``passes`` = 2)."""
        if self.par.cp == 1:
            return self._compute(rank, cat, f"{g}.attn", core, (h,))
        return self._ring.build(rank, self._cp_ring(rank), h, cat, g, core, passes,
                                self._next_tag)

    def _cp_ring(self, rank: int) -> tuple[int, ...]:
        """``rank``'s context-parallel group in ring order: neighbours one link apart where the
        group is a box of a grid (:func:`topologies.dims.neighbour_ring`), else rank order."""
        group = self.layout.group(rank, "cp")
        ring = self._rings.get(group)
        if ring is None:
            ring = self._rings[group] = (group if self.topology is None
                                         else neighbour_ring(self.topology, group))
        return ring

    @cached_property
    def _ring(self) -> RingAttention:
        p, m = self.par, self.model
        _, k, v, _ = m.attention_widths()  # MLA: the up-projected heads' K and V
        block = self.tokens * (k + v) * p.dtype_bytes / p.tp  # K and V
        fold = self.fold is not None and "cp" in self.fold.axes
        return RingAttention(self.graph, p.ring_attention, p.cp, block, fold=fold)

    def _mlp(self, rank: int, h: int, cat: str, g: str, costs: list[OpCost], moe: bool) -> int:
        """The MLP block; an MoE layer under expert parallelism dispatches its routed token
        copies (``top_k`` per token: shared experts run locally) with an all-to-all of the
        whole send buffer and combines them with another."""
        p, m = self.par, self.model
        if not (moe and p.ep > 1):
            return self._compute(rank, cat, f"{g}.mlp", costs, (h,))
        router = [c for c in costs if c.name == "router"]
        experts = [c for c in costs if c.name != "router"]
        h = self._compute(rank, cat, f"{g}.router", router, (h,))
        routed = self.tokens * m.top_k * m.hidden * p.dtype_bytes / (p.tp if p.sp else 1)
        h = self._coll(rank, A2A, routed, "ep", f"ep/{g}.dispatch", (h,))
        h = self._compute(rank, cat, f"{g}.experts", experts, (h,))
        return self._coll(rank, A2A, routed, "ep", f"ep/{g}.combine", (h,))

    def _layer_backward(self, rank: int, h: int, layer: int) -> int:
        p, g = self.par, f"bwd/L{layer}"
        tp = p.tp > 1
        if p.recompute == "full":
            h = self._layer_forward(rank, h, "recompute", layer)
        if p.zero == 3 and p.dp > 1:  # the gathered layer: the whole buffer (see _zero3_gather)
            h = self._coll(rank, AG, self._layer_local(layer) * p.dtype_bytes, "dp",
                           f"dp/{g}.params", (h,))
        if tp and p.sp:
            h = self._coll(rank, AG, self.act_bytes, "tp", f"tp/{g}.ag2", (h,))
        moe = self.model.is_moe_layer(layer)
        if moe:
            h = self._block_backward(rank, h, g, "mlp", 2, self.bwd_mlp, None, moe=True)
        else:
            h = self._block_backward(rank, h, g, "mlp", 2, self.bwd_dense_mlp, self._split_mlp)
        if tp and p.sp:
            h = self._coll(rank, AG, self.act_bytes, "tp", f"tp/{g}.ag1", (h,))
        if p.recompute == "selective":
            h = self._compute(rank, "recompute", f"recompute/L{layer}.attn", self.attn_core,
                              (h,))
        h = self._compute(rank, "bwd", f"{g}.attn_out", self.bwd_attn_post, (h,))
        h = self._attention_core(rank, h, "bwd", g, self.bwd_attn_core, passes=2)
        h = self._block_backward(rank, h, g, "attn_in", 1, self.bwd_attn_pre,
                                 self._split_attn_pre)
        if p.zero == 3 and p.dp > 1:  # every micro-batch, DeepSpeed ZeRO-3 style
            self._grad_reduce(rank, RS, self._layer_local(layer) * p.grad_bytes,
                              f"dp/{g}.grads", h)
        return h

    def _block_backward(self, rank: int, h: int, g: str, part: str, index: int,
                        costs: list[OpCost], split: tuple | None, moe: bool = False) -> int:
        """A block's backward pass and the tensor-parallel reduction of its input gradient
        (reduce-scatter under sequence parallelism). With ``split``
        (:func:`split_column_backward`, ``tp_grad_overlap``) the all-reduce overlaps the
        weight gradients of the block's column-parallel linears: everything up to their input
        gradients, then the all-reduce on a communication stream while their weight-gradient
        GEMMs run, then the rest (the block's norm) once both are done (Megatron-LM
        ``ColumnParallelLinear`` backward: ``all_reduce(async_op=True)`` after the input
        gradient, the weight gradient, then the wait)."""
        p = self.par
        if split is not None:
            head, wgrad, tail = split
            h = self._compute(rank, "bwd", f"{g}.{part}", head, (h,))
            reduced = self._coll(rank, AR, self.act_bytes, "tp", f"tp/{g}.ar{index}", (h,))
            w = self._compute(rank, "bwd", f"{g}.{part}_wgrad", wgrad, (h,))
            return self._compute(rank, "bwd", f"{g}.{part}_rest", tail, (reduced, w))
        if moe:
            h = self._mlp(rank, h, "bwd", g, costs, True)
        else:
            h = self._compute(rank, "bwd", f"{g}.{part}", costs, (h,))
        if p.tp > 1:
            h = self._coll(rank, RS if p.sp else AR, self.act_bytes, "tp",
                           f"tp/{g}.{'rs' if p.sp else 'ar'}{index}", (h,))
        return h

    # ------------------------------------------------------------------ passes
    def _chunk_layers(self, g: int) -> range:
        start = g * self.layers_per_chunk
        return range(start, start + self.layers_per_chunk)

    def _neighbor(self, rank: int, g: int) -> tuple[int, int]:
        """(rank, local chunk) holding global chunk ``g``."""
        pp = self.par.pp
        return self.layout.stage_rank(rank, g % pp), g // pp

    def _pp_tag(self, micro: int, g: int, backward: bool) -> int:
        return (micro * self.par.pp * self.par.virtual_stages + g) * 2 + int(backward)

    def _pass(self, rank: int, stage: int, kind: str, local: int, micro: int, prev: int | None
              ) -> int:
        p = self.par
        chunks = p.pp * p.virtual_stages
        g = local * p.pp + stage
        deps = [] if prev is None else [prev]
        last_chunk, first_chunk = g == chunks - 1, g == 0
        if kind == "F":
            if not first_chunk:
                deps.append(self._pp_recv(rank, g - 1, micro, g, False, "F"))
            h = self.graph.compute(rank, name=f"fwd/m{micro}.g{g}.begin", duration_ns=0.0,
                                   deps=deps, category="fwd")
            if first_chunk:
                h = self._zero3_gather(rank, h, "embed", f"fwd/m{micro}")
                h = self._compute(rank, "fwd", f"fwd/m{micro}.embed",
                                  ops.embedding_forward(self.model, self.shard), (h,))
            for layer in self._chunk_layers(g):
                h = self._layer_forward(rank, h, "fwd", layer)
            if last_chunk:
                h = self._zero3_gather(rank, h, "head", f"fwd/m{micro}")
                h = self._compute(rank, "fwd", f"fwd/m{micro}.head",
                                  ops.lm_head_forward(self.model, self.shard)
                                  + ops.loss_forward(self.model, self.shard), (h,))
            self._compute_end = h
            if not last_chunk:
                h = self._pp_send(rank, h, g + 1, micro, g + 1, False, "F")
            return h
        if not last_chunk:
            deps.append(self._pp_recv(rank, g + 1, micro, g, True, "B"))
        h = self.graph.compute(rank, name=f"bwd/m{micro}.g{g}.begin", duration_ns=0.0,
                               deps=deps, category="bwd")
        final = micro == p.micro_batches - 1 and p.dp_overlap
        if last_chunk:
            h = self._zero3_gather(rank, h, "head", f"bwd/m{micro}")
            h = self._compute(rank, "bwd", f"bwd/m{micro}.head", ops.backward(
                ops.lm_head_forward(self.model, self.shard)
                + ops.loss_forward(self.model, self.shard)), (h,))
            self._zero3_reduce(rank, h, "head", f"bwd/m{micro}")
            if final and p.zero < 3:  # the LM head's gradients join the first bucket
                self._bucket_add(rank, self._edge_params("head")[1], h)
        for layer in reversed(self._chunk_layers(g)):
            h = self._layer_backward(rank, h, layer)
            if final and p.zero < 3:
                self._bucket_add(rank, self._layer_local(layer), h)
        if first_chunk:
            h = self._zero3_gather(rank, h, "embed", f"bwd/m{micro}")
            h = self._compute(rank, "bwd", f"bwd/m{micro}.embed",
                              ops.backward(ops.embedding_forward(self.model, self.shard)), (h,))
            self._zero3_reduce(rank, h, "embed", f"bwd/m{micro}")
            if final and p.zero < 3:
                self._bucket_add(rank, self._edge_params("embed")[1], h)
        self._compute_end = h
        if not first_chunk:
            h = self._pp_send(rank, h, g - 1, micro, g - 1, True, "B")
        if final and p.zero < 3:
            self._bucket_flush(rank, h)
        return h

    def _pp_bytes(self) -> float:
        """Bytes of one pipeline transfer: the activation, split ``tp`` ways with sequence
        parallelism or the scatter/gather optimisation."""
        p = self.par
        split = p.tp > 1 and (p.sp or p.pp_scatter_gather)
        return self.act_bytes / p.tp if split else self.act_bytes

    def _pp_recv(self, rank: int, peer_chunk: int, micro: int, g: int, backward: bool,
                 label: str) -> int:
        """Receive the activation (or its gradient) of global chunk ``g`` from the rank
        holding ``peer_chunk``; with scatter/gather (no sequence parallelism), all-gather the
        ``tp`` pieces over the tensor-parallel group. With ``pp_blocking`` the receive is
        posted when the rank's previous pass has computed, in the same blocking p2p call as
        that pass's send; otherwise it is posted from the start."""
        p = self.par
        src, _ = self._neighbor(rank, peer_chunk)
        name = f"pp/{label}.m{micro}.g{g}"
        # a blocking call batches this receive with the previous pass's send (Megatron's
        # send_forward_recv_backward and kin): posted when that pass's compute is done
        last = self._compute_end
        after = (last,) if p.pp_blocking and last is not None else ()
        h = self.graph.recv(rank, src, self._pp_bytes(), tag=self._pp_tag(micro, g, backward),
                            name=name, deps=after, category="pp")
        if p.pp_scatter_gather and p.tp > 1 and not p.sp:
            h = self._coll(rank, AG, self.act_bytes, "tp", f"{name}.gather", (h,))
        return h

    def _pp_send(self, rank: int, h: int, peer_chunk: int, micro: int, g: int, backward: bool,
                 label: str) -> int:
        """Send after node ``h`` to the rank holding ``peer_chunk``; returns the node the rank
        continues from: ``h``, or with ``pp_blocking`` a join that waits for the landing."""
        dst, _ = self._neighbor(rank, peer_chunk)
        name = f"pp/{label}.m{micro}.g{g}"
        send = self.graph.send(rank, dst, self._pp_bytes(), tag=self._pp_tag(micro, g, backward),
                               name=name, deps=(h,), category="pp")
        if not self.par.pp_blocking:
            return h
        return self.graph.compute(rank, name=f"{name}.sent", duration_ns=0.0, deps=(h, send),
                                  category="pp")

    # ------------------------------------------------------------------ data parallel
    def _edge_params(self, part: str) -> tuple[float, float]:
        """(gathered, reduced) parameters of the embedding (``part`` "embed") or the LM head
        ("head") on one GPU: the head of a tied single-stage model reuses the embedding matrix,
        so it is gathered again but its gradient is reduced with the embedding's."""
        p, m = self.par, self.model
        if part == "embed":
            own = m.embedding_params() / p.tp
            return own, own
        own = m.vocab * m.hidden / p.tp if (not m.tied_embeddings or p.pp > 1) else 0.0
        return m.vocab * m.hidden / p.tp, own

    def _zero3_gather(self, rank: int, h: int, part: str, g: str) -> int:
        """ZeRO-3: all-gather the embedding's or LM head's parameters before use. Sizes follow
        the des collective convention: ``nbytes`` is the whole gathered buffer, the ``tp``
        shard's parameters at ``dtype_bytes`` (each data-parallel rank holds 1/dp of it)."""
        p = self.par
        if p.zero != 3 or p.dp == 1:
            return h
        gathered, _ = self._edge_params(part)
        return self._coll(rank, AG, gathered * p.dtype_bytes, "dp", f"dp/{g}.{part}.params",
                          (h,))

    def _zero3_reduce(self, rank: int, h: int, part: str, g: str) -> None:
        """ZeRO-3: reduce-scatter the embedding's or LM head's gradients after their backward
        (the whole gradient buffer at ``grad_bytes``), every micro-batch as the layers' are."""
        p = self.par
        _, own = self._edge_params(part)
        if p.zero != 3 or p.dp == 1 or own <= 0:
            return
        self._grad_reduce(rank, RS, own * p.grad_bytes, f"dp/{g}.{part}.grads", h)

    def _bucket_add(self, rank: int, params: float, h: int) -> None:
        self._bucket += params
        if self._bucket * self.par.grad_bytes >= self.par.bucket_bytes:
            self._bucket_flush(rank, h)

    def _grad_reduce(self, rank: int, kind: CollectiveType, nbytes: float, name: str,
                     h: int) -> None:
        """A gradient reduction after node ``h``, issued after the previous one: every bucket
        goes through the data-parallel group's one communicator, whose collectives run in
        issue order on one stream (PyTorch DDP and Megatron-LM's overlapped reduction both
        launch them on the process group's NCCL stream), so buckets queue, never share links."""
        deps = (h, self._dp_grads[-1]) if self._dp_grads else (h,)
        self._dp_grads.append(self._coll(rank, kind, nbytes, "dp", name, deps))

    def _bucket_flush(self, rank: int, h: int) -> None:
        p = self.par
        if self._bucket <= 0 or p.dp == 1:
            self._bucket = 0.0
            return
        nbytes = self._bucket * p.grad_bytes
        kind = AR if p.zero == 0 else RS
        self._grad_reduce(rank, kind, nbytes, f"dp/grads{len(self._dp_grads)}", h)
        self._bucket = 0.0

    # ------------------------------------------------------------------ whole iteration
    def build(self) -> TrainingWorkload:
        """The graph of one iteration over every simulated rank."""
        p = self.par
        ranks = [r for r in range(p.world)
                 if self.fold is None or self.fold.is_representative(r)]
        for rank in ranks:
            stage = self.layout.coords(rank)["pp"]
            self._bucket, self._dp_grads = 0.0, []
            # context-parallel peers run the same passes in the same order, so a counter
            # restarted per rank gives both ends of every ring exchange the same tag
            self._tag = 0
            self._compute_end: int | None = None  # the last pass's compute, before its send
            prev = None
            for kind, local, micro in pipeline_schedule(p.schedule, p.pp, stage,
                                                        p.micro_batches, p.virtual_stages):
                prev = self._pass(rank, stage, kind, local, micro, prev)
            if not p.dp_overlap and p.zero < 3:
                prev = self._reduce_after_flush(rank, stage, prev)
            params = self._stage_params(stage)
            opt = self.graph.compute(
                rank, name="optimizer/step",
                kernels=kernels(ops.optimizer_step(params, zero_shard=p.dp if p.zero else 1,
                                                   grad_bytes=p.grad_bytes,
                                                   param_bytes=p.dtype_bytes,
                                                   impl=p.optimizer_impl)),
                deps=(prev, *self._dp_grads), category="optimizer")
            if p.zero in (1, 2) and p.dp > 1:
                self._coll(rank, AG, params * p.dtype_bytes, "dp", "dp/params", (opt,))
        workload = TrainingWorkload(self.graph, self.model, p, self.seq, ranks)
        workload.memory = {r: self.memory(self.layout.coords(r)["pp"]) for r in ranks}
        return workload

    def _reduce_after_flush(self, rank: int, stage: int, prev: int) -> int:
        """Megatron's local DDP: after the pipeline flush, one gradient reduction per model
        chunk (a flat buffer each), one after the other; the optimizer waits for the last."""
        p = self.par
        if p.dp == 1:
            return prev
        kind = AR if p.zero == 0 else RS
        for local in range(p.virtual_stages):
            params = self._chunk_params(local * p.pp + stage)
            prev = self._coll(rank, kind, params * p.grad_bytes, "dp", f"dp/grads.chunk{local}",
                              (prev,))
        return prev

    def _chunk_params(self, g: int) -> float:
        """Parameters of global model chunk ``g`` on one GPU: its layers, plus the embeddings
        in the first chunk and the LM head in the last."""
        p, m = self.par, self.model
        params = sum(self._layer_local(layer) for layer in self._chunk_layers(g))
        if g == 0:
            params += m.embedding_params() / p.tp
        if g == p.pp * p.virtual_stages - 1 and (not m.tied_embeddings or p.pp > 1):
            params += m.vocab * m.hidden / p.tp
        return params

    def _stage_params(self, stage: int) -> float:
        """Parameters a rank of ``stage`` holds: its model chunks."""
        p = self.par
        return sum(self._chunk_params(local * p.pp + stage) for local in range(p.virtual_stages))

    def memory(self, stage: int) -> MemoryBreakdown:
        """Peak memory of a rank of ``stage`` (Korthikanti et al. 2022; ZeRO); gradients held
        at ``grad_bytes``, the precision the data-parallel reductions send."""
        p = self.par
        weights, grads, optimizer = weights_and_optimizer(
            self._stage_params(stage), zero_stage=p.zero, dp=p.dp, dtype_bytes=p.dtype_bytes,
            grad_bytes=p.grad_bytes)
        def chunk(g: int) -> float:
            return sum(activations_per_layer(self.model, micro_batch=p.micro_batch,
                                             seq=self.seq // p.cp, tp=p.tp, sp=p.sp,
                                             recompute=p.recompute, flash=p.flash, layer=layer)
                       for layer in self._chunk_layers(g))
        # in-flight model chunks (micro-batches when not interleaved), each of
        # layers_per_chunk layers: the largest of this stage's chunks (they differ only when an
        # MoE model's leading dense layers fall in one)
        in_flight = in_flight_microbatches(p.schedule, p.pp, stage, p.micro_batches,
                                           p.virtual_stages)
        per_chunk = max(chunk(local * p.pp + stage) for local in range(p.virtual_stages))
        return MemoryBreakdown(weights, grads, optimizer, per_chunk * in_flight)


def build_training(model: ModelConfig, par: ParallelConfig, npus: int,
                   topology: Topology | None = None, symmetric: bool = True,
                   contention: bool = True) -> TrainingWorkload:
    """One training iteration of ``model`` under ``par`` on ``npus`` NPUs; with the
    ``topology`` (and ``symmetric``: no stragglers or timed faults), ``fold: auto`` folds what
    the topology proves symmetric (:func:`workloads.folding.choose_fold`): link by link for
    the contended engine, route parameters only when the graph is for the closed-form
    backend (``contention`` False; the contended engine would not take such a fold as
    exact)."""
    with cyclic_gc_paused():  # 10^5-10^6 long-lived nodes: nothing to collect meanwhile
        workload = TrainingBuilder(model, par, npus, topology, symmetric, contention).build()
        if contention and par.fold_request == "auto" and topology is not None \
                and not collectives_match(workload.graph, topology):
            # a collective the engine could not run for its representative alone: build the
            # graph unfolded rather than report an inexact fold
            workload = TrainingBuilder(model, replace(par, fold="none"), npus, topology,
                                       symmetric, contention).build()
        return workload


__all__ = ["TrainingBuilder", "TrainingWorkload", "build_training"]
