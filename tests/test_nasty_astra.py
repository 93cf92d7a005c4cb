"""A corpus of nasty AstraSim, Chakra and HuggingFace inputs, generated into ``tmp_path`` from
a valid case: each must be refused with a :class:`~des.core.schema.SchemaError` whose message
names the file, the key or node, the bad value and what is allowed - and, through the CLI,
exit with code 2 (bad input), never 1 (internal error). Nothing may be built before the
inputs are known to be usable (a mistyped npus_count must not build a topology first)."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from chakra.schema.protobuf.et_def_pb2 import (
    COMM_COLL_NODE,
    COMM_SEND_NODE,
    COMP_NODE,
    METADATA_NODE,
    AttributeProto,
    GlobalMetadata,
)
from chakra.schema.protobuf.et_def_pb2 import Node as ChakraNode
from chakra.src.third_party.utils.protolib import encodeMessage

from astra_bridge.chakra_mapping import ChakraError
from astra_bridge.chakra_read import read_comm_groups, read_trace
from astra_bridge.chakra_write import write_trace
from astra_bridge.configs import AstraConfigError, AstraNetwork
from astra_bridge.inputs import AstraInputs, load_inputs
from des.core.graph import EventGraph
from des.core.schema import SchemaError
from workloads.hf_config import from_hf_config, read_hf_config
from workloads.models import ModelConfigError

ROOT = Path(__file__).resolve().parent.parent

SYSTEM = {"scheduling-policy": "LIFO", "endpoint-delay": 10, "active-chunks-per-dimension": 1,
          "preferred-dataset-splits": 4, "all-reduce-implementation": ["ring"],
          "reduce-scatter-implementation": ["ring"], "all-gather-implementation": ["ring"],
          "all-to-all-implementation": ["ring"], "collective-optimization": "localBWAware",
          "local-mem-bw": 1600, "peak-perf": 900, "roofline-enabled": 0}
NETWORK = "topology: [ Ring ]\nnpus_count: [ 4 ]\nbandwidth: [ 50.0 ]\nlatency: [ 500.0 ]\n"


class Case:
    """A valid set of AstraSim inputs in a folder, to be spoiled one file at a time."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.prefix = folder / "workload" / "workload"
        self.system = folder / "system.json"
        self.network = folder / "network.yml"
        self.groups = folder / "comm_group.json"
        self.remote = folder / "remote_memory.json"

    def load(self) -> AstraInputs:
        return load_inputs(self.prefix, self.system, self.network, comm_groups=self.groups,
                           remote_memory=self.remote)

    def argv(self) -> list[str]:
        return ["simulate", "-q", f"--workload-configuration={self.prefix}",
                f"--system-configuration={self.system}",
                f"--network-configuration={self.network}",
                f"--comm-group-configuration={self.groups}",
                f"--remote-memory-configuration={self.remote}"]

    def rank_file(self, rank: int) -> Path:
        return Path(f"{self.prefix}.{rank}.et")


@pytest.fixture
def case(tmp_path: Path) -> Case:
    g = EventGraph(4)
    for r in range(4):
        g.compute(r, duration_ns=5000.0)
    g.collective_all("all_reduce", 2**20, deps={r: [0] for r in range(4)})
    g.collective_all("all_reduce", 4096, group=[0, 1])
    g.collective_all("all_reduce", 4096, group=[2, 3])
    g.send(0, 1, 1024, tag=3)
    g.recv(1, 0, 1024, tag=3)
    c = Case(tmp_path / "case")
    write_trace(g, c.prefix, comm_groups_path=c.groups)
    c.system.write_text(json.dumps(SYSTEM))
    c.network.write_text(NETWORK)
    c.remote.write_text(json.dumps({"memory-type": "NO_MEMORY_EXPANSION"}))
    c.load()  # the unspoiled case is valid
    return c


def refused(action: Callable[[], object], error: type[SchemaError], *fragments: str) -> str:
    """Run ``action``; it must raise ``error`` (a SchemaError) whose message has every
    fragment."""
    with pytest.raises(error) as info:
        action()
    message = str(info.value)
    assert isinstance(info.value, SchemaError)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


