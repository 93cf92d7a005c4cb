"""Extension point: your own topology builder.

A topology kind in des is a builder ``(bandwidth, latency, **params) -> Topology`` registered
with :func:`topologies.registry.register_topology`, naming its required and optional
parameters and, for scenario files, how each is read (``types``: any ``parse(value, where)``,
such as the unit parsers of :mod:`des.core.units`). Every built-in kind goes through the same
registry, so once registered the kind works everywhere a built-in one does:

* scenario files: ``topology: {kind: dragonfly, groups: 4, ..., bandwidth: 100 GB/s}``;
* short specs: ``des topo show dragonfly:groups=4,routers_per_group=2,hosts_per_router=2``
  (``key=value`` pairs, numbers in GB/s and ns);
* code: ``topologies.build("dragonfly", {...})``.

Its topologies report ``info.kind == "custom"`` (des's algorithm choice and exporters know
nothing of the structure) and ``info.name == "dragonfly"``.

This example registers a small dragonfly: ``groups`` groups of ``routers_per_group`` routers,
the routers of a group fully connected by local links, exactly one global link (each way)
between every pair of groups, ``hosts_per_router`` NPUs on each router, and minimal routing
(at most local, global, local between the routers). It then runs a direct all-to-all from an
inline scenario. Under minimal routing every pair of NPUs in different groups crosses exactly
one global link, the one joining their groups, so each global link carries exactly
(hosts per group)^2 messages and the all-to-all can end no sooner than that load over the
global bandwidth.

Run: ``python examples/custom_topology.py``
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any

from des.app.config import scenario_from_dict
from des.core import schema, units
from des.sim.backends import run_backend
from topologies import Topology, path_is_up, shortest_path_router
from topologies.registry import register_topology
from topologies.spec import parse_spec

DRAGONFLY_TYPES = {"groups": schema.positive_int, "routers_per_group": schema.positive_int,
                   "hosts_per_router": schema.positive_int,
                   "global_bandwidth": units.parse_bandwidth}


@register_topology("dragonfly", required=("groups", "routers_per_group"),
                   optional=("hosts_per_router", "global_bandwidth"), types=DRAGONFLY_TYPES,
                   example="dragonfly:groups=4,routers_per_group=2,hosts_per_router=2")
def dragonfly(bandwidth: float, latency: float, *, groups: int, routers_per_group: int,
              hosts_per_router: int = 1, global_bandwidth: float | None = None) -> Topology:
    """A dragonfly (see the module doc); ``global_bandwidth`` defaults to ``bandwidth``."""
    g, a, p = groups, routers_per_group, hosts_per_router
    n = g * a * p

    def gateway(group: int, peer: int) -> int:
        """The router of ``group`` holding its global link to ``peer`` (spread round robin)."""
        port = peer if peer < group else peer - 1
        return n + group * a + port % a

    def minimal_route(topo: Topology, src: int, dst: int, flow: int = 0) -> tuple[int, ...]:
        """Host up; local, global, local hops between routers as needed; host down."""
        hops = [src, n + src // p]
        if src // (a * p) != dst // (a * p):
            hops += [gateway(src // (a * p), dst // (a * p)),
                     gateway(dst // (a * p), src // (a * p))]
        hops += [n + dst // p, dst]
        devices = [d for k, d in enumerate(hops) if k == 0 or d != hops[k - 1]]
        path = tuple(topo.links_between(u, v)[0].id
                     for u, v in pairwise(devices)
                     if topo.links_between(u, v))
        if len(path) != len(devices) - 1 or not path_is_up(topo, path):
            return shortest_path_router(topo, src, dst, flow)  # a failed link: any survivor
        return path

    topo = Topology(f"dragonfly:{g}x{a}x{p}", n, minimal_route)
    routers = [topo.add_switch() for _ in range(g * a)]  # device n + group * a + r
    for npu in range(n):
        topo.add_duplex(npu, routers[npu // p], bandwidth, latency, "host")
    for grp in range(g):
        for r1 in range(a):
            for r2 in range(r1 + 1, a):
                topo.add_duplex(routers[grp * a + r1], routers[grp * a + r2], bandwidth,
                                latency, "local")
    for i in range(g):
        for j in range(i + 1, g):
            topo.add_duplex(gateway(i, j), gateway(j, i), global_bandwidth or bandwidth,
                            latency, "global")
    return topo


SCENARIO: dict[str, Any] = {
    "name": "dragonfly all-to-all",
    "topology": {"kind": "dragonfly", "groups": 4, "routers_per_group": 2,
                 "hosts_per_router": 2, "bandwidth": "100 GB/s", "global_bandwidth": "25 GB/s",
                 "latency": "500 ns"},
    "workload": {"kind": "collectives",
                 "ops": [{"collective": "all_to_all", "size": "16 MiB", "algorithm": "direct"}]},
}


def main() -> dict[str, Any]:
    """Run the scenario's all-to-all on the dragonfly; the figures the test checks."""
    scenario = scenario_from_dict(SCENARIO, source="custom_topology")
    topo = scenario.topology
    result = run_backend("simpy", topo, scenario.graph, hardware=scenario.hardware,
                         options=scenario.options)
    spec = parse_spec("dragonfly:groups=4,routers_per_group=2,hosts_per_router=2")
    return {
        "npus": topo.num_npus, "kind": topo.info.kind, "name": topo.info.name,
        "spec_npus": spec.num_npus, "makespan_ns": result.makespan_ns,
        "global_bytes": {(lk.src, lk.dst): lk.bytes for lk in result.links
                         if lk.kind == "global"},
        "global_bandwidth": next(lk.bandwidth for lk in topo.links if lk.kind == "global"),
        "hosts_per_group": 2 * 2, "size": 16 * 2**20,
    }


if __name__ == "__main__":
    out = main()
    print(f"dragonfly ({out['kind']}: {out['name']}), {out['npus']} NPUs: all-to-all of "
          f"{out['size'] / 2**20:.0f} MiB per rank in {out['makespan_ns'] / 1e3:.1f} us")
    per_link = sorted(set(out["global_bytes"].values()))
    print(f"{len(out['global_bytes'])} global links carry "
          f"{', '.join(f'{b / 2**20:.1f}' for b in per_link)} MiB each")
