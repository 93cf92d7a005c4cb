"""Rail rings: NCCL's ring all-reduce, reduce-scatter and all-gather across nodes with a NIC per
GPU on rail-optimised fabrics.

NCCL runs a collective as several rings at once (its channels), each carrying a share of the
buffer over every member, and on nodes with one NIC per GPU it gives each ring's crossings
between nodes to a different NIC, keeping both ends of a crossing on the same NIC index
(``NCCL_CROSS_NIC=0`` keeps rings and trees on one rail; NCCL user guide, environment
variables), so the rings together drive every NIC of every node. An all-reduce is then one
pipeline over all n members, 2(n-1) steps of S/n per ring-share, where the hierarchical plan runs
its in-node and cross-node phases one after another; that is why two DGX A100 nodes measure
about 192 GB/s all-reduce bus bandwidth, 8 NICs x 24 GB/s (NVIDIA/nccl#812): the NIC-bound ring.

The group has logical dimensions ``(g, N)``: g members per node (dimension 0, its index the
member's rail) on N nodes. Ring c (c = 0..g-1) carries S/g. It leaves node j on rail ``r_j`` and
so enters node j+1 on that rail: ``r_j = c + (j mod 2)`` (mod g), with ``r_{N-1} = c + 2`` when N
is odd (so that no node is entered and left on the same rail; with g = 2 and N odd one crossing
per ring must change rails, through the spines). In node j the ring runs from its entry member
through the others in rail order to its exit member. Every node's every NIC then sends for
exactly one ring when N is even. One node (N = 1) or one member per node (g = 1) is a plain
ring in group order. Uncontended, with per-message time T over a NIC (the slowest hop), an
all-reduce takes about 2(n-1)(alpha + S/(g n B_nic)), NCCL's ring cost with the NICs as its bus.
"""

from __future__ import annotations

from collectives.base import CollectivePlan, Step, register
from des.core.graph import CollectiveType


def ring_orders(g: int, nodes: int) -> list[list[int]]:
    """The member positions of each rail ring in ring order (see the module doc); position =
    rail + g x node."""
    if g == 1 or nodes == 1:
        return [list(range(g * nodes))]
    rings = []
    for c in range(g):
        rails = [(c + j % 2) % g for j in range(nodes)]
        if nodes % 2 and g >= 3:
            rails[-1] = (c + 2) % g
        order = []
        for j in range(nodes):
            entry, exit_ = rails[j - 1], rails[j]
            if exit_ == entry:  # g = 2, N odd: this node's crossing changes rails
                exit_ = (entry + 1) % g
            middle = [(entry + t) % g for t in range(1, g)]
            middle.remove(exit_)
            order.extend(j * g + rail for rail in [entry, *middle, exit_])
        rings.append(order)
    return rings


@register(CollectiveType.ALL_REDUCE, "rail_rings")
@register(CollectiveType.REDUCE_SCATTER, "rail_rings")
@register(CollectiveType.ALL_GATHER, "rail_rings")
class RailRings(CollectivePlan):
    """Rail rings (see the module doc): g rings over the group, each carrying S/g, ring
    all-reduce (2(n-1) steps, reducing on the first n-1), reduce-scatter or all-gather (n-1).
    Without two logical dimensions (``dims``), one ring in group order."""

    algorithm = "rail_rings"
    supports = frozenset({CollectiveType.ALL_REDUCE, CollectiveType.REDUCE_SCATTER,
                          CollectiveType.ALL_GATHER})
    uniform_steps = True

    def _prepare(self) -> None:
        n = self.size
        active = [d for d in self.dims if d > 1]
        if len(self.dims) == 2 and len(active) == 2:
            g, nodes = self.dims
        else:
            g, nodes = 1, n
        self.rings = ring_orders(g, nodes)
        passes = {CollectiveType.ALL_REDUCE: (1, 1), CollectiveType.REDUCE_SCATTER: (1, 0),
                  CollectiveType.ALL_GATHER: (0, 1)}[self.collective]
        self.reduce_steps = passes[0] * (n - 1)
        self.gather_steps = passes[1] * (n - 1)
        self.message = self.split(self.nbytes, len(self.rings) * n)
        self._steps: dict[tuple[int, bool], Step] = {}
        succ: list[list[int]] = [[] for _ in range(n)]
        pred: list[list[int]] = [[] for _ in range(n)]
        for order in self.rings:
            for t, pos in enumerate(order):
                succ[pos].append(order[(t + 1) % n])
                pred[pos].append(order[t - 1])
        self._succ, self._pred = succ, pred

    def translation_dims(self) -> tuple[int, ...] | None:
        """One ring in group order is cyclic; several rail rings have no translation symmetry
        (a node's rails alternate with its parity)."""
        return (self.size,) if len(self.rings) == 1 and self.size > 1 else None

    def num_steps(self, rank: int) -> int:
        return self.reduce_steps + self.gather_steps if self.size > 1 else 0

    def step(self, rank: int, k: int) -> Step:
        i = self.position[rank]
        reducing = k < self.reduce_steps
        step = self._steps.get((i, reducing))
        if step is None:
            m = self.message
            sends = tuple((self.group[p], m) for p in self._succ[i])
            recvs = tuple((self.group[p], m) for p in self._pred[i])
            step = self._steps[(i, reducing)] = Step(sends, recvs, m * len(recvs) if reducing
                                                     else 0.0)
        return step
