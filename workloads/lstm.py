"""LSTM language-model training as an event graph: DeepFlow's LSTM mode, one iteration.

The model (Ardalani et al., "DeepFlow: A Cross-Stack Pathfinding Framework for Distributed AI
Systems", and its ``perf.py``/``simulate.py``): an embedding, ``layers`` LSTM layers of
``hidden`` units with four gates, unrolled ``seq`` time steps, and an output projection with a
softmax over the ``vocab`` words; ``batch`` sequences per iteration (split over the data-parallel
replicas). Per layer and time step the cell's one GEMM is ``[b, 2h] x [2h, 4h]`` (the input and
recurrent weights stacked, the four gates side by side; DeepFlow ``getCf(m=B, k=2D, n=G*D)``)
followed by the gates' element-wise math. The backward pass through time (BPTT) has two GEMMs
of the same size per cell (the gradient with respect to the activations and to the weights,
DeepFlow ``getCb``), so a cell's backward does twice its forward's GEMM FLOPs.

Dependencies: step ``t`` of a layer waits for step ``t-1`` of the same layer (the recurrence)
and for step ``t`` of the layer below; so the ``(layer, step)`` grid runs as a wavefront, and
with layers on different pipeline stages, stage ``s`` works on step ``t`` while stage ``s+1``
works on step ``t-1`` (DeepFlow ``simulate.Graph``: intra-layer and cross-layer edges). The
backward runs the same grid in reverse (step ``t`` waits for ``t+1`` of its layer and for
``t`` of the layer above). Our choice (not DeepFlow's, which runs the embedding and the
softmax per step on devices of their own): as in PyTorch's ``word_language_model`` example,
the embedding looks up the whole ``[seq, b]`` input at once and the output projection and
softmax run once over the whole ``[seq x b, h]`` output of the top layer; FLOPs are the same.

Parallelism (DeepFlow's data, layer and kernel parallelism), ranks laid out ``tp`` fastest,
then ``pp``, then ``dp`` (the Megatron-LM default order):

* data (``dp``): each replica runs ``batch / dp`` sequences; after its last backward step each
  layer's gradients, and the embedding's and projection's, are all-reduced over the replicas
  (DeepFlow ``Reduce_H``/``Reduce_Embedding``/``Reduce_Softmax``, one all-reduce per weight
  matrix, issued as soon as its backward finishes), sized as the whole gradient buffer;
* layer (``pp``): ``layers / pp`` consecutive layers per stage; the top layer's ``h_t`` goes
  to the next stage by send/recv every step (DeepFlow ``getInterLayerCommLatency(B, D)``) and
  its gradient comes back every backward step; the embedding is on the first stage and the
  projection on the last (Megatron-LM's placement);
* kernel (``tp``): the ``4h`` gate columns are split so each rank owns all four gates of
  ``h / tp`` hidden units (DeepFlow's row-column ``kp2`` split of ``n = G*D``, aligned to whole
  hidden units so the gate math stays local). Each rank needs the whole ``[x_t, h_{t-1}]`` for
  its next GEMM, so every forward step ends with an all-gather of ``h_t`` over the tp group,
  and every backward step with an all-reduce of the ``[b, 2h]`` input gradient, which is a
  partial sum over the gate columns (Megatron-LM's column-parallel linear layer, Shoeybi et al.
  2019, Sec. 3). The projection is split over the vocabulary and the embedding table over its
  rows (Megatron-LM's vocabulary-parallel layers): an all-reduce of the looked-up ``[seq, b,
  h]`` after the embedding, one of the softmax's per-row max, sum and target logit (three
  ``[seq, b]`` fp32 reductions, fused here into one), and one of the ``[seq x b, h]`` input
  gradient of the projection.

Then every rank applies its gradients: DeepFlow ``applyGrad`` (3 FLOPs and 4 element accesses
per parameter) and ``gradClipping`` (4 FLOPs, 3 accesses); the global norm's reduction across
ranks is not modelled (DeepFlow does not either).

Element-wise costs follow DeepFlow's ``perf.py``: cell forward 5 FLOPs and 13 element accesses
per gate element, cell backward 5 FLOPs and 13 accesses per hidden element, softmax forward
3 FLOPs and 7 accesses per logit, softmax backward 5 FLOPs and 11 accesses, embedding 2
accesses per looked-up element each way. Every element is ``dtype_bytes`` bytes; gradients and
transfers too (DeepFlow uses one ``precision`` throughout).

Node categories: ``fwd``, ``bwd``, ``optimizer`` (compute); ``tp``, ``pp``, ``dp``
(communication).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from des.core.graph import CollectiveType, EventGraph
from des.core.hardware import DEFAULT_DTYPE, DTYPES
from des.core.schema import check, positive_int
from workloads.op_cost import OpCost, kernels
from workloads.parallel import ParallelError

__all__ = ["DTYPE_BYTES", "GATES", "LstmConfig", "LstmWorkload", "build_lstm", "cell_backward",
           "cell_forward", "embedding", "nodes_per_rank", "optimizer_step",
           "projection_backward", "projection_forward"]

#: Gates of an LSTM cell (input, forget, cell candidate, output): DeepFlow ``num_gates``.
GATES = 4

#: Bytes per element of each dtype the workload takes (IEEE 754 / OCP FP8 widths).
DTYPE_BYTES: dict[str, int] = {"fp64": 8, "fp32": 4, "tf32": 4, "bf16": 2, "fp16": 2, "fp8": 1}
assert set(DTYPE_BYTES) == set(DTYPES)

AR, AG = CollectiveType.ALL_REDUCE, CollectiveType.ALL_GATHER
#: Bytes of one fp32 value: the softmax statistics are reduced in fp32 (Megatron-LM).
FP32 = 4


@dataclass(frozen=True)
class LstmConfig:
    """An LSTM language model and how it is trained.

    ``batch`` sequences of ``seq`` tokens per iteration (the global batch, split over ``dp``),
    ``layers`` LSTM layers of ``hidden`` units, a ``vocab``-word embedding and softmax,
    elements of ``dtype``; ``dp`` data-parallel replicas, ``pp`` pipeline stages (layer
    parallelism), ``tp`` ranks sharing each layer's gate columns (kernel parallelism).
    """

    layers: int
    hidden: int
    seq: int
    batch: int
    vocab: int
    dtype: str = DEFAULT_DTYPE
    dp: int = 1
    pp: int = 1
    tp: int = 1

    def __post_init__(self) -> None:
        for key in ("layers", "hidden", "seq", "batch", "vocab", "dp", "pp", "tp"):
            where = f"parallel.{key}" if key in ("dp", "pp", "tp") else key
            check(positive_int, getattr(self, key), where, ParallelError)
        if self.dtype not in DTYPE_BYTES:
            raise ParallelError(f"dtype: unknown {self.dtype!r}; expected one of "
                                f"{', '.join(DTYPE_BYTES)}")
        for axis, dim, why in (
                ("pp", "layers", "each stage holds layers / pp whole layers"),
                ("tp", "hidden", "each rank holds the four gates of hidden / tp units"),
                ("tp", "vocab", "the embedding and projection are split by vocabulary"),
                ("dp", "batch", "each replica runs batch / dp sequences")):
            split, size = getattr(self, axis), getattr(self, dim)
            if size % split:
                raise ParallelError(
                    f"parallel.{axis}: {split} does not divide {dim} = {size} ({why}); "
                    f"expected one of {_divisors(size)}")

    @property
    def dtype_bytes(self) -> int:
        """Bytes per element."""
        return DTYPE_BYTES[self.dtype]

    @property
    def world(self) -> int:
        """GPUs the strategy needs: ``dp x pp x tp``."""
        return self.dp * self.pp * self.tp

    @property
    def local_batch(self) -> int:
        """Sequences per data-parallel replica."""
        return self.batch // self.dp

    @property
    def layers_per_stage(self) -> int:
        """LSTM layers on each pipeline stage."""
        return self.layers // self.pp

    @property
    def tokens(self) -> int:
        """Tokens per iteration: ``batch x seq``."""
        return self.batch * self.seq

    def layer_params(self) -> int:
        """Weights of one LSTM layer: ``(2h + 1) x 4h`` (input and recurrent weights and a
        bias per gate unit; DeepFlow ``tot_param``)."""
        return (2 * self.hidden + 1) * GATES * self.hidden

    def embedding_params(self) -> int:
        """Embedding table: ``vocab x h``."""
        return self.vocab * self.hidden

    def projection_params(self) -> int:
        """Output projection with bias: ``(h + 1) x vocab`` (DeepFlow ``tot_param``)."""
        return (self.hidden + 1) * self.vocab

    def params(self) -> int:
        """All weights: embedding, LSTM layers and projection."""
        return (self.embedding_params() + self.layers * self.layer_params()
                + self.projection_params())

    def gemm_flops(self) -> float:
        """GEMM FLOPs of one iteration: ``3 x 2 b (2h)(4h) seq layers`` for the cells (forward
        and the two backward GEMMs) plus ``3 x 2 b seq h vocab`` for the projection."""
        b, h, t = self.batch, self.hidden, self.seq
        return 3 * 2.0 * b * (2 * h) * (GATES * h) * t * self.layers + 3 * 2.0 * b * t * h * \
            self.vocab


def _divisors(n: int, shown: int = 12) -> str:
    """The divisors of ``n``, the first ``shown`` of them, for an error message."""
    found = [d for d in range(1, min(n, 1 << 20) + 1) if n % d == 0]
    return ", ".join(map(str, found[:shown])) + (", ..." if len(found) > shown else "")


# ---------------------------------------------------------------------- op costs (one GPU)
def _gemm(name: str, m: float, k: float, n: float, e: int, accumulate: bool = False
          ) -> OpCost:
    """``[m, k] x [k, n]``: ``2 m k n`` FLOPs; A and B read, C written (and read too when it
    accumulates, as cuBLAS does with beta = 1)."""
    c = m * n * e * (2 if accumulate else 1)
    return OpCost(name, "gemm", 2.0 * m * k * n, e * (m * k + k * n) + c)


def cell_forward(b: int, h: int, tp: int, e: int) -> list[OpCost]:
    """One rank's forward of one cell and step: the gate GEMM ``[b, 2h] x [2h, 4h/tp]`` and
    the gate math (DeepFlow ``getCf``: 5 FLOPs and 13 element accesses per gate element)."""
    cols = GATES * h / tp
    return [_gemm("cell.gates", b, 2 * h, cols, e),
            OpCost("cell.pointwise", "elementwise", 5.0 * b * cols, 13.0 * e * b * cols)]


def cell_backward(b: int, h: int, tp: int, e: int) -> list[OpCost]:
    """One rank's backward of one cell and step (DeepFlow ``getCb``): the gate math (5 FLOPs
    and 13 accesses per hidden element), the input gradient ``[b, 4h/tp] x [4h/tp, 2h]`` and
    the weight gradient ``[2h, b] x [b, 4h/tp]``, accumulated over the steps."""
    cols = GATES * h / tp
    return [OpCost("cell.pointwise_bwd", "elementwise", 5.0 * b * h / tp,
                   13.0 * e * b * h / tp),
            _gemm("cell.grad_input", b, cols, 2 * h, e),
            _gemm("cell.grad_weight", 2 * h, b, cols, e, accumulate=True)]


def embedding(tokens: int, h: int, e: int, backward: bool = False) -> OpCost:
    """Looking up (or scattering the gradients of) ``tokens`` rows of ``h`` elements: a read
    and a write of each (DeepFlow ``getEmbedding_f``/``getEmbedding_b``)."""
    return OpCost("embedding" + ("_bwd" if backward else ""), "elementwise", 0.0,
                  2.0 * e * tokens * h)


def projection_forward(tokens: int, h: int, vocab: int, tp: int, e: int) -> list[OpCost]:
    """The projection ``[tokens, h] x [h, vocab/tp]`` and the softmax (DeepFlow
    ``getSoftmax_f``: 3 FLOPs and 7 element accesses per logit)."""
    v = vocab / tp
    return [_gemm("projection", tokens, h, v, e),
            OpCost("softmax", "elementwise", 3.0 * tokens * v, 7.0 * e * tokens * v)]


def projection_backward(tokens: int, h: int, vocab: int, tp: int, e: int) -> list[OpCost]:
    """The softmax's gradient (DeepFlow ``getSoftmax_b``: 5 FLOPs, 11 accesses per logit), the
    input gradient ``[tokens, vocab/tp] x [vocab/tp, h]`` and the weight gradient
    ``[h, tokens] x [tokens, vocab/tp]``."""
    v = vocab / tp
    return [OpCost("softmax_bwd", "elementwise", 5.0 * tokens * v, 11.0 * e * tokens * v),
            _gemm("projection.grad_input", tokens, v, h, e),
            _gemm("projection.grad_weight", h, tokens, v, e)]


def optimizer_step(params: float, e: int) -> list[OpCost]:
    """Applying ``params`` gradients: DeepFlow ``gradClipping`` (4 FLOPs, 3 accesses each) and
    ``applyGrad`` (3 FLOPs, 4 accesses each)."""
    return [OpCost("grad_clip", "elementwise", 4.0 * params, 3.0 * e * params),
            OpCost("apply_grad", "elementwise", 3.0 * params, 4.0 * e * params)]


# ---------------------------------------------------------------------- the graph
@dataclass
class LstmWorkload:
    """The graph of one LSTM training iteration and what its report needs."""

    graph: EventGraph
    config: LstmConfig
    dp_bytes: dict[int, list[float]] = field(default_factory=dict)  # rank -> all-reduce sizes

    @property
    def simulated_ranks(self) -> list[int]:
        """Every rank (nothing is folded)."""
        return list(range(self.config.world))


class _Builder:
    """Adds one rank's nodes; shared sizes computed once."""

    def __init__(self, cfg: LstmConfig, graph: EventGraph) -> None:
        self.cfg, self.graph = cfg, graph
        e, b, h, tp, t = cfg.dtype_bytes, cfg.local_batch, cfg.hidden, cfg.tp, cfg.seq
        self.cell_f = kernels(cell_forward(b, h, tp, e))
        self.cell_b = kernels(cell_backward(b, h, tp, e))
        self.emb_f = kernels([embedding(t * b, h, e)])
        self.emb_b = kernels([embedding(t * b, h, e, backward=True)])
        self.proj_f = kernels(projection_forward(t * b, h, cfg.vocab, tp, e))
        self.proj_b = kernels(projection_backward(t * b, h, cfg.vocab, tp, e))
        self.h_bytes = float(b * h * e)  # one step's h_t (or its gradient)

    def rank(self, d: int, s: int, k: int) -> int:
        cfg = self.cfg
        return k + cfg.tp * (s + cfg.pp * d)

    def build(self, d: int, s: int, k: int, workload: LstmWorkload) -> None:
        cfg, g = self.cfg, self.graph
        e, b, tp, T = cfg.dtype_bytes, cfg.local_batch, cfg.tp, cfg.seq
        r = self.rank(d, s, k)
        tp_group = tuple(self.rank(d, s, i) for i in range(tp))
        dp_group = tuple(self.rank(i, s, k) for i in range(cfg.dp))
        first, last = s == 0, s == cfg.pp - 1
        local = cfg.layers_per_stage
        prev_rank = self.rank(d, s - 1, k) if not first else None
        next_rank = self.rank(d, s + 1, k) if not last else None

        def tp_coll(kind: CollectiveType, nbytes: float, name: str, dep: int) -> int:
            return g.collective(r, kind, nbytes, group=tp_group, name=name, deps=(dep,),
                                category="tp")

        # ---- forward
        emb = None
        if first:
            emb = g.compute(r, name="fwd.embedding", kernels=self.emb_f, category="fwd")
            if tp > 1:  # vocabulary-parallel lookup: partial rows summed over the group
                emb = tp_coll(AR, T * self.h_bytes, "tp.embedding", emb)
        fwd_cell: list[list[int]] = [[0] * T for _ in range(local)]
        out: list[list[int]] = [[0] * T for _ in range(local)]  # h_t usable by the next op
        for t in range(T):
            below: int
            if first:
                assert emb is not None
                below = emb
            else:
                below = g.recv(r, prev_rank, self.h_bytes, tag=t, name="pp.recv_h",
                               category="pp")
            for j in range(local):
                deps = [below] + ([out[j][t - 1]] if t else [])
                node = g.compute(r, name="fwd.cell", kernels=self.cell_f, deps=deps,
                                 category="fwd")
                fwd_cell[j][t] = node
                if tp > 1:
                    node = tp_coll(AG, self.h_bytes, "tp.gather_h", node)
                out[j][t] = below = node
            if not last:
                g.send(r, next_rank, self.h_bytes, tag=t, deps=(below,), name="pp.send_h",
                       category="pp")
        # ---- backward through time
        dp_done: list[int] = []
        grad_top: list[int] = []  # per step: the gradient arriving at the top local layer
        proj_b = None
        if last:
            proj = g.compute(r, name="fwd.projection", kernels=self.proj_f,
                             deps=[out[-1][t] for t in range(T)], category="fwd")
            if tp > 1:  # vocabulary-parallel softmax: row max, sum and target logit
                proj = tp_coll(AR, 3.0 * FP32 * T * b, "tp.softmax_stats", proj)
            proj_b = g.compute(r, name="bwd.projection", kernels=self.proj_b, deps=(proj,),
                               category="bwd")
            grad = proj_b
            if tp > 1:  # the input gradient is a partial sum over the vocabulary shards
                grad = tp_coll(AR, T * self.h_bytes, "tp.projection_grad", proj_b)
            grad_top = [grad] * T
        dgrad: list[list[int]] = [[0] * T for _ in range(local)]
        bwd_first: list[int] = [0] * local  # each layer's last backward node (step 0)
        for t in reversed(range(T)):
            above = grad_top[t] if last else g.recv(r, next_rank, self.h_bytes, tag=T + t,
                                                    name="pp.recv_grad", category="pp")
            for j in reversed(range(local)):
                deps = [above, fwd_cell[j][t]] + ([dgrad[j][t + 1]] if t < T - 1 else [])
                node = g.compute(r, name="bwd.cell", kernels=self.cell_b, deps=deps,
                                 category="bwd")
                bwd_first[j] = node
                if tp > 1:  # [b, 2h] input gradient: partial over the gate columns
                    node = tp_coll(AR, 2 * self.h_bytes, "tp.reduce_grad", node)
                dgrad[j][t] = above = node
            if not first:
                g.send(r, prev_rank, self.h_bytes, tag=T + t, deps=(above,),
                       name="pp.send_grad", category="pp")
        # ---- gradients: data-parallel all-reduce per weight matrix, then the update
        sizes: list[float] = []
        owned = 0.0

        def reduce(params: float, name: str, dep: int) -> None:
            nonlocal owned
            owned += params
            if cfg.dp > 1:
                sizes.append(params * e)
                dp_done.append(g.collective(r, AR, params * e, group=dp_group, name=name,
                                            deps=(dep,), category="dp"))
            else:
                dp_done.append(dep)

        if last:
            assert proj_b is not None
            reduce(cfg.projection_params() / tp, "dp.projection", proj_b)
        for j in reversed(range(local)):
            reduce(cfg.layer_params() / tp, "dp.layer", bwd_first[j])
        if first:
            emb_b = g.compute(r, name="bwd.embedding", kernels=self.emb_b,
                              deps=[dgrad[0][t] for t in range(T)], category="bwd")
            reduce(cfg.embedding_params() / tp, "dp.embedding", emb_b)
        g.compute(r, name="optimizer", kernels=kernels(optimizer_step(owned, e)),
                  deps=dp_done, category="optimizer")
        workload.dp_bytes[r] = sizes


