"""des's own Chakra ET schema and framing (astra_bridge.chakra_schema / chakra_framing, built from
``protobuf`` alone) against MLCommons' ``mlc-chakra`` package (in the ``test`` extra): the same
descriptor, the same bytes for every attribute kind, node type and edge value, each side decoding
the other's output, the same reading of arbitrary byte streams, and des importing, simulating and
reading bundled traces with ``chakra`` impossible to import."""

from __future__ import annotations

import gzip
import io
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

# mlc-chakra is in the test extra: without it these tests fail rather than skip
from chakra.schema.protobuf import et_def_pb2
from chakra.src.third_party.utils import protolib
from google.protobuf import descriptor_pb2, text_format
from google.protobuf.message import DecodeError
from hypothesis import given, settings
from hypothesis import strategies as st

from astra_bridge import chakra_schema as ours
from astra_bridge.chakra_framing import decode_message, encode_message, encode_varint, open_trace

ROOT = Path(__file__).resolve().parent.parent
REFERENCE_ETS = sorted((ROOT / "reference").rglob("*.et"))

I32 = (-(2**31), 2**31 - 1)
I64 = (-(2**63), 2**63 - 1)
U32 = (0, 2**32 - 1)
U64 = (0, 2**64 - 1)
INT_RANGES = {"int32": I32, "sint32": I32, "sfixed32": I32, "int64": I64, "sint64": I64,
              "sfixed64": I64, "uint32": U32, "fixed32": U32, "uint64": U64, "fixed64": U64}
#: per attribute kind, values at the edges of its type (the first is the kind's zero value)
EDGE_VALUES: dict[str, list[Any]] = {
    **{k: [0, lo, hi, -1 if lo else 1, 300] for k, (lo, hi) in INT_RANGES.items()},
    "double": [0.0, -0.0, 1.5, -2.5e-300, 1e300, math.inf, -math.inf, math.nan],
    "float": [0.0, -3.25, 3.4028234663852886e38, 1.401298464324817e-45, math.inf],
    "bool": [False, True],
    "string": ["", "pg_name", "ring \u00fcn\u00efc\u00f8d\u00e9 \u2713 \U0001f680"],
    "bytes": [b"", b"\x00\xff\x80", bytes(range(256))],
}
KINDS = list(EDGE_VALUES)
NODE_TYPES = list(et_def_pb2.NodeType.keys())
COLLECTIVES = list(et_def_pb2.CollectiveCommType.keys())


def build_node(mod: Any, spec: dict[str, Any]) -> Any:
    """A Chakra ``Node`` of module ``mod`` (ours or et_def_pb2) from a plain description:
    scalar fields, deps, IOInfo dicts and ``attrs`` as (name, kind, value-or-list, is_list)."""
    node = mod.Node()
    for key in ("id", "name", "type", "start_time_micros", "duration_micros"):
        if key in spec:
            setattr(node, key, spec[key])
    node.ctrl_deps.extend(spec.get("ctrl_deps", []))
    node.data_deps.extend(spec.get("data_deps", []))
    for key in ("inputs", "outputs"):
        if key in spec:
            getattr(node, key).CopyFrom(mod.IOInfo(**spec[key]))
    fill_attrs(node.attr, spec.get("attrs", []))
    return node


def fill_attrs(repeated: Any, attrs: list[tuple[str, str, Any, bool]]) -> None:
    """Append one AttributeProto per (name, kind, value, is_list) to ``repeated``."""
    for name, kind, value, is_list in attrs:
        attr = repeated.add(name=name)
        if is_list:
            lst = getattr(attr, f"{kind}_list")
            lst.SetInParent()  # an empty list is still the oneof's chosen field
            lst.values.extend(value)
        else:
            setattr(attr, f"{kind}_val", value)


def build_metadata(mod: Any, version: str, attrs: list[tuple[str, str, Any, bool]]) -> Any:
    meta = mod.GlobalMetadata(version=version)
    fill_attrs(meta.attr, attrs)
    return meta


