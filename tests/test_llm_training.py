"""LLM training graphs: schedules, pipeline bubbles, FLOP accounting, data-parallel overlap,
folding, ZeRO, context and expert parallelism, memory, and clear errors."""

from __future__ import annotations

import dataclasses
from collections import Counter

import pytest

import topologies as topo
from des.app.config import ConfigError, scenario_from_dict
from des.app.llm_report import training_report
from des.core.hardware import load_gpu
from des.sim.engine import simulate
from des.sim.options import EngineOptions
from workloads.llm import build_training
from workloads.models import ModelConfig, load_model
from workloads.parallel import ParallelConfig, ParallelError, pipeline_schedule

GPU = load_gpu("A100-SXM4-80GB")
TINY = ModelConfig(name="tiny", layers=8, hidden=1024, heads=16, kv_heads=16, head_dim=64,
                   ffn=4096, activation="gelu", vocab=8, seq=1024)
FAST = dict(bandwidth=1e6, latency=0.0)  # a network that costs nothing


def run(model, par, topology, **opts):
    workload = build_training(model, par, topology.num_npus)
    result = simulate(topology, workload.graph, hardware=GPU,
                      options=EngineOptions(comm_streams=2, **opts))
    return workload, result


@pytest.mark.parametrize(("schedule", "v"), [("gpipe", 1), ("1f1b", 1), ("interleaved", 2),
                                             ("interleaved", 3)])
@pytest.mark.parametrize("pp", [1, 2, 4])
def test_every_pass_runs_once_and_forward_precedes_backward(schedule, v, pp):
    m = 8 if schedule != "interleaved" else 2 * pp
    for stage in range(pp):
        passes = pipeline_schedule(schedule, pp, stage, m, v)
        assert Counter(passes) == Counter([(k, c, i) for k in "FB" for c in range(v)
                                           for i in range(m)])
        for c in range(v):
            for i in range(m):
                assert passes.index(("F", c, i)) < passes.index(("B", c, i))


def test_1f1b_warmup_holds_pp_minus_stage_minus_one_forwards():
    for stage in range(4):
        passes = pipeline_schedule("1f1b", 4, stage, 8)
        first_b = next(i for i, p in enumerate(passes) if p[0] == "B")
        assert first_b == (4 - stage - 1) + 1


@pytest.mark.parametrize("schedule", ["gpipe", "1f1b"])
@pytest.mark.parametrize(("pp", "m"), [(2, 4), (4, 8), (4, 4)])
def test_pipeline_bubble_fraction_on_a_compute_only_case(schedule, pp, m):
    par = ParallelConfig(pp=pp, global_batch=m, schedule=schedule)
    _, result = run(TINY, par, topo.fully_connected(pp, **FAST))
    # one stage's busy time up to its last backward, against the iteration up to then
    ends = [op.end_ns for op in result.ops if op.name.startswith("bwd/")]
    span = max(ends)
    busy = sum(op.end_ns - op.start_ns for op in result.ops
               if op.rank == 0 and op.kind == "compute" and not op.name.startswith("optimizer"))
    bubble = 1 - busy / span
    assert bubble == pytest.approx((pp - 1) / (m + pp - 1), abs=0.02)


def test_interleaving_shrinks_the_bubble():
    base = dict(pp=4, global_batch=8)
    _, plain = run(TINY, ParallelConfig(**base), topo.fully_connected(4, **FAST))
    _, inter = run(TINY, ParallelConfig(**base, schedule="interleaved", virtual_stages=2),
                   topo.fully_connected(4, **FAST))
    assert inter.makespan_ns < plain.makespan_ns


def test_graph_flops_follow_the_six_n_d_rule():
    model = load_model("llama2-7b")
    par = ParallelConfig(tp=2, pp=2, global_batch=4, seq=2048)
    workload = build_training(model, par, 4)
    total = sum(n.flops for n in workload.graph.all_nodes())
    six_nd = 6 * model.params() * workload.tokens
    attention = 6 * model.layers * model.heads * model.head_dim * 2048 * workload.tokens
    # GEMMs of every parameter (embedding lookups excepted) plus causal attention
    assert 0.95 < total / (six_nd + attention) < 1.05


def test_full_recompute_adds_one_forward_and_costs_time():
    par = ParallelConfig(global_batch=2)
    none = build_training(TINY, par, 1)
    full = build_training(TINY, dataclasses.replace(par, recompute="full"), 1)
    fwd = sum(n.flops for n in none.graph.all_nodes() if n.name.startswith("fwd/L"))
    extra = sum(n.flops for n in full.graph.all_nodes() if n.name.startswith("recompute/"))
    assert extra == pytest.approx(fwd)
    t = {}
    for mode in ("none", "selective", "full"):
        _, r = run(TINY, dataclasses.replace(par, recompute=mode), topo.Topology("one", 1))
        t[mode] = r.makespan_ns
    assert t["none"] < t["selective"] < t["full"]


def test_gradient_buckets_overlap_the_backward_pass():
    # a regime where a layer's backward outlasts its gradient all-reduce
    topology = topo.switch(4, 200.0, 1000.0)
    small = ParallelConfig(dp=4, micro_batch=4, global_batch=16, bucket_bytes=4e6)
    huge = dataclasses.replace(small, bucket_bytes=1e15)
    exposed = {}
    for name, par in (("small", small), ("huge", huge)):
        workload, result = run(TINY, par, topology)
        exposed[name] = training_report(result, workload, GPU)["breakdown_s"]["exposed_dp"]
    dp_ops = [op for op in result.ops if op.rank == 0 and op.name.startswith("dp/")]
    total = sum(op.end_ns - op.start_ns for op in dp_ops) * 1e-9
    assert exposed["huge"] == pytest.approx(total, rel=0.01)  # one bucket after the backward
    assert exposed["small"] < 0.6 * exposed["huge"]


