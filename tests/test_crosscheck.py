"""Export to AstraSim inputs, the cross-check with a (fake) AstraSim binary, the drop-in run."""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path

import pytest
from helpers import ASTRA_REFERENCE

import topologies as topo
from astra_bridge.configs import load_network, load_system
from astra_bridge.crosscheck import crosscheck, find_binary
from astra_bridge.export import ExportError, export, network_dims
from astra_bridge.inputs import load_inputs
from astra_bridge.report import from_result, parse_astra_output
from des.app.cli import main
from des.app.config import load_scenario
from des.core.graph import EventGraph
from des.core.schema import SchemaError
from des.sim.engine import simulate
from des.sim.options import EngineOptions
from topologies.faults import LinkFault, set_fault


def fake_binary(tmp_path: Path, body: str) -> Path:
    """An executable that plays AstraSim: ``body`` is Python run with the flags in argv."""
    path = tmp_path / "fake_astra"
    path.write_text(f"#!{sys.executable}\nimport sys, time\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def small_graph() -> tuple[EventGraph, topo.Topology]:
    g = EventGraph(4, "small")
    pre = {r: (g.compute(r, duration_ns=5000.0),) for r in range(4)}
    g.collective_all("all_reduce", 2**20, deps=pre)
    return g, topo.ring(4, 50.0, 500.0)


def test_export_writes_files_astra_reads_back(tmp_path):
    g, t = small_graph()
    files = export(g, t, tmp_path / "x", options=EngineOptions(chunks=4))
    net = load_network(files.network)
    assert net.kinds == ("ring",) and net.sizes == (4,)
    assert net.bandwidths[0] == pytest.approx(50.0, rel=1e-9)  # GB/s(2^30) round trip
    system = load_system(files.system, dims=1)
    assert system.splits == 4
    assert files.flags()[0] == "--workload-configuration=workload/workload"
    inputs = load_inputs(files.workload_prefix, files.system, files.network,
                         remote_memory=files.remote_memory)
    assert len(inputs.graph) == len(g)


@pytest.mark.parametrize(("spec", "message"), [
    ("mesh2d:4x4", "nearest stack it can is Ring 4 x Ring 4"),
    ("fattree:k=4", "Switch 16"),
    ("ring:4:uni", "bidirectional"),
])
def test_inexpressible_topologies_are_refused_with_the_nearest_stack(spec, message):
    with pytest.raises(ExportError, match=message):
        network_dims(topo.parse_spec(spec))


def test_faulty_topologies_are_refused():
    t = topo.ring(4, 50.0, 500.0)
    set_fault(t, LinkFault(0, 1, derate=0.5))
    with pytest.raises(ExportError, match="no faulty or derated links"):
        network_dims(t)


def test_torus_exports_as_a_stack_of_rings():
    dims = network_dims(topo.torus2d(4, 2, 50.0, 500.0))
    assert [(d["topology"], d["npus"]) for d in dims] == [("Ring", 4), ("Ring", 2)]


def test_crosscheck_without_binary_compares_des_with_itself_and_keeps_inputs(tmp_path):
    g, t = small_graph()
    check = crosscheck(g, t, tmp_path / "cc", options=EngineOptions.astra_compat())
    assert check.astra is None and check.overall_difference() is None
    direct = simulate(t, g, options=EngineOptions.astra_compat())
    # the exported files give des the same answer as the graph they came from
    assert max(r.finished_ns for r in check.des_compat.values()) == pytest.approx(
        direct.makespan_ns, rel=1e-9)
    assert (tmp_path / "cc" / "workload" / "workload.0.et").exists()
    assert check.critical and check.critical[-1].kind == "collective"


def test_crosscheck_with_a_binary_parses_and_compares(tmp_path):
    g, t = small_graph()
    ours = crosscheck(g, t, tmp_path / "a", options=EngineOptions.astra_compat())
    finish = max(r.finished_ns for r in ours.des_compat.values())
    body = (f"assert any(a.startswith('--workload-configuration=') for a in sys.argv)\n"
            f"for r in range(4): print(f'sys[{{r}}] finished, {int(finish * 1.1)} cycles, "
            f"exposed communication 7 cycles.')")
    check = crosscheck(g, t, tmp_path / "b", options=EngineOptions.astra_compat(),
                       binary=fake_binary(tmp_path, body))
    assert check.astra.ok and check.astra.exit_code == 0
    assert check.overall_difference() == pytest.approx(finish / int(finish * 1.1) - 1, rel=1e-6)
    assert (tmp_path / "b" / "astra.stdout.txt").read_text().count("finished") == 4
    doc = check.to_dict()
    assert doc["schema"] == "des.crosscheck/1" and len(doc["ranks"]) == 4


def test_crashing_and_hanging_binaries_are_reported(tmp_path):
    g, t = small_graph()
    crash = crosscheck(g, t, tmp_path / "c", binary=fake_binary(
        tmp_path, "print('boom: something broke'); sys.exit(3)"))
    assert crash.astra.exit_code == 3 and not crash.astra.ok
    assert "boom" in crash.astra.tail
    hang = crosscheck(g, t, tmp_path / "h", timeout=1.0, binary=fake_binary(
        tmp_path, "time.sleep(30)"))
    assert hang.astra.timed_out and not hang.astra.ok


def test_find_binary_checks_the_path(tmp_path, monkeypatch):
    monkeypatch.delenv("ASTRA_SIM_BIN", raising=False)
    assert find_binary(None) is None
    with pytest.raises(FileNotFoundError, match="AstraSim binary not found"):
        find_binary(tmp_path / "nope")
    monkeypatch.setenv("ASTRA_SIM_BIN", str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match="ASTRA_SIM_BIN"):
        find_binary(None)


def test_parse_astra_output_tolerates_missing_statistics():
    text = ("sys[1] finished, 300 cycles, exposed communication 200 cycles.\n"
            "sys[0] finished, 250 cycles, exposed communication 100 cycles.\n"
            "sys[0], Wall time: 250\nsys[0], GPU time: 150\ngarbage line\n")
    ranks = parse_astra_output(text)
    assert ranks[0].gpu_ns == 150 and ranks[0].comm_ns is None
    assert ranks[1].finished_ns == 300 and ranks[1].wall_ns is None


def test_cli_crosscheck(tmp_path, capsys):
    out = tmp_path / "cc"
    assert main(["crosscheck", "allreduce_sizes_ring8", "--out", str(out)]) == 0
    assert "No AstraSim binary" in capsys.readouterr().out
    doc = json.loads((out / "crosscheck.json").read_text())
    assert doc["astra"] is None and len(doc["ranks"]) == 8
    bad = fake_binary(tmp_path, "print('segfault-ish'); sys.exit(139)")
    assert main(["crosscheck", "allreduce_sizes_ring8", "--out", str(tmp_path / "c2"),
                 "--astra-bin", str(bad)]) == 2
    assert "exit code 139" in capsys.readouterr().out


def test_drop_in_run_prints_astra_terms(capsys):
    folder = ASTRA_REFERENCE / "overlap_8"
    argv = ["simulate", f"--workload-configuration={folder / 'workload' / 'workload'}",
            f"--system-configuration={folder / 'system.json'}",
            f"--network-configuration={folder / 'network.yml'}",
            f"--remote-memory-configuration={folder / 'remote_memory.json'}", "--astra-compat"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "AstraSim's terms" in out and "119,440" in out
    assert main([*argv[:-1], "--no-contention", "-q"]) == 0
    assert capsys.readouterr().out.strip() == "119440"


def test_drop_in_flags_are_checked(capsys):
    assert main(["simulate", "--workload-configuration=x"]) == 2
    assert "needs --system-configuration" in capsys.readouterr().err
    assert main(["simulate", "--astra-compat"]) == 2


def test_astra_terms_of_a_des_result():
    s = load_scenario("dp8_ring_overlap")
    r = simulate(s.topology, s.graph, hardware=s.hardware, options=s.options)
    terms = from_result(r)[0]
    assert terms.finished_ns == r.ranks[0].finished_ns
    assert terms.gpu_ns == pytest.approx(r.ranks[0].compute_ns)
    assert terms.exposed_comm_ns == pytest.approx(r.ranks[0].finished_ns - r.ranks[0].compute_ns)


def test_crosscheck_exports_des_durations_so_both_sides_compute_alike(tmp_path):
    from des.core.hardware import load_gpu
    from des.sim.choices import local_time

    gpu = load_gpu("A100-SXM4-80GB")  # efficiencies below 1 and a launch overhead
    g = EventGraph(4, "kernels")
    pre = {r: (g.compute(r, kernels=[(2e12, 1e9, "gemm"), (0.0, 4e8, "elementwise")]),)
           for r in range(4)}
    g.collective_all("all_reduce", 2**20, deps=pre)
    t = topo.ring(4, 50.0, 500.0)
    options = EngineOptions.astra_compat()
    check = crosscheck(g, t, tmp_path / "d", options=options, hardware=gpu)
    system = json.loads((tmp_path / "d" / "system.json").read_text())
    assert system["roofline-enabled"] == 0
    want = local_time(g.node(0, pre[0][0]), gpu, options)  # des's time, efficiencies in
    exported = check.des_compat_result
    compute = [op for op in exported.ops if op.rank == 0 and op.kind == "compute"]
    assert compute[0].end_ns - compute[0].start_ns == pytest.approx(
        round(want / 1000) * 1000)
    assert any("per-node durations" in note for note in check.to_dict()["notes"])
    # with the roofline instead, AstraSim would compute at datasheet peak: faster
    roof = export(g, t, tmp_path / "r", options=options, hardware=gpu)
    assert json.loads(roof.system.read_text())["roofline-enabled"] == 1


def test_crosscheck_splits_the_difference_into_compute_and_communication(tmp_path):
    g, t = small_graph()
    ours = crosscheck(g, t, tmp_path / "a", options=EngineOptions.astra_compat())
    finish = max(r.finished_ns for r in ours.des_compat.values())
    gpu = ours.des_compat[0].gpu_ns
    body = (f"for r in range(4):\n"
            f"    print(f'sys[{{r}}] finished, {int(finish) + 1000} cycles, exposed "
            f"communication 7 cycles.')\n"
            f"    print(f'sys[{{r}}], GPU time: {int(gpu) + 400}')")
    check = crosscheck(g, t, tmp_path / "b", options=EngineOptions.astra_compat(),
                       binary=fake_binary(tmp_path, body))
    row = check.rows()[0]
    assert row["compute_difference"] == pytest.approx(-400 / (int(finish) + 1000))
    assert row["compute_difference"] + row["communication_difference"] == pytest.approx(
        row["difference"])


def test_a_relative_binary_path_still_runs_from_the_export_folder(tmp_path, monkeypatch):
    g, t = small_graph()
    binary = fake_binary(tmp_path, "print('sys[0] finished, 10 cycles, exposed communication "
                                   "0 cycles.')")
    monkeypatch.chdir(tmp_path)
    check = crosscheck(g, t, tmp_path / "rel", binary=find_binary(binary.name))
    assert check.astra.exit_code == 0 and check.astra.ranks


def test_binary_output_that_is_not_utf8_or_not_astra_is_reported(tmp_path):
    g, t = small_graph()
    body = ("sys.stdout.buffer.write(b'\\xff\\xfe garbage\\nsys[' + b'9' * 5000 + b'] finished, "
            "1 cycles, exposed communication 1 cycles\\n')")
    check = crosscheck(g, t, tmp_path / "u", binary=fake_binary(tmp_path, body))
    assert check.astra.exit_code == 0 and check.astra.ranks == {}
    assert "garbage" in (tmp_path / "u" / "astra.stdout.txt").read_text()


@pytest.mark.parametrize("timeout", [0.0, -1.0, float("nan"), float("inf")])
def test_crosscheck_timeout_must_be_positive_and_finite(tmp_path, timeout):
    g, t = small_graph()
    with pytest.raises(SchemaError, match="--timeout: must be a finite number > 0"):
        crosscheck(g, t, tmp_path / "t", timeout=timeout)
    assert not (tmp_path / "t").exists()  # refused before anything was written
