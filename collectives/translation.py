"""Translations of a collective's group and whether a fold's translations are them: the check
that lets a folded representative's messages stand for every member's (the engine's folded
collectives, :mod:`des.sim.lockstep`) and lets a workload builder fold only what the engine
will take as exact (:func:`workloads.folding.choose_fold`)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import lru_cache

from collectives.base import CollectivePlan, PlanOptions, make_plan, plan_class
from des.core.fold import Fold
from des.core.graph import CollectiveInstance, EventGraph
from topologies.base import Topology
from topologies.dims import coordinate_table, divmod_coords, logical_dims


class GroupTranslation:
    """Positions of a group as coordinates in ``dims`` (dimension 0 fastest) and their
    translations modulo ``dims``."""

    __slots__ = ("dims", "size")

    def __init__(self, dims: Sequence[int]) -> None:
        self.dims = tuple(dims)
        self.size = math.prod(self.dims)

    def coords(self, position: int) -> tuple[int, ...]:
        """Coordinates of ``position``."""
        return divmod_coords(position, self.dims)

    def position(self, coords: Sequence[int]) -> int:
        """Position of ``coords`` (taken modulo the dims)."""
        pos, stride = 0, 1
        for x, d in zip(coords, self.dims, strict=True):
            pos += (x % d) * stride
            stride *= d
        return pos

    def add(self, position: int, offset: Sequence[int]) -> int:
        """``position`` translated by the vector ``offset``."""
        return self.position([x + o for x, o in zip(self.coords(position), offset, strict=True)])


def spans_match(graph: EventGraph, topology: Topology,
                algorithm_of: Callable[[CollectiveInstance], str],
                options: PlanOptions | None = None) -> bool:
    """True when every folded collective of ``graph`` (one with a ``span``) runs a step
    program, with the algorithm ``algorithm_of`` gives it and the plan ``options``, whose
    translation symmetry is the graph's fold (:func:`fold_matches`): what the contended engine
    needs before a representative may stand for its span. Node programs never qualify. A
    graph without a fold matches."""
    fold = graph.fold
    if fold is None or fold.count <= 1:
        return True
    options = options or PlanOptions()
    seen: set[tuple] = set()
    for inst in graph.collective_instances():
        key = (inst.collective, inst.span, inst.nbytes, inst.algorithm, inst.root)
        if not inst.span or key in seen:
            continue
        seen.add(key)
        algorithm = algorithm_of(inst)
        if plan_class(inst.collective, algorithm).node_program \
                or not fold_matches(span_plan(inst, algorithm, topology, options), fold):
            return False
    return True


def span_plan(inst: CollectiveInstance, algorithm: str, topology: Topology,
              options: PlanOptions) -> CollectivePlan:
    """The step program a span collective runs over its whole span with ``options``, on the
    span's logical dimensions as the backends take them (none of a subgroup's in AstraSim
    modes)."""
    return make_plan(inst.collective, inst.span, inst.nbytes, algorithm,
                     dims=logical_dims(topology, inst.span, not options.astra),
                     root=inst.root, options=options)


def fold_matches(plan: CollectivePlan, fold: Fold) -> bool:
    """True when the plan's translation symmetry over its group is the fold's: for every
    offset of the plan's group structure there is a fold translation moving every member by
    that offset. Then a folded representative's message to offset o stands for its receive
    from offset -o, as in a lockstep batch. It depends on the group's translation structure
    only, which recurs every layer and costs O(group^2) translations to check (80 ms at 64
    members): the builder and the engine share one answer per shape."""
    return _matches(plan.group, plan.translation_dims(), fold)


@lru_cache(maxsize=4096)
def _matches(group: tuple[int, ...], dims: tuple[int, ...] | None, fold: Fold) -> bool:
    if dims is None or group[0] != fold.representative(group[0])[0]:
        return False
    import numpy as np  # a whole-machine group is a million checks: done as arrays

    n = len(group)
    ks = []
    for position in range(1, n):
        rep, k = fold.representative(group[position])
        if rep != group[0]:
            return False
        ks.append(k)
    members = np.asarray(group, dtype=np.int64)
    sizes = np.asarray(dims, dtype=np.int64)
    coords, strides = coordinate_table(dims)  # [position, dim]
    table = fold.table_array()
    block = max(1, (1 << 20) // n)  # rows of n checks at a time: bounded memory
    for lo in range(1, n, block):
        hi = min(n, lo + block)
        moved = table[np.asarray(ks[lo - 1:hi - 1])][:, members]  # [p, q]: member q moved by k_p
        shifted = ((coords[None, :, :] + coords[lo:hi, None, :]) % sizes) @ strides
        if not np.array_equal(moved, members[shifted]):
            return False
    return True
