"""The energy model (des.core.energy): closed forms on tiny runs, monotonicity, folded runs equal
to unfolded ones, the sourced presets, the JSON section and the sweep metrics."""

from __future__ import annotations

import copy
import dataclasses
import json
import math

import pytest
from helpers import LLM_BASE as HELPER_LLM_BASE
from helpers import TINY_MODEL, run_des

import topologies as topo
from des.app.config import scenario_from_dict
from des.app.sweep import run_sweep
from des.app.sweep_exec import LocalExecutor
from des.app.sweep_load import sweep_from_dict
from des.app.workload_kinds import evaluate
from des.core.energy import energy_report
from des.core.energy_spec import EnergySpec, energy_from_dict, link_class
from des.core.graph import EventGraph
from des.core.hardware import HardwareError, available_gpus, gpu_from_dict, load_gpu
from des.core.results import write_json
from des.core.units import UnitError, parse_byte_energy, parse_flop_energy, parse_power
from des.sim.analytical import analyze
from des.sim.engine import simulate
from des.sim.options import EngineOptions
from workloads.llm import build_training
from workloads.models import ModelConfig
from workloads.parallel import ParallelConfig

# Round figures so the closed forms are easy to read: 2 pJ/FLOP, 3 pJ/B of HBM, 5 pJ/B on a
# scale-up link, 7 pJ/B on a network link, 11 pJ/B per switch traversal, 50 W idle.
SPEC = EnergySpec(tdp_w=400.0, idle_power_w=50.0, flop_pj={"bf16": 2.0}, hbm_pj_per_byte=3.0,
                  link_pj_per_byte={"nvlink": 5.0, "network": 7.0}, switch_pj_per_byte=11.0)
GPU = dataclasses.replace(load_gpu("A100-SXM4-80GB"), energy=SPEC)


def one_gemm(flops: float, nbytes: float) -> EventGraph:
    graph = EventGraph(1, "gemm")
    graph.compute(0, flops=flops, nbytes=nbytes, op_class="gemm")
    return graph


def ring_all_reduce(n: int, size: float) -> EventGraph:
    graph = EventGraph(n, "ar")
    graph.collective_all("all_reduce", size, algorithm="ring")
    return graph


# ---------------------------------------------------------------------- closed forms
def test_one_gemm_costs_its_flops_and_bytes_at_the_figures() -> None:
    flops, nbytes = 2.0e12, 3.0e9
    graph = one_gemm(flops, nbytes)
    result = simulate(topo.Topology("one", 1), graph, hardware=GPU)
    e = energy_report(graph, result, GPU)
    assert e.flops == flops and e.hbm_bytes == nbytes
    assert e.compute_j == pytest.approx(flops * 2.0e-12, rel=1e-12)  # 4 J
    assert e.hbm_j == pytest.approx(nbytes * 3.0e-12, rel=1e-12)
    assert e.static_j == pytest.approx(50.0 * result.makespan_ns * 1e-9, rel=1e-12)
    assert sum(e.link_j.values()) == 0 and e.switch_j == 0
    assert e.total_j == pytest.approx(e.compute_j + e.hbm_j + e.static_j, rel=1e-12)
    assert e.average_power_w == pytest.approx(e.total_j / (result.makespan_ns * 1e-9))
    assert e.missing == ()


def test_unlisted_dtype_costs_tdp_over_peak() -> None:
    spec = dataclasses.replace(SPEC, flop_pj={})
    graph = one_gemm(1e12, 0.0)
    result = simulate(topo.Topology("one", 1), graph, hardware=GPU)
    e = energy_report(graph, result, GPU, spec=spec)
    # 400 W / 312 TFLOP/s = 1.282 pJ/FLOP: the whole board at the dense peak
    assert e.pj_per_flop == pytest.approx(400.0 / 312e12 * 1e12, rel=1e-12)
    assert e.compute_j == pytest.approx(1e12 * 400.0 / 312e12, rel=1e-12)


