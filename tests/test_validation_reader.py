"""Reading published measurements (des.app.validation): both file formats, the FLOP formula
that turns throughput into iteration time, the machine description, and clear errors."""

from __future__ import annotations

import pytest

from des.app.config import scenario_from_dict
from des.app.validation import (
    ValidationError,
    load_machine,
    load_rows,
    narayanan_eq3_flops,
    rows_of,
    scenario_dict,
)

GPT_1_7B = {"layers": 24, "hidden": 2304, "heads": 24, "head_dim": 96, "ffn": 9216,
            "seq": 2048, "vocab": 51200}


def test_eq3_flops_and_throughput_to_seconds():
    # F = 96 B s l h^2 (1 + s/(6h) + V/(16 l h)), written out for the 1.7B row
    b, s, l_, h, v = 512, 2048, 24, 2304, 51200
    expected = 96 * b * s * l_ * h ** 2 * (1 + s / (6 * h) + v / (16 * l_ * h))
    assert narayanan_eq3_flops(GPT_1_7B, 512) == pytest.approx(expected, rel=1e-12)
    data = {"cases": [{
        "name": "x", "model": GPT_1_7B, "recompute": "full", "sp": False,
        "parallel": {"gpus": 32, "tp": 1, "pp": 1, "dp": 32, "global_batch": 512,
                     "micro_batch": 16, "ddp": "torch", "grad_allreduce_bytes": 2},
        "measured": {"metric": "tflops_per_gpu", "value": 137,
                     "flops_formula": "narayanan2021_eq3"}}]}
    (row,) = rows_of(data, "t.yaml")
    assert row.measured_s == pytest.approx(expected / (32 * 137e12))
    assert row.mode == "full"
    parallel = row.workload["parallel"]
    assert parallel["dp_overlap"] is True and parallel["grad_bytes"] == 2


def test_iteration_times_give_one_row_per_mode():
    data = {"cases": [{
        "name": "m", "model": GPT_1_7B,
        "parallel": {"gpus": 8, "tp": 8, "pp": 1, "dp": 1, "global_batch": 4,
                     "micro_batch": 4, "pipeline_interleaving": 1},
        "measured_iteration_s": {"full": 1.42, "selective+sp": 1.10}}]}
    full, selective = rows_of(data, "t.yaml")
    assert (full.measured_s, selective.measured_s) == (1.42, 1.10)
    assert full.workload["parallel"]["recompute"] == "full"
    assert not full.workload["parallel"]["sp"]
    assert selective.workload["parallel"]["recompute"] == "selective"
    assert selective.workload["parallel"]["sp"]


@pytest.mark.parametrize(("case", "message"), [
    ({"name": "m"}, "cannot read the case"),
    ({"name": "m", "model": GPT_1_7B, "parallel": {"gpus": 8}}, "needs measured"),
    ({"name": "m", "model": GPT_1_7B, "parallel": {"gpus": 8},
      "measured_iteration_s": {"partial": 1.0}}, "measured mode 'partial'"),
    ({"name": "m", "model": GPT_1_7B, "parallel": {"gpus": 8},
      "measured": {"metric": "samples_per_s", "value": 3}}, "tflops_per_gpu"),
])
def test_bad_cases_are_named(case, message):
    with pytest.raises(ValidationError, match=message):
        rows_of({"cases": [case]}, "t.yaml")
    with pytest.raises(ValidationError, match="'cases' list"):
        rows_of({"case": []}, "t.yaml")


def test_machine_description_sizes_the_topology_and_sets_the_software(tmp_path):
    machine = load_machine("selene-dgx-a100")
    data = {"cases": [{
        "name": "m", "model": {**GPT_1_7B, "layers": 4},
        "parallel": {"gpus": 16, "tp": 8, "pp": 2, "dp": 1, "global_batch": 2,
                     "micro_batch": 1},
        "measured_iteration_s": {"full": 1.0}}]}
    (row,) = rows_of(data, "t.yaml")
    scenario = scenario_from_dict(scenario_dict(row, machine))
    assert scenario.topology.num_npus == 16
    par = scenario.workload.par
    assert par.dropout and par.pp_blocking and par.pp_scatter_gather and not par.flash
    odd = rows_of({"cases": [{**data["cases"][0],
                              "parallel": {**data["cases"][0]["parallel"], "gpus": 12}}]},
                  "t.yaml")[0]
    with pytest.raises(ValidationError, match="not whole nodes of 8"):
        scenario_dict(odd, machine)
    (tmp_path / "a.yaml").write_text("cases: [\n")
    with pytest.raises(ValidationError, match=r"a\.yaml: not valid YAML"):
        load_rows(tmp_path)
    with pytest.raises(ValidationError, match="not found"):
        load_rows(tmp_path / "missing")


LAYER_CASE = {"name": "l", "model": {**GPT_1_7B, "layers": 4},
              "parallel": {"gpus": 8, "tp": 8, "pp": 1, "dp": 1, "global_batch": 1,
                           "micro_batch": 1, "tp_grad_overlap": True},
              "measured_layer_ms": {"none": {"forward": 2.0, "backward": 4.0},
                                    "selective+sp": {"forward": 1.5, "backward": 3.0}}}


