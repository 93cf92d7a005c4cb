"""Design-space sweeps: constraints, failing points, resuming, the Dask executor, tables,
ranking and plots. Every scenario here is tiny (a 4-NPU ring or switch, a 2-layer model)."""

from __future__ import annotations

import copy
import csv
import json
import math
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
from helpers import LLM_BASE, REPO, checkout_env

from des.app.plots import PlotError
from des.app.sweep import run_sweep
from des.app.sweep_exec import LocalExecutor, run_point
from des.app.sweep_load import sweep_from_dict
from des.app.sweep_results import load_done, ranking, results_path, write_table
from des.app.sweep_types import PointResult, SweepError, SweepPoint

PNG = b"\x89PNG\r\n\x1a\n"

RING_BASE = {
    "topology": {"kind": "ring", "npus": 4, "bandwidth": "50 GB/s", "latency": "500 ns"},
    "workload": {"kind": "collectives",
                 "ops": [{"collective": "all_reduce", "size": "256 KiB"}]},
}
TP, DP = "workload.parallel.tp", "workload.parallel.dp"


def make_sweep(base: dict[str, Any], axes: dict[str, list[Any]], **extra: Any):
    return sweep_from_dict({"name": "t", "base": copy.deepcopy(base), "axes": axes, **extra})


def lines(out: Path) -> list[str]:
    return results_path(out).read_text().splitlines()


def keys_on_disk(out: Path) -> list[str]:
    return [json.loads(line)["key"] for line in lines(out)]


class Spy:
    """An executor that records the points it is given and runs them in this process."""

    name = "spy"

    def __init__(self) -> None:
        self.seen: list[str] = []

    def run(self, points: list[SweepPoint], backend: str, constraints: list[str]
            ) -> Iterator[PointResult]:
        for point in points:
            self.seen.append(point.key)
            yield run_point(point, backend, constraints)


@pytest.fixture(scope="module")
def llm_results(tmp_path_factory: pytest.TempPathFactory) -> list[PointResult]:
    """tp x dp over [1, 2, 4] on 4 NPUs: three runnable points, six filtered out."""
    sweep = make_sweep(LLM_BASE, {TP: [1, 2, 4], DP: [1, 2, 4]},
                       constraints=["tp * dp == npus"])
    return run_sweep(sweep, tmp_path_factory.mktemp("llm"), executor=LocalExecutor(1))


# ---------------------------------------------------------------------- constraints
def test_constraint_runs_exactly_the_valid_combinations(llm_results):
    assert [(r.values[TP], r.values[DP]) for r in llm_results] == [
        (tp, dp) for tp in (1, 2, 4) for dp in (1, 2, 4)]
    ran = {(r.values[TP], r.values[DP]) for r in llm_results if r.status == "ok"}
    assert ran == {(1, 4), (2, 2), (4, 1)}
    for r in llm_results:
        if (r.values[TP], r.values[DP]) in ran:
            assert r.metrics["iteration_s"] > 0 and r.reason == ""
        else:
            assert r.status == "invalid" and not r.metrics
            assert "tp * dp == npus" in r.reason, r.reason


def test_constraint_filters_points_the_scenario_would_accept(tmp_path):
    # every combination builds; only the constraint rules some out
    sweep = make_sweep(RING_BASE, {"network.chunks": [1, 2, 4], "network.comm_streams": [1, 2, 4]},
                       constraints=["chunks * comm_streams == npus"])
    results = run_sweep(sweep, tmp_path, executor=LocalExecutor(1))
    ok = {(r.values["network.chunks"], r.values["network.comm_streams"])
          for r in results if r.status == "ok"}
    assert ok == {(1, 4), (2, 2), (4, 1)}
    bad = [r for r in results if r.status != "ok"]
    assert len(bad) == 6
    assert all(r.status == "invalid" and "chunks * comm_streams == npus" in r.reason
               for r in bad)


def test_constraint_with_an_unknown_name_lists_the_known_ones(tmp_path):
    sweep = make_sweep(RING_BASE, {"network.chunks": [1, 2]},
                       constraints=["chunks * warp_factor <= npus"])
    results = run_sweep(sweep, tmp_path, executor=LocalExecutor(1))
    assert [r.status for r in results] == ["invalid", "invalid"]
    for r in results:
        assert "warp_factor" in r.reason and "known" in r.reason
        assert "chunks" in r.reason and "npus" in r.reason


