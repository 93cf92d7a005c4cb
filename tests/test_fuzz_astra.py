"""Property-based fuzzing of the AstraSim, Chakra and HuggingFace input surfaces: whatever the
input, a loader returns a usable value or raises a :class:`~des.core.schema.SchemaError`,
never another exception (a TypeError, a RecursionError, an overflow, a protobuf error).

Budgets are CI-sized (a few hundred examples in all, no deadline); hypothesis's database is
not needed to reproduce a failure, since the failing example is printed."""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path

import pytest
from chakra.schema.protobuf.et_def_pb2 import (
    COMM_COLL_NODE,
    COMM_RECV_NODE,
    COMM_SEND_NODE,
    COMP_NODE,
    MEM_LOAD_NODE,
    METADATA_NODE,
    AttributeProto,
    BoolList,
    GlobalMetadata,
    Int64List,
)
from chakra.schema.protobuf.et_def_pb2 import Node as ChakraNode
from chakra.src.third_party.utils.protolib import encodeMessage
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from astra_bridge.chakra_read import read_comm_groups, read_trace
from astra_bridge.chakra_write import write_trace
from astra_bridge.configs import (
    MAX_NPUS,
    MAX_SPLITS,
    AstraConfigError,
    network_from_dict,
    system_from_dict,
)
from des.core.graph import EventGraph
from des.core.schema import SchemaError
from workloads.hf_config import from_hf_config
from workloads.models import ModelConfigError

FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])

# JSON/YAML-like values, biased toward the troublesome: huge and negative integers, NaN,
# infinities, tiny floats, booleans, numbers as strings, nesting.
scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(-5, 70), st.integers(), st.sampled_from([10**8, 10**12, 10**200, -(10**30)]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.5, 8.0, 1e-320, 1e300, float("nan"), float("inf")]),
    st.text(max_size=12), st.sampled_from(["4", "ring", "Ring", "LIFO", "", "1e3"]),
)
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=8)


# ---------------------------------------------------------------------- system.json
SYSTEM_KEYS = ["scheduling-policy", "endpoint-delay", "active-chunks-per-dimension",
               "preferred-dataset-splits", "collective-optimization", "local-mem-bw",
               "peak-perf", "roofline-enabled", "all-reduce-implementation",
               "reduce-scatter-implementation", "all-gather-implementation",
               "all-to-all-implementation", "model-shared-bus"]
implementation = st.one_of(st.sampled_from(["ring", "direct", "halvingDoubling",
                                            "doubleBinaryTree", "oneRing"]), values)
system_value = {
    "scheduling-policy": st.one_of(st.sampled_from(["LIFO", "FIFO"]), values),
    "endpoint-delay": st.one_of(st.integers(0, 100), values),
    "active-chunks-per-dimension": st.one_of(st.integers(0, 4), values),
    "preferred-dataset-splits": st.one_of(st.integers(-1, MAX_SPLITS + 1), values),
    "collective-optimization": st.one_of(st.sampled_from(["localBWAware", "baseline"]), values),
    "local-mem-bw": st.one_of(st.floats(0, 5000), values),
    "peak-perf": st.one_of(st.floats(0, 2000), values),
    "roofline-enabled": st.one_of(st.sampled_from([0, 1, True, False]), values),
}


@st.composite
def systems(draw: st.DrawFn) -> tuple[dict, int]:
    dims = draw(st.integers(1, 3))
    data = {}
    for key in draw(st.lists(st.sampled_from(SYSTEM_KEYS), unique=True)):
        if key.endswith("-implementation"):
            data[key] = draw(st.one_of(st.lists(implementation, min_size=dims, max_size=dims),
                                       values))
        else:
            data[key] = draw(system_value.get(key, values))
    return data, dims


@FUZZ
@given(systems())
def test_system_json_parses_or_refuses(case: tuple[dict, int]) -> None:
    data, dims = case
    try:
        system = system_from_dict(data, dims)
    except AstraConfigError as err:
        assert str(err).startswith("system.json: ")
        return
    assert 1 <= system.splits <= MAX_SPLITS and math.isfinite(system.endpoint_delay_ns)
    for model in (True, False):  # what a parsed system promises: engine options build
        system.engine_options(congestion_aware=model)