def test_layer_times_give_a_row_per_mode_and_pass():
    rows = rows_of({"cases": [LAYER_CASE]}, "t.yaml")
    assert [(r.mode, r.measured_as, r.measured_s, r.layer) for r in rows] == [
        ("none", "layer_forward_s", 0.002, 2), ("none", "layer_backward_s", 0.004, 2),
        ("selective+sp", "layer_forward_s", 0.0015, 2),
        ("selective+sp", "layer_backward_s", 0.003, 2)]
    assert rows[0].workload["parallel"]["tp_grad_overlap"] is True
    assert rows[2].workload["parallel"]["sp"] and \
        rows[2].workload["parallel"]["recompute"] == "selective"


@pytest.mark.parametrize(("change", "message"), [
    ({"parallel": {**LAYER_CASE["parallel"], "pp": 2}}, "pp 1 and one micro-batch"),
    ({"parallel": {**LAYER_CASE["parallel"], "global_batch": 2}}, "one micro-batch"),
    ({"layer": 9}, "layer 9 is not one of the 4 layers"),
    ({"measured_layer_ms": {"some": {"forward": 1, "backward": 1}}}, "mode 'some'"),
    ({"measured_layer_ms": {"none": {"forward": 1}}}, "forward and backward"),
    ({"parallel": {**LAYER_CASE["parallel"], "tp_grad_overlap": "yes"}}, "true or false"),
])
def test_bad_layer_cases_are_named(change, message):
    with pytest.raises(ValidationError, match=message):
        rows_of({"cases": [{**LAYER_CASE, **change}]}, "t.yaml")


def test_layer_seconds_span_one_layers_passes():
    from des.app.validation import layer_seconds
    from des.sim.backends import run_backend

    machine = load_machine("selene-dgx-a100")
    row = rows_of({"cases": [LAYER_CASE]}, "t.yaml")[0]
    scenario = scenario_from_dict(scenario_dict(row, machine))
    result = run_backend("simpy", scenario.topology, scenario.graph,
                         hardware=scenario.hardware, options=scenario.options)
    spans = layer_seconds(result, 2)
    op = {o.name: o for o in result.ops if o.rank == 0}
    # the forward pass runs from its first kernels to its last all-reduce; the backward pass
    # (tp_grad_overlap) from the MLP block to the attention block's rest, after its all-reduce
    assert spans["forward"] == pytest.approx(
        (op["tp/fwd/L2.ar2"].end_ns - op["fwd/L2.attn_in"].start_ns) * 1e-9)
    assert spans["backward"] == pytest.approx(
        (op["bwd/L2.attn_in_rest"].end_ns - op["bwd/L2.mlp"].start_ns) * 1e-9)
    assert op["tp/fwd/L2.ar2"].end_ns <= op["bwd/L2.mlp"].start_ns


def test_layer_seconds_takes_one_layers_ops_by_pass_whatever_their_axis():
    # a synthetic profile: layer 2 next to layers 12 and 20 (names share "L2"), and forward
    # collectives of every axis (context, expert, ZeRO-3 gathers), not only tensor-parallel
    from types import SimpleNamespace

    from des.app.validation import layer_seconds
    from des.core.results import OpRecord

    def op(name, start, end, rank=0):
        return OpRecord(rank, 0, name, "compute", "compute", start, end)

    ops = [op("dp/fwd/L2.params", 100.0, 150.0), op("fwd/L2.attn_in", 150.0, 200.0),
           op("cp/fwd/L2.kv0", 200.0, 260.0), op("ep/fwd/L2.dispatch", 260.0, 300.0),
           op("tp/fwd/L2.ar2", 300.0, 400.0),
           op("fwd/L20.attn_in", 0.0, 5000.0), op("bwd/L12.mlp", 0.0, 9000.0),
           op("bwd/L2.mlp", 1000.0, 1100.0), op("cp/bwd/L2.kv0", 1100.0, 1200.0),
           op("tp/recompute/L2.ar1", 900.0, 950.0), op("bwd/L2.attn_in", 1200.0, 1300.0, 1)]
    spans = layer_seconds(SimpleNamespace(ops=ops), 2)
    assert spans["forward"] == pytest.approx(300e-9)
    assert spans["backward"] == pytest.approx(300e-9)


@pytest.mark.parametrize(("change", "message"), [
    ({"measured_layer_ms": [2.0, 4.0]}, "measured_layer_ms: expected a mapping"),
    ({"measured_layer_ms": {"none": {"forward": 0, "backward": 4.0}}}, "finite number > 0"),
    ({"measured_layer_ms": {"none": {"forward": -1, "backward": 4.0}}}, "finite number > 0"),
    ({"layer": 2.5}, "layer: must be an integer"),
    ({"layer": True}, "layer: must be an integer"),
])
def test_malformed_layer_measurements_are_named(change, message):
    with pytest.raises(ValidationError, match=message):
        rows_of({"cases": [{**LAYER_CASE, **change}]}, "t.yaml")
