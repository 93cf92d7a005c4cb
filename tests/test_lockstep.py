"""Lockstep batching is exact: a symmetric collective advanced for one representative rank gives
what simulating every message gives (every rank's finish, every link's bytes, messages, busy time
and peak queue), including when the symmetry breaks mid-run and the run falls back."""

from __future__ import annotations

import math
import random

import pytest

import topologies as topo
from des.core.graph import EventGraph
from des.sim.engine import simulate
from des.sim.options import EngineOptions
from topologies.faults import LinkFault, apply_faults

MiB = 2**20


def both(build_topology, graph: EventGraph, **options):
    """(per-message result, lockstep result) of the same run."""
    off = simulate(build_topology(), graph, options=EngineOptions(lockstep=False, **options))
    on = simulate(build_topology(), graph, options=EngineOptions(lockstep=True, **options))
    return off, on


def assert_same(off, on) -> None:
    assert on.makespan_ns == off.makespan_ns
    assert {r: s.finished_ns for r, s in on.ranks.items()} == \
        {r: s.finished_ns for r, s in off.ranks.items()}
    for a, b in zip(off.links, on.links, strict=True):
        assert (b.bytes, b.messages, b.peak_queue) == (a.bytes, a.messages, a.peak_queue), b.id
        assert b.busy_ns == pytest.approx(a.busy_ns, rel=1e-12, abs=1e-9), b.id
    assert on.meta["messages"] == off.meta["messages"]
    assert on.meta["hops"] == off.meta["hops"]
    assert [(c.start_ns, c.end_ns) for c in on.collectives] == \
        [(c.start_ns, c.end_ns) for c in off.collectives]
    # mirrored members count what they injected and delivered, per run and per collective
    for key in ("bytes_injected", "bytes_delivered"):
        assert on.meta[key] == pytest.approx(off.meta[key], rel=1e-12), key
    def flat(result):  # approx compares flat sequences only (nested ones are an error)
        return [b for c in result.collectives for b in (c.bytes_injected, c.bytes_delivered)]

    assert flat(on) == pytest.approx(flat(off), rel=1e-12)


def all_reduce(n: int, size: float = 64 * MiB, algorithm: str | None = None,
               group=None) -> EventGraph:
    g = EventGraph(n, "ar")
    g.collective_all("all_reduce", size, algorithm=algorithm, group=group)
    return g


ASTRA = dict(transport="store_and_forward", quantize=True, chunking="astra",
             chunks_in_flight=1, endpoint_delay_ns=10.0, reduction_bandwidth=1600.0,
             sends_complete_collective=False, sends_use_comm_stream=True,
             issue_order="node_id", min_compute_ns=1.0, astra=True)


@pytest.mark.parametrize("options", [{}, {"transport": "store_and_forward"},
                                     {"chunks": 8, "chunks_in_flight": 2}, ASTRA,
                                     {**ASTRA, "contention": False}],
                         ids=["cut_through", "saf", "window", "astra_aware", "astra_unaware"])
@pytest.mark.parametrize(("name", "build", "algorithm"), [
    ("ring", lambda: topo.ring(16, 50.0, 500.0), "ring"),
    ("ring_bidir", lambda: topo.ring(16, 50.0, 500.0), "ring_bidir"),
    ("switch_ring", lambda: topo.switch(16, 50.0, 500.0, switch_latency=100.0), "ring"),
    ("fc_direct", lambda: topo.fully_connected(8, 50.0, 500.0), "direct"),
])
def test_symmetric_collectives_batch_exactly(name, build, algorithm, options) -> None:
    graph = all_reduce(build().num_npus, algorithm=algorithm)
    off, on = both(build, graph, **options)
    assert_same(off, on)
    assert on.meta["mirrored_messages"] > 0  # it did batch
    assert any(lk.mirrored for lk in on.links) and not any(lk.mirrored for lk in off.links)


def test_hierarchical_on_a_torus_batches_exactly() -> None:
    graph = all_reduce(64, algorithm="hierarchical")
    off, on = both(lambda: topo.torus3d(4, 4, 4, 50.0, 500.0), graph)
    assert_same(off, on)
    assert on.meta["mirrored_messages"] == on.meta["messages"] * 63 // 64


def test_competing_flow_mid_step_falls_back_exactly() -> None:
    graph = all_reduce(8)
    late = graph.compute(0, duration_ns=300_000.0)  # then a flow over ring link 0 -> 1
    graph.send(0, 1, 8 * MiB, deps=[late])
    graph.recv(1, 0, 8 * MiB)
    off, on = both(lambda: topo.ring(8, 50.0, 500.0), graph)
    assert_same(off, on)
    assert 0 < on.meta["mirrored_messages"] < on.meta["messages"]  # batched, then fell back


