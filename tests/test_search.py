"""des search: the prunes agree with the workload builder, the bounds are lower bounds, the
search finds the brute-force optimum of a small space (run through the sweep machinery), the
Pareto front is a front, and bad input is a SchemaError / exit 2."""

from __future__ import annotations

import copy
import itertools
import math
import random

import numpy as np
import pytest

from des.app.cli import main
from des.app.hw_search import (
    design_cost,
    hw_spec_from_dict,
    load_costs,
    pareto_front,
    run_hw_search,
)
from des.app.search import run_search
from des.app.search_bound import injection_bandwidth, lower_bound
from des.app.search_space import RULES, grid, prune
from des.app.search_spec import SearchError, load_spec, spec_from_dict
from des.app.sweep import run_sweep
from des.app.sweep_exec import LocalExecutor
from des.app.sweep_load import sweep_from_dict
from des.app.sweep_results import ranking
from des.core.hardware import gpu_from_dict
from des.core.schema import SchemaError
from workloads.llm import TrainingBuilder
from workloads.memory import MemoryModelError
from workloads.models import ModelConfigError, load_model, model_from_dict
from workloads.parallel import ParallelConfig, ParallelError

TINY = {"name": "tiny", "layers": 4, "hidden": 512, "heads": 8, "ffn": 2048, "vocab": 4096,
        "seq": 256, "activation": "gelu", "norm": "layernorm"}
GPU = {"name": "g", "peak_flops": {"bf16": "100 TFLOP/s"}, "hbm_bandwidth": "1 TB/s",
       "hbm_capacity": "80 GiB", "launch_overhead": "2 us", "default_dtype": "bf16",
       "efficiency": {"default": [0.8, 0.9]}, "sources": ["test figures"]}
BASE = {"topology": {"kind": "switch", "npus": 8, "bandwidth": "50 GB/s", "latency": "1 us",
                     "switch_latency": "100 ns"},
        "hardware": GPU, "network": {"chunks": 2, "comm_streams": 2},
        "workload": {"kind": "llm_training", "model": TINY,
                     "parallel": {"global_batch": 8}}}


def _builder_peak(model, row, npus, seq, global_batch):
    """The builder's verdict: None when it refuses the strategy, else its peak memory."""
    try:
        par = ParallelConfig(seq=seq, global_batch=global_batch, **row)
        builder = TrainingBuilder(model, par, npus)
        return max(builder.memory(s).total for s in range(par.pp))
    except (ParallelError, MemoryModelError, ModelConfigError):
        return None


@pytest.mark.parametrize("model_name", ["llama2-7b", "mixtral-8x7b", "deepseek-v2-lite"])
def test_prunes_agree_with_the_builder_row_by_row(model_name):
    """Nothing that divides is pruned by divisibility and everything pruned breaks a stated
    rule the builder enforces; the vectorised memory equals the builder's peak."""
    model = load_model(model_name)
    axes = {"tp": [1, 2, 3, 8], "pp": [1, 2, 4], "cp": [1, 2], "ep": [1, 2], "sp": [0, 1],
            "zero": [0, 3], "micro_batch": [1, 3], "recompute": ["none", "full"],
            "schedule": ["gpipe", "1f1b", "interleaved"], "virtual_stages": [1, 2]}
    cands = grid(axes, 16, ["tp,cp,ep,pp,dp"])
    reasons, memory, keep = prune(cands, model, 16, 512, 24, 30e9)
    assert set(reasons) - {""} <= set(RULES)
    for i in range(len(cands)):
        peak = _builder_peak(model, cands.row(i), 16, 512, 24)
        assert (peak is not None) == (reasons[i] == ""), (cands.row(i), reasons[i])
        if peak is not None:
            assert memory[i] == pytest.approx(peak, rel=1e-12)
            assert keep[i] == (peak <= 30e9)
    assert keep.any() and (~keep & (reasons == "")).any()  # both prunes bite


def _small_space():
    return spec_from_dict({
        "name": "small", "base": copy.deepcopy(BASE),
        "free": {"tp": [1, 2, 4], "pp": [1, 2], "sp": [False, True], "micro_batch": [1, 2],
                 "recompute": ["none", "full"]},
        "memory_limit": "80 GiB"})