@pytest.mark.parametrize("text", [
    "__import__('os').system('touch pwned') == 0",
    "open('f') == 1",
    "(lambda: 1)() == 1",
    "[x for x in (1, 2)] == 1",
    "{x for x in (1, 2)} == 1",
    "npus.bit_length() == 3",
    "chunks.__class__.__init__() == 1",
    "chunks if chunks else npus",
    "(chunks := 3) == 3",
    "npus[0] == 1",
    "f'{npus}' == '4'",
])
def test_unsafe_constraints_are_refused_when_loading(text, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SweepError, match="not allowed"):
        make_sweep(RING_BASE, {"network.chunks": [1]}, constraints=[text])
    assert not (tmp_path / "pwned").exists()


def test_an_attribute_chain_is_a_name_not_python_attribute_access(tmp_path):
    # allowed for dotted keys, but looked up as a name: never reaches a Python object
    sweep = make_sweep(RING_BASE, {"network.chunks": [1]},
                       constraints=["chunks.__class__ == npus.__class__"])
    [result] = run_sweep(sweep, tmp_path, executor=LocalExecutor(1))
    assert result.status == "invalid" and "chunks.__class__" in result.reason


@pytest.mark.parametrize("text", [
    "chunks < 'a'",
    "2.0 ** (chunks * 1000) > 1",
])
def test_a_constraint_that_cannot_be_evaluated_makes_the_point_invalid(text, tmp_path):
    sweep = make_sweep(RING_BASE, {"network.chunks": [1, 2]}, constraints=[text])
    results = run_sweep(sweep, tmp_path, executor=LocalExecutor(1))
    assert results[1].status == "invalid" and results[1].reason
    assert len(lines(tmp_path)) == 2


def test_run_point_never_raises_on_a_constraint_that_cannot_be_evaluated():
    [point] = make_sweep(RING_BASE, {"network.chunks": [1]}).points()
    result = run_point(point, "simpy", ["chunks < 'a'"])
    assert result.status == "invalid" and "chunks < 'a'" in result.reason


# ---------------------------------------------------------------------- failing points
def test_points_that_fail_to_build_or_to_run_are_recorded_and_the_sweep_goes_on(tmp_path):
    # no hardware: builds but cannot run (error); tp=3 on 4 NPUs: does not build (invalid)
    sweep = make_sweep(LLM_BASE, {"hardware": [None, "A100-SXM4-80GB"], TP: [3, 1]})
    results = run_sweep(sweep, tmp_path, executor=LocalExecutor(1))
    status = {(r.values["hardware"], r.values[TP]): r for r in results}
    assert status[(None, 1)].status == "error"
    assert "hardware" in status[(None, 1)].reason
    for hw in (None, "A100-SXM4-80GB"):
        assert status[(hw, 3)].status == "invalid"
        assert "3" in status[(hw, 3)].reason and status[(hw, 3)].reason
    assert status[("A100-SXM4-80GB", 1)].status == "ok"
    assert status[("A100-SXM4-80GB", 1)].metrics["iteration_s"] > 0
    assert len(lines(tmp_path)) == 4  # every point recorded, failures included


def test_repeated_axis_values_are_refused_or_kept_apart(tmp_path):
    try:
        sweep = make_sweep(RING_BASE, {"network.chunks": [1, 1]})
    except SweepError:
        return
    results = run_sweep(sweep, tmp_path, executor=LocalExecutor(1))
    assert sorted(r.index for r in results) == [0, 1]


def test_run_point_turns_a_bad_scenario_into_a_result():
    sweep = make_sweep(RING_BASE, {"network.chunks": [0, 2]})
    bad, good = (run_point(p, "simpy", []) for p in sweep.points())
    assert bad.status == "invalid" and "chunks" in bad.reason
    assert good.status == "ok" and good.metrics["iteration_s"] > 0


# ---------------------------------------------------------------------- resuming
SIZES = ["64 KiB", "128 KiB", "256 KiB", "512 KiB"]


def size_sweep():
    ops = [[{"collective": "all_reduce", "size": s}] for s in SIZES]
    return make_sweep(RING_BASE, {"workload.ops": ops})