@pytest.mark.parametrize("n", [2, 4, 8])
def test_ring_all_reduce_link_energy_is_bytes_on_links_times_per_byte(n: int) -> None:
    size = 8 * 2**20
    graph = ring_all_reduce(n, size)
    result = simulate(topo.ring(n, 50.0, 500.0), graph, hardware=GPU)
    e = energy_report(graph, result, GPU)
    # a ring all-reduce moves 2(n-1)/n of the buffer out of every rank, one hop each
    assert sum(lk.bytes for lk in result.links) == pytest.approx(2 * (n - 1) * size, rel=1e-12)
    assert e.link_bytes["nvlink"] == pytest.approx(2 * (n - 1) * size, rel=1e-12)
    assert e.link_j["nvlink"] == pytest.approx(2 * (n - 1) * size * 5.0e-12, rel=1e-12)
    assert e.link_j["network"] == 0 and e.switch_j == 0  # a ring has no switch
    assert e.compute_j == 0 and e.hbm_j == 0


def test_static_energy_is_idle_power_times_gpus_times_makespan() -> None:
    graph = ring_all_reduce(8, 2**20)
    result = simulate(topo.ring(8, 50.0, 500.0), graph, hardware=GPU)
    e = energy_report(graph, result, GPU)
    assert e.gpus == 8
    assert e.static_j == pytest.approx(50.0 * 8 * result.makespan_ns * 1e-9, rel=1e-12)


def test_switch_traversals_are_the_bytes_leaving_a_switch() -> None:
    n, size = 4, 2**20
    graph = ring_all_reduce(n, size)
    result = simulate(topo.switch(n, 50.0, 500.0), graph, hardware=GPU)
    e = energy_report(graph, result, GPU)
    down = sum(lk.bytes for lk in result.links if lk.src >= n)
    assert down > 0 and e.switch_bytes == down
    # every byte goes up to the switch and down again: two links, one traversal
    assert e.link_bytes["nvlink"] == pytest.approx(2 * down, rel=1e-12)
    assert e.switch_j == pytest.approx(down * 11.0e-12, rel=1e-12)


def test_network_links_are_charged_at_the_network_figure() -> None:
    topology = topo.superpod(2, nvlink_bandwidth=230.0, nic_bandwidth=25.0, latency=1000.0)
    graph = ring_all_reduce(topology.num_npus, 2**20)
    result = simulate(topology, graph, hardware=GPU)
    e = energy_report(graph, result, GPU)
    by_class = {"nvlink": 0.0, "network": 0.0}
    for lk in result.links:
        by_class[link_class(lk.kind, SPEC)] += lk.bytes
    assert by_class["network"] > 0
    assert e.link_j["network"] == pytest.approx(by_class["network"] * 7.0e-12, rel=1e-12)
    assert e.link_j["nvlink"] == pytest.approx(by_class["nvlink"] * 5.0e-12, rel=1e-12)


# ---------------------------------------------------------------------- monotonicity
def test_doubling_the_bytes_doubles_link_energy() -> None:
    runs = []
    for size in (2**20, 2**21):
        graph = ring_all_reduce(4, size)
        result = simulate(topo.ring(4, 50.0, 500.0), graph, hardware=GPU)
        runs.append(energy_report(graph, result, GPU))
    assert runs[1].link_j["nvlink"] == pytest.approx(2 * runs[0].link_j["nvlink"], rel=1e-12)


def test_more_work_never_costs_less_energy() -> None:
    totals = []
    for flops in (1e11, 2e11, 4e11):
        graph = one_gemm(flops, 1e8)
        result = simulate(topo.Topology("one", 1), graph, hardware=GPU)
        totals.append(energy_report(graph, result, GPU).total_j)
    assert totals == sorted(totals) and totals[0] < totals[-1]


# ---------------------------------------------------------------------- folding
MODEL = ModelConfig(name="tiny", layers=2, hidden=1024, heads=8, kv_heads=8, head_dim=128,
                    ffn=4096, activation="gelu", vocab=4096, seq=512)


