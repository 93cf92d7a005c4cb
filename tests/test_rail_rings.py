"""Rail rings (NCCL's ring layout on nodes with a NIC per GPU): every ring visits every member
once, node crossings stay on one rail and spread over every NIC, the bytes are a ring's, and on
two nodes the time is the NIC-bound ring's 2(n-1) S/(g n B_nic)."""

from __future__ import annotations

from collections import Counter

import pytest

import topologies
from collectives.base import make_plan
from collectives.rail_rings import ring_orders
from des.core.graph import CollectiveType, EventGraph
from des.sim.engine import simulate
from des.sim.options import EngineOptions


@pytest.mark.parametrize(("g", "nodes"), [(8, 2), (8, 3), (4, 4), (4, 5), (2, 2), (2, 3)])
def test_rings_visit_everyone_and_cross_nodes_on_every_nic_once(g, nodes) -> None:
    rings = ring_orders(g, nodes)
    assert len(rings) == g
    sends: Counter = Counter()
    for order in rings:
        assert sorted(order) == list(range(g * nodes))
        for t, pos in enumerate(order):
            nxt = order[(t + 1) % len(order)]
            if pos // g != nxt // g:
                sends[(pos // g, pos % g)] += 1  # (node, rail) that sends across
                if not (g == 2 and nodes % 2):
                    assert pos % g == nxt % g  # same rail at both ends
    # every ring crosses every node boundary once; each node's NICs share the crossings
    assert sum(sends.values()) == g * nodes
    assert max(sends.values()) == 1


def test_one_node_or_one_member_per_node_is_a_plain_ring() -> None:
    assert ring_orders(8, 1) == [list(range(8))]
    assert ring_orders(1, 4) == [list(range(4))]
    plan = make_plan(CollectiveType.ALL_REDUCE, tuple(range(0, 32, 8)), 4e6, "rail_rings",
                     dims=(1, 4))
    assert plan.translation_dims() == (4,)


@pytest.mark.parametrize("collective", ["all_reduce", "reduce_scatter", "all_gather"])
def test_each_rank_sends_what_a_ring_sends(collective) -> None:
    n, size = 16, 64e6
    plan = make_plan(CollectiveType(collective), tuple(range(n)), size, "rail_rings",
                     dims=(8, 2))
    ring = make_plan(CollectiveType(collective), tuple(range(n)), size, "ring")
    for rank in range(n):
        assert plan.bytes_sent(rank) == pytest.approx(ring.bytes_sent(rank))
    assert plan.translation_dims() is None


def test_two_nodes_take_the_nic_bound_ring_time_and_load_every_nic_alike() -> None:
    g, nodes, size, nic = 4, 2, 8e6, 10.0
    topo = topologies.superpod(nodes, gpus_per_node=g, nvlink_bandwidth=1000.0,
                               nic_bandwidth=nic, latency=0.0)
    graph = EventGraph(g * nodes, "rail rings")
    graph.collective_all("all_reduce", size, algorithm="rail_rings")
    result = simulate(topo, graph, options=EngineOptions(chunks=1))
    n = g * nodes
    # NIC-bound: 2(n-1) steps of an S/(g n) message over a NIC; NVLink hops add ~1/100
    assert result.makespan_ns == pytest.approx(2 * (n - 1) * size / (g * n) / nic, rel=0.02)
    gpu_to_leaf = [lk.bytes for lk in result.links
                   if lk.src < n and topo.device_kind(lk.dst) != "nvswitch"]
    assert len(gpu_to_leaf) == n and len(set(gpu_to_leaf)) == 1 and gpu_to_leaf[0] > 0
