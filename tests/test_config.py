"""Tests for des.app.config: scenarios -> Topology, EventGraph, EngineOptions; strict errors."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from des.app.config import ConfigError, load_scenario, scenario_from_dict
from des.core.graph import CollectiveType, NodeKind
from des.core.paths import bundled
from des.sim.engine import simulate
from des.sim.hops import TransportMode

BUNDLED = sorted(bundled("scenarios"))


def minimal() -> dict[str, Any]:
    """A small valid scenario: bidirectional ring of 4, one all-reduce."""
    return {
        "name": "mini",
        "topology": {"kind": "ring", "npus": 4, "bandwidth": "50 GB/s", "latency": "500 ns"},
        "workload": {
            "kind": "collectives",
            "ops": [{"collective": "all_reduce", "size": "1 MiB"}],
        },
    }


def build(**changes: Any) -> Any:
    data = minimal()
    data.update(copy.deepcopy(changes))
    return scenario_from_dict(data)


def config_error(data: Any) -> str:
    with pytest.raises(ConfigError) as info:
        scenario_from_dict(data)
    return str(info.value)


# ---------------------------------------------------------------------- bundled scenarios
def test_bundled_scenarios_exist() -> None:
    assert {"dp8_ring_overlap", "allreduce_sizes_ring8", "switch16_straggler"} <= set(BUNDLED)


def test_default_scenario_is_dp8_ring_overlap() -> None:
    sc = load_scenario(None)
    assert sc.name == "dp8_ring_overlap"
    assert sc.topology.num_npus == 8
    assert sc.hardware is not None and sc.hardware.name == "A100-SXM4-80GB"


def test_bundled_straggler_scenario_sets_speed() -> None:
    sc = load_scenario("switch16_straggler")
    assert sc.options.speed == {5: 0.8}
    assert sc.topology.num_npus == 16
    # 400 Gb/s is 50 GB/s = 50 bytes/ns on every uplink and downlink
    assert {lk.bandwidth for lk in sc.topology.links} == {50.0}


# ---------------------------------------------------------------------- valid dicts
def test_minimal_dict_builds_topology() -> None:
    sc = scenario_from_dict(minimal())
    topo = sc.topology
    assert sc.name == "mini"
    assert topo.num_npus == 4
    assert len(topo.links) == 8  # bidirectional ring of 4: 4 forward + 4 backward
    assert {lk.bandwidth for lk in topo.links} == {50.0}
    assert {lk.latency for lk in topo.links} == {500.0}
    assert {(lk.src, lk.dst) for lk in topo.links} == {
        (0, 1), (1, 2), (2, 3), (3, 0), (1, 0), (2, 1), (3, 2), (0, 3)}


def test_unidirectional_ring_has_n_links() -> None:
    data = minimal()
    data["topology"]["bidirectional"] = False
    sc = scenario_from_dict(data)
    assert len(sc.topology.links) == 4


@pytest.mark.parametrize(("text", "expected"), [("50 GB/s", 50.0), ("400 Gb/s", 50.0),
                                                ("400 Gbps", 50.0), (25, 25.0)])
def test_bandwidth_units(text: Any, expected: float) -> None:
    data = minimal()
    data["topology"]["bandwidth"] = text
    sc = scenario_from_dict(data)
    assert {lk.bandwidth for lk in sc.topology.links} == {expected}


def test_other_topology_kinds() -> None:
    data = minimal()
    data["topology"] = {"kind": "fully_connected", "npus": 4, "bandwidth": "10 GB/s"}
    assert len(scenario_from_dict(data).topology.links) == 12
    data["topology"] = {"kind": "switch", "npus": 4, "bandwidth": "10 GB/s",
                        "switch_latency": "300 ns"}
    topo = scenario_from_dict(data).topology
    assert len(topo.links) == 8  # an uplink and a downlink per NPU
    assert list(topo.switch_latency.values()) == [300.0]


def test_defaults_for_network_options() -> None:
    opts = scenario_from_dict(minimal()).options
    assert opts.transport is TransportMode.CUT_THROUGH
    assert opts.packet_bytes == 4096.0
    assert (opts.comm_streams, opts.chunks, opts.chunks_in_flight) == (1, 4, 0)
    assert opts.speed == {}


def test_network_options_and_stragglers() -> None:
    sc = build(
        network={"transport": "store_and_forward", "packet_size": "8 KiB", "comm_streams": 2,
                 "chunks": 3, "chunks_in_flight": 1},
        stragglers=[{"rank": 3, "speed": 0.5}, {"rank": 0, "speed": 2}],
    )
    opts = sc.options
    assert opts.transport is TransportMode.STORE_AND_FORWARD
    assert opts.packet_bytes == 8192.0
    assert opts.comm_streams == 2
    assert opts.chunks == 3
    assert opts.chunks_in_flight == 1
    assert opts.speed == {3: 0.5, 0: 2.0}


def test_collectives_workload_builds_graph() -> None:
    data = minimal()
    data["workload"]["ops"] = [
        {"collective": "all-reduce", "size": "1 MiB", "repeat": 2},
        {"collective": "all_gather", "size": 4096, "group": [0, 2]},
    ]
    graph = scenario_from_dict(data).graph
    instances = graph.collective_instances()
    assert [(i.collective, i.nbytes, i.group) for i in instances] == [
        (CollectiveType.ALL_REDUCE, 1048576.0, (0, 1, 2, 3)),
        (CollectiveType.ALL_REDUCE, 1048576.0, (0, 1, 2, 3)),
        (CollectiveType.ALL_GATHER, 4096.0, (0, 2)),
    ]
    assert sum(1 for _ in graph.nodes(1)) == 2  # rank 1 is not in the all-gather group
    # each collective on a rank waits for the previous one it took part in
    rank0 = list(graph.nodes(0))
    assert all(n.kind is NodeKind.COLLECTIVE for n in rank0)
    assert [n.deps for n in rank0] == [(), (rank0[0].id,), (rank0[1].id,)]


def test_data_parallel_workload_with_hardware_preset() -> None:
    sc = build(hardware="a100-sxm4-80gb",
               workload={"kind": "data_parallel_step", "layers": 2, "params_per_layer": 1e6,
                         "tokens_per_rank": 128})
    assert sc.hardware is not None and sc.hardware.name == "A100-SXM4-80GB"
    instances = sc.graph.collective_instances()
    assert len(instances) == 2
    assert {i.nbytes for i in instances} == {2e6}  # bf16 gradients of 1e6 parameters
    assert simulate(sc.topology, sc.graph, hardware=sc.hardware,
                    options=sc.options).makespan_ns > 0


def test_straggler_slows_compute() -> None:
    workload = {"kind": "data_parallel_step", "layers": 2, "params_per_layer": 1e6,
                "tokens_per_rank": 128}
    fast = build(hardware="A100-SXM4-80GB", workload=workload)
    slow = build(hardware="A100-SXM4-80GB", workload=workload,
                 stragglers=[{"rank": 2, "speed": 0.5}])
    r_fast = simulate(fast.topology, fast.graph, hardware=fast.hardware, options=fast.options)
    r_slow = simulate(slow.topology, slow.graph, hardware=slow.hardware, options=slow.options)
    assert r_slow.ranks[2].compute_ns == pytest.approx(2 * r_fast.ranks[2].compute_ns)
    assert r_slow.makespan_ns > r_fast.makespan_ns


def test_name_defaults_to_source_stem() -> None:
    data = minimal()
    del data["name"]
    assert scenario_from_dict(data, source="some/dir/my_run.yaml").name == "my_run"


# ---------------------------------------------------------------------- error paths
def _drop(*path: str):
    def change(d: dict) -> None:
        for key in path[:-1]:
            d = d[key]
        del d[path[-1]]
    return change


def _set(*path: str, value: Any):
    def change(d: dict) -> None:
        for key in path[:-1]:
            d = d[key]
        d[path[-1]] = value
    return change


def _op(key: str, value: Any):
    def change(d: dict) -> None:
        d["workload"]["ops"][0][key] = value
    return change


# (id, change to the minimal dict, substrings the message must contain)
ERRORS = [
    ("typo-top", _set("topolgy", value={}), ["topolgy", "did you mean 'topology'"]),
    ("unknown-top", _set("colour", value="red"), ["colour", "topology", "workload"]),
    ("missing-topology", _drop("topology"), ["topology", "missing"]),
    ("missing-workload", _drop("workload"), ["workload", "missing"]),
    ("missing-kind", _drop("topology", "kind"), ["topology.kind", "missing"]),
    ("missing-npus", _drop("topology", "npus"), ["topology.npus", "missing"]),
    ("missing-bandwidth", _drop("topology", "bandwidth"), ["topology.bandwidth", "missing"]),
    ("missing-ops", _drop("workload", "ops"), ["workload.ops", "missing"]),
    ("missing-op-size", lambda d: d["workload"]["ops"][0].pop("size"),
     ["workload.ops[0].size", "missing"]),
    ("kind-rng", _set("topology", "kind", value="rng"),
     ["topology.kind", "'rng'", "ring", "fully_connected", "switch"]),
    ("npus-0", _set("topology", "npus", value=0), ["topology.npus", "0"]),
    ("npus-neg", _set("topology", "npus", value=-1), ["topology.npus", "-1"]),
    ("npus-float", _set("topology", "npus", value=2.5), ["topology.npus", "2.5"]),
    ("npus-bool", _set("topology", "npus", value=True), ["topology.npus", "True"]),
    ("npus-text", _set("topology", "npus", value="4"), ["topology.npus", "'4'"]),
    ("npus-1", _set("topology", "npus", value=1), ["topology", "1"]),
    ("bandwidth-unit", _set("topology", "bandwidth", value="50 GBs"),
     ["topology.bandwidth", "50 GBs", "GB/s"]),
    ("bandwidth-negative", _set("topology", "bandwidth", value="-5 GB/s"),
     ["topology.bandwidth", "-5 GB/s"]),
    ("bandwidth-zero", _set("topology", "bandwidth", value="0 GB/s"),
     ["topology", "bandwidth", "0"]),
    ("latency-fast", _set("topology", "latency", value="fast"), ["topology.latency", "fast"]),
    ("bidirectional-text", _set("topology", "bidirectional", value="yes"),
     ["topology.bidirectional", "yes"]),
    ("topology-extra", _set("topology", "switch_latency", value="1 ns"),
     ["topology.switch_latency"]),
    ("topology-list", _set("topology", value=[1]), ["topology", "[1]"]),
    ("transport", _set("network", value={"transport": "wormhole"}),
     ["network.transport", "wormhole", "cut_through", "store_and_forward"]),
    ("transport-typo", _set("network", value={"transport": "cut_thru"}),
     ["network.transport", "cut_thru", "did you mean 'cut_through'"]),
    ("packet-0", _set("network", value={"packet_size": 0}), ["network.packet_size", "0"]),
    ("packet-unit", _set("network", value={"packet_size": "4 kb"}),
     ["network.packet_size", "4 kb"]),
    ("streams-0", _set("network", value={"comm_streams": 0}), ["network.comm_streams", "0"]),
    ("chunks-0", _set("network", value={"chunks": 0}), ["network.chunks", "0"]),
    ("in-flight-neg", _set("network", value={"chunks_in_flight": -1}),
     ["network.chunks_in_flight", "-1"]),
    ("network-typo", _set("network", value={"chunk": 2}), ["network.chunk", "'chunks'"]),
    ("straggler-rank", _set("stragglers", value=[{"rank": 4, "speed": 0.5}]),
     ["stragglers[0].rank", "4", "0..3"]),
    ("straggler-rank-neg", _set("stragglers", value=[{"rank": -1, "speed": 0.5}]),
     ["stragglers[0].rank", "-1"]),
    ("straggler-speed-0", _set("stragglers", value=[{"rank": 1, "speed": 0}]),
     ["stragglers[0].speed", "0"]),
    ("straggler-speed-neg", _set("stragglers", value=[{"rank": 1, "speed": -0.5}]),
     ["stragglers[0].speed", "-0.5"]),
    ("straggler-second", _set("stragglers", value=[{"rank": 1, "speed": 0.5},
                                                   {"rank": 1, "speed": "x"}]),
     ["stragglers[1].speed", "'x'"]),
    ("stragglers-mapping", _set("stragglers", value={"rank": 1, "speed": 0.5}),
     ["stragglers", "list", "dict"]),
    ("straggler-not-mapping", _set("stragglers", value=[3]), ["stragglers[0]", "3"]),
    ("straggler-extra", _set("stragglers", value=[{"rank": 1, "speed": 0.5, "sped": 1}]),
     ["stragglers[0].sped"]),
    ("ops-empty", _set("workload", "ops", value=[]), ["workload.ops", "list"]),
    ("ops-text", _set("workload", "ops", value="all_reduce"), ["workload.ops", "list"]),
    ("ops-mapping", _set("workload", "ops", value={"collective": "all_reduce", "size": 1}),
     ["workload.ops", "list"]),
    ("op-not-mapping", _set("workload", "ops", value=["all_reduce"]),
     ["workload.ops[0]", "all_reduce"]),
    ("collective-int", _op("collective", 5), ["workload.ops[0].collective", "5"]),
    ("group-neg", _op("group", [0, -1]), ["workload.ops[0].group[1]", "-1"]),
    ("group-empty", _op("group", []), ["workload.ops[0].group", "[]"]),
    ("group-repeat", _op("group", [1, 1]), ["workload", "[1, 1]"]),
    ("size-negative", _op("size", -5), ["workload.ops[0].size", "-5"]),
    ("size-negative-text", _op("size", "-5 MiB"), ["workload.ops[0].size", "-5 MiB"]),
    ("repeat-0", _op("repeat", 0), ["workload.ops[0].repeat", "0"]),
    ("op-typo", _op("sise", 1), ["workload.ops[0].sise", "did you mean 'size'"]),
    ("workload-kind", _set("workload", "kind", value="dp"),
     ["workload.kind", "'dp'", "collectives", "data_parallel_step"]),
    ("dp-missing-layers", _set("workload", value={"kind": "data_parallel_step"}),
     ["workload.layers", "missing"]),
    ("dp-layers-0", _set("workload", value={"kind": "data_parallel_step", "layers": 0,
                                            "params_per_layer": 1, "tokens_per_rank": 1}),
     ["workload.layers", "0"]),
    ("hardware-preset", _set("hardware", value="B300"),
     ["hardware", "B300", "A100-SXM4-80GB", "H100-SXM5-80GB", "H200"]),
    ("hardware-number", _set("hardware", value=42), ["hardware", "42"]),
    ("hardware-list", _set("hardware", value=["A100"]), ["hardware", "A100"]),
    ("hardware-mapping", _set("hardware", value={"name": "x"}), ["hardware", "peak_flops"]),
    ("name-int", _set("name", value=5), ["name", "5"]),
    ("outputs-typo", _set("outputs", value={"jsn": "r.json"}), ["outputs.jsn", "'json'"]),
    ("outputs-int", _set("outputs", value={"json": 5}), ["outputs.json", "5"]),
    ("network-null", _set("network", value=None), ["network", "None"]),
]


@pytest.mark.parametrize(("change", "needles"), [pytest.param(c, n, id=i) for i, c, n in ERRORS])
def test_config_errors_name_key_and_value(change, needles: list[str]) -> None:
    data = minimal()
    change(data)
    message = config_error(data)
    for needle in needles:
        assert needle in message, f"{needle!r} not in {message!r}"


def test_unknown_collective_names_key_path() -> None:
    data = minimal()
    data["workload"]["ops"][0]["collective"] = "allreduce2"
    message = config_error(data)
    assert "allreduce2" in message
    assert "all_reduce" in message  # lists the allowed collectives
    assert "workload.ops[0].collective" in message


def test_unknown_collective_is_config_error_with_value() -> None:
    data = minimal()
    data["workload"]["ops"][0]["collective"] = "allreduce2"
    message = config_error(data)
    assert "'allreduce2'" in message
    assert "all_gather" in message


def test_group_rank_out_of_range_is_config_error() -> None:
    data = minimal()
    data["workload"]["ops"][0]["group"] = [0, 7]
    message = config_error(data)
    assert "7" in message
    assert "workload" in message


def test_group_rank_out_of_range_is_refused_naming_rank() -> None:
    data = minimal()
    data["workload"]["ops"][0]["group"] = [0, 7]
    with pytest.raises(ValueError, match="7"):
        scenario_from_dict(data)


@pytest.mark.parametrize("top", [[1, 2], "text", 5, None])
def test_non_mapping_top_level(top: Any) -> None:
    message = config_error(top)
    assert "mapping" in message
    assert type(top).__name__ in message


def test_non_mapping_top_level_message_has_a_location() -> None:
    message = config_error([1, 2])
    assert not message.startswith(":"), message


def test_config_error_is_value_error() -> None:
    assert issubclass(ConfigError, ValueError)


# ---------------------------------------------------------------------- files
def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


SMALL_YAML = """\
name: small
topology: {kind: ring, npus: 4, bandwidth: 400 Gb/s, latency: 1 us}
network: {packet_size: 8 KiB, chunks: 2}
workload:
  kind: collectives
  ops:
    - {collective: all_reduce, size: 64 KiB, repeat: 2}
