"""LLM inference workloads: the prefill/decode graph, its timing properties, memory, the report,
the scenario kind, and ``des model import``."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import yaml

import topologies as topo
from des.app.cli import EXIT_BAD_INPUT, EXIT_OK, main
from des.app.config import ConfigError, scenario_from_dict
from des.app.llm_report import inference_report
from des.core.graph import CollectiveType, NodeKind
from des.core.hardware import GpuSpec, compute_time_ns
from des.sim.engine import simulate
from workloads.hf_config import from_hf_config
from workloads.inference import (
    InferenceConfig,
    InferenceWorkload,
    build_inference,
    decode_context,
    inference_memory,
)
from workloads.memory import kv_cache_bytes
from workloads.models import ModelConfig, load_model, model_from_dict
from workloads.parallel import ParallelError

BW, EFF_M = 3350.0, 0.8  # bytes/ns (3.35 TB/s) and the memory efficiency of every op class

#: A GPU without launch overheads and one memory efficiency for every op class, so that a
#: memory-bound step is exactly its bytes over BW x EFF_M.
GPU = GpuSpec(name="test-gpu", peak_flops={"bf16": 989.4e3}, hbm_bandwidth=BW,
              hbm_capacity=80 * 2**30, efficiency={"default": (0.5, EFF_M)},
              launch_overhead_ns=0.0)

TINY = ModelConfig(name="tiny", layers=4, hidden=1024, heads=16, kv_heads=16, head_dim=64,
                   ffn=4096, activation="swiglu", vocab=32000, seq=4096, norm="rmsnorm")


def fast_switch(n: int) -> topo.Topology:
    """A switch so fast that communication is negligible (1 PB/s, no latency)."""
    return topo.switch(max(n, 2), 1e6, 0.0)


def run(model: ModelConfig, cfg: InferenceConfig, topology: topo.Topology | None = None,
        hardware: GpuSpec = GPU) -> tuple[InferenceWorkload, dict]:
    work = build_inference(model, cfg, cfg.world)
    result = simulate(topology or fast_switch(cfg.world), work.graph, hardware=hardware)
    return work, inference_report(result, work, hardware) | {"_result": result}


# ---------------------------------------------------------------------- graph structure
def test_node_names_and_counts() -> None:
    cfg = InferenceConfig(tp=2, pp=2, batch=2, prompt=64, generate=3)
    work = build_inference(TINY, cfg, 4)
    work.graph.validate(num_npus=4)
    prefixes = ("prefill/", "decode/t", "tp/prefill/", "tp/decode/t", "pp/prefill/",
                "pp/decode/t")
    for node in work.graph.all_nodes():
        assert node.name.startswith(prefixes), node.name
    assert work.simulated_ranks == [0, 1, 2, 3]
    assert work.last_stage_rank == 2
    rank0 = list(work.graph.nodes(0))
    # per pass, stage 0 runs 2 of the 4 layers: 2 all-reduces each, 4 passes
    ars = [n for n in rank0 if n.collective is CollectiveType.ALL_REDUCE]
    assert len(ars) == 2 * 2 * 4
    assert {n.nbytes for n in ars} == {2 * 64 * 1024 * 2, 2 * 1 * 1024 * 2}
    # activations to stage 1 once per pass; the sampled tokens come back 3 times (not after
    # the last step), batch x 4 bytes each
    sends = [n for n in rank0 if n.kind is NodeKind.SEND]
    recvs = [n for n in rank0 if n.kind is NodeKind.RECV]
    assert [n.peer for n in sends] == [2] * 4
    assert [(n.peer, n.nbytes) for n in recvs] == [(2, 8.0)] * 3
    last = list(work.graph.nodes(2))
    logits = [n for n in last if n.collective is CollectiveType.ALL_GATHER]
    assert len(logits) == 4 and {n.nbytes for n in logits} == {2 * 32000 * 2}
    assert [n.nbytes for n in last if n.kind is NodeKind.SEND] == [8.0] * 3
    # the LM head runs on the newest position of each sequence only (batch rows)
    heads = [n for n in last if n.name.endswith("/head")]
    assert len(heads) == 4 and len({n.flops for n in heads}) == 1


def test_decode_attends_the_growing_cache() -> None:
    cfg = InferenceConfig(batch=2, prompt=100, generate=5)
    work = build_inference(TINY, cfg, 1)
    attn = [n for n in work.graph.nodes(0) if n.name.endswith("L0.attn")]
    assert len(attn) == 1 + 5
    core = [next(k for k in n.kernels if k[2] == "attention") for n in attn]
    # decode step i: batch x (prompt + i + 1) cached keys per head: 4 * keys * heads * d FLOPs
    for i, kernel in enumerate(core[1:]):
        keys = decode_context(cfg, i)
        assert keys == 100 + i + 1
        assert kernel[0] == pytest.approx(4.0 * 2 * keys * 16 * 64)
    assert [k[1] for k in core[1:]] == sorted(k[1] for k in core[1:])


def test_fold_tp_keeps_one_rank_per_group_and_the_same_times() -> None:
    cfg = InferenceConfig(tp=4, batch=4, prompt=128, generate=4)
    switch = topo.switch(4, 450.0, 700.0)
    _, full = run(TINY, cfg, switch)
    folded_cfg = InferenceConfig(tp=4, batch=4, prompt=128, generate=4, fold_tp=True)
    work, folded = run(TINY, folded_cfg, switch)
    assert work.simulated_ranks == [0]
    assert folded["ttft_s"] == pytest.approx(full["ttft_s"], rel=0.01)
    assert folded["tpot_s"] == pytest.approx(full["tpot_s"], rel=0.01)


# ---------------------------------------------------------------------- timing properties
def test_decode_steps_slow_down_as_the_cache_grows() -> None:
    cfg = InferenceConfig(batch=8, prompt=2048, generate=12)
    _, rep = run(TINY, cfg)
    steps = rep["decode_step_s"]
    assert len(steps) == 12
    assert all(b > a for a, b in itertools.pairwise(steps))
    assert rep["tpot_s"] == pytest.approx(sum(steps) / 12)


def test_memory_bound_decode_step_is_weights_plus_cache_over_bandwidth() -> None:
    """Llama-2-7B, batch 1, one GPU: each step reads every weight but the embedding table once
    and the KV cache of its context; with no launch overheads it takes those bytes over the
    achievable HBM bandwidth (activations add well under 1%)."""
    model = load_model("llama2-7b")
    cfg = InferenceConfig(batch=1, prompt=3000, generate=4)
    _, rep = run(model, cfg)
    weights = 2.0 * (model.params() - model.embedding_params())
    for i, step in enumerate(rep["decode_step_s"]):
        kv = kv_cache_bytes(model, batch=1, context=decode_context(cfg, i))
        assert step == pytest.approx((weights + kv) / (BW * EFF_M) * 1e-9, rel=0.01)


def test_ttft_is_the_prefill_chain() -> None:
    """One GPU: TTFT is the sum of the prefill nodes' roofline times, and decode starts then."""
    cfg = InferenceConfig(batch=2, prompt=512, generate=3)
    work, rep = run(TINY, cfg)
    prefill = [n for n in work.graph.nodes(0) if n.name.startswith("prefill/")]
    expected = sum(compute_time_ns(GPU, f, b, c) for n in prefill for f, b, c in n.kernels)
    assert rep["ttft_s"] == pytest.approx(expected * 1e-9, rel=1e-9)
    first_decode = min(op.start_ns for op in rep["_result"].ops if op.name.startswith("decode/"))
    assert first_decode == pytest.approx(expected)
    assert rep["e2e_s"] == pytest.approx(rep["ttft_s"] + 3 * rep["tpot_s"])


