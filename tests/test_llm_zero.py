"""Data-parallel collectives of LLM training checked by SIZE against closed forms, for every ZeRO
stage: the des convention is that a collective's ``nbytes`` is the whole buffer (the gathered
output of an all-gather, the input of a reduce-scatter, the buffer of an all-reduce), never
``dp`` times it. Plus the gradient precision (``grad_reduce_dtype``): memory and traffic scale
by the same byte ratio, and the scenario key is validated."""

from __future__ import annotations

import math
from collections import defaultdict

import pytest

from des.app.config import ConfigError, scenario_from_dict
from des.core.schema import SchemaError
from workloads.llm import build_training
from workloads.models import ModelConfig, load_model
from workloads.parallel import Layout, ParallelConfig
from workloads.precision import PrecisionError

TINY = ModelConfig(name="tiny", layers=8, hidden=1024, heads=16, kv_heads=16, head_dim=64,
                   ffn=4096, activation="gelu", vocab=512, seq=256)
DP = 4


def _layer_local(model: ModelConfig, tp: int) -> float:
    """A GPT layer by hand: Q, K, V, O (4 h^2) and the MLP (2 h f) weights, their biases and
    two LayerNorms, split tp ways."""
    h, f = model.hidden, model.ffn
    weights = 4 * h * h + 2 * h * f
    biases = 4 * h + f + h
    norms = 2 * 2 * h
    return (weights + biases + norms) / tp


def _stage_params(model: ModelConfig, tp: int, pp: int, stage: int) -> float:
    params = model.layers // pp * _layer_local(model, tp)
    if stage == 0:
        params += model.vocab * model.hidden / tp
    if stage == pp - 1:
        params += model.vocab * model.hidden / tp  # untied LM head
    return params


def _dp_collectives(workload, rank: int) -> dict[str, list[float]]:
    sizes: dict[str, list[float]] = defaultdict(list)
    for node in workload.graph.nodes(rank):
        if node.collective is not None and node.category == "dp":
            sizes[node.collective.value].append(node.nbytes)
    return sizes


def _build(zero: int, tp: int, pp: int, micro: int = 2, **extra):
    par = ParallelConfig(dp=DP, tp=tp, pp=pp, zero=zero, global_batch=DP * micro, fold="none",
                         **extra)
    return par, build_training(TINY, par, DP * tp * pp)


SHAPES = [(1, 1), (2, 1), (1, 2), (2, 2)]


@pytest.mark.parametrize(("tp", "pp"), SHAPES)
def test_zero0_all_reduces_carry_every_gradient_once(tp, pp):
    par, workload = _build(0, tp, pp)
    for stage in range(pp):
        rank = Layout(par).rank(pp=stage)
        sizes = _dp_collectives(workload, rank)
        assert set(sizes) == {"all_reduce"}
        # the buckets add up to the stage's gradients at grad_bytes (fp32 by default)
        assert math.fsum(sizes["all_reduce"]) == pytest.approx(
            _stage_params(TINY, tp, pp, stage) * 4)
        # every bucket but the last reaches bucket_bytes before it is sent
        assert all(s >= par.bucket_bytes for s in sizes["all_reduce"][:-1])


@pytest.mark.parametrize("zero", [1, 2])
@pytest.mark.parametrize(("tp", "pp"), SHAPES)
def test_zero12_reduce_scatter_gradients_then_gather_the_parameters(zero, tp, pp):
    par, workload = _build(zero, tp, pp)
    for stage in range(pp):
        rank = Layout(par).rank(pp=stage)
        sizes = _dp_collectives(workload, rank)
        params = _stage_params(TINY, tp, pp, stage)
        assert set(sizes) == {"reduce_scatter", "all_gather"}
        assert math.fsum(sizes["reduce_scatter"]) == pytest.approx(params * 4)
        # one all-gather of the updated bf16 parameters: the whole stage, not dp times it
        assert sizes["all_gather"] == [pytest.approx(params * 2)]


@pytest.mark.parametrize(("tp", "pp"), SHAPES)
def test_zero3_gathers_each_layer_whole_and_reduce_scatters_its_gradients(tp, pp):
    micro = 2
    par, workload = _build(3, tp, pp, micro=micro)
    layer = _layer_local(TINY, tp)
    embed = TINY.vocab * TINY.hidden / tp
    for stage in range(pp):
        rank = Layout(par).rank(pp=stage)
        colls = [(n.name, n.nbytes) for n in workload.graph.nodes(rank)
                 if n.collective is not None and n.category == "dp"]
        gathers = [b for n, b in colls if "/L" in n and n.endswith(".params")]
        grads = [b for n, b in colls if "/L" in n and n.endswith(".grads")]
        per_stage = TINY.layers // pp
        assert len(gathers) == 2 * per_stage * micro and len(grads) == per_stage * micro
        # Llama-2-7B on 8 GPUs: 405 MB per layer, not 8 x 405 MB
        assert gathers == [pytest.approx(layer * 2)] * len(gathers)
        assert grads == [pytest.approx(layer * 4)] * len(grads)
        # embedding and LM head: gathered before forward and backward, reduced after backward
        edges = [(n, b) for n, b in colls if "/L" not in n]
        expected = (stage == 0) + (stage == pp - 1)
        assert len(edges) == 3 * expected * micro
        assert all(b == pytest.approx(embed * (2 if n.endswith(".params") else 4))
                   for n, b in edges)
        # conservation: each micro-batch reduce-scatters every parameter's gradient once
        reduced = math.fsum(b for n, b in colls if n.endswith(".grads"))
        assert reduced == pytest.approx(micro * _stage_params(TINY, tp, pp, stage) * 4)