# ---------------------------------------------------------------------- system.json
NAN = float("nan")
SYSTEM_CASES = [
    ("preferred-dataset-splits", "4", ["preferred-dataset-splits", "str '4'", "positive integer"]),
    ("preferred-dataset-splits", [4], ["preferred-dataset-splits", "list [4]"]),
    ("preferred-dataset-splits", 0, ["preferred-dataset-splits", "int 0"]),
    ("preferred-dataset-splits", -1, ["preferred-dataset-splits", "int -1"]),
    ("preferred-dataset-splits", 2.5, ["preferred-dataset-splits", "float 2.5"]),
    ("preferred-dataset-splits", 10**8, ["100000000 splits", "at most 1024"]),
    ("active-chunks-per-dimension", 0, ["active-chunks-per-dimension", "int 0"]),
    ("endpoint-delay", NAN, ["endpoint-delay", "nan", "from 0 to"]),
    ("endpoint-delay", -5, ["endpoint-delay", "int -5"]),
    ("endpoint-delay", "10", ["endpoint-delay", "str '10'"]),
    ("local-mem-bw", "fast", ["local-mem-bw", "str 'fast'", "GB/s"]),
    ("local-mem-bw", 1e-320, ["local-mem-bw", "GB/s"]),
    ("peak-perf", float("inf"), ["peak-perf", "inf", "TFLOP/s"]),
    ("roofline-enabled", "no", ["roofline-enabled", "0 or 1", "str 'no'"]),
    ("roofline-enabled", 2, ["roofline-enabled", "int 2"]),
    ("scheduling-policy", "lifo", ["scheduling-policy", "'lifo'", "did you mean 'LIFO'",
                                   "LIFO, FIFO"]),
    ("scheduling-policy", ["LIFO"], ["scheduling-policy", "list ['LIFO']", "LIFO, FIFO"]),
    ("collective-optimization", "fast", ["collective-optimization", "localBWAware, baseline"]),
    ("all-reduce-implementation", ["oneRing"], ["all-reduce-implementation[0]", "'oneRing'",
                                                "ring, direct, halvingDoubling"]),
    ("all-reduce-implementation", [["ring"]], ["all-reduce-implementation[0]",
                                               "list ['ring']", "ring, direct"]),
    ("all-reduce-implementation", [5], ["all-reduce-implementation[0]", "int 5"]),
    ("all-reduce-implementation", ["ring", "ring"], ["one implementation per network "
                                                     "dimension (1)"]),
    ("all-to-all-implementation", "ring", ["all-to-all-implementation", "str 'ring'"]),
]


@pytest.mark.parametrize(("key", "value", "fragments"), SYSTEM_CASES,
                         ids=[f"{k}={v!r}"[:50] for k, v, _ in SYSTEM_CASES])
def test_system_json_value(case: Case, key: str, value: object, fragments: list[str]) -> None:
    case.system.write_text(json.dumps({**SYSTEM, key: value}))
    refused(case.load, AstraConfigError, str(case.system), *fragments)


def test_system_json_roofline_needs_its_numbers(case: Case) -> None:
    case.system.write_text(json.dumps({**SYSTEM, "roofline-enabled": 1, "peak-perf": 0}))
    refused(case.load, AstraConfigError, str(case.system), "roofline-enabled needs peak-perf")


@pytest.mark.parametrize(("raw", "fragments"), [
    (b"[1, 2]", ["expected a JSON object", "list [1, 2]"]),
    (b"{", ["not valid json"]),
    (b"\xff\xfe{}", ["not UTF-8"]),
    (b"[" * 50_000 + b"]" * 50_000, ["nested too deeply"]),
    (b"", ["not valid json"]),
])
def test_system_json_file(case: Case, raw: bytes, fragments: list[str]) -> None:
    case.system.write_bytes(raw)
    refused(case.load, AstraConfigError, str(case.system), *fragments)