@pytest.fixture(scope="module")
def brute_force(tmp_path_factory):
    """Every point of the small space through the sweep machinery (simpy and analytical)."""
    sweep = sweep_from_dict({
        "name": "brute", "base": copy.deepcopy(BASE),
        "axes": {"workload.parallel.tp": [1, 2, 4], "workload.parallel.pp": [1, 2],
                 "workload.parallel.sp": [False, True],
                 "workload.parallel.micro_batch": [1, 2],
                 "workload.parallel.recompute": ["none", "full"]},
        "derive": {"workload.parallel.dp": "npus // (tp * pp)"},
        "memory_limit": "80 GiB"})
    out = tmp_path_factory.mktemp("brute")
    simpy = run_sweep(sweep, out / "simpy", executor=LocalExecutor(1))
    analytical = run_sweep(sweep, out / "analytical", executor=LocalExecutor(1),
                           backend="analytical")
    return sweep, simpy, analytical


def test_search_finds_the_brute_force_optimum(brute_force):
    sweep, simpy, _ = brute_force
    best = ranking(simpy, sweep.memory_limit)[0]
    found = run_search(_small_space(), LocalExecutor(1))
    assert found.proven and found.best is not None
    assert found.best.confirmed_s == best.metrics["iteration_s"]
    strategy = found.best.strategy
    for axis, value in best.values.items():
        assert strategy[axis.rsplit(".", 1)[-1]] == value
    ok = [r for r in simpy if r.status == "ok"]
    assert found.counts["survivors"] == len(ok)  # the prunes kept every point that runs
    assert found.counts["confirmed"] < len(ok)  # and the bound spared most of them
    assert found.counts["enumerated"] == found.counts["pruned_divisibility"] + \
        found.counts["pruned_memory"] + found.counts["pruned_equivalent"] + \
        found.counts["survivors"]