def test_link_failing_mid_collective_falls_back_exactly() -> None:
    graph = all_reduce(8)
    fault = LinkFault(2, 3, down=True, at_ns=400_000.0)
    off, on = both(lambda: topo.ring(8, 50.0, 500.0), graph, timed_faults=[fault])
    assert_same(off, on)
    assert on.meta["reroutes"] == off.meta["reroutes"] > 0


def test_timed_derate_falls_back_exactly() -> None:
    graph = all_reduce(8)
    fault = LinkFault(5, 8, derate=0.5, at_ns=200_000.0, until_ns=900_000.0)  # 8: the switch
    off, on = both(lambda: topo.switch(8, 50.0, 500.0), graph, timed_faults=[fault])
    assert_same(off, on)


def test_straggler_joining_late_runs_message_by_message() -> None:
    graph = EventGraph(8, "straggler")
    pre = {r: [graph.compute(r, duration_ns=1000.0)] for r in range(8)}
    graph.collective_all("all_reduce", 16 * MiB, deps=pre)
    off, on = both(lambda: topo.ring(8, 50.0, 500.0), graph, speed={3: 0.5})
    assert_same(off, on)
    assert on.meta["mirrored_messages"] == 0


def test_uneven_links_are_not_batched() -> None:
    def build():
        ring = topo.ring(8, 50.0, 500.0)
        apply_faults(ring, [LinkFault(4, 5, derate=0.5)])
        return ring

    off, on = both(build, all_reduce(8))
    assert_same(off, on)
    assert on.meta["mirrored_messages"] == 0


def test_concurrent_subgroups_batch_independently() -> None:
    graph = EventGraph(8, "subgroups")
    graph.collective_all("all_reduce", 32 * MiB, group=[0, 1, 2, 3])
    graph.collective_all("all_reduce", 32 * MiB, group=[4, 5, 6, 7])
    graph.collective_all("all_reduce", 8 * MiB, group=[0, 2, 4, 6])
    off, on = both(lambda: topo.switch(8, 50.0, 500.0), graph)
    assert_same(off, on)
    assert on.meta["mirrored_messages"] > 0


def test_overlapping_collectives_on_shared_links_stay_exact() -> None:
    graph = EventGraph(8, "overlap")
    graph.collective_all("all_reduce", 32 * MiB)
    graph.collective_all("all_reduce", 32 * MiB, group=[0, 1, 2, 3])  # second comm stream
    off, on = both(lambda: topo.ring(8, 50.0, 500.0), graph, comm_streams=2)
    assert_same(off, on)


def test_ring1024_astra_reference_in_milliseconds() -> None:
    """AstraSim's ring1024_allreduce_1GiB answer (46,129,156 ns on every rank) from a run that
    simulates 1/1024 of the messages."""
    gb = 2**30 / 1e9
    graph = all_reduce(1024, 2**30)
    result = simulate(topo.ring(1024, 50 * gb, 500.0), graph,
                      options=EngineOptions.astra_compat(splits=4))
    assert {s.finished_ns for s in result.ranks.values()} == {46_129_156.0}
    assert result.meta["messages"] == 2 * 1023 * 4 * 1024
    assert math.isclose(result.meta["mirrored_messages"], result.meta["messages"] * 1023 / 1024)


def test_subgrid_groups_of_a_torus_get_dimensions_and_batch_exactly() -> None:
    from des.sim.choices import logical_dims

    torus = topo.torus3d(4, 4, 4, 50.0, 500.0)
    assert logical_dims(torus, tuple(range(16))) == (4, 4)          # an x-y plane
    assert logical_dims(torus, tuple(range(32))) == (4, 4, 2)       # two planes
    assert logical_dims(torus, (0, 16, 32, 48)) == (4,)             # a z line
    assert logical_dims(torus, (0, 2)) == (2,)                      # every other x, round
    assert logical_dims(torus, tuple(range(0, 64, 2))) == (2, 4, 4)  # a strided box
    assert logical_dims(torus, (0, 3)) is None                      # not evenly spaced
    assert logical_dims(torus, (0, 1, 3)) is None                   # neither
    assert logical_dims(topo.mesh2d(4, 4, 50.0, 500.0), (0, 2)) is None  # no wrap-around
    assert logical_dims(torus, (1, 0)) is None                      # not in id order
    assert logical_dims(torus, tuple(range(16)), subgrids=False) is None  # AstraSim modes
    graph = EventGraph(64, "planes")
    for z in range(4):  # four tensor-parallel planes at once, each a hierarchical all-reduce
        graph.collective_all("all_reduce", 16 * MiB, group=list(range(16 * z, 16 * z + 16)))
    off, on = both(lambda: topo.torus3d(4, 4, 4, 50.0, 500.0), graph)
    assert_same(off, on)
    assert {c.algorithm for c in on.collectives} == {"hierarchical"}
    assert on.meta["mirrored_messages"] == on.meta["messages"] * 15 // 16


