"""Chakra execution traces (ET) in and out of des event graphs: the format, the node-type
mapping both ways, and what the reader and the writer share (error type, file naming, issue
order, aggregated warnings). Reading is :mod:`astra_bridge.chakra_read` (over the raw files of
:mod:`astra_bridge.chakra_files`); writing is :mod:`astra_bridge.chakra_write`.

The format is the MLCommons Chakra ET schema (``et_def.proto``, package ``ChakraProtoMsg``,
https://github.com/mlcommons/chakra/blob/main/schema/protobuf/et_def.proto) as AstraSim's
workload layer reads it: one file per rank, ``{prefix}.{rank}.et``, holding length-delimited
protobuf messages (varint length, then the message): first a ``GlobalMetadata``, then ``Node``
messages. The schema is :mod:`astra_bridge.chakra_schema` (et_def.proto's descriptor built with
``protobuf`` alone) and the framing :mod:`astra_bridge.chakra_framing` (protolib's conventions);
``tests/test_chakra_compat.py`` proves both byte-for-byte equal to the ``mlc-chakra`` package's.

Mapping (Chakra node type / attribute -> des :class:`~des.core.graph.Node`):

=====================  =========================================================================
``COMP_NODE``          compute. ``duration_micros`` > 0 -> ``duration_ns = duration_micros*1000``
                       (``num_ops``/``tensor_size`` kept as ``flops``/``nbytes`` if present);
                       else ``num_ops``/``tensor_size`` -> ``flops``/``nbytes`` timed by the
                       roofline (listed in :attr:`TraceGraph.roofline_nodes`); else duration 0.
                       ``is_cpu_op`` -> :attr:`TraceGraph.cpu_nodes` (never roofline: AstraSim
                       always replays CPU ops).
``COMM_COLL_NODE``     collective. ``comm_type`` (``CollectiveCommType``) -> CollectiveType;
                       ``comm_size`` -> ``nbytes``, except ALL_GATHER where ``comm_size`` is the
                       per-rank input, so ``nbytes = comm_size * len(group)``. ``pg_name`` "",
                       "0" or absent -> all ranks; else the comm-group JSON (``{"1": [0, 1]}``,
                       AstraSim's ``--comm-group-configuration``) gives the group in ring order.
                       BROADCAST / REDUCE get ``root = group[0]``.
``COMM_SEND_NODE``     send: ``comm_dst`` -> peer, ``comm_tag`` -> tag, ``comm_size`` -> nbytes.
``COMM_RECV_NODE``     recv: ``comm_src`` -> peer, ``comm_tag`` -> tag, ``comm_size`` -> nbytes.
``MEM_LOAD_NODE`` /    memory node (op load / store), ``tensor_size`` -> nbytes.
``MEM_STORE_NODE``
``METADATA_NODE``,     skipped (one warning per type with the count); nodes depending on a
``INVALID_NODE``       skipped node inherit its dependencies, as AstraSim finishes such nodes
                       at once.
``data_deps`` +        ``deps`` (union, data first, duplicates dropped).
``ctrl_deps``
=====================  =========================================================================

Collectives in des are matched across ranks by the order in which each rank adds them to a
group. AstraSim matches them in issue order and issues dependency-free nodes in ascending node
id, so :func:`~astra_bridge.chakra_read.read_trace` adds each rank's nodes in that order
(Kahn's algorithm taking the smallest ready id first), never in file order (STAGE traces
list nodes before their dependencies). Node ids are kept: des id == Chakra id.

Two extra attributes that AstraSim ignores make the round trip exact: ``op_class`` (string, a
des compute node's efficiency class) and ``root`` (int, the root of a broadcast/reduce).
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from pathlib import Path

from astra_bridge.chakra_schema import (
    ALL_GATHER,
    ALL_REDUCE,
    ALL_TO_ALL,
    BARRIER,
    BROADCAST,
    REDUCE,
    REDUCE_SCATTER,
)
from des.core.graph import CollectiveType
from des.core.schema import SchemaError

__all__ = ["ASTRA_REJECTS", "COLLECTIVE_FROM_CHAKRA", "COLLECTIVE_TO_CHAKRA", "ROOTED",
           "SCHEMA_VERSION", "ChakraError", "Notes", "issue_order", "trace_path"]

SCHEMA_VERSION = "0.0.4"  # what AstraSim's reference traces carry in GlobalMetadata.version

COLLECTIVE_FROM_CHAKRA: dict[int, CollectiveType] = {
    ALL_REDUCE: CollectiveType.ALL_REDUCE,
    ALL_GATHER: CollectiveType.ALL_GATHER,
    REDUCE_SCATTER: CollectiveType.REDUCE_SCATTER,
    ALL_TO_ALL: CollectiveType.ALL_TO_ALL,
    BROADCAST: CollectiveType.BROADCAST,
    REDUCE: CollectiveType.REDUCE,
    BARRIER: CollectiveType.BARRIER,
}
COLLECTIVE_TO_CHAKRA = {v: k for k, v in COLLECTIVE_FROM_CHAKRA.items()}
# AstraSim's Workload::issue_coll_comm throws "Unsupported collective comm type" for these.
ASTRA_REJECTS = {CollectiveType.REDUCE, CollectiveType.BARRIER}
ROOTED = {CollectiveType.BROADCAST, CollectiveType.REDUCE}


class ChakraError(SchemaError):
    """A Chakra trace or comm-group file des cannot use; names the file, rank and node (a
    :class:`~des.core.schema.SchemaError`: bad input, not a bug)."""


def trace_path(prefix: str | Path, rank: int) -> Path:
    """``{prefix}.{rank}.et``, AstraSim's naming of per-rank workload files."""
    prefix = Path(prefix)
    return prefix.with_name(f"{prefix.name}.{rank}.et")


def issue_order(deps: Mapping[int, Sequence[int]], where: str) -> list[int]:
    """Topological order taking the smallest ready id first (AstraSim's issue order)."""
    waiting = {nid: len(d) for nid, d in deps.items()}
    children: dict[int, list[int]] = {nid: [] for nid in deps}
    for nid, d in deps.items():
        for parent in d:
            children[parent].append(nid)
    ready = [nid for nid, n in waiting.items() if n == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        nid = heapq.heappop(ready)
        order.append(nid)
        for child in children[nid]:
            waiting[child] -= 1
            if waiting[child] == 0:
                heapq.heappush(ready, child)
    if len(order) != len(deps):
        stuck = sorted(nid for nid, n in waiting.items() if n > 0)
        raise ChakraError(f"{where}: dependency cycle among nodes {stuck[:10]}"
                          f"{' ...' if len(stuck) > 10 else ''}")
    return order


class Notes:
    """Warnings aggregated per kind: one line with a count and a few examples."""

    def __init__(self) -> None:
        self.items: dict[str, list[str]] = {}

    def add(self, kind: str, example: str) -> None:
        self.items.setdefault(kind, []).append(example)

    def render(self) -> list[str]:
        lines = []
        for kind, examples in self.items.items():
            shown = ", ".join(examples[:3]) + (", ..." if len(examples) > 3 else "")
            lines.append(f"{len(examples)} {kind} (e.g. {shown})")
        return lines
