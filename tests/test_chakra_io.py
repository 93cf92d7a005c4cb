"""Chakra ET reader and writer (astra_bridge.chakra_read, astra_bridge.chakra_write).

Reference traces are AstraSim's own inputs under ``reference/astra``; what each holds is
recomputed here by decoding the files with chakra's decoder directly, independently of the
reader. Synthetic traces are written with chakra's encoder into ``tmp_path``.
"""

from __future__ import annotations

import json
import logging
import random
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pytest
from chakra.schema.protobuf.et_def_pb2 import (
    COMM_COLL_NODE,
    COMM_RECV_NODE,
    COMM_SEND_NODE,
    COMP_NODE,
    MEM_LOAD_NODE,
    MEM_STORE_NODE,
    METADATA_NODE,
    AttributeProto,
    BoolList,
    GlobalMetadata,
)
from chakra.schema.protobuf.et_def_pb2 import Node as ChakraNode
from chakra.src.third_party.utils.protolib import decodeMessage, encodeMessage, openFileRd
from helpers import ASTRA_REFERENCE, astra_comm_groups, astra_expected

from astra_bridge.chakra_mapping import ChakraError
from astra_bridge.chakra_read import TraceGraph, read_trace
from astra_bridge.chakra_write import write_trace
from des.core.graph import CollectiveType, EventGraph, Node, NodeKind

CASES = sorted(p.name for p in ASTRA_REFERENCE.iterdir() if (p / "workload").is_dir()) \
    if ASTRA_REFERENCE.is_dir() else []

KIND_OF_TYPE = {COMP_NODE: NodeKind.COMPUTE, COMM_COLL_NODE: NodeKind.COLLECTIVE,
                COMM_SEND_NODE: NodeKind.SEND, COMM_RECV_NODE: NodeKind.RECV,
                MEM_LOAD_NODE: NodeKind.MEMORY, MEM_STORE_NODE: NodeKind.MEMORY}
# Chakra CollectiveCommType codes AstraSim simulates (et_def.proto).
COMM_TYPES = {0: "all_reduce", 2: "all_gather", 6: "all_to_all", 7: "reduce_scatter"}


# ----------------------------------------------------------------------------- helpers
def decode(path: Path) -> tuple[GlobalMetadata, list[ChakraNode]]:
    """Every message of an .et file with chakra's own decoder."""
    fh = openFileRd(str(path))
    meta = GlobalMetadata()
    assert decodeMessage(fh, meta)
    nodes = []
    while True:
        node = ChakraNode()
        if not decodeMessage(fh, node):
            break
        nodes.append(node)
    fh.close()
    return meta, nodes


def attrs(node: ChakraNode) -> dict:
    out = {}
    for a in node.attr:
        kind = a.WhichOneof("value")
        out[a.name] = getattr(a, kind) if kind else None
    return out


def attr(name: str, **value) -> AttributeProto:
    return AttributeProto(name=name, **value)


def comp(nid: int, micros: int = 1, deps: Sequence[int] = (), ctrl: Sequence[int] = (),
         name: str = "") -> ChakraNode:
    node = ChakraNode(id=nid, name=name or f"c{nid}", type=COMP_NODE, duration_micros=micros)
    node.data_deps.extend(deps)
    node.ctrl_deps.extend(ctrl)
    node.attr.append(attr("is_cpu_op", bool_val=False))
    return node


def coll(nid: int, comm_type: int, size: int, pg: str | None = None,
         deps: Sequence[int] = ()) -> ChakraNode:
    node = ChakraNode(id=nid, name=f"coll{nid}", type=COMM_COLL_NODE)
    node.data_deps.extend(deps)
    node.attr.extend([attr("is_cpu_op", bool_val=False), attr("comm_type", int64_val=comm_type),
                      attr("comm_size", int64_val=size)])
    if pg is not None:
        node.attr.append(attr("pg_name", string_val=pg))
    return node


def write_raw(prefix: Path, ranks: Sequence[Sequence[ChakraNode]], *, meta: bool = True
              ) -> Path:
    """Hand-made traces: ``{prefix}.{rank}.et`` per list of nodes."""
    prefix.parent.mkdir(parents=True, exist_ok=True)
    for rank, nodes in enumerate(ranks):
        with open(f"{prefix}.{rank}.et", "wb") as fh:
            if meta:
                encodeMessage(fh, GlobalMetadata(version="0.0.4"))
            for node in nodes:
                encodeMessage(fh, node)
    return prefix


