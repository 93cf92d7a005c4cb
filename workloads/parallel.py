"""Parallelization strategy, where each parallel group lands on the NPUs, and the order of the
passes each pipeline stage runs (:func:`pipeline_schedule`).

Axes: ``tp`` (tensor, Megatron column/row parallel), ``cp`` (context: the sequence split, ring
attention), ``ep`` (expert: taken out of data parallelism, as in Megatron), ``pp`` (pipeline
stages) and ``dp`` (data; ``dp`` counts all data-parallel replicas, ``ep`` of which are expert
shards). The mapping order lists the axes innermost first: with the default
``tp,cp,ep,pp,dp`` a tensor-parallel group is NPUs with consecutive ids, so it lands on the
fastest links of hierarchical and SuperPOD-like topologies.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from des.core.hardware import DEFAULT_DTYPE_BYTES
from workloads.ops import OPTIMIZER_IMPLS
from workloads.precision import DTYPE_BYTES, GRAD_REDUCE_DTYPES, PrecisionError, dtype_bytes
from workloads.ring_attention import RING_ATTENTION

SCHEDULES = ("gpipe", "1f1b", "interleaved")
RECOMPUTE = ("none", "selective", "full")
AXES = ("tp", "cp", "ep", "pp", "dp")


class ParallelError(ValueError):
    """A strategy that does not fit the model or the machine; says which numbers clash."""


@dataclass(frozen=True)
class ParallelConfig:
    """A training strategy.

    ``micro_batch`` sequences per micro-batch and ``global_batch`` sequences per iteration give
    ``global_batch / (micro_batch x dp)`` micro-batches per pipeline (gradient accumulation).
    ``zero``: 0 plain data parallel (gradient all-reduce), 1 and 2 shard optimizer state (and
    gradients: reduce-scatter, then an all-gather of updated parameters), 3 shards parameters
    too (FSDP: all-gather before each layer's forward and backward, reduce-scatter after its
    backward). ``bucket_bytes``: data-parallel gradient buckets, reduced as soon as the
    backward pass has produced them. ``grad_reduce_dtype`` (``fp32``, ``bf16`` or ``fp16``;
    or ``grad_bytes`` per element, default fp32) is the precision gradients are held in and
    reduced at: it sizes both the gradient memory and the data-parallel reductions
    (:mod:`workloads.precision`). ``fold``: which symmetric peers to simulate once
    (:mod:`workloads.folding`): ``auto`` (default) folds tensor- and data-parallel peers (and
    context-parallel ones with ``ring_attention: phased``) where the topology proves it exact,
    ``none`` simulates every rank, or a list of axes forces those.
    ``fold_tp`` is the older switch for ``fold: [tp]``.
    Training-software behaviour (Megatron-LM's choices differ between releases, so each is a
    switch): ``dropout`` adds the dropout kernels (Megatron's defaults, attention and hidden
    dropout 0.1; Llama recipes train without); ``pp_blocking``: the sender of a pipeline
    transfer waits until it has landed before computing on (Megatron-LM 2021-22
    ``p2p_communication``: ``batch_isend_irecv``, a wait on every request, then
    ``torch.cuda.synchronize()``); ``pp_scatter_gather``: without sequence parallelism, a
    pipeline transfer carries ``1/tp`` of the activation and the receiver all-gathers it over
    its tensor-parallel group (Narayanan et al. 2021, Sec. 4.1; on by default in those
    releases); ``dp_overlap``: data-parallel gradients are reduced in ``bucket_bytes`` buckets
    while the last backward pass runs (PyTorch DDP), or, when False, in one reduction per
    model chunk after the pipeline has flushed (Megatron's "local" DDP, ``train_step``).
    ``tp_grad_overlap``: without sequence parallelism, the backward all-reduce of a
    column-parallel linear's input gradient (QKV, MLP up/gate) runs while that linear's weight
    gradient is computed (Megatron-LM 2022 ``async_tensor_model_parallel_allreduce``, on by
    default there; Korthikanti et al. 2022, Sec. 6.2).
    ``optimizer_impl``: ``fused`` (one Adam kernel over the working gradients and weights) or
    Megatron-LM's separate passes, ``megatron_fp16`` / ``megatron_bf16``
    (:func:`workloads.ops.optimizer_step`).
    ``ring_attention``: how context parallelism's ring attention is modelled, ``detailed``
    (every KV exchange; the default) or ``phased`` (the whole rotation as one ring all-gather and
    one compute phase per rank, layer and pass: far fewer nodes and messages, an approximation of
    the per-exchange latency, see :mod:`workloads.ring_attention`).
    """

    dp: int = 1
    tp: int = 1
    pp: int = 1
    cp: int = 1
    ep: int = 1
    sp: bool = False
    zero: int = 0
    recompute: str = "none"
    micro_batch: int = 1
    global_batch: int = 1
    schedule: str = "1f1b"
    virtual_stages: int = 1
    order: str = "tp,cp,ep,pp,dp"
    bucket_bytes: float = 25e6
    grad_bytes: int | None = None
    dtype_bytes: int = DEFAULT_DTYPE_BYTES
    flash: bool = True
    fold_tp: bool = False
    ring_attention: str = RING_ATTENTION[0]
    seq: int | None = None
    fold: str | tuple[str, ...] = "auto"
    dropout: bool = False
    pp_blocking: bool = False
    pp_scatter_gather: bool = False
    dp_overlap: bool = True
    tp_grad_overlap: bool = False
    optimizer_impl: str = "fused"
    grad_reduce_dtype: str | None = None

    def __post_init__(self) -> None:
        self._resolve_grad_bytes()
        for name in ("dp", "tp", "pp", "cp", "ep", "micro_batch", "global_batch",
                     "virtual_stages", "grad_bytes", "dtype_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ParallelError(f"parallel.{name} must be a whole number >= 1, got {value!r}")
        if self.zero not in (0, 1, 2, 3):
            raise ParallelError(f"parallel.zero must be 0, 1, 2 or 3, got {self.zero!r}")
        if isinstance(self.fold, str):
            if self.fold not in ("auto", "none"):
                raise ParallelError(f"parallel.fold must be auto, none or a list of axes "
                                    f"({', '.join(self.foldable)}), got {self.fold!r}")
        elif not set(self.fold) <= set(self.foldable):
            raise ParallelError(f"parallel.fold: only {', '.join(self.foldable)} peers fold "
                                f"here, got {list(self.fold)}"
                                + ("" if "cp" in self.foldable else
                                   " (cp folds with ring_attention: phased)"))
        if self.recompute not in RECOMPUTE:
            raise ParallelError(f"parallel.recompute {self.recompute!r}; expected one of "
                                f"{', '.join(RECOMPUTE)}")
        if self.ring_attention not in RING_ATTENTION:
            raise ParallelError(f"parallel.ring_attention {self.ring_attention!r}; expected one "
                                f"of {', '.join(RING_ATTENTION)}")
        if self.optimizer_impl not in OPTIMIZER_IMPLS:
            raise ParallelError(f"parallel.optimizer_impl {self.optimizer_impl!r}; expected one "
                                f"of {', '.join(OPTIMIZER_IMPLS)}")
        if self.schedule not in SCHEDULES:
            raise ParallelError(f"parallel.schedule {self.schedule!r}; expected one of "
                                f"{', '.join(SCHEDULES)}")
        if self.schedule != "interleaved" and self.virtual_stages != 1:
            raise ParallelError("parallel.virtual_stages > 1 needs schedule: interleaved")
        if self.schedule == "interleaved" and self.pp < 2:
            raise ParallelError("parallel.schedule interleaved needs pp >= 2: with one stage "
                                "there is no pipeline to interleave (use 1f1b)")
        if self.dp % self.ep:
            raise ParallelError(f"parallel.ep ({self.ep}) must divide dp ({self.dp}): expert "
                                "parallel ranks are taken out of the data-parallel ones")
        axes = [a.strip() for a in self.order.split(",")]
        if sorted(axes) != sorted(AXES):
            raise ParallelError(f"parallel.order {self.order!r} must list each of "
                                f"{', '.join(AXES)} once")
        if self.sp and self.tp == 1:
            raise ParallelError("parallel.sp (sequence parallelism) needs tp > 1")
        if self.global_batch % (self.micro_batch * self.dp):
            raise ParallelError(
                f"parallel.global_batch ({self.global_batch}) must be a multiple of "
                f"micro_batch x dp ({self.micro_batch} x {self.dp})")
        if self.schedule == "interleaved" and self.micro_batches % self.pp:
            raise ParallelError(f"interleaved 1F1B needs the micro-batch count "
                                f"({self.micro_batches}) to be a multiple of pp ({self.pp})")

    def _resolve_grad_bytes(self) -> None:
        """``grad_bytes`` from ``grad_reduce_dtype`` (or the reverse); fp32 when neither is
        given. Both given must agree: the gradient buffer's bytes are held (memory) and reduced
        (traffic) alike."""
        named = self.grad_reduce_dtype
        if named is None:
            if self.grad_bytes is None:
                object.__setattr__(self, "grad_bytes", DTYPE_BYTES["fp32"])
            return
        size = dtype_bytes(named, GRAD_REDUCE_DTYPES, "parallel.grad_reduce_dtype")
        if self.grad_bytes is not None and self.grad_bytes != size:
            raise PrecisionError(f"parallel.grad_bytes ({self.grad_bytes!r}) disagrees with "
                                 f"grad_reduce_dtype ({named}: {size} bytes); give one of them")
        object.__setattr__(self, "grad_bytes", size)

    @property
    def foldable(self) -> tuple[str, ...]:
        """Axes whose peers this strategy can fold: tensor- and data-parallel ones, and
        context-parallel ones when ring attention is one collective per phase (``phased``);
        exchange by exchange, its sends address peers point to point."""
        return ("tp", "dp", "cp") if self.ring_attention == "phased" else ("tp", "dp")

    @property
    def fold_request(self) -> str | tuple[str, ...]:
        """What to fold: ``fold``, or tensor-parallel peers when ``fold_tp`` is set."""
        return ("tp",) if self.fold_tp else self.fold

    @property
    def world(self) -> int:
        """NPUs the strategy uses."""
        return self.dp * self.tp * self.pp * self.cp

    @property
    def approximations(self) -> tuple[str, ...]:
        """The approximate (opt-in) models this strategy uses, each with its key; empty when
        every model is exact. Runs report them (graph name, LLM report)."""
        if self.cp > 1 and self.ring_attention == "phased":
            return ("ring_attention: phased (the KV rotation as one pipelined ring all-gather, "
                    "not exchange by exchange)",)
        return ()

    @property
    def micro_batches(self) -> int:
        """Micro-batches per pipeline per iteration."""
        return self.global_batch // (self.micro_batch * self.dp)


@dataclass
class Layout:
    """Rank <-> coordinates under the mapping order; groups along each axis."""

    par: ParallelConfig
    sizes: dict[str, int] = field(init=False)
    axes: list[str] = field(init=False)
    _groups: dict[tuple, tuple[int, ...]] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        p = self.par
        self.sizes = {"tp": p.tp, "cp": p.cp, "ep": p.ep, "pp": p.pp, "dp": p.dp // p.ep}
        self.axes = [a.strip() for a in p.order.split(",")]

    def rank(self, **coords: int) -> int:
        """The NPU of the given coordinates (missing ones are 0)."""
        rank, stride = 0, 1
        for axis in self.axes:
            rank += coords.get(axis, 0) * stride
            stride *= self.sizes[axis]
        return rank

    def coords(self, rank: int) -> dict[str, int]:
        """Coordinates of an NPU."""
        out = {}
        for axis in self.axes:
            out[axis] = rank % self.sizes[axis]
            rank //= self.sizes[axis]
        return out

    def group(self, rank: int, *axes: str) -> tuple[int, ...]:
        """The ranks that differ from ``rank`` only along ``axes`` (first axis fastest);
        cached, since a builder asks for the same groups once per layer and pass."""
        cached = self._groups.get((rank, axes))
        if cached is not None:
            return cached
        base = self.coords(rank)
        ranges = [range(self.sizes[a]) for a in axes]
        members = []
        for index in range(math.prod(len(r) for r in ranges)):
            c = dict(base)
            for axis, r in zip(axes, ranges, strict=True):
                c[axis] = index % len(r)
                index //= len(r)
            members.append(self.rank(**c))
        self._groups[(rank, axes)] = tuple(members)
        return self._groups[(rank, axes)]

    def stage_rank(self, rank: int, stage: int) -> int:
        """The rank at pipeline stage ``stage`` with this rank's other coordinates."""
        return self.rank(**{**self.coords(rank), "pp": stage})


def add_collective(graph, rank: int, kind, nbytes: float, group: tuple[int, ...], *,
                   fold: bool, name: str, deps, category: str = "") -> int:
    """A collective over ``group``; with ``fold`` only ``rank`` is simulated and the group is
    its span (symmetric peers folded, see ParallelConfig.fold_tp)."""
    if fold:
        return graph.collective(rank, kind, nbytes, group=(rank,), span=group, name=name,
                                deps=deps, category=category)
    return graph.collective(rank, kind, nbytes, group=group, name=name, deps=deps,
                            category=category)


def pipeline_schedule(schedule: str, pp: int, stage: int, micro_batches: int,
                      virtual: int = 1) -> list[tuple[str, int, int]]:
    """The passes a stage runs, in order: ``("F" or "B", model chunk, micro-batch)``.

    GPipe: every forward, then every backward (Huang et al. 2019). 1F1B: ``pp - stage - 1``
    warm-up forwards, then one forward and one backward alternately, then the remaining
    backwards (PipeDream-Flush; Narayanan et al. 2021). Interleaved: Megatron-LM's schedule
    over ``virtual`` model chunks per stage, micro-batches in groups of ``pp``.
    """
    m = micro_batches
    if schedule == "gpipe":
        return [("F", 0, i) for i in range(m)] + [("B", 0, i) for i in range(m)]
    if schedule == "1f1b":
        warm = min(pp - stage - 1, m)
        out = [("F", 0, i) for i in range(warm)]
        for i in range(m - warm):
            out += [("F", 0, warm + i), ("B", 0, i)]
        out += [("B", 0, i) for i in range(m - warm, m)]
        return out
    total = m * virtual
    group = pp * virtual

    def chunk(k: int, forward: bool) -> int:
        c = (k % group) // pp
        return c if forward else virtual - 1 - c

    def micro(k: int) -> int:
        return (k // group) * pp + k % pp

    warm = min((pp - stage - 1) * 2 + (virtual - 1) * pp, total)
    out = [("F", chunk(k, True), micro(k)) for k in range(warm)]
    for i in range(total - warm):
        k = warm + i
        out += [("F", chunk(k, True), micro(k)), ("B", chunk(i, False), micro(i))]
    out += [("B", chunk(k, False), micro(k)) for k in range(total - warm, total)]
    return out
