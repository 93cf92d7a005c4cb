"""Small, fully specified workloads: collective sequences and a data-parallel training step.

Both build an :class:`~des.core.graph.EventGraph` with sizes and FLOPs only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from des.core.fold import Fold
from des.core.graph import CollectiveType, EventGraph
from des.core.hardware import DEFAULT_DTYPE_BYTES


@dataclass(frozen=True)
class CollectiveSpec:
    """One collective of a microbenchmark: type, full-buffer bytes, group (None = all ranks),
    algorithm (None = default) and how many times to run it back to back."""

    collective: CollectiveType
    nbytes: float
    group: tuple[int, ...] | None = None
    algorithm: str | None = None
    repeat: int = 1


def collective_sequence(num_ranks: int, specs: Sequence[CollectiveSpec],
                        name: str = "collectives", fold: Fold | None = None) -> EventGraph:
    """Run the collectives one after another on every member (each waits for the previous one
    the rank took part in), like an nccl-tests run over a list of sizes.

    With ``fold`` (whose orbits must each meet every group, as a fold of all ranks does:
    :func:`workloads.folding.world_fold`), only the fold's representatives get nodes and each
    collective keeps its full group as its span."""
    graph = EventGraph(num_ranks, name)
    graph.fold = fold
    last: dict[int, int] = {}
    for i, spec in enumerate(specs):
        span = spec.group if spec.group is not None else tuple(range(num_ranks))
        group = span if fold is None else tuple(r for r in span if fold.is_representative(r))
        for rep in range(spec.repeat):
            ids = graph.collective_all(
                spec.collective, spec.nbytes, group=group, algorithm=spec.algorithm,
                name=f"{spec.collective}#{i}.{rep}",
                deps={r: (last[r],) for r in group if r in last},
                span=None if fold is None else span)
            last.update(ids)
    return graph


def data_parallel_step(num_ranks: int, *, layers: int, params_per_layer: float,
                       tokens_per_rank: float, dtype_bytes: int = DEFAULT_DTYPE_BYTES,
                       algorithm: str | None = None,
                       name: str = "data-parallel step") -> EventGraph:
    """One data-parallel training step of a stack of dense layers.

    Forward: ``2 P T`` FLOPs per layer (P parameters, T tokens per rank; Kaplan et al. 2020),
    reading the layer's weights once. Backward, last layer first: ``4 P T`` FLOPs, then the
    layer's gradients (P x dtype bytes) are all-reduced over all ranks while the backward pass
    goes on to the layers below. The optimizer (Adam, mixed precision: reads and writes fp32
    master weights and two moments plus the gradient, ~16 bytes per parameter each way) runs
    after every all-reduce. Gradient all-reduces overlap backward compute; the last ones are
    exposed.
    """
    if layers < 1 or params_per_layer <= 0 or tokens_per_rank <= 0 or dtype_bytes < 1:
        raise ValueError("data_parallel_step: layers, params_per_layer, tokens_per_rank and "
                         "dtype_bytes must be positive")
    graph = EventGraph(num_ranks, name)
    weight_bytes = params_per_layer * dtype_bytes
    grads: dict[int, list[int]] = {r: [] for r in range(num_ranks)}
    prev: dict[int, int | None] = dict.fromkeys(range(num_ranks))
    for layer in range(layers):
        for r in range(num_ranks):
            deps = () if prev[r] is None else (prev[r],)
            prev[r] = graph.compute(r, flops=2 * params_per_layer * tokens_per_rank,
                                    nbytes=weight_bytes, op_class="gemm",
                                    name=f"fwd.layer{layer}", deps=deps, category="fwd")
    for layer in reversed(range(layers)):
        bwd = {}
        for r in range(num_ranks):
            bwd[r] = prev[r] = graph.compute(
                r, flops=4 * params_per_layer * tokens_per_rank, nbytes=2 * weight_bytes,
                op_class="gemm", name=f"bwd.layer{layer}", deps=(prev[r],), category="bwd")
        ids = graph.collective_all(CollectiveType.ALL_REDUCE, weight_bytes,
                                   algorithm=algorithm, name=f"allreduce.grad{layer}",
                                   deps={r: (bwd[r],) for r in range(num_ranks)},
                                   category="dp")
        for r, nid in ids.items():
            grads[r].append(nid)
    for r in range(num_ranks):
        graph.compute(r, flops=0.0, nbytes=32 * params_per_layer * layers,
                      op_class="elementwise", name="optimizer", deps=(prev[r], *grads[r]),
                      category="optimizer")
    return graph
