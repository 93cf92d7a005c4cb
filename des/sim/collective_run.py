"""Running collectives: chunks of a step program, per-dimension queues, endpoint overheads.

Timing (see :mod:`collectives.base` for the step-program contract): a chunk starting a phase
(its first step, or a step in another logical dimension) waits for a slot in that dimension
(at most ``chunks_in_flight`` chunks of a rank per dimension, FIFO) and then pays the endpoint
delay E; a step's sends leave at once; the step ends when its last receive has arrived plus
E + reduction time (3 x reduced bytes / reduction bandwidth). Because a step's receivers know
that overhead, it travels with the messages as a post-delivery delay, so a ring step costs one
SimPy event, not two. With E = 0 and free reductions (the default model) steps follow each
other back to back.
"""

from __future__ import annotations

import math
from collections import defaultdict, deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from collectives.base import CollectivePlan, Step, make_plan, plan_class
from des.core.graph import CollectiveInstance, CollectiveType, Node
from des.sim.choices import step_overhead
from des.sim.costs import MessageCost, collective_time
from des.sim.lockstep import LockstepBatch
from des.sim.options import Chunking, EngineOptions
from des.sim.transport import Message

if TYPE_CHECKING:
    from des.sim.clock import SimPyClock
    from des.sim.engine import ContendedModel
    from des.sim.runtime import Clock


class _RankPart:
    """One rank's progress through a collective run."""

    __slots__ = ("busy", "closed", "done", "early", "finished", "holding", "joined", "need",
                 "node", "outstanding", "queue", "started", "step")

    def __init__(self, node: Node, chunks: int) -> None:
        self.node = node
        self.done: Callable[[], None] | None = None
        self.closed = False
        self.joined = False
        self.step = [0] * chunks        # step each chunk is on
        self.need = [0] * chunks        # receives it still waits for in that step
        self.started = [0.0] * chunks   # when that step began
        self.holding = [-1] * chunks    # dimension slot the chunk holds, -1 = none
        self.early: dict[tuple[int, int], int] = defaultdict(int)
        self.busy: dict[int, int] = defaultdict(int)
        self.queue: dict[int, deque[tuple[int, int]]] = defaultdict(deque)
        self.outstanding = 0
        self.finished = 0