def rich_specs() -> list[dict[str, Any]]:
    """Nodes covering every NodeType, every attribute kind as value and as list (edge values,
    empty lists, zero values), deps, timing, IOInfo and AstraSim's communication attributes."""
    specs: list[dict[str, Any]] = [{}]  # the all-default node serializes to no bytes
    for i, node_type in enumerate(NODE_TYPES):
        specs.append({"id": i, "name": f"n{i}", "type": et_def_pb2.NodeType.Value(node_type),
                      "ctrl_deps": list(range(i)), "data_deps": [2**64 - 1, 0, i]})
    for kind, values in EDGE_VALUES.items():
        attrs = [(f"{kind}_{j}", kind, v, False) for j, v in enumerate(values)]
        attrs += [(f"{kind}_list", kind, values, True), (f"{kind}_empty", kind, [], True)]
        specs.append({"id": 2**64 - 1, "name": kind, "type": et_def_pb2.COMP_NODE,
                      "attrs": attrs})
    for j, comm in enumerate(COLLECTIVES):
        specs.append({"id": 100 + j, "name": f"coll_{comm}", "type": et_def_pb2.COMM_COLL_NODE,
                      "data_deps": [99], "duration_micros": 7, "start_time_micros": 2**40,
                      "inputs": {"values": "[1]", "shapes": "[[4, 8]]", "types": "['float']"},
                      "outputs": {"shapes": "[[32]]"},
                      "attrs": [("is_cpu_op", "bool", False, False),
                                ("comm_type", "int64", et_def_pb2.CollectiveCommType.Value(comm),
                                 False),
                                ("comm_size", "uint64", 1 << 30, False),
                                ("pg_name", "string", str(j), False),
                                ("root", "int32", j % 4, False)]})
    for node_type, peer in (("COMM_SEND_NODE", "comm_dst"), ("COMM_RECV_NODE", "comm_src")):
        specs.append({"id": 7, "type": et_def_pb2.NodeType.Value(node_type),
                      "attrs": [(peer, "int32", 3, False), ("comm_tag", "int32", 12, False),
                                ("comm_size", "int64", 4096, False)]})
    specs.append({"id": 8, "type": et_def_pb2.COMP_NODE,
                  "attrs": [("num_ops", "int64", 10**12, False),
                            ("tensor_size", "uint64", 2**33, False),
                            ("op_class", "string", "gemm", False)]})
    return specs


METADATA = [("0.0.4", []), ("", []),
            ("1.0.0", [("schema", "string", "1.0.2-chakra.0.0.4", False)]
             + [(k, k, v[-1], False) for k, v in EDGE_VALUES.items()]
             + [("dims", "int64", [4, 4, -1], True)])]


def same_message(a: Any, b: Any) -> None:
    """``a`` (one schema) and ``b`` (the other) hold the same data and bytes."""
    assert a.SerializeToString() == b.SerializeToString()
    assert (a.SerializeToString(deterministic=True)
            == b.SerializeToString(deterministic=True))
    assert text_format.MessageToString(a) == text_format.MessageToString(b)


# ---------------------------------------------------------------- the schema itself

def test_descriptor_equals_chakras_field_by_field() -> None:
    """The whole FileDescriptorProto (package, messages, fields, numbers, types, labels, oneof,
    enums and values, proto3) is the one protoc generated for mlc-chakra."""
    theirs = descriptor_pb2.FileDescriptorProto()
    et_def_pb2.DESCRIPTOR.CopyToProto(theirs)
    mine = descriptor_pb2.FileDescriptorProto()
    ours._FILE.CopyToProto(mine)
    assert mine == theirs
    assert ours.file_descriptor_proto() == theirs
    assert theirs.package == "ChakraProtoMsg" and theirs.syntax == "proto3"


def test_enum_constants_match() -> None:
    for wrapper in ("NodeType", "CollectiveCommType"):
        theirs, mine = getattr(et_def_pb2, wrapper), getattr(ours, wrapper)
        assert list(mine.items()) == list(theirs.items())
        for name, value in theirs.items():
            assert getattr(ours, name) == value
            assert mine.Name(value) == name
    assert set(ours.__all__) >= {d.name for d in et_def_pb2.DESCRIPTOR.message_types_by_name
                                 .values()}


