"""The SimPy engine: runs an :class:`~des.core.graph.EventGraph` on a topology with link contention.

Graph rank r runs on NPU r. Each :class:`Gpu` owns one compute stream and ``comm_streams``
communication streams, each a SimPy process that takes ready nodes in the order they became
ready (ties by node id). Point-to-point sends and receives do not occupy a stream: like NCCL
send/recv inside a group call they progress asynchronously, so they cannot deadlock on stream
slots. Collectives occupy a communication stream from the moment the rank joins until its part is
done. Messages cross links through :mod:`des.sim.transport`.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable

import simpy

from collectives.base import CollectiveError, check_algorithm
from des.core import hardware as hw
from des.core.graph import CollectiveInstance, EventGraph, Node, NodeKind, P2PPair
from des.core.results import OpRecord, Result, build_result
from des.sim.choices import ModelError, algorithm_for, local_time, logical_dims
from des.sim.collective_run import CollectiveRun, FoldedCollectiveRun
from des.sim.costs import MessageCost
from des.sim.options import EngineOptions, IssueOrder
from des.sim.transport import Message, Transport
from topologies.base import Topology, TopologyError
from topologies.faults import LinkFault, fault_links, set_fault

log = logging.getLogger(__name__)


class SimulationError(RuntimeError):
    """The simulation could not finish (e.g. a deadlock); the message names ranks and nodes."""


class Gpu:
    """One NPU: a compute stream and ``comm_streams`` communication streams (SimPy processes).

    Timing: a compute node takes ``duration_ns`` if given, else the roofline time of its FLOPs
    and bytes (:func:`des.core.hardware.compute_time_ns`); memory nodes take bytes / HBM bandwidth;
    both are divided by the rank's speed factor. Nodes on one stream run one at a time in the
    order they became ready. A collective holds its stream until this rank's part is done.
    """

    def __init__(self, sim: Simulator, rank: int, speed: float) -> None:
        self.sim = sim
        self.rank = rank
        self.speed = speed
        env = sim.env
        store = simpy.PriorityStore if sim.options.issue_order is IssueOrder.NODE_ID \
            else simpy.Store
        self.compute_queue = store(env)
        self.comm_queue = store(env)
        self.busy_with: dict[str, Node | None] = {}
        env.process(self._compute_stream())
        for i in range(sim.options.comm_streams):
            env.process(self._comm_stream(f"comm{i}"))

    def _compute_stream(self):
        """SimPy process: run ready compute/memory nodes one at a time, FIFO by readiness; each
        holds the stream for its roofline (or explicit) time divided by the rank's speed."""
        env, sim = self.env, self.sim
        while True:
            node = _unwrap((yield self.compute_queue.get()))
            self.busy_with["compute"] = node
            start = env.now
            yield env.timeout(sim.local_time(node) / self.speed)
            self.busy_with["compute"] = None
            sim.finish(node, start, "compute")

    def _comm_stream(self, name: str):
        """SimPy process: run ready collectives one at a time, FIFO by readiness; each holds the
        stream from this rank's joining until its part (all steps, all chunks) is delivered."""
        env, sim = self.env, self.sim
        while True:
            node = _unwrap((yield self.comm_queue.get()))
            self.busy_with[name] = node
            start = env.now
            if node.kind is NodeKind.SEND:  # sends hold the slot until they land (AstraSim)
                yield sim.start_send(node)
                self.busy_with[name] = None
                continue
            yield sim.collectives.join(node)
            self.busy_with[name] = None
            sim.finish(node, start, name)

    @property
    def env(self) -> simpy.Environment:
        return self.sim.env


