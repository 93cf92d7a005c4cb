"""Fat tree, leaf-spine and SuperPOD builders: sizes, path shapes, D-mod-K and ECMP behaviour."""

from __future__ import annotations

import hashlib
import struct
import subprocess
import sys
from collections import Counter

import pytest
from helpers import REPO, assert_valid_path, checkout_env, link_kinds

from collectives.translation import GroupTranslation
from topologies.base import Topology, TopologyError
from topologies.fattree import ecmp_hash, fat_tree, leaf_spine, superpod
from topologies.symmetry import LinkOrbits


def check_route(topo: Topology, src: int, dst: int, route: tuple[int, ...]) -> list[int]:
    """Assert ``route`` is a contiguous path of up links from src to dst that transits no NPU;
    return its devices."""
    assert_valid_path(topo, route, src, dst)
    devices = topo.path_devices(route)
    assert all(topo.is_switch(d) for d in devices[1:-1])
    return devices


# ---------------------------------------------------------------------- sizes
@pytest.mark.parametrize(("k", "hosts", "switches"), [(2, 2, 5), (4, 16, 20), (8, 128, 80)])
def test_fat_tree_counts(k, hosts, switches):
    topo = fat_tree(k, 10.0, 100.0)
    assert topo.num_npus == hosts == k**3 // 4
    assert topo.num_devices - topo.num_npus == switches == 5 * k * k // 4
    assert len(topo.links) == 2 * 3 * hosts  # host-edge, edge-agg, agg-core: k^3/4 each way
    assert Counter(lk.kind for lk in topo.links) == {
        "host-edge": 2 * hosts, "edge-agg": 2 * hosts, "agg-core": 2 * hosts}
    assert len(topo.layout.core_switches) == (k // 2) ** 2
    assert len(topo.layout.edge_switches) == len(topo.layout.agg_switches) == k * k // 2
    # every switch has exactly k ports (k/2 up and k/2 down; core: k down)
    for sw in range(topo.num_npus, topo.num_devices):
        assert len(list(topo.out_links(sw))) == k


def test_fat_tree_k4_exact_sizes_and_parameters():
    topo = fat_tree(4, 12.5, 300.0, switch_latency=40.0)
    assert (topo.num_npus, topo.num_devices - topo.num_npus, len(topo.links)) == (16, 20, 96)
    assert all(lk.bandwidth == 12.5 and lk.latency == 300.0 for lk in topo.links)
    assert set(topo.switch_latency) == set(range(16, 36))
    assert set(topo.switch_latency.values()) == {40.0}
    assert topo.info.bisection_bandwidth == 4**3 / 8 * 12.5


def test_fat_tree_hosts_of_an_edge_switch_are_contiguous():
    topo = fat_tree(4, 1.0, 1.0)
    for e, sw in enumerate(topo.layout.edge_switches):
        hosts = sorted(lk.dst for lk in topo.out_links(sw) if lk.kind == "host-edge")
        assert hosts == [2 * e, 2 * e + 1]


@pytest.mark.parametrize("k", [4, 6])
def test_fat_tree_core_wiring_follows_al_fares(k):
    topo = fat_tree(k, 1.0, 1.0)
    half = k // 2
    core = topo.layout.core_switches
    aggs = topo.layout.agg_switches
    for pod in range(k):
        for j in range(half):
            ups = {lk.dst for lk in topo.out_links(aggs[pod * half + j]) if lk.kind == "agg-core"}
            assert ups == set(core[j * half:(j + 1) * half])
    for c in core:  # one port per pod on every core switch
        pods = sorted(aggs.index(lk.dst) // half for lk in topo.out_links(c))
        assert pods == list(range(k))


@pytest.mark.parametrize("k", [0, 3, 5, -2, 4.0, True])
def test_fat_tree_rejects_bad_k(k):
    with pytest.raises(TopologyError, match="k must be"):
        fat_tree(k, 1.0, 1.0)


def test_leaf_spine_and_superpod_counts():
    ls = leaf_spine(4, 8, 2, 50.0, 100.0)
    assert (ls.num_npus, ls.num_devices - ls.num_npus, len(ls.links)) == (32, 6, 2 * (32 + 8))
    assert Counter(lk.kind for lk in ls.links) == {"host-leaf": 64, "leaf-spine": 16}
    sp = superpod(4, nvlink_bandwidth=450.0, nic_bandwidth=50.0, latency=500.0)
    assert sp.layout.spines == 8  # default: one spine per rail
    assert (sp.num_npus, sp.num_devices - sp.num_npus) == (32, 4 + 8 + 8)
    assert Counter(lk.kind for lk in sp.links) == {"nvlink": 64, "nic": 64, "leaf-spine": 128}


# ---------------------------------------------------------------------- path lengths
@pytest.mark.parametrize("k", [4, 8])
def test_fat_tree_path_lengths(k):
    topo = fat_tree(k, 1.0, 1.0)
    half = k // 2
    per_pod = half * half
    seen = Counter()
    for src in (0, half + 1, topo.num_npus - 1):
        for dst in range(topo.num_npus):
            if dst == src:
                continue
            for flow in (0, 7):
                route = topo.route(src, dst, flow)
                devices = check_route(topo, src, dst, route)
                if src // half == dst // half:
                    expected, shape = 2, ["host-edge"] * 2
                elif src // per_pod == dst // per_pod:
                    expected, shape = 4, ["host-edge", "edge-agg", "edge-agg", "host-edge"]
                else:
                    expected = 6
                    shape = ["host-edge", "edge-agg", "agg-core", "agg-core", "edge-agg",
                             "host-edge"]
                    assert devices[3] in topo.layout.core_switches
                assert len(route) == expected
                assert link_kinds(topo, route) == shape
                seen[expected] += 1
    assert set(seen) == {2, 4, 6}


def test_leaf_spine_path_lengths_and_spread():
    topo = leaf_spine(3, 4, 4, 10.0, 1.0)
    for dst in range(1, topo.num_npus):
        route = topo.route(0, dst)
        check_route(topo, 0, dst, route)
        assert len(route) == (2 if dst < 4 else 4)
    spines = {topo.path_devices(topo.route(0, 5, flow))[2] for flow in range(100)}
    assert spines == set(topo.layout.spine_switches)


# ---------------------------------------------------------------------- D-mod-K
@pytest.mark.parametrize("k", [4, 6])
def test_dmodk_goes_up_by_the_destination_coordinates(k):
    topo = fat_tree(k, 1.0, 1.0)
    half, lay = k // 2, topo.layout
    for src in range(topo.num_npus):
        for dst in range(topo.num_npus):
            if src == dst:
                continue
            devices = check_route(topo, src, dst, topo.route(src, dst))
            d_pod, d_edge, d_host = dst // half**2, (dst // half) % half, dst % half
            if src // half == dst // half:
                assert len(devices) == 3
                continue
            assert devices[2] == lay.agg_switches[(src // half**2) * half + d_host]
            if src // half**2 == d_pod:
                assert len(devices) == 5
            else:  # aggregation switch j joins cores j*half .. j*half + half-1
                assert devices[3] == lay.core_switches[d_host * half + d_edge]
                assert len(devices) == 7


@pytest.mark.parametrize("k", [4, 8])
def test_dmodk_never_shares_a_link_in_a_shift_permutation(k):
    # Zahavi (2010): D-mod-K is non-blocking for shift permutations, in host-id order and
    # coordinate by coordinate alike
    topo = fat_tree(k, 1.0, 1.0)
    n, grid = topo.num_npus, GroupTranslation(topo.info.dims)
    for shift in range(1, n):
        for dst_of in (lambda a, s=shift: (a + s) % n,
                       lambda a, s=shift: grid.add(a, grid.coords(s))):
            load = Counter(link for a in range(n) for link in topo.route(a, dst_of(a)))
            assert max(load.values()) == 1


def test_dmodk_routes_commute_with_translations_of_the_coordinates():
    topo = fat_tree(4, 1.0, 1.0)
    grid = GroupTranslation(topo.info.dims)
    table = [tuple(grid.add(r, grid.coords(k)) for r in range(16)) for k in range(16)]
    orbits = LinkOrbits(topo, table)
    assert all(orbits.route(0, dst) is not None for dst in range(1, 16))
    # every link of a class is in one orbit: the 16 translations move a route's hops freely
    assert {len(orbits.links_of(c)) for c in set(orbits.canonical.values())} == {16}
    ecmp = LinkOrbits(fat_tree(4, 1.0, 1.0, routing="ecmp"), table)
    assert any(ecmp.route(0, dst) is None for dst in range(1, 16))


@pytest.mark.parametrize("k", [4, 6])
def test_dmodk_batch_routes_equal_the_router_pair_by_pair(k):
    # the batch form (symmetry proofs) and the router (runs) write the rule twice: pin them
    import numpy as np

    topo = fat_tree(k, 1.0, 1.0)
    n = topo.num_npus
    for shift in range(1, n):  # a shift's pairs fall in one case when the group is a translate
        srcs = np.arange(n)
        dsts = (srcs + shift) % n
        batch = topo.routes_many(srcs, dsts)
        one_by_one = [topo.route(a, b) for a, b in zip(srcs.tolist(), dsts.tolist(), strict=True)]
        if len({len(r) for r in one_by_one}) == 1:
            assert [tuple(r) for r in batch.tolist()] == one_by_one
        else:
            assert batch is None
    down = topo.route(0, n - 1)[2]
    topo.links[down].up = False  # without invalidate_routes: the batch must still see it
    topo._routes.clear()  # forget the cached routes, keep the batch tables
    (detour,) = topo.routes_many(np.array([0]), np.array([n - 1])).tolist()
    assert down not in detour and tuple(detour) == topo.route(0, n - 1)


def test_dmodk_takes_the_surviving_paths_around_a_failed_link():
    topo = fat_tree(4, 1.0, 1.0)
    route = topo.route(0, 15)
    topo.links[route[2]].up = False  # its aggregation-to-core hop
    topo.invalidate_routes()
    detour = topo.route(0, 15)
    assert route[2] not in detour and len(check_route(topo, 0, 15, detour)) == 7


def test_unknown_routing_is_refused():
    with pytest.raises(TopologyError, match="routing must be one of dmodk, ecmp"):
        fat_tree(4, 1.0, 1.0, routing="adaptive")


# ---------------------------------------------------------------------- ECMP
@pytest.mark.parametrize("k", [4, 8])
def test_ecmp_spreads_flows_over_uplinks_and_cores(k):
    topo = fat_tree(k, 1.0, 1.0, routing="ecmp")
    dst = topo.num_npus - 1  # last pod
    routes = [topo.route(0, dst, flow) for flow in range(400)]
    first_uplinks = {route[1] for route in routes}
    assert len(first_uplinks) == k // 2
    assert all(topo.links[i].kind == "edge-agg" for i in first_uplinks)
    cores = {topo.path_devices(route)[3] for route in routes}
    assert len(cores) > 1
    assert cores == set(topo.layout.core_switches)  # 400 flows reach every core
    # no uplink gets much more than its share
    counts = Counter(route[1] for route in routes)
    assert max(counts.values()) < 2 * 400 / (k // 2)


def test_ecmp_is_reproducible_in_a_fresh_topology():
    a, b = (fat_tree(4, 1.0, 1.0, seed=11, routing="ecmp"),
            fat_tree(4, 1.0, 1.0, seed=11, routing="ecmp"))
    for flow in range(50):
        b.route(3, 9, flow + 1000)  # warm b's caches in a different order
    for src, dst in [(0, 15), (3, 9), (12, 1)]:
        for flow in range(50):
            assert a.route(src, dst, flow) == b.route(src, dst, flow)


def test_ecmp_is_reproducible_across_processes():
    code = ("from topologies.fattree import fat_tree\n"
            "t = fat_tree(8, 1.0, 1.0, seed=5, routing='ecmp')\n"
            "print([t.route(0, 127, f) for f in range(20)])\n")
    outputs = set()
    for hash_seed in ("1", "2"):
        done = subprocess.run([sys.executable, "-c", code], cwd=REPO,
                              env=checkout_env(PYTHONHASHSEED=hash_seed), check=True,
                              capture_output=True, text=True)
        outputs.add(done.stdout)
    here = fat_tree(8, 1.0, 1.0, seed=5, routing="ecmp")
    outputs.add(str([here.route(0, 127, f) for f in range(20)]) + "\n")
    assert len(outputs) == 1


def test_ecmp_hash_is_blake2b_of_packed_ints():
    packed = struct.pack("<5Q", 1, 2, 3, 4, 5)
    expected = int.from_bytes(hashlib.blake2b(packed, digest_size=8).digest(), "little")
    assert ecmp_hash(1, 2, 3, 4, 5) == expected
    assert ecmp_hash(-1, 0, 0, 0, 0) == ecmp_hash(2**64 - 1, 0, 0, 0, 0)


def test_different_seed_changes_some_routes():
    a, b = fat_tree(4, 1.0, 1.0, seed=0, routing="ecmp"), fat_tree(4, 1.0, 1.0, seed=1,
                                                                   routing="ecmp")
    pairs = [(0, 15, f) for f in range(40)]
    assert any(a.route(*p) != b.route(*p) for p in pairs)
    # but the seed never changes a path's length
    assert all(len(a.route(*p)) == len(b.route(*p)) for p in pairs)


# ---------------------------------------------------------------------- faults
def test_failed_uplink_is_never_used_and_routes_survive():
    topo = fat_tree(4, 1.0, 1.0, routing="ecmp")
    before = {topo.route(0, 15, f) for f in range(64)}
    failed = next(iter({r[1] for r in before}))  # an edge->agg uplink some flows used
    topo.links[failed].up = False
    topo.invalidate_routes()
    for flow in range(64):
        route = topo.route(0, 15, flow)
        assert failed not in route
        check_route(topo, 0, 15, route)
        assert len(route) == 6
    # the other uplink of that edge switch now carries everything
    assert len({topo.route(0, 15, f)[1] for f in range(64)}) == 1


def test_failed_core_link_is_avoided_everywhere():
    topo = fat_tree(4, 1.0, 1.0, routing="ecmp")
    agg_core = [lk.id for lk in topo.links if lk.kind == "agg-core"]
    for link_id in agg_core[::3]:
        topo.links[link_id].up = False
    topo.invalidate_routes()
    for src in (0, 5):
        for dst in range(topo.num_npus):
            if dst != src:
                for flow in range(8):
                    check_route(topo, src, dst, topo.route(src, dst, flow))


def test_stale_distances_are_recomputed_even_without_invalidate():
    topo = fat_tree(4, 1.0, 1.0, routing="ecmp")
    topo.route(0, 15, 0)  # fills the distance table for destination 15
    agg0 = topo.layout.agg_switches[0]
    for link in topo.out_links(agg0):  # pod 0's first aggregation switch loses its cores
        if link.kind == "agg-core":
            link.up = False
    topo._routes.clear()  # forget routes but keep the (now stale) distance tables
    for flow in range(16):
        devices = check_route(topo, 0, 15, topo.route(0, 15, flow))
        assert agg0 not in devices and len(devices) == 7


def test_stale_distances_never_push_a_route_onto_nvlink():
    g = 4
    topo = superpod(2, gpus_per_node=g, nvlink_bandwidth=450.0, nic_bandwidth=50.0,
                    latency=1.0, spines=2)
    rails, spines = topo.layout.rail_leaves, topo.layout.spine_switches
    topo.route(0, g + 1)  # caches the distance table towards GPU g+1
    (down,) = topo.links_between(spines[0], rails[1])
    down.up = False
    topo._routes.clear()  # stale distances: spine 0 still looks one hop from rail leaf 1
    for flow in range(32):
        route = topo.route(0, g + 1, flow)
        devices = check_route(topo, 0, g + 1, route)
        assert devices == [0, rails[0], spines[1], rails[1], g + 1]


def test_disconnected_host_has_no_route():
    topo = fat_tree(4, 1.0, 1.0)
    for link in topo.links:
        if 5 in (link.src, link.dst):
            link.up = False
    topo.invalidate_routes()
    with pytest.raises(TopologyError, match=r"no route from 0 to 5"):
        topo.route(0, 5)
    with pytest.raises(TopologyError, match=r"no route from 5 to 12"):
        topo.route(5, 12, 3)
    check_route(topo, 0, 4, topo.route(0, 4))  # others unaffected


# ---------------------------------------------------------------------- leaf-spine
def test_leaf_spine_oversubscription_derives_uplink_bandwidth():
    topo = leaf_spine(4, 8, 2, 50.0, 100.0, oversubscription=4.0)
    uplinks = {lk.bandwidth for lk in topo.links if lk.kind == "leaf-spine"}
    assert uplinks == {8 * 50.0 / (2 * 4.0)}  # 50 bytes/ns
    assert {lk.bandwidth for lk in topo.links if lk.kind == "host-leaf"} == {50.0}
    assert topo.layout.oversubscription == 4.0
    # bisection: min(16 hosts * 50, 2 leaves * 2 spines * 50) = min(800, 200)
    assert topo.info.bisection_bandwidth == 200.0


def test_leaf_spine_default_is_non_blocking_and_explicit_uplink_sets_ratio():
    default = leaf_spine(4, 8, 2, 50.0, 100.0)
    assert default.layout.uplink_bandwidth == 200.0
    assert default.layout.oversubscription == 1.0
    assert default.info.bisection_bandwidth == 16 * 50.0
    given = leaf_spine(4, 8, 2, 50.0, 100.0, uplink_bandwidth=25.0)
    assert {lk.bandwidth for lk in given.links if lk.kind == "leaf-spine"} == {25.0}
    assert given.layout.oversubscription == 8.0
    with pytest.raises(TopologyError, match="not both"):
        leaf_spine(4, 8, 2, 50.0, 100.0, uplink_bandwidth=25.0, oversubscription=2.0)
    with pytest.raises(TopologyError, match="oversubscription"):
        leaf_spine(4, 8, 2, 50.0, 100.0, oversubscription=0.0)
    with pytest.raises(TopologyError, match="spines"):
        leaf_spine(4, 8, 0, 50.0, 100.0)


# ---------------------------------------------------------------------- superpod
def test_superpod_path_shapes():
    g = 8
    topo = superpod(4, nvlink_bandwidth=450.0, nic_bandwidth=50.0, latency=500.0,
                    nvswitch_latency=30.0, leaf_latency=200.0)
    nvs, rails, spines = (topo.layout.nvswitches, topo.layout.rail_leaves,
                          topo.layout.spine_switches)
    # intra-node: GPU -> NVSwitch -> GPU
    route = topo.route(g + 1, g + 6)
    assert topo.path_devices(route) == [g + 1, nvs[1], g + 6]
    assert link_kinds(topo, route) == ["nvlink", "nvlink"]
    # same rail, different node: GPU -> rail leaf -> GPU
    route = topo.route(3, 2 * g + 3)
    assert topo.path_devices(route) == [3, rails[3], 2 * g + 3]
    assert link_kinds(topo, route) == ["nic", "nic"]
    # different rail, different node: through a spine, never over NVLink (no PXN)
    used_spines = set()
    for flow in range(64):
        route = topo.route(0, 3 * g + 5, flow)
        devices = check_route(topo, 0, 3 * g + 5, route)
        assert link_kinds(topo, route) == ["nic", "leaf-spine", "leaf-spine", "nic"]
        assert devices[1] == rails[0] and devices[3] == rails[5]
        used_spines.add(devices[2])
    assert used_spines <= set(spines) and len(used_spines) > 1
    assert topo.switch_latency[nvs[0]] == 30.0 and topo.switch_latency[spines[0]] == 200.0
    # non-blocking leaf-spine tier: per leaf, uplink capacity == downlink capacity
    assert topo.layout.uplink_bandwidth * len(spines) == 4 * 50.0
    assert topo.info.bisection_bandwidth == 2 * g * 50.0


def test_superpod_falls_back_to_a_peer_gpu_when_a_nic_fails():
    g = 4
    topo = superpod(2, gpus_per_node=g, nvlink_bandwidth=450.0, nic_bandwidth=50.0,
                    latency=1.0, spines=2)
    for link in topo.links:
        if link.kind == "nic" and 0 in (link.src, link.dst):
            link.up = False
    topo.invalidate_routes()
    route = topo.route(0, g + 1)  # GPU 0 has no NIC left: via a peer GPU's NIC
    assert link_kinds(topo, route)[:2] == ["nvlink", "nvlink"]
    assert all(topo.links[i].up for i in route)
    assert topo.path_devices(topo.route(1, g + 1)) == [1, topo.layout.rail_leaves[1], g + 1]


# ---------------------------------------------------------------------- scale
def test_k16_builds_and_routes_lazily():
    # build speed is measured in bench/topologies.py, not asserted here
    topo = fat_tree(16, 50.0, 500.0)
    assert (topo.num_npus, topo.num_devices - topo.num_npus) == (1024, 320)
    assert not topo._routes
    assert len(topo.route(0, 1023, 9)) == 6
    assert len(topo.route(17, 900, 2)) == 6
