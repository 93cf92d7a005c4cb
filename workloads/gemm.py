"""A distributed GEMM as an event graph: ``C[m, n] = A[m, k] @ B[k, n]`` split over ``tp`` GPUs.

Three ways to split it (``shard``), each one local GEMM per GPU then one collective:

* ``m``: A row-sharded, B replicated; each GPU computes ``m/tp`` rows of C, then (with
  ``gather_output``) an all-gather of C;
* ``n``: B column-sharded, A replicated; each GPU computes ``n/tp`` columns of C, then (with
  ``gather_output``) an all-gather of C;
* ``k``: A column-sharded and B row-sharded (Megatron's row-parallel linear layer); each GPU
  computes a partial sum of the whole C, then an all-reduce of C, or a reduce-scatter when
  ``gather_output`` is off (each GPU keeps ``1/tp`` of the reduced C).

Every split does ``2 m n k / tp`` FLOPs per GPU. Bytes of the local GEMM: its shards of A and B
read and its block of C written once, ``dtype_bytes`` each (op class ``gemm``). Collective sizes
follow :class:`~des.core.graph.CollectiveType`: the all-gather's is the gathered C, the all-reduce's
and reduce-scatter's the full C, all ``m n dtype_bytes``. Nodes: ``gemm/local`` (compute,
category ``gemm``), ``tp/gather``, ``tp/reduce`` (communication, category ``tp``).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from des.core.graph import CollectiveType, EventGraph
from des.core.hardware import DEFAULT_DTYPE_BYTES
from des.core.results import Result, intersection_length, merge_intervals
from workloads.parallel import ParallelError

#: How the GEMM is split: by rows of A (``m``), columns of B (``n``) or the inner dimension.
SHARDS: tuple[str, ...] = ("m", "n", "k")

__all__ = ["SHARDS", "GemmWorkload", "build_gemm", "gemm_report", "local_gemm"]


@dataclass
class GemmWorkload:
    """The graph of one distributed GEMM and what its report needs."""

    graph: EventGraph
    m: int
    n: int
    k: int
    tp: int
    shard: str
    dtype_bytes: int
    gather_output: bool
    simulated_ranks: list[int]
    collective: CollectiveType | None
    collective_bytes: float
    local: tuple[float, float] = (0.0, 0.0)  # (FLOPs, bytes) of each GPU's GEMM
    compute_nodes: dict[int, int] = field(default_factory=dict)
    comm_nodes: dict[int, int] = field(default_factory=dict)

    @property
    def flops(self) -> float:
        """FLOPs of the whole GEMM: ``2 m n k``."""
        return 2.0 * self.m * self.n * self.k


def _int(value: Any, label: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ParallelError(f"{label} must be a whole number >= 1, got {value!r}")
    return value


def local_gemm(m: int, n: int, k: int, tp: int, shard: str,
               dtype_bytes: int = DEFAULT_DTYPE_BYTES) -> tuple[float, float]:
    """(FLOPs, HBM bytes) of one GPU's part of the GEMM split ``shard`` over ``tp`` GPUs."""
    if shard not in SHARDS:
        raise ParallelError(f"shard {shard!r}; expected one of {', '.join(SHARDS)}")
    rows, cols, inner = {"m": (m / tp, n, k), "n": (m, n / tp, k), "k": (m, n, k / tp)}[shard]
    flops = 2.0 * rows * cols * inner
    nbytes = float(dtype_bytes) * (rows * inner + inner * cols + rows * cols)
    return flops, nbytes


