"""Structured collectives: NCCL's double binary tree, binomial/chain broadcast and reduce,
hierarchical (AstraSim localBWAware) and 2-D torus all-reduce, and the automatic choice.

Every plan is checked against the aligned-step contract, an information-flow check (does every
output depend on every input it must?), exact byte totals, and, for the hierarchical plan,
AstraSim's per-phase arithmetic (notes 5.11). The engine tests run them end to end."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import pytest
from helpers import check_aligned, reaches

import collectives.auto as auto
import collectives.hierarchical  # registers hierarchical
import collectives.torus2d  # noqa: F401  (registers torus2d)
import collectives.tree as tree
import topologies as topo
from collectives import base
from collectives.base import CollectiveError, CollectivePlan, PlanOptions, dry_run, make_plan
from des.core.graph import CollectiveType, EventGraph
from des.sim.engine import EngineOptions, simulate

AR, RS, AG = CollectiveType.ALL_REDUCE, CollectiveType.REDUCE_SCATTER, CollectiveType.ALL_GATHER
BCAST, REDUCE = CollectiveType.BROADCAST, CollectiveType.REDUCE
S = 3 * 2**20 * 7 * 5  # divisible by every group size used below
BW, LAT = 50.0, 500.0


# ---------------------------------------------------------------------- helpers
def sent(plan: CollectivePlan, rank: int) -> float:
    return plan.bytes_sent(rank)


def received(plan: CollectivePlan, rank: int) -> float:
    return sum(b for k in range(plan.num_steps(rank)) for _, b in plan.step(rank, k).recvs)


def reduced(plan: CollectivePlan, rank: int) -> float:
    return sum(plan.step(rank, k).reduce_bytes for k in range(plan.num_steps(rank)))


def ring_totals(dims: Sequence[int], c: float) -> float:
    """Per-rank bytes of a hierarchical all-reduce with ring sub-plans: RS + AG on every active
    dim but the last, 2 (n_i-1)/n_i c_i, and the ring all-reduce 2 (n-1)/n c on the last."""
    active = [d for d in dims if d > 1]
    total = 0.0
    for i, n in enumerate(active):
        total += 2 * (n - 1) / n * c  # RS+AG, or the last dim's AR: the same formula
        if i < len(active) - 1:
            c /= n
    return total


# ---------------------------------------------------------------------- NCCL's trees
def parents(n: int, which: int) -> dict[int, int]:
    return {i: tree.dtree_links(n, i, which)[0] for i in range(n)}


def test_binary_trees_match_nccls_pictures():
    # trees.cc: "0---8; 8 -> 4, 12; 4 -> 2, 6; 12 -> 10, 13 ..." for 14 ranks
    assert parents(14, 0) == {0: -1, 8: 0, 4: 8, 12: 8, 2: 4, 6: 4, 10: 12, 13: 12, 1: 2, 3: 2,
                              5: 6, 7: 6, 9: 10, 11: 10}
    assert tree.btree_children(14, 12) == (10, 13)
    # 12 ranks, second tree mirrored: 11 -> 3; 3 -> 1, 7; 7 -> 5, 9; 1 -> 0, 2 ...
    assert parents(12, 1) == {11: -1, 3: 11, 1: 3, 7: 3, 0: 1, 2: 1, 5: 7, 9: 7, 4: 5, 6: 5,
                              8: 9, 10: 9}
    # 13 ranks, second tree shifted by one: 1 -> 9; 9 -> 5, 0; 0 -> 11 ...
    p = parents(13, 1)
    assert (p[1], p[9], p[5], p[0], p[11]) == (-1, 1, 9, 9, 0)
    assert sorted(tree.dtree_links(13, 0, 1)[1]) == [11]


@pytest.mark.parametrize("n", range(2, 70))
def test_double_tree_is_two_spanning_trees_of_height_ceil_log2(n):
    leaf_count = Counter()
    for which in (0, 1):
        edges, height = 0, 0
        for i in range(n):
            parent, children, depth = tree.dtree_links(n, i, which)
            assert len(children) <= 2
            height = max(height, depth)
            for c in children:
                assert tree.dtree_links(n, c, which)[0] == i
                assert tree.dtree_links(n, c, which)[2] == depth + 1
            if parent >= 0:
                edges += 1
            else:
                assert depth == 0
            if not children:
                leaf_count[i] += 1
        assert edges == n - 1 and height == math.ceil(math.log2(n))
    # complementary: a leaf of one tree is an inner node of the other (odd n: position 0 is
    # the root of tree 0 and an inner node of tree 1)
    expected = set(range(n)) if n % 2 == 0 else set(range(1, n))
    assert {i for i, c in leaf_count.items() if c == 1} == expected
    assert all(c == 1 for c in leaf_count.values())


# ---------------------------------------------------------------------- double binary tree
@pytest.mark.parametrize("n", range(1, 18))
def test_double_binary_tree_steps_flow_and_bytes(n):
    group = [10 + 3 * i for i in range(n)]  # ranks need not be 0..n-1
    plan = make_plan(AR, group, S, "double_binary_tree")
    steps = check_aligned(plan)
    assert steps == (2 * math.ceil(math.log2(n)) if n > 1 else 0)
    assert all(v == set(group) for v in reaches(plan).values())
    half = S / 2
    for r in group:
        # exact: half a buffer to the parent and to every child, in each tree
        links = [plan.tree(r, t) for t in (0, 1)]
        expected = sum(half * ((parent is not None) + len(children))
                       for parent, children, _ in links)
        assert sent(plan, r) == pytest.approx(expected)
        assert sent(plan, r) <= 2 * S
        # it gets the reduced half back from its parent, and each child's partial sum
        assert received(plan, r) == pytest.approx(
            sum(half * ((parent is not None) + len(children)) for parent, children, _ in links))
        assert reduced(plan, r) == pytest.approx(sum(half * len(ch) for _, ch, _ in links))
    # each tree: n-1 edges, S/2 up and S/2 down
    assert sum(sent(plan, r) for r in group) == pytest.approx(2 * (n - 1) * S)
    assert sum(reduced(plan, r) for r in group) == pytest.approx((n - 1) * S)


@pytest.mark.parametrize("n", [2, 4, 8, 16, 32])
def test_double_binary_tree_power_of_two_sends_2s_except_at_the_ends(n):
    plan = make_plan(AR, range(n), S, "double_binary_tree")
    assert [sent(plan, r) for r in range(n)] == [S] + [2 * S] * (n - 2) + [S]


def test_double_binary_tree_halves_keep_every_byte_with_integer_sizes():
    plan = make_plan(AR, range(6), 1001, "double_binary_tree",
                     options=PlanOptions(integer_sizes=True))
    assert plan.halves == (500.0, 501.0)
    assert sum(sent(plan, r) for r in range(6)) == 2 * 5 * 1001


def test_double_binary_tree_latency_is_two_tree_heights():
    plan = make_plan(AR, range(16), 0, "double_binary_tree")
    assert dry_run(plan, lambda s, d, b: 1.0, lambda st: 0.0) == 8.0  # 2 * log2(16) hops


# ---------------------------------------------------------------------- broadcast / reduce
@pytest.mark.parametrize("n", range(1, 18))
@pytest.mark.parametrize("where", [0, 1, -1])
def test_binomial_broadcast_and_reduce(n, where):
    group = list(range(100, 100 + n))
    root = group[where % n]
    height = math.ceil(math.log2(n)) if n > 1 else 0
    bcast = make_plan(BCAST, group, S, "binomial_tree", root=root)
    red = make_plan(REDUCE, group, S, "binomial_tree", root=root)
    assert check_aligned(bcast) == height == check_aligned(red)
    assert all(root in v for v in reaches(bcast).values())
    assert reaches(red)[root] == set(group)
    # root: S per child, ceil(log2 n) children; everyone else gets exactly one copy
    assert sent(bcast, root) == height * S and received(bcast, root) == 0
    assert received(red, root) == height * S == reduced(red, root) and sent(red, root) == 0
    for r in group:
        if r != root:
            assert received(bcast, r) == S and sent(red, r) == S
            assert reduced(red, r) == received(red, r)  # a reducer reduces all it gets
    assert sum(sent(bcast, r) for r in group) == (n - 1) * S
    assert sum(reduced(red, r) for r in group) == (n - 1) * S
    # the reduce is the broadcast run backwards
    for k in range(height):
        for r in group:
            b, m = bcast.step(r, k), red.step(r, height - 1 - k)
            assert (b.sends, b.recvs) == (m.recvs, m.sends)


@pytest.mark.parametrize("n", range(1, 18))
def test_chain_broadcast_and_reduce_follow_the_group_order_from_the_root(n):
    group = list(range(n))
    root = group[n // 2]
    bcast = make_plan(BCAST, group, S, "ring", root=root)
    red = make_plan(REDUCE, group, S, "ring", root=root)
    assert check_aligned(bcast) == n - 1 == check_aligned(red)
    assert all(root in v for v in reaches(bcast).values())
    assert reaches(red)[root] == set(group)
    last = group[(n // 2 - 1) % n]  # the chain's far end
    for r in group:
        assert received(bcast, r) == (0 if r == root else S)
        assert sent(bcast, r) == (0 if r == last or n == 1 else S)
        assert sent(red, r) == (0 if r == root else S)
        assert reduced(red, r) == (0 if r == last or n == 1 else S)
    if n > 2:
        assert bcast.step(root, 0).sends == ((group[(n // 2 + 1) % n], S),)


def test_chain_broadcast_pipelines_with_chunks():
    """With C chunks on a chain of n, chunk c reaches position k at (c + k) s + k L (each
    link forwards a chunk the moment it has arrived), so the last one lands at
    (n - 2 + C) s + (n - 1) L: the serialization pipelines, the latency does not add up per
    chunk."""
    n, chunks = 6, 8
    g = EventGraph(n)
    g.collective_all("broadcast", 8 * 2**20, algorithm="ring")
    r = simulate(topo.ring(n, BW, LAT), g, options=EngineOptions(chunks=chunks))
    s = 2**20 / BW  # one chunk's serialization
    assert r.makespan_ns == pytest.approx((n - 2 + chunks) * s + (n - 1) * LAT, rel=1e-9)


def test_root_outside_the_group_is_an_error():
    for alg in ("binomial_tree", "ring"):
        with pytest.raises(CollectiveError, match="root"):
            make_plan(BCAST, [0, 1, 2], S, alg, root=7)
        with pytest.raises(CollectiveError, match="root"):
            make_plan(REDUCE, [0, 1, 2], S, alg, root=7)


# ---------------------------------------------------------------------- hierarchical
HIER_DIMS = [(2, 2), (4, 2), (2, 3, 2), (8, 2), (1, 4), (4, 1), (4, 4), (3,)]


@pytest.mark.parametrize("dims", HIER_DIMS)
@pytest.mark.parametrize("ctype", [AR, RS, AG])
def test_hierarchical_is_aligned_complete_and_moves_ring_bytes(dims, ctype):
    n = math.prod(dims)
    group = [5 * i + 1 for i in range(n)]
    plan = make_plan(ctype, group, S, "hierarchical", dims=dims)
    active = [d for d in dims if d > 1]
    steps = check_aligned(plan)
    if ctype is AR:
        assert steps == 2 * sum(d - 1 for d in active)
        assert all(sent(plan, r) == pytest.approx(ring_totals(dims, S)) for r in group)
        # telescopes to the flat ring's 2 (n-1)/n S
        assert ring_totals(dims, S) == pytest.approx(2 * (n - 1) / n * S)
    else:  # RS on every dim: sum (n_i - 1)/n_i c_i = (n-1)/n S; AG mirrors it
        assert steps == sum(d - 1 for d in active)
        assert all(sent(plan, r) == pytest.approx((n - 1) / n * S) for r in group)
    assert all(v == set(group) for v in reaches(plan).values())
    if ctype is AG:
        assert all(reduced(plan, r) == 0 for r in group)
    else:
        assert all(reduced(plan, r) == pytest.approx((n - 1) / n * S) for r in group)


def test_hierarchical_4x4_dims_sizes_and_directions():
    c = 16 * 2**20
    plan = make_plan(AR, range(16), c, "hierarchical", dims=(4, 4))
    assert [plan.step(0, k).dim for k in range(12)] == [0] * 3 + [1] * 6 + [0] * 3
    rank = 5  # coordinates (1, 1)
    steps = [plan.step(rank, k) for k in range(12)]
    # RS along dim 0 (x+1), c/4 per message, reducing; AR along dim 1 (y+1) on c/4: c/16 per
    # message, reducing in its first half; AG along dim 0 anticlockwise (x-1), c/4 per message
    assert [s.sends for s in steps[:3]] == [((6, c / 4),)] * 3
    assert [s.recvs for s in steps[:3]] == [((4, c / 4),)] * 3
    assert [s.reduce_bytes for s in steps[:3]] == [c / 4] * 3
    assert [s.sends for s in steps[3:9]] == [((9, c / 16),)] * 6
    assert [s.reduce_bytes for s in steps[3:9]] == [c / 16] * 3 + [0.0] * 3
    assert [s.sends for s in steps[9:]] == [((4, c / 4),)] * 3
    assert [s.recvs for s in steps[9:]] == [((6, c / 4),)] * 3
    assert [s.reduce_bytes for s in steps[9:]] == [0.0] * 3
    assert [(p.collective, p.dim, p.nbytes, p.reverse) for p in plan.phases] == [
        (RS, 0, c, False), (AR, 1, c / 4, False), (AG, 0, c, True)]


def test_hierarchical_reduce_scatter_and_all_gather_phase_orders():
    rs = make_plan(RS, range(12), S, "hierarchical", dims=(2, 3, 2))
    ag = make_plan(AG, range(12), S, "hierarchical", dims=(2, 3, 2))
    assert [(p.dim, p.nbytes) for p in rs.phases] == [(0, S), (1, S / 2), (2, S / 6)]
    assert [(p.dim, p.nbytes) for p in ag.phases] == [(2, S / 6), (1, S / 2), (0, S)]
    assert [rs.step(0, k).dim for k in range(4)] == [0, 1, 1, 2]
    assert [ag.step(0, k).dim for k in range(4)] == [2, 1, 1, 0]


def test_hierarchical_size_one_dims_are_skipped_and_keep_their_index():
    plan = make_plan(AR, range(4), S, "hierarchical", dims=(1, 4))
    assert [plan.step(0, k).dim for k in range(6)] == [1] * 6
    assert plan.step(0, 0).sends == ((1, S / 4),)
    assert make_plan(AR, [3], S, "hierarchical").num_steps(3) == 0


def test_hierarchical_runs_the_per_dimension_algorithm():
    opts = PlanOptions(dim_algorithms=("ring", "double_binary_tree"))
    plan = make_plan(AR, range(16), S, "hierarchical", dims=(4, 4), options=opts)
    assert check_aligned(plan) == 3 + 2 * 2 + 3  # the AR on dim 1 is a 2-level double tree
    assert [plan.step(0, k).dim for k in range(10)] == [0] * 3 + [1] * 4 + [0] * 3
    assert all(v == set(range(16)) for v in reaches(plan).values())
    bad = PlanOptions(dim_algorithms=("no_such_algorithm",))
    with pytest.raises(CollectiveError, match="no_such_algorithm"):
        make_plan(AR, range(16), S, "hierarchical", dims=(4, 4), options=bad)


@pytest.mark.parametrize("dims", [(4, 3), (5,), (2, 2, 2)])
def test_hierarchical_dims_must_multiply_to_the_group_size(dims):
    with pytest.raises(CollectiveError, match="multiply"):
        make_plan(AR, range(10), S, "hierarchical", dims=dims)


# ---------------------------------------------------------------------- AstraSim arithmetic
def astra_unaware_4x4():
    """notes 5.11, mesh2d_ringring_4x4: 50 GB/s, 500 ns per hop inside each dimension's 4-ring,
    endpoint delay 10, reduction 3 * floor(bytes / 1600)."""

    def message_time(src: int, dst: int, nbytes: float) -> float:
        (x0, y0), (x1, y1) = divmod(src, 4)[::-1], divmod(dst, 4)[::-1]
        d = abs(x1 - x0) if x1 != x0 else abs(y1 - y0)
        hops = min(d, 4 - d)
        return math.floor(hops * 500 + nbytes * 1e9 / (50 * 2**30))

    def overhead(step) -> float:
        return 10 + (3 * math.floor(step.reduce_bytes / 1600) if step.reduce_bytes else 0)

    return message_time, overhead


def test_hierarchical_dry_run_reproduces_astrasim_phase_times():
    mt, ov = astra_unaware_4x4()
    opts = PlanOptions(integer_sizes=True, astra=True)
    c = 16 * 2**20  # one chunk of the 64 MiB collective
    row, col = [0, 1, 2, 3], [0, 4, 8, 12]
    # each phase alone, with AstraSim's stream-init delay (10) as the start
    rs = make_plan(RS, row, c, "ring", options=opts)
    ar = make_plan(AR, col, c // 4, "ring", options=opts)
    ag = make_plan(AG, row[::-1], c, "ring", options=opts)
    assert dry_run(rs, mt, ov, start=10) == 259_504
    assert dry_run(ar, mt, ov, start=10) == 126_151
    assert dry_run(ag, mt, ov, start=10) == 235_915
    # The whole plan pays the start delay once: a phase's first step begins the moment the
    # previous phase's last receive (plus its overhead) is done, whereas AstraSim re-inits the
    # stream per phase (another 10 ns). So whole = sum of phases - 2 * 10 = 621,550. (The
    # 64 MiB total, 1,981,676, also needs the per-dimension chunk queues of the engine.)
    plan = make_plan(AR, range(16), c, "hierarchical", dims=(4, 4), options=opts)
    whole = 259_504 + 126_151 + 235_915 - 2 * 10
    assert whole == 621_550
    assert dry_run(plan, mt, ov, start=10) == whole
    assert plan.closed_form(mt, ov, start=10) == whole


# ---------------------------------------------------------------------- torus2d
@pytest.mark.parametrize("dims", [(2, 2), (3, 4), (4, 3), (4, 4), (2, 5)])
def test_torus2d_is_aligned_complete_and_moves_the_ring_minimum(dims):
    x, y = dims
    n = x * y
    plan = make_plan(AR, range(n), S, "torus2d", dims=dims)
    assert check_aligned(plan) == 2 * (x - 1) + 2 * (y - 1)
    assert all(v == set(range(n)) for v in reaches(plan).values())
    hier = make_plan(AR, range(n), S, "hierarchical", dims=dims)
    for r in range(n):
        assert sent(plan, r) == pytest.approx(sent(hier, r))
        assert sent(plan, r) == pytest.approx(2 * (n - 1) / n * S)
        assert reduced(plan, r) == pytest.approx((n - 1) / n * S)
    # step dims follow half A: RS on x, AR on y, AG on x
    assert [plan.step(0, k).dim for k in range(plan.num_steps(0))] == (
        [0] * (x - 1) + [1] * (2 * (y - 1)) + [0] * (x - 1))


@pytest.mark.parametrize("dims", [(3, 4), (4, 4), (5, 3)])
def test_torus2d_halves_use_opposite_directions_of_every_dimension(dims):
    x, y = dims
    plan = make_plan(AR, range(x * y), S, "torus2d", dims=dims)
    directions: Counter = Counter()
    for k in range(plan.num_steps(0)):
        for r in range(x * y):
            peers = Counter(p for p, _ in plan.step(r, k).sends)
            assert max(peers.values()) == 1  # the halves never share a directed link
            rx, ry = r % x, r // x
            for p in peers:
                px, py = p % x, p // x
                if py == ry:
                    directions["+x" if px == (rx + 1) % x else "-x"] += 1
                    assert px in ((rx + 1) % x, (rx - 1) % x)
                else:
                    assert px == rx and py in ((ry + 1) % y, (ry - 1) % y)
                    directions["+y" if py == (ry + 1) % y else "-y"] += 1
    # each half moves 2(X-1) + 2(Y-1) messages per rank, A on + links, B on - links
    n = x * y
    assert directions == {"+x": n * 2 * (x - 1), "+y": n * 2 * (y - 1),
                          "-x": n * 2 * (x - 1), "-y": n * 2 * (y - 1)}


@pytest.mark.parametrize("dims", [(1, 4), (4, 1), (4,), None, (2, 2, 1)])
def test_torus2d_needs_two_dims_of_at_least_two(dims):
    with pytest.raises(CollectiveError, match="torus2d: needs dims"):
        make_plan(AR, range(4), S, "torus2d", dims=dims)


def test_torus2d_dims_must_multiply_to_the_group_size():
    with pytest.raises(CollectiveError, match="multiply"):
        make_plan(AR, range(12), S, "torus2d", dims=(4, 4))


# ---------------------------------------------------------------------- engine
def link_bytes_expected(plan: CollectivePlan, topology, chunks: int) -> float:
    """Bytes every link should carry: each message on every link of its route."""
    return chunks * sum(b * len(topology.route(r, peer)) for r in plan.group
                        for k in range(plan.num_steps(r)) for peer, b in plan.step(r, k).sends)


def run_one(topology, kind: str, size: float, algorithm: str, *, root: int | None = None,
            chunks: int = 2):
    n = topology.num_npus
    g = EventGraph(n)
    g.collective_all(kind, size, algorithm=algorithm, root=root)
    result = simulate(topology, g, options=EngineOptions(chunks=chunks))
    assert sorted(op.rank for op in result.ops if op.kind == "collective") == list(range(n))
    assert result.collectives[0].algorithm == algorithm
    return result


HIER_TOPO = [topo.DimSpec("ring", 4, BW, LAT), topo.DimSpec("switch", 2, 25.0, 1000.0)]
FLAT_CASES = [
    ("broadcast", "binomial_tree", lambda: topo.fully_connected(7, BW, LAT)),
    ("reduce", "binomial_tree", lambda: topo.mesh2d(3, 3, BW, LAT)),
    ("broadcast", "ring", lambda: topo.hierarchical(HIER_TOPO)),
    ("reduce", "ring", lambda: topo.fully_connected(5, BW, LAT)),
    ("all_reduce", "double_binary_tree", lambda: topo.fully_connected(9, BW, LAT)),
    ("all_reduce", "double_binary_tree", lambda: topo.mesh2d(4, 4, BW, LAT)),
    ("all_reduce", "double_binary_tree", lambda: topo.hierarchical(HIER_TOPO)),
]


@pytest.mark.parametrize(("kind", "algorithm", "build"), FLAT_CASES)
def test_engine_runs_tree_plans_and_delivers_every_byte(kind, algorithm, build):
    topology, size, chunks = build(), 3 * 2**18, 2
    result = run_one(topology, kind, size, algorithm, chunks=chunks)
    plan = make_plan(CollectiveType.parse(kind), range(topology.num_npus), size / chunks,
                     algorithm)
    per_rank = sum(plan.bytes_sent(r) for r in plan.group)
    assert sum(lk.bytes for lk in result.links) == pytest.approx(
        link_bytes_expected(plan, topology, chunks))
    if topology.name.startswith("fully"):  # one hop: link bytes = bytes sent
        assert sum(lk.bytes for lk in result.links) == pytest.approx(per_rank * chunks)


DIM_CASES = [
    ("all_reduce", "hierarchical", lambda: topo.hierarchical(HIER_TOPO), (4, 2)),
    ("reduce_scatter", "hierarchical", lambda: topo.hierarchical(HIER_TOPO), (4, 2)),
    ("all_gather", "hierarchical", lambda: topo.hierarchical(HIER_TOPO), (4, 2)),
    ("all_reduce", "hierarchical", lambda: topo.torus2d(4, 4, BW, LAT), (4, 4)),
    ("all_reduce", "torus2d", lambda: topo.torus2d(4, 4, BW, LAT), (4, 4)),
    ("all_reduce", "torus2d", lambda: topo.mesh2d(3, 4, BW, LAT), (3, 4)),
]


@pytest.mark.parametrize(("kind", "algorithm", "build", "dims"), DIM_CASES)
def test_engine_runs_dimension_aware_plans_and_delivers_every_byte(kind, algorithm, build, dims):
    topology, size, chunks = build(), 3 * 2**18, 2
    result = run_one(topology, kind, size, algorithm, chunks=chunks)
    plan = make_plan(CollectiveType.parse(kind), range(topology.num_npus), size / chunks,
                     algorithm, dims=dims)
    assert sum(lk.bytes for lk in result.links) == pytest.approx(
        link_bytes_expected(plan, topology, chunks))
    if topology.info.kind == "torus2d":  # neighbour rings: one hop per message
        assert sum(lk.bytes for lk in result.links) == pytest.approx(
            chunks * sum(plan.bytes_sent(r) for r in plan.group))


def test_engine_broadcasts_from_the_named_root():
    topology, size, root = topo.fully_connected(8, BW, LAT), 2**20, 3
    result = run_one(topology, "broadcast", size, "binomial_tree", root=root)
    out_of_root = sum(lk.bytes for lk in result.links if lk.src == root)
    assert out_of_root == pytest.approx(3 * size)  # children at +1, +2, +4


# ---------------------------------------------------------------------- auto
KiB, MiB = 1024, 2**20
AUTO_TABLE = [
    # (collective, n, bytes, kind, dims, expected)
    (AR, 16, 64 * MiB, "torus2d", (4, 4), "torus2d"),
    (AR, 16, 1 * KiB, "mesh2d", (4, 4), "torus2d"),
    (AR, 8, 64 * MiB, "mesh2d", (4, 4), "ring"),  # a sub-group of the grid
    (AR, 8, 1 * KiB, "mesh2d", (4, 4), "double_binary_tree"),
    (AR, 16, 64 * MiB, "torus2d", (16, 1), "ring"),  # a 1-D "grid"
    (AR, 64, 64 * MiB, "hierarchical", (8, 4, 2), "hierarchical"),
    (AR, 8, 64 * MiB, "hierarchical", (8, 1), "ring"),
    (AR, 64, 64 * MiB, "torus3d", (4, 4, 4), "hierarchical"),
    (AR, 16, 64 * KiB, "switch", None, "halving_doubling"),
    (AR, 16, 64 * KiB, "fat_tree", None, "halving_doubling"),
    (AR, 12, 64 * KiB, "switch", None, "double_binary_tree"),
    (AR, 16, 64 * KiB, "ring", None, "double_binary_tree"),
    (AR, 16, 64 * KiB, None, None, "double_binary_tree"),
    (AR, 16, 256 * KiB, "switch", None, "ring"),
    (AR, 16, 64 * MiB, "ring", None, "ring_bidir"),
    (AR, 16, 64 * MiB, "ring_unidirectional", None, "ring"),
    (AR, 1, 1 * KiB, None, None, "ring"),
    (AG, 16, 64 * MiB, "switch", None, "ring"),
    (RS, 8, 64 * MiB, "hierarchical", (4, 2), "hierarchical"),
    (AG, 16, 64 * MiB, "torus2d", (4, 4), "hierarchical"),
    (CollectiveType.ALL_TO_ALL, 8, 64 * MiB, "switch", None, "direct"),
    (BCAST, 8, 64 * MiB, "ring", None, "binomial_tree"),
    (REDUCE, 8, 1 * KiB, None, None, "binomial_tree"),
    (CollectiveType.BARRIER, 8, 0, None, None, "dissemination"),
]


def _dummy(collective, group, nbytes, **kw):  # pragma: no cover - never built
    raise AssertionError


@pytest.fixture
def everything_registered(monkeypatch):
    for ctype in CollectiveType:
        for name in ("ring", "ring_bidir", "halving_doubling", "double_binary_tree", "direct",
                     "pairwise", "dissemination", "hierarchical", "torus2d", "binomial_tree"):
            if (ctype, name) not in base._REGISTRY:
                monkeypatch.setitem(base._REGISTRY, (ctype, name), _dummy)


@pytest.mark.parametrize(("ctype", "n", "nbytes", "kind", "dims", "expected"), AUTO_TABLE)
def test_auto_choices(everything_registered, ctype, n, nbytes, kind, dims, expected):
    assert auto.choose_algorithm(ctype, n, nbytes, topology_kind=kind, dims=dims) == expected


def test_auto_falls_back_to_registered_algorithms(monkeypatch):
    for key in [k for k in base._REGISTRY if k[1] in ("ring_bidir", "halving_doubling")]:
        monkeypatch.delitem(base._REGISTRY, key)
    choose = auto.choose_algorithm
    assert choose(AR, 16, 64 * MiB, topology_kind="ring", dims=None) == "ring"
    assert choose(AR, 16, KiB, topology_kind="switch", dims=None) == "double_binary_tree"
    assert choose("broadcast", 4, KiB, topology_kind=None, dims=None) == "binomial_tree"
    barrier = CollectiveType.BARRIER
    for key in [k for k in base._REGISTRY if k[0] is barrier]:
        monkeypatch.delitem(base._REGISTRY, key)
    with pytest.raises(CollectiveError, match="barrier"):
        choose(barrier, 4, 0, topology_kind=None, dims=None)
    every = set(base.algorithms_for(AR))
    for row in AUTO_TABLE:
        if row[0] is AR:
            assert choose(row[0], row[1], row[2], topology_kind=row[3], dims=row[4]) in every


def test_topology_hints_read_kind_and_dims():
    assert auto.topology_hints(topo.torus2d(4, 2, BW, LAT)) == ("torus2d", (4, 2))
    assert auto.topology_hints(topo.hierarchical(HIER_TOPO)) == ("hierarchical", (4, 2))
    assert auto.topology_hints(topo.switch(8, BW, LAT)) == ("switch", None)
    assert auto.topology_hints(topo.ring(4, BW, LAT, bidirectional=False)) == (
        "ring_unidirectional", None)


def test_multi_dim_flags_let_the_engine_pipeline_chunks_across_dimensions():
    assert make_plan(AR, range(16), S, "hierarchical", dims=(4, 4)).multi_dim
    assert make_plan(AR, range(16), S, "torus2d", dims=(4, 4)).multi_dim
    assert not make_plan(AR, range(4), S, "hierarchical", dims=(1, 4)).multi_dim
    assert not make_plan(AR, range(16), S, "double_binary_tree").multi_dim
    # One chunk per dimension at a time: chunk c+1 reduce-scatters on dim 0 while chunk c
    # all-reduces on the (4x slower) dim 1. Were every step tagged dim 0, the chunks would run
    # strictly one after another (ratio 1.0); with the tags dim 1 is the bottleneck (0.625).
    fast, slow = topo.DimSpec("ring", 4, BW, LAT), topo.DimSpec("ring", 4, BW / 4, LAT)
    topology, size = topo.hierarchical([fast, slow]), 16 * 2**20

    def makespan(nbytes: float, chunks: int) -> float:
        g = EventGraph(16)
        g.collective_all("all_reduce", nbytes, algorithm="hierarchical")
        opts = EngineOptions(chunks=chunks, chunks_in_flight=1)
        return simulate(topology, g, options=opts).makespan_ns

    assert makespan(size, 4) / (4 * makespan(size / 4, 1)) == pytest.approx(0.625, abs=0.01)
