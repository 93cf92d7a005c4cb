"""Grid topologies: structure, dimension-order routing, detours, faults and bisection."""

from __future__ import annotations

import random
from collections import Counter
from itertools import pairwise

import networkx as nx
import pytest
from helpers import assert_valid_path, fail_links, route_devices
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from topologies.base import Topology, TopologyError
from topologies.grid import grid_coords, mesh2d, torus2d, torus3d

BUILDERS = {"mesh2d": mesh2d, "torus2d": torus2d, "torus3d": torus3d}


def build(kind: str, dims: tuple[int, ...], bandwidth: float = 10.0) -> Topology:
    return BUILDERS[kind](*dims, bandwidth, 5.0)


def ring_distance(a: int, b: int, n: int) -> int:
    return min((b - a) % n, (a - b) % n)


# ---------------------------------------------------------------------- structure
@pytest.mark.parametrize(("x", "y"), [(4, 4), (3, 5), (2, 2), (6, 3)])
def test_mesh_degrees_and_neighbours(x, y):
    topo = mesh2d(x, y, 10.0, 5.0)
    out = Counter(lk.src for lk in topo.links)
    inn = Counter(lk.dst for lk in topo.links)
    for npu in range(x * y):
        col, row = npu % x, npu // x
        assert grid_coords(topo, npu) == (col, row)
        on_edge = (col in (0, x - 1)) + (row in (0, y - 1))
        expected = {0: 4, 1: 3, 2: 2}[on_edge]
        assert out[npu] == inn[npu] == expected, npu
    for lk in topo.links:
        (ax, ay), (bx, by) = grid_coords(topo, lk.src), grid_coords(topo, lk.dst)
        assert abs(ax - bx) + abs(ay - by) == 1
        assert lk.kind == ("x" if ay == by else "y")
    assert len(topo.links) == 2 * (x - 1) * y + 2 * x * (y - 1)


def test_mesh_corner_edge_inner_on_4x4():
    topo = mesh2d(4, 4, 10.0, 5.0)
    degree = Counter(lk.src for lk in topo.links)
    assert [degree[i] for i in (0, 3, 12, 15)] == [2, 2, 2, 2]
    assert [degree[i] for i in (1, 2, 4, 8, 7, 11, 13, 14)] == [3] * 8
    assert [degree[i] for i in (5, 6, 9, 10)] == [4] * 4


@pytest.mark.parametrize(("kind", "dims", "links"), [
    ("mesh2d", (4, 4), 48),
    ("mesh2d", (1, 5), 8),
    ("mesh2d", (2, 3), 14),
    ("torus2d", (4, 4), 64),
    ("torus2d", (2, 3), 18),   # x: 3 pairs, y: 2 rings of 3
    ("torus2d", (1, 4), 8),
    ("torus2d", (2, 2), 8),
    ("torus3d", (4, 4, 4), 384),
    ("torus3d", (2, 2, 2), 24),
    ("torus3d", (3, 1, 2), 18),  # x: 2 rings of 3, y: none, z: 3 pairs
    ("torus3d", (5, 3, 1), 60),
])
def test_directed_link_counts(kind, dims, links):
    topo = build(kind, dims)
    assert len(topo.links) == links
    pairs = Counter((lk.src, lk.dst) for lk in topo.links)
    assert max(pairs.values()) == 1, "no parallel links, even in size-2 dimensions"
    assert all((b, a) in pairs for a, b in pairs), "every link has a reverse"


def test_torus_degrees_and_kinds():
    topo = torus3d(4, 2, 1, 10.0, 5.0)
    degree = Counter(lk.src for lk in topo.links)
    assert set(degree.values()) == {3}  # x ring (2) + y pair (1), nothing in z
    kinds = Counter(lk.kind for lk in topo.links)
    assert kinds == {"x": 16, "y": 8}
    full = torus3d(3, 3, 3, 10.0, 5.0)
    assert set(Counter(lk.src for lk in full.links).values()) == {6}
    for lk in full.links:
        a, b = grid_coords(full, lk.src), grid_coords(full, lk.dst)
        moved = [d for d in range(3) if a[d] != b[d]]
        assert len(moved) == 1 and "xyz"[moved[0]] == lk.kind
        assert ring_distance(a[moved[0]], b[moved[0]], 3) == 1