def test_messages_do_not_touch_the_default_pool() -> None:
    """Ours live in their own pool, so importing both never clashes (et_def_pb2 is imported
    here next to ours) and the classes are distinct."""
    from google.protobuf import descriptor_pool

    default = descriptor_pool.Default()
    assert ours.Node.DESCRIPTOR.file.pool is not default
    assert default.FindFileByName(et_def_pb2.DESCRIPTOR.name) is et_def_pb2.DESCRIPTOR
    assert ours.Node is not et_def_pb2.Node
    assert ours.Node.DESCRIPTOR.full_name == et_def_pb2.Node.DESCRIPTOR.full_name


# ---------------------------------------------------------------- bytes, both ways

@pytest.mark.parametrize("index", range(len(rich_specs())))
def test_rich_nodes_encode_to_the_same_bytes(index: int) -> None:
    spec = rich_specs()[index]
    mine, theirs = build_node(ours, spec), build_node(et_def_pb2, spec)
    same_message(mine, theirs)
    data = theirs.SerializeToString()
    back = ours.Node()
    back.ParseFromString(data)  # ours reads chakra's bytes
    same_message(back, theirs)
    other = et_def_pb2.Node()
    other.ParseFromString(mine.SerializeToString())  # and chakra reads ours
    same_message(mine, other)


@pytest.mark.parametrize("version,attrs", METADATA)
def test_global_metadata_same_bytes(version: str, attrs: list) -> None:
    mine, theirs = build_metadata(ours, version, attrs), build_metadata(et_def_pb2, version,
                                                                        attrs)
    same_message(mine, theirs)
    back = ours.GlobalMetadata()
    back.ParseFromString(theirs.SerializeToString())
    same_message(back, theirs)


def test_tensor_and_zero_oneof_values_same_bytes() -> None:
    kw = {"tensor_id": 2**64 - 1, "storage_id": 3, "offset": 0, "num_elem": 12,
          "elem_bytes": 2, "device": "cuda:0"}
    same_message(ours.Tensor(**kw), et_def_pb2.Tensor(**kw))
    # a oneof member set to its zero value is written (explicit presence): 2 bytes, not 0
    mine, theirs = ours.AttributeProto(), et_def_pb2.AttributeProto()
    mine.int64_val = theirs.int64_val = 0
    same_message(mine, theirs)
    assert mine.WhichOneof("value") == "int64_val" and len(mine.SerializeToString()) == 2


def stream(encode: Any, messages: list[Any]) -> bytes:
    out = io.BytesIO()
    for message in messages:
        encode(out, message)
    return out.getvalue()


def decode_all(decode: Any, node_cls: Any, meta_cls: Any, data: bytes) -> list[Any]:
    buf = io.BytesIO(data)
    meta = meta_cls()
    assert decode(buf, meta)
    out = [meta]
    while True:
        node = node_cls()
        if not decode(buf, node):
            return out
        out.append(node)


def test_framed_streams_identical_and_cross_decoded() -> None:
    specs = [s for s in rich_specs() if s]  # an empty node frames as length 0: end of stream
    meta = METADATA[2]
    mine = stream(encode_message, [build_metadata(ours, *meta)]
                  + [build_node(ours, s) for s in specs])
    theirs = stream(protolib.encodeMessage, [build_metadata(et_def_pb2, *meta)]
                    + [build_node(et_def_pb2, s) for s in specs])
    assert mine == theirs
    got = decode_all(decode_message, ours.Node, ours.GlobalMetadata, theirs)
    want = decode_all(protolib.decodeMessage, et_def_pb2.Node, et_def_pb2.GlobalMetadata, mine)
    assert len(got) == len(want) == len(specs) + 1
    for a, b in zip(got, want, strict=True):
        same_message(a, b)


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 2**14 - 1, 2**14, 2**31, 2**32 - 1,
                                   2**32, 2**63, 2**64 - 1])
def test_varint_prefix_same_as_protolib(value: int) -> None:
    out = io.BytesIO()
    protolib._EncodeVarint32(out, value)
    assert encode_varint(value) == out.getvalue()


