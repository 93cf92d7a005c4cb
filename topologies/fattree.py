"""Multi-rooted datacenter fabrics: k-ary fat tree, leaf-spine Clos and a DGX SuperPOD-like
rail-optimized cluster, routed by deterministic ECMP or, on the fat tree, by D-mod-K.

* :func:`fat_tree` is the three-tier k-ary fat tree of Al-Fares, Loukissas and Vahdat, "A
  Scalable, Commodity Data Center Network Architecture" (SIGCOMM 2008), itself a folded Clos
  network (C. Clos, "A Study of Non-Blocking Switching Networks", Bell Syst. Tech. J. 1953) and
  a fat tree in the sense of C. E. Leiserson ("Fat-Trees: Universal Networks for
  Hardware-Efficient Supercomputing", IEEE Trans. Computers 1985).
* :func:`leaf_spine` is the two-level folded Clos used by most current datacenters.
* :func:`superpod` follows the rail-optimized layout of the NVIDIA DGX SuperPOD reference
  architecture: one NVSwitch domain per node, GPU ``i`` of every node on rail leaf ``i``, rail
  leaves joined by spines.

Device numbering: NPUs (hosts, GPUs) are ``0..N-1``, switches follow in the order documented on
each builder; their ids are also listed in the topology's ``layout``
(:class:`~topologies.meta.FatTreeLayout`, :class:`~topologies.meta.LeafSpineLayout`,
:class:`~topologies.meta.SuperpodLayout`). Every link is duplex (one directed
link each way with the same parameters). Bandwidths are bytes/ns and latencies ns.

Routing (:func:`ecmp_router`) is equal-cost multi-path over fewest-hop paths. For each
destination a breadth-first search on the reversed graph over *up* links gives every device its
hop distance to the destination (computed lazily, one BFS per destination). A route is then
walked from the source: at each device the candidates are the up out-links whose far end is one
hop closer, ordered by (far end id, link id); with more than one candidate, the choice is
``blake2b(pack("<5Q", src, dst, flow, seed, hop), digest_size=8) mod len(candidates)`` (each int
taken modulo 2**64, little-endian), so the same (src, dst, flow, seed) gives the same path in
every run and process, and different flow ids spread over the equal-cost uplinks. Paths never
pass *through* another NPU unless no other path survives (then, as in
:func:`~topologies.base.shortest_path_router`, NPUs may be transited).

The expensive part of a route, the equal-cost candidates at each switch, depends on the
destination only through its *last-hop switches* (the switches with an up link into it): a
switch's distance to the destination is one more than its distance to the nearest of them.
So the candidates are computed and cached per (switch, last-hop switch set), shared by every
host pair whose destination hangs off the same switches (every host of an edge switch or leaf),
and a host's route is assembled from them, hashing exactly as above: the routes are identical
to a per-destination walk. Cases that walk does not cover (a direct NPU-to-NPU link to the
destination, a route that must transit NPUs, a link that went down without
:meth:`Topology.invalidate_routes`) take the per-destination walk.

:func:`fat_tree` routes by D-mod-K by default (:func:`dmodk_router`): each upward hop is chosen
from the destination's coordinates alone, as InfiniBand fat trees are routed; ``routing="ecmp"``
hashes instead.

The distance tables live in ``Topology._trees`` under keys ``("ecmp-dist", dst, transit)``
(plus ``("ecmp-in",)`` for the in-link index): :meth:`Topology.invalidate_routes`, which the
fault code calls after changing links, clears that dict, so the tables never outlive a change.
"""

from __future__ import annotations

import hashlib
import struct
from typing import Any, cast

from topologies.base import Topology, TopologyError, no_route_error
from topologies.meta import FatTreeLayout, LeafSpineLayout, SuperpodLayout, TopologyInfo
from topologies.routing_state import DmodkRouting, EcmpRouting

__all__ = ["dmodk_router", "dmodk_routes", "ecmp_hash", "ecmp_router", "fat_tree", "leaf_spine",
           "superpod"]

ROUTINGS = ("dmodk", "ecmp")
"""How :func:`fat_tree` routes: D-mod-K (the default) or hashed ECMP."""

_MASK64 = (1 << 64) - 1
_HASH_FORMAT = struct.Struct("<5Q")