def test_ttft_is_read_on_the_last_pipeline_stage() -> None:
    cfg = InferenceConfig(pp=2, batch=2, prompt=256, generate=3)
    work, rep = run(TINY, cfg, topo.switch(2, 50.0, 1000.0))
    ends = {(op.rank, op.node): op.end_ns for op in rep["_result"].ops}
    stage0 = ends[(0, work.prefill_end[0])]
    assert rep["timing_rank"] == 1
    assert rep["ttft_s"] * 1e9 == pytest.approx(ends[(1, work.prefill_end[1])])
    assert rep["ttft_s"] * 1e9 > stage0
    # each decode step on stage 0 waits for the sampled tokens of the step before
    decode0 = [op for op in rep["_result"].ops if op.rank == 0 and op.kind == "recv"]
    assert len(decode0) == 3
    assert rep["e2e_s"] * 1e9 == pytest.approx(ends[(1, work.decode_end[1][-1])])


def test_tensor_parallel_halves_a_memory_bound_step() -> None:
    """On a (nearly) free network, tp=2 splits every weight and the KV cache: a batch-1 decode
    step takes about half as long (norms, residuals and the embedding rows are not split)."""
    cfg1 = InferenceConfig(batch=1, prompt=1024, generate=3)
    cfg2 = InferenceConfig(tp=2, batch=1, prompt=1024, generate=3)
    _, one = run(TINY, cfg1)
    _, two = run(TINY, cfg2)
    assert two["tpot_s"] == pytest.approx(one["tpot_s"] / 2, rel=0.01)
    # on a slow network the all-reduces add to it
    _, slow = run(TINY, cfg2, topo.switch(2, 1.0, 5000.0))
    assert slow["tpot_s"] > two["tpot_s"] + 4 * 2 * 5000e-9
    assert slow["breakdown_s"]["exposed_tp"] > 0


