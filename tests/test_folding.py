"""Folding is exact where the guard allows it: a training graph built for one representative
per orbit of tensor- and data-parallel peers gives what the unfolded graph gives, for every rank
and every link, on both backends; where the topology or the run breaks the symmetry, auto does
not fold, and an explicit fold says it is not exact."""

from __future__ import annotations

import dataclasses

import pytest

import topologies as topo
from des.app.config import scenario_from_dict
from des.core.hardware import load_gpu
from des.sim.analytical import analyze
from des.sim.engine import simulate
from des.sim.options import EngineOptions
from workloads.llm import build_training
from workloads.models import ModelConfig
from workloads.parallel import ParallelConfig

MODEL = ModelConfig(name="tiny", layers=4, hidden=1024, heads=8, kv_heads=8, head_dim=128,
                    ffn=4096, activation="gelu", vocab=4096, seq=512)
GPU = load_gpu("A100-SXM4-80GB")
OPTIONS = EngineOptions(chunks=4, comm_streams=2)

CASES = [
    ("superpod_tp8_pp2_dp2",
     lambda: topo.superpod(4, nvlink_bandwidth=230.0, nic_bandwidth=25.0, latency=1000.0),
     dict(tp=8, pp=2, dp=2, global_batch=8)),
    ("superpod_tp4_sp_dp2_interleaved",
     lambda: topo.superpod(2, nvlink_bandwidth=230.0, nic_bandwidth=25.0, latency=1000.0),
     dict(tp=4, pp=2, dp=2, sp=True, global_batch=8, schedule="interleaved",
          virtual_stages=2)),
    # data-parallel groups that straddle nodes fold factor by factor (within a node, across
    # nodes on the rails), and their collectives run per dimension
    ("superpod_tp2_dp8_pp2_straddling",
     lambda: topo.superpod(4, nvlink_bandwidth=230.0, nic_bandwidth=25.0, latency=1000.0),
     dict(tp=2, pp=2, dp=8, global_batch=16, order="tp,cp,ep,dp,pp")),
    ("superpod_cp2_dp8_pp2_phased_straddling",
     lambda: topo.superpod(4, nvlink_bandwidth=230.0, nic_bandwidth=25.0, latency=1000.0),
     dict(cp=2, pp=2, dp=8, global_batch=16, order="tp,cp,ep,dp,pp",
          ring_attention="phased", zero=1)),
    # on a torus, dp = 8 at stride 4 is the y-z box (4 x 2): translated per dimension, as its
    # hierarchical collectives are
    ("torus_tp4_dp8_aligned", lambda: topo.torus3d(4, 4, 2, 50.0, 500.0),
     dict(tp=4, dp=8, global_batch=16)),
    ("switch_tp2_dp4_zero3", lambda: topo.switch(8, 50.0, 500.0),
     dict(tp=2, dp=4, zero=3, global_batch=8)),
    # context-parallel peers fold when ring attention is one rotation per phase
    ("ring_cp8_phased", lambda: topo.ring(8, 50.0, 500.0),
     dict(cp=8, ring_attention="phased", global_batch=2)),
    ("torus_tp4_cp4_dp2_phased", lambda: topo.torus3d(4, 4, 2, 50.0, 500.0),
     dict(tp=4, cp=4, dp=2, ring_attention="phased", recompute="full", global_batch=4)),
]


def run(build, par: dict, fold: str, backend=simulate):
    topology = build()
    workload = build_training(MODEL, ParallelConfig(fold=fold, **par), topology.num_npus,
                              topology)
    return workload, backend(topology, workload.graph, hardware=GPU, options=OPTIONS)


@pytest.mark.parametrize(("name", "build", "par"), CASES, ids=[c[0] for c in CASES])
def test_folded_training_equals_the_unfolded_run(name, build, par) -> None:
    _, full = run(build, par, "none")
    folded_workload, folded = run(build, par, "auto")
    fold = folded_workload.graph.fold
    assert fold is not None and fold.count > 1, "the guard should fold these"
    assert folded.meta["folded"]["exact"]
    assert len(folded_workload.simulated_ranks) * fold.count == folded.meta["npus"]
    assert folded.makespan_ns == pytest.approx(full.makespan_ns, rel=1e-12)
    for rank, st in full.ranks.items():
        got = folded.ranks[rank]
        assert got.finished_ns == pytest.approx(st.finished_ns, rel=1e-12), rank
        assert got.exposed_comm_ns == pytest.approx(st.exposed_comm_ns, rel=1e-9, abs=1e-6)
        assert (got.represented_by is None) == fold.is_representative(rank)
    for a, b in zip(full.links, folded.links, strict=True):
        assert b.bytes == pytest.approx(a.bytes, rel=1e-12), b.id
        assert b.messages == a.messages, b.id
        assert b.busy_ns == pytest.approx(a.busy_ns, rel=1e-9, abs=1e-6), b.id
        assert b.peak_queue == a.peak_queue, b.id
    assert folded.meta["messages"] == full.meta["messages"]
    assert folded.meta["mirrored_messages"] > 0
    for key in ("bytes_injected", "bytes_delivered"):  # represented bytes, like messages
        assert folded.meta[key] == pytest.approx(full.meta[key], rel=1e-9), key
    if name.startswith("superpod_tp8"):  # NVLink groups of their own: recurring TP replays
        assert folded.meta["folded"]["replayed_collectives"] > 0