def test_a_rerun_of_a_finished_sweep_runs_nothing(tmp_path):
    sweep = size_sweep()
    first = run_sweep(sweep, tmp_path, executor=LocalExecutor(1))
    spy = Spy()
    again = run_sweep(sweep, tmp_path, executor=spy)
    assert spy.seen == []
    assert [asdict(r) for r in again] == [asdict(r) for r in first]
    assert len(lines(tmp_path)) == len(SIZES)


def test_a_rerun_runs_exactly_the_points_missing_from_disk(tmp_path):
    sweep = size_sweep()
    run_sweep(sweep, tmp_path, executor=LocalExecutor(1))
    kept = lines(tmp_path)
    results_path(tmp_path).write_text("\n".join(kept[:-1]) + "\n")
    spy = Spy()
    results = run_sweep(sweep, tmp_path, executor=spy)
    assert spy.seen == [json.loads(kept[-1])["key"]]
    assert [r.status for r in results] == ["ok"] * len(SIZES)
    assert sorted(keys_on_disk(tmp_path)) == sorted(p.key for p in sweep.points())


def test_a_torn_last_line_is_ignored_and_its_point_rerun(tmp_path):
    sweep = size_sweep()
    run_sweep(sweep, tmp_path, executor=LocalExecutor(1))
    kept = lines(tmp_path)
    results_path(tmp_path).write_text("\n".join(kept[:-1]) + "\n" + kept[-1][:40])
    assert len(load_done(tmp_path)) == len(SIZES) - 1
    spy = Spy()
    results = run_sweep(sweep, tmp_path, executor=spy)
    assert spy.seen == [json.loads(kept[-1])["key"]]
    assert [r.status for r in results] == ["ok"] * len(SIZES)


def test_after_a_torn_line_the_resumed_result_is_kept_on_disk(tmp_path):
    sweep = size_sweep()
    run_sweep(sweep, tmp_path, executor=LocalExecutor(1))
    kept = lines(tmp_path)
    results_path(tmp_path).write_text("\n".join(kept[:-1]) + "\n" + kept[-1][:40])
    run_sweep(sweep, tmp_path, executor=LocalExecutor(1))
    assert len(load_done(tmp_path)) == len(SIZES)
    spy = Spy()
    run_sweep(sweep, tmp_path, executor=spy)
    assert spy.seen == []


KILL_SWEEP = """\
name: killed
base:
  topology: {kind: ring, npus: 8, bandwidth: 50 GB/s, latency: 500 ns}
  workload:
    kind: collectives
    ops: [{collective: all_reduce, size: 64 MiB, repeat: 3}]
axes:
  network.chunks: [40, 41, 42, 43, 44, 45, 46, 47, 48, 49]
"""