# ---------------------------------------------------------------------- network.yml
network_entry = {
    "topology": st.one_of(st.sampled_from(["Ring", "FullyConnected", "Switch", "Torus"]),
                          values),
    "npus_count": st.one_of(st.integers(0, 9), st.just(8.0), values),
    "bandwidth": st.one_of(st.floats(0, 400), values),
    "latency": st.one_of(st.floats(0, 1000), values),
}


@st.composite
def networks(draw: st.DrawFn) -> dict:
    dims = draw(st.integers(1, 3))
    data: dict = {}
    for key, entry in network_entry.items():
        if draw(st.integers(0, 9)) == 0:
            data[key] = draw(values)  # not a list at all, or absent
            continue
        data[key] = draw(st.lists(entry, min_size=dims, max_size=dims + draw(st.integers(0, 1))))
    return data


@FUZZ
@given(networks())
def test_network_yml_parses_or_refuses(data: dict) -> None:
    try:
        network = network_from_dict(data)
    except AstraConfigError as err:
        assert str(err).startswith("network.yml: ")
        return
    assert 2 <= network.npus <= MAX_NPUS
    assert all(math.isfinite(b) and b > 0 for b in network.bandwidths)
    if network.npus <= 64:  # a parsed network builds (small ones: cheap enough to try)
        assert network.topology().num_npus == network.npus


# ---------------------------------------------------------------------- comm groups
@FUZZ
@given(st.one_of(values, st.dictionaries(st.text(max_size=3),
                                         st.lists(st.integers(-2, 9), max_size=5), max_size=4)))
def test_comm_groups_parse_or_refuse(tmp_path: Path, raw: object) -> None:
    path = tmp_path / "groups.json"
    try:
        text = json.dumps(raw)
    except (ValueError, TypeError):
        return
    path.write_text(text)
    try:
        groups, _ = read_comm_groups(path)
    except SchemaError:
        return
    for ranks in groups.values():
        assert ranks and len(set(ranks)) == len(ranks) and all(0 <= r < MAX_NPUS for r in ranks)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=64) | st.text(max_size=40).map(str.encode))
def test_comm_group_file_bytes(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "groups.json"
    path.write_bytes(data)
    with contextlib.suppress(SchemaError):
        read_comm_groups(path)


# ---------------------------------------------------------------------- Chakra ET bytes
@pytest.fixture(scope="module")
def valid_trace(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[int, bytes]]:
    """A 4-rank trace with compute, a sub-group collective, send/recv and memory nodes."""
    g = EventGraph(4)
    for r in range(4):
        g.compute(r, duration_ns=5000.0, name=f"c{r}")
        g.compute(r, flops=1e9, nbytes=1e6, deps=[0])
    g.collective_all("all_reduce", 2**20, deps={r: [1] for r in range(4)})
    g.collective_all("all_gather", 4096, group=[0, 2])
    g.collective_all("broadcast", 512, group=[1, 3], root=3)
    g.send(0, 1, 1024, tag=7)
    g.recv(1, 0, 1024, tag=7)
    g.memory(2, 2048, op="store")
    prefix = tmp_path_factory.mktemp("fuzz") / "workload"
    write_trace(g, prefix)
    read_trace(prefix)  # the unmutated trace reads
    return prefix, {r: Path(f"{prefix}.{r}.et").read_bytes() for r in range(4)}


@st.composite
def mutations(draw: st.DrawFn, size: int) -> list[tuple[str, int, int]]:
    ops = st.tuples(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "dup"]),
                    st.integers(0, max(size - 1, 0)), st.integers(0, 255))
    return draw(st.lists(ops, min_size=1, max_size=4))


def mutate(data: bytes, ops: list[tuple[str, int, int]]) -> bytes:
    out = bytearray(data)
    for op, at, value in ops:
        at = at % max(len(out), 1)
        if op == "flip" and out:
            out[at] ^= 1 << (value % 8)
        elif op == "set" and out:
            out[at] = value
        elif op == "insert":
            out[at:at] = bytes([value])
        elif op == "delete" and out:
            del out[at:at + 1 + value % 4]
        elif op == "truncate":
            del out[at:]
        elif op == "dup":
            out[at:at] = out[at:at + 1 + value % 16]
    return bytes(out)


