"""Ring algorithms: reduce-scatter, all-gather, all-reduce (one or both directions) and the
relay all-to-all.

On a group of n ranks in group order, each step every rank sends one slice to its ring successor
and receives one from its predecessor. Reduce-scatter and all-gather take n-1 steps of S/n bytes;
all-reduce is the two in sequence, 2(n-1) steps, so an uncontended ring all-reduce takes
2(n-1)(alpha + S/(n B)) (Patarasuk & Yuan, JPDC 2009; the NCCL ring). The bidirectional variant
runs half the data each way round the ring in the same steps, using both directions of every
cable. The relay all-to-all (AstraSim's ring all-to-all) forwards every piece hop by hop along
the ring to its destination, n(n-1)/2 steps in all.

This module also holds the lockstep helpers other algorithms' closed forms share:
:func:`uniform_time` and :func:`lockstep_time`.
"""

from __future__ import annotations

from collections.abc import Iterable

from collectives.base import (
    CollectivePlan,
    MessageTime,
    Step,
    StepOverhead,
    register,
)
from des.core.graph import CollectiveType

Message = tuple[int, int, float]
"""``(src, dst, bytes)``."""


def uniform_time(message_time: MessageTime, messages: Iterable[Message]) -> float | None:
    """The time every one of ``messages`` takes if they all take exactly the same, else None
    (also None when there are no messages)."""
    common: float | None = None
    for src, dst, nbytes in messages:
        t = message_time(src, dst, nbytes)
        if common is None:
            common = t
        elif t != common:
            return None
    return common


def lockstep_time(phases: Iterable[tuple[int, float, float]], start: float) -> float:
    """Finish time of a plan whose ranks all run the same steps at the same time.

    Each phase is ``(count, message, overhead)``: ``count`` steps whose messages all take
    ``message`` ns and whose overhead is ``overhead`` ns. For non-negative times this is exactly
    what :func:`~collectives.base.dry_run` computes for such a plan (every rank starts step k+1
    at ``begin + message + overhead``, after its own sends have landed), in O(phases).
    """
    t = start
    for count, message, overhead in phases:
        t += count * (message + overhead)
    return t


@register(CollectiveType.ALL_REDUCE, "ring")
@register(CollectiveType.REDUCE_SCATTER, "ring")
@register(CollectiveType.ALL_GATHER, "ring")
class Ring(CollectivePlan):
    """Ring reduce-scatter, all-gather and all-reduce, one direction (Patarasuk & Yuan 2009).

    Steps: reduce-scatter n-1 (each reduces the S/n slice it receives), all-gather n-1 (S is
    the gathered output, S/n per message), all-reduce 2(n-1) (reduction on the first n-1).
    ``options.astra`` changes nothing: AstraSim's ring moves and reduces the same bytes
    (``integer_sizes`` gives its floored c//n slices).
    """

    algorithm = "ring"
    supports = frozenset({CollectiveType.ALL_REDUCE, CollectiveType.REDUCE_SCATTER,
                          CollectiveType.ALL_GATHER})
    uniform_steps = True
    cyclic = True
    directions = 1

    def _prepare(self) -> None:
        n = self.size
        passes = {
            CollectiveType.ALL_REDUCE: (1, 1),
            CollectiveType.REDUCE_SCATTER: (1, 0),
            CollectiveType.ALL_GATHER: (0, 1),
        }[self.collective]
        self.reduce_steps = passes[0] * (n - 1)
        self.gather_steps = passes[1] * (n - 1)
        # bytes of one message; with two directions each carries half a slice, except on two
        # ranks, where both halves go to the one neighbour as a single message
        self.message = self.split(self.nbytes, self.directions * n)
        if self.directions == 2 and n == 2:
            self.message *= 2
        self._cache: dict[tuple[int, bool], Step] = {}

    def num_steps(self, rank: int) -> int:
        return self.reduce_steps + self.gather_steps

    def _neighbours(self, i: int) -> tuple[int, int]:
        n = self.size
        return self.group[(i + 1) % n], self.group[(i - 1) % n]

    def _messages(self, i: int) -> tuple[tuple[tuple[int, float], ...],
                                         tuple[tuple[int, float], ...]]:
        """(sends, recvs) of position ``i`` in every step."""
        nxt, prv = self._neighbours(i)
        m = self.message
        if self.directions == 1 or self.size == 2:
            return ((nxt, m),), ((prv, m),)
        return ((nxt, m), (prv, m)), ((prv, m), (nxt, m))

    def step(self, rank: int, k: int) -> Step:
        i = self.position[rank]
        reducing = k < self.reduce_steps
        key = (i, reducing)
        step = self._cache.get(key)
        if step is None:
            sends, recvs = self._messages(i)
            reduce = sum(b for _, b in recvs) if reducing else 0.0
            step = self._cache[key] = Step(sends, recvs, reduce)
        return step

    def closed_form(self, message_time: MessageTime, overhead: StepOverhead,
                    start: float = 0.0) -> float:
        """``start + sum over steps of (T + overhead)`` when every ring edge (both directions
        for the bidirectional ring) takes the same time T; else the exact longest path
        (:func:`~collectives.base.dry_run`), since a pipelined ring with one slow edge is not
        simply its slowest edge times the steps."""
        if self.size < 2:
            return start
        edges = [(self.group[i], peer, b) for i in range(self.size)
                 for peer, b in self._messages(i)[0]]
        t = uniform_time(message_time, edges)
        if t is None:
            return super().closed_form(message_time, overhead, start)
        first = self.group[0]
        phases = [(count, t, overhead(self.step(first, k)))
                  for count, k in ((self.reduce_steps, 0), (self.gather_steps, self.reduce_steps))
                  if count]
        return lockstep_time(phases, start)