# ---------------------------------------------------------------------- the same instant
# A batch must also keep the message-by-message run's order of events that fall in one instant:
# two messages entering a link at once queue in that order (regression: issue 11).

def test_a_send_issued_with_a_collective_queues_as_in_the_per_message_run() -> None:
    # rank 0's send and its ring all-reduce are ready at the same instant, both over link
    # 0 -> 1: the collective's members start at the end of the instant in both runs
    graph = EventGraph(4, "same instant")
    ready = {r: [graph.compute(r, duration_ns=1000.0)] for r in range(4)}
    graph.collective_all("all_reduce", 8 * MiB, algorithm="ring", deps=ready)
    graph.send(0, 1, MiB, deps=ready[0])
    graph.recv(1, 0, MiB)
    off, on = both(lambda: topo.ring(4, 50.0, 500.0), graph, chunks=1)
    assert_same(off, on)


def test_superpod_pipeline_inner_data_parallel_training_is_exact() -> None:
    # the review's case (issue 11): TP1 PP2 DP8 on a 2-node SuperPOD with the pipeline inner
    # to data parallelism, so the DP groups straddle the nodes; ZeRO-3's gathers and
    # reduce-scatters batch, and pipeline sends leave at the instants they start and end
    from des.core.hardware import load_gpu
    from workloads.llm import build_training
    from workloads.models import ModelConfig
    from workloads.parallel import ParallelConfig

    model = ModelConfig(name="tiny", layers=4, hidden=1024, heads=8, kv_heads=8, head_dim=128,
                        ffn=4096, activation="gelu", vocab=4096, seq=512)

    def build():
        return topo.superpod(2, nvlink_bandwidth=230.0, nic_bandwidth=25.0, latency=1000.0)

    par = ParallelConfig(tp=1, pp=2, dp=8, zero=3, global_batch=8, order="tp,cp,ep,pp,dp",
                         fold="none")
    graph = build_training(model, par, 16, build()).graph
    gpu = load_gpu("A100-SXM4-80GB")
    off, on = (simulate(build(), graph, hardware=gpu,
                        options=EngineOptions(chunks=1, lockstep=lockstep, trains=False,
                                              replay=False))
               for lockstep in (False, True))
    assert_same(off, on)
    assert on.meta["mirrored_messages"] > 0


def test_mirrored_links_get_the_batch_s_own_peak_queue() -> None:
    # the even ranks' reduce-scatter overlaps the first all-gather on their links only; the
    # second all-gather batches, and its representative's link (rank 0's) must not hand the
    # earlier, deeper queue to the odd ranks' links
    graph = EventGraph(8, "peaks")
    rs = graph.collective_all("reduce_scatter", MiB, group=[0, 2, 4, 6])
    big = graph.collective_all("all_gather", 8 * MiB, algorithm="ring",
                               deps={r: [d] for r, d in rs.items()})
    graph.collective_all("all_gather", MiB, algorithm="ring",
                         deps={r: [d] for r, d in big.items()})
    off, on = both(lambda: topo.switch(8, 50.0, 500.0), graph, chunks=4)
    assert_same(off, on)
    assert on.meta["mirrored_messages"] > 0


def test_materialized_copies_are_due_at_the_representative_s_very_time() -> None:
    # the all-reduce's traffic breaks the batched reduce-scatter: each member's copy of an
    # in-flight message is due when the representative's is, to the last bit
    graph = EventGraph(8, "exact time")
    evens = [0, 2, 4, 6]
    ready = {r: [graph.compute(r, duration_ns=2000.0 if r in evens else 1000.0)]
             for r in range(8)}
    rs = graph.collective_all("reduce_scatter", 4 * MiB, group=evens,
                              deps={r: ready[r] for r in evens})
    graph.collective_all("all_reduce", MiB, deps={
        r: [graph.compute(r, duration_ns=1000.0, deps=[rs[r]])] if r in rs else ready[r]
        for r in range(8)})
    off, on = both(lambda: topo.switch(8, 50.0, 500.0), graph, chunks=1, comm_streams=2,
                   transport="store_and_forward")
    assert_same(off, on)
    assert 0 < on.meta["mirrored_messages"] < on.meta["messages"]