def node_key(node: Node) -> tuple:
    """Everything a node carries, for node-by-node comparison."""
    return (node.rank, node.id, node.kind, node.name, tuple(node.deps), node.nbytes,
            node.flops, node.duration_ns, node.op_class, node.collective, node.group,
            node.algorithm, node.root, node.peer, node.tag, node.mem_op)


def graph_keys(graph: EventGraph) -> list[list[tuple]]:
    return [[node_key(n) for n in graph.nodes(r)] for r in range(graph.num_ranks)]


def read_case(case: str) -> TraceGraph:
    return read_trace(ASTRA_REFERENCE / case / "workload" / "workload",
                      comm_groups=astra_comm_groups(case))


# ----------------------------------------------------------------------------- reference cases
@pytest.mark.parametrize("case", CASES)
def test_reference_case_matches_independent_decode(case: str) -> None:
    folder = ASTRA_REFERENCE / case
    expected = astra_expected(case)
    groups_file = astra_comm_groups(case)
    groups = json.loads(groups_file.read_text()) if groups_file else {}
    trace = read_case(case)
    graph = trace.graph
    assert graph.num_ranks == expected["npus"]
    everyone = tuple(range(graph.num_ranks))
    for rank in range(graph.num_ranks):
        _, raw = decode(folder / "workload" / f"workload.{rank}.et")
        want = Counter(KIND_OF_TYPE[n.type] for n in raw)
        got = Counter(n.kind for n in graph.nodes(rank))
        assert got == want, f"rank {rank}"
        for cn in raw:
            node = graph.node(rank, cn.id)
            a = attrs(cn)
            assert node.name == cn.name
            assert set(node.deps) == set(cn.data_deps) | set(cn.ctrl_deps)
            assert len(node.deps) == len(set(node.deps))
            if cn.type == COMM_COLL_NODE:
                group = tuple(groups[a["pg_name"]]) if a.get("pg_name", "") not in ("", "0") \
                    else everyone
                ctype = COMM_TYPES[a["comm_type"]]
                assert node.collective == ctype
                assert node.group == group
                factor = len(group) if ctype == "all_gather" else 1
                assert node.nbytes == a["comm_size"] * factor
            elif cn.type == COMP_NODE:
                if cn.duration_micros:
                    assert node.duration_ns == cn.duration_micros * 1000
                    assert (rank, cn.id) not in trace.roofline_nodes
                elif "num_ops" in a:
                    assert node.duration_ns is None
                    assert (node.flops, node.nbytes) == (a["num_ops"], a["tensor_size"])
                    assert (rank, cn.id) in trace.roofline_nodes
            elif cn.type == COMM_SEND_NODE:
                assert (node.peer, node.tag, node.nbytes) == (
                    a["comm_dst"], a["comm_tag"], a["comm_size"])
            elif cn.type == COMM_RECV_NODE:
                assert (node.peer, node.tag, node.nbytes) == (
                    a["comm_src"], a["comm_tag"], a["comm_size"])
    graph.validate()  # collectives and send/recv pairs match across ranks
    assert trace.warnings == []


