"""Sweeps that finish and report what they have: cheapest points first, a timeout or an
interrupt that still writes every file, cost-weighted progress, NPU counts without building a
topology per point, and a sweep whose points are all invalid failing loudly."""

from __future__ import annotations

import copy
import json
import multiprocessing
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import REPO, checkout_env, run_des

from des.app import sweep_npus
from des.app.cli_sweep import SweepBar, all_invalid
from des.app.sweep import run_sweep
from des.app.sweep_cost import estimates_path
from des.app.sweep_exec import LocalExecutor, estimate_cost, run_point
from des.app.sweep_load import sweep_from_dict
from des.app.sweep_results import load_done, results_path
from des.app.sweep_types import PointResult, SweepPoint, SweepProgress, SweepRun
from topologies import build
from topologies.npus import npu_count
from topologies.registry import register_topology

RING = {"topology": {"kind": "ring", "npus": 4, "bandwidth": "50 GB/s", "latency": "500 ns"},
        "workload": {"kind": "collectives",
                     "ops": [{"collective": "all_reduce", "size": "64 KiB"}]}}
REPEAT = "workload.ops"


def ops(repeat: int) -> list[dict[str, Any]]:
    return [{"collective": "all_reduce", "size": "64 KiB", "repeat": repeat}]


def make(axes: dict[str, list[Any]], base: dict[str, Any] = RING, **extra: Any):
    return sweep_from_dict({"name": "t", "base": copy.deepcopy(base), "axes": axes, **extra})


class Spy:
    """Runs points in this process, recording the order it was given them."""

    name = "spy"

    def __init__(self, stop_after: int | None = None) -> None:
        self.seen: list[int] = []
        self.stop_after = stop_after

    def run(self, points: list[SweepPoint], backend: str, constraints: list[str]
            ) -> Iterator[PointResult]:
        for point in points:
            if self.stop_after is not None and len(self.seen) == self.stop_after:
                raise KeyboardInterrupt
            self.seen.append(point.index)
            yield run_point(point, backend, constraints)


def table(results: list[PointResult]) -> list[tuple[Any, ...]]:
    return [(r.index, r.key, r.status, r.reason,
             {k: v for k, v in r.metrics.items() if k != "wall_s"}) for r in results]


# ---------------------------------------------------------------------- cheapest first
def test_simpy_points_run_cheapest_first_by_graph_nodes(tmp_path):
    sweep = make({REPEAT: [ops(3), ops(1), ops(4), ops(2)]})
    spy = Spy()
    results = run_sweep(sweep, tmp_path, executor=spy)
    assert spy.seen == [1, 3, 0, 2]  # repeat 1, 2, 3, 4: fewest nodes first
    costs = json.loads(estimates_path(tmp_path).read_text())
    assert sorted(costs.values()) == [4.0, 8.0, 12.0, 16.0]  # 4 ranks x repeat
    assert [r.index for r in results] == [0, 1, 2, 3]  # the table is in point order


def test_the_order_does_not_change_the_results(tmp_path):
    sweep = make({REPEAT: [ops(3), ops(1), ops(2)]})
    first = run_sweep(sweep, tmp_path / "ordered", executor=Spy())
    plain = run_sweep(sweep, tmp_path / "plain", executor=Spy(), backend="simpy")
    unordered = [run_point(p, "simpy") for p in
                 (sweep.screen(q)[0] for q in sweep.points())]
    assert table(first) == table(plain) == table(unordered)


def test_analytical_sweeps_run_in_point_order_without_estimates(tmp_path):
    sweep = make({REPEAT: [ops(3), ops(1), ops(2)]})
    spy = Spy()
    run_sweep(sweep, tmp_path, executor=spy, backend="analytical")
    assert spy.seen == [0, 1, 2]
    assert not estimates_path(tmp_path).exists()


def test_estimates_are_kept_and_not_worked_out_again(tmp_path, monkeypatch):
    sweep = make({REPEAT: [ops(2), ops(1)]})
    run_sweep(sweep, tmp_path, executor=Spy(stop_after=1))
    import des.app.sweep_exec as sweep_exec

    monkeypatch.setattr(sweep_exec, "estimate_cost", lambda p: pytest.fail("re-estimated"))
    results = run_sweep(sweep, tmp_path, executor=Spy())
    assert [r.status for r in results] == ["ok", "ok"]


def test_a_point_that_fails_to_build_costs_nothing_and_runs_first():
    point = SweepPoint(0, "k", {}, {"name": "x", "topology": {"kind": "ring"}})
    assert estimate_cost(point) == ("k", 0.0)


# ---------------------------------------------------------------------- stopping
def test_an_interrupt_returns_what_finished_and_a_rerun_resumes(tmp_path):
    sweep = make({REPEAT: [ops(1), ops(2), ops(3)]})
    stopped = run_sweep(sweep, tmp_path, executor=Spy(stop_after=1))
    assert isinstance(stopped, SweepRun)
    assert (stopped.stopped, len(stopped), stopped.cut_off, stopped.total) == (
        "interrupted", 1, 2, 3)
    assert not stopped.complete
    assert len(load_done(tmp_path)) == 1
    spy = Spy()
    again = run_sweep(sweep, tmp_path, executor=spy)
    assert spy.seen == [1, 2] and again.complete and len(again) == 3


