"""2-D torus all-reduce: two concurrent half-buffer hierarchical all-reduces in opposite
dimension orders and opposite ring directions, so all four link directions carry traffic.

The group has ``dims = (X, Y)``, X, Y >= 2, dimension 0 (X) varying fastest in group order
(:func:`collectives.hierarchical.check_dims`). The buffer S splits into halves A and B
(``h_A + h_B = S``):

* half A: ring reduce-scatter along X, ring all-reduce along Y on ``h_A / X``, ring all-gather
  along X, every ring in coordinate order (``+x``, ``+y`` links);
* half B: ring reduce-scatter along Y, ring all-reduce along X on ``h_B / Y``, ring all-gather
  along Y, every ring in reverse coordinate order (``-y``, ``-x`` links).

Both halves take ``2 (X-1) + 2 (Y-1)`` steps and advance in lockstep: step k holds both halves'
step-k messages (to different peers, except on a 2-ring where ``+`` and ``-`` neighbour are the
same rank), with their reductions added. Since A only ever uses ``+`` links and B only ``-``
links, the halves never share a directed link. Each step is tagged with **half A's** dimension
(``[0]*(X-1) + [1]*2(Y-1) + [0]*(X-1)``), so the engine's per-dimension queueing treats the whole
step as that dimension even when half B is working in the other one.

Bytes per rank: ``h_A (2(X-1)/X + 2(Y-1)/(XY)) + h_B (2(Y-1)/Y + 2(X-1)/(XY))`` which, for
``h_A = h_B = S/2``, is ``2 (n-1) / n S``, the same as the flat ring and the hierarchical plan;
steps ``2 (X + Y - 2)`` instead of ``2 (n-1)``, each over one torus hop. This is the 2-D torus
all-reduce of Chan et al. ("Collective communication: theory, practice, and experience",
CCPE 2007) with the bandwidth-optimal ring phases of Patarasuk & Yuan (JPDC 2009), split
across the two orders to use both link directions of every dimension.
"""

from __future__ import annotations

from collectives.base import EMPTY_STEP, CollectiveError, CollectivePlan, Step, register
from collectives.hierarchical import PhaseProgram, check_dims, local_bw_aware_phases
from des.core.graph import CollectiveType


@register(CollectiveType.ALL_REDUCE, "torus2d")
class Torus2DAllReduce(CollectivePlan):
    """Topology-aware 2-D torus/mesh all-reduce: two half-buffer RS/AR/AG programs in XY and YX
    order on opposite ring directions (Chan et al., CCPE 2007; Patarasuk & Yuan, JPDC 2009).
    See the module docstring for the schedule and the step ``dim`` convention."""

    algorithm = "torus2d"
    supports = frozenset({CollectiveType.ALL_REDUCE})
    multi_dim = True

    def _prepare(self) -> None:
        if len(self.dims) != 2 or min(self.dims) < 2:
            raise CollectiveError(
                f"{self.collective} torus2d: needs dims (X, Y) with X, Y >= 2, "
                f"got {list(self.dims)}")
        dims = check_dims(self)
        half_a = self.split(self.nbytes, 2)
        half_b = (float(int(self.nbytes) - int(half_a)) if self.options.integer_sizes
                  else self.nbytes - half_a)
        rings = ("ring", "ring")
        self.half_a = PhaseProgram(self, dims, local_bw_aware_phases(
            self.collective, dims, half_a, self.split, rings, reverse_ag=False))
        self.half_b = PhaseProgram(self, dims, local_bw_aware_phases(
            self.collective, dims, half_b, self.split, rings, reverse_ag=False, reverse_all=True,
            order=(1, 0)))
        if self.half_a.num_steps != self.half_b.num_steps:  # 2(X-1) + 2(Y-1) both
            raise CollectiveError("torus2d: the two halves differ in length")  # pragma: no cover

    def num_steps(self, rank: int) -> int:
        return self.half_a.num_steps

    def step(self, rank: int, k: int) -> Step:
        a = self.half_a.step(rank, k)
        b = self.half_b.step(rank, k)
        if not (a.sends or a.recvs or b.sends or b.recvs):
            return EMPTY_STEP if a.dim == 0 else Step(dim=a.dim)
        return Step(a.sends + b.sends, a.recvs + b.recvs, a.reduce_bytes + b.reduce_bytes, a.dim)