def test_reference_sizes_and_groups_astra_implies() -> None:
    ring8 = read_case("ring8_allreduce_1MiB").graph
    for rank in range(8):
        (node,) = ring8.nodes(rank)
        assert (node.collective, node.nbytes, node.group) == (
            CollectiveType.ALL_REDUCE, 1048576, tuple(range(8)))
    (ag,) = read_case("ring16_allgather_1MiB").graph.nodes(5)
    assert (ag.collective, ag.nbytes) == (CollectiveType.ALL_GATHER, 16 * 1048576)
    (rs,) = read_case("ring4_reducescatter_1MiB").graph.nodes(0)
    assert (rs.collective, rs.nbytes) == (CollectiveType.REDUCE_SCATTER, 1048576)
    groups = read_case("groups_8")
    for rank in range(8):
        local, world = groups.graph.nodes(rank)
        assert local.group == ((0, 1, 2, 3) if rank < 4 else (4, 5, 6, 7))
        assert local.nbytes == 4 * 2**20 and world.nbytes == 2**20
        assert world.group == tuple(range(8)) and world.deps == (local.id,)
    assert groups.comm_groups == {"1": (0, 1, 2, 3), "2": (4, 5, 6, 7)}
    assert len(groups.graph.collective_instances()) == 3
    pipe = read_case("pipeline_send_recv_4").graph
    assert len(pipe.p2p_pairs()) == 6
    assert {p.tag for p in pipe.p2p_pairs()} >= {1000}
    overlap = read_case("overlap_8").graph
    # COMP A (50 us) -> all-reduce (dep A) || COMP B (20 us, dep A) -> COMP C (5 us, dep both)
    a, ar, b, c = overlap.nodes(0)
    assert [a.duration_ns, b.duration_ns, c.duration_ns] == [50_000.0, 20_000.0, 5_000.0]
    assert (ar.deps, b.deps, set(c.deps)) == ((a.id,), (a.id,), {ar.id, b.id})
    roof = read_case("roofline_compute_4")
    first = roof.graph.node(0, 0)
    assert (first.flops, first.nbytes, first.duration_ns) == (137438953472, 67108864, None)
    assert len(roof.roofline_nodes) == 8


def test_stage_sanity_16_reads_in_issue_order() -> None:
    trace = read_case("stage_sanity_16")
    assert len(trace.graph) == 5544
    # STAGE files list nodes before their dependencies; ranks add them in issue order.
    for rank in range(16):
        seen: set[int] = set()
        for node in trace.graph.nodes(rank):
            assert set(node.deps) <= seen
            seen.add(node.id)


@pytest.mark.parametrize("case", ["groups_8", "pipeline_send_recv_4", "stage_small_dp2tp2",
                                  "roofline_compute_4", "overlap_8"])
def test_reference_round_trip(case: str, tmp_path: Path) -> None:
    first = read_case(case)
    paths = write_trace(first.graph, tmp_path / "w" / "workload")
    second = read_trace(tmp_path / "w" / "workload")
    assert graph_keys(second.graph) == graph_keys(first.graph)
    assert second.roofline_nodes == first.roofline_nodes
    assert second.graph.num_ranks == first.graph.num_ranks
    has_groups = bool(first.comm_groups)
    assert (paths[-1].suffix == ".json") == has_groups
    assert len(paths) == first.graph.num_ranks + has_groups


# ----------------------------------------------------------------------------- synthetic graph
def synthetic_graph() -> EventGraph:
    g = EventGraph(4, "synthetic")
    for r in range(4):
        a = g.compute(r, duration_ns=3000.0, name="fwd")
        b = g.compute(r, flops=2e9, nbytes=4e6, op_class="gemm", name="mlp", deps=[a])
        g.memory(r, 1024, op="load", name="ld", deps=[a])
        g.memory(r, 2048, op="store", name="st", deps=[b])
    ar = g.collective_all("all_reduce", 2**20, name="ar", deps={r: [1] for r in range(4)})
    g.collective_all("all_gather", 4 * 4096, deps={r: [ar[r]] for r in range(4)})
    g.collective_all("reduce_scatter", 8192, group=(0, 1))
    g.collective_all("reduce_scatter", 8192, group=(3, 2))
    g.collective_all("all_to_all", 65536)
    g.collective_all("broadcast", 1000, group=(0, 1), root=1)
    g.collective_all("reduce", 512, root=0)
    g.collective_all("barrier", 0)
    g.send(0, 1, 4096, tag=7, deps=[0, 2])
    g.recv(1, 0, 4096, tag=7)
    g.send(2, 3, 100, tag=1, deps=[0])
    g.send(2, 3, 200, tag=2)
    g.recv(3, 2, 200, tag=2)
    g.recv(3, 2, 100, tag=1)
    return g


def test_synthetic_round_trip(tmp_path: Path) -> None:
    graph = synthetic_graph()
    graph.validate()
    paths = write_trace(graph, tmp_path / "syn")
    assert [p.name for p in paths] == [f"syn.{r}.et" for r in range(4)] + [
        "syn.comm_groups.json"]
    # pg_names "1", "2", ... in first-appearance order, ranks in communicator order
    assert json.loads(paths[-1].read_text()) == {"1": [0, 1], "2": [3, 2]}
    back = read_trace(tmp_path / "syn")
    assert graph_keys(back.graph) == graph_keys(graph)
    assert back.roofline_nodes == {(r, 1) for r in range(4)}
    back.graph.validate()
    assert len(back.graph.collective_instances()) == len(graph.collective_instances())


