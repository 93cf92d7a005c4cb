"""How rank translations act on a topology's links: the proof behind folding.

A fold (:class:`des.core.fold.Fold`) simulates one representative rank per orbit of symmetric
ranks. That is exact on a topology when every translation ``k`` maps each route the
representatives use, ``route(a, b)``, hop by hop onto ``route(k(a), k(b))`` with links of the
same bandwidth, derate, latency and state and switches of the same latency, consistently (a link
always maps to the same link) and freely (the images of a link under different translations are
different links, so no link carries the traffic of two images). Then every link's traffic is the
translate of one *canonical* link's (the lowest id of its orbit), and simulating the canonical
links alone, with every message routed over them, reproduces every link exactly.

:class:`LinkOrbits` computes that action lazily, one representative route at a time, and
answers the canonical route of a message, or None when the symmetry does not hold for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from topologies.base import Topology, TopologyError


def link_signature(topology: Topology, link_id: int, last: bool = False) -> tuple:
    """What a hop over link ``link_id`` contributes to a message's uncontended time: its
    bandwidth, derate, latency and state, and the latency of the switch it enters (none when it
    is the ``last`` hop, which enters the destination)."""
    lk = topology.links[link_id]
    return (lk.bandwidth, lk.derate, lk.latency, lk.up,
            0.0 if last else topology.switch_latency.get(lk.dst, 0.0))


def route_signature(topology: Topology, route: Sequence[int]) -> tuple:
    """What a message's uncontended time over ``route`` depends on: each hop's
    :func:`link_signature`."""
    return tuple(link_signature(topology, i, h == len(route) - 1) for h, i in enumerate(route))


def translated_routes(topology: Topology, table: Any, src: int, dst: int,
                      signatures: Any) -> Any:
    """The route ``src -> dst`` under every translation ``table[k]`` (a numpy ``[k, rank]``
    array, ``table[0]`` the identity) as a ``[k, hop]`` array, when every translate has the
    same :func:`route_signature`; None otherwise (or when some translate has no route).
    ``signatures`` are the topology's :func:`link_signatures`, computed once by the caller."""
    try:
        routes = topology.routes_many(table[:, src], table[:, dst])
    except TopologyError:
        return None
    if routes is None:  # the translates differ in length
        return None
    hop_sig = signatures[routes.T]  # [hop, k, field]
    if routes.shape[1]:  # the last hop enters the destination: no switch latency
        hop_sig[-1, :, 4] = 0.0
    return routes if (hop_sig == hop_sig[:, :1, :]).all() else None


def same_timing(topology: Topology, table: Any, src: int, dst: int, signatures: Any) -> bool:
    """True when every translation ``table[k]`` maps the route ``src -> dst`` onto a route
    of the same :func:`route_signature`: the weaker symmetry an uncontended (closed-form)
    model needs, where which links a message crosses does not matter, only what they are.
    Arguments as for :func:`translated_routes`."""
    return src == dst or translated_routes(topology, table, src, dst, signatures) is not None


class LinkOrbits:
    """The translations ``table[k]`` (rank permutations, ``table[0]`` the identity) acting on
    ``topology``'s links, learnt from the routes asked for.

    Learning a route takes its image under every translation at once
    (:meth:`~topologies.base.Topology.routes_many`, vectorised where the router has a batch
    form) and checks it with array operations: a 1024-host fat tree folded onto one host asks
    for a million translated routes."""

    def __init__(self, topology: Topology, table: Sequence[Sequence[int]]) -> None:
        import numpy as np

        self.topology = topology
        self.table = table
        self.count = len(table)
        self._table = np.asarray(table, dtype=np.int64)  # [k, rank]
        self._signature = link_signatures(topology)  # what was proven holds for these links
        self._orbit_of = np.full(len(topology.links), -1, dtype=np.int64)  # link -> its lowest
        self.action: dict[int, Any] = {}  # route link -> its images under each k (an array)
        self.canonical: dict[int, int] = {}  # route link -> lowest id of its orbit
        self.members: dict[int, tuple[int, ...]] = {}  # canonical link -> its orbit
        self._routes: dict[tuple[int, int], tuple[int, ...] | None] = {}

    def route(self, src: int, dst: int) -> tuple[int, ...] | None:
        """The canonical route of a message from ``src`` to ``dst`` (the representative's), or
        None when some translation breaks the symmetry on it."""
        key = (src, dst)
        if key not in self._routes:
            self._routes[key] = self._learn(src, dst)
        return self._routes[key]

    def _learn(self, src: int, dst: int) -> tuple[int, ...] | None:
        import numpy as np

        if src == dst:
            return ()
        routes = translated_routes(self.topology, self._table, src, dst, self._signature)
        if routes is None:
            return None
        canonical = []
        for images in routes.T:  # each hop's image under every translation
            link = int(images[0])
            known = self.action.get(link)
            if known is not None:
                if not np.array_equal(known, images):
                    return None  # the same link would map two ways
                canonical.append(self.canonical[link])
                continue
            if len(np.unique(images)) != self.count:
                return None  # two images share a link: not free
            lowest = int(images.min())
            seen = self._orbit_of[images]
            if (seen != -1).any() and not (seen == lowest).all():
                return None  # orbits must partition the links
            self._orbit_of[images] = lowest
            self.action[link] = images
            self.canonical[link] = lowest
            self.members.setdefault(lowest, tuple(images.tolist()))
            canonical.append(lowest)
        return tuple(canonical)

    def links_of(self, canonical: int) -> tuple[int, ...]:
        """Every link in the orbit of ``canonical``."""
        return self.members[canonical]

    def current(self) -> bool:
        """True while every link is as it was when these orbits were learnt (a link's state,
        derate or bandwidth may change without the routes being invalidated)."""
        import numpy as np

        return np.array_equal(self._signature, link_signatures(self.topology))


def link_signatures(topology: Topology) -> Any:
    """Every link's :func:`link_signature` (as a non-last hop) as rows of a float array."""
    import numpy as np

    return np.array([link_signature(topology, i) for i in range(len(topology.links))],
                    dtype=np.float64).reshape(len(topology.links), 5)