def build_gemm(m: int, n: int, k: int, *, tp: int, shard: str, npus: int,
               dtype_bytes: int = DEFAULT_DTYPE_BYTES,
               gather_output: bool = True, fold_tp: bool = False) -> GemmWorkload:
    """``C[m, n] = A[m, k] @ B[k, n]`` split ``shard``-wise over ``tp`` GPUs (``tp`` must
    equal ``npus`` and divide the split dimension); ``fold_tp`` simulates rank 0 only and costs
    the collective over all ``tp`` in closed form."""
    for label, value in (("m", m), ("n", n), ("k", k), ("tp", tp), ("npus", npus),
                         ("dtype_bytes", dtype_bytes)):
        _int(value, label)
    for label, flag in (("gather_output", gather_output), ("fold_tp", fold_tp)):
        if not isinstance(flag, bool):
            raise ParallelError(f"{label} must be true or false, got {flag!r}")
    if shard not in SHARDS:
        raise ParallelError(f"shard {shard!r}; expected one of {', '.join(SHARDS)}")
    if tp != npus:
        raise ParallelError(f"tp = {tp}, but the topology has {npus} NPUs")
    dim = {"m": m, "n": n, "k": k}[shard]
    if dim % tp:
        raise ParallelError(f"{shard} = {dim} does not split over tp = {tp}")
    flops, nbytes = local_gemm(m, n, k, tp, shard, dtype_bytes)
    c_bytes = float(m * n * dtype_bytes)
    if shard == "k":
        kind: CollectiveType | None = (CollectiveType.ALL_REDUCE if gather_output
                                       else CollectiveType.REDUCE_SCATTER)
    else:
        kind = CollectiveType.ALL_GATHER if gather_output else None
    if tp == 1:
        kind = None
    graph = EventGraph(npus, f"GEMM {m}x{n}x{k} over {tp}, {shard}-sharded")
    group = tuple(range(tp))
    ranks = [0] if fold_tp else list(group)
    workload = GemmWorkload(graph, m, n, k, tp, shard, dtype_bytes, gather_output, ranks,
                            kind, c_bytes if kind else 0.0, (flops, nbytes))
    for rank in ranks:
        node = graph.compute(rank, name="gemm/local", kernels=[(flops, nbytes, "gemm")],
                             category="gemm")
        workload.compute_nodes[rank] = node
        if kind is None:
            continue
        name = "tp/reduce" if shard == "k" else "tp/gather"
        workload.comm_nodes[rank] = graph.collective(
            rank, kind, c_bytes, group=(rank,) if fold_tp else group,
            span=group if fold_tp else None, name=name, deps=(node,), category="tp")
    return workload


def gemm_report(result: Result, workload: GemmWorkload,
                peak_flops_per_gpu: float | None = None) -> dict[str, Any]:
    """Time, achieved TFLOP/s (``2 m n k`` over the makespan) and the compute and exposed
    communication shares of the slowest simulated rank; with ``peak_flops_per_gpu`` (FLOP/s)
    also the fraction of the ``tp`` GPUs' peak."""
    seconds = result.makespan_ns * 1e-9
    rank = max(workload.simulated_ranks, key=lambda r: result.ranks[r].finished_ns)
    spans: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for op in result.ops:
        if op.rank == rank:
            spans["compute" if op.kind == "compute" else "comm"].append((op.start_ns, op.end_ns))
    compute = merge_intervals(spans["compute"])
    comm = merge_intervals(spans["comm"])
    compute_ns = sum(e - s for s, e in compute)
    exposed_ns = sum(e - s for s, e in comm) - intersection_length(comm, compute)
    total = result.makespan_ns or 1.0
    report: dict[str, Any] = {
        "shape": [workload.m, workload.n, workload.k],
        "tp": workload.tp,
        "shard": workload.shard,
        "gather_output": workload.gather_output,
        "flops": workload.flops,
        "flops_per_rank": workload.local[0],
        "bytes_per_rank": workload.local[1],
        "collective": workload.collective.value if workload.collective else None,
        "collective_bytes": workload.collective_bytes,
        "time_s": seconds,
        "tflops": workload.flops / seconds * 1e-12 if seconds > 0 else 0.0,
        "compute_s": compute_ns * 1e-9,
        "communication_s": exposed_ns * 1e-9,
        "compute_share": compute_ns / total,
        "communication_share": exposed_ns / total,
    }
    if peak_flops_per_gpu and seconds > 0:
        report["fraction_of_peak"] = workload.flops / seconds / (peak_flops_per_gpu
                                                                 * workload.tp)
    return report