# ---------------------------------------------------------------------- ECMP routing
def ecmp_hash(src: int, dst: int, flow: int, seed: int, hop: int) -> int:
    """The stable 64-bit ECMP hash of one routing decision: BLAKE2b (8-byte digest) of the five
    ints packed little-endian as unsigned 64-bit (each taken modulo 2**64)."""
    packed = _HASH_FORMAT.pack(src & _MASK64, dst & _MASK64, flow & _MASK64, seed & _MASK64,
                               hop & _MASK64)
    return int.from_bytes(hashlib.blake2b(packed, digest_size=8).digest(), "little")


def ecmp_router(topo: Topology, src: int, dst: int, flow: int = 0) -> tuple[int, ...]:
    """Equal-cost multi-path over fewest-hop paths of up links (see the module docstring).

    The seed is the topology's :class:`~topologies.routing_state.EcmpRouting` seed (0 when it
    holds none). Paths avoid transiting NPUs when any
    such path survives; otherwise NPUs may be transited. Raises the
    :func:`~topologies.base.no_route_error` when no path survives.
    """
    state = topo.router_state
    seed = state.seed if isinstance(state, EcmpRouting | DmodkRouting) else 0
    path = _ecmp_by_switches(topo, src, dst, flow, seed)
    if path is not None:
        return path
    for transit in (False, True):
        path = _ecmp_walk(topo, src, dst, flow, seed, transit)
        if path is not None:
            return path
    raise no_route_error(topo, src, dst)