def test_a_killed_sweep_resumes_without_repeating_or_losing_points(tmp_path):
    spec, out = tmp_path / "killed.yaml", tmp_path / "out"
    spec.write_text(KILL_SWEEP)
    code = ("import sys\nfrom des.app.sweep import run_sweep\n"
            "from des.app.sweep_exec import LocalExecutor\n"
            "from des.app.sweep_load import load_sweep\n"
            "run_sweep(load_sweep(sys.argv[1]), sys.argv[2], executor=LocalExecutor(1))\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(spec), str(out)], cwd=REPO,
                            env=checkout_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    path = results_path(out)
    try:
        deadline = time.monotonic() + 30
        while not (path.is_file() and path.read_text().count("\n") >= 1):
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "no result line within 30 s"
            time.sleep(0.005)
        proc.kill()
    finally:
        proc.wait(timeout=30)
        proc.stderr.close()
    before = keys_on_disk(out)
    assert 1 <= len(before) < 10, "the sweep should have been killed part-way"
    from des.app.sweep_load import load_sweep

    sweep = load_sweep(spec)
    results = run_sweep(sweep, out, executor=LocalExecutor(1))
    after = keys_on_disk(out)
    assert after[:len(before)] == before
    assert sorted(after) == sorted(p.key for p in sweep.points())  # each exactly once
    assert [r.status for r in results] == ["ok"] * 10


# ---------------------------------------------------------------------- Dask
def table(results: list[PointResult]) -> list[tuple[Any, ...]]:
    return [(r.index, r.key, r.status, r.reason,
             {k: v for k, v in r.metrics.items() if k != "wall_s"})
            for r in sorted(results, key=lambda r: r.index)]


def same_table(a: list[PointResult], b: list[PointResult]) -> None:
    ta, tb = table(a), table(b)
    assert [row[:4] for row in ta] == [row[:4] for row in tb]
    for (*_, ma), (*_, mb) in zip(ta, tb, strict=True):
        assert ma.keys() == mb.keys()
        for k in ma:
            if isinstance(ma[k], float):
                assert math.isclose(ma[k], mb[k], rel_tol=1e-12), k
            else:
                assert ma[k] == mb[k], k


def dask_sweep():
    # 12 points: 6 run, 6 are invalid inside the worker (comm_streams 0 does not build)
    return make_sweep(RING_BASE, {"topology.kind": ["ring", "switch"],
                                  "network.chunks": [1, 2, 4],
                                  "network.comm_streams": [2, 0]})


def test_dask_local_cluster_gives_the_same_table_as_the_local_executor(tmp_path, monkeypatch):
    dd = pytest.importorskip("dask.distributed")
    from des.app.sweep_dask import DaskExecutor

    started = []

    class Recording(dd.LocalCluster):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            started.append(self)
            self.started_with = (len(self.workers), kwargs)

    monkeypatch.setattr(dd, "LocalCluster", Recording)
    sweep = dask_sweep()
    local = run_sweep(sweep, tmp_path / "local", executor=LocalExecutor(1))
    executor = DaskExecutor(workers=2)
    assert executor.name == "dask"
    distributed = run_sweep(sweep, tmp_path / "dask", executor=executor)
    assert [r.status for r in local].count("ok") == 6
    same_table(local, distributed)
    assert len(started) == 1
    n_workers, kwargs = started[0].started_with
    assert n_workers == 2 and kwargs["processes"] and kwargs["threads_per_worker"] == 1
    assert started[0].status.name == "closed"  # no leaked cluster


def test_dask_executor_on_a_running_scheduler_leaves_it_running(tmp_path):
    dd = pytest.importorskip("dask.distributed")
    from des.app.sweep_dask import DaskExecutor

    sweep = size_sweep()
    local = run_sweep(sweep, tmp_path / "local", executor=LocalExecutor(1))
    with dd.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                         dashboard_address=None) as cluster:
        results = run_sweep(sweep, tmp_path / "dask",
                            executor=DaskExecutor(cluster.scheduler_address))
        assert cluster.status.name == "running"
        with dd.Client(cluster) as client:  # a given client is used, not closed
            again = list(DaskExecutor(client=client).run(sweep.points(), "simpy", []))
            assert client.status == "running"
    same_table(local, results)
    same_table(local, again)


def test_dask_missing_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "dask.distributed", None)
    from des.app.sweep_dask import DaskExecutor

    with pytest.raises(SweepError, match=r"pip install 'des\[cluster\]'"):
        DaskExecutor()


# ---------------------------------------------------------------------- table and ranking
def test_write_table_has_every_axis_and_metric_and_round_trips(llm_results, tmp_path):
    csv_path, json_path = write_table(llm_results, tmp_path)
    with csv_path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames
        rows = list(reader)
    ok = next(r for r in llm_results if r.status == "ok")
    assert llm_results[0].status == "invalid"  # metric columns come from later rows
    assert {TP, DP, "status", "reason", *ok.metrics} <= set(header)
    assert len(header) == len(set(header))
    assert len(rows) == len(llm_results)
    for row, r in zip(rows, llm_results, strict=True):
        assert (row[TP], row[DP], row["status"]) == (str(r.values[TP]), str(r.values[DP]),
                                                   r.status)
        if r.status == "ok":
            assert float(row["iteration_s"]) == pytest.approx(r.metrics["iteration_s"],
                                                              rel=1e-12)
    place = {r.key: n for n, r in enumerate(ranking(llm_results), start=1)}
    assert json.loads(json_path.read_text()) == [{**r.row(), "rank": place.get(r.key, "")}
                                                 for r in llm_results]


def test_write_table_keeps_an_axis_named_like_a_metric(tmp_path):
    sweep = make_sweep(RING_BASE, {"topology": ["small", "big"]},
                       groups={"topology": {"small": {"topology.npus": 4},
                                            "big": {"topology.npus": 8}}})
    results = run_sweep(sweep, tmp_path, executor=LocalExecutor(1))
    csv_path, _ = write_table(results, tmp_path)
    with csv_path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {"small", "big"} <= {v for row in rows for v in row.values()}
    assert len(rows[0]) == 1 + 2 + len(results[0].metrics) + 1  # axis, status, reason, rank