def test_batching_raises_throughput_while_memory_bound() -> None:
    model = load_model("llama2-7b")
    reps = {b: run(model, InferenceConfig(batch=b, prompt=256, generate=3))[1]
            for b in (1, 8)}
    assert reps[8]["tpot_s"] < 1.1 * reps[1]["tpot_s"]
    assert reps[8]["output_tokens_per_s"] > 7 * reps[1]["output_tokens_per_s"]
    assert reps[8]["total_tokens_per_s"] > reps[1]["total_tokens_per_s"]
    rep = reps[8]
    decode = rep["e2e_s"] - rep["ttft_s"]
    assert rep["output_tokens_per_s"] == pytest.approx(8 * 3 / decode)
    assert rep["total_tokens_per_s"] == pytest.approx(8 * (256 + 3) / rep["e2e_s"])


# ---------------------------------------------------------------------- memory
def test_memory_weights_and_kv_cache() -> None:
    model = load_model("llama2-70b")
    cfg = InferenceConfig(tp=8, batch=8, prompt=2048, generate=256)
    mem = inference_memory(model, cfg, 0)
    assert mem.kv_cache == kv_cache_bytes(model, batch=8, context=2304, tp=8)
    assert mem.kv_cache == 2 * 80 * 1 * 128 * 2304 * 8 * 2
    assert mem.weights == pytest.approx(2 * model.params() / 8, rel=1e-6)
    assert mem.gradients == mem.optimizer == 0
    staged = InferenceConfig(tp=4, pp=2, batch=8, prompt=2048, generate=256)
    first, last = inference_memory(model, staged, 0), inference_memory(model, staged, 1)
    assert first.kv_cache == last.kv_cache == kv_cache_bytes(model, batch=8, context=2304,
                                                             tp=4) / 2
    assert first.weights + last.weights == pytest.approx(2 * model.params() / 4, rel=1e-6)


def test_out_of_memory_when_the_kv_cache_outgrows_the_gpu() -> None:
    model = load_model("llama2-7b")
    _, fits = run(model, InferenceConfig(batch=16, prompt=4096, generate=2))
    _, oom = run(model, InferenceConfig(batch=64, prompt=4096, generate=2))
    assert fits["out_of_memory"] is False
    assert oom["out_of_memory"] is True
    parts = oom["memory_breakdown_bytes"]
    assert parts["kv_cache"] > GPU.hbm_capacity > parts["weights"] + parts["activations"]
    assert oom["memory_peak_bytes"] == pytest.approx(sum(parts.values()))


# ---------------------------------------------------------------------- errors
def test_errors() -> None:
    with pytest.raises(ParallelError, match="heads"):
        build_inference(TINY, InferenceConfig(tp=3), 3)
    with pytest.raises(ParallelError, match="topology has 8 NPUs"):
        build_inference(TINY, InferenceConfig(tp=2, pp=2), 8)
    with pytest.raises(ParallelError, match="layers"):
        build_inference(TINY, InferenceConfig(pp=3), 3)
    with pytest.raises(ParallelError, match=r"parallel\.batch"):
        InferenceConfig(batch=0)
    with pytest.raises(ParallelError, match=r"parallel\.flash"):
        InferenceConfig(flash=1)  # type: ignore[arg-type]
    with pytest.raises(ParallelError, match="outside"):
        decode_context(InferenceConfig(generate=2), 2)


