"""A group's logical dimensions on a grid, hierarchical or rail-optimised fabric: the shape
that dimension-by-dimension collectives run over, and the symmetry folding relies on (both
the workload builders' fold guard and the backends ask it the same way)."""

from __future__ import annotations

import itertools
import math
from typing import Any

from topologies.base import Topology
from topologies.grid import GRID_KINDS

#: Grid kinds with wrap-around links (a dimension of 3 or more closes into a ring).
_WRAPPED = ("torus2d", "torus3d")


def _strides(dims: tuple[int, ...]) -> list[int]:
    """Id strides of mixed-radix coordinates over ``dims`` (dimension 0 fastest)."""
    return [math.prod(dims[:d]) for d in range(len(dims))]


def logical_dims(topology: Topology, group: tuple[int, ...],
                 subgrids: bool = True) -> tuple[int, ...] | None:
    """The group's logical dimensions on a grid or hierarchical topology (NPU ids in mixed
    radix over ``topology.info.dims``, dimension 0 fastest): the topology's dims for the whole
    machine in id order; with ``subgrids``, also for a group that is a box of the grid (a
    contiguous range of coordinates in every dimension, members in id order) or, on fabrics
    whose dimensions are rails (``info.rail_aligned``), any product of coordinate sets, and on
    a torus a strided box (every k-th coordinate all the way round a dimension, e.g. one
    tensor-parallel index's data-parallel peers): the sides longer than one.
    AstraSim modes pass ``subgrids=False``: AstraSim runs such a group as one flat collective
    over its members."""
    dims = topology.info.dims
    if not dims:
        return None
    cache = topology._trees  # the topology's own cache (cleared when routes are invalidated)
    key = ("logical_dims", group, subgrids)
    if key not in cache:
        cache[key] = _logical_dims(topology, dims, group, subgrids)
    return cache[key]


def _logical_dims(topology: Topology, dims: tuple[int, ...], group: tuple[int, ...],
                  subgrids: bool) -> tuple[int, ...] | None:
    n = len(group)
    if n == topology.num_npus and group[0] == 0 and group[-1] == n - 1 \
            and group == tuple(range(n)):
        return tuple(dims)
    if not subgrids or n < 2 or n > topology.num_npus:
        return None
    coords = [divmod_coords(r, dims) for r in group]
    values = [sorted({c[d] for c in coords}) for d in range(len(dims))]
    wraps = topology.info.kind in _WRAPPED
    if not topology.info.rail_aligned and not all(
            _spaced(v, size, wraps) for v, size in zip(values, dims, strict=True)):
        return None  # neither a box nor a strided box of a torus
    strides = _strides(dims)
    sides = [len(v) for v in values]
    if math.prod(sides) != n:
        return None
    expected = [sum(values[d][c] * strides[d] for d, c in enumerate(box))
                for box in _box(sides)]
    if list(group) != expected:
        return None
    active = tuple(side for side in sides if side > 1)
    return active or None


def neighbour_ring(topology: Topology, group: tuple[int, ...]) -> tuple[int, ...]:
    """``group`` in a cyclic order whose consecutive members (the last and the first too) are
    one link apart, where the group is a box of a mesh or torus and such an order closes: a
    reflected mixed-radix Gray code over the box (each step moves one coordinate by one; the
    last member is the first moved along the slowest side, one wrap-around link away when that
    side spans a torus dimension, or one link when it is 2; each side is tried as the slowest).
    Otherwise the group as given.

    A ring of NPUs in id order crosses a grid's rows and planes in 2-3 hops (on a 4x4x4 torus a
    quarter of its steps), so its transfers contend and no two members' routes look alike;
    the neighbour order is the ring a topology-aware placement runs (Hamiltonian cycle of the
    grid graph)."""
    if topology.info.kind not in GRID_KINDS or len(group) < 3 \
            or logical_dims(topology, group) is None:
        return group
    dims = topology.info.dims
    coords = [divmod_coords(r, dims) for r in group]
    low = [min(c[d] for c in coords) for d in range(len(dims))]
    sides = [max(c[d] for c in coords) - low[d] + 1 for d in range(len(dims))]
    if math.prod(sides) != len(group):
        return group  # a strided box: its members are several links apart anyway
    strides = _strides(dims)
    wraps = topology.info.kind in _WRAPPED
    for slowest in reversed(range(len(dims))):  # the code closes along its slowest side
        axes = [d for d in range(len(dims)) if d != slowest] + [slowest]
        order: list[tuple[int, ...]] = [()]
        for d in axes:  # fastest first: each slower value walks the faster ones back
            order = [(*cell, v) for v in range(sides[d])
                     for cell in (order if v % 2 == 0 else order[::-1])]
        first, last = order[0], order[-1]
        moved = [i for i in range(len(axes)) if first[i] != last[i]]
        if len(moved) != 1:
            continue
        d = axes[moved[0]]
        if abs(last[moved[0]] - first[moved[0]]) == 1 or (
                wraps and dims[d] >= 3 and sides[d] == dims[d]):
            return tuple(sum((low[a] + cell[i]) * strides[a] for i, a in enumerate(axes))
                         for cell in order)
    return group


def _spaced(values: list[int], size: int, wraps: bool) -> bool:
    """Coordinates that form one logical dimension: contiguous, or (on a torus) every
    ``size / len``-th coordinate all the way round, so each member's next one along the
    dimension is the same distance away."""
    if values[-1] - values[0] + 1 == len(values):
        return True
    if not wraps or size % len(values):
        return False
    stride = size // len(values)
    return all(b - a == stride for a, b in itertools.pairwise(values))


def divmod_coords(rank: int, dims: tuple[int, ...]) -> tuple[int, ...]:
    """``rank``'s coordinates in mixed radix over ``dims`` (dimension 0 fastest)."""
    out = []
    for d in dims:
        out.append(rank % d)
        rank //= d
    return tuple(out)


def coordinate_table(dims: tuple[int, ...]) -> tuple[Any, Any]:
    """Every position's coordinates over ``dims`` (mixed radix, dimension 0 fastest) as a
    numpy ``[position, dim]`` array, and the dimensions' strides: ``coords @ strides`` gives
    the positions back, so translating positions is ``((coords + offset) % dims) @ strides``."""
    import numpy as np  # callers translate whole groups at once

    sizes = np.asarray(dims, dtype=np.int64)
    strides = np.asarray(_strides(tuple(dims)), dtype=np.int64)
    coords = (np.arange(math.prod(dims), dtype=np.int64)[:, None] // strides) % sizes
    return coords, strides


def _box(sides: list[int]) -> list[tuple[int, ...]]:
    """Offsets of a box's cells in id order (dimension 0 fastest)."""
    cells = [()]
    for side in sides:
        cells = [(*c, i) for i in range(side) for c in cells]
    return cells
