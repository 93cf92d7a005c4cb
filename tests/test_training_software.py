"""The training-software switches of ParallelConfig (Megatron-LM's behaviour of 2021-22 against
later releases): dropout kernels, blocking pipeline transfers, the pipeline scatter/gather
optimisation, and data-parallel reduction after the pipeline flush."""

from __future__ import annotations

import dataclasses

import pytest

import topologies as topo
from des.app.config import ConfigError, scenario_from_dict
from des.core.hardware import load_gpu
from des.sim.engine import simulate
from des.sim.options import EngineOptions
from workloads.llm import build_training
from workloads.models import ModelConfig
from workloads.parallel import ParallelConfig

GPU = load_gpu("A100-SXM4-80GB")
MODEL = ModelConfig(name="tiny", layers=4, hidden=1024, heads=8, kv_heads=8, head_dim=128,
                    ffn=4096, activation="gelu", vocab=4096, seq=512)
OPTIONS = EngineOptions(chunks=4, comm_streams=2)


def total_bytes(workload) -> float:
    return sum(n.nbytes for n in workload.graph.all_nodes() if n.kind.value == "compute")


def test_dropout_adds_exactly_its_kernels_bytes():
    par = ParallelConfig(global_batch=2, flash=False)
    plain = build_training(MODEL, par, 1)
    dropped = build_training(MODEL, dataclasses.replace(par, dropout=True), 1)
    e, t, h, s = 2, 512, MODEL.hidden, MODEL.seq
    scores = t * s * MODEL.heads
    # forward: dropout after attention and after the MLP (bf16 in and out plus a 1-byte mask),
    # and on the attention probabilities; the embedding's dropout once per pass
    layer = 2 * (2 * e * t * h + t * h) + (2 * e * scores + scores)
    embed = 2 * e * t * h + t * h
    per_micro = 3 * (MODEL.layers * layer + embed)  # forward + backward (2x bytes)
    assert total_bytes(dropped) - total_bytes(plain) == pytest.approx(2 * per_micro)


def run(par, topology):
    workload = build_training(MODEL, par, topology.num_npus, topology)
    return workload, simulate(topology, workload.graph, hardware=GPU, options=OPTIONS)


def test_blocking_sends_hold_the_sender_until_the_transfer_lands():
    topology = topo.ring(2, 1.0, 500.0)  # a slow link: transfers outlast nothing else
    par = ParallelConfig(pp=2, global_batch=4)
    _, free = run(par, topology)
    _, blocking = run(dataclasses.replace(par, pp_blocking=True), topology)
    assert blocking.makespan_ns > free.makespan_ns
    ops = {(op.rank, op.name): op for op in blocking.ops}
    for micro in range(3):
        sent = ops[(0, f"pp/F.m{micro}.g1")]
        assert ops[(0, f"fwd/m{micro + 1}.g0.begin")].start_ns >= sent.end_ns
    # without blocking, stage 0 runs ahead of its transfers
    ops = {(op.rank, op.name): op for op in free.ops}
    assert ops[(0, "fwd/m1.g0.begin")].start_ns < ops[(0, "pp/F.m0.g1")].end_ns


def test_scatter_gather_sends_a_tensor_parallel_share_and_gathers_it():
    topology = topo.superpod(2, nvlink_bandwidth=230.0, nic_bandwidth=25.0, latency=1000.0)
    par = ParallelConfig(tp=8, pp=2, global_batch=2, fold="none")
    plain = build_training(MODEL, par, 16, topology)
    split = build_training(MODEL, dataclasses.replace(par, pp_scatter_gather=True), 16,
                           topology)
    act = 512 * MODEL.hidden * 2

    def transfers(workload):
        return [n for n in workload.graph.all_nodes() if n.kind.value == "recv"]

    assert {n.nbytes for n in transfers(plain)} == {act}
    assert {n.nbytes for n in transfers(split)} == {act / 8}
    gathers = [n for n in split.graph.all_nodes() if n.name.endswith(".gather")]
    assert len(gathers) == len(transfers(split))
    assert {n.nbytes for n in gathers} == {act}
    # with sequence parallelism the activation is already split: no gather
    sp = build_training(MODEL, dataclasses.replace(par, sp=True, pp_scatter_gather=True), 16,
                        topology)
    assert not [n for n in sp.graph.all_nodes() if n.name.endswith(".gather")]


def test_local_ddp_reduces_each_chunk_after_the_pipeline_flush():
    topology = topo.switch(8, 50.0, 500.0)
    model = dataclasses.replace(MODEL, layers=8)
    par = ParallelConfig(pp=4, dp=2, global_batch=8, schedule="interleaved",
                         virtual_stages=2, dp_overlap=False, grad_bytes=2, fold="none")
    workload = build_training(model, par, 8, topology)
    result = simulate(topology, workload.graph, hardware=GPU, options=OPTIONS)
    for rank in range(8):
        ops = [op for op in result.ops if op.rank == rank]
        passes_end = max(op.end_ns for op in ops if op.category in ("fwd", "bwd"))
        dp_ops = [op for op in ops if op.category == "dp"]
        assert len(dp_ops) == par.virtual_stages  # one reduction per model chunk
        assert min(op.start_ns for op in dp_ops) >= passes_end
    # one replica (ranks 0-3: the pipeline stages of dp coordinate 0) reduces every
    # parameter's gradient once, at grad_bytes per parameter
    reduced = sum(n.nbytes for r in range(4) for n in workload.graph.nodes(r)
                  if n.category == "dp")
    params = model.layers * model.layer_params() + model.embedding_params() \
        + model.vocab * model.hidden
    assert reduced == pytest.approx(params * par.grad_bytes)


def test_overlapped_ddp_reduces_during_the_last_backward():
    topology = topo.switch(8, 50.0, 500.0)
    par = ParallelConfig(pp=2, dp=4, global_batch=8, bucket_bytes=1e5, fold="none")
    _, result = run(par, topology)
    for rank in range(8):
        ops = [op for op in result.ops if op.rank == rank]
        passes_end = max(op.end_ns for op in ops if op.category == "bwd")
        dp_starts = [op.start_ns for op in ops if op.category == "dp"]
        assert dp_starts and min(dp_starts) < passes_end


def test_scenarios_take_the_switches():
    sc = scenario_from_dict({
        "topology": {"kind": "switch", "npus": 4, "bandwidth": "50 GB/s", "latency": "1 us"},
        "hardware": "A100-SXM4-80GB",
        "workload": {"kind": "llm_training",
                     "model": {"name": "t", "layers": 4, "hidden": 256, "heads": 4,
                               "ffn": 1024, "vocab": 64, "seq": 128, "activation": "gelu"},
                     "parallel": {"pp": 2, "dp": 2, "global_batch": 4, "dropout": True,
                                  "pp_blocking": True, "pp_scatter_gather": True,
                                  "dp_overlap": False}},
        "network": {"p2p": "rendezvous"},
    })
    par = sc.workload.par
    assert (par.dropout, par.pp_blocking, par.pp_scatter_gather, par.dp_overlap) == (
        True, True, True, False)
    assert sc.options.p2p_rendezvous
    with pytest.raises(ConfigError, match=r"network\.p2p.*eager, rendezvous"):
        scenario_from_dict({"topology": {"kind": "ring", "npus": 2, "bandwidth": "1 GB/s",
                                         "latency": "1 us"},
                            "workload": {"kind": "collectives", "ops": []},
                            "network": {"p2p": "lazy"}})