def dmodk_router(topo: Topology, src: int, dst: int, flow: int = 0) -> tuple[int, ...]:
    """D-mod-K routing on a k-ary fat tree (E. Zahavi, "D-Mod-K Routing Providing Non-Blocking
    Traffic for Shift Permutations on Real Life Fat Trees", CCIT Report 776, Technion, 2010):
    going up, a message leaves its edge switch for aggregation switch ``dst mod k/2`` (the
    destination's index under its edge switch) and its aggregation switch for core
    ``floor(dst / (k/2)) mod k/2`` (the destination's edge switch in its pod); coming down, the
    path to the destination is unique. Every destination thus has one spanning tree of
    downward paths, and with every link up the routes are independent of the flow id.

    The rule commutes with translations of the hosts' (index, edge, pod) coordinates: moving
    source and destination by the same offsets moves every link of the route by a fixed
    offset too, on separate links for different offsets, which is what lets a folded run
    simulate one host for all (:class:`topologies.symmetry.LinkOrbits` checks it). When a link
    of that path is down, the route is the ECMP route over what survives (:func:`ecmp_router`,
    which hashes the flow id).
    """
    t = topo.state(DmodkRouting)
    half = t.half
    s_pod, s_edge = divmod(src // half, half)
    d_pod, rest = divmod(dst, half * half)
    d_edge, d_host = divmod(rest, half)
    if s_pod == d_pod and s_edge == d_edge:
        path: tuple[int, ...] = (t.host_up[src], t.host_down[dst])
    elif s_pod == d_pod:
        path = (t.host_up[src], t.edge_up[s_pod][s_edge][d_host],
                t.edge_down[d_pod][d_host][d_edge], t.host_down[dst])
    else:
        path = (t.host_up[src], t.edge_up[s_pod][s_edge][d_host],
                t.agg_up[s_pod][d_host][d_edge], t.agg_down[d_pod][d_host][d_edge],
                t.edge_down[d_pod][d_host][d_edge], t.host_down[dst])
    links = topo.links
    if all(links[i].up for i in path):
        return path
    return ecmp_router(topo, src, dst, flow)


def dmodk_routes(topo: Topology, srcs: Any, dsts: Any) -> Any:
    """:func:`dmodk_router` for many pairs at once (numpy int arrays), as the
    :attr:`~topologies.base.Topology.batch_router` of a D-mod-K fat tree: the routes as one
    ``(pairs, hops)`` array, or None when the pairs' routes differ in length or cross a link
    that is down (then each pair takes its own route)."""
    import numpy as np

    t = topo.state(DmodkRouting)
    tables = topo._trees.get(("dmodk-arrays",))
    if tables is None:
        tables = topo._trees[("dmodk-arrays",)] = tuple(
            np.asarray(x, dtype=np.int64) for x in (t.host_up, t.host_down, t.edge_up,
                                                    t.edge_down, t.agg_up, t.agg_down))
    host_up, host_down, edge_up, edge_down, agg_up, agg_down = tables
    half = t.half
    s_pod, s_edge = np.divmod(srcs // half, half)
    d_pod, rest = np.divmod(dsts, half * half)
    d_edge, d_host = np.divmod(rest, half)
    same_pod = s_pod == d_pod
    same_edge = same_pod & (s_edge == d_edge)
    if same_edge.all():
        hops = [host_up[srcs], host_down[dsts]]
    elif same_pod.all() and not same_edge.any():
        hops = [host_up[srcs], edge_up[s_pod, s_edge, d_host], edge_down[d_pod, d_host, d_edge],
                host_down[dsts]]
    elif not same_pod.any():
        hops = [host_up[srcs], edge_up[s_pod, s_edge, d_host], agg_up[s_pod, d_host, d_edge],
                agg_down[d_pod, d_host, d_edge], edge_down[d_pod, d_host, d_edge],
                host_down[dsts]]
    else:
        return None
    routes = np.stack(hops, axis=1)
    links = topo.links  # read live: a link may go down without invalidate_routes
    return routes if all(links[i].up for i in np.unique(routes).tolist()) else None


def _ecmp_walk(topo: Topology, src: int, dst: int, flow: int, seed: int,
               transit: bool) -> tuple[int, ...] | None:
    """One ECMP path, or None when ``src`` cannot reach ``dst`` under this transit rule."""
    n = topo.num_npus
    for attempt in range(2):
        dist = _distances(topo, dst, transit, fresh=attempt > 0)
        here = dist.get(src)
        if here is None:
            return None
        path: list[int] = []
        node = src
        while node != dst:
            want = here - 1
            options = [lk.id for lk in topo.out_links(node)
                       if dist.get(lk.dst) == want
                       and (transit or lk.dst == dst or lk.dst >= n)]
            if not options:  # a link went down without invalidate_routes(): recompute once
                break
            pick = options[0] if len(options) == 1 else options[
                ecmp_hash(src, dst, flow, seed, len(path)) % len(options)]
            path.append(pick)
            node = topo.links[pick].dst
            here = want
        else:
            return tuple(path)
    return None


def _ecmp_by_switches(topo: Topology, src: int, dst: int, flow: int,
                      seed: int) -> tuple[int, ...] | None:
    """The route :func:`_ecmp_walk` takes without NPU transit, assembled from candidate lists
    cached per (switch, last-hop switch set); None when this shortcut does not apply (then the
    caller walks per destination)."""
    trees = cast(dict[Any, Any], topo._trees)
    n = topo.num_npus
    links = topo.links
    lasts = trees.get(("ecmp-last", dst))
    if lasts is None:
        lasts = tuple(sorted({links[i].src for i in _in_links(topo)[dst]
                              if links[i].up and links[i].src >= n}))
        trees[("ecmp-last", dst)] = lasts
    if not lasts:
        return None
    table = _switch_distances(topo, lasts)
    first: list[int] = []
    best = None
    for lk in topo.out_links(src):  # the host's own hop: toward the nearest switch
        if lk.dst == dst:
            return None  # a direct link: the per-destination walk handles it
        d = table.get(lk.dst) if lk.dst >= n else None
        if d is None:
            continue
        if best is None or d < best:
            best, first = d, [lk.id]
        elif d == best:
            first.append(lk.id)
    if best is None:
        return None
    options = first
    path: list[int] = []
    node = src
    while True:
        pick = options[0] if len(options) == 1 else options[
            ecmp_hash(src, dst, flow, seed, len(path)) % len(options)]
        path.append(pick)
        node = links[pick].dst
        if node == dst:
            return tuple(path)
        key = ("ecmp-opt", node, lasts) if table[node] else ("ecmp-opt", node, dst)
        options = trees.get(key)
        if options is None:
            here = table[node]
            if here:
                options = [lk.id for lk in topo.out_links(node)
                           if lk.dst >= n and table.get(lk.dst) == here - 1]
            else:
                options = [lk.id for lk in topo.out_links(node) if lk.dst == dst]
            trees[key] = options
        if not options or not all(links[i].up for i in options):
            return None  # a link changed without invalidate_routes(): walk afresh


def _switch_distances(topo: Topology, lasts: tuple[int, ...]) -> dict[int, int]:
    """Hop distance over up switch-to-switch links from every switch that reaches one of
    ``lasts`` to the nearest of them (0 at ``lasts``); cached per last-hop switch set."""
    trees = cast(dict[Any, Any], topo._trees)
    key = ("ecmp-sw", lasts)
    table = trees.get(key)
    if table is None:
        into = _in_links(topo)
        links = topo.links
        n = topo.num_npus
        table = dict.fromkeys(lasts, 0)
        frontier = list(lasts)
        depth = 0
        while frontier:
            depth += 1
            nxt: list[int] = []
            for node in frontier:
                for link_id in into[node]:
                    link = links[link_id]
                    if link.up and link.src >= n and link.src not in table:
                        table[link.src] = depth
                        nxt.append(link.src)
            frontier = nxt
        trees[key] = table
    return cast(dict[int, int], table)


def _in_links(topo: Topology) -> list[list[int]]:
    """Link ids entering each device, by device id (cached alongside the BFS trees)."""
    trees = cast(dict[Any, Any], topo._trees)
    index = trees.get(("ecmp-in",))
    if index is None or len(index) != topo.num_devices:
        index = [[] for _ in range(topo.num_devices)]
        for link in topo.links:
            index[link.dst].append(link.id)
        trees[("ecmp-in",)] = index
    return cast(list[list[int]], index)


def _distances(topo: Topology, dst: int, transit: bool, fresh: bool = False) -> dict[int, int]:
    """Hop distance to ``dst`` over up links for every device that can reach it; devices that
    are NPUs (other than ``dst``) are not expanded unless ``transit``. Cached per dst."""
    trees = cast(dict[Any, Any], topo._trees)
    key = ("ecmp-dist", dst, transit)
    dist = None if fresh else trees.get(key)
    if dist is None:
        if fresh:
            trees.pop(("ecmp-in",), None)
        into = _in_links(topo)
        links = topo.links
        n = topo.num_npus
        dist = {dst: 0}
        frontier = [dst]
        depth = 0
        while frontier:
            depth += 1
            nxt: list[int] = []
            for node in frontier:
                if node != dst and node < n and not transit:
                    continue
                for link_id in into[node]:
                    link = links[link_id]
                    if link.up and link.src not in dist:
                        dist[link.src] = depth
                        nxt.append(link.src)
            frontier = nxt
        trees[key] = dist
    return cast(dict[int, int], dist)


# ---------------------------------------------------------------------- builders
def fat_tree(k: int, bandwidth: float, latency: float, *, switch_latency: float = 0.0,
             seed: int = 0, routing: str = "dmodk") -> Topology:
    """The k-ary three-tier fat tree of Al-Fares et al. (SIGCOMM 2008).

    ``k`` pods, each with k/2 edge and k/2 aggregation switches; (k/2)^2 core switches; k^3/4
    hosts (the NPUs). Every switch has k ports. Edge switch ``e`` of pod ``p`` serves hosts
    ``p*(k/2)^2 + e*(k/2) + i`` for ``i < k/2`` (contiguous); it joins every aggregation switch
    of its pod; aggregation switch ``j`` of every pod joins core switches ``j*(k/2) .. j*(k/2) +
    k/2 - 1``. Switch ids: edge switches (pod-major), then aggregation (pod-major), then core;
    listed in ``layout.edge_switches``, ``.agg_switches``, ``.core_switches``.

    All links are duplex with ``bandwidth`` (bytes/ns) and ``latency`` (ns); kinds
    ``host-edge``, ``edge-agg`` and ``agg-core``. Every switch adds ``switch_latency``. Fewest-hop
    paths are 2 hops under one edge switch, 4 within a pod and 6 across pods. ``routing``:
    ``"dmodk"`` (default, :func:`dmodk_router`) picks the aggregation and core switch from the
    destination, as an InfiniBand subnet manager's fat-tree routing does; ``"ecmp"``
    (:func:`ecmp_router`) spreads flows over the k/2 aggregation and (k/2)^2 core choices by a
    hash with ``seed``, as Ethernet switches do. ``seed`` also picks the detours D-mod-K takes
    around links that are down.

    ``info.dims`` is ``(k/2, k/2, k)``: a host's id in mixed radix is (index under its edge
    switch, edge switch in its pod, pod), dimension 0 fastest.

    ``info.bisection_bandwidth`` is the full bisection k^3/8 * bandwidth (bytes/ns, one
    direction): half the hosts each sending at line rate, which the rearrangeably non-blocking
    fat tree carries.
    """
    _check_int(k, "fat_tree: k", minimum=2)
    if k % 2:
        raise TopologyError(f"fat_tree: k must be even, got {k}")
    _check_int(seed, "fat_tree: seed", minimum=None)
    if routing not in ROUTINGS:
        raise TopologyError(f"fat_tree: routing must be one of {', '.join(ROUTINGS)}, got "
                            f"{routing!r}")
    half = k // 2
    hosts = k * half * half
    topo = Topology(f"fat_tree:{k}", hosts,
                    dmodk_router if routing == "dmodk" else ecmp_router)
    edge = [[topo.add_switch(switch_latency, "edge") for _ in range(half)] for _ in range(k)]
    agg = [[topo.add_switch(switch_latency, "aggregation") for _ in range(half)]
           for _ in range(k)]
    core = [topo.add_switch(switch_latency, "core") for _ in range(half * half)]
    host_links = []
    edge_up = [[[0] * half for _ in range(half)] for _ in range(k)]  # [pod][edge][agg]
    edge_down = [[[0] * half for _ in range(half)] for _ in range(k)]  # [pod][agg][edge]
    agg_up = [[[0] * half for _ in range(half)] for _ in range(k)]  # [pod][agg][core]
    agg_down = [[[0] * half for _ in range(half)] for _ in range(k)]  # [pod][agg][core]
    for pod in range(k):
        for e in range(half):
            for i in range(half):
                host_links.append(topo.add_duplex(pod * half * half + e * half + i,
                                                  edge[pod][e], bandwidth, latency, "host-edge"))
            for j in range(half):
                edge_up[pod][e][j], edge_down[pod][j][e] = topo.add_duplex(
                    edge[pod][e], agg[pod][j], bandwidth, latency, "edge-agg")
        for j in range(half):
            for c in range(half):
                agg_up[pod][j][c], agg_down[pod][j][c] = topo.add_duplex(
                    agg[pod][j], core[j * half + c], bandwidth, latency, "agg-core")

    def frozen(table: list[list[list[int]]]) -> tuple[tuple[tuple[int, ...], ...], ...]:
        return tuple(tuple(tuple(row) for row in pod) for pod in table)

    if routing == "dmodk":
        topo.router_state = DmodkRouting(
            half, tuple(up for up, _ in host_links), tuple(down for _, down in host_links),
            frozen(edge_up), frozen(edge_down), frozen(agg_up), frozen(agg_down), seed)
        topo.batch_router = dmodk_routes
    else:
        topo.router_state = EcmpRouting(seed)
    topo.layout = FatTreeLayout(
        k=k, pods=k, hosts=hosts,
        edge_switches=tuple(s for pod in edge for s in pod),
        agg_switches=tuple(s for pod in agg for s in pod),
        core_switches=tuple(core),
        bandwidth=float(bandwidth), latency=float(latency),
    )
    topo.info = TopologyInfo("fat_tree", dims=(half, half, k),
                             bisection_bandwidth=hosts / 2 * float(bandwidth))
    return topo


def leaf_spine(leaves: int, hosts_per_leaf: int, spines: int, host_bandwidth: float,
               latency: float, *, uplink_bandwidth: float | None = None,
               oversubscription: float | None = None, switch_latency: float = 0.0,
               seed: int = 0) -> Topology:
    """A two-level folded Clos (Clos 1953): ``leaves`` leaf switches with ``hosts_per_leaf``
    hosts each, every leaf joined by one duplex uplink to each of ``spines`` spine switches.

    Hosts (NPUs) ``l*hosts_per_leaf .. (l+1)*hosts_per_leaf - 1`` hang off leaf ``l``; leaf ids
    follow the hosts, then the spines (``layout.leaf_switches``, ``.spine_switches``).
    Host links carry ``host_bandwidth`` (kind ``host-leaf``); uplinks (kind ``leaf-spine``) carry
    ``uplink_bandwidth`` if given, else the value that yields ``oversubscription`` =
    (hosts_per_leaf * host_bandwidth) / (spines * uplink_bandwidth); give at most one of the two;
    with neither the fabric is 1:1 (non-blocking). All links share ``latency``; every switch adds
    ``switch_latency``. Paths: 2 hops under one leaf, 4 otherwise, ECMP over the spines.

    ``info.bisection_bandwidth`` (bytes/ns, one direction) is min(hosts/2 * host_bandwidth,
    leaves/2 * spines * uplink_bandwidth): half the hosts at line rate, or the uplink capacity of
    half the leaves, whichever is smaller (real-valued halves, so odd counts are averaged). With
    one leaf no traffic crosses the spines and it is hosts/2 * host_bandwidth.
    """
    for value, what in ((leaves, "leaves"), (hosts_per_leaf, "hosts_per_leaf"),
                        (spines, "spines")):
        _check_int(value, f"leaf_spine: {what}", minimum=1)
    _check_int(seed, "leaf_spine: seed", minimum=None)
    _check_positive(host_bandwidth, "leaf_spine: host_bandwidth")
    if uplink_bandwidth is not None and oversubscription is not None:
        raise TopologyError("leaf_spine: give uplink_bandwidth or oversubscription, not both")
    if uplink_bandwidth is not None:
        _check_positive(uplink_bandwidth, "leaf_spine: uplink_bandwidth")
        uplink = float(uplink_bandwidth)
    else:
        ratio = 1.0 if oversubscription is None else oversubscription
        _check_positive(ratio, "leaf_spine: oversubscription")
        uplink = hosts_per_leaf * float(host_bandwidth) / (spines * float(ratio))
    hosts = leaves * hosts_per_leaf
    topo = Topology(f"leaf_spine:{leaves}x{hosts_per_leaf}:{spines}", hosts, ecmp_router)
    leaf_ids = [topo.add_switch(switch_latency, "leaf") for _ in range(leaves)]
    spine_ids = [topo.add_switch(switch_latency, "spine") for _ in range(spines)]
    for leaf, sw in enumerate(leaf_ids):
        for i in range(hosts_per_leaf):
            topo.add_duplex(leaf * hosts_per_leaf + i, sw, host_bandwidth, latency, "host-leaf")
        for spine in spine_ids:
            topo.add_duplex(sw, spine, uplink, latency, "leaf-spine")
    host_half = hosts / 2 * float(host_bandwidth)
    bisection = host_half if leaves == 1 else min(host_half, leaves / 2 * spines * uplink)
    topo.router_state = EcmpRouting(seed)
    topo.layout = LeafSpineLayout(
        leaves=leaves, hosts_per_leaf=hosts_per_leaf, spines=spines, hosts=hosts,
        leaf_switches=tuple(leaf_ids), spine_switches=tuple(spine_ids),
        host_bandwidth=float(host_bandwidth), uplink_bandwidth=uplink,
        oversubscription=hosts_per_leaf * float(host_bandwidth) / (spines * uplink),
        latency=float(latency),
    )
    topo.info = TopologyInfo("leaf_spine", bisection_bandwidth=bisection)
    return topo


def superpod(nodes: int, *, gpus_per_node: int = 8, nvlink_bandwidth: float,
             nic_bandwidth: float, latency: float, nvswitch_latency: float = 0.0,
             leaf_latency: float = 0.0, spines: int | None = None, seed: int = 0) -> Topology:
    """A rail-optimized GPU cluster after the NVIDIA DGX SuperPOD reference architecture.

    ``nodes`` nodes of ``gpus_per_node`` GPUs; GPU ``g`` of node ``n`` is NPU
    ``n*gpus_per_node + g``. Switch ids follow the GPUs: one NVSwitch per node (kind
    ``nvswitch``; the node's NVSwitch fabric modelled as a single crossbar), then one rail leaf
    per GPU index (``rail-leaf``), then the spines (``spine``); see ``layout.nvswitches``,
    ``.rail_leaves`` and ``.spine_switches``.

    Links (all duplex, all ``latency``): GPU <-> its node's NVSwitch at ``nvlink_bandwidth`` (the
    GPU's aggregate NVLink bandwidth per direction; kind ``nvlink``); GPU ``g`` <-> rail leaf
    ``g`` at ``nic_bandwidth`` (one NIC per GPU; kind ``nic``); every rail leaf <-> every spine
    (kind ``leaf-spine``) at ``nodes * nic_bandwidth / spines``, so the leaf-spine tier is
    non-blocking (1:1). ``spines`` defaults to ``gpus_per_node`` (as many spines as rails, a
    common SuperPOD scalable-unit ratio); NVSwitches add ``nvswitch_latency``, rail leaves and
    spines ``leaf_latency``.

    ``info.dims`` is ``(gpus_per_node, nodes)``: NPU ids in mixed radix, GPU within its node
    fastest. Collectives of groups spanning several GPUs of several nodes run per dimension
    (:mod:`collectives.auto`), so their inter-node traffic stays on the rails, as NCCL's
    rail-aligned rings do.

    Routes (ECMP, fewest hops): within a node GPU -> NVSwitch -> GPU (2 hops); across nodes on
    the same rail GPU -> rail leaf -> GPU (2 hops); across nodes on different rails GPU -> rail
    leaf a -> spine -> rail leaf b -> GPU (4 hops, ECMP over the spines). NICs are rail-only and
    there is no PXN (PCIe/NVLink cross-rail forwarding): a cross-rail message never hops through
    a peer GPU over NVLink, because routes do not transit NPUs while a switch-only path survives.
    Only when a GPU's NIC link fails does the router fall back to transiting a peer GPU.

    ``info.bisection_bandwidth`` (bytes/ns, one direction): with two or more nodes, a cut
    between two halves of the nodes is crossed only by NIC traffic and the spine tier is
    non-blocking, so it is nodes/2 * gpus_per_node * nic_bandwidth; a single node is cut through
    its NVSwitch, gpus_per_node/2 * nvlink_bandwidth.
    """
    _check_int(nodes, "superpod: nodes", minimum=1)
    _check_int(gpus_per_node, "superpod: gpus_per_node", minimum=1)
    _check_int(seed, "superpod: seed", minimum=None)
    if spines is None:
        spines = gpus_per_node
    _check_int(spines, "superpod: spines", minimum=1)
    _check_positive(nvlink_bandwidth, "superpod: nvlink_bandwidth")
    _check_positive(nic_bandwidth, "superpod: nic_bandwidth")
    gpus = nodes * gpus_per_node
    topo = Topology(f"superpod:{nodes}x{gpus_per_node}", gpus, ecmp_router)
    nvswitches = [topo.add_switch(nvswitch_latency, "nvswitch") for _ in range(nodes)]
    rails = [topo.add_switch(leaf_latency, "rail-leaf") for _ in range(gpus_per_node)]
    spine_ids = [topo.add_switch(leaf_latency, "spine") for _ in range(spines)]
    uplink = nodes * float(nic_bandwidth) / spines
    for node, nvs in enumerate(nvswitches):
        for g in range(gpus_per_node):
            gpu = node * gpus_per_node + g
            topo.add_duplex(gpu, nvs, nvlink_bandwidth, latency, "nvlink")
            topo.add_duplex(gpu, rails[g], nic_bandwidth, latency, "nic")
    for leaf in rails:
        for spine in spine_ids:
            topo.add_duplex(leaf, spine, uplink, latency, "leaf-spine")
    if nodes >= 2:
        bisection = nodes / 2 * gpus_per_node * float(nic_bandwidth)
    else:
        bisection = gpus_per_node / 2 * float(nvlink_bandwidth)
    topo.router_state = EcmpRouting(seed)
    topo.layout = SuperpodLayout(
        nodes=nodes, gpus_per_node=gpus_per_node, spines=spines,
        nvswitches=tuple(nvswitches), rail_leaves=tuple(rails), spine_switches=tuple(spine_ids),
        nvlink_bandwidth=float(nvlink_bandwidth), nic_bandwidth=float(nic_bandwidth),
        uplink_bandwidth=uplink, latency=float(latency),
    )
    # logical dimensions (GPU within its node fastest, then node): a group that spans nodes
    # with several GPUs in each runs per dimension, its inter-node phase one ring per rail
    topo.info = TopologyInfo("superpod", dims=(gpus_per_node, nodes), rail_aligned=True,
                             bisection_bandwidth=bisection)
    return topo


# ---------------------------------------------------------------------- checks
def _check_int(value: object, what: str, minimum: int | None) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TopologyError(f"{what} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise TopologyError(f"{what} must be >= {minimum}, got {value}")


def _check_positive(value: object, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise TopologyError(f"{what} must be a number > 0, got {value!r}")