# ---------------------------------------------------------------------- scenario kind
def scenario(**workload: object) -> dict:
    return {"name": "inf", "topology": {"kind": "switch", "npus": 2, "bandwidth": "450 GB/s",
                                        "latency": "700 ns"},
            "hardware": "H100-SXM5-80GB",
            "workload": {"kind": "llm_inference", "model": "llama2-7b",
                         "parallel": {"tp": 2, "batch": 2, "prompt": 128, "generate": 2}}
            | workload}


def test_scenario_kind_builds_the_workload() -> None:
    sc = scenario_from_dict(scenario())
    assert isinstance(sc.workload, InferenceWorkload)
    assert sc.workload.cfg == InferenceConfig(tp=2, batch=2, prompt=128, generate=2)
    inline = scenario(model={"name": "m", "layers": 2, "hidden": 256, "heads": 4, "ffn": 512,
                             "activation": "gelu", "vocab": 1000, "seq": 512})
    assert scenario_from_dict(inline).workload.model.layers == 2


@pytest.mark.parametrize(("workload", "message"), [
    ({"parallel": {"tp": 2, "batch": 0}}, "workload.parallel.batch"),
    ({"parallel": {"tp": 2, "batchh": 4}}, "workload.parallel.batchh: unknown key 'batchh'"),
    ({"parallel": {"tp": 3}}, "workload: "),
    ({"parallel": {"tp": 1}}, "topology has 2 NPUs"),
    ({"model": "nope"}, "workload.model"),
    ({"prompt": 5}, "workload.prompt: unknown key 'prompt'"),
])
def test_scenario_errors_name_the_key(workload: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        scenario_from_dict(scenario(**workload))
    assert message in str(info.value)


def test_cli_prints_the_serving_figures(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                        ) -> None:
    path = tmp_path / "inf.yaml"
    path.write_text(yaml.safe_dump(scenario()))
    out_json = tmp_path / "r.json"
    assert main(["simulate", str(path), "--json", str(out_json)]) == EXIT_OK
    out = " ".join(capsys.readouterr().out.split())
    assert "TTFT" in out and "TPOT" in out and "output tokens/s" in out
    assert "exposed tp" in out and "kv cache" in out
    llm = json.loads(out_json.read_text())["meta"]["llm"]
    assert llm["ttft_s"] > 0 and len(llm["decode_step_s"]) == 2
    assert llm["out_of_memory"] is False


# ---------------------------------------------------------------------- des model import
HF_LLAMA = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 4096,
    "intermediate_size": 11008, "num_attention_heads": 32, "num_hidden_layers": 32,
    "num_key_value_heads": 32, "vocab_size": 32000, "max_position_embeddings": 4096,
    "rms_norm_eps": 1e-5, "hidden_act": "silu", "tie_word_embeddings": False,
    "_name_or_path": "meta-llama/Llama-2-7b-hf",
}


def test_model_import_prints_yaml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(HF_LLAMA))
    assert main(["model", "import", str(path)]) == EXIT_OK
    model = model_from_dict(yaml.safe_load(capsys.readouterr().out))
    assert model == from_hf_config(HF_LLAMA, "Llama-2-7b-hf")
    assert model.params() == load_model("llama2-7b").params()


def test_model_import_writes_out_with_name_and_seq(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(HF_LLAMA))
    out = tmp_path / "models" / "l7.yaml"
    code = main(["model", "import", str(path), "--name", "l7", "--seq", "2048",
                 "--out", str(out)])
    assert code == EXIT_OK
    assert f"wrote {out}" in " ".join(capsys.readouterr().out.split())
    model = load_model(str(out))
    assert (model.name, model.seq, model.layers) == ("l7", 2048, 32)


def test_model_import_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({k: v for k, v in HF_LLAMA.items()
                                if k != "num_hidden_layers"}))
    assert main(["model", "import", str(path)]) == EXIT_BAD_INPUT
    err = " ".join(capsys.readouterr().err.split())
    assert str(path) in err and "num_hidden_layers" in err
    path.write_text("{not json")
    assert main(["model", "import", str(path)]) == EXIT_BAD_INPUT
    assert "not valid JSON" in " ".join(capsys.readouterr().err.split())
    assert main(["model", "import", str(tmp_path / "missing.json")]) == EXIT_BAD_INPUT