@pytest.mark.parametrize(("name", "build", "par"), CASES, ids=[c[0] for c in CASES])
def test_folded_training_equals_the_unfolded_run_in_closed_form(name, build, par) -> None:
    _, full = run(build, par, "none", analyze)
    _, folded = run(build, par, "auto", analyze)
    assert folded.makespan_ns == pytest.approx(full.makespan_ns, rel=1e-12)
    assert {r: s.finished_ns for r, s in folded.ranks.items()} == pytest.approx(
        {r: s.finished_ns for r, s in full.ranks.items()}, rel=1e-12)


def test_a_strided_box_folds_exactly() -> None:
    # dp = 16 at stride 2 on a 4x4x2 torus (x in {0, 2}, every y and z) is a strided box: its
    # collectives run per dimension (2, 4, 2), translations cut along the torus's dimensions
    # map them onto each other, and the folded run equals the unfolded one
    torus = topo.torus3d(4, 4, 2, 50.0, 500.0)
    par = ParallelConfig(tp=2, dp=16, global_batch=16)
    workload = build_training(MODEL, par, 32, torus)
    assert workload.graph.fold is not None and set(workload.graph.fold.axes) == {"dp"}
    folded = simulate(torus, workload.graph, hardware=GPU, options=OPTIONS)
    assert folded.meta["folded"]["exact"]
    whole = build_training(MODEL, dataclasses.replace(par, fold="none"), 32, torus).graph
    unfolded = simulate(torus, whole, hardware=GPU, options=OPTIONS)
    assert folded.makespan_ns == unfolded.makespan_ns
    assert {r: s.finished_ns for r, s in folded.ranks.items()} == \
        {r: s.finished_ns for r, s in unfolded.ranks.items()}


def test_auto_does_not_fold_what_the_topology_breaks() -> None:
    # tp = 8 on a 4x4x4 torus spans two x-lines: translating by one rank is no symmetry
    torus = topo.torus3d(4, 4, 4, 50.0, 500.0)
    par = ParallelConfig(tp=8, dp=8, global_batch=8, fold="auto")
    workload = build_training(MODEL, par, 64, torus)
    assert workload.graph.fold is None or "tp" not in workload.graph.fold.axes


def test_an_explicit_fold_on_an_asymmetric_topology_says_it_is_not_exact() -> None:
    torus = topo.torus3d(4, 4, 4, 50.0, 500.0)
    par = ParallelConfig(tp=8, dp=8, global_batch=8, fold=("tp",))
    workload = build_training(MODEL, par, 64, torus)
    result = simulate(torus, workload.graph, hardware=GPU, options=OPTIONS)
    assert result.meta["folded"]["exact"] is False
    assert result.meta["folded"]["closed_form_collectives"] > 0


SCENARIO = {
    "topology": {"kind": "switch", "npus": 8, "bandwidth": "50 GB/s", "latency": "500 ns"},
    "hardware": "A100-SXM4-80GB",
    "workload": {"kind": "llm_training",
                 # 1 MiB activations and an 8 MB embedding gradient: bandwidth-bound
                 # collectives, whose ring plans fold exactly
                 "model": {"name": "tiny", "layers": 2, "hidden": 1024, "heads": 4,
                           "ffn": 4096, "vocab": 4096, "seq": 512, "activation": "gelu"},
                 "parallel": {"tp": 2, "dp": 4, "global_batch": 8}},
}