class _P2PFlow:
    """One send in flight: chunks of at most ``p2p_chunk_bytes``, at most ``p2p_window`` of them
    undelivered at a time; the next chunk leaves when one is delivered (credit return is taken
    as instantaneous). The send completes when its last byte has arrived."""

    __slots__ = ("chunk", "delivered", "done", "node", "offset", "pair", "sim", "start_ns")

    def __init__(self, sim: Simulator, node: Node, pair: P2PPair) -> None:
        self.sim = sim
        self.node = node
        self.pair = pair
        self.chunk = sim.options.p2p_chunk_bytes
        self.offset = 0.0
        self.delivered = 0.0
        self.start_ns = sim.env.now
        self.done = sim.env.event()

    def start(self) -> None:
        if self.node.nbytes == 0:  # an empty message still crosses the route
            self.sim.transport.send(self.node.rank, self.node.peer, 0.0, self._arrived)
            return
        for _ in range(self.sim.options.p2p_window):
            self._send_next()

    def _send_next(self) -> None:
        size = min(self.chunk, self.node.nbytes - self.offset)
        if size <= 0:
            return
        self.offset += size
        self.sim.transport.send(self.node.rank, self.node.peer, size, self._arrived,
                                tag=self.node.tag)

    def _arrived(self, msg: Message) -> None:
        self.delivered += msg.nbytes
        if self.delivered >= self.node.nbytes:
            self.sim._send_delivered(self.node, self.pair, self.start_ns)
            self.done.succeed()
        else:
            self._send_next()


def _unwrap(item):
    return item.item if isinstance(item, simpy.PriorityItem) else item


class CollectiveTable:
    """Finds the run a collective node belongs to, creating runs as members arrive."""

    def __init__(self, sim: Simulator, instances: list[CollectiveInstance]) -> None:
        self.sim = sim
        self.instances = instances
        self.by_node: dict[tuple[int, int], int] = {
            (rank, nid): inst.index for inst in instances for rank, nid in inst.members.items()
        }
        self.runs: dict[int, CollectiveRun] = {}

    def run_of(self, node: Node) -> CollectiveRun:
        index = self.by_node[(node.rank, node.id)]
        run = self.runs.get(index)
        if run is None:
            inst = self.instances[index]
            algorithm = self.sim.algorithm_for(inst)
            kind = FoldedCollectiveRun if inst.span else CollectiveRun
            run = kind(self.sim, inst, algorithm, self.sim.logical_dims(inst.span or inst.group))
            self.runs[index] = run
        return run

    def join(self, node: Node) -> simpy.Event:
        return self.run_of(node).join(node.rank)