def test_a_deadline_in_the_past_starts_nothing_and_says_timeout(tmp_path):
    sweep = make({REPEAT: [ops(1), ops(2)]}, timeout=1e-9)
    spy = Spy()
    run = run_sweep(sweep, tmp_path, executor=spy)
    assert spy.seen == [] and run.stopped == "timeout" and run.cut_off == 2


def test_the_local_pool_kills_a_running_point_at_the_deadline():
    slow = make({"network.chunks": [64]}, base=SLOW_BASE)
    point = slow.screen(slow.points()[0])[0]
    results = list(LocalExecutor(1).run([point], "simpy", [],
                                        deadline=time.monotonic() + 0.5))
    assert results == []
    # no orphan worker: the killed process is reaped (give a loaded machine a moment)
    stop = time.monotonic() + 10.0
    while multiprocessing.active_children() and time.monotonic() < stop:
        time.sleep(0.05)
    assert multiprocessing.active_children() == []


SLOW_BASE = {  # message by message (a derated link breaks lockstep): about a minute
    "topology": {"kind": "ring", "npus": 16, "bandwidth": "50 GB/s", "latency": "500 ns"},
    "faults": {"links": [{"link": [1, 2], "derate": 0.5}]},
    "network": {"chunks": 64},
    "workload": {"kind": "collectives",
                 "ops": [{"collective": "all_reduce", "size": "256 MiB", "repeat": 300}]},
}
CUT_SWEEP = """\
name: cut
base:
  topology: {kind: ring, npus: 16, bandwidth: 50 GB/s, latency: 500 ns}
  faults: {links: [{link: [1, 2], derate: 0.5}]}
  network: {chunks: 64}
  workload: {kind: collectives, ops: [{collective: all_reduce, size: 256 MiB, repeat: 1}]}
axes:
  workload.ops:
    - [{collective: all_reduce, size: 256 MiB, repeat: 300}]
    - [{collective: all_reduce, size: 64 KiB, repeat: 1}]
    - [{collective: all_reduce, size: 64 KiB, repeat: 2}]
"""


def test_a_timed_out_sweep_writes_its_tables_and_exits_3(tmp_path):
    spec, out = tmp_path / "cut.yaml", tmp_path / "out"
    spec.write_text(CUT_SWEEP)
    done = run_des("sweep", str(spec), "--out", str(out), "--timeout", "4", "--workers", "1")
    assert done.returncode == 3, done.stderr
    assert "2 of 3 points finished, 1 cut off" in done.stdout
    assert "rerun the same command to resume" in done.stdout
    assert len(results_path(out).read_text().splitlines()) == 2
    rows = json.loads((out / "results.json").read_text())
    assert sorted(r["status"] for r in rows) == ["ok", "ok"]
    assert (out / "results.csv").read_text().count("\n") == 3  # header and two rows
    assert "best" in done.stdout