def test_ranking_is_fastest_first_and_memory_limit_filters(llm_results):
    ok = [r for r in llm_results if r.status == "ok"]
    ranked = ranking(llm_results)
    assert [r.key for r in ranked] == [r.key for r in sorted(
        ok, key=lambda r: r.metrics["iteration_s"])]
    times = [r.metrics["iteration_s"] for r in ranked]
    assert times == sorted(times) and len(set(times)) == 3
    peaks = sorted(r.metrics["peak_memory_bytes"] for r in ok)
    limit = (peaks[0] + peaks[1]) / 2
    fits = ranking(llm_results, memory_limit=limit)
    assert [r.metrics["peak_memory_bytes"] for r in fits] == [peaks[0]]
    assert ranking(llm_results, memory_limit=peaks[-1]) == ranked


# ---------------------------------------------------------------------- plots
def fake(index: int, values: dict[str, Any], time_s: float | None, peak: float | None = None,
         status: str = "ok", oom: bool = False) -> PointResult:
    metrics = {} if time_s is None else {"iteration_s": time_s, "peak_memory_bytes": peak,
                                         "out_of_memory": oom}
    return PointResult(f"k{index}", index, values, status, "", metrics)


def test_pareto_front_keeps_only_undominated_points():
    from des.app.sweep_plots import pareto_front

    pts = [fake(0, {}, 3.0, 10), fake(1, {}, 2.0, 20), fake(2, {}, 2.5, 30),  # 2: dominated
           fake(3, {}, 1.0, 40), fake(4, {}, 1.0, 50),  # 4: same time, more memory
           fake(5, {}, 3.0, 10), fake(6, {}, None, status="invalid"), fake(7, {}, 0.5, 90,
                                                                         status="error")]
    assert [r.index for r in pareto_front(pts)] == [0, 1, 3]


def test_point_labels_are_compact():
    from des.app.sweep_plots import point_label

    r = fake(0, {TP: 8, DP: 8, "workload.parallel.cp": 1, "workload.parallel.recompute": "full",
                 "topology": {"kind": "torus3d", "x": 4}}, 1.0)
    assert point_label(r, list(r.values)) == "tp8 dp8 cp1 full torus3d"


def test_sweep_plots_write_pngs(llm_results, tmp_path):
    pytest.importorskip("matplotlib")
    from des.app.sweep_plots import compare, pareto, time_vs_strategy

    oom = [*llm_results, fake(99, {TP: 8, DP: 8}, 1e-3, 90 * 2**30, oom=True)]
    bars = time_vs_strategy(oom, tmp_path / "bars" / "time.png", top=3)
    front = pareto(oom, tmp_path / "pareto.png", memory_limit=80 * 2**30)
    rows = [fake(i, {"topology.kind": kind, "network.chunks": c}, 1e-3 * (i + 1))
            for i, (kind, c) in enumerate((k, c) for k in ("ring", "switch", "torus2d")
                                          for c in (1, 4))]
    rows.append(fake(9, {"topology.kind": "mesh2d", "network.chunks": 1}, None, status="error"))
    grouped = compare(rows, tmp_path / "compare.png", by="kind")
    for path in (bars, front, grouped):
        assert path.read_bytes()[:8] == PNG
    with pytest.raises(PlotError, match="not an axis"):
        compare(rows, tmp_path / "x.png", by="bandwidth")
    with pytest.raises(PlotError, match="no finished"):
        time_vs_strategy([r for r in llm_results if r.status != "ok"], tmp_path / "y.png")


def test_sweep_plots_without_matplotlib_raise_plot_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    from des.app.sweep_plots import time_vs_strategy

    with pytest.raises(PlotError, match=r"des\[plot\]"):
        time_vs_strategy([fake(0, {TP: 1}, 1.0)], tmp_path / "t.png")


def test_rerunning_a_sweep_with_another_backend_does_not_reuse_its_results(tmp_path):
    sweep = make_sweep(RING_BASE, {"network.chunks": [1, 2]})
    first = run_sweep(sweep, tmp_path, executor=LocalExecutor(1), backend="analytical")
    second = run_sweep(sweep, tmp_path, executor=LocalExecutor(1), backend="simpy")
    assert {r.key for r in first}.isdisjoint({r.key for r in second})
    assert [r.metrics["backend"] for r in second] == ["simpy", "simpy"]