class Simulator:
    """Runs one event graph on one topology; :meth:`run` returns a
    :class:`~des.core.results.Result`."""

    def __init__(self, topology: Topology, graph: EventGraph, *,
                 hardware: hw.GpuSpec | None = None,
                 options: EngineOptions | None = None) -> None:
        graph.validate(num_npus=topology.num_npus)
        self.topology = topology
        self.graph = graph
        self.hardware = hardware
        self.options = options or EngineOptions()
        self.env = simpy.Environment()
        self.transport = Transport(self.env, topology, self.options.transport,
                                   self.options.packet_bytes,
                                   record_activity=self.options.record_link_activity,
                                   track_inflight=bool(self.options.timed_faults),
                                   contention=self.options.contention,
                                   quantize=self.options.quantize)
        for fault in self.options.timed_faults:
            fault_links(topology, fault)  # names real links: fail now, not mid-run
            self.env.process(self._fault_process(fault))
        instances = graph.collective_instances()
        for inst in instances:  # fail before running, not halfway through
            try:
                check_algorithm(inst.collective, self.algorithm_for(inst))
            except CollectiveError as err:
                first = graph.node(*next(iter(inst.members.items())))
                raise CollectiveError(f"{first.label()}: {err}") from None
        self.collectives = CollectiveTable(self, instances)
        self._pairs_by_send: dict[tuple[int, int], P2PPair] = {}
        self._pairs_by_recv: dict[tuple[int, int], P2PPair] = {}
        for pair in graph.p2p_pairs():
            self._pairs_by_send[(pair.src, pair.send_id)] = pair
            self._pairs_by_recv[(pair.dst, pair.recv_id)] = pair
        self._arrived: dict[tuple[int, int], float] = {}   # recv key -> data arrival time
        self._send_start: dict[tuple[int, int], float] = {}
        self._posted: dict[tuple[int, int], float] = {}     # recv key -> posting time
        self._pending: list[dict[int, int]] = []
        self._dependents: list[dict[int, list[int]]] = []
        self.records: list[OpRecord] = []
        self._by_id = self.options.issue_order is IssueOrder.NODE_ID
        self._message_cost: MessageCost | None = None
        self.folded_durations: dict[tuple, float] = {}
        self.gpus = [Gpu(self, r, self.options.speed.get(r, 1.0)) for r in range(graph.num_ranks)]
        self._done = 0
        self._total = len(graph)
        self._progress: Callable[[int, int], None] | None = None

    # ------------------------------------------------------------------ choices
    def algorithm_for(self, inst: CollectiveInstance) -> str:
        """The algorithm ``inst`` runs (see :func:`des.sim.choices.algorithm_for`)."""
        return algorithm_for(inst, self.topology, self.options)

    @property
    def message_cost(self) -> MessageCost:
        """Closed-form message costs on this topology (for folded collectives)."""
        if self._message_cost is None:
            self._message_cost = MessageCost(self.topology, self.options)
        return self._message_cost

    def logical_dims(self, group: tuple[int, ...]) -> tuple[int, ...] | None:
        """The group's logical dimensions (see :func:`des.sim.choices.logical_dims`)."""
        return logical_dims(self.topology, group)

    def local_time(self, node: Node) -> float:
        """Duration of a compute or memory node at full speed, in ns."""
        try:
            return local_time(node, self.hardware, self.options)
        except ModelError as err:
            raise SimulationError(str(err)) from None

    # ------------------------------------------------------------------ running
    def run(self, progress: Callable[[int, int], None] | None = None) -> Result:
        """Simulate to completion; ``progress(done_nodes, total_nodes)`` is called now and then."""
        self._progress = progress
        wall = time.perf_counter()
        saved = [(lk.up, lk.derate) for lk in self.topology.links]
        try:
            self._run()
        finally:  # timed faults must not leak into the caller's topology
            for lk, (up, derate) in zip(self.topology.links, saved, strict=True):
                lk.up, lk.derate = up, derate
            self.topology.invalidate_routes()
        if progress:
            progress(self._done, self._total)
        wall = time.perf_counter() - wall
        log.info("simulated %d nodes, %d hops in %.3f s", self._total, self.transport.hops, wall)
        return build_result(self, wall_seconds=wall)

    def _run(self) -> None:
        for rank in range(self.graph.num_ranks):
            pending: dict[int, int] = {}
            dependents: dict[int, list[int]] = defaultdict(list)
            for node in self.graph.nodes(rank):
                pending[node.id] = len(node.deps)
                for dep in node.deps:
                    dependents[dep].append(node.id)
            self._pending.append(pending)
            self._dependents.append(dependents)
        try:
            for rank in range(self.graph.num_ranks):
                for node in self.graph.nodes(rank):
                    if not node.deps:
                        self._ready(node)
            self.env.run()
        except TopologyError as err:
            raise SimulationError(f"at t={self.env.now:.0f} ns: {err}") from None
        if self._done != self._total:
            raise SimulationError(self._diagnose_stall())

    def _fault_process(self, fault: LinkFault):
        """SimPy process: apply a timed fault at ``at_ns`` and lift it at ``until_ns``. Going
        down reroutes what is queued on the links; a derate affects later messages only."""
        yield self.env.timeout(fault.at_ns)
        ids = set_fault(self.topology, fault, active=True)
        log.info("t=%.0f ns: %s", self.env.now, fault.label())
        if fault.down:
            for link_id in ids:
                self.transport.link_down(link_id)
        if fault.until_ns is not None:
            yield self.env.timeout(fault.until_ns - fault.at_ns)
            set_fault(self.topology, fault, active=False)
            log.info("t=%.0f ns: %s lifted", self.env.now, fault.label())

    def _ready(self, node: Node) -> None:
        kind = node.kind
        gpu = self.gpus[node.rank]
        item = simpy.PriorityItem(node.id, node) if self._by_id else node
        if kind is NodeKind.COMPUTE or kind is NodeKind.MEMORY:
            gpu.compute_queue.put(item)
        elif kind is NodeKind.COLLECTIVE:
            gpu.comm_queue.put(item)
        elif kind is NodeKind.SEND:
            if self.options.sends_use_comm_stream:
                gpu.comm_queue.put(item)
            else:
                self.start_send(node)
        else:
            self._post_recv(node)

    def finish(self, node: Node, start: float, stream: str) -> None:
        """Record a finished node and release its dependents."""
        self.records.append(OpRecord(node.rank, node.id, node.name, node.kind.value, stream,
                                     start, self.env.now, node.category))
        self._done += 1
        if self._progress and self._done % self.options.progress_every == 0:
            self._progress(self._done, self._total)
        pending = self._pending[node.rank]
        graph_nodes = self.graph.node
        for dep_id in self._dependents[node.rank].get(node.id, ()):
            pending[dep_id] -= 1
            if pending[dep_id] == 0:
                self._ready(graph_nodes(node.rank, dep_id))

    # ------------------------------------------------------------------ point to point
    def start_send(self, node: Node) -> simpy.Event:
        """Start a send now; the event fires when its last byte has landed."""
        pair = self._pairs_by_send[(node.rank, node.id)]
        self._send_start[(pair.dst, pair.recv_id)] = self.env.now
        flow = _P2PFlow(self, node, pair)
        flow.start()
        return flow.done

    def _send_delivered(self, node: Node, pair: P2PPair, start: float) -> None:
        self.finish(node, start, "comm" if self.options.sends_use_comm_stream else "p2p")
        key = (pair.dst, pair.recv_id)
        self._arrived[key] = self.env.now
        if key in self._posted:
            self._complete_recv(key)

    def _post_recv(self, node: Node) -> None:
        key = (node.rank, node.id)
        self._posted[key] = self.env.now
        if key in self._arrived:
            self._complete_recv(key)

    def _complete_recv(self, key: tuple[int, int]) -> None:
        # A receive counts as communication from when both sides were ready, not from posting:
        # waiting for a late sender is idle time, not time on the wire.
        posted, sent = self._posted.pop(key), self._send_start.pop(key)
        start = posted if self.options.recv_busy_from_post else max(posted, sent)
        self._arrived.pop(key)
        self.finish(self.graph.node(*key), start, "p2p")

    # ------------------------------------------------------------------ stalls
    def _diagnose_stall(self) -> str:
        lines = [f"simulation stalled at t={self.env.now:.0f} ns with "
                 f"{self._total - self._done} of {self._total} nodes unfinished:"]
        for run in self.collectives.runs.values():
            missing = run.waiting_for()
            if missing and len(missing) < len(run.inst.group):
                joined = sorted(set(run.inst.group) - set(missing))
                blockers = []
                for r in missing[:4]:
                    busy = [f"{s}: {n.label()}" for s, n in self.gpus[r].busy_with.items() if n]
                    blockers.append(f"rank {r} busy with {busy or 'nothing (deps pending)'}")
                lines.append(
                    f"  collective #{run.inst.seq} ({run.inst.collective}) on "
                    f"{list(run.inst.group)}: ranks {joined} joined, {missing} did not; "
                    + "; ".join(blockers))
        for key in list(self._posted)[:8]:
            lines.append(f"  {self.graph.node(*key).label()} waits for a send that never started")
        return "\n".join(lines[:40])


def simulate(topology: Topology, graph: EventGraph, *, hardware: hw.GpuSpec | None = None,
             options: EngineOptions | None = None,
             progress: Callable[[int, int], None] | None = None) -> Result:
    """Build a :class:`Simulator` and run it."""
    return Simulator(topology, graph, hardware=hardware, options=options).run(progress)