def test_sigterm_stops_a_sweep_like_a_timeout(tmp_path):
    spec, out = tmp_path / "cut.yaml", tmp_path / "out"
    spec.write_text(CUT_SWEEP)
    proc = subprocess.Popen([sys.executable, "-m", "des", "sweep", str(spec), "--out", str(out),
                             "--workers", "2"], cwd=REPO, env=checkout_env(COLUMNS="200"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    path = results_path(out)
    try:
        deadline = time.monotonic() + 60
        while not (path.is_file() and path.read_text().count("\n") >= 2):
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "the cheap points did not finish"
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 3, stderr
    assert "Traceback" not in stderr  # killed workers die quietly
    assert "interrupted" in stdout and "1 cut off" in stdout
    assert (out / "results.json").is_file()


def test_a_timeout_in_the_sweep_file_is_read_in_seconds():
    assert make({REPEAT: [ops(1)]}, timeout="2 min").timeout == 120
    assert make({REPEAT: [ops(1)]}, timeout=90).timeout == 90
    with pytest.raises(Exception, match="timeout"):
        make({REPEAT: [ops(1)]}, timeout=0)


# ---------------------------------------------------------------------- progress
def test_progress_is_weighted_by_the_estimated_costs(tmp_path):
    sweep = make({REPEAT: [ops(1), ops(3)]})
    seen: list[SweepProgress] = []
    run_sweep(sweep, tmp_path, executor=Spy(), progress=seen.append)
    running = [s for s in seen if s.phase == "running"]
    assert [s.cost_done for s in running] == [0.0, 4.0, 16.0]
    assert {s.cost_total for s in running} == {16.0}
    assert running[-1].done == running[-1].total == 2
    assert any(s.phase == "estimating" for s in seen)


def test_the_progress_bar_total_is_the_cost_total():
    from rich.console import Console

    bar = SweepBar(Console(file=open("/dev/null", "w")))  # noqa: SIM115
    bar(SweepProgress("running", 1, 2, 4.0, 16.0))
    task = bar.progress.tasks[0]
    assert (task.total, task.completed, task.fields["points"]) == (16.0, 4.0, "1/2 points")


# ---------------------------------------------------------------------- screening npus
@pytest.mark.parametrize("kind, params", [
    ("ring", {"npus": 6}), ("fc", {"npus": 5}), ("switch", {"npus": 3}),
    ("mesh2d", {"x": 3, "y": 2}), ("torus2d", {"x": 4, "y": 4}),
    ("torus3d", {"x": 2, "y": 3, "z": 4}), ("fat_tree", {"k": 4}),
    ("leaf_spine", {"leaves": 3, "hosts_per_leaf": 5, "spines": 2}),
    ("superpod", {"nodes": 3, "nic_bandwidth": 50.0}),
    ("superpod", {"nodes": 2, "gpus_per_node": 4, "nic_bandwidth": 50.0}),
    ("hierarchical", {"dims": [{"kind": "ring", "size": 4}, {"kind": "switch", "size": 3}]}),
])
def test_the_closed_form_npu_count_matches_the_built_topology(kind, params):
    assert npu_count(kind, params) == build(kind, {"bandwidth": 50.0, **params}).num_npus


def test_no_closed_form_for_what_the_builder_would_refuse_or_does_not_know():
    assert npu_count("fat_tree", {"k": 3}) is None
    assert npu_count("ring", {"npus": 1}) is None
    assert npu_count("torus2d", {"x": 2}) is None
    assert npu_count("nonesuch", {"npus": 4}) is None


def test_screening_builds_no_topology_of_a_built_in_kind(monkeypatch):
    monkeypatch.setattr(sweep_npus, "build_topology", lambda *a: pytest.fail("built"))
    sweep = make({"topology.npus": [2, 4, 8], "topology.bandwidth": ["50 GB/s", "100 GB/s"],
                  REPEAT: [ops(1), ops(2)]}, constraints=["npus >= 4"])
    reasons = [sweep.screen(p)[1] for p in sweep.points()]
    assert reasons.count("") == 8 and reasons.count("violates 'npus >= 4'") == 4


def test_screening_builds_each_distinct_custom_topology_once(tmp_path, monkeypatch):
    calls = []
    real = sweep_npus.build_topology

    def counting(sec):
        calls.append(1)
        return real(sec)

    monkeypatch.setattr(sweep_npus, "build_topology", counting)
    (tmp_path / "line.yaml").write_text(
        "npus: 3\nlinks:\n  - {src: 0, dst: 1, bandwidth: 50 GB/s}\n"
        "  - {src: 1, dst: 2, bandwidth: 50 GB/s}\n")
    base = copy.deepcopy(RING)
    base["topology"] = {"kind": "custom", "file": str(tmp_path / "line.yaml")}
    sweep = make({REPEAT: [ops(1), ops(2), ops(3)], "network.chunks": [1, 2]}, base=base,
                 constraints=["npus == 3"])
    assert [sweep.screen(p)[1] for p in sweep.points()] == [""] * 6
    assert len(calls) == 1


def test_a_registered_kind_is_built_once_to_learn_its_npus(monkeypatch):
    @register_topology("screen_line", required=("npus",))
    def line(bandwidth, latency, npus):
        return build("ring", {"npus": npus, "bandwidth": bandwidth, "latency": latency})

    calls = []
    real = sweep_npus.build_topology
    monkeypatch.setattr(sweep_npus, "build_topology", lambda sec: calls.append(1) or real(sec))
    base = copy.deepcopy(RING)
    base["topology"] = {"kind": "screen_line", "npus": 4, "bandwidth": "50 GB/s"}
    sweep = make({REPEAT: [ops(1), ops(2), ops(3)]}, base=base, constraints=["npus == 4"])
    assert [sweep.screen(p)[1] for p in sweep.points()] == ["", "", ""]
    assert len(calls) == 1


# ---------------------------------------------------------------------- failing loudly
MISTYPED = """\
name: mistyped
base:
  topology: {kind: ring, npus: 4, bandwidth: 50 GB/s, latency: 500 ns}
  workload: {kind: collectives, ops: [{collective: all_reduce, size: 64 KiB}]}
axes:
  workload.paralel.tp: [1, 2]
"""


def test_a_sweep_whose_points_are_all_invalid_exits_2_naming_the_key(tmp_path):
    spec = tmp_path / "mistyped.yaml"
    spec.write_text(MISTYPED)
    done = run_des("sweep", str(spec), "--out", str(tmp_path / "out"), "--workers", "1")
    assert done.returncode == 2, done.stdout
    assert "all 2 points are invalid" in done.stderr and "paralel" in done.stderr


def test_a_sweep_with_some_valid_points_is_not_all_invalid(tmp_path):
    sweep = make({"topology.npus": [2, 4]}, constraints=["npus == 4"])
    results = run_sweep(sweep, tmp_path, executor=Spy())
    assert [r.status for r in results] == ["invalid", "ok"]
    assert all_invalid(results) == ""
    none_fit = run_sweep(make({"topology.npus": [2, 3]}, constraints=["npus == 4"]),
                         tmp_path / "none", executor=Spy())
    assert "violates 'npus == 4'" in all_invalid(none_fit)
