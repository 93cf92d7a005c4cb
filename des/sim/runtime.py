"""The one runtime: runs an event graph on a clock, driven by a communication model.

Every scheduling rule of des lives here, once, for every backend: when a node is ready, which
stream takes it and when, send/recv pairing, what each op record says, and the Result. What
differs between backends is only how communication is timed, which a :class:`CommModel` decides:
the contended model (:mod:`des.sim.engine`: SimPy links and switches, chunked collectives,
faults) or the closed-form model (:mod:`des.sim.analytical`: uncontended closed forms on a plain
heap).

Timing rules (graph rank r runs on NPU r):

* A node is ready when all its dependencies have finished.
* Each rank has one compute stream (compute and memory nodes) and ``comm_streams`` communication
  streams (collectives, and sends when ``sends_use_comm_stream``). A free stream takes the ready
  node that became ready first (``issue_order=ready``, ties by readiness order) or the one with
  the lowest id (``node_id``, AstraSim's issue order); of several free communication streams the
  one idle longest takes it.
* A compute or memory node holds its stream for its roofline (or explicit) time divided by the
  rank's speed factor (a straggler has speed < 1).
* A collective holds its stream from the rank's joining until the model says the rank's part is
  done; a send on a communication stream holds it until its last byte lands.
* Sends not on a stream start the moment they are ready (NCCL send/recv in a group call); a
  receive completes when both it is posted and its data has landed, and counts as communication
  from when both sides were ready (or from posting, ``recv_busy_from_post``: AstraSim's
  statistics).
* A node that can never run (a deadlock the graph check cannot see, such as two collectives
  waiting for each other's stream) ends the run with :class:`SimulationError` naming the ranks
  and nodes involved, never a hang.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import replace
from functools import partial
from heapq import heappop, heappush
from operator import attrgetter
from typing import Any, Protocol

from collectives.base import CollectiveError, check_algorithm
from des.core import hardware as hw
from des.core.gc_pause import cyclic_gc_paused
from des.core.graph import CollectiveInstance, EventGraph, Node, NodeKind, P2PPair
from des.core.results import (
    CollectiveStats,
    LinkStats,
    OpRecord,
    Result,
    bus_factor,
    rank_stats,
)
from des.sim.choices import ModelError, algorithm_for, local_time
from des.sim.options import EngineOptions, IssueOrder
from topologies.base import Topology

_COMPUTE, _MEMORY, _COLLECTIVE, _SEND = (NodeKind.COMPUTE, NodeKind.MEMORY, NodeKind.COLLECTIVE,
                                         NodeKind.SEND)  # enum attribute reads cost a call
_KIND_NAME = {kind: kind.value for kind in NodeKind}  # so does .value
_OP_ORDER = attrgetter("rank", "start_ns", "node")


class SimulationError(RuntimeError):
    """The simulation could not finish (e.g. a deadlock); the message names ranks and nodes."""


class ConservationError(RuntimeError):
    """The run delivered a different number of bytes than its senders injected: a bug in the
    engine (never bad input), named with the difference."""


class Clock(Protocol):
    """What the runtime needs of an event loop (:mod:`des.sim.clock`)."""

    @property
    def now(self) -> float: ...

    def call_at(self, when: float, fn: Callable[..., Any], *args: Any) -> None: ...

    def run(self) -> None: ...


class CollectiveProgress(Protocol):
    """What the runtime reads of a collective a model is running (for stats and stalls)."""

    inst: CollectiveInstance
    first_join: float
    last_done: float

    def waiting_for(self) -> list[int]: ...


class CommModel(Protocol):
    """How communication is timed. A model owns the clock the runtime runs on; it calls
    ``done()`` when a rank's part of a collective is over and ``landed()`` when a send's last
    byte has arrived, both at the clock's current time."""

    backend: str
    clock: Clock

    def attach(self, runtime: Runtime) -> None:
        """Called once the runtime is built; the model may read its graph and options."""

    def join(self, node: Node, done: Callable[[], None]) -> None:
        """Rank ``node.rank`` starts its part of collective ``node`` now."""

    def send(self, node: Node, pair: P2PPair, landed: Callable[[], None]) -> None:
        """Send ``node`` starts now."""

    def collectives(self) -> Iterable[tuple[CollectiveProgress, str, int]]:
        """Each collective started so far, with the algorithm it ran and its chunk count."""

    def links(self, makespan_ns: float) -> list[LinkStats]:
        """Per-link figures of the run."""

    def meta(self) -> dict[str, Any]:
        """What the model adds to the result's metadata (messages, hops, ...)."""

    def link_activity(self) -> dict[int, list[tuple[float, float]]]:
        """Transmission intervals per link, when recorded."""

    def run(self) -> None:
        """Run the clock to the end (the model may set up and tear down around it)."""

    def traffic(self, run: Any) -> tuple[float, float] | None:
        """(bytes injected, bytes delivered) of a collective's messages, or None when the model
        did not move it as messages."""

    def verify(self) -> None:
        """After a complete run: raise :class:`ConservationError` if bytes were lost or made."""

    def detach(self) -> None:
        """Called once the Result is built: drop the run's collectives and whatever else refers
        back to the runtime, so that they are freed at once, not by the cyclic collector."""


