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
from des.core.graph import CollectiveType, EventGraph
from topologies.base import Topology
from topologies.dims import divmod_coords, logical_dims
from topologies.symmetry import LinkOrbits, link_signatures, same_timing
from workloads.parallel import Layout

FOLDABLE = ("tp", "dp")
"""Axes a training or inference graph can always fold: their collectives run over the folded
span and nothing else addresses a folded peer. Context-parallel peers fold too when ring
attention is modelled by phase (one ring all-gather over the context group,
``ParallelConfig.foldable``); exchange by exchange it addresses peers point to point, and
expert-parallel all-to-all crosses axes, so those stay unfolded."""


def world_fold(topology: Topology, num_ranks: int) -> Fold | None:
    """The fold of every rank onto rank 0 by the translations of the topology's logical
    dimensions (one cyclic axis per dimension longer than one; NPU ids in mixed radix,
    dimension 0 fastest), or None when the topology has no dimensions covering ``num_ranks``.
    A candidate only: whether it is exact for a graph is the backends' check
    (:mod:`des.sim.fold_check`)."""
    dims = topology.info.dims
    if not dims or prod(dims) != num_ranks or num_ranks < 2:
        return None
    axes = {f"dim{d}": int(size) for d, size in enumerate(dims)}
    return Fold.of(tuple(a for a, size in axes.items() if size > 1), axes, tuple(axes))


def partners(layout: Layout, rank: int, topology: Topology | None = None) -> set[int]:
    """Every rank ``rank`` may exchange messages with: its groups along each axis and its
    pipeline neighbours. On a fabric with logical dimensions, a group that spans several of
    them runs its collectives dimension by dimension (:func:`collectives.auto.choose_algorithm`
    and :func:`topologies.dims.logical_dims`, which the backends use), so ``rank`` only talks
    to the members that differ from it in one logical coordinate of the group: on a
    rail-optimised cluster, its node's members and its rail's, never a member on another rail
    of another node. The backends check the routes their plans really use again before they
    trust the fold (:class:`des.sim.engine.ContendedModel`)."""
    out: set[int] = set()
    groups = [layout.group(rank, axis) for axis in ("tp", "cp", "ep", "dp")
              if layout.sizes[axis] > 1]
    groups.append(layout.group(rank, "ep", "dp"))
    for group in groups:
        out.update(_dimension_neighbours(group, rank, topology))
    stages = layout.sizes["pp"]
    stage = layout.coords(rank)["pp"]
    for other in (stage - 1, stage + 1):
        if 0 <= other < stages:
            out.add(layout.stage_rank(rank, other))
    out.discard(rank)
    return out


def _dimension_neighbours(group: tuple[int, ...], rank: int,
                          topology: Topology | None) -> tuple[int, ...]:
    """The members of ``group`` that differ from ``rank`` in at most one of the group's
    logical dimensions on ``topology`` (the whole group without them)."""
    dims = logical_dims(topology, group) if topology is not None and len(group) > 1 else None
    if dims is None or len(dims) < 2:
        return group
    # members are listed in id order, dimension 0 fastest (topologies.dims)
    coords = [divmod_coords(i, dims) for i in range(len(group))]
    mine = coords[group.index(rank)]
    return tuple(m for m, c in zip(group, coords, strict=True)
                 if sum(a != b for a, b in zip(c, mine, strict=True)) <= 1)


def fold_holds(fold: Fold, layout: Layout, topology: Topology,
               contention: bool = True) -> bool:
    """True when every translation of ``fold`` maps the representatives' routes onto
    identical, separate links of ``topology`` (with ``contention``: the contended engine
    simulates each orbit of links once), or, without ``contention``, onto routes of the same
    hop-by-hop parameters (the closed-form backend times a message from what its links are,
    not from which they are, so every image of a representative then takes its time)."""
    table = fold.table_array()
    orbits = LinkOrbits(topology, table) if contention else None
    signatures = None if contention else link_signatures(topology)
    for rank in range(fold.world):
        if not fold.is_representative(rank):
            continue
        for peer in sorted(partners(layout, rank, topology)):
            if orbits is not None and orbits.route(rank, peer) is None:
                return False
            if orbits is None and not same_timing(topology, table, rank, peer, signatures):
                return False
    return True


