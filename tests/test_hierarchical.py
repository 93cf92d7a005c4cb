"""Hierarchical (ASTRA-sim style) topologies: ids, per-dimension links, routing, errors."""

from __future__ import annotations

from collections import Counter

import networkx as nx
import pytest
from helpers import assert_valid_path, fail_links, link_kinds, route_devices

from topologies.base import Topology, TopologyError
from topologies.hierarchical import DimSpec, hierarchical, hierarchical_coords


def ring(size: int, bw: float = 10.0, *, bidirectional: bool = True) -> DimSpec:
    return DimSpec("ring", size, bw, 5.0, bidirectional=bidirectional)


def fc(size: int, bw: float = 10.0) -> DimSpec:
    return DimSpec("fully_connected", size, bw, 5.0)


def switch(size: int, bw: float = 10.0, switch_latency: float = 0.0) -> DimSpec:
    return DimSpec("switch", size, bw, 5.0, switch_latency=switch_latency)


# ---------------------------------------------------------------------- structure
def test_astra_example_sizes_and_link_counts():
    topo = hierarchical([fc(8), switch(16), ring(4)])
    assert topo.num_npus == 512
    assert topo.num_devices == 512 + 32  # one switch per dim-1 group
    assert Counter(lk.kind for lk in topo.links) == {
        "dim0-fully_connected": 64 * 8 * 7,
        "dim1-switch": 32 * 16 * 2,
        "dim2-ring": 128 * 4 * 2,
    }
    assert topo.info.kind == "hierarchical"
    assert [d.kind for d in topo.layout.specs] == ["fully_connected", "switch", "ring"]


def test_ids_follow_astra_convention():
    topo = hierarchical([ring(4), switch(2)])
    ring_pairs = {(lk.src, lk.dst) for lk in topo.links if lk.kind == "dim0-ring"}
    for base in (0, 4):
        cycle = [base + i for i in range(4)]
        for i in range(4):
            a, b = cycle[i], cycle[(i + 1) % 4]
            assert (a, b) in ring_pairs and (b, a) in ring_pairs
    assert len(ring_pairs) == 16
    # switches come after the NPUs: 8 for NPUs {0, 4}, 9 for {1, 5}, ...
    assert [topo.is_switch(d) for d in range(topo.num_devices)] == [False] * 8 + [True] * 4
    for c0 in range(4):
        sw = 8 + c0
        ups = {lk.src for lk in topo.links if lk.dst == sw}
        downs = {lk.dst for lk in topo.links if lk.src == sw}
        assert ups == downs == {c0, c0 + 4}
    assert hierarchical_coords(topo, 5) == (1, 1)
    assert topo.router_state.coords(6) == (2, 1)


def test_three_dim_coords_put_dim0_fastest():
    topo = hierarchical([ring(3), fc(2), switch(4)])
    for npu in range(topo.num_npus):
        c0, c1, c2 = hierarchical_coords(topo, npu)
        assert npu == c0 + 3 * (c1 + 2 * c2)
    for lk in topo.links:
        if lk.kind == "dim1-fully_connected":
            a, b = hierarchical_coords(topo, lk.src), hierarchical_coords(topo, lk.dst)
            assert a[0] == b[0] and a[2] == b[2] and a[1] != b[1]
    with pytest.raises(TopologyError, match="outside"):
        hierarchical_coords(topo, 24)


@pytest.mark.parametrize(("dims", "expected", "switches"), [
    ([ring(3), fc(4), switch(2)], {"dim0-ring": 48, "dim1-fully_connected": 72,
                                   "dim2-switch": 48}, 12),
    ([ring(2), ring(5, bidirectional=False)], {"dim0-ring": 10, "dim1-ring": 10}, 0),
    ([ring(1), switch(3), fc(1)], {"dim1-switch": 6}, 1),
    ([ring(4, bidirectional=False)], {"dim0-ring": 4}, 0),
])
def test_link_counts_per_dimension(dims, expected, switches):
    topo = hierarchical(dims)
    assert Counter(lk.kind for lk in topo.links) == expected
    assert topo.num_devices - topo.num_npus == switches


def test_switch_devices_carry_switch_latency():
    topo = hierarchical([ring(2), switch(3, switch_latency=7.0)])
    assert topo.switch_latency == {6: 7.0, 7: 7.0}


# ---------------------------------------------------------------------- routing
def test_route_corrects_dim0_then_dim1():
    topo = hierarchical([ring(4), switch(2)])
    assert route_devices(topo, 0, 6) == [0, 1, 2, 10, 6]
    assert link_kinds(topo, topo.route(0, 6)) == ["dim0-ring"] * 2 + ["dim1-switch"] * 2
    assert route_devices(topo, 7, 0) == [7, 4, 8, 0]  # ring back one, then the c0=0 switch


def test_all_pairs_are_dimension_order_with_expected_hops():
    dims = [ring(5), fc(3), switch(2), ring(4, bidirectional=False)]
    topo = hierarchical(dims)
    npus = range(topo.num_npus)
    for src in npus:
        for dst in npus:
            if src == dst:
                continue
            a, b = hierarchical_coords(topo, src), hierarchical_coords(topo, dst)
            order = [int(k[3]) for k in link_kinds(topo, topo.route(src, dst))]
            assert order == sorted(order)
            hops = Counter(order)
            assert hops[0] == min((b[0] - a[0]) % 5, (a[0] - b[0]) % 5)
            assert hops[1] == (a[1] != b[1])
            assert hops[2] == 2 * (a[2] != b[2])
            assert hops[3] == (b[3] - a[3]) % 4  # unidirectional: always forward
            path = route_devices(topo, src, dst)
            npus_on_path = [hierarchical_coords(topo, d) for d in path if d < topo.num_npus]
            for d in range(4):  # once a dimension is fixed it stays fixed
                done = [p for p in npus_on_path if p[d] == b[d]]
                assert npus_on_path[-len(done):] == done


