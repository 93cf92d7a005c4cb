"""nccl-tests measurements (des.app.validation_nccl): the shipped tables read and agree with the
nccl-tests bus-bandwidth formula, des's busbw on an ideal ring matches the closed form, busbw
rises with size toward the link rate, and machine link classes set the topology."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import yaml

from des.app.config import scenario_from_dict
from des.app.validation import ValidationError, load_machine, load_rows, machine_topology
from des.app.validation_nccl import (
    NcclPoint,
    NcclRun,
    busbw_GBps,
    compare_run,
    load_runs,
    parse_table,
    run_scenario_dict,
    runs_of,
)
from des.sim.backends import run_backend

VALIDATION = Path(__file__).resolve().parent.parent / "validation"
ROW_13 = ("     1048576        262144     float     sum      -1    76.71   13.67   23.92      0"
          "    77.73   13.49   23.61      0")
ROW_12 = "     1048576        262144     float     sum    10.14    0.00    0.00  0e+00    10.21" \
         "    0.00    0.00  0e+00"


def test_every_shipped_nccl_file_reads_and_matches_the_busbw_formula():
    runs = load_runs(VALIDATION)
    assert runs, "no nccl-tests files shipped in validation/"
    for run in runs:
        assert run.points and run.ranks == run.nodes * run.gpus_per_node
        for p in run.points:
            # the printed busbw is size / time x 2(n-1)/n rounded to two decimals
            assert busbw_GBps(run.collective, run.ranks, p.size, p.time_us) == \
                pytest.approx(p.busbw, abs=0.006, rel=2e-3)
            assert p.size / (p.time_us * 1e3) == pytest.approx(p.algbw, abs=0.006, rel=2e-3)
    # the Megatron reader leaves nccl-tests files alone
    assert all(row.source.startswith("megatron") for row in load_rows(VALIDATION))


def test_table_rows_with_and_without_root_column():
    (new,) = parse_table(ROW_13, "t")
    assert new == NcclPoint(1048576, 76.71, 13.67, 23.92)
    (old,) = parse_table("# comment\n" + ROW_12, "t")
    assert old == NcclPoint(1048576, 10.14, 0.0, 0.0)
    with pytest.raises(ValidationError, match="has 5 columns"):
        parse_table("1 2 3 4 5", "t")
    with pytest.raises(ValidationError, match="not an nccl-tests row"):
        parse_table(ROW_13.replace("76.71", "fast"), "t")
    with pytest.raises(ValidationError, match="no rows"):
        parse_table("# nothing\n", "t")
    with pytest.raises(ValidationError, match="a measured time must be positive"):
        parse_table(ROW_13.replace("76.71", " 0.00"), "t")


@pytest.mark.parametrize(("run", "message"), [
    ({"name": "x"}, "missing collective, nodes, gpus_per_node, table"),
    ({"name": "x", "collective": "gather", "nodes": 1, "gpus_per_node": 8, "table": ROW_13},
     "collective 'gather'"),
    ({"name": "x", "collective": "all_reduce", "nodes": 0, "gpus_per_node": 8,
      "table": ROW_13}, "whole numbers"),
])
def test_bad_runs_are_named(run, message):
    with pytest.raises(ValidationError, match=message):
        runs_of({"format": "nccl-tests", "runs": [run]}, "t.yaml")
    with pytest.raises(ValidationError, match="'runs' list"):
        runs_of({"format": "nccl-tests"}, "t.yaml")


@pytest.mark.parametrize("n", [4, 8])
@pytest.mark.parametrize("size", [1e3, 1e6, 64e6])
@pytest.mark.parametrize("backend", ["simpy", "analytical"])
def test_ring_allreduce_busbw_matches_closed_form(n, size, backend):
    # ring all-reduce on an ideal ring, one chunk: 2(n-1) steps of S/n bytes over one link of
    # bandwidth B after latency L, so T = 2(n-1) (L + S/(n B)) and
    # busbw = S/T x 2(n-1)/n = B / (1 + n B L / S)
    bandwidth, latency = 100.0, 2000.0  # bytes/ns, ns
    scenario = scenario_from_dict({
        "name": "ring", "network": {"chunks": 1},
        "topology": {"kind": "ring", "npus": n, "bandwidth": "100 GB/s", "latency": "2 us"},
        "workload": {"kind": "collectives", "ops": [
            {"collective": "all_reduce", "size": size, "algorithm": "ring"}]}})
    result = run_backend(backend, scenario.topology, scenario.graph, options=scenario.options)
    (stat,) = result.collectives
    closed = 2 * (n - 1) * (latency + size / (n * bandwidth))
    assert stat.time_ns == pytest.approx(closed, rel=1e-9)
    assert stat.busbw_GBps == pytest.approx(
        busbw_GBps("all_reduce", n, size, stat.time_ns / 1e3), rel=1e-9)
    assert stat.busbw_GBps == pytest.approx(
        bandwidth / (1 + n * bandwidth * latency / size), rel=1e-9)


def test_busbw_rises_with_size_toward_the_nvlink_rate():
    machine = load_machine("selene-dgx-a100")
    nvlink = machine["links"]["nvlink"]
    asymptote = 300.0 * nvlink["efficiency"]  # line rate 300 GB/s
    machine = {**machine, "network": {**machine.get("network", {}),
                                      "algorithms": {"all_reduce": "ring"}}}
    sizes = [2 ** k for k in range(10, 35, 2)]
    run = NcclRun("t", "sweep", "all_reduce", 1, 8,
                  tuple(NcclPoint(s, 1.0, 0.0, 0.0) for s in sizes))
    busbw = [row["des_busbw"] for row in compare_run(run, machine, "analytical")]
    assert all(b2 > b1 for b1, b2 in itertools.pairwise(busbw))
    assert busbw[-1] <= asymptote * (1 + 1e-9)
    assert busbw[-1] > 0.99 * asymptote
    assert busbw[0] < 0.01 * asymptote  # a 1 KiB all-reduce is latency-bound


def test_machine_link_classes_set_bandwidth_and_step_latency():
    machine = load_machine("selene-dgx-a100")
    topo = machine_topology(machine, 2)
    links = machine["links"]
    assert topo["nodes"] == 2
    assert topo["bandwidth"] == pytest.approx(300.0 * links["nvlink"]["efficiency"])
    assert topo["nic_bandwidth"] == pytest.approx(25.0 * links["nic"]["efficiency"])
    assert topo["nvswitch_latency"] == links["nvlink"]["step_latency"]
    assert topo["leaf_latency"] == links["nic"]["step_latency"]
    scenario = scenario_from_dict(run_scenario_dict(
        NcclRun("t", "r", "all_reduce", 2, 8, (NcclPoint(1 << 20, 1.0, 0.0, 0.0),)), machine))
    nic = [lk for lk in scenario.topology.links if lk.kind == "nic"]
    assert nic and all(lk.bandwidth == pytest.approx(24.0) for lk in nic)


@pytest.mark.parametrize(("links", "message"), [
    ({"pcie": {"line_rate": "32 GB/s"}}, "unknown link class"),
    ({"nvlink": {"line_rate": "300 GB/s", "efficiency": 1.5}}, r"must be in \(0, 1\]"),
    ({"nvlink": {"efficiency": 0.5}}, "line_rate"),
    ({"nvlink": {"line_rate": "300 GB/s", "speed": 1}}, "unknown key"),
])
def test_bad_link_classes_are_named(tmp_path, links, message):
    base = load_machine("selene-dgx-a100")
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump({**base, "links": links}))
    with pytest.raises(ValidationError, match=message):
        load_machine(str(path))
