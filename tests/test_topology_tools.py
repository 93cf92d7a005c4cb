"""Short topology specs, topology summaries, the ``des topo`` commands and the plots."""

from __future__ import annotations

import json

import pytest
from helpers import run_des

import topologies as topo
from des.app.cli import main
from des.app.config import ConfigError, scenario_from_dict
from topologies import TopologyError
from topologies.analysis import bisection_bandwidth, diameter, summary
from topologies.faults import LinkFault, set_fault
from topologies.spec import parse_spec


@pytest.mark.parametrize(("spec", "npus", "switches", "links"), [
    ("ring:8", 8, 0, 16),
    ("ring:8:uni", 8, 0, 8),
    ("fc:4", 4, 0, 12),
    ("switch:16", 16, 1, 32),
    ("mesh2d:4x4", 16, 0, 48),
    ("torus2d:4x4", 16, 0, 64),
    ("torus3d:4x4x4", 64, 0, 384),
    ("fattree:k=4", 16, 20, 96),
    ("hier:ring4,switch2", 8, 4, 16 + 16),
])
def test_short_specs_build_the_right_sizes(spec, npus, switches, links):
    t = parse_spec(spec)
    assert (t.num_npus, t.num_devices - t.num_npus, len(t.links)) == (npus, switches, links)


def test_short_spec_bandwidth_and_per_dimension_override():
    t = parse_spec("hier:ring4@100,switch2", bandwidth=25.0, latency=10.0)
    by_kind = {lk.kind: lk.bandwidth for lk in t.links}
    assert 100.0 in by_kind.values() and 25.0 in by_kind.values()
    assert all(lk.latency == 10.0 for lk in t.links)


@pytest.mark.parametrize(("spec", "message"), [
    ("rng:8", "cannot read topology spec"),
    ("ring:eight", "not a whole number"),
    ("ring:8:sideways", "ring flag must be 'uni' or 'bi'"),
    ("mesh2d:4", "needs 2 sizes"),
    ("torus3d:4x4", "needs 3 sizes"),
    ("fattree:k", "expected key=value"),
    ("fattree:k=four", "not a number"),
    ("hier:fc8,blob4", "cannot read dimension"),
    ("missing.yaml", "topology file not found"),
    ("ring:1", "needs an integer number of NPUs >= 2"),
])
def test_bad_specs_are_explained(spec, message):
    with pytest.raises(TopologyError, match=message):
        parse_spec(spec)


@pytest.mark.parametrize(("spec", "hops"), [
    ("ring:8", 4), ("ring:8:uni", 7), ("fc:6", 1), ("switch:8", 2), ("mesh2d:4x3", 5),
    ("torus2d:4x5", 4), ("torus3d:4x4x4", 6), ("fattree:k=4", 6),
])
def test_diameter_matches_the_closed_form(spec, hops):
    assert diameter(parse_spec(spec))[0] == hops


@pytest.mark.parametrize(("spec", "links_cut"), [
    ("ring:8", 2), ("ring:8:uni", 1), ("fc:4", 4), ("switch:8", 4),
])
def test_bisection_closed_forms(spec, links_cut):
    value, how = bisection_bandwidth(parse_spec(spec, bandwidth=10.0))
    assert (value, how) == (10.0 * links_cut, "closed form")


def test_bisection_estimate_on_a_faulty_ring_drops():
    ring = parse_spec("ring:8", bandwidth=10.0)
    set_fault(ring, LinkFault(0, 1, down=True))
    value, how = bisection_bandwidth(ring)
    assert how.startswith("estimate") and value == pytest.approx(10.0)


def test_diameter_reports_a_disconnected_topology():
    ring = topo.ring(6, 1.0, 0.0)
    set_fault(ring, LinkFault(0, 1, down=True))
    set_fault(ring, LinkFault(3, 4, down=True))
    hops, how = diameter(ring)
    assert hops == -1 and "disconnected" in how


def test_summary_lists_link_classes_and_faults():
    t = parse_spec("switch:4")
    set_fault(t, LinkFault(0, 4, down=True))
    info = summary(t)
    assert info["failed_links"] == ["0->4", "4->0"]
    kinds = {row["kind"]: row for row in info["link_classes"]}
    assert kinds["uplink"]["down"] == 1 and kinds["downlink"]["down"] == 1
    assert kinds["uplink"]["links"] == 4