@settings(max_examples=200, deadline=None)
@given(rank=st.integers(0, 3), data=st.data())
def test_mutated_trace_reads_or_refuses(valid_trace: tuple[Path, dict[int, bytes]], rank: int,
                                        data: st.DataObject) -> None:
    prefix, originals = valid_trace
    path = Path(f"{prefix}.{rank}.et")
    ops = data.draw(mutations(len(originals[rank])))
    path.write_bytes(mutate(originals[rank], ops))
    try:
        read_trace(prefix)
    except SchemaError:
        pass
    finally:
        path.write_bytes(originals[rank])


# ---------------------------------------------------------------------- Chakra ET nodes
def _attribute(name: str, kind: str, value: object) -> AttributeProto:
    if kind == "bool_list":
        return AttributeProto(name=name, bool_list=BoolList(values=[bool(value)]))
    if kind == "int64_list":
        return AttributeProto(name=name, int64_list=Int64List(values=[int(value)]))
    return AttributeProto(name=name, **{kind: value})


ATTR_NAMES = ["comm_type", "comm_size", "pg_name", "comm_src", "comm_dst", "comm_tag", "root",
              "num_ops", "tensor_size", "is_cpu_op", "involved_dim", "op_class"]
attribute = st.one_of(
    st.tuples(st.sampled_from(ATTR_NAMES), st.just("int64_val"),
              st.integers(-(2**63), 2**63 - 1) | st.integers(-3, 9)),
    st.tuples(st.sampled_from(ATTR_NAMES), st.just("uint64_val"), st.integers(0, 2**64 - 1)),
    st.tuples(st.sampled_from(ATTR_NAMES), st.just("int32_val"), st.integers(-3, 9)),
    st.tuples(st.sampled_from(ATTR_NAMES), st.just("double_val"), st.floats()),
    st.tuples(st.sampled_from(ATTR_NAMES), st.just("bool_val"), st.booleans()),
    st.tuples(st.sampled_from(ATTR_NAMES), st.just("string_val"),
              st.sampled_from(["", "0", "1", "2", "x", "-1", "99999999999999999999"])),
    st.tuples(st.sampled_from(ATTR_NAMES), st.sampled_from(["bool_list", "int64_list"]),
              st.integers(0, 1)),
)
node_types = st.sampled_from([COMP_NODE, COMM_COLL_NODE, COMM_SEND_NODE, COMM_RECV_NODE,
                              MEM_LOAD_NODE, METADATA_NODE, 0, 99])


plausible = {  # attribute -> a value AstraSim's traces would carry
    "comm_type": ("int64_val", st.sampled_from([0, 1, 2, 5, 6, 7, 3, 42])),
    "comm_size": ("int64_val", st.sampled_from([0, 64, 4096])),
    "pg_name": ("string_val", st.sampled_from(["", "0", "1", "2"])),
    "comm_src": ("int32_val", st.integers(0, 2)),
    "comm_dst": ("int32_val", st.integers(0, 2)),
    "comm_tag": ("int32_val", st.integers(0, 2)),
    "root": ("int64_val", st.integers(0, 2)),
    "num_ops": ("int64_val", st.sampled_from([0, 10**6])),
    "tensor_size": ("uint64_val", st.sampled_from([0, 4096])),
    "is_cpu_op": ("bool_val", st.booleans()),
}
TYPE_ATTRS = {
    COMP_NODE: ["num_ops", "tensor_size", "is_cpu_op"],
    COMM_COLL_NODE: ["comm_type", "comm_size", "pg_name", "root"],
    COMM_SEND_NODE: ["comm_dst", "comm_size", "comm_tag"],
    COMM_RECV_NODE: ["comm_src", "comm_size", "comm_tag"],
    MEM_LOAD_NODE: ["tensor_size"],
    METADATA_NODE: [],
    0: [],
    99: ["comm_size"],
}