def test_ring_direction_and_tie_break():
    topo = hierarchical([ring(5)])
    assert route_devices(topo, 0, 4) == [0, 4]
    assert route_devices(topo, 0, 2) == [0, 1, 2]
    even = hierarchical([ring(4)])
    assert route_devices(even, 0, 2) == [0, 1, 2]
    assert route_devices(even, 3, 1) == [3, 0, 1]
    uni = hierarchical([ring(5, bidirectional=False)])
    assert route_devices(uni, 0, 4) == [0, 1, 2, 3, 4]


# ---------------------------------------------------------------------- faults
def test_down_link_falls_back_to_a_surviving_path():
    topo = hierarchical([ring(4), switch(2)])
    fail_links(topo, 1, 2)
    assert_valid_path(topo, topo.route(0, 6), 0, 6)
    assert route_devices(topo, 0, 6) != [0, 1, 2, 10, 6]


def test_isolated_npu_raises_naming_the_pair():
    topo = hierarchical([ring(4), switch(2)])
    for dst in (1, 3, 8):
        fail_links(topo, 0, dst)
    with pytest.raises(TopologyError) as err:
        topo.route(0, 5)
    msg = str(err.value)
    assert "from 0 to 5" in msg and "0-1" in msg and "0-8" in msg


# ---------------------------------------------------------------------- bisection
def cut_capacity(topo: Topology, dim: int) -> float:
    """Max flow from the NPUs with coordinate dim < size/2 to the rest (networkx)."""
    size = topo.info.dims[dim]
    graph = nx.DiGraph()
    for lk in topo.links:
        old = graph.get_edge_data(lk.src, lk.dst, {"capacity": 0.0})["capacity"]
        graph.add_edge(lk.src, lk.dst, capacity=old + lk.bandwidth)
    for npu in range(topo.num_npus):
        side = "S" if hierarchical_coords(topo, npu)[dim] < size // 2 else "T"
        graph.add_edge(*(("S", npu) if side == "S" else (npu, "T")))  # uncapacitated
    return nx.maximum_flow_value(graph, "S", "T")


@pytest.mark.parametrize("dims", [
    [fc(4, 100.0), switch(4, 10.0), ring(4, 5.0)],
    [ring(5, 1.0), fc(3, 2.0), switch(2, 4.0)],
    [switch(5, 3.0), ring(3, 1.0, bidirectional=False)],
    [ring(2, 1.0), ring(1, 1.0), fc(2, 1.0)],
])
def test_bisection_is_the_weakest_dimension_cut(dims):
    topo = hierarchical(dims)
    by_dim = topo.layout.bisection_by_dim
    for d, spec in enumerate(dims):
        if spec.size < 2:
            assert by_dim[d] is None
        else:
            assert by_dim[d] == pytest.approx(cut_capacity(topo, d))
    assert topo.info.bisection_bandwidth == min(v for v in by_dim if v is not None)


def test_bisection_of_the_astra_example():
    topo = hierarchical([fc(8, 100.0), switch(16, 10.0), ring(4, 5.0)])
    assert topo.layout.bisection_by_dim == (64 * 16 * 100.0, 32 * 8 * 10.0, 128 * 2 * 5.0)
    assert topo.info.bisection_bandwidth == 1280.0


# ---------------------------------------------------------------------- errors
@pytest.mark.parametrize(("dims", "words"), [
    ([DimSpec("mesh", 4, 1.0, 1.0)], ["dim 0", "'mesh'", "fully_connected, ring, switch"]),
    ([ring(4), DimSpec("ring", 0, 1.0, 1.0)], ["dim 1", "size", "0"]),
    ([DimSpec("switch", -2, 1.0, 1.0)], ["size", "-2"]),
    ([DimSpec("ring", True, 1.0, 1.0)], ["size", "True"]),
    ([DimSpec("ring", 2.0, 1.0, 1.0)], ["size", "2.0"]),
    ([DimSpec("fully_connected", 4, 0.0, 1.0)], ["bandwidth", "0.0"]),
    ([ring(2), DimSpec("switch", 4, -5.0, 1.0)], ["dim 1", "bandwidth", "-5.0"]),
    ([DimSpec("ring", 4, 1.0, -1.0)], ["latency", "-1.0"]),
    ([DimSpec("switch", 4, 1.0, 1.0, switch_latency=-1.0)], ["switch_latency"]),
    ([ring(1)], ["at least 2 NPUs", "got 1"]),
    ([ring(1), switch(1)], ["at least 2 NPUs"]),
    ([], ["at least 2 NPUs"]),
    ([{"kind": "ring", "size": 4}], ["DimSpec"]),
])
def test_errors_name_the_problem(dims, words):
    with pytest.raises(TopologyError) as err:
        hierarchical(dims)
    for word in words:
        assert word in str(err.value)