def test_materialized_copies_keep_their_place_among_simultaneous_events() -> None:
    # the odd ranks start the full all-reduce while the even ranks' batch runs on the other
    # comm stream; when it falls back, each member's copy of a pending hop must come before
    # the odd ranks' messages due at the same time, as the member's own message did
    graph = EventGraph(8, "order")
    evens = graph.collective_all("all_reduce", 4 * MiB, group=[0, 2, 4, 6])
    graph.collective_all("all_reduce", 8 * MiB, deps={r: [d] for r, d in evens.items()})
    off, on = both(lambda: topo.switch(8, 50.0, 500.0), graph, chunks=2, comm_streams=2,
                   transport="store_and_forward")
    assert_same(off, on)
    assert 0 < on.meta["mirrored_messages"] < on.meta["messages"]


@pytest.mark.parametrize("collective", ["all_reduce", "reduce_scatter"])
def test_members_done_together_are_released_in_one_order(collective) -> None:
    # ranks 0 and 5 send to 7 a fixed time after the batched collective: their messages meet
    # at 7's link at once, queued in the order the members were released
    graph = EventGraph(8, "release")
    first = graph.collective_all("all_reduce", MiB)
    done = graph.collective_all(collective, 8 * MiB, algorithm="ring", deps={
        r: [graph.compute(r, duration_ns=5000.0, deps=[first[r]])] for r in range(8)})
    for src, size in ((0, MiB / 2), (5, MiB)):
        ready = graph.compute(src, duration_ns=5000.0, deps=[done[src]])
        graph.send(src, 7, size, tag=src, deps=[ready])
        graph.recv(7, src, size, tag=src)
    off, on = both(lambda: topo.switch(8, 50.0, 500.0), graph, chunks=1)
    assert_same(off, on)
    assert on.meta["mirrored_messages"] > 0


def random_graph(seed: int) -> tuple[str, EventGraph, dict]:
    """A small random mix of collectives over all or the even ranks and point-to-point sends,
    on round-number compute times, so that many things happen in the same instant."""
    rng = random.Random(seed)
    kind = rng.choice(["switch", "ring", "superpod"])
    graph = EventGraph(8, f"random {seed}")
    last: dict[int, list[int]] = {r: [] for r in range(8)}
    tag = 0
    for _ in range(rng.randint(2, 5)):
        if rng.random() < 0.5:
            group = list(range(8)) if rng.random() < 0.6 else [0, 2, 4, 6]
            duration = rng.choice([1000.0, 2000.0, 5000.0])
            ids = graph.collective_all(
                rng.choice(["all_reduce", "reduce_scatter", "all_gather"]),
                rng.choice([1, 4, 8]) * MiB, algorithm=rng.choice([None, "ring"]),
                group=group, deps={r: [graph.compute(r, duration_ns=duration, deps=last[r])]
                                   for r in group})
            last.update({r: [ids[r]] for r in group})
            continue
        for _ in range(rng.randint(1, 3)):
            src = rng.randrange(8)
            dst = (src + rng.choice([1, -1, 2])) % 8
            delay = rng.choice([0.0, 1000.0, 2000.0, 5000.0, 17000.0])
            deps = [graph.compute(src, duration_ns=delay, deps=last[src])] if delay else last[src]
            size = rng.choice([0.5, 1, 3]) * MiB
            last[src] = [graph.send(src, dst, size, tag=tag, deps=deps)]
            graph.recv(dst, src, size, tag=tag, deps=last[dst])
            tag += 1
    options = dict(chunks=rng.choice([1, 2, 4]), comm_streams=rng.choice([1, 2]),
                   trains=rng.random() < 0.5,
                   transport=rng.choice(["cut_through", "store_and_forward"]))
    return kind, graph, options


RANDOM_TOPOLOGIES = {
    "switch": lambda: topo.switch(8, 50.0, 500.0),
    "ring": lambda: topo.ring(8, 50.0, 500.0),
    "superpod": lambda: topo.superpod(2, gpus_per_node=4, nvlink_bandwidth=230.0,
                                      nic_bandwidth=25.0, latency=1000.0),
}


@pytest.mark.parametrize("first", range(0, 400, 100))
def test_random_graphs_with_simultaneous_events_batch_exactly(first) -> None:
    batched = 0
    for seed in range(first, first + 100):
        kind, graph, options = random_graph(seed)
        off, on = both(RANDOM_TOPOLOGIES[kind], graph, **options)
        assert_same(off, on)
        batched += on.meta["mirrored_messages"] > 0
    assert batched > 20