# ---------------------------------------------------------------------- network.yml
NETWORK_CASES = [
    ("bandwidth: [ .inf ]", ["bandwidth[0]", "float inf", "GB/s"]),
    ("bandwidth: [ 1.0e+300 ]", ["bandwidth[0]", "1e+300"]),
    ("bandwidth: [ 0 ]", ["bandwidth[0]", "int 0"]),
    ("latency: [ .nan ]", ["latency[0]", "float nan", "ns"]),
    ("latency: [ -1 ]", ["latency[0]", "int -1"]),
    ("npus_count: [ 4.5 ]", ["npus_count[0]", "float 4.5", "positive integer"]),
    ("npus_count: [ '4' ]", ["npus_count[0]", "str '4'"]),
    ("npus_count: [ 1 ]", ["at least 2 NPUs"]),
    ("npus_count: [ 1000000000000 ]", ["npus_count[0]", "1000000000000 NPUs", "at most"]),
    ("npus_count: 4", ["npus_count must be a non-empty list", "int 4"]),
    ("topology: [ ring ]", ["topology[0]", "'ring'", "did you mean 'Ring'",
                            "Ring, FullyConnected, Switch"]),
    ("topology: [ Torus ]", ["topology[0]", "'Torus'", "Ring, FullyConnected, Switch"]),
    ("topology: [ [Ring] ]", ["topology[0]", "list ['Ring']", "Ring, FullyConnected, Switch"]),
    ("topology: [ Ring, Ring ]", ["differ in length"]),
]


@pytest.mark.parametrize(("line", "fragments"), NETWORK_CASES,
                         ids=[line for line, _ in NETWORK_CASES])
def test_network_yml_value(case: Case, line: str, fragments: list[str]) -> None:
    key = line.split(":")[0]
    kept = [row for row in NETWORK.splitlines() if not row.startswith(key)]
    case.network.write_text("\n".join([*kept, line]) + "\n")
    refused(case.load, AstraConfigError, str(case.network), *fragments)


def test_network_yml_giant_product_refused_before_building(case: Case) -> None:
    case.network.write_text("topology: [ Ring, Ring ]\nnpus_count: [ 1000000, 1000000 ]\n"
                            "bandwidth: [ 50, 50 ]\nlatency: [ 500, 500 ]\n")
    refused(case.load, AstraConfigError, "npus_count [1000000, 1000000] makes 1000000000000",
            "at most")


@pytest.mark.parametrize("text", ["5", "- Ring\n", "topology: [", "{a: *nope}"])
def test_network_yml_not_a_network(case: Case, text: str) -> None:
    case.network.write_text(text)
    refused(case.load, AstraConfigError, str(case.network))