def test_scenarios_fold_by_default_and_not_with_stragglers_or_fold_none() -> None:
    assert scenario_from_dict(SCENARIO).graph.fold is not None
    slow = {**SCENARIO, "stragglers": [{"rank": 3, "speed": 0.5}]}
    assert scenario_from_dict(slow).graph.fold is None
    off = {**SCENARIO, "workload": {**SCENARIO["workload"],
                                    "parallel": {"tp": 2, "dp": 4, "global_batch": 8,
                                                 "fold": "none"}}}
    assert scenario_from_dict(off).graph.fold is None
    bad = {**SCENARIO, "workload": {**SCENARIO["workload"],
                                    "parallel": {"tp": 2, "dp": 4, "global_batch": 8,
                                                 "fold": ["pp"]}}}
    with pytest.raises(Exception, match=r"fold.*tp, dp"):
        scenario_from_dict(bad)
    detailed_cp = {**SCENARIO, "workload": {**SCENARIO["workload"],
                                            "parallel": {"cp": 2, "dp": 4, "global_batch": 8,
                                                         "fold": ["cp"]}}}
    with pytest.raises(Exception, match=r"cp folds with ring_attention: phased"):
        scenario_from_dict(detailed_cp)


def test_auto_folds_context_parallel_peers_only_when_ring_attention_is_phased() -> None:
    ring = topo.ring(8, 50.0, 500.0)
    phased = build_training(MODEL, ParallelConfig(cp=8, ring_attention="phased",
                                                  global_batch=2), 8, ring)
    assert phased.graph.fold is not None and phased.graph.fold.axes == ("cp",)
    detailed = build_training(MODEL, ParallelConfig(cp=8, global_batch=2), 8, ring)
    assert detailed.graph.fold is None


def test_folded_stragglers_are_refused_by_the_engine() -> None:
    topology = topo.switch(8, 50.0, 500.0)
    workload = build_training(MODEL, ParallelConfig(tp=2, dp=4, global_batch=8, fold=("tp",)),
                              8, topology)
    with pytest.raises(Exception, match="straggler breaks the symmetry"):
        simulate(topology, workload.graph, hardware=GPU,
                 options=EngineOptions(speed={1: 0.5}))


def test_the_closed_form_backend_folds_where_equal_cost_routing_breaks_link_symmetry() -> None:
    # pipeline neighbours 4 -> 8 cross nodes and rails: ECMP picks a spine per pair by hash,
    # so the translations do not map links consistently (no exact fold for the contended
    # engine), but every image's route has the same hops, so closed-form times agree
    def build():
        return topo.superpod(8, nvlink_bandwidth=230.0, nic_bandwidth=25.0, latency=1000.0)

    par = dict(cp=4, pp=4, dp=4, global_batch=8, order="tp,cp,ep,pp,dp",
               ring_attention="phased")
    contended = build_training(MODEL, ParallelConfig(fold="auto", **par), 64, build())
    assert contended.graph.fold is None
    closed = build_training(MODEL, ParallelConfig(fold="auto", **par), 64, build(),
                            contention=False)
    fold = closed.graph.fold
    assert fold is not None and set(fold.folded_axes) == {"cp", "dp"} and fold.count == 16
    _, full = run(build, par, "none", analyze)
    folded = analyze(build(), closed.graph, hardware=GPU, options=OPTIONS)
    assert folded.makespan_ns == pytest.approx(full.makespan_ns, rel=1e-12)
    assert {r: s.finished_ns for r, s in folded.ranks.items()} == pytest.approx(
        {r: s.finished_ns for r, s in full.ranks.items()}, rel=1e-12)


def test_an_aligned_fold_cuts_an_axis_at_the_fabric_dimensions() -> None:
    from des.core.fold import Fold

    sizes = {"tp": 1, "cp": 4, "ep": 1, "dp": 64, "pp": 4}
    order = ("tp", "cp", "ep", "dp", "pp")
    fold = Fold.aligned(("cp", "dp"), sizes, order, (8, 128))
    # dp at stride 4: 2 within a node of 8, then 32 across nodes; cp fits in a node
    assert fold.axes == ("cp", "dp", "dp") and fold.sizes == (4, 2, 32)
    assert fold.strides == (1, 4, 8) and fold.folded_axes == ("cp", "dp")
    plain = Fold.of(("cp", "dp"), sizes, order)
    # the same orbits (so the same representatives), different translations
    for rank in range(0, 1024, 37):
        assert fold.representative(rank)[0] == plain.representative(rank)[0]
    assert fold.translate(4, 4) == 0  # the within-node factor wraps inside the node
    assert plain.translate(4, 4) == 8  # the plain axis steps into the next node


