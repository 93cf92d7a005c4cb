"""ECMP routes assembled from per-switch-pair candidate caches equal the per-destination walk
(the router's original algorithm, still in :func:`topologies.fattree._ecmp_walk`), for every
pair and several flows and seeds, with and without failed links."""

from __future__ import annotations

import pytest

from topologies import LinkFault, Topology, fat_tree, leaf_spine, set_fault, superpod
from topologies.base import no_route_error
from topologies.fattree import _ecmp_walk


def _reference(topo: Topology, src: int, dst: int, flow: int) -> tuple[int, ...]:
    seed = topo.router_state.seed
    for transit in (False, True):
        path = _ecmp_walk(topo, src, dst, flow, seed, transit)
        if path is not None:
            return path
    raise no_route_error(topo, src, dst)


def _all_pairs_equal(topo: Topology, flows: range) -> None:
    n = topo.num_npus
    for flow in flows:
        for s in range(n):
            for d in range(n):
                if s != d:
                    assert topo.route(s, d, flow) == _reference(topo, s, d, flow), (s, d, flow)


@pytest.mark.parametrize("seed", [0, 7])
def test_fat_tree_routes_equal_reference(seed: int) -> None:
    _all_pairs_equal(fat_tree(4, 10.0, 1.0, seed=seed, routing="ecmp"), range(3))


def test_fat_tree_k6_routes_equal_reference() -> None:
    _all_pairs_equal(fat_tree(6, 10.0, 1.0, seed=3, routing="ecmp"), range(2))


def test_leaf_spine_and_superpod_equal_reference() -> None:
    _all_pairs_equal(leaf_spine(4, 3, 3, 10.0, 1.0, seed=5), range(3))
    _all_pairs_equal(superpod(3, gpus_per_node=4, nvlink_bandwidth=100.0, nic_bandwidth=10.0,
                              latency=1.0, spines=3, seed=2), range(3))


def test_routes_equal_reference_with_faults() -> None:
    topo = fat_tree(4, 10.0, 1.0, seed=1, routing="ecmp")
    lay = topo.layout
    set_fault(topo, LinkFault(lay.edge_switches[0], lay.agg_switches[0], down=True))
    set_fault(topo, LinkFault(lay.agg_switches[3], lay.core_switches[2], down=True))
    _all_pairs_equal(topo, range(3))
    pod = superpod(2, gpus_per_node=4, nvlink_bandwidth=100.0, nic_bandwidth=10.0,
                   latency=1.0, seed=4)
    set_fault(pod, LinkFault(1, pod.layout.rail_leaves[1], down=True))  # GPU 1 loses its NIC
    _all_pairs_equal(pod, range(2))


def test_link_down_without_invalidate_still_avoids_it() -> None:
    topo = fat_tree(4, 10.0, 1.0)
    first = topo.route(0, 15, 0)
    topo.invalidate_routes()
    topo.route(0, 15, 0)  # warm the switch caches
    topo._routes.clear()  # forget the host route only
    topo.links[first[1]].up = False
    assert first[1] not in topo.route(0, 15, 0)