def decode_trace(decode: Any, node_cls: Any, data: bytes) -> list[tuple]:
    """Every step of reading ``data`` as nodes: (result, position, bytes) until the end, an
    error type, or 50 steps."""
    buf = io.BytesIO(data)
    steps: list[tuple] = []
    for _ in range(50):
        node = node_cls()
        try:
            ok = decode(buf, node)
        except DecodeError:
            steps.append(("DecodeError", buf.tell()))
            return steps
        steps.append((ok, buf.tell(), node.SerializeToString()))
        if not ok:
            return steps
    return steps


@pytest.mark.parametrize("data", [b"", b"\x00", b"\x80", b"\xff" * 11, b"\x05abc",
                                  b"\x02\x08\x01\x00\x02\x08\x02",
                                  b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01\x08\x01",
                                  b"\x81\x80\x80\x80\x10\x08\x01", b"\x03\xff\xff\xff",
                                  # 10-byte prefixes whose last byte overflows 64 bits
                                  b"\x80" * 9 + b"\x02", b"\x80" * 9 + b"\x03\x08\x01"])
def test_odd_streams_read_as_protolib_reads_them(data: bytes) -> None:
    assert (decode_trace(decode_message, ours.Node, data)
            == decode_trace(protolib.decodeMessage, et_def_pb2.Node, data))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80))
def test_arbitrary_bytes_read_alike(data: bytes) -> None:
    assert (decode_trace(decode_message, ours.Node, data)
            == decode_trace(protolib.decodeMessage, et_def_pb2.Node, data))


def test_open_trace_as_open_file_rd(tmp_path: Path) -> None:
    payload = stream(protolib.encodeMessage, [et_def_pb2.GlobalMetadata(version="0.0.4")])
    cases = {"plain.et": payload, "empty.et": b"", "magic.et": b"\x1f\x8bnot gzip at all",
             "one.et": b"\x1f"}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    with gzip.open(tmp_path / "zipped.et", "wb") as fh:
        fh.write(payload)
    for path in sorted(tmp_path.iterdir()):
        outcome = []
        for opener in (open_trace, protolib.openFileRd):
            try:
                with opener(str(path)) as fh:
                    outcome.append(fh.read())
            except (OSError, EOFError) as err:
                outcome.append(type(err))
        assert outcome[0] == outcome[1], path.name
    with open_trace(str(tmp_path / "zipped.et")) as fh:
        assert fh.read() == payload
    with pytest.raises(OSError):
        open_trace(str(tmp_path / "missing.et"))  # protolib would print and exit()


# ---------------------------------------------------------------- real traces

def test_reference_traces_decode_alike_and_reencode_exactly() -> None:
    """AstraSim's and STAGE's bundled ETs: both readers see the same messages, and ours writes
    them back to the very same file bytes."""
    assert REFERENCE_ETS, "reference/ ETs are missing"
    for path in REFERENCE_ETS:
        with open_trace(str(path)) as fh:
            data = fh.read()
        mine = decode_all(decode_message, ours.Node, ours.GlobalMetadata, data)
        theirs = decode_all(protolib.decodeMessage, et_def_pb2.Node, et_def_pb2.GlobalMetadata,
                            data)
        assert len(mine) == len(theirs) >= 1, path
        for a, b in zip(mine, theirs, strict=True):
            same_message(a, b)
        assert stream(encode_message, mine) == data, path


# ---------------------------------------------------------------- random nodes

def _attr_value(kind: str, as_list: bool) -> st.SearchStrategy:
    if kind in INT_RANGES:
        lo, hi = INT_RANGES[kind]
        one: st.SearchStrategy = st.integers(lo, hi)
    elif kind == "double":
        one = st.floats(allow_nan=True, allow_infinity=True)
    elif kind == "float":
        one = st.floats(width=32, allow_nan=False)
    elif kind == "bool":
        one = st.booleans()
    elif kind == "string":
        one = st.text(max_size=12)
    else:
        one = st.binary(max_size=12)
    return st.lists(one, max_size=5) if as_list else one


ATTRS = st.lists(st.tuples(st.text(max_size=8), st.sampled_from(KINDS), st.booleans()).flatmap(
    lambda t: _attr_value(t[1], t[2]).map(lambda v: (t[0], t[1], v, t[2]))), max_size=6)
