"""Ring attention's ring on a grid (topologies.dims.neighbour_ring): a box of a torus runs its
ring over neighbours, one link per step, so the rotation is symmetric and lockstep batching
advances it exactly; anything else keeps rank order."""

from __future__ import annotations

import pytest

import topologies as topo
from des.core.hardware import load_gpu
from des.sim.backends import get_backend
from des.sim.options import EngineOptions
from topologies.dims import neighbour_ring
from workloads.llm import build_training
from workloads.models import ModelConfig
from workloads.parallel import ParallelConfig

GPU = load_gpu("A100-SXM4-80GB")
TINY = ModelConfig(name="tiny", layers=2, hidden=1024, heads=16, kv_heads=16, head_dim=64,
                   ffn=4096, activation="gelu", vocab=8, seq=2048)


def hops(topology, ring: tuple[int, ...]) -> list[int]:
    return [len(topology.route(ring[i], ring[(i + 1) % len(ring)])) for i in range(len(ring))]


@pytest.mark.parametrize(("dims", "group"), [
    ((4, 4, 4), tuple(range(64))),            # the whole torus: closes over a z wrap link
    ((4, 4, 4), tuple(range(32))),            # two planes: closes over a z link
    ((4, 4, 4), tuple(range(16))),            # a plane: closes over a y wrap link
    ((4, 4, 4), tuple(range(16, 32))),        # a plane away from the origin
    ((4, 4, 4), (0, 16, 32, 48)),             # a z line
    ((4, 2, 3), tuple(range(24))),            # odd z: the code closes along x instead
    ((3, 3, 2), tuple(range(18))),
    ((6, 4, 2), tuple(range(48))),
])
def test_a_box_of_a_torus_rings_over_neighbours(dims, group) -> None:
    torus = topo.torus3d(*dims, 100.0, 500.0)
    ring = neighbour_ring(torus, group)
    assert sorted(ring) == sorted(group)
    assert set(hops(torus, ring)) == {1}
    assert ring[0] == group[0]
    if len(group) > 4:  # what the neighbour order avoids: rank order crosses rows in 2-3 hops
        assert max(hops(torus, group)) > 1


def test_rank_order_stays_where_no_neighbour_cycle_is_proven() -> None:
    torus = topo.torus3d(4, 4, 4, 100.0, 500.0)
    strided = tuple(range(0, 64, 2))  # a strided box: its members are two links apart in x
    assert neighbour_ring(torus, strided) == strided
    mesh = topo.mesh2d(4, 4, 100.0, 500.0)  # no wrap-around: the Gray code does not close
    assert neighbour_ring(mesh, tuple(range(16))) == tuple(range(16))
    switch = topo.switch(8, 100.0, 500.0)  # one hop whatever the order
    assert neighbour_ring(switch, tuple(range(8))) == tuple(range(8))
    assert neighbour_ring(torus, (0, 1)) == (0, 1)


@pytest.mark.parametrize("mode", ["phased", "detailed"])
def test_ring_attention_on_a_torus_box_batches_exactly(mode: str) -> None:
    torus = topo.torus3d(4, 2, 2, 100.0, 500.0)
    par = ParallelConfig(cp=16, micro_batch=1, global_batch=1, ring_attention=mode, fold="none")
    graph = build_training(TINY, par, torus.num_npus, torus).graph
    sends = {(n.rank, n.peer) for r in range(graph.num_ranks) for n in graph.nodes(r)
             if n.kind.value == "send"}
    if mode == "detailed":
        assert sends and all(len(torus.route(a, b)) == 1 for a, b in sends)
    results = {}
    for lockstep in (True, False):
        results[lockstep] = get_backend("simpy").run(
            torus, graph, hardware=GPU, options=EngineOptions(lockstep=lockstep))
    on, off = results[True], results[False]
    assert on.makespan_ns == off.makespan_ns
    assert [r.finished_ns for r in on.ranks.values()] == \
        [r.finished_ns for r in off.ranks.values()]
    assert [lk.bytes for lk in on.links] == [lk.bytes for lk in off.links]
    if mode == "phased":  # the rotation is one symmetric collective: it ran batched
        assert on.meta["mirrored_messages"] > 0 == off.meta["mirrored_messages"]


def test_every_rank_of_a_cp_group_uses_the_same_ring() -> None:
    torus = topo.torus3d(4, 4, 2, 100.0, 500.0)
    par = ParallelConfig(cp=16, dp=2, micro_batch=1, global_batch=2, ring_attention="phased",
                         fold="none")
    graph = build_training(TINY, par, torus.num_npus, torus).graph
    rings = {}
    for r in range(graph.num_ranks):
        for n in graph.nodes(r):
            if n.kind.value == "collective" and n.category == "cp":
                rings.setdefault(n.group, set()).add(r)
    assert len(rings) == 2
    for ring, members in rings.items():
        assert set(ring) == members
        assert set(hops(torus, ring)) == {1}
