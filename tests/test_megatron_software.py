"""Megatron-LM's training software as switches. The asynchronous tensor-parallel gradient
all-reduce (``tp_grad_overlap``): a column-parallel linear's input-gradient all-reduce runs while
its weight gradient is computed; the split keeps every FLOP and byte, the all-reduce really runs
beside the weight-gradient GEMMs, the step gets no slower, and the search bound stays a lower
bound. Its optimizer step as separate passes (``optimizer_impl``): bytes per parameter in closed
form."""

from __future__ import annotations

import dataclasses
import math

import pytest

import topologies as topo
from des.app.search_bound import lower_bound
from des.app.search_space import grid
from des.core.hardware import load_gpu
from des.sim.backends import get_backend
from des.sim.options import EngineOptions
from workloads import ops
from workloads.llm import build_training, split_column_backward
from workloads.models import ModelConfig
from workloads.op_cost import Shard
from workloads.parallel import ParallelConfig

GPU = load_gpu("A100-SXM4-80GB")
TINY = ModelConfig(name="tiny", layers=4, hidden=2048, heads=16, kv_heads=16, head_dim=128,
                   ffn=8192, activation="gelu", vocab=1024, seq=1024)
SWIGLU = dataclasses.replace(TINY, name="swiglu", activation="swiglu")


@pytest.mark.parametrize("model", [TINY, SWIGLU])
def test_the_split_keeps_every_flop_and_byte_in_megatron_order(model) -> None:
    shard = Shard(tokens=1024, seq=1024, tp=4, sp=False, cp=1, flash=False, dtype_bytes=2,
                  dropout=True)
    for forward in (ops.mlp_forward(model, shard), ops.attention_forward(model, shard)[:2]):
        costs = ops.backward(forward)
        head, wgrad, tail = split_column_backward(costs)
        parts = head + wgrad + tail
        for field in ("flops", "bytes", "weight_bytes"):
            assert math.isclose(sum(getattr(c, field) for c in parts),
                                sum(getattr(c, field) for c in costs), rel_tol=1e-12)
        assert wgrad and all(c.name.endswith(".wgrad") for c in wgrad)
        assert [c.name for c in tail] == [costs[-1].name]  # the block's norm comes last
        assert head[-1].name.endswith(".dgrad")


def test_no_column_linear_leaves_the_ops_whole() -> None:
    costs = ops.backward([c for c in ops.mlp_forward(TINY, Shard(tokens=8, seq=8))
                          if not c.name.startswith("mlp_up")])
    assert split_column_backward(costs) == (costs, [], [])


def run(par: ParallelConfig, backend: str = "simpy"):
    switch = topo.switch(par.world, 100.0, 1000.0)
    workload = build_training(TINY, par, par.world, switch)
    result = get_backend(backend).run(switch, workload.graph, hardware=GPU,
                                      options=EngineOptions(comm_streams=2))
    return workload, result


@pytest.mark.parametrize("recompute", ["none", "full"])
def test_the_all_reduce_runs_beside_the_weight_gradients(recompute: str) -> None:
    base = ParallelConfig(tp=4, micro_batch=2, global_batch=2, recompute=recompute,
                          fold="none")
    plain_w, plain = run(base)
    over_w, over = run(dataclasses.replace(base, tp_grad_overlap=True))
    flops = [sum(n.flops or sum(k[0] for k in n.kernels or ()) for n in w.graph.nodes(0))
             for w in (plain_w, over_w)]
    assert math.isclose(*flops, rel_tol=1e-12)
    assert over.makespan_ns < plain.makespan_ns
    ops0 = [op for op in over.ops if op.rank == 0]
    for layer in range(TINY.layers):
        for part, reduce in (("mlp", "ar2"), ("attn_in", "ar1")):
            (ar,) = [op for op in ops0 if op.name == f"tp/bwd/L{layer}.{reduce}"]
            (w,) = [op for op in ops0 if op.name == f"bwd/L{layer}.{part}_wgrad"]
            (rest,) = [op for op in ops0 if op.name == f"bwd/L{layer}.{part}_rest"]
            assert w.start_ns == ar.start_ns  # both wait for the input gradient only
            assert rest.start_ns == max(ar.end_ns, w.end_ns)


