"""Dissemination barrier: ceil(log2 n) rounds of empty messages.

In round j position i sends an empty message to position i+2^j and waits for the one from
i-2^j. After round j every rank has heard, directly or through others, from the 2^(j+1)-1 ranks
before it, so after ceil(log2 n) rounds from everyone, for any n (Hensgen, Finkel & Manber,
IJPP 1988). Each round costs one message latency (0-byte messages still pay it).
"""

from __future__ import annotations

from collectives.base import CollectivePlan, MessageTime, Step, StepOverhead, register
from collectives.ring import lockstep_time, uniform_time
from des.core.graph import CollectiveType


@register(CollectiveType.BARRIER, "dissemination")
class DisseminationBarrier(CollectivePlan):
    """Dissemination barrier (Hensgen, Finkel & Manber 1988): ceil(log2 n) steps, step j sends
    0 bytes to position i+2^j and receives from i-2^j. The collective's size is ignored."""

    algorithm = "dissemination"
    supports = frozenset({CollectiveType.BARRIER})
    uniform_steps = True

    def _prepare(self) -> None:
        self.rounds = (self.size - 1).bit_length()  # ceil(log2 n); 0 for one rank

    def num_steps(self, rank: int) -> int:
        return self.rounds

    def step(self, rank: int, k: int) -> Step:
        i, n, d = self.position[rank], self.size, 1 << k
        return Step(((self.group[(i + d) % n], 0.0),), ((self.group[(i - d) % n], 0.0),))

    def closed_form(self, message_time: MessageTime, overhead: StepOverhead,
                    start: float = 0.0) -> float:
        """``start + sum over rounds of (T_j + overhead)`` when all of round j's messages take
        the same T_j; else :func:`~collectives.base.dry_run`."""
        n, first = self.size, self.group[0]
        phases = []
        for j in range(self.rounds):
            t = uniform_time(message_time, ((self.group[i], self.group[(i + (1 << j)) % n], 0.0)
                                            for i in range(n)))
            if t is None:
                return super().closed_form(message_time, overhead, start)
            phases.append((1, t, overhead(self.step(first, j))))
        return lockstep_time(phases, start)
