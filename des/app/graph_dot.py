"""Pictures of an event graph (``des graph draw``): Graphviz DOT text, always (pure text, no
dependency), and PNG/SVG rendered from it with the ``graph`` extra (the ``graphviz`` package)
and Graphviz's ``dot`` binary.

One cluster per rank; nodes labelled with their kind and name and coloured by kind; solid
edges for dependencies within a rank; dashed edges from each send to its receive when both
ranks are drawn. At most ``max_nodes`` nodes are drawn (the first, rank by rank, in the order
they were added); :class:`Dot` says how many were left out.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from des.core.graph import EventGraph, Node, NodeKind
from des.core.schema import SchemaError
from des.core.window import NodeWindow

__all__ = ["DEFAULT_MAX_NODES", "MAX_NODES", "Dot", "GraphDrawError", "render", "to_dot"]

#: Nodes drawn unless asked otherwise, and the most that may be asked for: Graphviz's layout
#: of a few thousand nodes already takes minutes and is unreadable.
DEFAULT_MAX_NODES = 500
MAX_NODES = 20_000
FORMATS = ("png", "svg")
COLOURS = {NodeKind.COMPUTE: "#9ecae1", NodeKind.COLLECTIVE: "#fdae6b",
           NodeKind.SEND: "#a1d99b", NodeKind.RECV: "#c7e9c0", NodeKind.MEMORY: "#dadaeb"}


class GraphDrawError(SchemaError):
    """A drawing that cannot be made: a bad rank or limit, an empty selection, or rendering
    without the ``graph`` extra or Graphviz's ``dot`` binary."""


@dataclass
class Dot:
    """DOT text and what it holds: ``drawn`` of the ``selected`` nodes (the rest cut by the
    node limit), ``p2p`` send/recv edges across ranks."""

    text: str
    drawn: int
    selected: int
    p2p: int

    @property
    def truncated(self) -> bool:
        return self.drawn < self.selected


def _quote(text: str) -> str:
    """A DOT string literal: quotes and backslashes escaped, line breaks as ``\\n``."""
    out = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + out.replace("\r", "").replace("\n", "\\n") + '"'


def _key(node: Node) -> str:
    return f"r{node.rank}n{node.id}"


def _label(node: Node) -> str:
    kind = str(node.kind)
    if node.kind is NodeKind.COLLECTIVE and node.collective is not None:
        kind = str(node.collective)
    elif node.kind in (NodeKind.SEND, NodeKind.RECV):
        kind = f"{node.kind} {'to' if node.kind is NodeKind.SEND else 'from'} {node.peer}"
    name = node.name if len(node.name) <= 40 else node.name[:37] + "..."
    return f"{node.id}: {kind}" + (f"\n{name}" if name else "")


def _check_ranks(graph: EventGraph, ranks: Iterable[int] | None) -> list[int]:
    if ranks is None:
        return list(range(graph.num_ranks))
    out = sorted(set(ranks))
    bad = [r for r in out if not 0 <= r < graph.num_ranks]
    if bad:
        raise GraphDrawError(f"--rank {bad[0]}: the graph has ranks 0..{graph.num_ranks - 1}")
    return out


def to_dot(graph: EventGraph, ranks: Iterable[int] | None = None,
           window: NodeWindow | None = None, max_nodes: int = DEFAULT_MAX_NODES) -> Dot:
    """The DOT text of ``graph``'s nodes on ``ranks`` (default all) whose ids are in
    ``window``, at most ``max_nodes`` of them. Send/recv pairs are matched with
    :meth:`EventGraph.p2p_pairs` (which validates the graph)."""
    if isinstance(max_nodes, bool) or not isinstance(max_nodes, int) or not (
            1 <= max_nodes <= MAX_NODES):
        raise GraphDrawError(f"--max-nodes {max_nodes!r}: expected a whole number in "
                             f"1..{MAX_NODES}")
    window = window or NodeWindow()
    chosen = _check_ranks(graph, ranks)
    drawn: dict[int, list[Node]] = {}
    selected = count = 0
    for rank in chosen:
        for node in graph.nodes(rank):
            if node.id not in window:
                continue
            selected += 1
            if count < max_nodes:
                drawn.setdefault(rank, []).append(node)
                count += 1
    if not selected:
        where = f"rank {chosen[0]}" if len(chosen) == 1 else f"{len(chosen)} ranks"
        raise GraphDrawError(f"no nodes to draw: {where} of {graph.name or 'the graph'} "
                             f"have no node ids in --nodes {window}")
    keys = {(n.rank, n.id) for nodes in drawn.values() for n in nodes}
    lines = [f"digraph {_quote(graph.name or 'des')} {{", "  rankdir=TB;",
             '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=10];',
             '  edge [color="#555555"];']
    for rank, nodes in drawn.items():
        lines.append(f"  subgraph cluster_rank{rank} {{")
        lines.append(f'    label="rank {rank}"; color="#bbbbbb";')
        for node in nodes:
            lines.append(f"    {_key(node)} [label={_quote(_label(node))}, "
                         f'fillcolor="{COLOURS.get(node.kind, "#ffffff")}"];')
        lines.append("  }")
    for nodes in drawn.values():
        for node in nodes:
            for dep in node.deps:
                if (node.rank, dep) in keys:
                    lines.append(f"  r{node.rank}n{dep} -> {_key(node)};")
    p2p = 0
    if len(drawn) > 1:
        for pair in graph.p2p_pairs():
            if (pair.src, pair.send_id) in keys and (pair.dst, pair.recv_id) in keys:
                lines.append(f"  r{pair.src}n{pair.send_id} -> r{pair.dst}n{pair.recv_id} "
                             f'[style=dashed, color="#31a354", constraint=false];')
                p2p += 1
    if count < selected:
        note = f"{selected - count} more nodes not drawn (node limit {max_nodes})"
        lines.append(f'  truncated [shape=note, fillcolor="#ffffff", label={_quote(note)}];')
    lines.append("}")
    return Dot("\n".join(lines) + "\n", count, selected, p2p)


def render(dot: str, path: Path, fmt: str) -> Path:
    """Render DOT text to ``path`` as ``fmt`` (png or svg) with the ``graphviz`` package and
    the ``dot`` binary; a :class:`GraphDrawError` naming what is missing otherwise."""
    if fmt not in FORMATS:
        raise GraphDrawError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
    try:
        import graphviz
    except ImportError:
        raise GraphDrawError(f"rendering {fmt.upper()} needs the graphviz package: pip install "
                             "'des[graph]' (the .dot file was written; render it with "
                             f"'dot -T{fmt}')") from None
    if shutil.which("dot") is None:
        raise GraphDrawError(f"rendering {fmt.upper()} needs Graphviz's 'dot' binary on PATH "
                             "(e.g. apt-get install graphviz); the .dot file was written")
    try:
        data = graphviz.Source(dot).pipe(format=fmt)
    except graphviz.ExecutableNotFound:
        raise GraphDrawError("Graphviz's 'dot' binary could not be run") from None
    except graphviz.CalledProcessError as err:
        raise GraphDrawError(f"Graphviz's dot failed: {err}") from None
    path.write_bytes(data)
    return path
