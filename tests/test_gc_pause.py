"""The cyclic collector pause (des.core.gc_pause): repeated runs in one process (sweeps,
searches, the validation bench) leave no reference cycles through their graphs, so nothing
piles up in the oldest generation, and a host program's frozen objects stay frozen."""

from __future__ import annotations

import gc

import pytest

import topologies as topo
from des.core.gc_pause import cyclic_gc_paused
from des.core.hardware import load_gpu
from des.sim.backends import get_backend
from des.sim.options import EngineOptions
from workloads.llm import build_training
from workloads.models import ModelConfig
from workloads.parallel import ParallelConfig

GPU = load_gpu("A100-SXM4-80GB")
TINY = ModelConfig(name="tiny", layers=4, hidden=1024, heads=16, kv_heads=16, head_dim=64,
                   ffn=4096, activation="gelu", vocab=8, seq=1024)


def one_step(backend: str, par: ParallelConfig, topology) -> None:
    workload = build_training(TINY, par, topology.num_npus, topology)
    result = get_backend(backend).run(topology, workload.graph, hardware=GPU,
                                      options=EngineOptions())
    assert result.makespan_ns > 0


@pytest.mark.parametrize("backend", ["simpy", "analytical"])
@pytest.mark.parametrize("shape", ["tp_dp_switch", "hierarchical_torus"])
def test_repeated_runs_leave_nothing_behind(backend: str, shape: str) -> None:
    if shape == "tp_dp_switch":
        topology = topo.switch(8, 100.0, 500.0)
        par = ParallelConfig(tp=2, dp=4, micro_batch=1, global_batch=8, fold="none")
    else:  # hierarchical collectives over a torus's dimensions, lockstep batched
        topology = topo.torus3d(2, 2, 2, 100.0, 500.0)
        par = ParallelConfig(dp=8, micro_batch=1, global_batch=8)
    for _ in range(2):  # warm the caches
        one_step(backend, par, topology)
    before = len(gc.get_objects())
    for _ in range(3):
        one_step(backend, par, topology)
    # a step builds thousands of objects; only SimPy's self-referring Environment may stay
    assert len(gc.get_objects()) - before < 3 * 50


def test_a_hosts_frozen_objects_stay_frozen() -> None:
    kept = [[object()] for _ in range(10)]
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        assert frozen > 0
        with cyclic_gc_paused():
            [object() for _ in range(100)]
        assert gc.get_freeze_count() == frozen
        assert gc.isenabled()
    finally:
        gc.unfreeze()
    del kept


def test_nested_pauses_restore_the_collector_once() -> None:
    assert gc.isenabled()
    with cyclic_gc_paused():
        with cyclic_gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()
    assert gc.get_freeze_count() == 0
