"""Tests for the command line (des.app.cli): outputs, exit codes, determinism."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import pytest
from helpers import run_des

import des
from des.app.cli import EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_OK, main

SMALL_YAML = """\
name: cli-small
topology: {kind: ring, npus: 4, bandwidth: 50 GB/s, latency: 500 ns}
network: {chunks: 2}
stragglers: [{rank: 1, speed: 0.5}]
workload:
  kind: collectives
  ops:
    - {collective: all_reduce, size: 256 KiB, repeat: 2}
    - {collective: all_gather, size: 64 KiB, group: [0, 2]}
"""


def flat(text: str) -> str:
    """Text with rich's line wrapping undone (all whitespace runs -> one space)."""
    return " ".join(text.split())


def load_json(path: Path) -> dict:
    return json.loads(path.read_text())


# ---------------------------------------------------------------------- subprocess
def test_simulate_default_scenario(tmp_path: Path) -> None:
    proc = run_des("simulate", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "dp8_ring_overlap" in proc.stdout
    assert "makespan" in proc.stdout
    assert "Traceback" not in proc.stderr
    assert list(tmp_path.iterdir()) == []  # writes nothing unless asked


def test_version(tmp_path: Path) -> None:
    proc = run_des("--version", cwd=tmp_path)
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"des {des.__version__}"


def test_out_dir_writes_all_files(tmp_path: Path) -> None:
    out = tmp_path / "res"
    proc = run_des("simulate", "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert {p.name for p in out.iterdir()} == {"result.json", "trace.json", "links.csv"}

    doc = load_json(out / "result.json")
    assert doc["schema"] == "des.result/1"
    assert doc["makespan_ns"] > 0
    assert set(doc["ranks"]) == {str(r) for r in range(8)}
    for st in doc["ranks"].values():
        for key in ("finished_ns", "compute_ns", "comm_ns", "exposed_comm_ns"):
            assert key in st
        assert 0 < st["finished_ns"] <= doc["makespan_ns"]
        assert st["exposed_comm_ns"] <= st["comm_ns"]
    assert max(st["finished_ns"] for st in doc["ranks"].values()) == doc["makespan_ns"]
    assert len(doc["links"]) == 16  # bidirectional ring of 8
    assert len(doc["collectives"]) == 8  # one gradient all-reduce per layer
    assert doc["meta"]["scenario"] == "dp8_ring_overlap"

    trace = load_json(out / "trace.json")
    events = trace["traceEvents"]
    x_pids = {e["pid"] for e in events if e["ph"] == "X"}
    assert x_pids == set(range(8))
    assert sum(e["ph"] == "X" for e in events) == len(doc["ops"])
    counters = [e for e in events if e["ph"] == "C"]
    assert counters
    assert all(0.0 <= e["args"]["utilization"] <= 1.0 for e in counters)
    # writing a trace records link activity, so each used link gets a time series of busy
    # fractions (not just its run average and a closing zero)
    per_link = Counter(e["name"] for e in counters)
    assert len(per_link) == sum(lk["bytes"] > 0 for lk in doc["links"])
    assert min(per_link.values()) > 2
    values = {e["args"]["utilization"] for e in counters}
    assert 1.0 in values and 0.0 in values  # saturated windows and idle windows

    with (out / "links.csv").open(newline="") as fh:
        rows = list(csv.reader(fh))
    assert len(rows) == len(doc["links"]) + 1
    assert rows[0][:3] == ["id", "src", "dst"]
    assert sorted(int(r[0]) for r in rows[1:]) == [lk["id"] for lk in doc["links"]]


def test_quiet_prints_makespan_matching_json(tmp_path: Path) -> None:
    scen = tmp_path / "small.yaml"
    scen.write_text(SMALL_YAML)
    quiet = run_des("simulate", str(scen), "--quiet", cwd=tmp_path)
    assert quiet.returncode == 0, quiet.stderr
    text = quiet.stdout.strip()
    assert text.isdigit(), quiet.stdout
    full = run_des("simulate", str(scen), "--json", "r.json", cwd=tmp_path)
    assert full.returncode == 0, full.stderr
    makespan = load_json(tmp_path / "r.json")["makespan_ns"]
    assert makespan > 0
    assert int(text) == round(makespan)


def test_unknown_scenario_exits_2(tmp_path: Path) -> None:
    proc = run_des("simulate", "no_such_scenario_xyz", cwd=tmp_path)
    assert proc.returncode == 2
    assert "error" in proc.stderr
    assert "no_such_scenario_xyz" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_bad_key_exits_2_naming_key(tmp_path: Path) -> None:
    scen = tmp_path / "bad.yaml"
    scen.write_text(SMALL_YAML.replace("repeat: 2", "repaet: 2"))
    proc = run_des("simulate", str(scen), cwd=tmp_path)
    assert proc.returncode == 2
    err = flat(proc.stderr)
    assert "error" in err
    assert "workload.ops[0].repaet" in err
    assert "did you mean 'repeat'" in err
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""


def test_deterministic_json(tmp_path: Path) -> None:
    scen = tmp_path / "small.yaml"
    scen.write_text(SMALL_YAML)
    docs = []
    for name in ("a.json", "b.json"):
        proc = run_des("simulate", str(scen), "--json", name, "--quiet", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        doc = load_json(tmp_path / name)
        assert "wall_seconds" not in doc["meta"]  # wall-clock time stays out of the JSON
        docs.append(doc)
    assert docs[0] == docs[1]
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    assert docs[0]["ops"]  # ops are included and compared too
    assert len(docs[0]["collectives"]) == 3


# ---------------------------------------------------------------------- in process
def test_main_without_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == EXIT_OK
    assert "simulate" in capsys.readouterr().out


def test_main_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"des {des.__version__}"


def test_main_quiet_bundled(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "allreduce_sizes_ring8", "--quiet"]) == EXIT_OK
    out = capsys.readouterr().out
    assert out.strip().isdigit()
    assert int(out) > 0
    assert "No scenario given" not in out


def test_main_summary_mentions_collectives(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    scen = tmp_path / "small.yaml"
    scen.write_text(SMALL_YAML)
    assert main(["simulate", str(scen)]) == EXIT_OK
    out = flat(capsys.readouterr().out)
    assert "cli-small" in out
    assert "makespan" in out
    assert "all_reduce" in out and "all_gather" in out
    assert "No scenario given" not in out


def test_main_separate_output_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scen = tmp_path / "small.yaml"
    scen.write_text(SMALL_YAML)
    paths = [tmp_path / "j" / "r.json", tmp_path / "t" / "t.json", tmp_path / "c" / "l.csv"]
    code = main(["simulate", str(scen), "--json", str(paths[0]), "--trace", str(paths[1]),
                 "--csv", str(paths[2]), "--quiet"])
    assert code == EXIT_OK
    assert all(p.is_file() for p in paths)
    doc = load_json(paths[0])
    assert int(capsys.readouterr().out) == round(doc["makespan_ns"])
    assert {e["pid"] for e in load_json(paths[1])["traceEvents"] if e["ph"] == "X"} == {0, 1, 2, 3}


def test_main_scenario_outputs_written_relative_to_file(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    folder = tmp_path / "scen"
    folder.mkdir()
    scen = folder / "small.yaml"
    scen.write_text(SMALL_YAML + "outputs: {json: out/r.json, links_csv: out/l.csv}\n")
    assert main(["simulate", str(scen), "--quiet"]) == EXIT_OK
    capsys.readouterr()
    assert (folder / "out" / "r.json").is_file()
    assert (folder / "out" / "l.csv").is_file()
    assert not (folder / "out" / "trace.json").exists()


@pytest.mark.parametrize(("yaml_text", "needle"), [
    ("topology: {kind: rng, npus: 4, bandwidth: 50 GB/s}\nworkload: {ops: []}\n",
     "topology.kind"),
    ("topology: {kind: ring, npus: 4, bandwidth: 50 GBs}\nworkload: {ops: []}\n",
     "topology.bandwidth"),
    ("- just\n- a list\n", "mapping"),
    ("topology: [unclosed\n", "not valid YAML"),
])
def test_main_bad_input_returns_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                  yaml_text: str, needle: str) -> None:
    scen = tmp_path / "bad.yaml"
    scen.write_text(yaml_text)
    assert main(["simulate", str(scen)]) == EXIT_BAD_INPUT
    captured = capsys.readouterr()
    assert needle in flat(captured.err)
    assert "Traceback" not in captured.err
    assert captured.out == ""


def test_main_output_path_is_directory_returns_2(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["simulate", "allreduce_sizes_ring8", "--quiet", "--json", str(tmp_path)])
    assert code == EXIT_BAD_INPUT
    assert "error" in capsys.readouterr().err


@pytest.mark.parametrize("op", [
    "{collective: all_reduce, size: 1 MiB, algorithm: bogus}",
    "{collective: all_to_all, size: 1 MiB, algorithm: halving_doubling}",
])
def test_main_unrunnable_collective_is_bad_input(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str],
                                                 op: str) -> None:
    scen = tmp_path / "alg.yaml"
    scen.write_text("topology: {kind: ring, npus: 4, bandwidth: 50 GB/s}\n"
                    f"workload: {{kind: collectives, ops: [{op}]}}\n")
    code = main(["simulate", str(scen), "--quiet"])
    assert code != EXIT_OK
    assert "internal error" not in capsys.readouterr().err
    assert code == EXIT_BAD_INPUT


def test_main_unrunnable_collective_fails_cleanly(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    scen = tmp_path / "alg.yaml"
    scen.write_text("topology: {kind: ring, npus: 4, bandwidth: 50 GB/s}\n"
                    "workload: {kind: collectives, ops: "
                    "[{collective: all_reduce, size: 1 MiB, algorithm: bogus}]}\n")
    code = main(["simulate", str(scen), "--quiet"])
    assert code in (EXIT_INTERNAL, EXIT_BAD_INPUT)
    err = flat(capsys.readouterr().err)
    assert "bogus" in err
    assert "Traceback" not in err


def test_main_out_is_existing_file_returns_2(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    code = main(["simulate", "allreduce_sizes_ring8", "--quiet", "--out", str(blocker)])
    capsys.readouterr()
    assert code == EXIT_BAD_INPUT


def test_list_names_every_bundled_file_with_a_description(capsys: pytest.CaptureFixture[str]
                                                          ) -> None:
    from des.app.cli_tools import _first_line
    from des.core.paths import bundled

    assert main(["list"]) == EXIT_OK
    out = capsys.readouterr().out
    for kind in ("scenarios", "sweeps", "models", "hardware", "machines"):
        for name, entry in bundled(kind).items():
            assert name in out, (kind, name)
            assert _first_line(entry.read_text(encoding="utf-8")), (kind, name)


def test_verbose_and_quiet_go_before_or_after_the_subcommand(
        capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["-q", "simulate"], ["simulate", "-q"], ["simulate", "-q", "-v"],
                 ["-v", "simulate", "--quiet"]):
        assert main(argv) == EXIT_OK, argv
        out = capsys.readouterr().out.strip()
        assert out.isdigit(), (argv, out)  # quiet: the makespan alone
    with pytest.raises(SystemExit):
        main(["simulate", "--help"])
    assert "examples:" in capsys.readouterr().out
