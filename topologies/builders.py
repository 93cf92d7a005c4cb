"""Builders for the basic topologies: ring, fully connected, single switch.

Each returns a :class:`~topologies.base.Topology` with its own router. Bandwidths are bytes/ns
and latencies ns, per directed link.
"""

from __future__ import annotations

from topologies.base import Topology, TopologyError, path_is_up, shortest_path_router
from topologies.meta import TopologyInfo
from topologies.routing_state import RingRouting, SwitchRouting


def ring(n: int, bandwidth: float, latency: float, *, bidirectional: bool = True) -> Topology:
    """N NPUs in a ring; link i -> i+1 (and i+1 -> i when bidirectional).

    Routing follows the ring: unidirectional rings go forward; bidirectional rings take the
    shorter direction and, at exactly half way round, the forward one (deterministic tie-break).
    """
    _check_count(n, "ring", minimum=2)
    topo = Topology(f"ring:{n}" + ("" if bidirectional else ":uni"), n, _ring_router)
    forward = [topo.add_link(i, (i + 1) % n, bandwidth, latency, "ring") for i in range(n)]
    backward: list[int] = []
    if bidirectional and n > 2:  # with two NPUs the forward links already join both ways
        backward = [topo.add_link((i + 1) % n, i, bandwidth, latency, "ring") for i in range(n)]
    topo.router_state = RingRouting(tuple(forward), tuple(backward))
    # halving the ring cuts two cables; one direction of each crosses from half A to half B
    topo.info = TopologyInfo("ring", bidirectional=bidirectional,
                             bisection_bandwidth=(2 if backward else 1) * float(bandwidth))
    return topo


def _ring_router(topo: Topology, src: int, dst: int, flow: int = 0) -> tuple[int, ...]:
    n = topo.num_npus
    state = topo.state(RingRouting)
    forward, backward = state.forward, state.backward
    ahead = (dst - src) % n
    if not backward or ahead <= n - ahead:
        path = tuple(forward[(src + i) % n] for i in range(ahead))
    else:  # backward[i] is the link (i+1) -> i
        path = tuple(backward[(src - 1 - i) % n] for i in range(n - ahead))
    if not path_is_up(topo, path):
        return shortest_path_router(topo, src, dst, flow)
    return path


def fully_connected(n: int, bandwidth: float, latency: float) -> Topology:
    """Every NPU has a direct link to every other; routes are the single direct hop."""
    _check_count(n, "fully_connected", minimum=2)
    topo = Topology(f"fully_connected:{n}", n, _direct_router)
    topo.info = TopologyInfo("fully_connected",
                             bisection_bandwidth=(n // 2) * (n - n // 2) * float(bandwidth))
    for a in range(n):
        for b in range(n):
            if a != b:
                topo.add_link(a, b, bandwidth, latency, "direct")
    return topo


def _direct_router(topo: Topology, src: int, dst: int, flow: int = 0) -> tuple[int, ...]:
    links = topo.links_between(src, dst)
    if links:
        return (links[0].id,)
    return shortest_path_router(topo, src, dst, flow)


def switch(n: int, bandwidth: float, latency: float, *, switch_latency: float = 0.0) -> Topology:
    """N NPUs on one switch (device id N): an uplink NPU->switch and a downlink switch->NPU per
    port; every route is two hops, and the switch adds ``switch_latency`` when forwarding."""
    _check_count(n, "switch", minimum=2)
    topo = Topology(f"switch:{n}", n, _switch_router)
    sw = topo.add_switch(switch_latency)
    up = [topo.add_link(i, sw, bandwidth, latency, "uplink") for i in range(n)]
    down = [topo.add_link(sw, i, bandwidth, latency, "downlink") for i in range(n)]
    topo.router_state = SwitchRouting(tuple(up), tuple(down))
    topo.info = TopologyInfo("switch", bisection_bandwidth=(n // 2) * float(bandwidth))
    return topo


def _switch_router(topo: Topology, src: int, dst: int, flow: int = 0) -> tuple[int, ...]:
    state = topo.state(SwitchRouting)
    up, down = state.uplinks, state.downlinks
    if path_is_up(topo, (up[src], down[dst])):
        return (up[src], down[dst])
    return shortest_path_router(topo, src, dst, flow)


def _check_count(n: int, kind: str, minimum: int) -> None:
    if not isinstance(n, int) or isinstance(n, bool) or n < minimum:
        raise TopologyError(f"{kind}: needs an integer number of NPUs >= {minimum}, got {n!r}")
