"""Direct algorithms (AstraSim's AllToAll.cc): every rank talks to every other member at once.

All-to-all sends each peer its S/n slice in one step; reduce-scatter sends each peer the slice it
owns and reduces what arrives; all-gather sends its own S/n slice of the output to every peer;
all-reduce is that reduce-scatter followed by that all-gather (two steps). Peers are taken in
AstraSim's order: send to position i+1, i+2, ... and receive from i-1, i-2, ... (skipping self).
On a group with several logical dimensions (a torus, a fat tree's (host, edge, pod)
coordinates; not in AstraSim modes) the d-th peer is the member at coordinate offset d instead,
d written in mixed radix over the dimensions and added coordinate by coordinate: the same
schedule for one dimension, and one every translation of the grid maps onto itself, so a folded
run can simulate one member for all (:meth:`Direct.translation_dims`).
Uncontended on a fully connected fabric one step takes alpha + S/(n B); on shared links the n-1
messages contend, which is the point of simulating it.

``options.window = w > 0`` keeps at most w messages in flight per rank: each phase becomes
ceil((n-1)/w) aligned sub-steps, sub-step s sending to peers i+sw+1 .. i+sw+w and receiving from
i-sw-1 .. i-sw-w.
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
from topologies.dims import coordinate_table


@register(CollectiveType.ALL_TO_ALL, "direct")
@register(CollectiveType.REDUCE_SCATTER, "direct")
@register(CollectiveType.ALL_GATHER, "direct")
@register(CollectiveType.ALL_REDUCE, "direct")
class Direct(CollectivePlan):
    """Direct all-to-all, reduce-scatter, all-gather and all-reduce (AstraSim's AllToAll.cc).

    Steps without a window: all-to-all, reduce-scatter and all-gather 1, all-reduce 2; every
    message is S/n bytes (all-gather: S is the gathered output). Reduce-scatter (and the first
    all-reduce step) reduces what it receives: (n-1) S/n bytes per rank. ``options.astra``
    charges the reduction of one message (S/n) per step instead, as AstraSim's n-1 parallel
    packet bundles each reduce one message at the same time.
    """

    algorithm = "direct"
    supports = frozenset({CollectiveType.ALL_TO_ALL, CollectiveType.REDUCE_SCATTER,
                          CollectiveType.ALL_GATHER, CollectiveType.ALL_REDUCE})
    uniform_steps = True
    cyclic = True

    def _prepare(self) -> None:
        phases = {
            CollectiveType.ALL_TO_ALL: (False,),
            CollectiveType.REDUCE_SCATTER: (True,),
            CollectiveType.ALL_GATHER: (False,),
            CollectiveType.ALL_REDUCE: (True, False),
        }[self.collective]
        if self.options.window < 0:
            raise CollectiveError(f"{self.algorithm}: window must be >= 0, "
                                  f"got {self.options.window}")
        n = self.size
        self.message = self.split(self.nbytes, n)
        self.window = min(self.options.window or n - 1, n - 1)
        self.substeps = -(-(n - 1) // self.window) if n > 1 else 0
        self.reducing = tuple(r for r in phases for _ in range(self.substeps))
        active = [d for d in self.dims if d > 1]
        self.by_offset = len(active) > 1 and not self.options.astra and n > 1
        if self.by_offset:  # every position's coordinates (dimension 0 fastest)
            self._coords, self._strides = coordinate_table(self.dims)

    def translation_dims(self) -> tuple[int, ...] | None:
        """The group's dimensions when peers go by coordinate offset, else the cyclic ``(n,)``."""
        return self.dims if self.by_offset else super().translation_dims()

    def _peers(self, i: int, dists: range, back: bool = False) -> list[int]:
        """Positions of the d-th peers of position ``i`` for d in ``dists`` (sending; ``back``:
        receiving)."""
        n = self.size
        if not self.by_offset:
            return [(i - d) % n if back else (i + d) % n for d in dists]
        offsets = self._coords[dists.start:dists.stop]
        moved = (self._coords[i] - offsets if back else self._coords[i] + offsets) % self.dims
        return (moved @ self._strides).tolist()

    def num_steps(self, rank: int) -> int:
        return len(self.reducing)

    def _distances(self, k: int) -> range:
        s = k % self.substeps
        return range(s * self.window + 1, min((s + 1) * self.window, self.size - 1) + 1)

    def step(self, rank: int, k: int) -> Step:
        i, m = self.position[rank], self.message
        dists = self._distances(k)
        group = self.group
        sends = tuple((group[p], m) for p in self._peers(i, dists))
        recvs = tuple((group[p], m) for p in self._peers(i, dists, True))
        reduce = 0.0
        if self.reducing[k]:
            reduce = m if self.options.astra else m * len(recvs)
        return Step(sends, recvs, reduce)

    def closed_form(self, message_time: MessageTime, overhead: StepOverhead,
                    start: float = 0.0) -> float:
        """One step: ``start + Tmax + overhead`` with Tmax the slowest of all the step's
        messages (exact whatever the layout). Several steps (all-reduce, windows): the sum of
        ``T + overhead`` per step when all of a step's messages take the same T; else
        :func:`~collectives.base.dry_run`."""
        n, first = self.size, self.group[0]
        steps = len(self.reducing)
        if steps == 0:
            return start
        phases = []
        for k in range(steps):
            messages = ((self.group[i], self.group[p], self.message)
                        for i in range(n) for p in self._peers(i, self._distances(k)))
            if steps == 1:
                t: float | None = max(message_time(*msg) for msg in messages)
            else:
                t = uniform_time(message_time, messages)
            if t is None:
                return super().closed_form(message_time, overhead, start)
            phases.append((1, t, overhead(self.step(first, k))))
        return lockstep_time(phases, start)
