"""Choosing a collective algorithm from the collective, the group, the size and the fabric.

The rules follow the alpha-beta picture (Thakur, Rabenseifner & Gropp, IJHPCA 2005) and NCCL's
tuner, which picks per size between its latency-optimised tree and bandwidth-optimised ring.
Small messages are *latency-bound*: the time is dominated by the number of sequential steps,
so algorithms with O(log n) steps win (halving-doubling, the double binary tree). Large
messages are *bandwidth-bound*: what matters is that each rank sends the minimum
``2 (n-1)/n S`` for an all-reduce over neighbour links without contention, which the ring
does in 2(n-1) steps, and topology-aware plans do in fewer steps by working per dimension.

:func:`choose_algorithm` rules, first match wins:

* **all-reduce** (groups of at least 2 ranks):

  1. ``torus2d`` on ``mesh2d`` / ``torus2d`` fabrics when the group is the full grid
     (``dims`` has two sizes >= 2 multiplying to the group size): 2(X+Y-2) one-hop steps in
     both link directions instead of 2(n-1) steps with multi-hop ring wrap-arounds;
  2. ``hierarchical`` on ``hierarchical``, ``torus3d`` and ``superpod`` fabrics when the
     group is the full machine (or a box of its dimensions) and it has more than one
     dimension of size > 1: AstraSim's localBWAware order keeps most traffic on the fast inner
     dimensions; on a rail-optimised ``superpod`` (dimensions: GPUs of a node, then nodes) the
     inter-node phase is one ring per rail, so traffic never crosses rails through the spines,
     which is what NCCL's rail-aligned rings achieve (its eight channels each leave a node on a
     different NIC; measured all-reduce bus bandwidth on DGX A100 with 8 HDR NICs: 192 GB/s,
     NVIDIA/nccl#812);
  3. below ``SMALL_MESSAGE`` (256 KiB, near where NCCL moves from tree to ring on a node):
     ``halving_doubling`` (2 log2 n steps, Rabenseifner) on power-of-two groups on
     single-hop-equivalent fabrics (``switch``, ``fat_tree``, ``leaf_spine``, ``superpod``,
     ``fully_connected``), where the partners' distance does not matter; otherwise
     ``double_binary_tree`` (2 ceil(log2 n) steps, NCCL's small-size choice);
  4. large messages: ``ring_bidir`` on bidirectional rings (both link directions), else
     ``ring``.

* **all-gather / reduce-scatter**: ``hierarchical`` under rules 1-2's full-grid/full-machine
  conditions on ``hierarchical``, ``torus2d``, ``torus3d`` and ``mesh2d`` fabrics, else
  ``ring`` (bandwidth-optimal, what NCCL uses).
* **all-to-all**: ``direct`` (every pair exchanges once; the fabric's contention is the point).
* **broadcast / reduce**: ``binomial_tree``: ceil(log2 n) whole-buffer steps. The pipelined
  ``ring`` chain only wins when chunks >> n, and the engine's default is 4 chunks.
* **barrier**: ``dissemination`` (ceil(log2 n) rounds, Hensgen, Finkel & Manber 1988).

Names are checked against the registry at call time (:func:`collectives.base.algorithms_for`):
a choice that is not registered falls back (``ring_bidir`` -> ``ring``, then the collective's
default, then the first registered algorithm); with nothing registered for the collective,
:class:`~collectives.base.CollectiveError` is raised.
"""

from __future__ import annotations

from collections.abc import Sequence
from math import prod

from collectives.base import DEFAULT_ALGORITHM, CollectiveError, algorithms_for
from des.core.graph import CollectiveType
from topologies.base import Topology

SMALL_MESSAGE = 256 * 1024
"""Bytes below which an all-reduce is treated as latency-bound."""

SINGLE_HOP_KINDS = frozenset({"switch", "fat_tree", "leaf_spine", "superpod", "fully_connected"})
"""Fabrics on which any two NPUs are (about) equally far apart."""