def test_more_npus_than_rank_files_is_refused_before_building(case: Case,
                                                              monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    def no_building(self: AstraNetwork) -> None:
        raise AssertionError("the topology was built before the rank files were counted")

    monkeypatch.setattr(AstraNetwork, "topology", no_building)
    case.network.write_text(NETWORK.replace("[ 4 ]", "[ 4096 ]"))
    refused(case.load, ChakraError, "workload.4.et: missing rank file", "4096 ranks needed",
            str(case.network), "only ranks 0..3 have files")


def test_fewer_npus_than_rank_files_warns(case: Case) -> None:
    case.network.write_text(NETWORK.replace("[ 4 ]", "[ 2 ]"))
    case.groups.write_text(json.dumps({"1": [0, 1], "2": [0, 1]}))
    inputs = case.load()
    assert any("2 rank files beyond the 2 NPUs" in w for w in inputs.warnings)


# ---------------------------------------------------------------------- comm groups
@pytest.mark.parametrize(("raw", "fragments"), [
    ('[[0, 1]]', ["expected an object", "list [[0, 1]]"]),
    ('{"1": []}', ["group '1': empty"]),
    ('{"1": [0, 0, 1]}', ["group '1': rank 0 appears twice"]),
    ('{"1": [-1, 0]}', ["group '1': rank -1 is not a rank"]),
    ('{"1": [0, 1.0]}', ["group '1': expected a list of integer ranks", "list [0, 1.0]"]),
    ('{"1": [0, 1e999]}', ["group '1'", "inf"]),
    ('{"1": [0, 99999999999999999999]}', ["group '1': rank", "is not a rank"]),
    ('{"1": {"0": 1}}', ["group '1'", "dict"]),
    ('{"1": "01"}', ["group '1'", "str '01'"]),
    ('{"1": [0, true]}', ["group '1'", "True"]),
    ("{'1': [0]}", ["not valid JSON"]),
    ("[" * 50_000, ["nested too deeply"]),
])
def test_comm_group_file(case: Case, raw: str, fragments: list[str]) -> None:
    case.groups.write_text(raw)
    refused(case.load, ChakraError, str(case.groups), *fragments)


def test_comm_group_out_of_range_rank_named_where_used(case: Case) -> None:
    case.groups.write_text(json.dumps({"1": [0, 1], "2": [2, 9]}))
    refused(case.load, ChakraError, "workload.2.et: rank 2", "comm group '2' = [2, 9]",
            "outside 0..3")


# ---------------------------------------------------------------------- remote memory
@pytest.mark.parametrize(("raw", "fragments"), [
    ("[1]", ["expected a JSON object", "list [1]"]),
    ("{}", ["memory-type: required key is missing", "NO_MEMORY_EXPANSION"]),
    ('{"memory-type": 5}', ["memory-type", "int 5", "NO_MEMORY_EXPANSION"]),
    ('{"memory-type": "NO_MEMORY_EXPANSIN"}', ["did you mean 'NO_MEMORY_EXPANSION'"]),
    ("{", ["not valid JSON"]),
])
def test_remote_memory_file(case: Case, raw: str, fragments: list[str]) -> None:
    case.remote.write_text(raw)
    refused(case.load, AstraConfigError, str(case.remote), *fragments)


# ---------------------------------------------------------------------- Chakra files
def write_nodes(path: Path, nodes: list[ChakraNode]) -> None:
    with open(path, "wb") as fh:
        encodeMessage(fh, GlobalMetadata(version="0.0.4"))
        for node in nodes:
            encodeMessage(fh, node)


def coll(nid: int, size: AttributeProto, *extra: AttributeProto, kind: int = 0
         ) -> ChakraNode:
    node = ChakraNode(id=nid, name=f"coll{nid}", type=COMM_COLL_NODE)
    node.attr.extend([AttributeProto(name="comm_type", int64_val=kind), size, *extra])
    return node


@pytest.mark.parametrize(("spoil", "fragments"), [
    (lambda p: p.write_bytes(p.read_bytes()[:-3]), ["rank 1: truncated node message"]),
    (lambda p: p.write_bytes(b"\xff" * 40), ["rank 1:", "GlobalMetadata"]),
    (lambda p: p.write_text("topology: [Ring]\n"), ["rank 1:"]),
    (lambda p: p.write_bytes(b""), ["rank 1: empty file"]),
    (lambda p: p.write_bytes(gzip.compress(p.read_bytes())[:-8]), ["rank 1: cannot read"]),
    (lambda p: (p.unlink(), p.mkdir()), ["missing rank file for rank 1"]),
])
def test_spoiled_rank_file(case: Case, spoil: Callable[[Path], object],
                           fragments: list[str]) -> None:
    path = case.rank_file(1)
    spoil(path)
    refused(case.load, ChakraError, str(path), *fragments)


def test_missing_rank_file_found_before_reading(case: Case) -> None:
    case.rank_file(2).unlink()
    refused(case.load, ChakraError, "workload.2.et: missing rank file", "only ranks 0..1")


@pytest.mark.parametrize(("size", "fragments"), [
    (AttributeProto(name="comm_size", int64_val=-5), ["'comm_size' must be a finite number >= 0",
                                                      "int -5"]),
    (AttributeProto(name="comm_size", double_val=float("nan")), ["'comm_size'", "float nan"]),
    (AttributeProto(name="comm_size", bool_val=True), ["'comm_size'", "bool True"]),
    (AttributeProto(name="comm_size", string_val="64"), ["'comm_size'", "str '64'"]),
])
def test_bad_attribute_value(tmp_path: Path, size: AttributeProto, fragments: list[str]) -> None:
    prefix = tmp_path / "t"
    for rank in range(2):
        write_nodes(Path(f"{prefix}.{rank}.et"), [coll(0, size)])
    refused(lambda: read_trace(prefix), ChakraError, "t.0.et: rank 0: node 0 ('coll0')",
            *fragments)


def test_root_outside_its_group(tmp_path: Path) -> None:
    prefix = tmp_path / "t"
    size = AttributeProto(name="comm_size", int64_val=64)
    root = AttributeProto(name="root", int64_val=7)
    for rank in range(2):  # comm_type 5: BROADCAST
        write_nodes(Path(f"{prefix}.{rank}.et"), [coll(0, size, root, kind=5)])
    refused(lambda: read_trace(prefix), ChakraError, "node 0 ('coll0'): root 7 is not in the "
            "comm group")


def test_collectives_that_do_not_match_across_ranks(tmp_path: Path) -> None:
    prefix = tmp_path / "t"
    for rank, size in enumerate((64, 128)):
        write_nodes(Path(f"{prefix}.{rank}.et"),
                    [coll(0, AttributeProto(name="comm_size", int64_val=size))])
    refused(lambda: read_trace(prefix), ChakraError, f"{prefix}.*.et:")


def test_unpaired_send(tmp_path: Path) -> None:
    prefix = tmp_path / "t"
    send = ChakraNode(id=0, name="s", type=COMM_SEND_NODE)
    send.attr.extend([AttributeProto(name="comm_dst", int32_val=1),
                      AttributeProto(name="comm_size", int64_val=8)])
    write_nodes(Path(f"{prefix}.0.et"), [send])
    write_nodes(Path(f"{prefix}.1.et"), [ChakraNode(id=0, type=COMP_NODE, duration_micros=1)])
    refused(lambda: read_trace(prefix), ChakraError, f"{prefix}.*.et:")


def test_long_chain_of_skipped_nodes(tmp_path: Path) -> None:
    """5,000 chained METADATA nodes used to raise RecursionError."""
    prefix = tmp_path / "t"
    nodes = []
    for i in range(5000):
        node = ChakraNode(id=i, type=METADATA_NODE)
        node.data_deps.extend([i - 1] if i else [])
        nodes.append(node)
    last = ChakraNode(id=5000, type=COMP_NODE, duration_micros=1)
    last.data_deps.append(4999)
    write_nodes(Path(f"{prefix}.0.et"), [*nodes, last])
    assert read_trace(prefix).graph.node(0, 5000).deps == ()


def test_read_trace_num_ranks_bounds(case: Case) -> None:
    refused(lambda: read_trace(case.prefix, num_ranks=10**9), ChakraError, "num_ranks",
            "int 1000000000")
    refused(lambda: read_trace(case.prefix, num_ranks=True), ChakraError, "bool True")
    refused(lambda: read_comm_groups({"1": "0"}), ChakraError, "comm groups (mapping)")


# ---------------------------------------------------------------------- HuggingFace config
HF = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 4096,
      "intermediate_size": 11008, "num_attention_heads": 32, "num_hidden_layers": 32,
      "hidden_act": "silu", "max_position_embeddings": 4096, "vocab_size": 32000,
      "rms_norm_eps": 1e-5, "tie_word_embeddings": False}


