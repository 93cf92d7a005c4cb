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

from topologies.base import Topology, TopologyError


def route_signature(topology: Topology, route: Sequence[int]) -> tuple:
    """What a message's uncontended time over ``route`` depends on: each hop's bandwidth,
    derate, latency and state, and the latency of the switch it enters (the last hop enters
    the destination)."""
    return tuple((lk.bandwidth, lk.derate, lk.latency, lk.up,
                  topology.switch_latency.get(lk.dst, 0.0) if h < len(route) - 1 else 0.0)
                 for h, lk in enumerate(topology.links[i] for i in route))


def translated_routes(topology: Topology, table: Sequence[Sequence[int]], src: int,
                      dst: int) -> list[tuple[int, ...]] | None:
    """The route ``src -> dst`` under every translation ``table[k]`` (``table[0]`` the
    identity), when each has the same :func:`route_signature`; None otherwise (or when some
    translate has no route)."""
    try:
        routes = [topology.route(t[src], t[dst]) for t in table]
    except TopologyError:
        return None
    signature = route_signature(topology, routes[0])  # one entry per hop: lengths match too
    if any(route_signature(topology, r) != signature for r in routes[1:]):
        return None
    return routes


def same_timing(topology: Topology, table: Sequence[Sequence[int]], src: int,
                dst: int) -> bool:
    """True when every translation ``table[k]`` maps the route ``src -> dst`` onto a route
    of the same :func:`route_signature`: the weaker symmetry an uncontended (closed-form)
    model needs, where which links a message crosses does not matter, only what they are."""
    return translated_routes(topology, table, src, dst) is not None


class LinkOrbits:
    """The translations ``table[k]`` (rank permutations, ``table[0]`` the identity) acting on
    ``topology``'s links, learnt from the routes asked for."""

    def __init__(self, topology: Topology, table: Sequence[Sequence[int]]) -> None:
        self.topology = topology
        self.table = table
        self.count = len(table)
        self.action: dict[int, tuple[int, ...]] = {}  # route link -> its image under each k
        self.orbit: dict[int, frozenset[int]] = {}  # link -> the links of its orbit
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
        routes = translated_routes(self.topology, self.table, src, dst)
        if routes is None:
            return None
        base = routes[0]
        canonical = []
        for h, link in enumerate(base):
            images = tuple(r[h] for r in routes)
            members = frozenset(images)
            if len(members) != self.count:
                return None  # two images share a link: not free
            if self.action.setdefault(link, images) != images:
                return None  # the same link would map two ways
            for image in images:  # orbits must partition the links
                if self.orbit.setdefault(image, members) != members:
                    return None
            lowest = min(images)
            self.canonical[link] = lowest
            self.members[lowest] = images
            canonical.append(lowest)
        return tuple(canonical)

    def links_of(self, canonical: int) -> tuple[int, ...]:
        """Every link in the orbit of ``canonical``."""
        return self.members[canonical]
