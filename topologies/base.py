"""A topology: devices (NPUs, then switches) joined by directed links, and a router over them.

NPUs are numbered 0..N-1 and switches N, N+1, ... Links are directed and may be parallel (two
links between the same pair, e.g. in different dimensions of a hierarchical stack), so the
graph is a networkx MultiDiGraph whose edge keys are link ids. Routes are tuples of link ids,
computed on first use and cached. This package never imports SimPy or the engine.

The topology keeps its devices and links in plain lists and dicts; the networkx view
(:attr:`Topology.graph`) is built on first access, because importing networkx costs more start-up
time (~70 ms) than a whole small simulation and nothing on the simulate path needs it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from des.core import limits
from des.core.schema import SchemaError
from topologies.meta import Layout, TopologyInfo
from topologies.routing_state import RouterState

if TYPE_CHECKING:
    import networkx as nx


class TopologyError(SchemaError):
    """A topology that cannot be built, or a route that does not exist; names what is wrong.
    A :class:`~des.core.schema.SchemaError`: topologies come from user input."""


@dataclass(slots=True)
class LinkSpec:
    """One directed link: bandwidth in bytes/ns, latency in ns, a derate factor in (0, 1] that
    scales bandwidth (a soft fault), and whether it is up. ``kind`` labels its class for reports
    (``ring``, ``nvlink``, ``uplink``...)."""

    id: int
    src: int
    dst: int
    bandwidth: float
    latency: float
    derate: float = 1.0
    up: bool = True
    kind: str = ""

    @property
    def effective_bandwidth(self) -> float:
        """Bandwidth after the derate, bytes/ns."""
        return self.bandwidth * self.derate


Router = Callable[["Topology", int, int, int], tuple[int, ...]]
"""A routing function ``(topology, src, dst, flow) -> link ids``; ``flow`` feeds ECMP hashing."""
BatchRouter = Callable[["Topology", Any, Any], Any]
"""``batch(topology, srcs, dsts)``: the flow-0 routes of the pairs (numpy int arrays) as one
``(pairs, hops)`` int array, equal to the router's route of each pair, or None when they do not
all have the same number of hops or the router would take another path for some pair."""

_State = TypeVar("_State")


class Topology:
    """Devices and directed links plus a routing function; routes are cached per (src, dst, flow).

    Builders in :mod:`topologies.builders` create these; the engine reads ``links`` and calls
    :meth:`route`. ``switch_latency`` is the forwarding latency (ns) a chunk pays at each switch
    it passes through.

    Typed attributes, set by the builders: ``info`` (a :class:`~topologies.meta.TopologyInfo`,
    kind ``custom`` until a builder says otherwise), ``layout`` (the builder-specific
    description, :data:`~topologies.meta.Layout`, or None) and ``router_state`` (the router's
    tables, :data:`~topologies.routing_state.RouterState`, or None).
    """

    def __init__(self, name: str, num_npus: int, router: Router | None = None) -> None:
        if int(num_npus) != num_npus or num_npus < 1:
            raise TopologyError(f"{name}: needs at least 1 NPU, got {num_npus!r}")
        limits.check("max_npus", num_npus, name)
        bounds = limits.current()  # read once: add_link checks every link against them
        self._bounds = (bounds["min_bandwidth"], bounds["max_bandwidth"],
                        bounds["max_latency"], bounds["max_links"])
        self.name = name
        self.num_npus = int(num_npus)
        self._kinds: list[str] = ["npu"] * self.num_npus  # device id -> kind
        self._between: dict[tuple[int, int], list[int]] = {}  # (src, dst) -> link ids
        self._graph: nx.MultiDiGraph | None = None  # the networkx view, built on demand
        self.links: list[LinkSpec] = []
        self.switch_latency: dict[int, float] = {}
        self._router: Router = router or shortest_path_router
        # routes of many (src, dst) pairs at once, as an array (see routes_many); None: none
        self.batch_router: BatchRouter | None = None
        self._routes: dict[tuple[int, int, int], tuple[int, ...]] = {}
        self._out: dict[int, list[int]] = {}  # device -> out link ids, ordered by (dst, id)
        self._trees: dict[tuple[int, bool], dict[int, tuple[int, int]]] = {}
        self.info = TopologyInfo()
        self.layout: Layout | None = None
        self.router_state: RouterState | None = None

    # ------------------------------------------------------------------ building
    def add_switch(self, latency: float = 0.0, kind: str = "switch") -> int:
        """Add a switch after the NPUs and existing switches; return its device id."""
        _check_nonneg(latency, f"{self.name}: switch latency")
        if not latency <= self._bounds[2]:
            limits.check("max_latency", latency, f"{self.name}: switch latency")
        sid = len(self._kinds)
        self._kinds.append(kind)
        self._graph = None
        self.switch_latency[sid] = float(latency)
        return sid

    def add_link(self, src: int, dst: int, bandwidth: float, latency: float,
                 kind: str = "") -> int:
        """Add a directed link and return its id."""
        for end in (src, dst):
            if end not in range(len(self._kinds)):
                raise TopologyError(f"{self.name}: link {src}->{dst} names unknown device {end}")
        if src == dst:
            raise TopologyError(f"{self.name}: link {src}->{dst} loops on itself")
        if not 0 < bandwidth < math.inf:
            raise TopologyError(f"{self.name}: link {src}->{dst} bandwidth must be a finite "
                                f"number > 0, got {bandwidth!r}")
        _check_nonneg(latency, f"{self.name}: link {src}->{dst} latency")
        low, high, slow, most = self._bounds
        if not (low <= bandwidth <= high and latency <= slow) or len(self.links) >= most:
            where = f"{self.name}: link {src}->{dst}"
            limits.check("min_bandwidth", bandwidth, f"{where} bandwidth")
            limits.check("max_bandwidth", bandwidth, f"{where} bandwidth")
            limits.check("max_latency", latency, f"{where} latency")
            limits.check("max_links", len(self.links) + 1, self.name, what="links so far")
        link = LinkSpec(len(self.links), src, dst, float(bandwidth), float(latency), kind=kind)
        self.links.append(link)
        self._between.setdefault((src, dst), []).append(link.id)
        self._graph = None
        out = self._out.setdefault(src, [])
        out.append(link.id)
        if len(out) > 1 and (self.links[out[-2]].dst, out[-2]) > (dst, link.id):
            out.sort(key=lambda i: (self.links[i].dst, i))
        self.invalidate_routes()
        return link.id

    def add_duplex(self, a: int, b: int, bandwidth: float, latency: float,
                   kind: str = "") -> tuple[int, int]:
        """Two links, a->b and b->a, with the same parameters."""
        return (self.add_link(a, b, bandwidth, latency, kind),
                self.add_link(b, a, bandwidth, latency, kind))

    # ------------------------------------------------------------------ reading
    def state(self, cls: type[_State]) -> _State:
        """This topology's router state, checked to be a ``cls`` (its router's own kind)."""
        state = self.router_state
        if not isinstance(state, cls):
            raise TopologyError(f"{self.name}: the router needs {cls.__name__} tables, the "
                                f"topology holds {type(state).__name__}")
        return state

    @property
    def num_devices(self) -> int:
        """NPUs plus switches."""
        return len(self._kinds)

    def device_kind(self, device: int) -> str:
        """``npu`` for NPUs; a switch's kind (``switch``, ``edge``, ``spine``...)."""
        return self._kinds[device]

    @property
    def graph(self) -> nx.MultiDiGraph:
        """The devices (attribute ``kind``) and links (edge key = link id, down links included)
        as a networkx MultiDiGraph, for analysis and drawing. Built on first access and after
        a change; networkx is imported here, not at module level, to keep start-up cheap."""
        if self._graph is None:
            import networkx as nx

            graph = nx.MultiDiGraph()
            graph.add_nodes_from((d, {"kind": k}) for d, k in enumerate(self._kinds))
            graph.add_edges_from((lk.src, lk.dst, lk.id) for lk in self.links)
            self._graph = graph
        return self._graph

    def is_switch(self, device: int) -> bool:
        """True for switches, False for NPUs."""
        return device >= self.num_npus

    def links_between(self, src: int, dst: int, *, up_only: bool = True) -> list[LinkSpec]:
        """The links from ``src`` to ``dst`` (several when parallel)."""
        links = [self.links[k] for k in self._between.get((src, dst), ())]
        return [lk for lk in links if lk.up] if up_only else links

    def out_links(self, device: int, *, up_only: bool = True) -> Iterator[LinkSpec]:
        """Links leaving ``device``, ordered by (far end, link id)."""
        for key in self._out.get(device, ()):
            link = self.links[key]
            if link.up or not up_only:
                yield link

    def bfs_tree(self, src: int, transit_npus: bool) -> dict[int, tuple[int, int]]:
        """Fewest-hop tree from ``src`` over up links: device -> (previous device, link id).
        Ties go to the lowest far-end id, then the lowest link id. Cached until links change."""
        key = (src, transit_npus)
        tree = self._trees.get(key)
        if tree is None:
            tree = {src: (-1, -1)}
            frontier = [src]
            while frontier:
                nxt: list[int] = []
                for u in frontier:
                    if u != src and u < self.num_npus and not transit_npus:
                        continue
                    for link in self.out_links(u):
                        if link.dst not in tree:
                            tree[link.dst] = (u, link.id)
                            nxt.append(link.dst)
                frontier = nxt
            self._trees[key] = tree
        return tree

    def route(self, src: int, dst: int, flow: int = 0) -> tuple[int, ...]:
        """Link ids from NPU ``src`` to NPU ``dst``; empty when src == dst. Cached."""
        key = (src, dst, flow)
        path = self._routes.get(key)
        if path is None:
            for end in (src, dst):
                if not (0 <= end < self.num_npus):
                    raise TopologyError(
                        f"{self.name}: NPU {end} is outside 0..{self.num_npus - 1}")
            path = () if src == dst else self._router(self, src, dst, flow)
            self._routes[key] = path
        return path

    def routes_many(self, srcs: Any, dsts: Any) -> Any:
        """The flow-0 routes of the pairs ``(srcs[i], dsts[i])`` (numpy int arrays, no pair
        with src == dst) as one ``(pairs, hops)`` numpy int array, or None when they differ in
        length. Uses the router's batch form where it has one (:attr:`batch_router`), else
        routes pair by pair without caching: a symmetry check asks for a route per translation
        of each representative route, far more than a run uses."""
        import numpy as np

        if self.batch_router is not None:
            out = self.batch_router(self, srcs, dsts)
            if out is not None:
                return out
        routes = [self._routes.get((s, d, 0)) or self._router(self, s, d, 0)
                  for s, d in zip(srcs.tolist(), dsts.tolist(), strict=True)]
        if len({len(r) for r in routes}) != 1:
            return None
        return np.array(routes, dtype=np.int64).reshape(len(routes), len(routes[0]))

    def route_from(self, device: int, dst: int, flow: int = 0) -> tuple[int, ...]:
        """Link ids from any device (a switch mid-route, say) to NPU ``dst``: the router's route
        from an NPU, the fewest-hop route over up links from a switch."""
        if device < self.num_npus:
            return self.route(device, dst, flow)
        for transit in (False, True):
            tree = self.bfs_tree(device, transit_npus=transit)
            if dst in tree:
                return _unwind(tree, device, dst)
        raise no_route_error(self, device, dst)

    def path_devices(self, route: tuple[int, ...]) -> list[int]:
        """The devices a route visits, endpoints included."""
        if not route:
            return []
        return [self.links[route[0]].src, *(self.links[i].dst for i in route)]

    def invalidate_routes(self) -> None:
        """Forget cached routes (after links are added, go down or come back)."""
        self._routes.clear()
        self._trees.clear()

    def __repr__(self) -> str:
        switches = self.num_devices - self.num_npus
        return (f"Topology({self.name!r}, npus={self.num_npus}, switches={switches}, "
                f"links={len(self.links)})")