@pytest.mark.parametrize(("change", "fragments"), [
    ({"architectures": 5}, ["architectures must be a list", "int 5"]),
    ({"architectures": [5]}, ["architectures", "list [5]"]),
    ({"model_type": ["llama"]}, ["model_type must be a string"]),
    ({"hidden_size": 10**200, "intermediate_size": 10**200}, ["hidden_size", "at most"]),
    ({"num_hidden_layers": 10**200}, ["num_hidden_layers", "at most 4096"]),
    ({"hidden_size": float("nan")}, ["hidden_size", "float nan"]),
    ({"vocab_size": float("inf")}, ["vocab_size", "float inf"]),
    ({"hidden_size": 4096.0}, ["hidden_size", "float 4096.0"]),
    ({"hidden_act": 5}, ["hidden_act must be an activation name", "int 5"]),
    ({"hidden_act": "relu", "model_type": "opt", "architectures": ["OPTForCausalLM"]},
     ["unsupported activation 'relu'"]),
    ({"multi_query": "yes"}, ["multi_query must be true or false", "str 'yes'"]),
    ({"max_position_embeddings": 10**12}, ["max_position_embeddings", "at most"]),
    ({"num_local_experts": 8, "num_experts_per_tok": float("nan")}, ["num_experts_per_tok"]),
])
def test_hf_config_value(change: dict, fragments: list[str]) -> None:
    refused(lambda: from_hf_config({**HF, **change}, "m"), ModelConfigError,
            "HF config for 'm'", *fragments)


def test_hf_config_seq_argument_bounded() -> None:
    refused(lambda: from_hf_config(HF, "m", seq=10**30), ModelConfigError, "seq argument")


