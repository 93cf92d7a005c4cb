"""AstraSim network.yml / system.json: units at the border, clear errors, warnings for keys des
does not model."""

from __future__ import annotations

import json
import logging

import pytest

from astra_bridge.configs import AstraConfigError, load_network, load_system, network_from_dict
from astra_bridge.inputs import astra_hardware


def test_network_units_and_topology(tmp_path):
    path = tmp_path / "network.yml"
    path.write_text("topology: [ FullyConnected, Switch ]\nnpus_count: [ 8, 2 ]\n"
                    "bandwidth: [ 150.0, 25.0 ]\nlatency: [ 500.0, 1000.0 ]\n")
    net = load_network(path)
    assert net.bandwidths == pytest.approx((150 * 2**30 / 1e9, 25 * 2**30 / 1e9))
    topo = net.topology()
    assert topo.num_npus == 16 and topo.info.kind == "hierarchical"


@pytest.mark.parametrize(("data", "message"), [
    ({"topology": ["Ring"], "npus_count": [8, 2], "bandwidth": [50], "latency": [500]},
     "differ in length"),
    ({"topology": ["Torus"], "npus_count": [8], "bandwidth": [50], "latency": [500]},
     r"topology\[0\]: unknown topology kind 'Torus'"),
    ({"topology": ["Ring"], "npus_count": [8], "bandwidth": [-5], "latency": [500]},
     r"bandwidth\[0\]"),
    ({"topology": ["Ring"], "npus_count": [8], "bandwidth": [50]}, "latency must be"),
    (["Ring"], "expected a mapping"),
])
def test_network_errors(data, message):
    with pytest.raises(AstraConfigError, match=message):
        network_from_dict(data)


def test_system_errors_and_warnings(tmp_path, caplog):
    base = {"endpoint-delay": 10, "preferred-dataset-splits": 4, "local-mem-bw": 1600,
            "all-reduce-implementation": ["ring"]}
    path = tmp_path / "system.json"
    path.write_text(json.dumps({**base, "model-shared-bus": 1}))
    with caplog.at_level(logging.WARNING):
        system = load_system(path, dims=1)
    assert "model-shared-bus" in caplog.text
    assert system.splits == 4 and system.implementations["all_reduce"] == ("ring",)
    path.write_text(json.dumps({**base, "all-reduce-implementation": ["ring", "direct"]}))
    with pytest.raises(AstraConfigError, match="one implementation per network dimension"):
        load_system(path, dims=1)
    path.write_text(json.dumps({**base, "all-reduce-implementation": ["oneRing"]}))
    with pytest.raises(AstraConfigError, match="unknown implementation 'oneRing'"):
        load_system(path, dims=1)
    path.write_text("{not json")
    with pytest.raises(AstraConfigError, match="not valid json"):
        load_system(path, dims=1)


def test_roofline_hardware_matches_astra_units(tmp_path):
    path = tmp_path / "system.json"
    path.write_text(json.dumps({"roofline-enabled": 1, "peak-perf": 900, "local-mem-bw": 3000}))
    gpu = astra_hardware(load_system(path, dims=1))
    assert gpu.peak_flops["fp16"] == 900_000.0 and gpu.hbm_bandwidth == 3000.0
    path.write_text(json.dumps({"roofline-enabled": 0}))
    assert astra_hardware(load_system(path, dims=1)) is None