def test_torus3d_id_convention():
    topo = torus3d(4, 3, 2, 10.0, 5.0)
    for z in range(2):
        for y in range(3):
            for x in range(4):
                assert grid_coords(topo, z * 12 + y * 4 + x) == (x, y, z)
    assert topo.info.kind == "torus3d" and topo.info.dims == (4, 3, 2)
    assert topo.router_state.coords(23) == (3, 2, 1)
    with pytest.raises(TopologyError, match="24"):
        grid_coords(topo, 24)


def test_torus3d_4096_builds_with_every_link_and_wraps():
    # build speed is measured in bench/topologies.py, not asserted here
    topo = torus3d(16, 16, 16, 10.0, 5.0)
    route = topo.route(0, 4095)
    assert len(topo.links) == 6 * 4096
    assert topo.path_devices(route) == [0, 15, 255, 4095]  # one hop back in each dimension


# ---------------------------------------------------------------------- routing
def test_xy_examples_on_4x4_mesh():
    topo = mesh2d(4, 4, 10.0, 5.0)
    assert route_devices(topo, 1, 7) == [1, 2, 3, 7]
    assert route_devices(topo, 14, 5) == [14, 13, 9, 5]
    assert [topo.links[i].kind for i in topo.route(1, 7)] == ["x", "x", "y"]


def test_xy_routes_on_random_meshes():
    rng = random.Random(7)
    for _ in range(30):
        x, y = rng.randint(1, 8), rng.randint(2, 8)
        topo = mesh2d(x, y, 10.0, 5.0)
        for _ in range(20):
            src, dst = rng.sample(range(x * y), 2)
            coords = [grid_coords(topo, d) for d in route_devices(topo, src, dst)]
            (sx, sy), (dx, dy) = coords[0], coords[-1]
            assert len(coords) - 1 == abs(sx - dx) + abs(sy - dy)
            moves = ["x" if a[1] == b[1] else "y" for a, b in pairwise(coords)]
            assert moves == sorted(moves), f"y before x in {coords}"
            assert all(abs(a[0] - b[0]) + abs(a[1] - b[1]) == 1 for a, b in pairwise(coords))


def test_torus_routes_are_dimension_order_and_shortest():
    rng = random.Random(11)
    for _ in range(20):
        dims = (rng.randint(1, 7), rng.randint(1, 7), rng.randint(2, 7))
        topo = torus3d(*dims, 10.0, 5.0)
        for _ in range(20):
            src, dst = rng.sample(range(topo.num_npus), 2)
            coords = [grid_coords(topo, d) for d in route_devices(topo, src, dst)]
            a, b = coords[0], coords[-1]
            assert len(coords) - 1 == sum(ring_distance(a[d], b[d], n)
                                          for d, n in enumerate(dims))
            moved = [next(d for d in range(3) if p[d] != q[d]) for p, q in pairwise(coords)]
            assert moved == sorted(moved), f"not x, y, z order: {coords}"
            for d, n in enumerate(dims):  # ties at half way go +
                ahead = (b[d] - a[d]) % n
                steps = [(q[d] - p[d]) % n for p, q in pairwise(coords) if p[d] != q[d]]
                if ahead > 0 and 2 * ahead <= n:
                    assert set(steps) == {1}, (dims, coords)
                elif ahead:
                    assert set(steps) == {n - 1}, (dims, coords)