@st.composite
def chakra_template(draw: st.DrawFn) -> list[ChakraNode]:
    """Nodes with ids 0..n-1, dependencies on earlier nodes (now and then on any id) and the
    attributes their type needs, plausible values mostly and any value now and then."""
    nodes = []
    count = draw(st.integers(1, 5))
    for nid in range(count):
        kind = draw(node_types)
        node = ChakraNode(id=nid, type=kind, name=draw(st.sampled_from(["", "n", "é\u0000"])),
                          duration_micros=draw(st.sampled_from([0, 0, 1, 2**64 - 1])))
        if nid:
            anywhere = draw(st.integers(0, 9)) == 0  # now and then: a cycle or a dangling dep
            deps = st.integers(0, 6) if anywhere else st.integers(0, nid - 1)
            node.data_deps.extend(draw(st.lists(deps, max_size=2)))
        for name in TYPE_ATTRS[kind]:
            if draw(st.integers(0, 9)) == 0:
                continue  # a required attribute goes missing now and then
            which, value = plausible[name]
            node.attr.append(_attribute(name, which, draw(value)))
        node.attr.extend(_attribute(*a) for a in draw(st.lists(attribute, max_size=1)))
        nodes.append(node)
    return nodes


@st.composite
def chakra_ranks(draw: st.DrawFn) -> list[list[ChakraNode]]:
    """Two or three ranks running the same template (so collectives can match), one of them
    changed now and then (an attribute, a node dropped)."""
    template = draw(chakra_template())
    ranks = []
    for _ in range(draw(st.integers(2, 3))):
        nodes = [ChakraNode.FromString(n.SerializeToString()) for n in template]
        if draw(st.integers(0, 3)) == 0:
            victim = nodes[draw(st.integers(0, len(nodes) - 1))]
            victim.attr.append(_attribute(*draw(attribute)))
        ranks.append(nodes)
    return ranks


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ranks=chakra_ranks(),
       groups=st.sampled_from([None, {"1": [0, 1], "2": [1]}, {"1": [1, 0, 2]}]))
def test_generated_nodes_read_or_refuse(tmp_path: Path, ranks: list[list[ChakraNode]],
                                        groups: dict | None) -> None:
    prefix = tmp_path / "gen" / "workload"
    prefix.parent.mkdir(exist_ok=True)
    for old in prefix.parent.glob("workload.*.et"):
        old.unlink()
    for rank, nodes in enumerate(ranks):
        with open(f"{prefix}.{rank}.et", "wb") as fh:
            encodeMessage(fh, GlobalMetadata(version="0.0.4"))
            for node in nodes:
                encodeMessage(fh, node)
    try:
        trace = read_trace(prefix, comm_groups=groups)
    except SchemaError:
        return
    for node in trace.graph.all_nodes():  # what a read trace promises
        assert node.nbytes >= 0 and math.isfinite(node.nbytes)
        if node.duration_ns is not None:
            assert math.isfinite(node.duration_ns) and node.duration_ns >= 0


# ---------------------------------------------------------------------- HuggingFace config
HF_BASE = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 512,
           "intermediate_size": 1024, "num_attention_heads": 8, "num_hidden_layers": 2,
           "num_key_value_heads": 8, "hidden_act": "silu", "max_position_embeddings": 128,
           "vocab_size": 1000, "rms_norm_eps": 1e-5, "tie_word_embeddings": False}
HF_KEYS = [*HF_BASE, "n_embd", "n_inner", "head_dim", "multi_query", "num_local_experts",
           "num_experts_per_tok", "moe_intermediate_size", "activation_function"]


@FUZZ
@given(st.dictionaries(st.sampled_from(HF_KEYS), values | st.integers(1, 64), max_size=4),
       st.lists(st.sampled_from(list(HF_BASE)), max_size=2),
       st.none() | st.integers(-1, 2**25) | st.sampled_from([10**30]))
def test_hf_config_imports_or_refuses(changes: dict, dropped: list, seq: int | None) -> None:
    config = {k: v for k, v in {**HF_BASE, **changes}.items() if k not in dropped}
    try:
        model = from_hf_config(config, "fuzz", seq=seq)
    except ModelConfigError:
        return
    assert math.isfinite(model.params()) and model.params() > 0


def test_fuzz_mutation_helper_is_deterministic() -> None:
    """The byte mutator itself: each operation changes what it says (guards the fuzzer)."""
    data = bytes(range(10))
    assert mutate(data, [("truncate", 4, 0)]) == data[:4]
    assert mutate(data, [("flip", 0, 0)])[0] == 1
    assert len(mutate(data, [("insert", 3, 9)])) == 11
    assert mutate(data, [("set", 5, 0)])[5] == 0
