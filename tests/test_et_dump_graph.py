"""``des et dump`` (astra_bridge.chakra_dump) and ``des graph draw`` (des.app.graph_dot): the
text dump of Chakra ET files and the DOT picture of event graphs, with their bad-input exits."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from chakra.schema.protobuf.et_def_pb2 import COMP_NODE, METADATA_NODE, GlobalMetadata
from chakra.schema.protobuf.et_def_pb2 import Node as ChakraNode
from chakra.src.third_party.utils.protolib import encodeMessage

from astra_bridge.chakra_dump import dump_lines
from astra_bridge.chakra_mapping import ChakraError
from astra_bridge.chakra_write import write_trace
from des.app import graph_dot
from des.app.cli import EXIT_BAD_INPUT, EXIT_OK, main
from des.app.graph_dot import GraphDrawError, to_dot
from des.core.graph import EventGraph
from des.core.schema import SchemaError
from des.core.window import NodeWindow, WindowError, parse_window


def flat(text: str) -> str:
    return " ".join(text.split())


def small_graph() -> EventGraph:
    """Two ranks: compute -> send -> all-reduce on 0; recv -> compute -> all-reduce -> store
    on 1; the send pairs with the receive."""
    g = EventGraph(2, name="tiny")
    a = g.compute(0, duration_ns=2000, name="fwd")
    s = g.send(0, 1, 1024, tag=5, name="s", deps=[a])
    g.collective(0, "all_reduce", 4096, name="ar", deps=[s])
    r = g.recv(1, 0, 1024, tag=5, name="r")
    b = g.compute(1, flops=1e9, nbytes=1e6, name="bwd", deps=[r])
    c = g.collective(1, "all_reduce", 4096, name="ar", deps=[b])
    g.memory(1, 512, op="store", name="st", deps=[c])
    return g


@pytest.fixture
def trace(tmp_path: Path) -> Path:
    prefix = tmp_path / "tiny" / "t"
    write_trace(small_graph(), prefix)
    return prefix


def node_lines(lines: list[str]) -> dict[tuple[int, int], str]:
    """(rank, id) -> the dump line of that node."""
    out, rank = {}, -1
    for line in lines:
        if line.startswith("# rank "):
            rank = int(line.split()[2].rstrip(":"))
        else:
            out[(rank, int(line.split()[0]))] = line
    return out


# ---------------------------------------------------------------------- the dump
def test_dump_lists_every_node_with_its_deps(trace: Path) -> None:
    lines = list(dump_lines(trace))
    assert lines[0].startswith("# rank 0: ") and "3 nodes" in lines[0]
    nodes = node_lines(lines)
    graph = small_graph()
    assert set(nodes) == {(n.rank, n.id) for n in graph.all_nodes()}
    for node in graph.all_nodes():
        line = nodes[(node.rank, node.id)]
        assert f"'{node.name}'" in line
        deps = ",".join(str(d) for d in node.deps)
        assert f"data_deps=[{deps}]" in line and "ctrl_deps=[]" in line
    assert "COMP duration=2us" in nodes[(0, 0)]
    assert "COMM_SEND comm_size=1024 comm_src=0 comm_dst=1 comm_tag=5" in nodes[(0, 1)]
    assert "COMM_COLL comm_type=ALL_REDUCE comm_size=4096" in nodes[(0, 2)]
    assert "COMM_RECV comm_size=1024 comm_src=0 comm_dst=1 comm_tag=5" in nodes[(1, 0)]
    assert "num_ops=1000000000 tensor_size=1000000" in nodes[(1, 1)]
    assert "MEM_STORE tensor_size=512" in nodes[(1, 3)]


def test_dump_rank_and_window(trace: Path) -> None:
    lines = list(dump_lines(trace, 1, parse_window("1:3")))
    assert lines[0].startswith("# rank 1: ") and "2 in --nodes 1:3" in lines[0]
    assert set(node_lines(lines)) == {(1, 1), (1, 2)}
    assert set(node_lines(list(dump_lines(trace, None, parse_window("2"))))) == {(0, 2), (1, 2)}
    assert set(node_lines(list(dump_lines(trace, 0, parse_window(":1"))))) == {(0, 0)}


def test_dump_shows_control_deps_and_skipped_types(tmp_path: Path) -> None:
    prefix = tmp_path / "c"
    with open(f"{prefix}.0.et", "wb") as fh:
        encodeMessage(fh, GlobalMetadata(version="0.0.4"))
        encodeMessage(fh, ChakraNode(id=7, name="meta", type=METADATA_NODE))
        node = ChakraNode(id=9, name="x", type=COMP_NODE, duration_micros=3)
        node.data_deps.append(7)
        node.ctrl_deps.extend([7, 8])
        encodeMessage(fh, node)
    lines = node_lines(list(dump_lines(prefix)))
    assert "METADATA" in lines[(0, 7)]
    assert "data_deps=[7] ctrl_deps=[7,8]" in lines[(0, 9)]


def test_parse_window() -> None:
    assert parse_window("100:200") == NodeWindow(100, 200)
    assert parse_window("5:") == NodeWindow(5, None)
    assert parse_window(":5") == NodeWindow(0, 5)
    assert parse_window("5") == NodeWindow(5, 6)
    assert parse_window(None) == NodeWindow()
    for bad in ("x", "3:3", "4:2", "-1:2", ":", "1:2:3"):
        with pytest.raises(WindowError):
            parse_window(bad)
    assert issubclass(WindowError, SchemaError) and issubclass(GraphDrawError, SchemaError)


def test_dump_errors(trace: Path, tmp_path: Path) -> None:
    with pytest.raises(ChakraError, match="missing rank file for rank 5"):
        list(dump_lines(trace, 5))
    with pytest.raises(ChakraError, match="no trace files"):
        list(dump_lines(tmp_path / "nothing"))
    (tmp_path / "junk.0.et").write_bytes(b"this is not a chakra trace at all")
    with pytest.raises(ChakraError, match=r"junk\.0\.et: rank 0"):
        list(dump_lines(tmp_path / "junk"))


def test_cli_dump(trace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["et", "dump", str(trace), "--rank", "1", "--nodes", "0:2"]) == EXIT_OK
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 3 and set(node_lines(out)) == {(1, 0), (1, 1)}


@pytest.mark.parametrize(("args", "message"), [
    (["--rank", "7"], "missing rank file for rank 7"),
    (["--rank", "-1"], "a rank is a whole number >= 0"),
    (["--nodes", "9:3"], "empty window"),
    (["--nodes", "a:b"], "expected node ids A:B"),
])
def test_cli_dump_bad_input(trace: Path, capsys: pytest.CaptureFixture[str], args: list[str],
                            message: str) -> None:
    assert main(["et", "dump", str(trace), *args]) == EXIT_BAD_INPUT
    captured = capsys.readouterr()
    assert message in flat(captured.err) and captured.out == ""


def test_cli_dump_missing_and_not_et(tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["et", "dump", str(tmp_path / "none")]) == EXIT_BAD_INPUT
    assert "no trace files none.<rank>.et" in flat(capsys.readouterr().err)
    (tmp_path / "x.0.et").write_text("{\"not\": \"an ET\"}\n")
    assert main(["et", "dump", str(tmp_path / "x")]) == EXIT_BAD_INPUT
    assert "x.0.et: rank 0:" in flat(capsys.readouterr().err)


# ---------------------------------------------------------------------- the picture
def parse_dot(text: str) -> tuple[dict[str, str], set[tuple[str, str]], set[tuple[str, str]]]:
    """Node key -> label, solid edges and dashed edges of DOT text as to_dot writes it."""
    labels = dict(re.findall(r'^\s+(r\d+n\d+) \[label="((?:[^"\\]|\\.)*)"', text, re.M))
    solid, dashed = set(), set()
    for a, b, attrs in re.findall(r"^\s+(r\d+n\d+) -> (r\d+n\d+)(.*);$", text, re.M):
        (dashed if "dashed" in attrs else solid).add((a, b))
    return labels, solid, dashed


def test_dot_nodes_and_edges() -> None:
    dot = to_dot(small_graph())
    labels, solid, dashed = parse_dot(dot.text)
    assert dot.text.startswith('digraph "tiny" {') and dot.text.rstrip().endswith("}")
    assert set(labels) == {"r0n0", "r0n1", "r0n2", "r1n0", "r1n1", "r1n2", "r1n3"}
    assert labels["r0n0"] == "0: compute\\nfwd"
    assert labels["r0n1"] == "1: send to 1\\ns"
    assert labels["r1n2"] == "2: all_reduce\\nar"
    assert labels["r1n3"] == "3: memory\\nst"
    assert solid == {("r0n0", "r0n1"), ("r0n1", "r0n2"), ("r1n0", "r1n1"), ("r1n1", "r1n2"),
                     ("r1n2", "r1n3")}
    assert dashed == {("r0n1", "r1n0")} and dot.p2p == 1
    assert "subgraph cluster_rank0" in dot.text and "subgraph cluster_rank1" in dot.text
    assert 'fillcolor="#fdae6b"' in dot.text  # collectives coloured as collectives


def test_dot_rank_window_and_limit() -> None:
    labels, solid, dashed = parse_dot(to_dot(small_graph(), ranks=[1]).text)
    assert set(labels) == {"r1n0", "r1n1", "r1n2", "r1n3"} and not dashed
    labels, solid, _ = parse_dot(to_dot(small_graph(), window=NodeWindow(1, 3)).text)
    assert set(labels) == {"r0n1", "r0n2", "r1n1", "r1n2"}
    assert solid == {("r0n1", "r0n2"), ("r1n1", "r1n2")}
    dot = to_dot(small_graph(), max_nodes=3)
    assert dot.truncated and (dot.drawn, dot.selected) == (3, 7)
    assert set(parse_dot(dot.text)[0]) == {"r0n0", "r0n1", "r0n2"}
    assert "4 more nodes not drawn (node limit 3)" in dot.text
    with pytest.raises(GraphDrawError, match=r"ranks 0\.\.1"):
        to_dot(small_graph(), ranks=[2])
    with pytest.raises(GraphDrawError, match="no nodes to draw"):
        to_dot(small_graph(), window=NodeWindow(10, 20))
    with pytest.raises(GraphDrawError, match="--max-nodes"):
        to_dot(small_graph(), max_nodes=0)


def test_dot_quotes_names() -> None:
    g = EventGraph(1, name='a "b"')
    g.compute(0, duration_ns=1, name='say "hi"\\ {x}\nnext')
    text = to_dot(g).text
    assert 'digraph "a \\"b\\"" {' in text
    assert '[label="0: compute\\nsay \\"hi\\"\\\\ {x}\\nnext"' in text


def test_cli_graph_from_trace_and_scenario(trace: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "g.dot"
    assert main(["graph", "draw", "--et", str(trace), "--out", str(out)]) == EXIT_OK
    assert "7 nodes, 1 send/recv pair across ranks" in flat(capsys.readouterr().out)
    assert parse_dot(out.read_text())[2] == {("r0n1", "r1n0")}
    out2 = tmp_path / "s.dot"
    assert main(["graph", "draw", "dp8_ring_overlap", "--rank", "2", "--max-nodes", "5",
                 "--out", str(out2)]) == EXIT_OK
    assert "drew the first 5 of" in flat(capsys.readouterr().out)
    labels = parse_dot(out2.read_text())[0]
    assert len(labels) == 5 and all(k.startswith("r2n") for k in labels)


@pytest.mark.parametrize(("args", "message"), [
    (["--rank", "9"], "--rank 9: the graph has ranks 0..1"),
    (["--nodes", "50:60"], "no nodes to draw"),
    (["--max-nodes", "0"], "--max-nodes 0"),
    (["--out", "x.png"], "expected a file name ending in .dot"),
])
def test_cli_graph_bad_input(trace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                             args: list[str], message: str) -> None:
    base = ["graph", "draw", "--et", str(trace), "--out", str(tmp_path / "g.dot")]
    assert main(base + args) == EXIT_BAD_INPUT
    assert message in flat(capsys.readouterr().err)


def test_cli_graph_missing_trace(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["graph", "draw", "--et", str(tmp_path / "none"),
                 "--out", str(tmp_path / "g.dot")]) == EXIT_BAD_INPUT
    assert "no trace files" in flat(capsys.readouterr().err)


def test_render_names_the_extra_or_binary(trace: Path, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "g.dot"
    monkeypatch.setattr(graph_dot.shutil, "which", lambda name: None)
    assert main(["graph", "draw", "--et", str(trace), "--out", str(out),
                 "--format", "png"]) == EXIT_BAD_INPUT
    err = flat(capsys.readouterr().err)
    assert out.is_file()  # the DOT file is written before rendering is tried
    assert "des[graph]" in err or "'dot' binary" in err
    monkeypatch.setitem(__import__("sys").modules, "graphviz", None)  # package missing
    assert main(["graph", "draw", "--et", str(trace), "--out", str(out),
                 "--format", "svg"]) == EXIT_BAD_INPUT
    assert "pip install 'des[graph]'" in flat(capsys.readouterr().err)


@pytest.mark.skipif(graph_dot.shutil.which("dot") is None, reason="Graphviz's dot not installed")
def test_render_svg(tmp_path: Path) -> None:
    pytest.importorskip("graphviz")
    image = graph_dot.render(to_dot(small_graph()).text, tmp_path / "g.svg", "svg")
    assert b"<svg" in image.read_bytes()
