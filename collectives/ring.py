"""Ring algorithms (one direction): reduce-scatter, all-gather and all-reduce as their sequence.

On a group of n ranks in ring order, each step every rank sends one 1/n slice of the buffer to
its successor and receives one from its predecessor. Reduce-scatter and all-gather take n-1
steps; all-reduce is reduce-scatter then all-gather, 2(n-1) steps, each moving S/n bytes, so an
uncontended ring all-reduce takes 2(n-1)(alpha + S/(n B)) (Patarasuk & Yuan, JPDC 2009; the
NCCL ring). Reduction happens in the reduce-scatter steps.
"""

from __future__ import annotations

from collections.abc import Sequence

from collectives.base import CollectivePlan, Step, register
from des.graph import CollectiveType


class _RingPlan(CollectivePlan):
    """Shared ring mechanics: ``reduce_steps`` reducing steps then ``gather_steps`` copying ones."""

    algorithm = "ring"
    reduce_steps = 0
    gather_steps = 0

    def __init__(self, collective: CollectiveType, group: Sequence[int], nbytes: float) -> None:
        super().__init__(collective, group, nbytes)
        self.slice = self.nbytes / self.size
        self._steps = (self.reduce_steps + self.gather_steps) if self.size > 1 else 0

    def num_steps(self, rank: int) -> int:
        return self._steps

    def step(self, rank: int, k: int) -> Step:
        i = self.position[rank]
        nxt = self.group[(i + 1) % self.size]
        prv = self.group[(i - 1) % self.size]
        reduce = self.slice if k < self.reduce_steps else 0.0
        return Step(((nxt, self.slice),), ((prv, self.slice),), reduce)


@register(CollectiveType.ALL_REDUCE, "ring")
class RingAllReduce(_RingPlan):
    """Ring all-reduce: n-1 reduce-scatter steps, then n-1 all-gather steps."""

    def __init__(self, collective: CollectiveType, group: Sequence[int], nbytes: float) -> None:
        self.reduce_steps = self.gather_steps = len(group) - 1
        super().__init__(collective, group, nbytes)


@register(CollectiveType.REDUCE_SCATTER, "ring")
class RingReduceScatter(_RingPlan):
    """Ring reduce-scatter: n-1 reducing steps of S/n bytes."""

    def __init__(self, collective: CollectiveType, group: Sequence[int], nbytes: float) -> None:
        self.reduce_steps = len(group) - 1
        super().__init__(collective, group, nbytes)


@register(CollectiveType.ALL_GATHER, "ring")
class RingAllGather(_RingPlan):
    """Ring all-gather: n-1 forwarding steps of S/n bytes (S is the gathered output)."""

    def __init__(self, collective: CollectiveType, group: Sequence[int], nbytes: float) -> None:
        self.gather_steps = len(group) - 1
        super().__init__(collective, group, nbytes)