@pytest.mark.parametrize(("build", "par"), [
    (lambda: topo.switch(8, 50.0, 500.0), dict(tp=2, dp=4, zero=3, global_batch=8)),
    (lambda: topo.superpod(2, nvlink_bandwidth=230.0, nic_bandwidth=25.0, latency=1000.0),
     dict(tp=4, pp=2, dp=2, global_batch=8)),
], ids=["switch_tp2_dp4", "superpod_tp4_pp2_dp2"])
def test_a_folded_run_costs_what_the_unfolded_run_costs(build, par) -> None:
    reports = {}
    for fold in ("none", "auto"):
        topology = build()
        workload = build_training(MODEL, ParallelConfig(fold=fold, **par), topology.num_npus,
                                  topology)
        result = simulate(topology, workload.graph, hardware=GPU,
                          options=EngineOptions(chunks=4, comm_streams=2))
        reports[fold] = (workload, energy_report(workload.graph, result, GPU))
    (_, full), (folded_wl, folded) = reports["none"], reports["auto"]
    assert folded_wl.graph.fold is not None and folded_wl.graph.fold.count > 1
    assert folded.flops == pytest.approx(full.flops, rel=1e-12) and full.flops > 0
    for field in ("compute_j", "hbm_j", "switch_j", "static_j", "total_j"):
        assert getattr(folded, field) == pytest.approx(getattr(full, field), rel=1e-9), field
    for cls in full.link_j:
        assert folded.link_j[cls] == pytest.approx(full.link_j[cls], rel=1e-9), cls
    assert sum(full.link_j.values()) > 0


# ---------------------------------------------------------------------- honesty
def test_figures_not_set_are_listed_as_missing_and_charged_zero() -> None:
    spec = EnergySpec(tdp_w=None, link_pj_per_byte={"nvlink": 1.0})
    graph = one_gemm(1e9, 1e6)
    result = simulate(topo.Topology("one", 1), graph, hardware=GPU)
    e = energy_report(graph, result, GPU, spec=spec)
    assert set(e.missing) == {"flop_energy.bf16", "hbm_energy", "idle_power"}
    assert e.total_j == 0


def test_the_closed_form_backend_says_it_measured_no_link_energy() -> None:
    graph = ring_all_reduce(4, 2**20)
    result = analyze(topo.ring(4, 50.0, 500.0), graph, hardware=GPU)
    e = energy_report(graph, result, GPU)
    assert not e.links_measured and sum(e.link_j.values()) == 0
    assert any("closed-form" in note for note in e.notes)


def test_nodes_with_only_a_duration_are_counted_not_charged() -> None:
    graph = EventGraph(1, "replayed")
    graph.compute(0, duration_ns=1000.0)
    result = simulate(topo.Topology("one", 1), graph, hardware=GPU)
    e = energy_report(graph, result, GPU)
    assert e.unknown_work_nodes == 1 and e.compute_j == 0


def test_no_energy_section_is_an_error() -> None:
    gpu = dataclasses.replace(GPU, energy=None)
    graph = one_gemm(1.0, 1.0)
    with pytest.raises(ValueError, match="energy"):
        energy_report(graph, simulate(topo.Topology("one", 1), graph, hardware=gpu), gpu)


# ---------------------------------------------------------------------- figures and units
def test_energy_units_convert_exactly() -> None:
    assert parse_byte_energy("3.9 pJ/bit") == pytest.approx(31.2, rel=1e-15)
    assert parse_byte_energy("2 pJ/B") == 2.0 and parse_byte_energy("1 nJ/bit") == 8000.0
    assert parse_power("400 W") == 400.0 and parse_power("1.5 kW") == 1500.0
    assert parse_flop_energy("1.28 pJ/FLOP") == 1.28
    for bad, parse in (("3 pj/bit", parse_byte_energy), ("-1 W", parse_power),
                       ("2 J", parse_flop_energy)):
        with pytest.raises(UnitError):
            parse(bad, "x")


def test_link_classes_builtin_hierarchical_and_overridden() -> None:
    assert link_class("nvlink", SPEC) == "nvlink"
    assert link_class("leaf-spine", SPEC) == "network"
    assert link_class("dim0-switch", SPEC) == "nvlink"
    assert link_class("dim2-ring", SPEC) == "network"
    assert link_class("link", SPEC) == "nvlink"  # the default class
    spec = dataclasses.replace(SPEC, link_classes={"link": "network"})
    assert link_class("link", spec) == "network"


def test_bad_energy_sections_name_the_key() -> None:
    base = yaml_preset("A100-SXM4-80GB")
    for changes, key in ((({"link_energy": {"pcie": "1 pJ/bit"}}), "hardware.energy.link_energy"),
                         ({"tdp": "400 V"}, "hardware.energy.tdp"),
                         ({"link_classes": {"x": "copper"}}, "hardware.energy.link_classes.x"),
                         ({"idle": "1 W"}, "hardware.energy"),
                         ({"flop_energy": {"bf61": "1 pJ/FLOP"}}, "hardware.energy")):
        data = copy.deepcopy(base)
        data["energy"].update(changes)
        with pytest.raises(HardwareError, match=key.replace(".", r"\.")):
            gpu_from_dict(data)


