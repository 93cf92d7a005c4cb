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

**The data-parallel tail.** Gradients are reduced in buckets issued during each model chunk's
last backward pass (or, without ``dp_overlap``, after the pipeline flush), one after another on
the data-parallel stream, and the optimizer step waits for all of them; with ZeRO 1-2 the
updated parameters are then all-gathered (:class:`workloads.llm.TrainingBuilder`). So a rank of
stage ``s`` cannot finish before the passes its schedule runs ahead of its first such
backward (:func:`workloads.parallel.pipeline_schedule`; plus the ``s`` chunks micro-batch 0
crosses before reaching it), then the reductions' floor, the optimizer and the all-gather's
floor. Each floor is the larger of a rank's bytes over its injection bandwidth and a **node
cut**: on fabrics with nodes (the first logical dimension, e.g. a SuperPOD's NVSwitch domain)
everything the node's ranks send to other nodes crosses the links that leave it, whatever the
routes. Of a reduce-scatter over ``n`` members, ``n_in`` of them in the node, at least
``(n - n_in)/n`` of the buffer leaves it (the elements other nodes own need the node's
contributions) and of an all-gather as much enters it; an all-reduce sends and receives the
whole buffer (every element's sum depends on both sides). Without contention these are
lower bounds of each collective's closed-form time as well.

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

import math
from dataclasses import dataclass
from functools import cache

import numpy as np

from des.app.search_space import Candidates, distinct_rows, stage_params
from des.core.fold import axis_strides
from des.core.hardware import GpuSpec, compute_time_ns
from topologies.base import Topology
from workloads.models import ModelConfig
from workloads.parallel import RECOMPUTE, SCHEDULES, ParallelConfig, pipeline_schedule


@dataclass(frozen=True)
class NodeCut:
    """The links that leave one node: ``block`` consecutive NPUs (the fabric's first logical
    dimension) with the switches that serve only them; ``out_bw`` and ``in_bw`` the largest
    total bandwidth leaving and entering any node, bytes/ns."""

    block: int
    out_bw: float
    in_bw: float


def node_cut(topology: Topology) -> NodeCut | None:
    """The node cut of ``topology``, or None when it has no nodes (fewer than two logical
    dimensions, or a first dimension of one NPU) or when NPUs are wired to each other (rings,
    tori, fully connected dimensions): there the closed-form backend lets a rank's successive
    messages overlap on one link, so a cut could exceed its time (the bound must stay below
    both backends), and the search falls back to the per-GPU injection bound."""
    dims = topology.info.dims
    n = topology.num_npus
    if not dims or len(dims) < 2 or dims[0] < 2 or n % dims[0] or n == dims[0]:
        return None
    links = [lk for lk in topology.links if lk.up]
    if any(lk.src < n and lk.dst < n for lk in links):
        return None
    block = int(dims[0])
    node_of = {npu: npu // block for npu in range(n)}
    neighbours: dict[int, set[int]] = {}
    for lk in links:
        if lk.src >= n:
            neighbours.setdefault(lk.src, set()).add(lk.dst)
        if lk.dst >= n:
            neighbours.setdefault(lk.dst, set()).add(lk.src)
    for switch, near in neighbours.items():  # a switch serving one node's NPUs only
        owners = {node_of.get(x) for x in near}
        if len(owners) == 1 and None not in owners:
            node_of[switch] = owners.pop()
    out = np.zeros(n // block)
    into = np.zeros(n // block)
    for lk in links:
        a, b = node_of.get(lk.src), node_of.get(lk.dst)
        if a != b:
            if a is not None:
                out[a] += lk.effective_bandwidth
            if b is not None:
                into[b] += lk.effective_bandwidth
    return NodeCut(block, float(out.max()), float(into.max()))


def _crossing(order: str, sizes: dict[str, int], axis: str, block: int
              ) -> tuple[float, int, bool]:
    """For node 0 (ranks ``0..block-1``) and the groups along ``axis`` of its ranks:
    ``(sum over the groups of (n - n_in)/n, groups that leave the node, whether the node holds
    one pipeline stage only)``, with ``n`` a group's size and ``n_in`` its members in the
    node."""
    strides = axis_strides(sizes, [a.strip() for a in order.split(",")])
    s, n = strides[axis], sizes[axis]
    bases: dict[int, int] = {}
    for rank in range(min(block, math.prod(sizes.values()))):
        coord = (rank // s) % n
        base = rank - coord * s
        if base not in bases:
            bases[base] = sum(1 for j in range(n) if base + j * s < block)
    share = sum((n - inside) / n for inside in bases.values())
    leaving = sum(1 for inside in bases.values() if inside < n)
    one_stage = strides["pp"] >= block or sizes["pp"] == 1
    return share, leaving, one_stage


@cache
def _ahead(schedule: str, pp: int, micro_batches: int, virtual: int
           ) -> tuple[tuple[int, int], ...]:
    """Per stage, ``(forward chunks, backward chunks)`` a rank must have run before the first
    backward pass of a last micro-batch (where gradient buckets start), counting the ``stage``
    chunk forwards micro-batch 0 crosses before it reaches the stage."""
    out = []
    for stage in range(pp):
        passes = pipeline_schedule(schedule, pp, stage, micro_batches, virtual)
        first = next(i for i, (kind, _, micro) in enumerate(passes)
                     if kind == "B" and micro == micro_batches - 1)
        forwards = sum(1 for kind, _, _ in passes[:first] if kind == "F")
        out.append((stage + forwards, first - forwards))
    return tuple(out)


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
                flash: bool = True, cut: NodeCut | None = None, dp_overlap: bool = True,
                tp_grad_overlap: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``(chain_ns, bound_ns)`` per row: the larger of the critical-chain and data-parallel
    tail bounds (also a lower bound of the analytical backend) and the larger of it and the
    traffic bound (a lower bound of the contended engine). ``cut``: the fabric's node cut
    (:func:`node_cut`); ``dp_overlap``: gradients reduced in buckets during the last
    backward passes, as the workload builder's default; ``tp_grad_overlap``: without sequence
    parallelism the backward all-reduces overlap weight gradients, so they leave the chain.
    Rows must pass
    :func:`~des.app.search_space.divisibility`."""
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
    comm_b = np.where(tp_grad_overlap & ~sp, (ep_bytes + gather) / injection, comm_f)
    layer_b = bwd + comm_b + np.where(full, layer_f, 0.0) + np.where(
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
    bwd_end = chain
    first_params = stage_params(c, model)[0]
    zero12 = (dp > 1) & ((zero == 1) | (zero == 2))
    chain = bwd_end + _optimizer_ns(hardware, first_params / np.where(zero > 0, dp, 1.0))
    chain = chain + np.where(zero12, dp_share * first_params * dtype_bytes / injection, 0.0)
    if not model.experts:
        chain = np.maximum(chain, _dp_tail(
            c, hardware, injection, cut, dp_overlap, global_batch,
            stage_layers * layer_f / v, stage_layers * layer_b / v, bwd_end,
            model.layers / pp * local, dtype_bytes, grad_bytes))
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


def _dp_tail(c: Candidates, hardware: GpuSpec, injection: float,
             cut: NodeCut | None, dp_overlap: bool, global_batch: int, f_chunk: np.ndarray,
             b_chunk: np.ndarray, bwd_end: np.ndarray, params: np.ndarray, dtype_bytes: int,
             grad_bytes: int) -> np.ndarray:
    """The data-parallel tail bound of dense models (module doc), ns per row; 0 where there
    is no data-parallel reduction before the optimizer (dp 1, ZeRO-3). ``f_chunk``/``b_chunk``:
    one model chunk's forward and backward pass; ``params``: the fewest parameters a stage
    holds on one GPU (its layers)."""
    x = c.cols
    dp, v, zero = (x[k].astype(float) for k in ("dp", "virtual_stages", "zero"))
    zero12 = (zero == 1) | (zero == 2)
    applies = (dp > 1) & (zero < 3)
    share = (dp - 1) / dp
    grads, weights = params * grad_bytes, params * dtype_bytes
    reduce_rank = np.where(zero == 0, 2 * share, share) * grads / injection
    gather_rank = np.where(zero12, share * weights / injection, 0.0)
    optimizer = _optimizer_ns(hardware, params / np.where(zero > 0, dp, 1.0))
    m = global_batch // np.maximum(x["micro_batch"] * x["dp"], 1)
    start_rank = np.array(bwd_end, dtype=float)  # without overlap: after the flush
    start_cut = np.array(bwd_end, dtype=float)
    reduce_cut = np.zeros(len(c))
    gather_cut = np.zeros(len(c))
    one_stage = np.ones(len(c), dtype=bool)
    if cut is not None:
        combos, inverse = distinct_rows(x["order"], x["tp"], x["cp"], x["pp"], x["dp"])
        crossing = [_crossing(c.orders[int(o)], {"tp": int(t), "cp": int(k), "ep": 1,
                                                 "pp": int(p), "dp": int(d)}, "dp", cut.block)
                    for o, t, k, p, d in combos]
        rs_share = np.array([s for s, _, _ in crossing])[inverse]
        ar_groups = np.array([g for _, g, _ in crossing], dtype=float)[inverse]
        one_stage = np.array([o for _, _, o in crossing], dtype=bool)[inverse]
        reduce_cut = np.where(zero == 0, ar_groups * grads / min(cut.out_bw, cut.in_bw),
                              rs_share * grads / cut.out_bw)
        gather_cut = np.where(zero12, rs_share * weights / cut.in_bw, 0.0)
    if dp_overlap:
        combos, inverse = distinct_rows(x["schedule"], x["pp"], m, x["virtual_stages"])
        for i, (sched, stages, micro, virtual) in enumerate(combos):
            rows = np.flatnonzero(inverse == i)
            ahead = np.array(_ahead(SCHEDULES[int(sched)], int(stages), int(micro),
                                    int(virtual)), dtype=float)
            per_stage = (np.outer(f_chunk[rows], ahead[:, 0])
                         + np.outer(b_chunk[rows], ahead[:, 1]))
            start_rank[rows] = per_stage.max(axis=1)
            start_cut[rows] = np.where(one_stage[rows], per_stage[:, 0], per_stage.min(axis=1))
    elif cut is not None:  # a node holding several stages: the earliest flush is stage 0's
        start_cut = np.where(one_stage, bwd_end, m * v * (f_chunk + b_chunk))
    tail = np.maximum(start_rank + reduce_rank + optimizer + gather_rank,
                      start_cut + np.maximum(reduce_cut + gather_rank,
                                             reduce_rank + gather_cut) + optimizer)
    # a node of stage 0 alone: none of its ranks starts the all-gather before the pipeline's
    # critical chain has drained into it and its optimizer has run
    tail = np.maximum(tail, np.where(one_stage, bwd_end + optimizer + gather_cut, 0.0))
    return np.where(applies, tail, 0.0)
