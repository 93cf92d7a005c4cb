"""Trains are exact: a lone send moved as one event gives, for every rank and link, what moving
it chunk by chunk gives, including when another flow joins its links halfway (it is then
materialized mid-flight), when a link under it fails, and in a pipelined training graph."""

from __future__ import annotations

import pytest

import topologies as topo
from des.core.graph import EventGraph
from des.core.hardware import load_gpu
from des.sim.engine import simulate
from des.sim.options import EngineOptions
from topologies.faults import LinkFault
from workloads.llm import build_training
from workloads.models import ModelConfig
from workloads.parallel import ParallelConfig

MiB = 2**20


def both(build, graph: EventGraph, **options):
    off = simulate(build(), graph, options=EngineOptions(trains=False, lockstep=False,
                                                         **options))
    on = simulate(build(), graph, options=EngineOptions(trains=True, lockstep=False, **options))
    return off, on


def assert_same(off, on) -> None:
    assert on.makespan_ns == pytest.approx(off.makespan_ns, rel=1e-12)
    for rank, st in off.ranks.items():
        assert on.ranks[rank].finished_ns == pytest.approx(st.finished_ns, rel=1e-12), rank
    for a, b in zip(off.links, on.links, strict=True):
        assert (b.messages, b.peak_queue) == (a.messages, a.peak_queue), b.id
        assert b.bytes == pytest.approx(a.bytes, rel=1e-12), b.id
        assert b.busy_ns == pytest.approx(a.busy_ns, rel=1e-9, abs=1e-6), b.id
    assert (on.meta["messages"], on.meta["hops"]) == (off.meta["messages"], off.meta["hops"])
    for key in ("bytes_injected", "bytes_delivered"):  # trains add what they carried
        assert on.meta[key] == pytest.approx(off.meta[key], rel=1e-12), key


def flows(n: int, sends: list[tuple[int, int, float, float]]) -> EventGraph:
    """Sends (src, dst, bytes, start delay)."""
    graph = EventGraph(n, "flows")
    for tag, (src, dst, nbytes, delay) in enumerate(sends):
        pre = graph.compute(src, duration_ns=delay)
        graph.send(src, dst, nbytes, tag=tag, deps=[pre])
        graph.recv(dst, src, nbytes, tag=tag)
    return graph


def test_a_lone_flow_is_one_train() -> None:
    off, on = both(lambda: topo.switch(4, 50.0, 500.0), flows(4, [(0, 1, 64 * MiB, 0.0)]))
    assert_same(off, on)
    assert on.meta["trains"] == 1 and off.meta["trains"] == 0


@pytest.mark.parametrize("delay", [1.0, 100_000.0, 700_000.0])
def test_a_second_flow_joining_the_links_materializes_the_train(delay: float) -> None:
    sends = [(0, 1, 64 * MiB, 0.0), (2, 1, 32 * MiB, delay), (0, 3, 16 * MiB, delay / 2)]
    off, on = both(lambda: topo.switch(4, 50.0, 500.0), flows(4, sends))
    assert_same(off, on)


@pytest.mark.parametrize("transport", ["cut_through", "store_and_forward"])
def test_multi_hop_trains_on_a_ring(transport: str) -> None:
    sends = [(0, 3, 48 * MiB, 0.0), (1, 2, 24 * MiB, 200_000.0), (5, 4, 8 * MiB, 0.0)]
    off, on = both(lambda: topo.ring(8, 50.0, 500.0), flows(8, sends), transport=transport)
    assert_same(off, on)


def test_a_link_failing_under_a_train() -> None:
    fault = LinkFault(0, 1, down=True, at_ns=200_000.0)
    off, on = both(lambda: topo.ring(8, 50.0, 500.0), flows(8, [(0, 1, 64 * MiB, 0.0)]),
                   timed_faults=[fault])
    assert_same(off, on)
    assert on.meta["reroutes"] == off.meta["reroutes"] > 0


def test_pipelined_training_with_trains_equals_chunk_by_chunk() -> None:
    model = ModelConfig(name="tiny", layers=4, hidden=2048, heads=16, kv_heads=16,
                        head_dim=128, ffn=8192, activation="gelu", vocab=4096, seq=1024)
    par = ParallelConfig(tp=2, pp=4, dp=2, global_batch=16, micro_batch=2, fold="none")
    build = lambda: topo.superpod(2, nvlink_bandwidth=230.0, nic_bandwidth=25.0,  # noqa: E731
                                  latency=1000.0)
    workload = build_training(model, par, 16, build())
    gpu = load_gpu("A100-SXM4-80GB")
    off = simulate(build(), workload.graph, hardware=gpu,
                   options=EngineOptions(trains=False, comm_streams=2))
    on = simulate(build(), workload.graph, hardware=gpu,
                  options=EngineOptions(trains=True, comm_streams=2))
    assert_same(off, on)
    assert on.meta["trains"] > 0
