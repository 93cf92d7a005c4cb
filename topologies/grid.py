"""Grid topologies: 2D mesh, 2D torus and 3D torus, with dimension-order routing.

NPU ids are row-major with x fastest: ``id = x + X*y`` in 2D and ``id = x + X*y + X*Y*z`` in
3D. Each neighbour pair is joined by one duplex pair of links whose ``kind`` is the axis name
(``"x"``, ``"y"``, ``"z"``). Tori add wrap-around links; a dimension of size 2 gets one duplex
pair (not two parallel ones) and a dimension of size 1 gets no links.

Routing is dimension-order routing (Dally & Towles, *Principles and Practices of
Interconnection Networks*, 2004): correct x, then y, then z. On a torus each dimension goes the
shorter way round and, at exactly half way, in the + direction (deterministic tie-break).
Routes are computed per (src, dst) from coordinates in O(hops) and cached by
:meth:`~topologies.base.Topology.route`; per-NPU neighbour link ids live in the topology's
:class:`~topologies.routing_state.GridRouting` (``plus[dim][npu]`` and ``minus[dim][npu]``, -1
where there is none).

Detour rule, when links are down (the first rule that yields an all-up path wins):

1. the dimension-order path;
2. the other dimension orders, in lexicographic order of the permutations of the dimensions
   (mesh2d: YX; torus3d: XZY, YXZ, YZX, ZXY, ZYX), each dimension going the shorter way; then,
   for tori only, for each dimension with a non-zero offset and size > 2 (in increasing
   dimension order), the same sequence of orders with that one dimension going the longer way
   round (others shorter). Orders that give the same path (dimensions with no offset) are tried
   once;
3. :func:`~topologies.base.shortest_path_router` over the surviving links, which raises
   :func:`~topologies.base.no_route_error` when nothing connects the pair.

``info.bisection_bandwidth`` (bytes/ns, one direction) cuts the largest dimension L in
half: the cut crosses one link per line along L, i.e. ``N / n_L`` links, doubled on a torus by
the wrap-around (unless ``n_L == 2``, whose single duplex pair is crossed once). For an odd
``n_L`` the cut falls after ``floor(n_L / 2)`` slices, so the halves differ by one slice; the
number of crossing links, and the formula, are unchanged.
"""

from __future__ import annotations

from functools import lru_cache
from itertools import permutations
from math import prod
from numbers import Integral

from topologies.base import Topology, TopologyError, shortest_path_router
from topologies.meta import TopologyInfo, TopologyKind
from topologies.routing_state import GridRouting

AXES = "xyz"
GRID_KINDS = ("mesh2d", "torus2d", "torus3d")

Move = tuple[int, int]
"""Direction (+1 or -1) and number of hops along one dimension."""


def mesh2d(x: int, y: int, bandwidth: float, latency: float) -> Topology:
    """An X by Y mesh: NPU ``row*X + col`` is joined to its horizontal (kind ``"x"``) and
    vertical (kind ``"y"``) neighbours. Corners have 2 neighbours, edges 3, inner NPUs 4.
    XY dimension-order routing with the detours in the module docstring."""
    return _build_grid("mesh2d", (x, y), False, bandwidth, latency)


def torus2d(x: int, y: int, bandwidth: float, latency: float) -> Topology:
    """An X by Y torus: the mesh plus wrap-around links in each dimension of size >= 3.
    Dimension-order routing, each dimension the shorter way round (+ on ties)."""
    return _build_grid("torus2d", (x, y), True, bandwidth, latency)


def torus3d(x: int, y: int, z: int, bandwidth: float, latency: float) -> Topology:
    """An X by Y by Z torus, NPU id ``z*X*Y + y*X + x``, link kinds ``"x"``, ``"y"``, ``"z"``.
    Dimension-order routing (X, then Y, then Z), each the shorter way round (+ on ties)."""
    return _build_grid("torus3d", (x, y, z), True, bandwidth, latency)


def grid_coords(topo: Topology, npu: int) -> tuple[int, ...]:
    """The (x, y[, z]) coordinates of ``npu`` in a topology built by this module."""
    if topo.info.kind not in GRID_KINDS:
        raise TopologyError(f"{topo.name}: not a grid topology")
    if not (isinstance(npu, int) and 0 <= npu < topo.num_npus):
        raise TopologyError(f"{topo.name}: NPU {npu!r} is outside 0..{topo.num_npus - 1}")
    return topo.state(GridRouting).coords(npu)


# ---------------------------------------------------------------------- building
def _build_grid(kind: TopologyKind, sizes: tuple[int, ...], wrap: bool, bandwidth: float,
                latency: float) -> Topology:
    dims = _check_sizes(kind, sizes)
    n = prod(dims)
    topo = Topology(f"{kind}:{'x'.join(map(str, dims))}", n, _grid_router)
    plus = [[-1] * n for _ in dims]
    minus = [[-1] * n for _ in dims]
    stride = 1
    for d, size in enumerate(dims):
        _add_dimension(topo, d, size, stride, wrap, bandwidth, latency, plus[d], minus[d])
        stride *= size
    topo.router_state = GridRouting(dims, wrap, tuple(map(tuple, plus)),
                                    tuple(map(tuple, minus)))
    topo.info = TopologyInfo(kind, dims=dims,
                             bisection_bandwidth=_bisection_bandwidth(dims, wrap, bandwidth))
    return topo