def yaml_preset(name: str) -> dict:
    import yaml

    from des.core.paths import bundled

    return yaml.safe_load(bundled("hardware")[name].read_text())


@pytest.mark.parametrize("name", available_gpus())
def test_every_preset_has_sourced_energy_figures(name: str) -> None:
    gpu = load_gpu(name)
    e = gpu.energy
    assert e is not None and e.tdp_w in (400.0, 700.0)
    assert e.hbm_pj_per_byte == pytest.approx(3.9 * 8, rel=1e-12)
    assert set(e.link_pj_per_byte) == {"nvlink", "network"}
    # no per-FLOP figure is published: every dtype costs tdp / peak
    for dtype, peak in gpu.peak_flops.items():
        assert e.flop_energy(dtype, peak) == pytest.approx(e.tdp_w / peak * 1e3, rel=1e-12)
    text = " ".join(gpu.sources)
    assert "TDP" in text and "O'Connor" in text and "pJ/bit" in text
    assert energy_from_dict(e) is e


# ---------------------------------------------------------------------- reports
# the H100 preset: its idle power (static energy) is set
LLM_BASE = {**HELPER_LLM_BASE, "hardware": "H100-SXM5-80GB"}


def test_training_json_has_the_energy_section_and_per_token_figure(tmp_path) -> None:
    scenario = scenario_from_dict(copy.deepcopy(LLM_BASE))
    result = simulate(scenario.topology, scenario.graph, hardware=scenario.hardware,
                      options=scenario.options)
    evaluation = evaluate(result, scenario)
    evaluation.attach(result)
    doc = json.loads(write_json(result, tmp_path / "r.json").read_text())
    energy = doc["meta"]["energy"]
    for key in ("total_j", "compute_j", "hbm_j", "links_j", "link_j", "switch_j", "static_j",
                "average_power_w", "per_gpu_power_w", "tokens", "per_token_j", "missing"):
        assert key in energy, key
    assert energy["tokens"] == 4 * 128  # global batch x sequence
    assert energy["per_token_j"] == pytest.approx(energy["total_j"] / 512, rel=1e-12)
    parts = (energy["compute_j"] + energy["hbm_j"] + energy["links_j"] + energy["switch_j"]
             + energy["static_j"])
    assert energy["total_j"] == pytest.approx(parts, rel=1e-12)
    assert energy["static_j"] == pytest.approx(145.0 * 4 * result.makespan_ns * 1e-9)
    metrics = doc["meta"]["metrics"]
    assert metrics["energy_j"] == energy["total_j"]
    assert metrics["energy_per_token_j"] == energy["per_token_j"]


def test_inference_energy_per_token_is_per_generated_token() -> None:
    data = copy.deepcopy(LLM_BASE)
    data["workload"] = {"kind": "llm_inference", "model": TINY_MODEL,
                        "parallel": {"tp": 4, "batch": 2, "prompt": 64, "generate": 8}}
    scenario = scenario_from_dict(data)
    result = simulate(scenario.topology, scenario.graph, hardware=scenario.hardware,
                      options=scenario.options)
    evaluation = evaluate(result, scenario)
    assert evaluation.energy is not None
    assert evaluation.energy["tokens"] == 2 * 8
    assert evaluation.metrics["energy_per_token_j"] == pytest.approx(
        evaluation.energy["total_j"] / 16, rel=1e-12)


def test_a_scenario_without_energy_figures_reports_none() -> None:
    data = copy.deepcopy(LLM_BASE)
    data["hardware"] = None
    data["workload"] = {"kind": "collectives",
                        "ops": [{"collective": "all_reduce", "size": "256 KiB"}]}
    scenario = scenario_from_dict(data)
    result = simulate(scenario.topology, scenario.graph, options=scenario.options)
    evaluation = evaluate(result, scenario)
    assert evaluation.energy is None and "energy_j" not in evaluation.metrics


