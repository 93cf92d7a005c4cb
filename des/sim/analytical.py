"""The analytical backend: the same event graph, list-scheduled with closed-form costs, no SimPy.

For fast first passes in sweeps. Each rank runs its compute stream and communication streams
exactly as the SimPy engine does (same issue order, stream counts and hardware model); what
differs is communication, which costs its *uncontended* time (:mod:`des.sim.costs`): a collective's
members start together when the last one joins and end together after its closed-form time.
On scenarios without contention both backends agree (tests check 1%); with contention the
analytical answer is a lower bound.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections import defaultdict
from collections.abc import Callable

from collectives.base import make_plan
from des.core import hardware as hw
from des.core.graph import CollectiveInstance, EventGraph, Node, NodeKind
from des.core.results import (
    CollectiveStats,
    LinkStats,
    OpRecord,
    Result,
    bus_factor,
    rank_stats,
)
from des.sim.choices import algorithm_for, local_time, logical_dims, step_overhead
from des.sim.collective_run import chunk_layout
from des.sim.costs import MessageCost, collective_time, p2p_time
from des.sim.options import EngineOptions, IssueOrder
from topologies.base import Topology


class AnalyticalError(RuntimeError):
    """The graph cannot be scheduled (it would deadlock); names ranks and nodes."""


class AnalyticalBackend:
    """List-schedules an event graph: compute and communication streams per rank as in the
    SimPy engine, communication at closed-form uncontended cost. :meth:`run` gives a Result."""

    def __init__(self, topology: Topology, graph: EventGraph, *,
                 hardware: hw.GpuSpec | None = None,
                 options: EngineOptions | None = None) -> None:
        graph.validate(num_npus=topology.num_npus)
        if options is not None and options.timed_faults:
            raise AnalyticalError("timed faults change the network during the run; the "
                                  "analytical backend cannot model them: use the simpy backend")
        self.topology = topology
        self.graph = graph
        self.hardware = hardware
        self.options = options or EngineOptions()
        self.cost = MessageCost(topology, self.options)

    def run(self) -> Result:
        """Schedule every node; raise AnalyticalError if some never become ready."""
        wall = time.perf_counter()
        opts, graph = self.options, self.graph
        seq = itertools.count()
        events: list[tuple[float, int, Callable[[], None]]] = []
        now = 0.0

        def at(t: float, action: Callable[[], None]) -> None:
            heapq.heappush(events, (t, next(seq), action))

        pending = {(n.rank, n.id): len(n.deps) for n in graph.all_nodes()}
        dependents: dict[tuple[int, int], list[Node]] = defaultdict(list)
        for n in graph.all_nodes():
            for d in n.deps:
                dependents[(n.rank, d)].append(n)
        by_id = opts.issue_order is IssueOrder.NODE_ID
        queues: dict[tuple[int, str], list] = defaultdict(list)
        free = {(r, "compute"): 1 for r in range(graph.num_ranks)}
        free.update({(r, "comm"): opts.comm_streams for r in range(graph.num_ranks)})
        records: list[OpRecord] = []
        instances = graph.collective_instances()
        inst_of = {(r, nid): inst for inst in instances for r, nid in inst.members.items()}
        joined: dict[int, dict[int, float]] = defaultdict(dict)
        coll_stats: list[CollectiveStats] = []
        pairs_by_send = {(p.src, p.send_id): p for p in graph.p2p_pairs()}
        arrived: dict[tuple[int, int], tuple[float, float]] = {}
        posted: dict[tuple[int, int], float] = {}

        def finish(node: Node, start: float, stream: str, end: float) -> None:
            records.append(OpRecord(node.rank, node.id, node.name, node.kind.value, stream,
                                    start, end, node.category))
            at(end, lambda: release(node))

        def release(node: Node) -> None:
            for child in dependents.get((node.rank, node.id), ()):
                pending[(child.rank, child.id)] -= 1
                if pending[(child.rank, child.id)] == 0:
                    ready(child)

        def ready(node: Node) -> None:
            kind = node.kind
            if kind in (NodeKind.COMPUTE, NodeKind.MEMORY):
                enqueue(node, "compute")
            elif kind is NodeKind.COLLECTIVE or (kind is NodeKind.SEND
                                                 and opts.sends_use_comm_stream):
                enqueue(node, "comm")
            elif kind is NodeKind.SEND:
                send(node, None)
            else:
                post_recv(node)

        def enqueue(node: Node, stream: str) -> None:
            key = (node.rank, stream)
            heapq.heappush(queues[key], (node.id if by_id else next(seq), node.id, node))
            dispatch(key)

        def dispatch(key: tuple[int, str]) -> None:
            while free[key] > 0 and queues[key]:
                _, _, node = heapq.heappop(queues[key])
                free[key] -= 1
                start(node, key)

        def free_slot(key: tuple[int, str]) -> None:
            free[key] += 1
            dispatch(key)

        def start(node: Node, key: tuple[int, str]) -> None:
            if key[1] == "compute":
                speed = opts.speed.get(node.rank, 1.0)
                end = now_ref[0] + local_time(node, self.hardware, opts) / speed
                finish(node, now_ref[0], "compute", end)
                at(end, lambda: free_slot(key))
            elif node.kind is NodeKind.SEND:
                send(node, key)
            else:
                join(node, key)

        def send(node: Node, key: tuple[int, str] | None) -> None:
            pair = pairs_by_send[(node.rank, node.id)]
            t0 = now_ref[0]
            end = t0 + p2p_time(node.nbytes, node.rank, node.peer, self.cost, opts)
            finish(node, t0, "comm" if key else "p2p", end)
            if key:
                at(end, lambda: free_slot(key))
            rkey = (pair.dst, pair.recv_id)
            arrived[rkey] = (t0, end)
            if rkey in posted:
                complete_recv(rkey)

        def post_recv(node: Node) -> None:
            rkey = (node.rank, node.id)
            posted[rkey] = now_ref[0]
            if rkey in arrived:
                complete_recv(rkey)

        def complete_recv(rkey: tuple[int, int]) -> None:
            sent, landed = arrived[rkey]
            start_t = posted[rkey] if opts.recv_busy_from_post else max(posted[rkey], sent)
            end = max(posted[rkey], landed)
            finish(graph.node(*rkey), start_t, "p2p", end)

        def join(node: Node, key: tuple[int, str]) -> None:
            inst = inst_of[(node.rank, node.id)]
            members = joined[inst.index]
            members[node.rank] = now_ref[0]
            if len(members) < len(inst.group):
                return
            begin = now_ref[0]
            end = begin + self._collective_duration(inst)
            for rank, t_join in members.items():
                member = graph.node(rank, inst.members[rank])
                finish(member, t_join, "comm", end)
                at(end, lambda k=(rank, "comm"): free_slot(k))
            first = min(members.values())
            algbw = inst.nbytes / (end - first) if end > first else 0.0
            coll_stats.append(CollectiveStats(
                inst.index, inst.collective.value, algorithm_for(inst, self.topology, opts),
                list(inst.span or inst.group), inst.nbytes, 0, first, end, end - first, algbw,
                algbw * bus_factor(inst.collective.value, len(inst.span or inst.group))))

        now_ref = [0.0]
        for rank in range(graph.num_ranks):
            for node in graph.nodes(rank):
                if not node.deps:
                    ready(node)
        while events:
            now, _, action = heapq.heappop(events)
            now_ref[0] = now
            action()
        if len(records) != len(graph):
            done = {(op.rank, op.node) for op in records}
            stuck = [n.label() for n in graph.all_nodes() if (n.rank, n.id) not in done][:8]
            raise AnalyticalError(
                f"{len(graph) - len(records)} nodes never ran (comm-stream deadlock?): "
                + "; ".join(stuck))
        ops = sorted(records, key=lambda op: (op.rank, op.start_ns, op.node))
        makespan = max((op.end_ns for op in ops), default=0.0)
        links = [LinkStats(lk.id, lk.src, lk.dst, lk.kind, lk.bandwidth, lk.derate, 0.0, 0,
                           0.0, 0.0, 0) for lk in self.topology.links]
        meta = {
            "graph": graph.name, "topology": self.topology.name, "npus": self.topology.num_npus,
            "ranks": graph.num_ranks, "nodes": len(graph), "backend": "analytical",
            "transport": opts.transport.value,
            "hardware": self.hardware.name if self.hardware else None,
            "messages": 0, "hops": 0, "reroutes": 0, "timed_faults": [],
            "failed_links": [f"{lk.src}->{lk.dst}" for lk in self.topology.links if not lk.up],
            "derated_links": [f"{lk.src}->{lk.dst}:{lk.derate:g}" for lk in self.topology.links
                              if lk.up and lk.derate < 1.0],
            "wall_seconds": time.perf_counter() - wall,
        }
        coll_stats.sort(key=lambda c: c.index)
        return Result(makespan, rank_stats(ops, graph.num_ranks), links, coll_stats, ops, meta)

    def _collective_duration(self, inst: CollectiveInstance) -> float:
        opts = self.options
        count, chunk_bytes = chunk_layout(inst.collective, inst.nbytes,
                                          len(inst.span or inst.group),
                                          self.topology.num_npus, opts.chunks, opts.chunking,
                                          opts.chunk_bytes)
        members = inst.span or inst.group
        plan = make_plan(inst.collective, members, chunk_bytes,
                         algorithm_for(inst, self.topology, opts),
                         dims=logical_dims(self.topology, members), root=inst.root,
                         options=opts.plan_options)
        return collective_time(plan, count, opts.chunks_in_flight, self.cost,
                               lambda step: step_overhead(step, opts), opts.endpoint_delay_ns)


def analyze(topology: Topology, graph: EventGraph, *, hardware: hw.GpuSpec | None = None,
            options: EngineOptions | None = None) -> Result:
    """Build an :class:`AnalyticalBackend` and run it."""
    return AnalyticalBackend(topology, graph, hardware=hardware, options=options).run()