class _Stream:
    """The ready queue and free slots of one kind of stream of one rank."""

    __slots__ = ("busy", "free", "queue")

    def __init__(self, names: Iterable[str], by_id: bool) -> None:
        self.free: deque[str] = deque(names)
        self.queue: list[tuple[int, Node]] | deque[Node] = [] if by_id else deque()
        self.busy: dict[str, Node] = {}


class Runtime:
    """Runs one event graph on one topology with one communication model; :meth:`run` returns
    a :class:`~des.core.results.Result`."""

    def __init__(self, topology: Topology, graph: EventGraph, model: CommModel, *,
                 hardware: hw.GpuSpec | None = None,
                 options: EngineOptions | None = None) -> None:
        with cyclic_gc_paused():
            self._setup(topology, graph, model, hardware, options)

    def _setup(self, topology: Topology, graph: EventGraph, model: CommModel,
               hardware: hw.GpuSpec | None, options: EngineOptions | None) -> None:
        graph.validate(num_npus=topology.num_npus)
        self.topology = topology
        self.graph = graph
        self.hardware = hardware
        self.options = opts = options or EngineOptions()
        self.instances = graph.collective_instances()
        self.algorithms: list[str] = []
        chosen: dict[tuple, str] = {}  # the same collective recurs every layer: choose once
        for inst in self.instances:  # fail before running, not halfway through
            key = (inst.collective, inst.group, inst.span, inst.nbytes, inst.algorithm)
            name = chosen.get(key)
            if name is None:
                name = algorithm_for(inst, topology, opts)
                try:
                    check_algorithm(inst.collective, name)
                except CollectiveError as err:
                    first = graph.node(*next(iter(inst.members.items())))
                    raise CollectiveError(f"{first.label()}: {err}") from None
                chosen[key] = name
            self.algorithms.append(name)
        self.model = model
        self.clock = model.clock
        self._by_id = opts.issue_order is IssueOrder.NODE_ID
        self._launch = opts.collective_launch_ns
        comm_names = [f"comm{i}" for i in range(opts.comm_streams)]
        self._compute = [_Stream(("compute",), self._by_id) for _ in range(graph.num_ranks)]
        self._comm = [_Stream(comm_names, self._by_id) for _ in range(graph.num_ranks)]
        self._speed = [opts.speed.get(r, 1.0) for r in range(graph.num_ranks)]
        fold = graph.fold
        if fold is not None and fold.count > 1:  # both backends report folded ranks as reps
            for rank, speed in opts.speed.items():
                rep, _ = fold.representative(rank)
                if speed != opts.speed.get(rep, 1.0):
                    raise SimulationError(
                        f"rank {rank} has speed {speed} but the representative it is folded "
                        f"onto, rank {rep}, has {opts.speed.get(rep, 1.0)}: a straggler breaks "
                        "the symmetry folding relies on; build the graph unfolded (fold: none)")
        self._pairs_by_send: dict[tuple[int, int], P2PPair] = {}
        for pair in graph.p2p_pairs():
            self._pairs_by_send[(pair.src, pair.send_id)] = pair
        self._arrived: set[tuple[int, int]] = set()          # recv key: data has landed
        self._send_start: dict[tuple[int, int], float] = {}  # recv key -> its send's start
        self._posted: dict[tuple[int, int], float] = {}      # recv key -> posting time
        # recv key -> a ready send waiting for that receive to be posted (rendezvous)
        self._unmatched: dict[tuple[int, int], tuple[Node, tuple[_Stream, str] | None]] = {}
        self._sends_on_stream = opts.sends_use_comm_stream
        self._pending: list[dict[int, int]] = []  # per rank: node id -> deps not yet finished
        self._dependents: list[dict[int, list[Node]]] = []  # per rank: node id -> its dependents
        self.records: list[OpRecord] = []
        self._done = 0
        self._total = len(graph)
        self._progress: Callable[[int, int], None] | None = None
        self._local: dict[tuple, float] = {}
        model.attach(self)

    # ------------------------------------------------------------------ running
    def run(self, progress: Callable[[int, int], None] | None = None) -> Result:
        """Run to completion; ``progress(done_nodes, total_nodes)`` is called now and then."""
        with cyclic_gc_paused():
            return self._run(progress)

    def _run(self, progress: Callable[[int, int], None] | None) -> Result:
        self._progress = progress
        wall = time.perf_counter()
        graph = self.graph
        for rank in range(graph.num_ranks):
            pending: dict[int, int] = {}
            dependents: dict[int, list[Node]] = {}
            for node in graph.nodes(rank):
                deps = node.deps
                pending[node.id] = len(deps)
                for dep in deps:
                    waiting = dependents.get(dep)
                    if waiting is None:
                        dependents[dep] = [node]
                    else:
                        waiting.append(node)
            self._pending.append(pending)
            self._dependents.append(dependents)
        self.clock.call_at(0.0, self._start)
        self.model.run()
        if self._done != self._total:
            raise SimulationError(self._diagnose_stall())
        self.model.verify()
        if progress:
            progress(self._done, self._total)
        result = self._result()
        self._release()
        result.wall_seconds = time.perf_counter() - wall
        return result

    def _release(self) -> None:
        """Drop the run's bookkeeping once the result holds what it needs. The runtime and its
        model refer to each other (and every callback to the runtime), so without this the
        10^5-10^6 objects of a large run would wait for the cyclic collector, which then scans
        and frees them in one go (over a second for a GPT-3 step); reference counting frees
        them now, at a fraction of that."""
        self._pending = []
        self._dependents = []
        self.records = []
        self._pairs_by_send = {}
        self.model.detach()

    def _start(self) -> None:
        """Ready every node without dependencies (inside the clock's run, so a model's errors
        surface the same way whenever they happen)."""
        for rank in range(self.graph.num_ranks):
            for node in self.graph.nodes(rank):
                if not node.deps:
                    self._ready(node)

    def local_time(self, node: Node) -> float:
        """Duration of a compute or memory node at full speed, in ns (cached per shape: the
        same kernels recur every layer and micro-batch)."""
        key = (node.kind, node.op_class, node.duration_ns, node.kernels, node.flops, node.nbytes)
        duration = self._local.get(key)
        if duration is None:
            try:
                duration = self._local[key] = local_time(node, self.hardware, self.options)
            except ModelError as err:
                raise SimulationError(str(err)) from None
        return duration

    def _ready(self, node: Node) -> None:
        kind = node.kind
        if kind is _COMPUTE or kind is _MEMORY:
            stream = self._compute[node.rank]
        elif kind is _COLLECTIVE or (kind is _SEND and self._sends_on_stream):
            stream = self._comm[node.rank]
        elif kind is _SEND:
            self._start_send(node, None)
            return
        else:
            self._post_recv(node)
            return
        if self._by_id:
            heappush(stream.queue, (node.id, node))
        else:
            stream.queue.append(node)
        if stream.free:
            self._dispatch(stream)

    def _dispatch(self, stream: _Stream) -> None:
        queue, free, busy = stream.queue, stream.free, stream.busy
        by_id = self._by_id
        while free and queue:
            node = heappop(queue)[1] if by_id else queue.popleft()
            name = free.popleft()
            busy[name] = node
            now = self.clock.now
            kind = node.kind
            if kind is _COMPUTE or kind is _MEMORY:
                end = now + self.local_time(node) / self._speed[node.rank]
                self.clock.call_at(end, self._stream_done, stream, name, node, now)
            elif kind is _SEND:
                self._start_send(node, (stream, name))
            elif self._launch:  # the stream is taken while the collective's kernel launches
                self.clock.call_at(now + self._launch, self.model.join, node,
                                   partial(self._stream_done, stream, name, node, now))
            else:
                self.model.join(node, partial(self._stream_done, stream, name, node, now))

    def _stream_done(self, stream: _Stream, name: str, node: Node, start: float) -> None:
        self.finish(node, start, name)
        self._free(stream, name)

    def _free(self, stream: _Stream, name: str) -> None:
        del stream.busy[name]
        stream.free.append(name)
        if stream.queue:
            self._dispatch(stream)

    def finish(self, node: Node, start: float, stream: str) -> None:
        """Record a node that ends now and release its dependents."""
        rank = node.rank
        self.records.append(OpRecord(rank, node.id, node.name, _KIND_NAME[node.kind], stream,
                                     start, self.clock.now, node.category))
        self._done += 1
        if self._progress and self._done % self.options.progress_every == 0:
            self._progress(self._done, self._total)
        dependents = self._dependents[rank].get(node.id)
        if dependents:
            pending = self._pending[rank]
            ready = self._ready
            for dep in dependents:
                left = pending[dep.id] - 1
                pending[dep.id] = left
                if not left:
                    ready(dep)

    # ------------------------------------------------------------------ point to point
    def _start_send(self, node: Node, slot: tuple[_Stream, str] | None) -> None:
        pair = self._pairs_by_send[(node.rank, node.id)]
        key = (pair.dst, pair.recv_id)
        if self.options.p2p_rendezvous and key not in self._posted:
            self._unmatched[key] = (node, slot)  # leaves when the receive is posted
            return
        start = self.clock.now
        self._send_start[key] = start
        self.model.send(node, pair, lambda: self._send_landed(node, pair, start, slot))

    def _send_landed(self, node: Node, pair: P2PPair, start: float,
                     slot: tuple[_Stream, str] | None) -> None:
        self.finish(node, start, "p2p" if slot is None else "comm")
        key = (pair.dst, pair.recv_id)
        self._arrived.add(key)
        if key in self._posted:
            self._complete_recv(key)
        if slot is not None:  # the send held a communication stream until it landed
            self._free(*slot)

    def _post_recv(self, node: Node) -> None:
        key = (node.rank, node.id)
        self._posted[key] = self.clock.now
        if key in self._arrived:
            self._complete_recv(key)
        elif key in self._unmatched:
            self._start_send(*self._unmatched.pop(key))

    def _complete_recv(self, key: tuple[int, int]) -> None:
        # A receive counts as communication from when both sides were ready, not from posting:
        # waiting for a late sender is idle time, not time on the wire.
        posted, sent = self._posted.pop(key), self._send_start.pop(key)
        start = posted if self.options.recv_busy_from_post else max(posted, sent)
        self._arrived.discard(key)
        self.finish(self.graph.node(*key), start, "p2p")

    # ------------------------------------------------------------------ results
    def _result(self) -> Result:
        graph, topo, opts = self.graph, self.topology, self.options
        ops = sorted(self.records, key=_OP_ORDER)
        makespan = max((op.end_ns for op in ops), default=0.0)
        collectives = []
        traffic = self.model.traffic
        factors: dict[tuple, tuple[str, float]] = {}  # (type, group size) -> (name, bus factor)
        for run, algorithm, chunks in self.model.collectives():
            inst = run.inst
            members = inst.span or inst.group
            elapsed = run.last_done - run.first_join
            algbw = inst.nbytes / elapsed if elapsed > 0 else 0.0
            injected, delivered = traffic(run) or (None, None)
            shape = (inst.collective, len(members))
            named = factors.get(shape)
            if named is None:
                kind = inst.collective.value
                named = factors[shape] = (kind, bus_factor(kind, len(members)))
            collectives.append(CollectiveStats(
                inst.index, named[0], algorithm, list(members), inst.nbytes,
                chunks, run.first_join, run.last_done, elapsed, algbw,
                algbw * named[1], injected, delivered))
        collectives.sort(key=lambda c: c.index)
        meta = {
            "graph": graph.name, "topology": topo.name, "npus": topo.num_npus,
            "ranks": graph.num_ranks, "nodes": len(graph), "backend": self.model.backend,
            "transport": opts.transport.value,
            "hardware": self.hardware.name if self.hardware else None,
            **self.model.meta(),
            "timed_faults": [f.label() for f in opts.timed_faults],
            "failed_links": [f"{lk.src}->{lk.dst}" for lk in topo.links if not lk.up],
            "derated_links": [f"{lk.src}->{lk.dst}:{lk.derate:g}" for lk in topo.links
                              if lk.up and lk.derate < 1.0],
        }
        ranks = rank_stats(ops, graph.num_ranks)
        if graph.fold is not None and graph.fold.count > 1:  # folded ranks: their figures
            for rank in range(graph.num_ranks):
                rep, _ = graph.fold.representative(rank)
                if rep != rank:
                    ranks[rank] = replace(ranks[rep], represented_by=rep)
        return Result(makespan, ranks, self.model.links(makespan), collectives, ops, meta,
                      self.model.link_activity())

    def _diagnose_stall(self) -> str:
        lines = [f"simulation stalled at t={self.clock.now:.0f} ns: "
                 f"{self._total - self._done} of {self._total} nodes never ran:"]
        for run, _algorithm, _chunks in self.model.collectives():
            missing = run.waiting_for()
            if missing and len(missing) < len(run.inst.group):
                joined = sorted(set(run.inst.group) - set(missing))
                blockers = []
                for r in missing[:4]:
                    busy = [f"{s}: {n.label()}" for stream in (self._compute[r], self._comm[r])
                            for s, n in stream.busy.items()]
                    blockers.append(f"rank {r} busy with {busy or 'nothing (deps pending)'}")
                lines.append(
                    f"  collective #{run.inst.seq} ({run.inst.collective}) on "
                    f"{list(run.inst.group)}: ranks {joined} joined, {missing} did not; "
                    + "; ".join(blockers))
        for key in list(self._posted)[:8]:
            lines.append(f"  {self.graph.node(*key).label()} waits for a send that never started")
        for key, (send, _slot) in list(self._unmatched.items())[:8]:
            lines.append(f"  {send.label()} waits for its receive "
                         f"({self.graph.node(*key).label()}) to be posted (p2p: rendezvous)")
        return "\n".join(lines[:40])

