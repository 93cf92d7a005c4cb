"""Node categories: builders label every node, records carry the label, and the LLM report
groups time by it, so renaming a node cannot move its time."""

from __future__ import annotations

import pytest

import topologies as topo
from des.app.llm_report import breakdown, inference_report, training_report
from des.core.hardware import load_gpu
from des.core.results import OpRecord, Result, rank_stats
from des.sim.analytical import analyze
from des.sim.engine import simulate
from workloads.gemm import build_gemm
from workloads.inference import InferenceConfig, build_inference
from workloads.llm import build_training
from workloads.microbench import data_parallel_step
from workloads.models import ModelConfig
from workloads.parallel import ParallelConfig

GPU = load_gpu("A100-SXM4-80GB")
TINY = ModelConfig(name="tiny", layers=4, hidden=256, heads=8, kv_heads=8, head_dim=32,
                   ffn=1024, activation="gelu", vocab=64, seq=256)
PAR = ParallelConfig(dp=2, tp=2, pp=2, micro_batch=1, global_batch=4, sp=True,
                     recompute="selective")
TRAINING = {"fwd", "bwd", "recompute", "optimizer", "tp", "cp", "ep", "pp", "dp"}


def test_training_nodes_all_have_a_category():
    workload = build_training(TINY, PAR, PAR.world)
    seen = {node.category for node in workload.graph.all_nodes()}
    assert seen <= TRAINING and {"fwd", "bwd", "recompute", "optimizer", "tp", "pp",
                                 "dp"} <= seen


def test_context_and_expert_parallel_nodes_have_their_category():
    moe = ModelConfig(name="moe", layers=2, hidden=256, heads=8, kv_heads=8, head_dim=32,
                      ffn=1024, activation="gelu", vocab=64, seq=256, experts=4, top_k=2)
    par = ParallelConfig(cp=2, ep=2, dp=2, global_batch=2)
    seen = {node.category for node in build_training(moe, par, par.world).graph.all_nodes()}
    assert {"cp", "ep"} <= seen <= TRAINING


def test_inference_gemm_and_microbench_nodes_have_a_category():
    cfg = InferenceConfig(tp=2, pp=2, batch=1, prompt=16, generate=2)
    inference = build_inference(TINY, cfg, cfg.world)
    assert {n.category for n in inference.graph.all_nodes()} == {"prefill", "decode", "tp",
                                                                 "pp"}
    gemm = build_gemm(64, 64, 64, tp=2, shard="k", npus=2)
    assert {n.category for n in gemm.graph.all_nodes()} == {"gemm", "tp"}
    step = data_parallel_step(2, layers=2, params_per_layer=1e3, tokens_per_rank=8)
    assert {n.category for n in step.all_nodes()} == {"fwd", "bwd", "dp", "optimizer"}


@pytest.mark.parametrize("run", [simulate, analyze])
def test_records_carry_the_category_into_the_result_and_json(run):
    workload = build_training(TINY, PAR, PAR.world)
    result = run(topo.switch(PAR.world, 100.0, 500.0), workload.graph, hardware=GPU)
    by_node = {(n.rank, n.id): n.category for n in workload.graph.all_nodes()}
    assert all(op.category == by_node[(op.rank, op.node)] for op in result.ops)
    assert all("category" in op for op in result.to_dict()["ops"])


def test_renaming_nodes_does_not_move_their_time():
    workload = build_training(TINY, PAR, PAR.world)
    topology = topo.switch(PAR.world, 100.0, 500.0)
    before = training_report(simulate(topology, workload.graph, hardware=GPU), workload, GPU)
    for node in workload.graph.all_nodes():
        node.name = f"renamed{node.id}"
    after = training_report(simulate(topology, workload.graph, hardware=GPU), workload, GPU)
    assert after["breakdown_s"] == before["breakdown_s"]
    assert before["breakdown_s"]["compute_bwd"] > 0 and "compute_other" not in before[
        "breakdown_s"]


def test_inference_breakdown_reads_categories():
    cfg = InferenceConfig(tp=2, batch=1, prompt=16, generate=2)
    workload = build_inference(TINY, cfg, cfg.world)
    result = simulate(topo.switch(2, 100.0, 500.0), workload.graph, hardware=GPU)
    parts = inference_report(result, workload, GPU)["breakdown_s"]
    assert parts["compute_prefill"] > 0 and parts["compute_decode"] > 0


def test_records_without_a_category_count_as_other_compute():
    ops = [OpRecord(0, 0, "fwd/looks-like-forward", "compute", "compute", 0.0, 10.0)]
    result = Result(10.0, rank_stats(ops, 1), [], [], ops)
    parts = breakdown(result, 0)
    assert parts["compute_other"] == pytest.approx(1e-8) and "compute_fwd" not in parts
