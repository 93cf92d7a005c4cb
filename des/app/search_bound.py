"""A closed-form lower bound of a training iteration's time, for every candidate at once: the
pre-screen that orders candidates before any event graph is built.

For a row (strategy) on a GPU and a topology, with ``m`` micro-batches per pipeline, ``v``
virtual stages and ``pp`` stages, the bound is the larger of two quantities, each a true lower
bound of the time the contended engine (and the analytical backend, for the first) gives:

**The pipeline's critical chain.** Every pass of a rank depends on the one before it
(:func:`workloads.parallel.pipeline_schedule` order), and inside a pass every compute node waits
for the tensor-parallel (and expert all-to-all) collective before it. So the last stage's
``m (F + B)`` of work is one chain, which cannot start before micro-batch 0 has crossed the
``pp - 1`` earlier model chunks and which is followed by the last micro-batch's gradient crossing
them back: ``T >= (pp - 1)/v F + m (F + B) + (pp - 1)/v B`` (the classic pipeline bubble,
Narayanan et al. 2021, eq. for 1F1B/interleaved). ``F`` and ``B`` are one stage's layers for one
micro-batch: the compute nodes' roofline times *with* their launch overheads, exactly as the
runtime times each kernel (:func:`des.core.hardware.compute_time_ns`, summed per kernel as
:func:`des.sim.choices` does), from the workload builder's own per-layer kernel lists, plus the
tensor-parallel collectives' bandwidth floor: an all-reduce of ``S`` bytes over ``t`` ranks
makes every rank send at least ``2 (t - 1)/t S`` bytes, a reduce-scatter or all-gather
``(t - 1)/t S`` (Patarasuk & Yuan 2009, the bandwidth lower bound), which takes at least that
over the rank's total injection bandwidth (the sum of its out-links); with ZeRO-3 the layer's
parameter all-gather before each forward and backward pass is on the chain too (Rajbhandari
et al. 2020). Embedding, LM head,
optimizer and data-parallel work are left out, which only lowers the bound. Context-parallel
ring attention computes the same kernels in ``cp`` blocks (each with its own launch), so the
unsplit core is a lower bound of it.

**The rank's traffic.** Everything a rank sends in the iteration (tensor, data, expert and
pipeline traffic at their bandwidth floors) must leave through its out-links:
``T >= bytes / injection``. This one holds for the contended engine only: the analytical
backend lets concurrent collectives each use the full link (it is a lower bound of the
contended time, not of the analytical one), which is why the search keys each candidate by the
*larger* of its bounds.

Per-layer costs are worked out once per distinct (tp, sp, cp, micro-batch, ep) shape with the
workload builder's own cost preparation, then broadcast over the rows with numpy.
"""

from __future__ import annotations

import numpy as np

from des.app.search_space import Candidates, distinct_rows, stage_params
from des.core.hardware import GpuSpec, compute_time_ns
from topologies.base import Topology
from workloads.models import ModelConfig
from workloads.parallel import RECOMPUTE, ParallelConfig


def injection_bandwidth(topology: Topology) -> float:
    """The largest total out-link bandwidth of any NPU, bytes/ns (a rank cannot send faster;
    the largest keeps the bound valid for every rank)."""
    out = np.zeros(topology.num_npus)
    for spec in topology.links:
        if spec.up and spec.src < topology.num_npus:
            out[spec.src] += spec.effective_bandwidth
    return float(out.max()) if len(out) else float("inf")


def _node_ns(hardware: GpuSpec, costs: list) -> float:
    """Time of a compute node's kernels, each a roofline plus its launch (the runtime's rule)."""
    return sum(compute_time_ns(hardware, c.flops, c.bytes, c.op_class) for c in costs)


def _layer_costs(model: ModelConfig, hardware: GpuSpec, seq: int, tp: int, sp: bool, cp: int,
                 micro_batch: int, ep: int, dtype_bytes: int, flash: bool
                 ) -> tuple[float, ...]:
    """(forward compute, backward compute, attention core, activation bytes, routed bytes,
    LM head + loss forward, its backward, embedding forward, its backward) of one layer (or
    head, embedding) and micro-batch on one GPU, ns and bytes, from the builder's own kernel
    lists."""
    from workloads import ops
    from workloads.llm import TrainingBuilder  # the LLM builder: only for LLM searches

    par = ParallelConfig(dp=ep, tp=tp, cp=cp, ep=ep, sp=sp, micro_batch=micro_batch,
                         global_batch=micro_batch * ep, seq=seq, dtype_bytes=dtype_bytes,
                         flash=flash, fold="none")
    b = TrainingBuilder(model, par, par.world)  # costs only: the graph is never built
    core = _node_ns(hardware, b.attn_core)
    fwd = _node_ns(hardware, b.attn_pre) + core + _node_ns(hardware, b.attn_post) \
        + _node_ns(hardware, b.mlp)
    bwd = (_node_ns(hardware, b.bwd_mlp) + _node_ns(hardware, b.bwd_attn_post)
           + _node_ns(hardware, b.bwd_attn_core) + _node_ns(hardware, b.bwd_attn_pre))
    act = float(b.tokens * model.hidden * dtype_bytes)
    routed = b.tokens * model.top_k * model.hidden * dtype_bytes / (tp if sp else 1) \
        if model.experts and ep > 1 else 0.0
    head = ops.lm_head_forward(model, b.shard) + ops.loss_forward(model, b.shard)
    embed = ops.embedding_forward(model, b.shard)
    return (fwd, bwd, core, act, routed, _node_ns(hardware, head),
            _node_ns(hardware, ops.backward(head)), _node_ns(hardware, embed),
            _node_ns(hardware, ops.backward(embed)))


