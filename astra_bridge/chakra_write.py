"""Writing a des event graph as Chakra ET files AstraSim can run (:func:`write_trace`).

The mapping of des nodes to Chakra node types and attributes is the reader's, inverted; see
:mod:`astra_bridge.chakra_mapping`.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from astra_bridge.chakra_framing import encode_message
from astra_bridge.chakra_mapping import (
    ASTRA_REJECTS,
    COLLECTIVE_TO_CHAKRA,
    ROOTED,
    SCHEMA_VERSION,
    ChakraError,
    Notes,
    issue_order,
    trace_path,
)
from astra_bridge.chakra_schema import (
    COMM_COLL_NODE,
    COMM_RECV_NODE,
    COMM_SEND_NODE,
    COMP_NODE,
    MEM_LOAD_NODE,
    MEM_STORE_NODE,
    AttributeProto,
    GlobalMetadata,
)
from astra_bridge.chakra_schema import Node as ChakraNode
from des.core.graph import CollectiveType, EventGraph, Node, NodeKind

__all__ = ["write_trace"]

log = logging.getLogger(__name__)


def _attr(name: str, **value: Any) -> AttributeProto:
    return AttributeProto(name=name, **value)


def _whole(value: float, what: str, label: str, inexact: list[str]) -> int:
    """Chakra sizes are integers: round, noting any value that was not whole."""
    out = round(value)
    if out != value:
        inexact.append(f"{label} {what}={value:g}")
    return int(out)


def _group_names(graph: EventGraph) -> dict[tuple[int, ...], str]:
    everyone = tuple(range(graph.num_ranks))
    names: dict[tuple[int, ...], str] = {}
    for node in graph.all_nodes():
        if node.kind is NodeKind.COLLECTIVE:
            group = tuple(node.group) if node.group is not None else everyone
            if group != everyone and group not in names:
                names[group] = str(len(names) + 1)
    return names


def _collective_sequences(nodes: Mapping[int, Node], order: Iterable[int]
                          ) -> dict[tuple[int, ...] | None, list[int]]:
    out: dict[tuple[int, ...] | None, list[int]] = {}
    for nid in order:
        if nodes[nid].kind is NodeKind.COLLECTIVE:
            out.setdefault(nodes[nid].group, []).append(nid)
    return out


def _check_issue_order(graph: EventGraph) -> list[str]:
    """Ranks whose collective order per group differs from AstraSim's issue order (ascending
    ready id), which is the order :func:`~astra_bridge.chakra_read.read_trace` adds nodes in."""
    bad = []
    for rank in range(graph.num_ranks):
        nodes = {n.id: n for n in graph.nodes(rank)}
        if any(d not in nodes for n in nodes.values() for d in n.deps):
            continue
        try:
            order = issue_order({nid: n.deps for nid, n in nodes.items()}, f"rank {rank}")
        except ChakraError:
            continue
        if _collective_sequences(nodes, nodes) != _collective_sequences(nodes, order):
            bad.append(f"rank {rank}")
    return bad


def _chakra_node(node: Node, group_names: Mapping[tuple[int, ...], str], num_ranks: int,
                 notes: Notes, inexact: list[str], duration_ns: float | None = None
                 ) -> ChakraNode:
    label = node.label()
    out = ChakraNode(id=node.id, name=node.name)
    out.data_deps.extend(dict.fromkeys(node.deps))
    attrs = [_attr("is_cpu_op", bool_val=False)]
    if node.kind is NodeKind.COMPUTE:
        out.type = COMP_NODE
        fixed = node.duration_ns if duration_ns is None else duration_ns
        if fixed is not None:
            micros = math.floor(fixed / 1000.0 + 0.5)
            if micros * 1000.0 != fixed:
                notes.add("compute durations rounded to whole microseconds (Chakra "
                          "duration_micros is uint64)",
                          f"{label} {fixed:g} ns -> {micros} us")
            out.duration_micros = micros
        if duration_ns is None and (node.duration_ns is None or node.flops or node.nbytes):
            attrs.append(_attr("num_ops", int64_val=_whole(node.flops, "flops", label, inexact)))
            attrs.append(_attr("tensor_size",
                               uint64_val=_whole(node.nbytes, "nbytes", label, inexact)))
            if node.duration_ns is None and node.flops and not node.nbytes:
                notes.add("roofline compute nodes with nbytes 0: AstraSim's roofline skips "
                          "tensor_size 0 (0 ns)", label)
        if node.op_class:
            attrs.append(_attr("op_class", string_val=node.op_class))
    elif node.kind is NodeKind.COLLECTIVE:
        out.type = COMM_COLL_NODE
        ctype = CollectiveType.parse(node.collective)
        group = tuple(node.group) if node.group is not None else tuple(range(num_ranks))
        size = node.nbytes / len(group) if ctype is CollectiveType.ALL_GATHER else node.nbytes
        attrs.append(_attr("comm_type", int64_val=COLLECTIVE_TO_CHAKRA[ctype]))
        attrs.append(_attr("comm_size", int64_val=_whole(size, "comm_size", label, inexact)))
        if group in group_names:
            attrs.append(_attr("pg_name", string_val=group_names[group]))
        if ctype in ROOTED and node.root is not None:
            attrs.append(_attr("root", int64_val=node.root))
        if ctype is CollectiveType.BROADCAST:
            notes.add("broadcasts: AstraSim replays them as a delay, not as traffic", label)
        elif ctype in ASTRA_REJECTS:
            notes.add(f"{ctype} collectives: AstraSim rejects this comm_type", label)
        if node.algorithm is not None:
            notes.add("per-node collective algorithms dropped (AstraSim takes them from "
                      "system.json)", f"{label} {node.algorithm}")
    elif node.kind in (NodeKind.SEND, NodeKind.RECV):
        send = node.kind is NodeKind.SEND
        out.type = COMM_SEND_NODE if send else COMM_RECV_NODE
        src, dst = (node.rank, node.peer) if send else (node.peer, node.rank)
        attrs += [_attr("comm_src", int32_val=src), _attr("comm_dst", int32_val=dst),
                  _attr("comm_tag", int32_val=node.tag),
                  _attr("comm_size", int64_val=_whole(node.nbytes, "nbytes", label, inexact))]
    elif node.kind is NodeKind.MEMORY:
        out.type = MEM_LOAD_NODE if node.mem_op == "load" else MEM_STORE_NODE
        attrs.append(_attr("tensor_size",
                           uint64_val=_whole(node.nbytes, "nbytes", label, inexact)))
    else:
        raise ChakraError(f"{label}: node kind {node.kind!r} has no Chakra node type")
    out.attr.extend(attrs)
    return out


def write_trace(graph: EventGraph, prefix: str | Path, *,
                comm_groups_path: str | Path | None = None,
                durations: Mapping[tuple[int, int], float] | None = None) -> list[Path]:
    """Write ``graph`` as ``{prefix}.{rank}.et`` files AstraSim can run; return their paths.

    Each file is a GlobalMetadata (version ``0.0.4``) then one Node per des node in graph
    order, with the attributes AstraSim's reference traces use (``is_cpu_op``, ``comm_type``,
    ``comm_size``, ``pg_name``, ``comm_src``/``comm_dst``/``comm_tag``, ``num_ops``,
    ``tensor_size``); deps become ``data_deps``. Durations are rounded to whole microseconds
    (``duration_micros`` is uint64) and sizes to whole bytes, with a logged warning when that
    loses precision. An all-gather's ``comm_size`` is ``nbytes / len(group)`` (the per-rank
    input). Collectives on a group other than all ranks in order get ``pg_name`` "1", "2",
    ... in order of first appearance, and the comm-group JSON ``{pg_name: ranks}`` is written
    to ``comm_groups_path`` (default ``{prefix}.comm_groups.json``) and returned last.
    ``durations`` (ns by ``(rank, node id)``) replaces those compute nodes' FLOPs and bytes by
    a fixed duration (AstraSim replays it), so a run there has exactly des's compute times.
    """
    prefix = Path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    group_names = _group_names(graph)
    notes = Notes()
    inexact: list[str] = []
    paths: list[Path] = []
    for rank in range(graph.num_ranks):
        path = trace_path(prefix, rank)
        messages = []
        for node in graph.nodes(rank):
            try:
                fixed = durations.get((rank, node.id)) if durations else None
                messages.append(_chakra_node(node, group_names, graph.num_ranks, notes,
                                             inexact, fixed))
            except (ValueError, TypeError, OverflowError) as err:
                if isinstance(err, ChakraError):
                    raise
                raise ChakraError(f"{path}: {node.label()}: cannot encode: {err}") from None
        with open(path, "wb") as fh:
            encode_message(fh, GlobalMetadata(version=SCHEMA_VERSION))
            for message in messages:
                encode_message(fh, message)
        paths.append(path)
    if group_names:
        json_path = (Path(comm_groups_path) if comm_groups_path is not None
                     else prefix.with_name(f"{prefix.name}.comm_groups.json"))
        json_path.write_text(json.dumps({name: list(group)
                                         for group, name in group_names.items()}) + "\n",
                             encoding="utf-8")
        paths.append(json_path)
    for example in inexact:
        notes.add("non-integer sizes rounded to whole bytes/ops", example)
    reordered = _check_issue_order(graph)
    for where in reordered:
        notes.add("ranks whose collective order differs from AstraSim's issue order "
                  "(ascending ready node id); cross-rank matching may differ", where)
    for line in notes.render():
        log.warning("%s: %s", prefix, line)
    return paths