def test_the_bounds_are_lower_bounds(brute_force):
    """The closed-form chain bound is below the analytical time, the full bound below the
    contended time, and the analytical time below the contended time, point by point."""
    _, simpy, analytical = brute_force
    model = model_from_dict(TINY, "model")
    hw = gpu_from_dict(GPU)
    from des.app.config import build_topology
    from des.core.schema import Section

    inj = injection_bandwidth(build_topology(Section(BASE["topology"], "topology")))
    ana = {r.index: r.metrics["iteration_s"] for r in analytical if r.status == "ok"}
    checked = 0
    for result in simpy:
        if result.status != "ok":
            continue
        v = {k.rsplit(".", 1)[-1]: x for k, x in result.values.items()}
        axes = {k: [x] for k, x in v.items()}
        axes["dp"] = [8 // (v["tp"] * v["pp"])]
        cands = grid(axes, 8, ["tp,cp,ep,pp,dp"])
        chain, bound = lower_bound(cands, model, hw, inj, 256, 8)
        contended = result.metrics["iteration_s"]
        assert chain[0] * 1e-9 <= ana[result.index] * (1 + 1e-9)
        assert bound[0] * 1e-9 <= contended * (1 + 1e-9)
        assert ana[result.index] <= contended * (1 + 1e-9)
        checked += 1
    assert checked >= 10


def test_search_of_a_sweep_space_matches_the_sweeps_best(tmp_path):
    """The sweep route: a sweep file's space (groups, derived values, constraints) searched,
    against the sweep run in full."""
    doc = {"name": "two_systems", "base": copy.deepcopy(BASE),
           "axes": {"system": ["slow", "fast"], "workload.parallel.tp": [1, 2, 4, 8],
                    "workload.parallel.dp": [1, 2, 4, 8]},
           "groups": {"system": {"slow": {"topology.bandwidth": "10 GB/s"},
                                 "fast": {"topology.bandwidth": "200 GB/s"}}},
           "derive": {"workload.parallel.micro_batch": "global_batch // dp"},
           "constraints": ["tp * dp == npus"]}
    full = run_sweep(sweep_from_dict(copy.deepcopy(doc)), tmp_path, executor=LocalExecutor(1))
    best = ranking(full)[0]
    found = run_search(spec_from_dict({"sweep": copy.deepcopy(doc)}), LocalExecutor(1))
    assert found.counts["pruned_constraints"] == sum(r.status == "invalid" for r in full)
    assert found.best.values == best.values
    assert found.best.confirmed_s == best.metrics["iteration_s"]
    assert found.best.point.key == best.key  # the sweep's own point


def test_pareto_front_properties():
    rng = random.Random(7)
    for _ in range(50):
        points = [(rng.choice([1, 2, 3, 5, 8]), rng.choice([1.0, 2.0, 3.0, 4.0]))
                  for _ in range(rng.randint(1, 12))]
        front = pareto_front(points)
        on = set(front)

        def dominates(a, b):
            return a[0] <= b[0] and a[1] <= b[1] and a != b

        for i in front:  # nothing dominates a front point
            assert not any(dominates(points[j], points[i]) for j in range(len(points)))
        for i in set(range(len(points))) - on:  # every other point is dominated or equal
            assert any(dominates(points[j], points[i]) or points[j] == points[i]
                       for j in front)
        costs = [points[i][0] for i in front]
        times = [points[i][1] for i in front]
        assert costs == sorted(costs) and times == sorted(times, reverse=True)
        assert len(set(costs)) == len(costs)


COSTS = {"name": "c", "currency": "USD", "items": {
    "gpu": {"unit": "GPU", "prices": {"base": 1000}, "sources": ["test"]},
    "link.scale_up": {"unit": "GB/s", "price": 2, "assumption": "test"},
    "hbm_bandwidth": {"unit": "TB/s", "price": 100, "assumption": "test"}}}


def _hw_doc():
    return {"name": "hw", "base": copy.deepcopy(BASE), "hardware": {
        "costs": copy.deepcopy(COSTS),
        "params": {"topology.bandwidth": {"values": ["10 GB/s", "50 GB/s", "200 GB/s"],
                                          "cost": "link.scale_up"},
                   "hardware.hbm_bandwidth": {"values": ["0.5 TB/s", "2 TB/s"],
                                              "cost": "hbm_bandwidth"}}}}


def test_design_cost_is_the_cost_model():
    spec = hw_spec_from_dict(_hw_doc())
    cost = design_cost(spec, {"topology.bandwidth": "50 GB/s",
                              "hardware.hbm_bandwidth": "2 TB/s"}, 8)
    assert cost == pytest.approx(8 * (1000 + 2 * 50 + 100 * 2))
    assert load_costs("gpu_cluster_2025").items["gpu"].prices["H100-SXM5-80GB"] > 0


def test_load_spec_reads_a_hardware_spec_once_as_a_hardware_search(tmp_path):
    """A spec file with a ``hardware:`` section loads as the hardware search its dict makes
    (named after the file); one without stays a strategy search."""
    import yaml

    hw = tmp_path / "hw_small.yaml"
    doc = _hw_doc()
    del doc["name"]
    hw.write_text(yaml.safe_dump(doc, sort_keys=False))
    spec = load_spec(hw)
    assert spec.kind == "hardware" and spec.name == "hw_small"
    assert spec.params == hw_spec_from_dict(_hw_doc()).params
    plain = tmp_path / "plain.yaml"
    plain.write_text(yaml.safe_dump({"base": copy.deepcopy(BASE), "free": {"tp": [1, 2]}}))
    assert getattr(load_spec(plain), "kind", "") != "hardware"


def test_hardware_search_front_matches_brute_force():
    """Every design simulated in full: the search's front is the brute-force front, and each
    design it did not simulate is dominated by a cheaper-or-equal one's time."""
    from des.app.search import _context
    from des.app.sweep_exec import run_point
    from des.app.sweep_types import SweepPoint

    spec = hw_spec_from_dict(_hw_doc())
    found = run_hw_search(spec, LocalExecutor(1))
    truth = []
    for design in found.evaluated:
        scenario = copy.deepcopy(BASE)
        scenario["topology"]["bandwidth"] = design.values["topology.bandwidth"]
        scenario["hardware"]["hbm_bandwidth"] = design.values["hardware.hbm_bandwidth"]
        scenario["workload"]["parallel"]["dp"] = 8
        scenario["name"] = "t"
        res = run_point(SweepPoint(0, "k", {}, scenario), "simpy")
        truth.append((design.cost, res.metrics["iteration_s"]))
        assert design.cost == design_cost(spec, design.values, _context(
            scenario, "d", None, False).npus)
    want = [truth[i] for i in pareto_front(truth)]
    assert [(d.cost, d.time_s) for d in found.front] == want
    for design, (cost, time_s) in zip(found.evaluated, truth, strict=True):
        if design.time_s is not None:
            assert design.time_s == time_s
        else:
            assert design.status == "bounded"
            assert any(c <= cost and t <= time_s for c, t in want)
    assert found.counts["simulated"] <= len(truth)


@pytest.mark.parametrize("doc, words", [
    ({"base": copy.deepcopy(BASE), "free": {"tq": [1]}}, ["free.tq", "unknown"]),
    ({"base": copy.deepcopy(BASE), "free": {"recompute": ["some"]}},
     ["free.recompute[0]", "some"]),
    ({"base": copy.deepcopy(BASE), "free": {"tp": []}}, ["free.tp", "non-empty"]),
    ({"base": copy.deepcopy(BASE), "free": {"tp": [2, 2]}}, ["free.tp", "more than once"]),
    ({"base": copy.deepcopy(BASE), "free": {"order": ["tp,dp"]}}, ["free.order[0]"]),
    ({"base": copy.deepcopy(BASE)}, ["free"]),
    ({"base": copy.deepcopy(BASE), "sweep": "stage_lab_llama70b", "free": {"tp": [1]}},
     ["base", "sweep"]),
    ({"free": {"tp": [1]}}, ["base", "sweep"]),
    ({"base": copy.deepcopy(BASE), "free": {"tp": [1]}, "confirm": {"margin": -1}},
     ["confirm.margin"]),
    ({"base": copy.deepcopy(BASE), "free": {"tp": [1]}, "memory_limit": "lots"},
     ["memory_limit"]),
    ({"base": copy.deepcopy(BASE), "free": {"tp": [1]}, "extra": 1}, ["extra"]),
    ({"base": {**copy.deepcopy(BASE), "workload": {"kind": "gemm"}}, "free": {"tp": [1]}},
     ["llm_training"]),
])
def test_bad_specs_are_schema_errors(doc, words):
    with pytest.raises(SchemaError) as err:
        spec_from_dict(doc)
    for word in words:
        assert word in str(err.value)


def test_bad_hardware_specs_are_schema_errors():
    doc = _hw_doc()
    doc["hardware"]["params"]["topology.bandwidth"]["cost"] = "nvlink"
    with pytest.raises(SearchError, match="nvlink"):
        hw_spec_from_dict(doc)
    doc = _hw_doc()
    del doc["hardware"]["costs"]["items"]["hbm_bandwidth"]["assumption"]
    with pytest.raises(SearchError, match="sources or an assumption"):
        hw_spec_from_dict(doc)
    doc = _hw_doc()
    doc["hardware"]["params"]["hardware.hbm_bandwidth"]["values"] = ["fast"]
    with pytest.raises(SearchError, match="values"):
        hw_spec_from_dict(doc)


@pytest.mark.parametrize("argv", [
    ["search"],
    ["search", "no_such_spec.yaml"],
    ["search", "--base", "llama70b_torus3d_64", "--free", "tp"],
    ["search", "--base", "llama70b_torus3d_64", "--free", "tq=1,2"],
    ["search", "--base", "llama70b_torus3d_64", "--free", "tp=1", "--margin", "-1"],
    ["search", "stage_lab_llama70b", "--free", "tp=1"],
])
def test_cli_bad_input_exits_2(argv, capsys):
    assert main(argv) == 2
    assert "error:" in capsys.readouterr().err


def test_cli_small_search_writes_json_and_csv(tmp_path, capsys):
    import json

    import yaml

    spec = tmp_path / "s.yaml"
    spec.write_text(yaml.safe_dump({"base": copy.deepcopy(BASE),
                                    "free": {"tp": [1, 2], "micro_batch": [1, 2]}}))
    out, csv = tmp_path / "r.json", tmp_path / "r.csv"
    assert main(["search", str(spec), "--workers", "1", "--json", str(out), "--csv",
                 str(csv), "--no-explain"]) == 0
    doc = json.loads(out.read_text())
    assert doc["best"]["strategy"]["dp"] * doc["best"]["strategy"]["tp"] == 8
    assert doc["counts"]["confirmed"] >= 1
    assert csv.read_text().startswith("context,")
    assert "how much of the space it visited" in capsys.readouterr().out


def test_cli_search_refuses_a_folder_output_before_searching(tmp_path, capsys):
    """--json naming a folder is bad input (exit 2) found before the search runs."""
    import yaml

    spec = tmp_path / "s.yaml"
    spec.write_text(yaml.safe_dump({"base": copy.deepcopy(BASE), "free": {"tp": [1, 2]}}))
    assert main(["search", str(spec), "--workers", "1", "--json", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    assert "is a directory" in " ".join(captured.err.split())
    assert "how much of the space it visited" not in captured.out


def test_large_space_enumerates_and_prunes_in_arrays():
    """10^5 candidates are enumerated, pruned and bounded without building a graph; the
    counts add up and every survivor fits."""
    model = load_model("llama2-70b")
    axes = {"tp": [1, 2, 4, 8, 16], "pp": [1, 2, 4, 8, 16], "cp": [1, 2, 4, 8],
            "sp": [0, 1], "zero": [0, 1, 2, 3], "micro_batch": [1, 2, 4, 8],
            "recompute": ["none", "selective", "full"], "schedule": ["1f1b", "interleaved"],
            "virtual_stages": [1, 2, 4], "order": [0, 1]}
    cands = grid(axes, 1024, ["tp,cp,ep,pp,dp", "tp,pp,cp,ep,dp"])
    assert len(cands) == math.prod(len(v) for v in axes.values()) >= 100_000
    _, memory, keep = prune(cands, model, 1024, 4096, 1024, 80 * 2**30)
    assert keep.sum() > 0
    # the vectorised memory of some survivors and some memory-pruned rows is the builder's
    rows = np.flatnonzero(keep)[:: max(1, keep.sum() // 5)][:5]
    pruned = np.flatnonzero(~keep & np.isfinite(memory))[:3]
    for i in (*rows, *pruned):
        assert memory[i] == pytest.approx(_builder_peak(model, cands.row(int(i)), 1024, 4096,
                                                        1024), rel=1e-12)
    hw = gpu_from_dict(GPU)
    chain, bound = lower_bound(cands.take(keep), model, hw, 450.0, 4096, 1024)
    assert np.all(np.isfinite(bound)) and np.all(bound >= chain) and np.all(chain > 0)


def test_grid_derives_dp():
    cands = grid({"tp": [1, 3], "pp": [2]}, 8, ["tp,cp,ep,pp,dp"])
    assert list(cands.cols["dp"]) == [4, 0]  # 8 / (3 * 2) is not whole: the world rule
    assert list(itertools.chain(cands.row(0).values()))[:3] == [1, 2, 4]


def test_node_cut_of_a_superpod_is_its_nics():
    from des.app.config import build_topology
    from des.app.search_bound import node_cut
    from des.core.schema import Section

    pod = build_topology(Section({"kind": "superpod", "nodes": 4, "gpus_per_node": 4,
                                  "bandwidth": "200 GB/s", "nic_bandwidth": "25 GB/s",
                                  "latency": "1 us"}, "topology"))
    cut = node_cut(pod)
    assert cut is not None and cut.block == 4
    assert cut.out_bw == pytest.approx(4 * 25.0) and cut.in_bw == pytest.approx(4 * 25.0)
    flat = build_topology(Section(BASE["topology"], "topology"))
    assert node_cut(flat) is None  # one switch: no nodes to cut
    torus = build_topology(Section({"kind": "torus3d", "x": 4, "y": 4, "z": 2,
                                    "bandwidth": "50 GB/s", "latency": "1 us"}, "topology"))
    assert node_cut(torus) is None  # NPUs wired to NPUs: the closed form is no cut's bound


POD = {"kind": "superpod", "nodes": 4, "gpus_per_node": 4, "bandwidth": "200 GB/s",
       "nic_bandwidth": "10 GB/s", "latency": "1 us"}


@pytest.mark.parametrize("overlap", [True, False])
def test_the_data_parallel_tail_bound_holds_on_a_fabric_with_nodes(overlap):
    """On a SuperPOD whose NICs are slow, data-parallel groups that straddle nodes make the
    gradient reduction the tail: the bound (node cut, bucket start) stays below the
    analytical and the contended time of every strategy, in both rank orders, for ZeRO 0-2,
    with and without overlapped reduction, and it binds (exceeds the pipeline chain alone)."""
    from des.app.config import build_topology, scenario_from_dict
    from des.app.search_bound import node_cut
    from des.core.schema import Section
    from des.sim.analytical import analyze
    from des.sim.engine import simulate

    topology = build_topology(Section(POD, "topology"))
    model = model_from_dict(TINY, "model")
    hw = gpu_from_dict(GPU)
    orders = ["tp,cp,ep,pp,dp", "tp,cp,ep,dp,pp"]
    axes = {"tp": [1, 2], "pp": [1, 2], "zero": [0, 1, 2], "micro_batch": [1],
            "schedule": ["1f1b", "interleaved"], "virtual_stages": [1, 2], "order": [0, 1]}
    cands = grid(axes, 16, orders)
    _, _, keep = prune(cands, model, 16, 256, 16, None)
    cands = cands.take(keep)
    inj = injection_bandwidth(topology)
    chain, bound = lower_bound(cands, model, hw, inj, 256, 16, cut=node_cut(topology),
                               dp_overlap=overlap)
    no_cut, _ = lower_bound(cands, model, hw, inj, 256, 16, cut=None, dp_overlap=overlap)
    assert len(cands) >= 20
    binds = 0
    for i in range(len(cands)):
        row = cands.row(i)
        scenario = {"topology": POD, "hardware": GPU, "network": {"chunks": 2},
                    "workload": {"kind": "llm_training", "model": TINY,
                                 "parallel": {**row, "global_batch": 16,
                                              "dp_overlap": overlap}}}
        closed = scenario_from_dict(copy.deepcopy(scenario), backend="analytical")
        ana = analyze(closed.topology, closed.graph, hardware=closed.hardware,
                      options=closed.options).makespan_ns
        sc = scenario_from_dict(copy.deepcopy(scenario))
        contended = simulate(sc.topology, sc.graph, hardware=sc.hardware,
                             options=sc.options).makespan_ns
        assert chain[i] <= ana * (1 + 1e-9), (row, chain[i], ana)
        assert bound[i] <= contended * (1 + 1e-9), (row, bound[i], contended)
        binds += chain[i] > no_cut[i] * 1.05
    assert binds >= 5


def test_rows_of_one_class_build_the_same_graph():
    """ZeRO-1 and ZeRO-2 (and any stage with dp 1) build identical graphs: same nodes, same
    collectives with the same sizes and groups, so the search runs one of them."""
    from des.app.search_space import same_graph

    model = model_from_dict(TINY, "model")
    axes = {"tp": [1, 2], "pp": [1, 2], "zero": [0, 1, 2, 3], "micro_batch": [1]}
    cands = grid(axes, 8, ["tp,cp,ep,pp,dp"])
    _, _, keep = prune(cands, model, 8, 256, 8, None)
    cands = cands.take(keep)
    klass = same_graph(cands)

    def shape(row):
        par = ParallelConfig(seq=256, global_batch=8, fold="none", **row)
        graph = TrainingBuilder(model, par, 8).build().graph
        return [repr(n) for n in graph.all_nodes()]  # every field of every node, in order

    shapes = [shape(cands.row(i)) for i in range(len(cands))]
    pairs = 0
    for i in range(len(cands)):
        for j in range(i + 1, len(cands)):
            assert (shapes[i] == shapes[j]) == (klass[i] == klass[j]), (cands.row(i),
                                                                         cands.row(j))
            pairs += klass[i] == klass[j]
    assert pairs >= 4