@pytest.mark.parametrize(("raw", "fragments"), [
    (b"[1, 2]", ["expected a JSON object", "list [1, 2]"]),
    (b'"llama"', ["expected a JSON object", "str 'llama'"]),
    (b"\xff", ["not UTF-8"]),
    (b"[" * 50_000, ["nesting deeper than"]),
    (b"{", ["not valid JSON"]),
])
def test_hf_config_file(tmp_path: Path, raw: bytes, fragments: list[str]) -> None:
    path = tmp_path / "config.json"
    path.write_bytes(raw)
    refused(lambda: read_hf_config(path), ModelConfigError, str(path), *fragments)


# ---------------------------------------------------------------------- through the CLI
def run_cli(*argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "des", *argv], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize("spoil", ["splits", "bandwidth", "trace", "groups"])
def test_cli_exit_code_2(case: Case, spoil: str) -> None:
    if spoil == "splits":
        case.system.write_text(json.dumps({**SYSTEM, "preferred-dataset-splits": "4"}))
    elif spoil == "bandwidth":
        case.network.write_text(NETWORK.replace("50.0", ".inf"))
    elif spoil == "trace":
        case.rank_file(3).write_bytes(case.rank_file(3).read_bytes()[:-2])
    else:
        case.groups.write_text('{"1": []}')
    done = run_cli(*case.argv())
    assert done.returncode == 2, done.stderr
    assert "internal error" not in done.stderr and "Traceback" not in done.stderr


def test_cli_model_import_exit_code_2(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**HF, "architectures": 5}))
    done = run_cli("model", "import", str(path))
    assert done.returncode == 2, done.stderr
    assert "architectures must be a list" in done.stderr


# ---------------------------------------------------------------------- algorithms per collective
def implementations(*names: str) -> dict:
    return {key: list(names) for key in ("all-reduce-implementation",
                                         "reduce-scatter-implementation",
                                         "all-gather-implementation",
                                         "all-to-all-implementation")}


def two_dim_case(tmp_path: Path, collective: str, system: dict) -> Case:
    g = EventGraph(8)
    g.collective_all(collective, 2**20)
    c = Case(tmp_path / collective)
    write_trace(g, c.prefix, comm_groups_path=c.groups)
    c.system.write_text(json.dumps({**SYSTEM, **system}))
    c.network.write_text("topology: [ Ring, Switch ]\nnpus_count: [ 4, 2 ]\n"
                         "bandwidth: [ 50, 25 ]\nlatency: [ 500, 500 ]\n")
    c.remote.write_text(json.dumps({"memory-type": "NO_MEMORY_EXPANSION"}))
    if not c.groups.exists():
        c.groups.write_text("{}")
    return c


def test_implementation_des_lacks_is_named_when_the_workload_uses_it(case: Case) -> None:
    # AstraSim users list one name for all four: unused ones are not held against them
    case.system.write_text(json.dumps({**SYSTEM, **implementations("ring"),
                                       "all-to-all-implementation": ["halvingDoubling"]}))
    case.load()
    case.system.write_text(json.dumps({**SYSTEM, **implementations("doubleBinaryTree")}))
    case.load()  # the case has all-reduces only
    g = EventGraph(4)
    g.collective_all("all_gather", 4096)
    write_trace(g, case.prefix)
    refused(case.load, AstraConfigError, str(case.system), "all-gather-implementation[0]",
            "'doubleBinaryTree' has no des algorithm for all_gather", "use one of ring")


def test_multi_dimensional_phase_algorithm_checked(tmp_path: Path) -> None:
    c = two_dim_case(tmp_path, "all_reduce", implementations("doubleBinaryTree", "ring"))
    refused(c.load, AstraConfigError, "all-reduce-implementation[0]", "reduce_scatter phase")
    c.system.write_text(json.dumps({**SYSTEM, **implementations("ring", "doubleBinaryTree")}))
    c.load()  # the last dimension runs an all-reduce: a double binary tree can


def test_multi_dimensional_all_to_all_runs_flat(tmp_path: Path) -> None:
    c = two_dim_case(tmp_path, "all_to_all", implementations("direct", "direct"))
    inputs = c.load()  # used to fail at run time: no 'hierarchical' all-to-all
    assert inputs.options("aware").algorithms["all_to_all"] == "direct"
    assert any("no per-dimension all_to_all" in w for w in inputs.warnings)