def test_written_files_decode_with_chakra(tmp_path: Path) -> None:
    graph = synthetic_graph()
    write_trace(graph, tmp_path / "syn")
    for rank in range(4):
        meta, nodes = decode(tmp_path / f"syn.{rank}.et")
        assert meta.version == "0.0.4"
        assert [n.id for n in nodes] == [n.id for n in graph.nodes(rank)]
        by_id = {n.id: n for n in nodes}
        for node in graph.nodes(rank):
            cn = by_id[node.id]
            a = attrs(cn)
            assert list(cn.data_deps) == list(node.deps)
            assert a["is_cpu_op"] is False
            if node.kind is NodeKind.COLLECTIVE:
                assert cn.type == COMM_COLL_NODE
                group = node.group
                expect = node.nbytes / len(group) if node.collective == "all_gather" \
                    else node.nbytes
                assert a["comm_size"] == expect
                assert ("pg_name" in a) == (group != (0, 1, 2, 3))
            elif node.kind is NodeKind.SEND:
                assert (cn.type, a["comm_src"], a["comm_dst"], a["comm_tag"],
                        a["comm_size"]) == (COMM_SEND_NODE, rank, node.peer, node.tag,
                                            node.nbytes)
            elif node.kind is NodeKind.RECV:
                assert (cn.type, a["comm_src"], a["comm_dst"]) == (COMM_RECV_NODE, node.peer,
                                                                  rank)
            elif node.kind is NodeKind.MEMORY:
                assert cn.type == (MEM_LOAD_NODE if node.mem_op == "load" else MEM_STORE_NODE)
                assert a["tensor_size"] == node.nbytes
            elif node.duration_ns is not None:
                assert cn.duration_micros * 1000 == node.duration_ns
            else:
                assert cn.duration_micros == 0
                assert (a["num_ops"], a["tensor_size"]) == (node.flops, node.nbytes)
    ag = next(n for n in decode(tmp_path / "syn.0.et")[1] if attrs(n).get("comm_type") == 2)
    assert attrs(ag)["comm_size"] == 4096


def test_duration_rounded_to_microseconds(tmp_path: Path, caplog: pytest.LogCaptureFixture
                                          ) -> None:
    g = EventGraph(1)
    g.compute(0, duration_ns=1500.4)
    g.compute(0, duration_ns=2000.0)
    with caplog.at_level(logging.WARNING, logger="astra_bridge.chakra_write"):
        write_trace(g, tmp_path / "d")
    assert "rounded to whole microseconds" in caplog.text and "1 compute durations" in caplog.text
    _, nodes = decode(tmp_path / "d.0.et")
    assert [n.duration_micros for n in nodes] == [2, 2]
    assert [n.duration_ns for n in read_trace(tmp_path / "d").graph.nodes(0)] == [2000, 2000]


def test_ctrl_and_data_deps_are_merged(tmp_path: Path) -> None:
    prefix = write_raw(tmp_path / "t", [[comp(0), comp(1), comp(5, deps=[0, 1], ctrl=[1, 3]),
                                         comp(3, ctrl=[0])]])
    graph = read_trace(prefix).graph
    assert graph.node(0, 5).deps == (0, 1, 3)
    assert graph.node(0, 3).deps == (0,)
    assert [n.id for n in graph.nodes(0)] == [0, 1, 3, 5]  # ascending ready id


def test_skipped_metadata_nodes_pass_on_their_deps(tmp_path: Path) -> None:
    meta_node = ChakraNode(id=1, name="pg", type=METADATA_NODE)
    meta_node.data_deps.append(0)
    meta2 = ChakraNode(id=2, name="pg2", type=METADATA_NODE)
    meta2.ctrl_deps.append(1)
    prefix = write_raw(tmp_path / "t", [[comp(0), meta_node, meta2, comp(3, deps=[2])]])
    trace = read_trace(prefix)
    assert [n.id for n in trace.graph.nodes(0)] == [0, 3]
    assert trace.graph.node(0, 3).deps == (0,)
    assert trace.skipped_nodes == {(0, 1), (0, 2)}
    assert any("2 METADATA_NODE" in w for w in trace.warnings)
    assert len(trace.warnings) == 1