def test_topo_route_json_follows_xy_and_detours(capsys):
    assert main(["topo", "route", "mesh2d:4x4", "1", "7", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["devices"] == [1, 2, 3, 7]
    assert main(["topo", "route", "mesh2d:4x4", "1", "7", "--json", "--fail", "2-3"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [2, 3] not in [[h["src"], h["dst"]] for h in doc["hops"]]
    assert doc["devices"][0] == 1 and doc["devices"][-1] == 7


def test_topo_show_json_with_derate(capsys):
    assert main(["topo", "show", "ring:4", "--json", "--derate", "0-1=0.5",
                 "--bandwidth", "400 Gb/s"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["npus"] == 4 and doc["derated_links"] == ["0->1:0.5", "1->0:0.5"]
    assert doc["link_classes"][0]["bandwidth_max"] == 50.0


@pytest.mark.parametrize("argv", [
    ["topo", "show", "rng:4"],
    ["topo", "route", "ring:4", "0", "9"],
    ["topo", "route", "ring:4", "0", "2", "--fail", "0-1", "--fail", "3-0"],
    ["topo", "show", "ring:4", "--fail", "zero-one"],
    ["topo", "show", "ring:4", "--derate", "0-1"],
    ["topo", "show", "ring:4", "--derate", "0-1=2"],
    ["topo", "show", "ring:4", "--bandwidth", "fast"],
])
def test_topo_bad_input_exits_2_without_traceback(argv, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "error" in err and "Traceback" not in err


def test_topo_show_through_a_subprocess():
    out = run_des("topo", "show", "torus3d:4x4x4")
    assert out.returncode == 0, out.stderr
    assert "64 NPUs" in out.stdout and "bisection bandwidth" in out.stdout


def test_scenario_accepts_every_topology_kind(tmp_path):
    edge_list = tmp_path / "fabric.yaml"
    edge_list.write_text(
        "npus: 2\nswitches: [{id: sw0}]\nlinks:\n"
        "  - {src: 0, dst: sw0, bandwidth: 10 GB/s, duplex: true}\n"
        "  - {src: 1, dst: sw0, bandwidth: 10 GB/s, duplex: true}\n")
    kinds = [
        {"kind": "mesh2d", "x": 2, "y": 2, "bandwidth": "50 GB/s"},
        {"kind": "torus3d", "x": 2, "y": 2, "z": 2, "bandwidth": "50 GB/s"},
        {"kind": "fat_tree", "k": 4, "bandwidth": "50 GB/s", "seed": 3},
        {"kind": "leaf_spine", "leaves": 2, "hosts_per_leaf": 2, "spines": 2,
         "bandwidth": "50 GB/s", "oversubscription": 2},
        {"kind": "hierarchical", "dims": [
            {"kind": "fully_connected", "size": 2, "bandwidth": "100 GB/s"},
            {"kind": "switch", "size": 2, "bandwidth": "25 GB/s", "latency": "1 us"}]},
        {"kind": "custom", "file": "fabric.yaml"},
    ]
    for spec in kinds:
        doc = {"topology": spec, "workload": {"kind": "collectives", "ops": [
            {"collective": "all_reduce", "size": "1 MiB"}]}}
        sc = scenario_from_dict(doc, base=tmp_path)
        assert sc.graph.num_ranks == sc.topology.num_npus


@pytest.mark.parametrize(("topology", "message"), [
    ({"kind": "mesh2d", "x": 4, "bandwidth": "1 GB/s"}, "topology.y: required"),
    ({"kind": "torus3d", "x": 2, "y": 2, "z": 0, "bandwidth": "1 GB/s"}, "topology.z"),
    ({"kind": "fat_tree", "k": 4, "bandwidth": "1 GB/s", "spines": 2}, "unknown key 'spines'"),
    ({"kind": "hierarchical", "dims": [{"kind": "ring", "size": 4}]}, "no bandwidth"),
    ({"kind": "hierarchical", "dims": [{"kind": "tree", "size": 4}]},
     r"topology.dims\[0\].kind"),
    ({"kind": "custom", "file": "nope.yaml"}, "topology.file"),
])
def test_scenario_topology_errors_name_the_key(topology, message):
    doc = {"topology": topology, "workload": {"kind": "collectives", "ops": [
        {"collective": "all_reduce", "size": 8}]}}
    with pytest.raises(ConfigError, match=message):
        scenario_from_dict(doc)


def test_plots_write_pngs(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    png = tmp_path / "t.png"
    assert main(["topo", "show", "fattree:k=4", "--png", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    scenario = tmp_path / "s.yaml"
    scenario.write_text(
        "topology: {kind: torus2d, x: 3, y: 3, bandwidth: 50 GB/s}\n"
        "workload: {kind: collectives, ops: [{collective: all_to_all, size: 1 MiB}]}\n")
    heat = tmp_path / "heat.png"
    assert main(["simulate", str(scenario), "-q", "--plot-links", str(heat)]) == 0
    assert heat.stat().st_size > 1000