@register(CollectiveType.ALL_REDUCE, "ring_bidir")
@register(CollectiveType.REDUCE_SCATTER, "ring_bidir")
@register(CollectiveType.ALL_GATHER, "ring_bidir")
class BidirectionalRing(Ring):
    """Bidirectional ring reduce-scatter, all-gather and all-reduce (Patarasuk & Yuan 2009).

    The buffer is split in two halves: one runs the ring clockwise, the other counter-clockwise,
    in the same steps, so each step sends S/(2n) to both neighbours and receives S/(2n) from
    both. Step counts are those of :class:`Ring`; bandwidth-bound time is about half, as both
    directions of every ring cable carry data. On two ranks both halves go to the one neighbour
    as a single message. Not an AstraSim algorithm; ``options.astra`` changes nothing.
    """

    algorithm = "ring_bidir"
    directions = 2


@register(CollectiveType.ALL_TO_ALL, "ring")
class RingAllToAll(CollectivePlan):
    """Relay all-to-all along a one-way ring (AstraSim's ring all-to-all).

    Every piece of S/n bytes travels hop by hop to its destination through the ring successor:
    n(n-1)/2 sequential steps, each sending one S/n piece to the successor and receiving one from
    the predecessor (the piece-hops, sum of d for d = 1..n-1, spread evenly over the ranks). No
    reduction. ``options.astra`` changes nothing.
    """

    algorithm = "ring"
    supports = frozenset({CollectiveType.ALL_TO_ALL})
    uniform_steps = True

    def _prepare(self) -> None:
        self.message = self.split(self.nbytes, self.size)
        self.steps = self.size * (self.size - 1) // 2
        self._cache: dict[int, Step] = {}

    def num_steps(self, rank: int) -> int:
        return self.steps

    def step(self, rank: int, k: int) -> Step:
        i = self.position[rank]
        step = self._cache.get(i)
        if step is None:
            n = self.size
            nxt, prv = self.group[(i + 1) % n], self.group[(i - 1) % n]
            step = self._cache[i] = Step(((nxt, self.message),), ((prv, self.message),))
        return step

    def closed_form(self, message_time: MessageTime, overhead: StepOverhead,
                    start: float = 0.0) -> float:
        """``start + n(n-1)/2 (T + overhead)`` when every ring edge takes the same T; else
        :func:`~collectives.base.dry_run`."""
        if self.size < 2:
            return start
        n = self.size
        t = uniform_time(message_time, ((self.group[i], self.group[(i + 1) % n], self.message)
                                        for i in range(n)))
        if t is None:
            return super().closed_form(message_time, overhead, start)
        return lockstep_time([(self.steps, t, overhead(self.step(self.group[0], 0)))], start)
