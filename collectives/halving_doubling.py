"""Halving-doubling (Rabenseifner) reduce-scatter, all-gather and all-reduce, as AstraSim's
HalvingDoubling.cc runs them.

Reduce-scatter is recursive halving: in step j (j = 0..k-1, n = 2^k) position i exchanges
S/2^(j+1) bytes with position i XOR 2^j and reduces what it receives. All-gather is recursive
doubling, the mirror image: partners i XOR n/2, ..., i XOR 1, messages S/n, 2S/n, ..., S/2 (S is
the gathered output). All-reduce is the two in sequence, 2 log2 n steps moving 2(n-1)/n S per
rank (Thakur, Rabenseifner & Gropp, IJHPCA 2005). Only power-of-two groups: other sizes raise
:class:`~collectives.base.CollectiveError`; there is no fallback to another algorithm.
"""

from __future__ import annotations

from collectives.base import (
    CollectiveError,
    CollectivePlan,
    MessageTime,
    Step,
    StepOverhead,
    register,
)
from collectives.ring import lockstep_time, uniform_time
from des.core.graph import CollectiveType


@register(CollectiveType.ALL_REDUCE, "halving_doubling")
@register(CollectiveType.REDUCE_SCATTER, "halving_doubling")
@register(CollectiveType.ALL_GATHER, "halving_doubling")
class HalvingDoubling(CollectivePlan):
    """Recursive-halving reduce-scatter and recursive-doubling all-gather (Thakur, Rabenseifner
    & Gropp 2005); all-reduce is both.

    Steps (n = 2^k): reduce-scatter k (partner offsets 1, 2, ..., n/2; messages S/2, ...,
    S/n), all-gather k (offsets n/2, ..., 1; messages S/n, ..., S/2), all-reduce 2k.
    Reduction: each reduce-scatter step reduces the bytes it received, (n-1)/n S in all.

    ``options.astra`` reproduces AstraSim's accounting: after reduce-scatter receive j
    (j = 1..k-1) it charges the reduction of the *next* message's size and after the k-th
    nothing: (n-2)/(2n) S in all instead of (n-1)/n S. With ``integer_sizes`` the
    all-reduce's all-gather messages then start at 2*floor(S/(2n)), as AstraSim's halving and
    re-doubling of an integer message size gives. Partners and message sizes are AstraSim's in
    both modes.
    """

    algorithm = "halving_doubling"
    supports = frozenset({CollectiveType.ALL_REDUCE, CollectiveType.REDUCE_SCATTER,
                          CollectiveType.ALL_GATHER})
    uniform_steps = True

    def _prepare(self) -> None:
        phases = {
            CollectiveType.ALL_REDUCE: (True, True),
            CollectiveType.REDUCE_SCATTER: (True, False),
            CollectiveType.ALL_GATHER: (False, True),
        }[self.collective]
        n = self.size
        if n & (n - 1):
            raise CollectiveError(
                f"{self.algorithm} {self.collective}: needs a power-of-two group, got {n} ranks; "
                f"use 'ring' for this group (halving_doubling has no fallback)")
        k = n.bit_length() - 1
        plan: list[tuple[int, float, float]] = []  # (offset, message bytes, reduce bytes)
        if phases[0]:
            sizes = [self.split(self.nbytes, 2 ** (j + 1)) for j in range(k)]
            # AstraSim charges, after receive j, the next message's size; after the last, none
            charged = [*sizes[1:], 0.0] if self.options.astra else sizes
            plan.extend((2 ** j, sizes[j], charged[j]) for j in range(k))
        if phases[1]:
            if phases[0] and self.options.astra:
                piece = 2 * self.split(self.nbytes, 2 * n)
            else:
                piece = self.split(self.nbytes, n)
            plan.extend((n >> (j + 1), piece * 2 ** j, 0.0) for j in range(k))
        self.plan = tuple(plan)

    def num_steps(self, rank: int) -> int:
        return len(self.plan)

    def step(self, rank: int, k: int) -> Step:
        offset, message, reduce = self.plan[k]
        peer = self.group[self.position[rank] ^ offset]
        return Step(((peer, message),), ((peer, message),), reduce)

    def closed_form(self, message_time: MessageTime, overhead: StepOverhead,
                    start: float = 0.0) -> float:
        """``start + sum over steps of (T_j + overhead_j)`` when every pair of step j takes the
        same T_j (a fully connected fabric, a switch, or a ring where position XOR offset is
        always the same hop count); else :func:`~collectives.base.dry_run` (a sum of per-step
        maxima would only be an upper bound)."""
        first = self.group[0]
        phases = []
        for j, (offset, message, _) in enumerate(self.plan):
            t = uniform_time(message_time, ((rank, self.group[i ^ offset], message)
                                            for i, rank in enumerate(self.group)))
            if t is None:
                return super().closed_form(message_time, overhead, start)
            phases.append((1, t, overhead(self.step(first, j))))
        return lockstep_time(phases, start)
