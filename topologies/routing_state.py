"""Router state: the per-topology tables a router reads, as typed, frozen records.

A :class:`~topologies.base.Topology` holds one of these in its ``router_state`` attribute (None
when its router needs no tables: fully connected, shortest path). A router fetches its own with
:meth:`~topologies.base.Topology.state`, which fails loudly when the topology holds another
kind. Link-id tables use -1 where there is no link.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RingRouting:
    """Ring tables: ``forward[i]`` is the link i -> i+1, ``backward[i]`` the link i+1 -> i
    (empty for a unidirectional ring and for a 2-ring, whose forward links join both ways)."""

    forward: tuple[int, ...]
    backward: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class SwitchRouting:
    """Single-switch tables: ``uplinks[npu]`` (NPU -> switch), ``downlinks[npu]`` (switch ->
    NPU)."""

    uplinks: tuple[int, ...]
    downlinks: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class GridRouting:
    """Mesh and torus dimension-order tables: the sizes per dimension (x fastest), whether the
    dimensions wrap round, and per dimension and NPU the link to its + and - neighbour
    (``plus[dim][npu]``, ``minus[dim][npu]``)."""

    dims: tuple[int, ...]
    wrap: bool
    plus: tuple[tuple[int, ...], ...]
    minus: tuple[tuple[int, ...], ...]

    def coords(self, npu: int) -> tuple[int, ...]:
        """The (x, y[, z]) coordinates of ``npu``."""
        out = []
        for size in self.dims:
            npu, c = divmod(npu, size)
            out.append(c)
        return tuple(out)


@dataclass(frozen=True, slots=True)
class DimTables:
    """Per-NPU link ids of one hierarchical dimension, for O(1) routing lookups: ring
    ``forward`` / ``backward`` (to the next / previous NPU of its group), fully connected
    ``direct[npu][coordinate]``, switch ``up[npu]`` / ``down[npu]``. Only the tables of the
    dimension's ``kind`` are filled, and none for a size-1 dimension."""

    kind: str
    size: int
    stride: int
    forward: tuple[int, ...] = ()
    backward: tuple[int, ...] = ()
    direct: tuple[tuple[int, ...], ...] = ()
    up: tuple[int, ...] = ()
    down: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class HierarchicalRouting:
    """Hierarchical dimension-order tables, one :class:`DimTables` per dimension (0 first)."""

    tables: tuple[DimTables, ...]

    def coords(self, npu: int) -> tuple[int, ...]:
        """The per-dimension coordinates (c0, c1, ...) of ``npu``."""
        return tuple((npu // t.stride) % t.size for t in self.tables)


@dataclass(frozen=True, slots=True)
class EcmpRouting:
    """ECMP state: the ``seed`` mixed into every path hash
    (:func:`topologies.fattree.ecmp_hash`)."""

    seed: int = 0


@dataclass(frozen=True, slots=True)
class DmodkRouting:
    """D-mod-K link tables of a k-ary fat tree (the choice itself is arithmetic on the
    destination's coordinates, :func:`topologies.fattree.dmodk_router`). ``edge_up[p][e][a]``
    is the link from edge switch ``e`` of pod ``p`` to its aggregation switch ``a``,
    ``agg_up[p][a][c]`` the link from aggregation switch ``a`` of pod ``p`` to its ``c``-th
    core switch, the ``*_down`` tables the reverse links, ``host_up[h]`` / ``host_down[h]`` a
    host's links to and from its edge switch.
    ``seed`` hashes the ECMP routes taken around links that are down."""

    half: int
    host_up: tuple[int, ...]
    host_down: tuple[int, ...]
    edge_up: tuple[tuple[tuple[int, ...], ...], ...]
    edge_down: tuple[tuple[tuple[int, ...], ...], ...]
    agg_up: tuple[tuple[tuple[int, ...], ...], ...]
    agg_down: tuple[tuple[tuple[int, ...], ...], ...]
    seed: int = 0


@dataclass(frozen=True, slots=True)
class ExplicitRouting:
    """Explicit routes from a file: ``routes[(src, dst)]`` is the device path, endpoints
    included; other pairs take the shortest path."""

    routes: Mapping[tuple[int, int], tuple[int, ...]]


RouterState = (RingRouting | SwitchRouting | GridRouting | HierarchicalRouting | EcmpRouting
               | DmodkRouting | ExplicitRouting)
"""The router state a topology may hold in its ``router_state`` attribute."""
