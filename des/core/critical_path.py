"""The chain of operations that set a run's makespan.

Walk back from the op that finished last: at each op, the thing that held its start back is the
latest-ending of its dependencies, the op before it on the same stream, the last member to join
its collective, or the send of its receive. Ties go to the dependency. The chain reads forward
as "what had to happen, in order, for the makespan to be what it is".
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass

from des.core.graph import EventGraph, NodeKind
from des.core.results import OpRecord, Result

_EPS = 1e-6


@dataclass(frozen=True)
class PathStep:
    """One op on the critical path and why it could not start earlier."""

    rank: int
    node: int
    name: str
    kind: str
    start_ns: float
    end_ns: float
    waited_for: str


def critical_path(result: Result, graph: EventGraph, limit: int = 10_000) -> list[PathStep]:
    """The critical path, first op first."""
    if not result.ops:
        return []
    ops = {(op.rank, op.node): op for op in result.ops}
    by_stream: dict[tuple[int, str], list[OpRecord]] = defaultdict(list)
    for op in result.ops:
        by_stream[(op.rank, op.stream)].append(op)
    previous: dict[tuple[int, int], OpRecord] = {}
    for stream_ops in by_stream.values():
        stream_ops.sort(key=lambda o: (o.start_ns, o.end_ns))
        for before, after in itertools.pairwise(stream_ops):
            previous[(after.rank, after.node)] = before
    members = {(r, nid): inst for inst in graph.collective_instances()
               for r, nid in inst.members.items()}
    senders = {(p.dst, p.recv_id): (p.src, p.send_id) for p in graph.p2p_pairs()}

    op = max(result.ops, key=lambda o: (o.end_ns, -o.rank))
    path: list[PathStep] = []
    seen = set()
    while op is not None and len(path) < limit and (op.rank, op.node) not in seen:
        seen.add((op.rank, op.node))
        node = graph.node(op.rank, op.node)
        candidates: list[tuple[OpRecord, str]] = []
        candidates += [(ops[(op.rank, d)], "dependency") for d in node.deps
                       if (op.rank, d) in ops]
        prev = previous.get((op.rank, op.node))
        if prev is not None:
            candidates.append((prev, f"stream {op.stream}"))
        if node.kind is NodeKind.COLLECTIVE:
            inst = members[(op.rank, op.node)]
            last = max((ops[(r, nid)] for r, nid in inst.members.items() if (r, nid) in ops),
                       key=lambda o: o.start_ns)
            if last.rank != op.rank and last.start_ns > op.start_ns + _EPS:
                candidates.append((last, f"rank {last.rank} joining the collective"))
        if node.kind is NodeKind.RECV and (op.rank, op.node) in senders:
            send = ops.get(senders[(op.rank, op.node)])
            if send is not None:
                candidates.append((send, "its send"))
        gating = [(c, why) for c, why in candidates if c.end_ns <= op.start_ns + _EPS
                  or why.startswith("rank")]
        reason = "start of the run"
        nxt = None
        if gating and op.start_ns > _EPS:
            nxt, reason = max(gating, key=lambda cw: (
                cw[0].start_ns if cw[1].startswith("rank") else cw[0].end_ns,
                cw[1] == "dependency"))
        path.append(PathStep(op.rank, op.node, op.name, op.kind, op.start_ns, op.end_ns,
                             reason))
        op = nxt
    path.reverse()
    return path