"""


def test_load_scenario_from_file(tmp_path: Path) -> None:
    path = write(tmp_path / "small.yaml", SMALL_YAML)
    sc = load_scenario(path)
    assert sc.name == "small"
    assert sc.source == str(path)
    assert {lk.bandwidth for lk in sc.topology.links} == {50.0}
    assert {lk.latency for lk in sc.topology.links} == {1000.0}
    assert sc.options.packet_bytes == 8192.0
    assert sc.options.chunks == 2
    assert len(sc.graph.collective_instances()) == 2
    assert sc.outputs.json is None and sc.outputs.trace is None and sc.outputs.links_csv is None
    # also accepted as a plain string
    assert load_scenario(str(path)).name == "small"


def test_relative_outputs_resolve_against_file_folder(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "scen"
    folder.mkdir()
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    absolute = tmp_path / "abs" / "links.csv"
    path = write(folder / "s.yaml", SMALL_YAML + (
        f"outputs: {{json: out/r.json, trace: t.json, links_csv: '{absolute}'}}\n"))
    out = load_scenario(path).outputs
    assert out.json == folder / "out" / "r.json"
    assert out.trace == folder / "t.json"
    assert out.links_csv == absolute


def test_relative_outputs_of_a_dict_resolve_against_base(tmp_path: Path) -> None:
    data = minimal()
    data["outputs"] = {"json": "r.json"}
    assert scenario_from_dict(data, base=tmp_path).outputs.json == tmp_path / "r.json"


def test_invalid_yaml_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path / "broken.yaml", "topology: {kind: ring, npus: [4\n")
    with pytest.raises(ConfigError) as info:
        load_scenario(path)
    assert str(path) in str(info.value)
    assert "YAML" in str(info.value)


def test_bad_key_in_file(tmp_path: Path) -> None:
    path = write(tmp_path / "typo.yaml", SMALL_YAML.replace("chunks: 2", "chunkz: 2"))
    with pytest.raises(ConfigError, match=r"network\.chunkz.*did you mean 'chunks'"):
        load_scenario(path)


def test_yaml_list_file_is_config_error(tmp_path: Path) -> None:
    path = write(tmp_path / "list.yaml", "- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_scenario(path)


def test_unknown_scenario_name_lists_bundled() -> None:
    with pytest.raises(ConfigError) as info:
        load_scenario("no_such_scenario_xyz")
    message = str(info.value)
    assert "no_such_scenario_xyz" in message
    for name in BUNDLED:
        assert name in message


def test_yaml_is_parsed_safely(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = write(tmp_path / "evil.yaml",
                 f'!!python/object/apply:os.system ["touch {marker}"]\n')
    with pytest.raises(ConfigError) as info:
        load_scenario(path)
    assert str(path) in str(info.value)
    assert not marker.exists()


def test_python_tag_inside_mapping_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned2"
    text = SMALL_YAML.replace("name: small",
                              f'name: !!python/object/apply:os.system ["touch {marker}"]')
    path = write(tmp_path / "evil2.yaml", text)
    with pytest.raises(ConfigError):
        load_scenario(path)
    assert not marker.exists()