GRID_2D_KINDS = frozenset({"mesh2d", "torus2d"})
MULTI_DIM_KINDS = frozenset({"hierarchical", "torus3d", "superpod"})

_FALLBACKS: dict[str, tuple[str, ...]] = {
    "ring_bidir": ("ring",),
    "halving_doubling": ("double_binary_tree",),
    "pairwise": ("direct",),
}
_ROOTED_DEFAULT = "binomial_tree"


def choose_algorithm(collective: CollectiveType | str, group_size: int, nbytes: float, *,
                     topology_kind: str | None = None,
                     dims: Sequence[int] | None = None) -> str:
    """A registered algorithm for ``collective`` over ``group_size`` ranks of ``nbytes`` (the
    collective's size convention) on a fabric of kind ``topology_kind`` (the topology's
    ``info.kind``; ``"ring"`` means a bidirectional ring, see :func:`topology_hints`)
    whose logical dimensions are ``dims``. Rules and rationale: module docstring."""
    ctype = CollectiveType.parse(collective)
    return _registered(ctype, _preferred(ctype, group_size, nbytes, topology_kind, dims))


def topology_hints(topology: Topology) -> tuple[str | None, tuple[int, ...] | None]:
    """``(topology_kind, dims)`` for :func:`choose_algorithm` from a topology's
    :class:`~topologies.meta.TopologyInfo`: grid and hierarchical fabrics give their dimension
    sizes; a unidirectional ring is reported as ``"ring_unidirectional"``."""
    info = topology.info
    kind: str = info.kind
    dims = None
    if kind in GRID_2D_KINDS or kind in MULTI_DIM_KINDS:
        dims = tuple(int(d) for d in info.dims)
    if kind == "ring" and not info.bidirectional:
        kind = "ring_unidirectional"
    return kind, dims or None


def _full_grid(group_size: int, dims: Sequence[int] | None) -> tuple[int, ...]:
    """The dimensions of size > 1 when ``dims`` describe the whole group, else ()."""
    if not dims or prod(dims) != group_size:
        return ()
    return tuple(d for d in dims if d > 1)


def _preferred(ctype: CollectiveType, n: int, nbytes: float, kind: str | None,
               dims: Sequence[int] | None) -> str:
    active = _full_grid(n, dims)
    if ctype is CollectiveType.ALL_REDUCE:
        if n < 2:
            return "ring"
        if kind in GRID_2D_KINDS and dims is not None and len(dims) == 2 and len(active) == 2:
            return "torus2d"
        if kind in MULTI_DIM_KINDS and len(active) > 1:
            return "hierarchical"
        if nbytes < SMALL_MESSAGE:
            power_of_two = n & (n - 1) == 0
            if power_of_two and kind in SINGLE_HOP_KINDS:
                return "halving_doubling"
            return "double_binary_tree"
        return "ring_bidir" if kind == "ring" else "ring"
    if ctype in (CollectiveType.ALL_GATHER, CollectiveType.REDUCE_SCATTER):
        if (kind in GRID_2D_KINDS or kind in MULTI_DIM_KINDS) and len(active) > 1:
            return "hierarchical"
        return "ring"
    if ctype is CollectiveType.ALL_TO_ALL:
        return "direct"
    if ctype in (CollectiveType.BROADCAST, CollectiveType.REDUCE):
        return _ROOTED_DEFAULT
    return "dissemination"


def _registered(ctype: CollectiveType, name: str) -> str:
    available = algorithms_for(ctype)
    default = DEFAULT_ALGORITHM.get(ctype)
    if ctype in (CollectiveType.BROADCAST, CollectiveType.REDUCE):
        default = default or _ROOTED_DEFAULT
    for candidate in (name, *_FALLBACKS.get(name, ()), default):
        if candidate and candidate in available:
            return candidate
    if available:
        return available[0]
    raise CollectiveError(f"no algorithm is registered for {ctype}")