def test_sequence_parallelism_keeps_its_collectives_in_line() -> None:
    par = ParallelConfig(tp=4, sp=True, micro_batch=2, global_batch=2, fold="none")
    _, plain = run(par)
    over_w, over = run(dataclasses.replace(par, tp_grad_overlap=True))
    assert plain.makespan_ns == over.makespan_ns
    assert not [n for n in over_w.graph.nodes(0) if n.name.endswith("_wgrad")]


def test_the_search_bound_stays_below_the_overlapped_step() -> None:
    for tp in (2, 4):
        par = ParallelConfig(tp=tp, dp=4 // tp, micro_batch=1, global_batch=4 // tp * 2,
                             tp_grad_overlap=True)
        _, analytical = run(par, "analytical")
        _, simpy = run(par)
        cands = grid({"tp": [tp], "dp": [4 // tp], "pp": [1], "micro_batch": [1]}, 4,
                     ["tp,cp,ep,pp,dp"])
        chain, bound = lower_bound(cands, TINY, GPU, 100.0, TINY.seq, par.global_batch,
                                   tp_grad_overlap=True)
        assert chain[0] <= analytical.makespan_ns * (1 + 1e-9)
        assert bound[0] <= simpy.makespan_ns * (1 + 1e-9)


@pytest.mark.parametrize(("impl", "grad_bytes", "per_param", "passes"), [
    ("fused", 2, 30, ["grad_norm", "adam"]),
    # zero 2, copy 2 + 4, unscale 4 + 4, norm 4, Adam 4 + 8 + 16, copy back 4 + 2
    ("megatron_fp16", 2, 54, ["zero_grad_buffer", "copy_main_grads", "unscale_check",
                              "grad_norm", "adam", "copy_to_model"]),
    ("megatron_fp16", 4, 50, ["zero_grad_buffer", "unscale_check", "grad_norm", "adam",
                              "copy_to_model"]),  # an fp32 buffer: .float() copies nothing
    ("megatron_bf16", 4, 42, ["zero_grad_buffer", "grad_norm", "adam", "copy_to_model"]),
])
def test_megatrons_optimizer_passes(impl, grad_bytes, per_param, passes) -> None:
    step = ops.optimizer_step(1e9, grad_bytes=grad_bytes, param_bytes=2, impl=impl)
    assert [c.name for c in step] == passes
    assert sum(c.bytes for c in step) == pytest.approx(per_param * 1e9)
    sharded = ops.optimizer_step(1e9, zero_shard=4, grad_bytes=grad_bytes, impl=impl)
    assert sum(c.bytes for c in sharded) == pytest.approx(
        sum(c.bytes for c in ops.optimizer_step(1e9, grad_bytes=grad_bytes, impl=impl)) / 4)


def test_an_unknown_optimizer_is_named() -> None:
    from workloads.op_cost import OpsError
    from workloads.parallel import ParallelError

    with pytest.raises(OpsError, match="megatron_fp16"):
        ops.optimizer_step(1.0, impl="apex")
    with pytest.raises(ParallelError, match="optimizer_impl 'apex'"):
        ParallelConfig(optimizer_impl="apex")


def test_the_step_charges_the_optimizer_it_names() -> None:
    base = ParallelConfig(tp=2, micro_batch=1, global_batch=1, fold="none")
    times = {}
    for impl in ("fused", "megatron_fp16"):
        _, result = run(dataclasses.replace(base, optimizer_impl=impl))
        (opt,) = [op for op in result.ops if op.rank == 0 and op.name == "optimizer/step"]
        times[impl] = opt.end_ns - opt.start_ns
    assert times["megatron_fp16"] > times["fused"]


@pytest.mark.parametrize(("change", "message"), [
    ({"zero_shard": 0}, "zero_shard"), ({"optimizer_states": -1}, "optimizer_states"),
    ({"master_bytes": 0}, "master_bytes 0 needs impl 'fused'"),
])
def test_megatrons_optimizer_checks_its_arguments_as_the_fused_one(change, message) -> None:
    from workloads.op_cost import OpsError

    with pytest.raises(OpsError, match=message):
        ops.optimizer_step(1e9, impl="megatron_fp16", **change)