def _symmetric(fold: Fold, topology: Topology, collective: CollectiveType,
               group: tuple[int, ...], nbytes: float, algorithm: str | None = None,
               root: int | None = None) -> bool:
    """True when ``collective`` over ``group`` (``algorithm``, or the one ``auto`` picks for
    ``nbytes`` on ``topology``) has a step program whose translation symmetry is ``fold``'s
    (:func:`collectives.translation.fold_matches`): the engine then runs it for the
    representative alone."""
    from collectives.base import make_plan
    from collectives.translation import fold_matches

    algorithm = _auto_algorithm(topology, collective, group, nbytes, algorithm)
    plan = make_plan(collective, group, max(nbytes, 1.0), algorithm,
                     dims=logical_dims(topology, group), root=root)
    return not plan.node_program and fold_matches(plan, fold)


def _auto_algorithm(topology: Topology, collective: CollectiveType, group: tuple[int, ...],
                    nbytes: float, algorithm: str | None) -> str:
    """``algorithm``, or the one ``auto`` picks for the group and size on ``topology``."""
    if algorithm is not None and algorithm != "auto":
        return algorithm
    from collectives.auto import choose_algorithm, topology_hints

    return choose_algorithm(collective, len(group), nbytes,
                            topology_kind=topology_hints(topology)[0],
                            dims=logical_dims(topology, group))


def plans_match(fold: Fold, layout: Layout, topology: Topology) -> bool:
    """True when the collectives a representative runs over each folded axis have the fold's
    translations as their own symmetry (:func:`_symmetric`), for the algorithms ``auto``
    picks for bandwidth-bound sizes (a training step's collectives are) and the ring ring
    attention uses. A flat ring over a group that is no box of a torus, say, is symmetric
    under its own rotation only, not under translations cut along the torus's dimensions
    (and a dimension-by-dimension plan is not symmetric under a plain translation that crosses
    them), so a fold for the contended engine must pass this as well as :func:`fold_holds`.
    The closed-form backend times a folded collective over its whole span (every member's
    time is the same by construction), so it does not need it."""
    checks = [(c, None) for c in (CollectiveType.ALL_REDUCE, CollectiveType.REDUCE_SCATTER,
                                  CollectiveType.ALL_GATHER)]
    ring = (CollectiveType.ALL_GATHER, "ring")  # ring attention's rotation, phase by phase
    for rank in range(fold.world):  # each folded group holds one representative
        if not fold.is_representative(rank):
            continue
        for axis in fold.folded_axes:
            group = layout.group(rank, axis)
            if not all(_symmetric(fold, topology, c, group, 2.0**30, a)
                       for c, a in ([*checks, ring] if axis == "cp" else checks)):
                return False
    return True


def collectives_match(graph: EventGraph, topology: Topology) -> bool:
    """True when every folded collective of a built ``graph`` (one with a ``span``) has the
    graph's fold as its symmetry with the algorithm it names or ``auto`` picks
    (:func:`collectives.translation.spans_match`), as the contended engine checks before it
    lets a representative stand for its span (:func:`plans_match` checks the bandwidth-bound
    choice before building; a small collective may pick a latency-bound algorithm,
    halving-doubling or a tree, that has no such symmetry). A run whose options name other
    algorithms checks again (:mod:`des.sim.fold_check`)."""
    from collectives.translation import spans_match

    return spans_match(graph, topology, lambda inst: _auto_algorithm(
        topology, inst.collective, inst.span, inst.nbytes, inst.algorithm))


def choose_fold(layout: Layout, topology: Topology | None, request: str | Sequence[str],
                candidates: Iterable[str] = FOLDABLE, symmetric: bool = True,
                contention: bool = True) -> Fold | None:
    """The fold a workload builds with. ``request``: ``"none"``; ``"auto"`` (the largest set
    of ``candidates`` whose fold the guard proves exact on ``topology``; none without a
    topology, or when ``symmetric`` is False because stragglers or timed faults single ranks
    out); or explicit axes, folded as asked (the caller vouches for the symmetry).
    ``contention`` False proves the fold for the closed-form backend only (routes of the same
    parameters, :func:`fold_holds`), which folds fabrics whose equal-cost routing breaks the
    link-by-link symmetry the contended engine needs."""
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
    dims = topology.info.dims
    for subset in subsets:
        plain = Fold.of(subset, sizes, order)
        tried = [plain]
        if dims:  # the same orbits, translated factor by factor along the fabric's dims
            aligned = Fold.aligned(subset, sizes, order, dims)
            if aligned.sizes != plain.sizes:
                tried.append(aligned)
        for fold in tried:
            if fold.count > 1 and fold_holds(fold, layout, topology, contention) \
                    and (not contention or plans_match(fold, layout, topology)):
                return fold
    return None