def test_folding_tensor_parallel_peers_does_not_change_the_answer():
    model = dataclasses.replace(load_model("gpt3-175b"), layers=4)
    topology = topo.superpod(2, nvlink_bandwidth=230.0, nic_bandwidth=25.0, latency=1000.0)
    base = ParallelConfig(tp=8, pp=2, sp=True, recompute="selective", global_batch=4)
    _, full = run(model, base, topology)
    folded_wl, folded = run(model, dataclasses.replace(base, fold_tp=True), topology)
    assert folded.makespan_ns == pytest.approx(full.makespan_ns, rel=1e-9)
    assert len(folded_wl.simulated_ranks) == 2


def test_zero_stages_place_their_collectives():
    names = {}
    for zero in (0, 1, 3):
        par = ParallelConfig(dp=2, zero=zero, global_batch=2)
        graph = build_training(TINY, par, 2).graph
        names[zero] = Counter((n.collective.value, n.name.split("/")[0])
                              for n in graph.nodes(0) if n.collective)
    assert names[0][("all_reduce", "dp")] >= 1 and ("reduce_scatter", "dp") not in names[0]
    assert names[1][("reduce_scatter", "dp")] >= 1 and names[1][("all_gather", "dp")] == 1
    # ZeRO-3: parameters gathered before every layer's forward and backward, and the
    # embedding's and LM head's before theirs; each one's gradients reduce-scattered
    assert names[3][("all_gather", "dp")] == 2 * TINY.layers + 4
    assert names[3][("reduce_scatter", "dp")] == TINY.layers + 2


def test_context_parallel_ring_and_expert_all_to_alls():
    par = ParallelConfig(cp=4, global_batch=1)
    graph = build_training(TINY, par, 4).graph
    graph.validate()  # every ring send has its receive
    kv = [n for n in graph.nodes(0) if n.name.startswith("cp/") and n.kind.value == "send"]
    assert len(kv) == 2 * 3 * TINY.layers  # forward and backward, cp - 1 exchanges per layer
    moe = ModelConfig(name="moe", layers=2, hidden=512, heads=8, kv_heads=8, head_dim=64,
                      ffn=2048, activation="swiglu", vocab=8, seq=512, experts=4, top_k=2,
                      norm="rmsnorm")
    graph = build_training(moe, ParallelConfig(dp=4, ep=4, global_batch=4), 4).graph
    graph.validate()
    a2a = [n for n in graph.nodes(0) if n.collective and n.collective.value == "all_to_all"]
    assert len(a2a) == 2 * 2 * moe.layers  # dispatch + combine, forward + backward
    assert all(len(n.group) == 4 for n in a2a)


def test_memory_report_flags_out_of_memory():
    model = load_model("gpt3-175b")
    par = ParallelConfig(dp=8, global_batch=8, seq=2048)
    workload = build_training(model, par, 8)
    assert workload.memory[0].total > GPU.hbm_capacity


@pytest.mark.parametrize(("par", "npus", "message"), [
    (dict(pp=3), 3, "do not split into pp x virtual_stages"),
    (dict(tp=3), 3, "do not split over tp"),
    (dict(tp=2), 4, "but the topology has 4 NPUs"),
    (dict(ep=2, dp=2, global_batch=2), 2, "has no experts"),
    (dict(cp=3), 3, "does not split over cp"),
])
def test_strategies_that_do_not_fit_are_explained(par, npus, message):
    with pytest.raises(ParallelError, match=message):
        build_training(TINY, ParallelConfig(**par), npus)


@pytest.mark.parametrize(("par", "message"), [
    (dict(dp=2, global_batch=3), "multiple of micro_batch x dp"),
    (dict(dp=3, ep=2), "must divide dp"),
    (dict(sp=True), "needs tp > 1"),
    (dict(schedule="zigzag"), "expected one of gpipe"),
    (dict(virtual_stages=2), "needs schedule: interleaved"),
    (dict(pp=2, global_batch=3, schedule="interleaved", virtual_stages=2), "multiple of pp"),
])
def test_invalid_strategies(par, message):
    with pytest.raises(ParallelError, match=message):
        ParallelConfig(**par)


def test_scenario_llm_errors_name_the_key():
    doc = {"topology": {"kind": "switch", "npus": 8, "bandwidth": "300 GB/s"},
           "hardware": "A100-SXM4-80GB",
           "workload": {"kind": "llm_training", "model": "llama2-7b",
                        "parallel": {"dp": 8, "global_batch": 8, "pipeline": 2}}}
    with pytest.raises(ConfigError, match=r"workload\.parallel\.pipeline"):
        scenario_from_dict(doc)
    doc["workload"]["parallel"] = {"dp": 4, "global_batch": 8}
    with pytest.raises(ConfigError, match="topology has 8 NPUs"):
        scenario_from_dict(doc)
    doc["workload"]["model"] = "llama9"
    with pytest.raises(ConfigError, match=r"workload\.model"):
        scenario_from_dict(doc)
