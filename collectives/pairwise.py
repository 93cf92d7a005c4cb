"""Pairwise (linear shift) all-to-all: n-1 steps, one peer per step.

In step k (k = 1..n-1) position i sends its S/n slice for position i+k and receives the slice
position i-k has for it. Each rank has one message in flight at a time, so no endpoint is ever
oversubscribed; the cost is n-1 latencies instead of one (Thakur, Rabenseifner & Gropp,
IJHPCA 2005, the MPICH long-message all-to-all).
"""

from __future__ import annotations

from collectives.base import CollectivePlan, MessageTime, Step, StepOverhead, register
from collectives.ring import lockstep_time, uniform_time
from des.core.graph import CollectiveType


@register(CollectiveType.ALL_TO_ALL, "pairwise")
class PairwiseAllToAll(CollectivePlan):
    """Pairwise-exchange all-to-all (Thakur, Rabenseifner & Gropp 2005): n-1 steps, step k
    sends S/n to position i+k and receives S/n from i-k. No reduction; not an AstraSim
    algorithm, so ``options.astra`` changes nothing."""

    algorithm = "pairwise"
    supports = frozenset({CollectiveType.ALL_TO_ALL})
    uniform_steps = True

    def _prepare(self) -> None:
        self.message = self.split(self.nbytes, self.size)

    def num_steps(self, rank: int) -> int:
        return self.size - 1

    def step(self, rank: int, k: int) -> Step:
        i, n = self.position[rank], self.size
        return Step(((self.group[(i + k + 1) % n], self.message),),
                    ((self.group[(i - k - 1) % n], self.message),))

    def closed_form(self, message_time: MessageTime, overhead: StepOverhead,
                    start: float = 0.0) -> float:
        """``start + sum over steps of (T_k + overhead)`` when all of step k's messages take the
        same T_k; else :func:`~collectives.base.dry_run`."""
        n, first = self.size, self.group[0]
        phases = []
        for k in range(n - 1):
            t = uniform_time(message_time, ((self.group[i], self.group[(i + k + 1) % n],
                                             self.message) for i in range(n)))
            if t is None:
                return super().closed_form(message_time, overhead, start)
            phases.append((1, t, overhead(self.step(first, k))))
        return lockstep_time(phases, start)