def test_broadcast_roofline_and_involved_dim_notes(tmp_path: Path) -> None:
    bcast = coll(0, 5, 4096, pg="1")
    ag = coll(1, 2, 100, pg="1", deps=[0])
    ag.attr.append(attr("involved_dim", bool_list=BoolList(values=[True, False])))
    roof = ChakraNode(id=2, name="r", type=COMP_NODE)
    roof.attr.extend([attr("num_ops", int64_val=10), attr("tensor_size", uint64_val=0)])
    cpu = comp(3)
    cpu.attr[0].bool_val = True
    ranks = [[bcast, ag, roof, cpu], [coll(0, 5, 4096, pg="1"), coll(1, 2, 100, pg="1")]]
    prefix = write_raw(tmp_path / "t", ranks)
    trace = read_trace(prefix, comm_groups={"1": [1, 0]})
    node = trace.graph.node(0, 0)
    assert (node.collective, node.root, node.group) == (CollectiveType.BROADCAST, 1, (1, 0))
    assert trace.graph.node(0, 1).nbytes == 200
    assert trace.roofline_nodes == {(0, 2)}
    assert trace.cpu_nodes == {(0, 3)}
    text = "\n".join(trace.warnings)
    assert "2 broadcasts" in text and "1 collectives restricted by involved_dim" in text
    assert "tensor_size 0" in text and "1 CPU compute nodes" in text


# ----------------------------------------------------------------------------- bad input
@pytest.fixture
def valid_prefix(tmp_path: Path) -> Path:
    g = EventGraph(4)
    for r in range(4):
        g.compute(r, duration_ns=5000.0)
        g.compute(r, duration_ns=7000.0, deps=[0])
    g.collective_all("all_reduce", 2**20, deps={r: [1] for r in range(4)})
    write_trace(g, tmp_path / "v" / "workload")
    return tmp_path / "v" / "workload"


@pytest.mark.parametrize("cut", [0.5, 0.9, 0.99])
def test_truncated_file(valid_prefix: Path, cut: float) -> None:
    path = Path(f"{valid_prefix}.1.et")
    data = path.read_bytes()
    # A cut exactly between two messages leaves a valid, shorter trace; cut inside one.
    path.write_bytes(data[: int(len(data) * cut) + 1])
    with pytest.raises(ChakraError, match=r"workload\.1\.et: rank 1: truncated node message "
                                          r"at byte \d+ \(after (node \d+|the GlobalMeta)"):
        read_trace(valid_prefix)


@pytest.mark.parametrize("seed", range(6))
def test_random_bytes(valid_prefix: Path, seed: int) -> None:
    path = Path(f"{valid_prefix}.2.et")
    noise = random.Random(seed).randbytes(300)
    metadata = path.read_bytes()[:8]  # the valid GlobalMetadata message (length + 7 bytes)
    assert metadata[0] == 7
    for data, what in ((noise, "GlobalMetadata"), (metadata + noise, "node message")):
        path.write_bytes(data)
        with pytest.raises(ChakraError, match=rf"workload\.2\.et: rank 2: \w+ {what}"):
            read_trace(valid_prefix)


def test_missing_rank_file(valid_prefix: Path) -> None:
    Path(f"{valid_prefix}.2.et").unlink()
    with pytest.raises(ChakraError, match=r"workload\.2\.et: missing rank file"):
        read_trace(valid_prefix)
    with pytest.raises(ChakraError, match=r"workload\.2\.et: missing rank file"):
        read_trace(valid_prefix, num_ranks=4)
    assert read_trace(valid_prefix, num_ranks=2).graph.num_ranks == 2


def test_no_files(tmp_path: Path) -> None:
    with pytest.raises(ChakraError, match=r"nothere\.0\.et: no trace files"):
        read_trace(tmp_path / "nothere")


def test_empty_file(valid_prefix: Path) -> None:
    Path(f"{valid_prefix}.3.et").write_bytes(b"")
    with pytest.raises(ChakraError, match=r"workload\.3\.et: rank 3: empty file"):
        read_trace(valid_prefix)