def _optimizer_ns(hardware: GpuSpec, params: np.ndarray) -> np.ndarray:
    """The optimizer step's time over ``params`` local parameters (after ZeRO sharding):
    each kernel's roofline is linear in the parameters, plus one launch per kernel."""
    from workloads import ops

    fixed = _node_ns(hardware, ops.optimizer_step(0.0))
    slope = (_node_ns(hardware, ops.optimizer_step(1e12)) - fixed) / 1e12
    return fixed + slope * params


def lower_bound(c: Candidates, model: ModelConfig, hardware: GpuSpec, injection: float,
                seq: int, global_batch: int, *, dtype_bytes: int = 2, grad_bytes: int = 4,
                flash: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """``(chain_ns, bound_ns)`` per row: the critical-chain bound (also a lower bound of the
    analytical backend) and the larger of it and the traffic bound (a lower bound of the
    contended engine). Rows must pass :func:`~des.app.search_space.divisibility`."""
    x = c.cols
    distinct, inverse = distinct_rows(x["tp"], x["sp"], x["cp"], x["micro_batch"], x["ep"])
    table = np.array([_layer_costs(model, hardware, seq, int(t), bool(s), int(cp), int(b),
                                   int(e), dtype_bytes, flash)
                      for t, s, cp, b, e in distinct]).reshape(-1, 9)
    fwd, bwd, core, act, routed, head_f, head_b, emb_f, emb_b = (
        table[inverse, k] for k in range(9))
    tp = x["tp"].astype(float)
    ep = x["ep"].astype(float)
    sp = x["sp"].astype(bool)
    rc = x["recompute"]
    # tensor-parallel floor per layer and pass: 2 all-reduces, or 2 all-gathers + 2
    # reduce-scatters with sequence parallelism -- 4 (t - 1)/t S bytes either way
    tp_bytes = np.where(tp > 1, 4 * (tp - 1) / tp * act, 0.0)
    ep_bytes = np.where(ep > 1, 2 * (ep - 1) / ep * routed, 0.0)
    dp = np.maximum(x["dp"], 1).astype(float)
    zero = x["zero"]
    layer = float(model.layer_params())
    if model.experts:  # the layer's parameters on one GPU (TrainingBuilder._prepare_costs)
        dense = layer - model.experts * model.expert_params()
        local = dense / tp + model.experts / ep * model.expert_params() / tp
    else:
        local = layer / tp
    dp_share = (dp - 1) / dp
    # ZeRO-3 gathers each layer's parameters before its forward and its backward pass, on the
    # pass's chain, and reduce-scatters its gradients after the backward
    zero3 = (zero == 3) & (dp > 1)
    gather = np.where(zero3, dp_share * local * dtype_bytes, 0.0)
    scatter = np.where(zero3, dp_share * local * grad_bytes, 0.0)
    comm_f = (tp_bytes + ep_bytes + gather) / injection
    full = rc == RECOMPUTE.index("full")
    layer_f = fwd + comm_f
    layer_b = bwd + comm_f + np.where(full, layer_f, 0.0) + np.where(
        rc == RECOMPUTE.index("selective"), core, 0.0)
    pp = x["pp"].astype(float)
    v = x["virtual_stages"].astype(float)
    stage_layers = model.layers / pp
    m = global_batch // np.maximum(x["micro_batch"] * np.maximum(x["dp"], 1), 1)
    f_stage, b_stage = stage_layers * layer_f, stage_layers * layer_b
    chain = (pp - 1) / v * f_stage + m * (f_stage + b_stage) + (pp - 1) / v * b_stage
    # the last stage computes the LM head and loss for every micro-batch; the first stage's
    # embedding opens the fill and closes the drain (every micro-batch when pp = 1); then
    # the first stage's optimizer step, and with ZeRO 1-2 its parameter all-gather
    one = pp == 1
    chain = chain + m * (head_f + head_b) + np.where(one, m * (emb_f + emb_b), emb_f + emb_b)
    first_params = stage_params(c, model)[0]
    chain = chain + _optimizer_ns(hardware, first_params / np.where(zero > 0, dp, 1.0))
    chain = chain + np.where((dp > 1) & ((zero == 1) | (zero == 2)),
                             dp_share * first_params * dtype_bytes / injection, 0.0)
    # traffic: TP/EP (and ZeRO-3 gathers) per layer and pass (forward, backward, recomputed
    # forward), ZeRO-3 scatters per layer and backward
    passes = 2 + full
    sent = m * stage_layers * (passes * (tp_bytes + ep_bytes + gather) + scatter)
    params = model.layers / pp * local  # the stage's layers (embeddings left out: a bound)
    grads = np.where(zero == 0, 2 * dp_share * params * grad_bytes,
                     dp_share * params * grad_bytes + dp_share * params * dtype_bytes)
    sent = sent + np.where((dp > 1) & (zero < 3), grads, 0.0)
    pp_sends = np.where(pp > 1, m * v * act / np.where(sp, tp, 1.0), 0.0)
    cp = x["cp"].astype(float)
    kv = 2 * act / model.hidden * model.kv_heads * model.head_dim / tp  # K and V block
    ring = np.where(cp > 1, m * stage_layers * (cp - 1) * kv * (3 + full), 0.0)
    # every stage sends at least m v pipeline transfers (forward or backward, per chunk)
    traffic = (sent + pp_sends + ring) / injection
    return chain, np.maximum(chain, traffic)