def shortest_path_router(topo: Topology, src: int, dst: int, flow: int = 0) -> tuple[int, ...]:
    """Fewest hops over up links, never transiting another NPU unless no other path exists;
    ties go to the lowest next device id, then the lowest link id (deterministic). One BFS per
    source serves every destination."""
    del flow
    tree = topo.bfs_tree(src, transit_npus=False)
    if dst not in tree:
        tree = topo.bfs_tree(src, transit_npus=True)
    if dst not in tree:
        raise no_route_error(topo, src, dst)
    return _unwind(tree, src, dst)


def path_is_up(topo: Topology, path: tuple[int, ...]) -> bool:
    """True when every link of ``path`` is up."""
    links = topo.links
    return all(links[i].up for i in path)


def no_route_error(topo: Topology, src: int, dst: int) -> TopologyError:
    """The error for a pair with no surviving route, naming the pair and the failed links."""
    down = [f"{lk.src}-{lk.dst}" for lk in topo.links if not lk.up]
    why = f"; failed links: {', '.join(down[:20])}" if down else ""
    more = f" and {len(down) - 20} more" if len(down) > 20 else ""
    return TopologyError(f"{topo.name}: no route from {src} to {dst}{why}{more}")


def _unwind(prev: dict[int, tuple[int, int]], src: int, dst: int) -> tuple[int, ...]:
    path: list[int] = []
    node = dst
    while node != src:
        node, link_id = prev[node]
        path.append(link_id)
    return tuple(reversed(path))


def _check_nonneg(value: float, what: str) -> None:
    if not value >= 0 or value == math.inf:
        raise TopologyError(f"{what} must be a finite number >= 0, got {value!r}")
