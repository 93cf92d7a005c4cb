"""Per-rank results in AstraSim's terms, from des and from AstraSim's own console output.

AstraSim prints, per rank: ``sys[R] finished, T cycles, exposed communication X cycles.`` (X is
T minus the rank's summed GPU compute time) and statistics lines ``Wall time``, ``GPU time``
and ``Comm time`` (lengths of the unions of node intervals of each kind) and, only when
positive, ``Total compute-communication overlap``. It leaves statistics lines out when a trace
holds CPU or memory nodes, so every field but ``finished`` may be missing. One cycle is 1 ns in
the analytical backends.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from des.core.results import Result, intersection_length, merge_intervals

COMPUTE_KINDS = frozenset({"compute"})
COMM_KINDS = frozenset({"collective", "send", "recv"})


@dataclass
class AstraRankStats:
    """One rank in AstraSim's terms (ns); None where the source did not say."""

    finished_ns: float
    exposed_comm_ns: float | None = None
    wall_ns: float | None = None
    gpu_ns: float | None = None
    comm_ns: float | None = None
    overlap_ns: float | None = None


def from_result(result: Result) -> dict[int, AstraRankStats]:
    """AstraSim's per-rank figures computed from a des result."""
    compute: dict[int, list[tuple[float, float]]] = {r: [] for r in result.ranks}
    comm: dict[int, list[tuple[float, float]]] = {r: [] for r in result.ranks}
    summed: dict[int, float] = dict.fromkeys(result.ranks, 0.0)
    for op in result.ops:
        if op.kind in COMPUTE_KINDS:
            compute[op.rank].append((op.start_ns, op.end_ns))
            summed[op.rank] += op.end_ns - op.start_ns
        elif op.kind in COMM_KINDS:
            comm[op.rank].append((op.start_ns, op.end_ns))
    out = {}
    for rank, stats in result.ranks.items():
        gpu, com = merge_intervals(compute[rank]), merge_intervals(comm[rank])
        overlap = intersection_length(gpu, com)
        out[rank] = AstraRankStats(
            finished_ns=stats.finished_ns,
            exposed_comm_ns=stats.finished_ns - summed[rank],
            wall_ns=stats.finished_ns,
            gpu_ns=sum(e - s for s, e in gpu) if gpu else None,
            comm_ns=sum(e - s for s, e in com) if com else None,
            overlap_ns=overlap if overlap > 0 else None)
    return out


# Digit counts are bounded: a rank or a cycle count longer than that is not AstraSim's output
# (and int() refuses strings of more than 4,300 digits).
_FINISHED = re.compile(r"sys\[(\d{1,9})\] finished, (\d{1,30}) cycles, exposed communication "
                       r"(\d{1,30}) cycles")
_STAT = re.compile(r"sys\[(\d{1,9})\], (Wall time|GPU time|Comm time|Total compute-communication "
                   r"overlap): (\d{1,30})")
_FIELDS = {"Wall time": "wall_ns", "GPU time": "gpu_ns", "Comm time": "comm_ns",
           "Total compute-communication overlap": "overlap_ns"}


def parse_astra_output(text: str) -> dict[int, AstraRankStats]:
    """Per-rank results from AstraSim's console output (ranks that never printed ``finished``
    are absent)."""
    ranks: dict[int, AstraRankStats] = {}
    for match in _FINISHED.finditer(text):
        rank = int(match[1])
        ranks[rank] = AstraRankStats(float(match[2]), float(match[3]))
    for match in _STAT.finditer(text):
        rank = int(match[1])
        if rank in ranks:
            setattr(ranks[rank], _FIELDS[match[2]], float(match[3]))
    return ranks
