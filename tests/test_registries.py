"""The registries of topology and workload kinds: one dispatch path for built-in and user
kinds, unknown kinds listing the registered ones, duplicates refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

import des.app.workload_kinds as kinds
import topologies
import topologies.registry as registry
from des.app.cli import EXIT_OK, main
from des.app.config import ConfigError, scenario_from_dict
from des.app.workload_kinds import WorkloadKind, get_workload_kind, register_workload
from des.core import schema, units
from des.core.graph import EventGraph
from topologies import TopologyError
from topologies.registry import get_topology_kind, register_topology, topology_kinds
from topologies.spec import parse_spec

BUILTIN = ["fat_tree", "fully_connected", "hierarchical", "leaf_spine", "mesh2d", "ring",
           "superpod", "switch", "torus2d", "torus3d"]


@pytest.fixture
def clean(monkeypatch):
    """Registrations made by a test stay in that test."""
    monkeypatch.setattr(registry, "_KINDS", dict(registry._KINDS))
    monkeypatch.setattr(registry, "_ALIASES", dict(registry._ALIASES))
    monkeypatch.setattr(kinds, "WORKLOAD_KINDS", dict(kinds.WORKLOAD_KINDS))


def _register_line(spacing_default: int = 1):
    @register_topology("line", required=("npus",), optional=("hops",),
                       types={"hops": schema.positive_int}, aliases=("chain",))
    def line(bandwidth: float, latency: float, npus: int, hops: int = spacing_default
             ) -> topologies.Topology:
        topo = topologies.Topology(f"line:{npus}", npus)
        for i in range(npus - 1):
            topo.add_duplex(i, i + 1, bandwidth, latency * hops, "line")
        return topo

    return line


# ---------------------------------------------------------------------- topologies
def test_builtin_kinds_are_registered_through_the_same_registry():
    assert topology_kinds() == BUILTIN
    assert all(get_topology_kind(k).builtin for k in BUILTIN)
    assert get_topology_kind("fc").kind == "fully_connected"


def test_unknown_topology_kind_lists_the_registered_ones(clean):
    _register_line()
    with pytest.raises(TopologyError, match=r"unknown topology kind 'dragonfly'.*line.*ring"):
        topologies.build("dragonfly", {"bandwidth": 1.0})
    with pytest.raises(ConfigError, match=r"topology.kind.*expected one of .*line.*custom"):
        scenario_from_dict({"topology": {"kind": "dragonfly"}, "workload": {}})
    with pytest.raises(TopologyError, match=r"cannot read topology spec.*line:npus=\.\.\."):
        parse_spec("dragonfly:groups=2")


def test_duplicate_topology_kinds_and_aliases_are_refused(clean):
    _register_line()
    with pytest.raises(TopologyError, match="'line' is already registered"):
        _register_line()
    for name in ("ring", "fc", "custom"):
        with pytest.raises(TopologyError, match="already registered"):
            register_topology(name)(lambda bandwidth, latency: None)
    with pytest.raises(TopologyError, match="already registered"):
        register_topology("ring2", aliases=("chain",))(lambda bandwidth, latency: None)


def test_a_registered_topology_works_from_yaml_spec_and_code(clean):
    _register_line()
    doc = {"topology": {"kind": "line", "npus": 3, "hops": 2, "bandwidth": "10 GB/s",
                        "latency": "1 us"},
           "workload": {"kind": "collectives",
                        "ops": [{"collective": "all_reduce", "size": "1 MiB"}]}}
    topo = scenario_from_dict(doc).topology
    assert (topo.info.kind, topo.info.name, topo.num_npus) == ("custom", "line", 3)
    assert {lk.latency for lk in topo.links} == {2000.0}
    assert parse_spec("chain:npus=4,hops=3", latency=10.0).links[0].latency == 30.0
    assert topologies.build("line", {"npus": 2, "bandwidth": 5.0}).links[0].bandwidth == 5.0
    # its own parameter parsers and the shared ones read the file, with key paths in errors
    doc["topology"]["hops"] = 0
    with pytest.raises(ConfigError, match=r"topology.hops: .*positive"):
        scenario_from_dict(doc)
    doc["topology"]["hops"], doc["topology"]["width"] = 1, 2
    with pytest.raises(ConfigError, match=r"topology.width"):
        scenario_from_dict(doc)
    with pytest.raises(TopologyError, match=r"line: missing parameter\(s\) bandwidth"):
        topologies.build("line", {"npus": 2})


def test_a_builder_must_return_a_topology(clean):
    register_topology("broken")(lambda bandwidth, latency: "not a topology")
    with pytest.raises(TopologyError, match="broken: the builder returned str"):
        topologies.build("broken", {"bandwidth": 1.0})


def test_types_must_name_declared_parameters(clean):
    with pytest.raises(TopologyError, match="unknown parameter"):
        register_topology("bad", required=("n",), types={"m": units.parse_time})


# ---------------------------------------------------------------------- workloads
def _echo(sec, num_ranks: int, name: str) -> EventGraph:
    graph = EventGraph(num_ranks, name)
    for rank in range(num_ranks):
        graph.compute(rank, duration_ns=sec.get("duration", units.parse_time), category="work")
    sec.finish()
    return graph


def _echo_kind(name: str = "sleep") -> WorkloadKind:
    return WorkloadKind(name, "every rank sleeps", _echo,
                        lambda report, result: {"iteration_s": result.makespan_ns * 1e-9},
                        report=lambda result, scenario: {"slept_ns": result.makespan_ns},
                        report_key="sleep")


def test_unknown_workload_kind_lists_the_registered_ones(clean):
    register_workload(_echo_kind())
    doc = {"topology": {"kind": "switch", "npus": 2, "bandwidth": "1 GB/s"},
           "workload": {"kind": "slep"}}
    with pytest.raises(ConfigError, match=r"workload.kind: unknown value 'slep' \(did you mean "
                                          r"'sleep'\?\).*gemm.*sleep"):
        scenario_from_dict(doc)
    with pytest.raises(KeyError, match=r"unknown workload kind 'slep'; registered: .*sleep"):
        get_workload_kind("slep")
    # the graph kind has no parser: no scenario may name it
    doc["workload"]["kind"] = "graph"
    with pytest.raises(ConfigError, match=r"workload\.kind"):
        scenario_from_dict(doc)


def test_duplicate_workload_kinds_are_refused(clean):
    register_workload(_echo_kind())
    with pytest.raises(ValueError, match="'sleep' is already registered"):
        register_workload(_echo_kind())
    with pytest.raises(ValueError, match="already registered"):
        register_workload(_echo_kind("gemm"))
    with pytest.raises(TypeError):
        register_workload("sleep")  # type: ignore[arg-type]


def test_a_registered_workload_runs_through_des_simulate(clean, tmp_path: Path):
    register_workload(_echo_kind())
    doc = {"topology": {"kind": "switch", "npus": 2, "bandwidth": "1 GB/s"},
           "workload": {"kind": "sleep", "duration": "3 us"}}
    scenario = scenario_from_dict(doc)
    assert scenario.kind == "sleep"
    path, out = tmp_path / "s.yaml", tmp_path / "r.json"
    path.write_text(yaml.safe_dump(doc))
    assert main(["simulate", str(path), "-q", "--json", str(out)]) == EXIT_OK
    meta = json.loads(out.read_text())["meta"]
    assert meta["sleep"] == {"slept_ns": 3000.0}
    assert meta["metrics"]["workload"] == "sleep"
    assert meta["metrics"]["iteration_s"] == pytest.approx(3e-6)
    doc["workload"]["duraton"] = "1 us"
    with pytest.raises(ConfigError, match=r"workload\.duraton"):
        scenario_from_dict(doc)