def chunk_layout(collective: CollectiveType, nbytes: float, group_size: int, npus: int,
                 chunks: int, chunking: Chunking, chunk_bytes: float | None = None
                 ) -> tuple[int, float]:
    """(number of chunks, bytes per chunk) for a collective of ``nbytes``.

    ``split``: ``chunks`` equal pieces, or with ``chunk_bytes`` as many equal pieces as it
    takes for none to exceed it. ``astra``: AstraSim's Sys::determine_chunk_size: chunk =
    floor(size / splits), at least one byte per NPU of the system except for all-gather, every
    chunk full-size; AstraSim sizes an all-gather by its input, so it is converted both ways.
    """
    if nbytes <= 0:
        return 1, 0.0
    if chunking is Chunking.SPLIT:
        if chunk_bytes:
            chunks = max(1, math.ceil(nbytes / chunk_bytes))
        return chunks, nbytes / chunks
    gather = collective is CollectiveType.ALL_GATHER
    size = int(nbytes // group_size) if gather else int(nbytes)
    chunk = size // chunks
    if not gather and npus > chunk:
        chunk = npus
        size = chunks * chunk
    chunk = max(chunk, 1)
    count = math.ceil(size / chunk)
    return count, float(chunk * group_size if gather else chunk)


class CollectiveRun:
    """One collective instance being executed: its plan, chunks and every member's progress."""

    def __init__(self, model: ContendedModel, inst: CollectiveInstance, plan_algorithm: str,
                 dims: tuple[int, ...] | None, folded: bool = False) -> None:
        opts = model.options
        self.model = model
        self.options = opts
        self.clock: SimPyClock = model.clock
        self.env = model.clock.env
        self.send = model.transport.send
        self.inst = inst
        # folded: the group runs over its full span, simulated for its representative only,
        # whose message to offset o stands for its receive from offset -o (des.core.fold)
        self.folded = folded
        members = inst.span if folded else inst.group
        self.chunks, self.chunk_bytes = chunk_layout(
            inst.collective, inst.nbytes, len(members), model.topology.num_npus, opts.chunks,
            opts.chunking, opts.chunk_bytes)
        self.plan: CollectivePlan = model.plan(inst, members, self.chunk_bytes, plan_algorithm,
                                               dims)
        self.limit = opts.chunks_in_flight
        self.endpoint = opts.endpoint_delay_ns
        self.wait_for_sends = opts.sends_complete_collective
        self.has_overhead = self.endpoint > 0 or opts.reduction_bandwidth is not None
        self._overheads: dict[float, float] = {}
        self.multi_dim = self.plan.multi_dim
        self.uniform = self.plan.uniform_steps
        self.parts: dict[int, _RankPart] = {}
        self.first_join = math.inf
        self.last_done = 0.0
        self.bytes_injected = 0.0  # what its messages carried, sent and delivered (members
        self.bytes_delivered = 0.0  # mirrored by a lockstep batch included)
        self.joined_done: dict[int, Callable[[], None]] = {}  # join order
        # a plan that lockstep batching could run: the first member's start waits for the end
        # of the instant it joined in, to see whether every member joins then (see
        # des.sim.lockstep). That wait does not depend on whether batching is on: it decides
        # where the members' first sends fall in the instant's event order, which a run that
        # batches must share with the run that simulates every message. Likewise, members
        # that finish in one instant are released together at its end, in the order they
        # joined: a batch finishes every member at once and cannot know the order the members'
        # own last events would have had. A folded run follows the same rules, so that it
        # times as the unfolded run it stands for.
        self.batch: LockstepBatch | None = None
        self._pending: list[int] | None = None
        self._symmetric = len(members) > 1 and self.plan.translation_dims() is not None
        self._gather = self._symmetric
        self._lockstep = opts.lockstep and not folded
        self._closing: list[int] = []  # members done in this instant, not yet released

    # ------------------------------------------------------------------ bookkeeping
    def part(self, rank: int) -> _RankPart:
        part = self.parts.get(rank)
        if part is None:
            node = self.model.graph.node(rank, self.inst.members[rank])
            part = _RankPart(node, self.chunks)
            self.parts[rank] = part
        return part

    def overhead(self, step: Step) -> float:
        """Endpoint delay plus reduction time after a step's receives (cached per size)."""
        extra = self._overheads.get(step.reduce_bytes)
        if extra is None:
            extra = self._overheads[step.reduce_bytes] = step_overhead(step, self.options)
        return extra

    def graph_node(self, rank: int) -> Node:
        """The collective's node on ``rank``."""
        return self.model.graph.node(rank, self.inst.members[rank])

    def _later(self, delay: float, action, *args) -> None:
        if self.batch is not None:
            self.batch.later(self.env._now + delay, action, args)
        else:
            self.clock.call_at(self.env._now + delay, action, *args)

    def waiting_for(self) -> list[int]:
        """Members that have not joined yet (for deadlock reports)."""
        return [r for r in self.inst.group if r not in self.joined_done]

    # ------------------------------------------------------------------ flow
    def join(self, rank: int, done: Callable[[], None]) -> None:
        """``rank`` joins now; ``done()`` is called when its part is over."""
        self.joined_done[rank] = done
        self.first_join = min(self.first_join, self.env._now)
        if self._gather:  # wait for the decision at the end of this instant
            if self._pending is None:
                self._pending = []
                self.clock.call_at(self.env._now, self._decide)
            self._pending.append(rank)
            return
        self._start(rank)

    def _decide(self) -> None:
        """Every member that joins in the first member's instant has joined: batch the run
        when all have and the topology proves the symmetry, else start them one by one."""
        self._gather = False
        pending, self._pending = self._pending or [], []
        if self._lockstep and len(pending) == len(self.inst.group):
            symmetry = self.model.symmetry(self.plan)
            if symmetry is not None and LockstepBatch.links_idle(symmetry, self.model.transport,
                                                                 self.env._now):
                self.batch = LockstepBatch(self, symmetry, self.model.transport)
                self.send = self._send_batched
                self._start(self.inst.group[0])
                return
        for rank in pending:
            self._start(rank)

    def _send_batched(self, src: int, dst: int, nbytes: float, handler, tag, context,
                      flow: int, post_delay: float) -> Message:
        msg = self.model.transport.send(src, dst, nbytes, handler, tag, context, flow,
                                        post_delay)
        self.batch.sent(msg)
        return msg

    def unbatch(self) -> None:
        """Back to message-by-message simulation (called by the batch when it falls back)."""
        self.batch = None
        self.send = self.model.transport.send

    def _start(self, rank: int) -> None:
        part = self.part(rank)
        part.joined = True
        part.done = self.joined_done[rank]
        for chunk in range(self.chunks):
            self._enter(rank, part, chunk, 0)
        self._check_done(rank, part)

    def _enter(self, rank: int, part: _RankPart, chunk: int, k: int) -> None:
        """Chunk ``chunk`` may start step ``k``: take the step's dimension slot first."""
        plan = self.plan
        if k >= plan.num_steps(rank):
            if part.holding[chunk] >= 0:
                self._release(rank, part, part.holding[chunk])
                part.holding[chunk] = -1
            part.finished += 1
            self._check_done(rank, part)
            return
        dim = plan.step(rank, k).dim
        if part.holding[chunk] == dim:
            self._run_step(rank, part, chunk, k)
            return
        if part.holding[chunk] >= 0:
            self._release(rank, part, part.holding[chunk])
            part.holding[chunk] = -1
        if self.limit and part.busy[dim] >= self.limit:
            part.step[chunk] = k - 1 if k else 0
            part.queue[dim].append((chunk, k))
            return
        self._take(rank, part, dim, chunk, k)

    def _take(self, rank: int, part: _RankPart, dim: int, chunk: int, k: int) -> None:
        part.busy[dim] += 1
        part.holding[chunk] = dim
        if self.endpoint > 0:  # a phase starts with an endpoint delay (AstraSim: stream init)
            self._later(self.endpoint, self._run_step, rank, part, chunk, k)
        else:
            self._run_step(rank, part, chunk, k)

    def _release(self, rank: int, part: _RankPart, dim: int) -> None:
        part.busy[dim] -= 1
        waiting = part.queue.get(dim)
        if waiting:
            chunk, k = waiting.popleft()
            self._take(rank, part, dim, chunk, k)

    def _run_step(self, rank: int, part: _RankPart, chunk: int, k: int) -> None:
        """Run steps of ``chunk`` from ``k`` on while their receives are already in. This and
        :meth:`_delivered` are the per-message hot path: keep them lean."""
        plan, send, delivered = self.plan, self.send, self._delivered
        step_of = plan.step
        now = self.env._now  # the property costs a call per message
        steps = plan.num_steps(rank)
        overhead = self.has_overhead
        while True:
            step = step_of(rank, k)
            part.step[chunk] = k
            part.started[chunk] = now
            tag = (chunk, k)
            sends = step.sends
            if sends:
                if self.wait_for_sends:
                    part.outstanding += len(sends)
                injected = 0.0
                if not overhead or self.uniform:  # every receiver's step k costs what ours does
                    post = self.overhead(step) if overhead else 0.0
                    for peer, nbytes in sends:
                        injected += nbytes
                        send(rank, peer, nbytes, delivered, tag, self, 0, post)
                else:
                    for peer, nbytes in sends:
                        injected += nbytes
                        send(rank, peer, nbytes, delivered, tag, self, 0,
                             self.overhead(step_of(peer, k)))
                self.bytes_injected += injected
            early = part.early
            needed = len(step.recvs) - (early.pop(tag, 0) if early else 0)
            if needed > 0:
                part.need[chunk] = needed
                return
            if step.recvs and overhead:  # everything came early: pay the overhead now
                self._later(self.overhead(step), self._enter, rank, part, chunk, k + 1)
                return
            k += 1
            if k >= steps or (self.multi_dim and step_of(rank, k).dim != part.holding[chunk]):
                self._enter(rank, part, chunk, k)
                return

    def _delivered(self, msg: Message) -> None:
        chunk, k = msg.tag
        dst = msg.dst
        self.bytes_delivered += msg.nbytes
        if self.batch is not None:  # the representative's message stands for its own receive
            self.batch.delivered(msg)
            dst = msg.src
        elif self.folded:
            dst = msg.src
        part = self.parts.get(dst) or self.part(dst)
        if part.need[chunk] and part.step[chunk] == k:  # the step it belongs to is running
            part.need[chunk] -= 1
            if not part.need[chunk]:
                # the overhead rode on the message; a step that began after the data arrived
                # still owes it in full from its own start
                owed = part.started[chunk] + msg.post_delay - self.env._now
                if owed > 0:
                    self._later(owed, self._enter, dst, part, chunk, k + 1)
                elif self.multi_dim or k + 1 >= self.plan.num_steps(dst):
                    self._enter(dst, part, chunk, k + 1)
                else:
                    self._run_step(dst, part, chunk, k + 1)
        else:
            part.early[(chunk, k)] += 1
        if self.wait_for_sends:
            sender = self.parts[msg.src]
            sender.outstanding -= 1
            self._check_done(msg.src, sender)

    def _check_done(self, rank: int, part: _RankPart) -> None:
        if (part.joined and part.finished == self.chunks and not part.closed
                and (part.outstanding == 0 or not self.wait_for_sends)):
            self.last_done = max(self.last_done, self.env._now)
            part.closed = True
            if self.batch is not None:  # the representative is done: so is every member
                self.batch.finish()
                self.unbatch()
                self._close(self.inst.group)
            elif self._symmetric:
                self._close((rank,))
            else:
                part.done()

    def _close(self, ranks: tuple[int, ...]) -> None:
        """``ranks`` are done now: release them with any others done in this instant, at its
        end, in join order."""
        if not self._closing:
            self.clock.call_at(self.env._now, self._release_closed)
        self._closing.extend(ranks)

    def _release_closed(self) -> None:
        closing, self._closing = self._closing, []
        if len(closing) > 1:
            order = {rank: i for i, rank in enumerate(self.joined_done)}
            closing.sort(key=order.__getitem__)
        joined = self.joined_done
        for rank in closing:
            joined[rank]()


def closed_form_plan(inst: CollectiveInstance, plan_algorithm: str, options: EngineOptions,
                     npus: int, dims: tuple[int, ...] | None
                     ) -> tuple[int, float, CollectivePlan]:
    """(chunks, bytes per chunk, step plan) of a collective over its full span as the closed
    form times it (and as its links are charged when no message moved,
    :mod:`des.sim.link_traffic`): the engine's chunk layout, a node program whole."""
    span = inst.span or inst.group
    chunks, chunk_bytes = chunk_layout(inst.collective, inst.nbytes, len(span), npus,
                                       options.chunks, options.chunking, options.chunk_bytes)
    if plan_class(inst.collective, plan_algorithm).node_program:  # runs whole
        chunks, chunk_bytes = 1, inst.nbytes
    plan = make_plan(inst.collective, span, chunk_bytes, plan_algorithm, dims=dims,
                     root=inst.root, options=options.plan_options)
    return chunks, chunk_bytes, plan


class ClosedFormCollective:
    """A collective timed in closed form: its members start together when the last one joins
    and all finish after the uncontended time of the collective over its full group
    (:func:`des.sim.costs.collective_time`). The closed-form model runs every collective this
    way; the contended model runs folded collectives (a group standing for a larger span of
    symmetric peers that are not simulated) this way, which is exact when the span's traffic
    has its links to itself, as tensor-parallel groups inside an NVSwitch domain do."""

    bytes_injected = bytes_delivered = None  # it moves no messages

    def __init__(self, options: EngineOptions, npus: int, clock: Clock, inst: CollectiveInstance,
                 plan_algorithm: str, dims: Callable[[], tuple[int, ...] | None],
                 cost: MessageCost, durations: dict[tuple, tuple[int, float, float]]) -> None:
        """``durations`` caches (chunks, chunk bytes, time) per shape across a model's runs: the
        same collective recurs every layer, so a repeat is one lookup. ``dims`` gives the
        logical dimensions, asked only when the shape is new."""
        self.clock = clock
        self.inst = inst
        span = inst.span or inst.group
        key = (inst.collective, inst.nbytes, span, plan_algorithm, inst.root)
        shape = durations.get(key)
        if shape is None:
            chunks, chunk_bytes, plan = closed_form_plan(inst, plan_algorithm, options, npus,
                                                         dims())
            shape = durations[key] = (chunks, chunk_bytes, collective_time(
                plan, chunks, options.chunks_in_flight, cost,
                lambda st: step_overhead(st, options), options.endpoint_delay_ns))
        self.chunks, self.chunk_bytes, self.duration = shape
        self.joined: dict[int, Callable[[], None]] = {}
        self.first_join = math.inf
        self.last_done = 0.0

    def join(self, rank: int, done: Callable[[], None]) -> None:
        """``rank`` joins; every member's ``done`` is called ``duration`` after the last joins."""
        now = self.clock.now
        self.joined[rank] = done
        self.first_join = min(self.first_join, now)
        if len(self.joined) == len(self.inst.group):
            self.last_done = now + self.duration
            self.clock.call_at(self.last_done, self._finish)

    def _finish(self) -> None:
        for done in self.joined.values():
            done()

    def waiting_for(self) -> list[int]:
        """Members that have not joined yet (for deadlock reports)."""
        return [r for r in self.inst.group if r not in self.joined]
