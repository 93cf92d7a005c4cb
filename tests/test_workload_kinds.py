"""One workload interface and one backend registry: ``des simulate`` and ``des sweep`` report,
measure and rank every workload kind the same way, and choose backends from one table."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import SWITCH, TINY
from rich.console import Console

from des.app.cli import EXIT_OK, main
from des.app.config import scenario_from_dict
from des.app.render import render_sweep
from des.app.sweep import run_sweep
from des.app.sweep_exec import LocalExecutor, run_point
from des.app.sweep_load import sweep_from_dict
from des.app.sweep_results import ranking
from des.app.workload_kinds import (
    GRAPH_KIND,
    WORKLOAD_KINDS,
    kind_of,
    ranking_kind,
    scenario_kinds,
)
from des.sim.backends import BackendError, backend_names, run_backend

BASES: dict[str, dict[str, Any]] = {
    "llm_training": {"workload": {"kind": "llm_training", "model": TINY,
                                  "parallel": {"dp": 2, "micro_batch": 1, "global_batch": 2}}},
    "llm_inference": {"workload": {"kind": "llm_inference", "model": TINY,
                                   "parallel": {"tp": 2, "batch": 1, "prompt": 32,
                                                "generate": 3}}},
    "gemm": {"workload": {"kind": "gemm", "m": 256, "n": 256, "k": 256, "shard": "k"}},
    "collectives": {"workload": {"kind": "collectives",
                                 "ops": [{"collective": "all_reduce", "size": "64 KiB"}]}},
    "data_parallel_step": {"workload": {"kind": "data_parallel_step", "layers": 2,
                                        "params_per_layer": 1000, "tokens_per_rank": 8}},
}
SWEEP_ONLY = {"topology", "backend", "wall_s"}


def base(kind: str) -> dict[str, Any]:
    return {"topology": dict(SWITCH), "hardware": "A100-SXM4-80GB",
            **copy.deepcopy(BASES[kind])}


def test_every_scenario_kind_has_an_interface():
    assert set(scenario_kinds()) == set(WORKLOAD_KINDS) - {GRAPH_KIND}
    for name in scenario_kinds():
        kind = WORKLOAD_KINDS[name]
        assert callable(kind.build)
        assert any(c.key == kind.rank_key for c in kind.columns) or kind.rank_key == \
            "iteration_s"


def test_scenario_knows_its_kind():
    assert kind_of(scenario_from_dict(base("gemm"))).name == "gemm"


@pytest.mark.parametrize("backend", backend_names())
@pytest.mark.parametrize("kind", sorted(BASES))
def test_cli_and_sweep_give_the_same_metrics_for_the_same_point(kind, backend, tmp_path: Path):
    doc = base(kind)
    [point] = sweep_from_dict({"name": "p", "base": doc,
                               "axes": {"network.chunks": [1]}}).points()
    swept = run_point(point, backend)
    assert swept.status == "ok", swept.reason
    path, out = tmp_path / "s.yaml", tmp_path / "r.json"
    path.write_text(yaml.safe_dump(point.scenario))
    assert main(["simulate", str(path), "--backend", backend, "-q", "--json", str(out)]) == \
        EXIT_OK
    simulated = json.loads(out.read_text())["meta"]["metrics"]
    assert {k: v for k, v in swept.metrics.items() if k not in SWEEP_ONLY} == simulated
    assert simulated["workload"] == kind
    assert WORKLOAD_KINDS[kind].rank_key in simulated


def test_an_inference_sweep_ranks_by_output_tokens_per_second(tmp_path: Path):
    doc = base("llm_inference")
    sweep = sweep_from_dict({"name": "inf", "base": doc,
                             "axes": {"workload.parallel.batch": [1, 16]}})
    results = run_sweep(sweep, tmp_path, executor=LocalExecutor(1))
    assert all(r.status == "ok" for r in results)
    small, large = results
    # a bigger batch takes longer end to end but produces tokens faster: makespan ranking
    # would put batch 1 first, the inference rank key puts batch 16 first
    assert large.metrics["makespan_ns"] > small.metrics["makespan_ns"]
    assert large.metrics["output_tokens_per_s"] > small.metrics["output_tokens_per_s"]
    assert [r.values["workload.parallel.batch"] for r in ranking(results)] == [16, 1]
    assert ranking_kind(r.metrics for r in results).name == "llm_inference"
    console = Console(record=True, width=200)
    render_sweep(sweep, results, console)
    text = console.export_text()
    assert "output tokens/s, highest first" in text and "TTFT" in text


def test_training_and_old_points_rank_by_time_lowest_first():
    from des.app.sweep_types import PointResult

    old = [PointResult("a", 0, {}, "ok", metrics={"iteration_s": 2.0}),
           PointResult("b", 1, {}, "ok", metrics={"iteration_s": 1.0})]
    assert [r.index for r in ranking(old)] == [1, 0]
    mixed = [PointResult("c", 2, {}, "ok", metrics={"iteration_s": 0.5, "workload":
                                                    "llm_inference"}), *old]
    assert ranking_kind(r.metrics for r in mixed).name == GRAPH_KIND
    assert [r.index for r in ranking(mixed)] == [2, 1, 0]


# ---------------------------------------------------------------------- backends
def test_an_unknown_backend_fails_the_sweep_once_and_a_point_as_an_error(tmp_path: Path):
    scenario = scenario_from_dict(base("collectives"))
    with pytest.raises(BackendError, match="simpy, analytical"):
        run_backend("ns3", scenario.topology, scenario.graph)
    sweep = sweep_from_dict({"name": "b", "base": base("collectives"),
                             "axes": {"network.chunks": [1]}})
    with pytest.raises(BackendError, match="expected one of"):
        run_sweep(sweep, tmp_path, executor=LocalExecutor(1), backend="ns3")
    [point] = sweep.points()
    failed = run_point(point, "ns3")
    assert failed.status == "error" and "expected one of simpy, analytical" in failed.reason