def build_lstm(cfg: LstmConfig, npus: int) -> LstmWorkload:
    """One training iteration of ``cfg`` on ``npus`` GPUs (``dp x pp x tp`` must equal it)."""
    if not isinstance(cfg, LstmConfig):
        raise TypeError(f"build_lstm: expected an LstmConfig, got {type(cfg).__name__}")
    if cfg.world != npus:
        raise ParallelError(f"parallel: dp x pp x tp = {cfg.dp} x {cfg.pp} x {cfg.tp} = "
                            f"{cfg.world}, but the topology has {npus} NPUs")
    graph = EventGraph(npus, f"LSTM {cfg.layers}x{cfg.hidden}, seq {cfg.seq}, batch "
                             f"{cfg.batch}, dp {cfg.dp} pp {cfg.pp} tp {cfg.tp}")
    workload = LstmWorkload(graph, cfg)
    builder = _Builder(cfg, graph)
    for d in range(cfg.dp):
        for s in range(cfg.pp):
            for k in range(cfg.tp):
                builder.build(d, s, k, workload)
    return workload


def nodes_per_rank(cfg: LstmConfig, stage: int) -> int:
    """How many nodes :func:`build_lstm` gives a rank of pipeline ``stage`` (a closed form
    the tests hold the builder to, and the parser's size check)."""
    T, n, tp2 = cfg.seq, cfg.layers_per_stage, cfg.tp > 1
    first, last = stage == 0, stage == cfg.pp - 1
    count = 2 * n * T * (2 if tp2 else 1) + 1  # cells (and their tp collectives), optimizer
    if first:
        count += 2 + tp2  # embedding forward (+ all-reduce) and backward
    if last:
        count += 2 + 2 * tp2  # projection forward and backward (+ two all-reduces)
    count += 2 * T * ((not first) + (not last))  # pipeline recv/send each way
    if cfg.dp > 1:
        count += n + first + last
    return count