def _check_sizes(kind: str, sizes: tuple[int, ...]) -> tuple[int, ...]:
    for axis, size in zip(AXES, sizes, strict=False):
        if not isinstance(size, Integral) or isinstance(size, bool) or size < 1:
            raise TopologyError(f"{kind}: size {axis} must be an integer >= 1, got {size!r}")
    if prod(sizes) < 2:
        shape = "x".join(map(str, sizes))
        raise TopologyError(f"{kind}: needs at least 2 NPUs, got {shape} = {prod(sizes)}")
    return tuple(int(size) for size in sizes)


def _add_dimension(topo: Topology, d: int, size: int, stride: int, wrap: bool,
                   bandwidth: float, latency: float, plus: list[int], minus: list[int]) -> None:
    """Join every NPU to its + neighbour along dimension ``d`` and fill its link tables."""
    for npu in range(topo.num_npus):
        c = (npu // stride) % size
        if c + 1 < size:
            nb = npu + stride
        elif wrap and size > 2:
            nb = npu - c * stride
        else:
            continue
        plus[npu], minus[nb] = topo.add_duplex(npu, nb, bandwidth, latency, AXES[d])
    if wrap and size == 2:  # the single pair serves both directions round the 2-ring
        for npu in range(topo.num_npus):
            if plus[npu] < 0:
                plus[npu] = minus[npu]
            else:
                minus[npu] = plus[npu]


def _bisection_bandwidth(dims: tuple[int, ...], wrap: bool, bandwidth: float) -> float:
    largest = max(dims)
    crossing = prod(dims) // largest
    if wrap and largest > 2:
        crossing *= 2
    return crossing * float(bandwidth)


# ---------------------------------------------------------------------- routing
def _grid_router(topo: Topology, src: int, dst: int, flow: int = 0) -> tuple[int, ...]:
    """Dimension-order route with the detour rule of the module docstring."""
    state = topo.state(GridRouting)
    dims, wrap = state.dims, state.wrap
    moves = _shorter_moves(state.coords(src), state.coords(dst), dims, wrap)
    for order, plan in _candidates(dims, wrap, moves):
        path = _walk(topo, state, src, order, plan)
        if path is not None:
            return path
    return shortest_path_router(topo, src, dst, flow)


def _shorter_moves(a: tuple[int, ...], b: tuple[int, ...], dims: tuple[int, ...],
                   wrap: bool) -> list[Move]:
    """Per dimension, the direction and hop count from coordinate ``a`` to ``b``."""
    moves: list[Move] = []
    for ca, cb, size in zip(a, b, dims, strict=True):
        if not wrap:
            moves.append((1 if cb >= ca else -1, abs(cb - ca)))
            continue
        ahead = (cb - ca) % size
        moves.append((1, ahead) if ahead <= size - ahead else (-1, size - ahead))
    return moves


def _candidates(dims: tuple[int, ...], wrap: bool, moves: list[Move]):
    """Yield (dimension order, moves) in the detour rule's order; lazily, so the usual case
    (dimension-order path up) builds one candidate."""
    active = tuple(d for d, (_, hops) in enumerate(moves) if hops)
    orders = _orders(len(dims), active)
    for order in orders:
        yield order, moves
    if not wrap:
        return
    for d in active:
        if dims[d] > 2:
            flipped = list(moves)
            sign, hops = moves[d]
            flipped[d] = (-sign, dims[d] - hops)
            for order in orders:
                yield order, flipped


@lru_cache(maxsize=64)
def _orders(ndim: int, active: tuple[int, ...]) -> tuple[tuple[int, ...], ...]:
    """Permutations of range(ndim) in lexicographic order, restricted to the dimensions that
    move, duplicates dropped (first occurrence kept)."""
    keep = set(active)
    seen: dict[tuple[int, ...], None] = {}
    for perm in permutations(range(ndim)):
        seen.setdefault(tuple(d for d in perm if d in keep), None)
    return tuple(seen)


def _walk(topo: Topology, state: GridRouting, src: int, order: tuple[int, ...],
          moves: list[Move]) -> tuple[int, ...] | None:
    """Follow ``moves`` dimension by dimension in ``order``; None at the first down link."""
    links = topo.links
    tables = (state.minus, state.plus)
    path: list[int] = []
    cur = src
    for d in order:
        sign, hops = moves[d]
        table = tables[sign > 0][d]
        for _ in range(hops):
            link = links[table[cur]]
            if not link.up:
                return None
            path.append(link.id)
            cur = link.dst
    return tuple(path)