def test_missing_global_metadata(tmp_path: Path) -> None:
    prefix = write_raw(tmp_path / "t", [[comp(4), comp(5, deps=[4])]], meta=False)
    with pytest.raises(ChakraError, match=r"t\.0\.et: rank 0: GlobalMetadata is missing.*"
                                          r"COMP_NODE \(node 4\)"):
        read_trace(prefix)


def test_repeated_node_id(tmp_path: Path) -> None:
    prefix = write_raw(tmp_path / "t", [[comp(0), comp(7, name="a"), comp(7, name="b")]])
    with pytest.raises(ChakraError, match=r"t\.0\.et: rank 0: node id 7 \('b'\) is repeated"):
        read_trace(prefix)


def test_dependency_on_absent_node(tmp_path: Path) -> None:
    prefix = write_raw(tmp_path / "t", [[comp(0)], [comp(0), comp(1, ctrl=[9])]])
    with pytest.raises(ChakraError, match=r"t\.1\.et: rank 1: node 1 \('c1'\) depends on "
                                          r"node 9"):
        read_trace(prefix)


def test_dependency_cycle(tmp_path: Path) -> None:
    prefix = write_raw(tmp_path / "t", [[comp(0), comp(1, deps=[2]), comp(2, deps=[1])]])
    with pytest.raises(ChakraError, match=r"t\.0\.et: rank 0: dependency cycle among nodes "
                                          r"\[1, 2\]"):
        read_trace(prefix)


def test_pg_name_not_in_comm_groups(tmp_path: Path) -> None:
    prefix = write_raw(tmp_path / "t", [[coll(3, 0, 64, pg="1")], [coll(3, 0, 64, pg="5")]])
    groups = tmp_path / "groups.json"
    groups.write_text(json.dumps({"1": [0, 1]}))
    with pytest.raises(ChakraError, match=r"t\.1\.et: rank 1: node 3 \('coll3'\): pg_name '5' "
                                          r"is not in the comm groups \(.*groups\.json\)"):
        read_trace(prefix, comm_groups=groups)
    with pytest.raises(ChakraError, match=r"t\.0\.et: rank 0: node 3.*pg_name '1'.*no comm-gr"):
        read_trace(prefix)


def test_unreadable_comm_group_file(tmp_path: Path) -> None:
    prefix = write_raw(tmp_path / "t", [[coll(0, 0, 64)]])
    bad = tmp_path / "groups.json"
    bad.write_text("{'1': [0, 1]")
    with pytest.raises(ChakraError, match=r"groups\.json: comm-group file is not valid JSON"):
        read_trace(prefix, comm_groups=bad)
    with pytest.raises(ChakraError, match=r"absent\.json: cannot read comm-group file"):
        read_trace(prefix, comm_groups=tmp_path / "absent.json")
    bad.write_text(json.dumps({"1": [0, "x"]}))
    with pytest.raises(ChakraError, match=r"groups\.json: group '1': expected a list"):
        read_trace(prefix, comm_groups=bad)


@pytest.mark.parametrize(("code", "name"), [(3, "GATHER"), (4, "SCATTER"),
                                            (8, "REDUCE_SCATTER_BLOCK"), (42, "unknown code")])
def test_unsupported_comm_type(tmp_path: Path, code: int, name: str) -> None:
    prefix = write_raw(tmp_path / "t", [[comp(0), coll(1, code, 64, deps=[0])]])
    with pytest.raises(ChakraError, match=rf"t\.0\.et: rank 0: node 1 \('coll1'\): unsupported "
                                          rf"collective comm_type {code} \({name}"):
        read_trace(prefix)


def test_missing_required_attribute_and_wrong_sender(tmp_path: Path) -> None:
    send = ChakraNode(id=0, name="s", type=COMM_SEND_NODE)
    send.attr.extend([attr("comm_dst", int32_val=1), attr("comm_tag", int32_val=3)])
    prefix = write_raw(tmp_path / "t", [[send], []])
    with pytest.raises(ChakraError, match=r"t\.0\.et: rank 0: node 0 \('s'\): required "
                                          r"attribute 'comm_size'"):
        read_trace(prefix)
    send.attr.extend([attr("comm_size", int64_val=8), attr("comm_src", int32_val=1)])
    prefix = write_raw(tmp_path / "u", [[send], []])
    with pytest.raises(ChakraError, match=r"send with comm_src=1 on rank 0"):
        read_trace(prefix)