def test_sweep_records_energy_per_point_and_static_energy_scales_with_idle_power(tmp_path
                                                                               ) -> None:
    hardware = yaml_preset("H100-SXM5-80GB")
    base = copy.deepcopy(LLM_BASE)
    base["hardware"] = hardware
    sweep = sweep_from_dict({"name": "e", "base": base,
                             "axes": {"hardware.energy.idle_power": ["100 W", "200 W"]}})
    results = run_sweep(sweep, tmp_path, executor=LocalExecutor(1))
    assert [r.status for r in results] == ["ok", "ok"]
    low, high = (r.metrics for r in results)
    for metrics in (low, high):
        for key in ("energy_j", "energy_per_token_j", "avg_power_w", "energy_static_j"):
            assert metrics[key] is not None and metrics[key] > 0, key
    assert high["energy_static_j"] == pytest.approx(2 * low["energy_static_j"], rel=1e-12)
    assert high["energy_j"] - low["energy_j"] == pytest.approx(low["energy_static_j"],
                                                               rel=1e-9)


def test_simulate_prints_the_energy_line(tmp_path) -> None:
    path = tmp_path / "s.yaml"
    import yaml

    path.write_text(yaml.safe_dump(LLM_BASE))
    out = run_des("simulate", str(path), "--json", str(tmp_path / "r.json"))
    assert out.returncode == 0, out.stderr
    assert "energy " in out.stdout and "/token" in out.stdout
    assert "switch_energy" in out.stdout  # H100 has no switch figure: said, not hidden
    energy = json.loads((tmp_path / "r.json").read_text())["meta"]["energy"]
    assert math.isfinite(energy["total_j"]) and energy["total_j"] > 0


# ---------------------------------------------------------------------- laid-out traffic
def _evaluated(data: dict, backend=simulate) -> dict:
    scenario = scenario_from_dict(copy.deepcopy(data))
    result = backend(scenario.topology, scenario.graph, hardware=scenario.hardware,
                     options=scenario.options)
    return evaluate(result, scenario).energy


@pytest.mark.parametrize("parallel", [{"tp": 2, "dp": 2, "micro_batch": 1, "global_batch": 4},
                                      {"tp": 1, "pp": 2, "dp": 2, "micro_batch": 1,
                                       "global_batch": 4}], ids=["tp2_dp2", "pp2_dp2"])
def test_closed_form_runs_lay_out_the_bytes_the_engine_moves(parallel) -> None:
    data = copy.deepcopy(LLM_BASE)
    data["workload"]["parallel"] = {**parallel, "fold": "none"}
    moved = _evaluated(data)  # every message simulated
    laid = _evaluated(data, analyze)  # no message moved: all laid out
    data["workload"]["parallel"] = parallel  # folded: on one switch the fold is not exact,
    part = _evaluated(data)  # so its folded collectives are closed-form and laid out
    assert sum(moved["link_bytes"].values()) > 0 and moved["laid_out_bytes"] == 0
    assert laid["laid_out_bytes"] == pytest.approx(sum(laid["link_bytes"].values()), rel=1e-12)
    for other in (laid, part):
        for cls, nbytes in moved["link_bytes"].items():
            assert other["link_bytes"][cls] == pytest.approx(nbytes, rel=1e-9), cls
        assert other["switch_bytes"] == pytest.approx(moved["switch_bytes"], rel=1e-9)
        assert other["links_j"] == pytest.approx(moved["links_j"], rel=1e-9)
    assert any("laid out" in note for note in laid["notes"])


def test_folded_inference_lays_out_its_closed_form_collectives() -> None:
    data = copy.deepcopy(LLM_BASE)
    data["workload"] = {"kind": "llm_inference", "model": TINY_MODEL,
                        "parallel": {"tp": 4, "batch": 2, "prompt": 64, "generate": 4}}
    full = _evaluated(data)
    data["workload"]["parallel"]["fold_tp"] = True
    folded = _evaluated(data)
    assert folded["laid_out_bytes"] > 0 and full["laid_out_bytes"] == 0
    assert folded["links_j"] == pytest.approx(full["links_j"], rel=1e-9)
    assert folded["switch_bytes"] == pytest.approx(full["switch_bytes"], rel=1e-9)


def test_energy_and_power_read_in_the_unit_that_fits_and_round_up_across_units():
    from des.core.units import format_energy, format_power

    assert format_energy(0.045) == "45.0 mJ"
    assert format_energy(0.9996) == "1.00 J"  # rounding carries into the next unit
    assert format_energy(1234.0) == "1.23 kJ"
    assert format_energy(2.5e-9) == "2.50 nJ"
    assert format_energy(0) == "0 J"
    assert format_power(5600.0) == "5.60 kW"
    assert format_power(231.0) == "231 W"