def test_torus_tie_breaks_go_plus():
    topo = torus2d(4, 4, 10.0, 5.0)
    assert route_devices(topo, 0, 2) == [0, 1, 2]
    assert route_devices(topo, 2, 0) == [2, 3, 0]
    assert route_devices(topo, 0, 8) == [0, 4, 8]
    assert route_devices(topo, 0, 3) == [0, 3]  # shorter way is backwards
    cube = torus3d(4, 4, 4, 10.0, 5.0)
    assert route_devices(cube, 0, 2 + 8 + 32) == [0, 1, 2, 6, 10, 26, 42]
    pair = torus2d(2, 3, 10.0, 5.0)
    assert route_devices(pair, 1, 0) == [1, 0]


# ---------------------------------------------------------------------- faults
def test_detour_takes_yx_when_xy_link_is_down():
    topo = mesh2d(4, 4, 10.0, 5.0)
    (down,) = fail_links(topo, 2, 3)
    assert down not in topo.route(1, 7)
    assert route_devices(topo, 1, 7) == [1, 5, 6, 7]
    topo.links[down].up = True
    topo.invalidate_routes()
    assert route_devices(topo, 1, 7) == [1, 2, 3, 7]


def test_detour_falls_back_to_shortest_path_when_xy_and_yx_are_down():
    topo = mesh2d(4, 4, 10.0, 5.0)
    failed = {*fail_links(topo, 2, 3), *fail_links(topo, 5, 6)}
    route = topo.route(1, 7)
    assert_valid_path(topo, route, 1, 7)
    assert not failed & set(route)
    assert len(route) == 3  # 1 -> 2 -> 6 -> 7 is still minimal


def test_torus_detour_goes_the_long_way_then_anywhere():
    topo = torus2d(4, 4, 10.0, 5.0)
    fail_links(topo, 0, 1)
    assert route_devices(topo, 0, 1) == [0, 3, 2, 1]
    fail_links(topo, 3, 2)
    route = topo.route(0, 1)
    assert_valid_path(topo, route, 0, 1)
    assert len(route) == 3 and topo.path_devices(route)[1] in (4, 12)


def test_torus_long_way_round_comes_before_the_shortest_path_fallback():
    ring5 = torus2d(5, 5, 10.0, 5.0)
    fail_links(ring5, 0, 1)
    assert route_devices(ring5, 0, 1) == [0, 4, 3, 2, 1]  # rule 2, though 0-5-6-1 is shorter
    topo = torus3d(4, 4, 1, 10.0, 5.0)
    fail_links(topo, 0, 1)
    fail_links(topo, 0, 4)
    assert route_devices(topo, 0, 5) == [0, 3, 2, 1, 5]    # x the long way, then y
    big = torus3d(5, 5, 1, 10.0, 5.0)
    for nb in (1, 5, 4):
        fail_links(big, 0, nb)
    assert route_devices(big, 0, 6) == [0, 20, 15, 10, 5, 6]  # y the long way, YX; BFS: 0-20-21-1-6


def test_torus3d_detour_tries_orders_lexicographically():
    topo = torus3d(3, 3, 3, 10.0, 5.0)
    dst = 1 + 3 + 9  # (1, 1, 1)
    assert route_devices(topo, 0, dst) == [0, 1, 4, 13]        # XYZ
    fail_links(topo, 1, 4)
    assert route_devices(topo, 0, dst) == [0, 1, 10, 13]       # XZY
    fail_links(topo, 1, 10)
    assert route_devices(topo, 0, dst) == [0, 3, 4, 13]        # YXZ