def test_the_closed_form_backend_folds_collectives_of_any_symmetry() -> None:
    # the flat-ring dp group of the torus case above: the closed-form backend times it over
    # its whole span, so the aligned fold is exact for it
    def build():
        return topo.torus3d(4, 4, 2, 50.0, 500.0)

    par = dict(tp=2, dp=16, global_batch=16)
    closed = build_training(MODEL, ParallelConfig(fold="auto", **par), 32, build(),
                            contention=False)
    contended = build_training(MODEL, ParallelConfig(fold="auto", **par), 32, build())
    # the closed form also folds tp, whose pairs' routes differ but time the same
    assert closed.graph.fold.folded_axes == ("tp", "dp") and closed.graph.fold.count == 32
    assert contended.graph.fold.folded_axes == ("dp",)
    _, full = run(build, par, "none", analyze)
    folded = analyze(build(), closed.graph, hardware=GPU, options=OPTIONS)
    assert {r: s.finished_ns for r, s in folded.ranks.items()} == pytest.approx(
        {r: s.finished_ns for r, s in full.ranks.items()}, rel=1e-12)


def test_auto_does_not_fold_where_a_small_collective_would_be_inexact() -> None:
    # 64 KiB tensor-parallel all-reduces pick halving-doubling, which has no translation
    # symmetry: the engine would time them in closed form, so the builder does not fold
    tiny = ModelConfig(name="tiny", layers=2, hidden=256, heads=4, kv_heads=4, head_dim=64,
                       ffn=1024, activation="gelu", vocab=64, seq=128)
    pod = topo.superpod(2, nvlink_bandwidth=230.0, nic_bandwidth=25.0, latency=1000.0)
    workload = build_training(tiny, ParallelConfig(tp=4, dp=4, global_batch=8), 16, pod)
    assert workload.graph.fold is None
    closed = build_training(tiny, ParallelConfig(tp=4, dp=4, global_batch=8), 16, pod,
                            contention=False)
    assert closed.graph.fold is not None  # the closed form times spans whole: exact


def test_a_folded_closed_form_run_says_what_it_folded() -> None:
    def build():
        return topo.superpod(4, nvlink_bandwidth=230.0, nic_bandwidth=25.0, latency=1000.0)

    workload = build_training(MODEL, ParallelConfig(tp=8, pp=2, dp=2, global_batch=8), 32,
                              build(), contention=False)
    result = analyze(build(), workload.graph, hardware=GPU, options=OPTIONS)
    folded = result.meta["folded"]
    assert folded["closed_form"] and folded["exact"]
    assert (folded["axes"], folded["copies"], folded["translations"]) == (["tp", "dp"], 16,
                                                                          [8, 2])


@pytest.mark.parametrize(("tp", "pp", "dp", "schedule", "chunks", "sp", "blocking", "nvlink"), [
    (2, 4, 1, "1f1b", 4, True, True, 20.0),
    (2, 4, 1, "1f1b", 4, False, True, 20.0),
    (2, 2, 2, "interleaved", 1, True, False, 200.0),
    (4, 2, 1, "interleaved", 4, False, True, 200.0),
    (4, 2, 2, "1f1b", 4, True, False, 20.0),
    (2, 4, 1, "interleaved", 1, False, False, 20.0),
])
def test_replayed_collectives_time_like_the_unfolded_run(tp, pp, dp, schedule, chunks, sp,
                                                         blocking, nvlink):
    # a tensor-parallel group is one node, so its collectives have their links to themselves and
    # recur through dependencies: the folded run replays them, and members released in the same
    # instant as pipeline traffic must keep the unfolded run's order (a review's open question:
    # 128 such configurations agreed to 1e-12, the rounding of replayed offsets)
    topology = topo.superpod(pp * dp, nvlink_bandwidth=nvlink, nic_bandwidth=25.0,
                             latency=1000.0, gpus_per_node=tp)
    model = dataclasses.replace(MODEL, layers=8)
    par = ParallelConfig(tp=tp, pp=pp, dp=dp, sp=sp, micro_batch=1, global_batch=4 * dp,
                         schedule=schedule, virtual_stages=2 if schedule == "interleaved" else 1,
                         pp_blocking=blocking)
    options = EngineOptions(chunks=chunks, comm_streams=2)
    folded = simulate(topology, build_training(model, par, topology.num_npus, topology).graph,
                      hardware=GPU, options=options)
    full = simulate(topology, build_training(model, dataclasses.replace(par, fold="none"),
                                             topology.num_npus, topology).graph,
                    hardware=GPU, options=options)
    assert folded.meta["folded"]["replayed_collectives"] > 0
    assert folded.makespan_ns == pytest.approx(full.makespan_ns, rel=1e-12)
    assert {r: s.finished_ns for r, s in folded.ranks.items()} == pytest.approx(
        {r: s.finished_ns for r, s in full.ranks.items()}, rel=1e-12)
