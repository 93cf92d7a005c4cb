"""Which parallel axes a workload folds: the guard that proves folding exact on a topology.

Folding builds the graph for one representative per orbit of symmetric ranks (see
:mod:`des.core.fold`). It is exact when the ranks really are symmetric: the same graph shape
(true of tensor- and data-parallel peers, which run the same passes on equal shards), no
straggler or timed fault that singles one out, and a topology on which every translation along
the folded axes maps each route the representatives use onto identical, separate links
(:class:`topologies.symmetry.LinkOrbits`). :func:`choose_fold` checks the routes between every
representative and every rank it talks to (its groups along each parallel axis and its pipeline
neighbours), for the candidate axes together and then for smaller sets, and returns the largest
fold that holds, or None.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import combinations
from math import prod

from des.core.fold import Fold
from topologies.base import Topology
from topologies.symmetry import LinkOrbits
from workloads.parallel import Layout

FOLDABLE = ("tp", "dp")
"""Axes a training or inference graph can always fold: their collectives run over the folded
span and nothing else addresses a folded peer. Context-parallel peers fold too when ring
attention is modelled by phase (one ring all-gather over the context group,
``ParallelConfig.foldable``); exchange by exchange it addresses peers point to point, and
expert-parallel all-to-all crosses axes, so those stay unfolded."""


def partners(layout: Layout, rank: int) -> set[int]:
    """Every rank ``rank`` may exchange messages with: its groups along each axis and its
    pipeline neighbours."""
    out: set[int] = set()
    for axis in ("tp", "cp", "ep", "dp"):
        if layout.sizes[axis] > 1:
            out.update(layout.group(rank, axis))
    out.update(layout.group(rank, "ep", "dp"))
    stages = layout.sizes["pp"]
    stage = layout.coords(rank)["pp"]
    for other in (stage - 1, stage + 1):
        if 0 <= other < stages:
            out.add(layout.stage_rank(rank, other))
    out.discard(rank)
    return out


def fold_holds(fold: Fold, layout: Layout, topology: Topology) -> bool:
    """True when every translation of ``fold`` maps the representatives' routes onto
    identical, separate links of ``topology``."""
    orbits = LinkOrbits(topology, fold.table())
    for rank in range(fold.world):
        if not fold.is_representative(rank):
            continue
        for peer in sorted(partners(layout, rank)):
            if orbits.route(rank, peer) is None:
                return False
    return True


def choose_fold(layout: Layout, topology: Topology | None, request: str | Sequence[str],
                candidates: Iterable[str] = FOLDABLE, symmetric: bool = True) -> Fold | None:
    """The fold a workload builds with. ``request``: ``"none"``; ``"auto"`` (the largest set
    of ``candidates`` whose fold the guard proves exact on ``topology``; none without a
    topology, or when ``symmetric`` is False because stragglers or timed faults single ranks
    out); or explicit axes, folded as asked (the caller vouches for the symmetry)."""
    sizes, order = layout.sizes, layout.axes
    if request == "none":
        return None
    if request != "auto":
        fold = Fold.of(tuple(request), sizes, order)
        return fold if fold.count > 1 else None
    if topology is None or not symmetric or sizes["ep"] > 1:
        return None
    axes = [a for a in candidates if sizes[a] > 1]
    subsets = [c for size in range(len(axes), 0, -1) for c in combinations(axes, size)]
    # most axes first, then the most ranks folded away
    subsets.sort(key=lambda c: (-len(c), -prod(sizes[a] for a in c)))
    for subset in subsets:
        fold = Fold.of(subset, sizes, order)
        if fold.count > 1 and fold_holds(fold, layout, topology):
            return fold
    return None
