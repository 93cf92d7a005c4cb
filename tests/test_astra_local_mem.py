"""AstraSim's track-local-mem: peak local memory per rank (astra_bridge.local_mem).

The traces are hand-made so that the peak has a closed form under AstraSim's rules
(LocalMemUsageTracker.cc): a tensor is resident from the start of its writer (tick 0 when it
is only read) to the end of its last reader (for ever when never read), and at a tick the
tensors freed there are gone before the bytes are summed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import pytest
from chakra.schema.protobuf.et_def_pb2 import (
    COMP_NODE,
    AttributeProto,
    StringList,
)
from chakra.schema.protobuf.et_def_pb2 import Node as ChakraNode
from helpers import write_et

from astra_bridge.chakra_mapping import ChakraError
from astra_bridge.chakra_read import read_trace
from astra_bridge.configs import AstraConfigError, load_system
from astra_bridge.local_mem import format_bytes, peak_local_memory
from des.app.cli import main

# Tensor sizes (bytes) of rank 0: A is written by node 1, W only read (resident from tick 0),
# B written by node 2 from A and W, C written by node 3 from B.
A, W, B, C = 100, 50, 300, 1000
X = 5  # rank 1: written, never read


def io(name: str, pairs: Sequence[tuple[str, int]]) -> AttributeProto:
    return AttributeProto(name=name, string_list=StringList(
        values=[v for n, s in pairs for v in (n, str(s))]))


def comp(nid: int, micros: int, inputs, outputs, deps: Sequence[int] = ()) -> ChakraNode:
    node = ChakraNode(id=nid, name=f"c{nid}", type=COMP_NODE, duration_micros=micros)
    node.data_deps.extend(deps)
    node.attr.extend([AttributeProto(name="is_cpu_op", bool_val=False),
                      io("inputs", inputs), io("outputs", outputs)])
    return node


def chain_trace(tmp_path: Path) -> Path:
    rank0 = [comp(1, 1, [], [("A", A)]),                          # 0 .. 1000 ns
             comp(2, 2, [("A", A), ("W", W)], [("B", B)], [1]),   # 1000 .. 3000 ns
             comp(3, 1, [("B", B)], [("C", C)], [2])]             # 3000 .. 4000 ns
    rank1 = [comp(1, 3, [("Z", 0)], [("X", X)])]                  # size 0 is ignored
    return write_et(tmp_path / "wl", [rank0, rank1])


def test_closed_form_peak():
    # At 3000 ns C is written while A and W are last read: they are freed before the sum.
    expected = max(A + W + B, B + C)
    assert expected == B + C != A + W + B + C
    nodes = [(0.0, 1000.0, ((), (("A", A),))),
             (1000.0, 3000.0, ((("A", A), ("W", W)), (("B", B),))),
             (3000.0, 4000.0, ((("B", B),), (("C", C),)))]
    assert peak_local_memory(nodes) == expected
    assert peak_local_memory([]) == 0
    # a second write of a tensor keeps the first (AstraSim's assert, compiled out)
    assert peak_local_memory([(0.0, 1.0, ((), (("A", 7),))), (2.0, 3.0, ((), (("A", 9),)))]) == 7


def test_format_like_astra():
    assert format_bytes(1023) == "1023.00 B"
    assert format_bytes(1300) == "1.27 KB"
    assert format_bytes(3 * 1024**3) == "3.00 GB"


def write_configs(tmp_path: Path, track: object = 1) -> tuple[Path, Path]:
    system = tmp_path / "system.json"
    system.write_text(json.dumps({"all-reduce-implementation": ["ring"],
                                  "track-local-mem": track}))
    network = tmp_path / "network.yml"
    network.write_text("topology: [ Ring ]\nnpus_count: [ 2 ]\nbandwidth: [ 50 ]\n"
                       "latency: [ 500 ]\n")
    return system, network


def test_run_reports_peak_per_rank(tmp_path, caplog, capsys):
    prefix = chain_trace(tmp_path)
    system, network = write_configs(tmp_path)
    out = tmp_path / "result.json"
    with caplog.at_level(logging.WARNING):
        assert main(["simulate", f"--workload-configuration={prefix}",
                     f"--system-configuration={system}", f"--network-configuration={network}",
                     "--astra-compat", "--json", str(out)]) == 0
    assert "track-local-mem" not in caplog.text and "ignoring keys" not in caplog.text
    meta = json.loads(out.read_text())["meta"]
    assert {int(r): v for r, v in meta["local_memory_peak_bytes"].items()} == {0: B + C, 1: X}
    printed = capsys.readouterr().out
    assert "peak memory" in printed and format_bytes(B + C) in printed


def test_off_by_default_and_checked(tmp_path):
    prefix = chain_trace(tmp_path)
    system, network = write_configs(tmp_path, track=0)
    out = tmp_path / "result.json"
    assert main(["simulate", f"--workload-configuration={prefix}",
                 f"--system-configuration={system}", f"--network-configuration={network}",
                 "-q", "--json", str(out)]) == 0
    assert "local_memory_peak_bytes" not in json.loads(out.read_text())["meta"]
    system.write_text(json.dumps({"track-local-mem": "yes"}))
    with pytest.raises(AstraConfigError, match="track-local-mem: must be 0 or 1"):
        load_system(system, dims=1)
    system.write_text(json.dumps({"track-local-mem": True}))
    assert load_system(system, dims=1).track_local_mem


def test_bad_tensor_lists_are_user_errors(tmp_path):
    bare = ChakraNode(id=1, name="bare", type=COMP_NODE, duration_micros=1)
    prefix = write_et(tmp_path / "bare", [[bare], [bare]])
    assert read_trace(prefix).tensor_io == {}  # not asked for: not needed
    with pytest.raises(ChakraError, match="attribute 'inputs' is missing"):
        read_trace(prefix, tensors=True)
    odd = comp(1, 1, [], [])
    odd.attr[1].string_list.values.append("A")
    prefix = write_et(tmp_path / "odd", [[odd], [odd]])
    with pytest.raises(ChakraError, match="name, size pairs"):
        read_trace(prefix, tensors=True)
    bad = comp(1, 1, [("A", 1)], [])
    bad.attr[1].string_list.values[1] = "12abc"
    prefix = write_et(tmp_path / "bad", [[bad], [bad]])
    with pytest.raises(ChakraError, match="whole number of bytes"):
        read_trace(prefix, tensors=True)