def test_zero3_llama2_7b_gathers_one_layer_not_dp_layers():
    model = load_model("llama2-7b")
    par = ParallelConfig(dp=8, zero=3, global_batch=8, seq=256, fold="none")
    workload = build_training(model, par, 8)
    gathers = [n.nbytes for n in workload.graph.nodes(0)
               if n.collective is not None and n.name.endswith(".params") and "/L" in n.name]
    assert gathers == [model.layer_params() * 2] * 2 * model.layers
    assert gathers[0] == 404_766_720  # 202,383,360 parameters x 2 bytes


# -- gradient precision ---------------------------------------------------------------------------


@pytest.mark.parametrize("zero", [0, 1, 2, 3])
def test_gradient_precision_scales_reduction_bytes_and_memory_alike(zero):
    par32, wl32 = _build(zero, 2, 1, grad_reduce_dtype="fp32")
    par16, wl16 = _build(zero, 2, 1, grad_reduce_dtype="bf16")
    assert (par32.grad_bytes, par16.grad_bytes) == (4, 2)

    def reduced(workload):
        return math.fsum(n.nbytes for n in workload.graph.nodes(0)
                         if n.collective is not None and n.category == "dp"
                         and n.collective.value in ("all_reduce", "reduce_scatter"))

    assert reduced(wl32) == pytest.approx(2 * reduced(wl16))
    assert wl32.memory[0].gradients == pytest.approx(2 * wl16.memory[0].gradients)
    # weights, optimizer state and parameter gathers do not depend on the gradient precision
    assert wl32.memory[0].weights == wl16.memory[0].weights
    assert wl32.memory[0].optimizer == wl16.memory[0].optimizer
    # the gradient memory is the reduced buffer: stage params x grad_bytes (/dp from ZeRO-2)
    params = _stage_params(TINY, 2, 1, 0)
    assert wl32.memory[0].gradients == pytest.approx(params * 4 / (DP if zero >= 2 else 1))


def test_default_gradients_are_fp32_in_memory_too():
    """bf16 weights with fp32 gradients and Adam: 2 + 4 + 12 = 18 bytes per parameter
    (NVIDIA Megatron Core, Distributed Optimizer table), what the 7B data-parallel scenario
    sends."""
    _, workload = _build(0, 1, 1)
    memory = workload.memory[0]
    params = _stage_params(TINY, 1, 1, 0)
    assert (memory.weights + memory.gradients + memory.optimizer) == pytest.approx(18 * params)


def test_grad_precision_key_is_validated():
    with pytest.raises(PrecisionError, match=r"grad_reduce_dtype.*expected one of fp32, bf16"):
        ParallelConfig(grad_reduce_dtype="fp8")
    with pytest.raises(SchemaError, match="disagrees"):
        ParallelConfig(grad_reduce_dtype="bf16", grad_bytes=4)
    assert ParallelConfig(grad_reduce_dtype="fp16", grad_bytes=2).grad_bytes == 2


SCENARIO = {"topology": {"kind": "switch", "npus": 8, "bandwidth": "300 GB/s"},
            "hardware": "A100-SXM4-80GB",
            "workload": {"kind": "llm_training", "model": "llama2-7b",
                         "parallel": {"dp": 8, "global_batch": 8, "seq": 128}}}


@pytest.mark.parametrize(("key", "value", "message"), [
    ("grad_reduce_dtype", "fp9", r"workload\.parallel\.grad_reduce_dtype: unknown number format "
                                 r"'fp9'.*fp32, bf16, fp16"),
    ("grad_reduce_dtype", 4, r"workload\.parallel\.grad_reduce_dtype.*fp32, bf16, fp16"),
])
def test_scenario_precision_keys_name_the_allowed_formats(key, value, message):
    doc = {**SCENARIO, "workload": {**SCENARIO["workload"], "parallel": {
        "dp": 8, "global_batch": 8, key: value}}}
    with pytest.raises(ConfigError, match=message):
        scenario_from_dict(doc)


def test_scenario_kv_cache_dtype_is_validated():
    doc = {"topology": {"kind": "switch", "npus": 2, "bandwidth": "300 GB/s"},
           "hardware": "A100-SXM4-80GB",
           "workload": {"kind": "llm_inference", "model": "llama2-7b",
                        "parallel": {"tp": 2, "kv_cache_dtype": "int4"}}}
    with pytest.raises(ConfigError, match=r"kv_cache_dtype: unknown number format 'int4'.*fp8"):
        scenario_from_dict(doc)