def test_disconnected_npu_raises_naming_pair_and_failed_links():
    topo = mesh2d(3, 3, 10.0, 5.0)
    fail_links(topo, 1, 0)
    fail_links(topo, 3, 0)
    assert route_devices(topo, 0, 8)  # 0 can still send
    with pytest.raises(TopologyError) as err:
        topo.route(4, 0)
    msg = str(err.value)
    assert "from 4 to 0" in msg and "1-0" in msg and "3-0" in msg


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_routes_use_only_up_links_or_raise_when_disconnected(data):
    kind = data.draw(st.sampled_from(sorted(BUILDERS)))
    ndim = 3 if kind == "torus3d" else 2
    dims = tuple(data.draw(st.lists(st.integers(1, 6), min_size=ndim, max_size=ndim)
                           .filter(lambda s: s[0] * s[1] * (s[-1] if len(s) > 2 else 1) > 1)))
    topo = build(kind, dims)
    count = len(topo.links)
    down = data.draw(st.sets(st.integers(0, count - 1), max_size=min(count, 12)))
    for i in down:
        topo.links[i].up = False
    topo.invalidate_routes()
    alive = nx.DiGraph()
    alive.add_nodes_from(range(topo.num_npus))
    alive.add_edges_from((lk.src, lk.dst) for lk in topo.links if lk.up)
    npus = st.integers(0, topo.num_npus - 1)
    for _ in range(5):
        src, dst = data.draw(npus), data.draw(npus)
        if src == dst:
            continue
        if nx.has_path(alive, src, dst):
            assert_valid_path(topo, topo.route(src, dst), src, dst)
        else:
            with pytest.raises(TopologyError, match=f"from {src} to {dst}"):
                topo.route(src, dst)


# ---------------------------------------------------------------------- bisection
@pytest.mark.parametrize(("kind", "dims", "expected"), [
    ("mesh2d", (4, 4), 4),
    ("mesh2d", (6, 3), 3),
    ("mesh2d", (3, 6), 3),
    ("mesh2d", (5, 3), 3),   # odd: the cut after floor(5/2) columns
    ("torus2d", (4, 4), 8),
    ("torus2d", (8, 2), 4),
    ("torus3d", (4, 4, 4), 32),
    ("torus3d", (2, 2, 2), 4),  # a 2-ring has one pair: no doubling
    ("torus3d", (3, 5, 2), 12),
])
def test_bisection_bandwidth(kind, dims, expected):
    topo = build(kind, dims, bandwidth=10.0)
    assert topo.info.bisection_bandwidth == pytest.approx(expected * 10.0)
    # independent check: count the links crossing the cut of the largest dimension
    axis = dims.index(max(dims))
    half = dims[axis] // 2
    crossing = [lk for lk in topo.links
                if grid_coords(topo, lk.src)[axis] < half <= grid_coords(topo, lk.dst)[axis]]
    assert len(crossing) == expected


# ---------------------------------------------------------------------- errors
@pytest.mark.parametrize(("call", "words"), [
    (lambda: mesh2d(0, 4, 1.0, 1.0), ["mesh2d", "size x", "0"]),
    (lambda: mesh2d(4, -2, 1.0, 1.0), ["size y", "-2"]),
    (lambda: torus2d(2.5, 2, 1.0, 1.0), ["torus2d", "size x", "2.5"]),
    (lambda: torus3d(2, 2, True, 1.0, 1.0), ["size z", "True"]),
    (lambda: torus3d(2, 2, "3", 1.0, 1.0), ["size z", "'3'"]),
    (lambda: mesh2d(1, 1, 1.0, 1.0), ["at least 2 NPUs"]),
    (lambda: torus3d(1, 1, 1, 1.0, 1.0), ["at least 2 NPUs"]),
    (lambda: mesh2d(2, 2, 0.0, 1.0), ["bandwidth"]),
    (lambda: torus2d(2, 2, 1.0, -1.0), ["latency"]),
])
def test_errors_name_the_problem(call, words):
    with pytest.raises(TopologyError) as err:
        call()
    for word in words:
        assert word in str(err.value)


def test_grid_coords_rejects_other_topologies():
    from topologies.builders import ring
    with pytest.raises(TopologyError, match="not a grid"):
        grid_coords(ring(4, 1.0, 1.0), 0)