U64S = st.integers(0, 2**64 - 1)
NODES = st.fixed_dictionaries({}, optional={
    "id": U64S, "name": st.text(max_size=10),
    "type": st.sampled_from(list(et_def_pb2.NodeType.values())),
    "ctrl_deps": st.lists(U64S, max_size=5), "data_deps": st.lists(U64S, max_size=5),
    "start_time_micros": U64S, "duration_micros": U64S,
    "inputs": st.fixed_dictionaries({}, optional={"values": st.text(max_size=6),
                                                  "shapes": st.text(max_size=6)}),
    "attrs": ATTRS})


@settings(max_examples=200, deadline=None)
@given(st.lists(NODES, min_size=1, max_size=4), st.text(max_size=8), ATTRS)
def test_random_nodes_same_bytes_both_ways(specs: list, version: str, meta_attrs: list) -> None:
    mine = [build_metadata(ours, version, meta_attrs)] + [build_node(ours, s) for s in specs]
    theirs = ([build_metadata(et_def_pb2, version, meta_attrs)]
              + [build_node(et_def_pb2, s) for s in specs])
    for a, b in zip(mine, theirs, strict=True):
        same_message(a, b)
    data = stream(encode_message, mine)
    assert data == stream(protolib.encodeMessage, theirs)
    if all(m.ByteSize() for m in mine):  # a zero-length message ends a framed stream
        for a, b in zip(decode_all(decode_message, ours.Node, ours.GlobalMetadata, data),
                        theirs, strict=True):
            same_message(a, b)


# ---------------------------------------------------------------- no chakra installed

BLOCKER = textwrap.dedent("""
    import importlib.abc, sys

    class NoChakra(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "chakra" or name.startswith("chakra."):
                raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
            return None

    sys.meta_path.insert(0, NoChakra())
    for mod in [m for m in sys.modules if m == "chakra" or m.startswith("chakra.")]:
        del sys.modules[mod]
""")


def test_des_runs_without_chakra(tmp_path: Path) -> None:
    """With ``chakra`` unimportable: every module of des imports, a bundled scenario simulates,
    AstraSim's bundled ETs run through the drop-in flags, ``et dump`` reads them, and a trace
    des writes reads back."""
    case = ROOT / "reference" / "astra" / "ring8_allreduce_1MiB"
    (tmp_path / "sitecustomize.py").write_text(BLOCKER)
    script = textwrap.dedent(f"""
        import importlib, pkgutil, sys
        try:
            import chakra  # noqa
        except ModuleNotFoundError:
            pass
        else:
            raise SystemExit("the chakra blocker did not load")
        names = []
        for top in ("des", "astra_bridge", "topologies", "collectives", "workloads"):
            pkg = importlib.import_module(top)
            names.append(top)
            for info in pkgutil.walk_packages(pkg.__path__, top + "."):
                if info.name.endswith("__main__"):
                    continue
                importlib.import_module(info.name)
                names.append(info.name)
        from des.app.cli import main
        case = {str(case)!r}
        codes = [
            main(["simulate", "--quiet"]),
            main(["simulate", "--quiet", "--workload-configuration=" + case + "/workload/workload",
                  "--system-configuration=" + case + "/system.json",
                  "--network-configuration=" + case + "/network.yml",
                  "--remote-memory-configuration=" + case + "/remote_memory.json",
                  "--astra-compat"]),
            main(["et", "dump", case + "/workload/workload", "--rank", "3"]),
        ]
        from astra_bridge.chakra_read import read_trace
        from astra_bridge.chakra_write import write_trace
        trace = read_trace(case + "/workload/workload")
        out = write_trace(trace.graph, {str(tmp_path / "copy")!r})
        again = read_trace({str(tmp_path / "copy")!r})
        assert len(again.graph) == len(trace.graph) > 0
        assert not [m for m in sys.modules if m == "chakra" or m.startswith("chakra.")]
        print("MODULES", len(names), "CODES", codes, "FILES", len(out))
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, text=True,
                          capture_output=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = proc.stdout.strip().splitlines()[-1]
    assert "CODES [0, 0, 0]" in summary and "FILES 8" in summary, proc.stdout[-2000:]
