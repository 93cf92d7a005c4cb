"""Chakra execution traces (ET) in and out of des event graphs.

The format is the MLCommons Chakra ET schema (``et_def.proto``, package ``ChakraProtoMsg``,
https://github.com/mlcommons/chakra/blob/main/schema/protobuf/et_def.proto) as AstraSim's
workload layer reads it: one file per rank, ``{prefix}.{rank}.et``, holding length-delimited
protobuf messages (varint length, then the message): first a ``GlobalMetadata``, then ``Node``
messages. The schema and the framing come from the ``mlc-chakra`` package (``et_def_pb2``,
``protolib.encodeMessage/decodeMessage/openFileRd``); nothing here re-implements them.

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
id, so :func:`read_trace` adds each rank's nodes in that order (Kahn's algorithm taking the
smallest ready id first), never in file order (STAGE traces list nodes before their
dependencies). Node ids are kept: des id == Chakra id.

Two extra attributes that AstraSim ignores make the round trip exact: ``op_class`` (string, a
des compute node's efficiency class) and ``root`` (int, the root of a broadcast/reduce).
"""

from __future__ import annotations

import contextlib
import heapq
import io
import json
import logging
import math
import os
import re
import zlib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chakra.schema.protobuf.et_def_pb2 import (
    ALL_GATHER,
    ALL_REDUCE,
    ALL_TO_ALL,
    BARRIER,
    BROADCAST,
    COMM_COLL_NODE,
    COMM_RECV_NODE,
    COMM_SEND_NODE,
    COMP_NODE,
    MEM_LOAD_NODE,
    MEM_STORE_NODE,
    REDUCE,
    REDUCE_SCATTER,
    AttributeProto,
    CollectiveCommType,
    GlobalMetadata,
    NodeType,
)
from chakra.schema.protobuf.et_def_pb2 import Node as ChakraNode
from chakra.src.third_party.utils.protolib import decodeMessage, encodeMessage, openFileRd
from google.protobuf.message import DecodeError
from google.protobuf.unknown_fields import UnknownFieldSet

from des.core.graph import CollectiveType, EventGraph, Node, NodeKind

__all__ = ["ChakraError", "TraceGraph", "read_comm_groups", "read_trace", "trace_path",
           "write_trace"]

log = logging.getLogger(__name__)

SCHEMA_VERSION = "0.0.4"  # what AstraSim's reference traces carry in GlobalMetadata.version

_COLLECTIVE_FROM_CHAKRA: dict[int, CollectiveType] = {
    ALL_REDUCE: CollectiveType.ALL_REDUCE,
    ALL_GATHER: CollectiveType.ALL_GATHER,
    REDUCE_SCATTER: CollectiveType.REDUCE_SCATTER,
    ALL_TO_ALL: CollectiveType.ALL_TO_ALL,
    BROADCAST: CollectiveType.BROADCAST,
    REDUCE: CollectiveType.REDUCE,
    BARRIER: CollectiveType.BARRIER,
}
_COLLECTIVE_TO_CHAKRA = {v: k for k, v in _COLLECTIVE_FROM_CHAKRA.items()}
# AstraSim's Workload::issue_coll_comm throws "Unsupported collective comm type" for these.
_ASTRA_REJECTS = {CollectiveType.REDUCE, CollectiveType.BARRIER}
_ROOTED = {CollectiveType.BROADCAST, CollectiveType.REDUCE}


class ChakraError(ValueError):
    """A Chakra trace or comm-group file des cannot use; names the file, rank and node."""


@dataclass
class TraceGraph:
    """An imported trace: the event graph and what the import had to note about it.

    ``node_ids[rank]`` maps Chakra node id -> des node id (identity: ids are kept; skipped
    nodes are absent). ``roofline_nodes`` holds ``(rank, id)`` of compute nodes timed by the
    roofline (``num_ops``/``tensor_size`` and no duration), ``cpu_nodes`` those with
    ``is_cpu_op`` set, ``skipped_nodes`` the METADATA/INVALID/unknown nodes left out.
    ``comm_groups`` maps each ``pg_name`` used to its group.
    """

    graph: EventGraph
    node_ids: list[dict[int, int]]
    roofline_nodes: set[tuple[int, int]] = field(default_factory=set)
    cpu_nodes: set[tuple[int, int]] = field(default_factory=set)
    skipped_nodes: set[tuple[int, int]] = field(default_factory=set)
    comm_groups: dict[str, tuple[int, ...]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- file access
def trace_path(prefix: str | Path, rank: int) -> Path:
    """``{prefix}.{rank}.et``, AstraSim's naming of per-rank workload files."""
    prefix = Path(prefix)
    return prefix.with_name(f"{prefix.name}.{rank}.et")


def _discover_ranks(prefix: Path) -> int:
    folder = prefix.parent if str(prefix.parent) else Path(".")
    pattern = re.compile(re.escape(prefix.name) + r"\.(\d+)\.et")
    try:
        names = os.listdir(folder)
    except OSError as err:
        raise ChakraError(f"{trace_path(prefix, 0)}: cannot list {folder}: {err}") from None
    ranks = {int(m.group(1)) for n in names if (m := pattern.fullmatch(n))}
    if not ranks:
        raise ChakraError(f"{trace_path(prefix, 0)}: no trace files {prefix.name}.<rank>.et "
                          f"in {folder}")
    num_ranks = max(ranks) + 1
    missing = [r for r in range(num_ranks) if r not in ranks]
    if missing:
        raise ChakraError(f"{trace_path(prefix, missing[0])}: missing rank file (ranks "
                          f"{missing} of 0..{num_ranks - 1} have no trace)")
    return num_ranks


class _Buffer(io.BytesIO):
    """In-memory file that notes a short read (a truncated length prefix or message)."""

    short = False

    def read(self, size: int | None = -1) -> bytes:
        out = super().read(size)
        if size is not None and size > 0 and len(out) < size:
            self.short = True
        return out


def _read_bytes(path: Path, rank: int) -> bytes:
    if not path.is_file():
        raise ChakraError(f"{path}: missing rank file for rank {rank}")
    if not os.access(path, os.R_OK):  # openFileRd would print and exit() here
        raise ChakraError(f"{path}: rank {rank}: file is not readable")
    try:
        with openFileRd(str(path)) as fh:  # plain or gzip-compressed, as chakra reads it
            return fh.read()
    except (OSError, EOFError, zlib.error) as err:
        raise ChakraError(f"{path}: rank {rank}: cannot read (corrupt gzip?): {err}") from None


def _decode_file(path: Path, rank: int) -> tuple[GlobalMetadata, list[ChakraNode], int]:
    """GlobalMetadata, the nodes, and how many nodes carried fields unknown to the schema."""
    data = _read_bytes(path, rank)
    if not data:
        raise ChakraError(f"{path}: rank {rank}: empty file (no GlobalMetadata, no nodes)")
    buf = _Buffer(data)
    meta = GlobalMetadata()
    try:
        ok = decodeMessage(buf, meta)
    except DecodeError as err:
        if buf.short:
            raise ChakraError(f"{path}: rank {rank}: truncated GlobalMetadata (file of "
                              f"{len(data)} bytes)") from None
        raise ChakraError(f"{path}: rank {rank}: {_not_metadata(data)}: {err}") from None
    if not ok or buf.short:
        raise ChakraError(f"{path}: rank {rank}: truncated or corrupt GlobalMetadata "
                          f"(file of {len(data)} bytes)")
    if len(UnknownFieldSet(meta)):
        raise ChakraError(f"{path}: rank {rank}: {_not_metadata(data)}")
    nodes: list[ChakraNode] = []
    unknown = 0
    while buf.tell() < len(data):
        start = buf.tell()
        node = ChakraNode()
        after = f"after node {nodes[-1].id}" if nodes else "after the GlobalMetadata"
        try:
            ok = decodeMessage(buf, node)
        except DecodeError as err:
            if not buf.short:
                raise ChakraError(f"{path}: rank {rank}: corrupt node message at byte {start} "
                                  f"({after}): {err}") from None
        if buf.short:
            raise ChakraError(f"{path}: rank {rank}: truncated node message at byte {start} "
                              f"({after}; file of {len(data)} bytes)")
        if not ok:
            raise ChakraError(f"{path}: rank {rank}: empty or unreadable node message at byte "
                              f"{start} ({after})")
        if len(UnknownFieldSet(node)):
            unknown += 1
        nodes.append(node)
    return meta, nodes, unknown


def _not_metadata(data: bytes) -> str:
    """Why the first message is not a GlobalMetadata: is it a Node (metadata missing)?"""
    buf = _Buffer(data)
    node = ChakraNode()
    try:
        if decodeMessage(buf, node) and not buf.short and node.type and not len(
                UnknownFieldSet(node)):
            return (f"GlobalMetadata is missing: the first message is a "
                    f"{NodeType.Name(node.type)} (node {node.id})")
    except (DecodeError, ValueError):
        pass
    return "corrupt GlobalMetadata (the first message)"


# --------------------------------------------------------------------------- comm groups
def read_comm_groups(source: Mapping[str, Sequence[int]] | str | Path
                     ) -> tuple[dict[str, tuple[int, ...]], str]:
    """A comm-group file (``{"1": [0, 1, 2, 3], ...}``, AstraSim's
    ``--comm-group-configuration``) or mapping, as ``{pg_name: ranks}`` plus a description of
    where it came from (for error messages)."""
    if isinstance(source, Mapping):
        raw: Any = source
        where = "comm groups (mapping)"
    else:
        where = str(source)
        try:
            raw = json.loads(Path(source).read_text(encoding="utf-8"))
        except OSError as err:
            raise ChakraError(f"{where}: cannot read comm-group file: {err}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ChakraError(f"{where}: comm-group file is not valid JSON: {err}") from None
    if not isinstance(raw, Mapping):
        raise ChakraError(f"{where}: expected an object {{pg_name: [ranks]}}, "
                          f"got {type(raw).__name__}")
    groups: dict[str, tuple[int, ...]] = {}
    for key, ranks in raw.items():
        if (not isinstance(ranks, Sequence) or isinstance(ranks, str)
                or not all(isinstance(r, int) and not isinstance(r, bool) for r in ranks)):
            raise ChakraError(f"{where}: group {key!r}: expected a list of integer ranks, "
                              f"got {ranks!r}")
        groups[str(key)] = tuple(ranks)
    return groups, where


class _Groups:
    """pg_name -> group lookup with AstraSim's rules (``std::stoi`` on names and keys)."""

    def __init__(self, source: Mapping[str, Sequence[int]] | str | Path | None,
                 num_ranks: int) -> None:
        self.num_ranks = num_ranks
        self.everyone = tuple(range(num_ranks))
        self.groups: dict[str, tuple[int, ...]] = {}
        self.where = "no comm-group file given"
        if source is not None:
            self.groups, self.where = read_comm_groups(source)
        self.by_int: dict[int, tuple[int, ...]] = {}
        for key, ranks in self.groups.items():
            with contextlib.suppress(ValueError):
                self.by_int.setdefault(int(key), ranks)
        self.used: dict[str, tuple[int, ...]] = {}

    def lookup(self, pg_name: str, where: str) -> tuple[int, ...]:
        if pg_name in ("", "0"):
            return self.everyone
        group = self.groups.get(pg_name)
        if group is None:
            try:
                group = self.by_int.get(int(pg_name))
            except ValueError:
                group = None
        if group is None:
            raise ChakraError(f"{where}: pg_name {pg_name!r} is not in the comm groups "
                              f"({self.where})")
        bad = [r for r in group if not 0 <= r < self.num_ranks]
        if bad or len(set(group)) != len(group):
            raise ChakraError(f"{where}: comm group {pg_name!r} = {list(group)} ({self.where}) "
                              f"has ranks outside 0..{self.num_ranks - 1} or repeats one")
        self.used[pg_name] = group
        return group


# --------------------------------------------------------------------------- reading
def _attrs(node: ChakraNode) -> dict[str, Any]:
    """Attribute name -> value of whichever ``AttributeProto`` oneof field is set."""
    out: dict[str, Any] = {}
    for attr in node.attr:
        kind = attr.WhichOneof("value")
        out[attr.name] = getattr(attr, kind) if kind is not None else None
    return out


def _number(attrs: Mapping[str, Any], key: str, where: str, default: Any = None) -> Any:
    value = attrs.get(key)
    if value is None:
        if default is None:
            raise ChakraError(f"{where}: required attribute {key!r} is missing")
        return default
    if not isinstance(value, int | float):
        raise ChakraError(f"{where}: attribute {key!r} should be a number, got {value!r}")
    return value


def _issue_order(deps: Mapping[int, Sequence[int]], where: str) -> list[int]:
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


def _resolve_deps(nodes: dict[int, ChakraNode], skipped: set[int], path: Path, rank: int,
                  name_of: dict[int, str]) -> dict[int, tuple[int, ...]]:
    """data_deps + ctrl_deps per kept node, with skipped nodes replaced by their own deps."""
    raw: dict[int, tuple[int, ...]] = {}
    for nid, node in nodes.items():
        merged = tuple(dict.fromkeys([*node.data_deps, *node.ctrl_deps]))
        for dep in merged:
            if dep not in nodes:
                raise ChakraError(f"{path}: rank {rank}: node {nid}{name_of[nid]} depends on "
                                  f"node {dep}, which the file does not contain")
        raw[nid] = merged
    expanded: dict[int, tuple[int, ...]] = {}

    def through(nid: int, seen: set[int]) -> tuple[int, ...]:  # deps of a skipped node
        if nid in expanded:
            return expanded[nid]
        if nid in seen:
            raise ChakraError(f"{path}: rank {rank}: dependency cycle through skipped node "
                              f"{nid}")
        seen.add(nid)
        out: list[int] = []
        for dep in raw[nid]:
            out.extend(through(dep, seen) if dep in skipped else (dep,))
        expanded[nid] = tuple(dict.fromkeys(out))
        return expanded[nid]

    result = {}
    for nid in nodes:
        if nid in skipped:
            continue
        if any(d in skipped for d in raw[nid]):
            out: list[int] = []
            for dep in raw[nid]:
                out.extend(through(dep, set()) if dep in skipped else (dep,))
            result[nid] = tuple(dict.fromkeys(out))
        else:
            result[nid] = raw[nid]
    return result


class _Notes:
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


def _convert_node(node: ChakraNode, rank: int, deps: tuple[int, ...], groups: _Groups,
                  where: str, notes: _Notes, trace: TraceGraph) -> Node:
    attrs = _attrs(node)
    ref = f"rank {rank} node {node.id}"
    base: dict[str, Any] = {"rank": rank, "id": node.id, "name": node.name, "deps": deps}
    cpu = bool(attrs.get("is_cpu_op", False))
    if cpu:
        trace.cpu_nodes.add((rank, node.id))
    if node.type == COMP_NODE:
        flops = float(_number(attrs, "num_ops", where, 0))
        nbytes = float(_number(attrs, "tensor_size", where, 0))
        has_roofline = "num_ops" in attrs or "tensor_size" in attrs
        op_class = str(attrs.get("op_class") or "")
        if cpu:
            notes.add("CPU compute nodes (is_cpu_op): AstraSim replays their duration on a "
                      "separate CPU resource; des runs them on the rank's compute", ref)
        if node.duration_micros > 0:
            duration: float | None = node.duration_micros * 1000.0
        elif has_roofline and not cpu:
            duration = None
            trace.roofline_nodes.add((rank, node.id))
            if nbytes == 0:
                notes.add("roofline compute nodes with tensor_size 0: AstraSim's roofline "
                          "skips them (0 ns), des times them as compute-bound", ref)
        else:
            duration = 0.0
        return Node(kind=NodeKind.COMPUTE, flops=flops, nbytes=nbytes, duration_ns=duration,
                    op_class=op_class, **base)
    if cpu:
        notes.add("communication/memory nodes marked is_cpu_op: AstraSim rejects them "
                  "('Comm node should not be on CPU'); des runs them normally", ref)
    if node.type == COMM_COLL_NODE:
        code = int(_number(attrs, "comm_type", where))
        ctype = _COLLECTIVE_FROM_CHAKRA.get(code)
        if ctype is None:
            name = (CollectiveCommType.Name(code) if code in CollectiveCommType.values()
                    else f"unknown code {code}")
            known = ", ".join(CollectiveCommType.Name(c) for c in _COLLECTIVE_FROM_CHAKRA)
            raise ChakraError(f"{where}: unsupported collective comm_type {code} ({name}); "
                              f"des reads {known}")
        size = _number(attrs, "comm_size", where)
        pg_name = attrs.get("pg_name")
        pg_name = "" if pg_name is None else str(pg_name)
        group = groups.lookup(pg_name, where)
        if rank not in group:
            raise ChakraError(f"{where}: rank {rank} is not in its comm group {pg_name!r} = "
                              f"{list(group)} ({groups.where})")
        nbytes = float(size) * (len(group) if ctype is CollectiveType.ALL_GATHER else 1)
        root = None
        if ctype in _ROOTED:
            root = int(attrs["root"]) if isinstance(attrs.get("root"), int) else group[0]
        if ctype is CollectiveType.BROADCAST:
            notes.add("broadcasts: AstraSim replays a broadcast as a delay of duration_micros "
                      "(1 ns if 0), des simulates it as a collective from group[0]", ref)
        elif ctype in _ASTRA_REJECTS:
            notes.add(f"{ctype} collectives: AstraSim rejects this comm_type "
                      "('Unsupported collective comm type')", ref)
        dims = attrs.get("involved_dim")
        if dims is not None:
            values = list(getattr(dims, "values", []))
            if not hasattr(dims, "values") or not all(isinstance(v, bool) for v in values):
                notes.add("collectives whose involved_dim is not a bool_list (AstraSim exits "
                          "on those); ignored", ref)
            elif not all(values):
                notes.add("collectives restricted by involved_dim (not modelled: des uses "
                          "every dimension)", f"{ref} {values}")
        return Node(kind=NodeKind.COLLECTIVE, nbytes=nbytes, collective=ctype, group=group,
                    root=root, **base)
    if node.type in (COMM_SEND_NODE, COMM_RECV_NODE):
        send = node.type == COMM_SEND_NODE
        own, other = ("comm_src", "comm_dst") if send else ("comm_dst", "comm_src")
        peer = int(_number(attrs, other, where))
        mine = attrs.get(own)
        if mine is not None and mine != rank:
            raise ChakraError(f"{where}: {'send' if send else 'recv'} with {own}={mine} on "
                              f"rank {rank} (AstraSim requires {own} == the rank)")
        if not 0 <= peer < groups.num_ranks or peer == rank:
            raise ChakraError(f"{where}: {other}={peer} is not another rank of "
                              f"0..{groups.num_ranks - 1}")
        return Node(kind=NodeKind.SEND if send else NodeKind.RECV,
                    nbytes=float(_number(attrs, "comm_size", where)), peer=peer,
                    tag=int(_number(attrs, "comm_tag", where, 0)), **base)
    # MEM_LOAD_NODE / MEM_STORE_NODE
    notes.add("memory nodes: AstraSim times them with its remote-memory model "
              "(remote_memory.json), des with the local memory bandwidth", ref)
    return Node(kind=NodeKind.MEMORY, nbytes=float(_number(attrs, "tensor_size", where)),
                mem_op="load" if node.type == MEM_LOAD_NODE else "store", **base)


_KEPT_TYPES = {COMP_NODE, COMM_COLL_NODE, COMM_SEND_NODE, COMM_RECV_NODE, MEM_LOAD_NODE,
               MEM_STORE_NODE}


def read_trace(prefix: str | Path, num_ranks: int | None = None,
               comm_groups: Mapping[str, Sequence[int]] | str | Path | None = None, *,
               name: str = "") -> TraceGraph:
    """Read ``{prefix}.{rank}.et`` for every rank into a des :class:`EventGraph`.

    ``num_ranks`` defaults to the contiguous ranks found next to ``prefix`` (a gap is an
    error). ``comm_groups`` is AstraSim's comm-group JSON (path) or the same mapping; when
    omitted, ``{prefix}.comm_groups.json`` is used if it exists (what :func:`write_trace`
    writes). Raises :class:`ChakraError` naming the file, rank and node for: a missing rank
    file, an empty/truncated/corrupt file, a missing GlobalMetadata, a repeated node id, a
    dependency on an absent node or a cycle, a missing required attribute, a pg_name not in
    the comm groups, an unsupported collective type, an unreadable comm-group file.
    """
    prefix = Path(prefix)
    if num_ranks is None:
        num_ranks = _discover_ranks(prefix)
    elif int(num_ranks) != num_ranks or num_ranks < 1:
        raise ChakraError(f"{trace_path(prefix, 0)}: num_ranks must be >= 1, got {num_ranks!r}")
    if comm_groups is None:
        default = prefix.with_name(f"{prefix.name}.comm_groups.json")
        comm_groups = default if default.is_file() else None
    groups = _Groups(comm_groups, num_ranks)
    trace = TraceGraph(EventGraph(num_ranks, name=name or prefix.name), [])
    notes = _Notes()
    skipped_types: Counter[str] = Counter()
    for rank in range(num_ranks):
        path = trace_path(prefix, rank)
        _, raw_nodes, unknown = _decode_file(path, rank)
        if unknown:
            notes.add("nodes with fields unknown to the Chakra schema (ignored)",
                      f"{path.name}: {unknown} nodes")
        nodes: dict[int, ChakraNode] = {}
        name_of: dict[int, str] = {}
        for node in raw_nodes:
            label = f" ({node.name!r})" if node.name else ""
            if node.id in nodes:
                raise ChakraError(f"{path}: rank {rank}: node id {node.id}{label} is repeated "
                                  f"(first {nodes[node.id].name!r})")
            nodes[node.id] = node
            name_of[node.id] = label
        skipped = {nid for nid, n in nodes.items() if n.type not in _KEPT_TYPES}
        for nid in skipped:
            kind = nodes[nid].type
            type_name = NodeType.Name(kind) if kind in NodeType.values() else f"type {kind}"
            skipped_types[type_name] += 1
            trace.skipped_nodes.add((rank, nid))
        deps = _resolve_deps(nodes, skipped, path, rank, name_of)
        ids: dict[int, int] = {}
        for nid in _issue_order(deps, f"{path}: rank {rank}"):
            where = f"{path}: rank {rank}: node {nid}{name_of[nid]}"
            trace.graph.add(_convert_node(nodes[nid], rank, deps[nid], groups, where, notes,
                                          trace))
            ids[nid] = nid
        trace.node_ids.append(ids)
    if skipped_types:
        counts = ", ".join(f"{n} {t}" for t, n in sorted(skipped_types.items()))
        trace.warnings.append(f"skipped nodes des does not model ({counts}); their "
                              "dependants inherit their dependencies")
    trace.warnings.extend(notes.render())
    trace.comm_groups = dict(groups.used)
    for line in trace.warnings:
        log.debug("%s: %s", prefix, line)
    return trace


# --------------------------------------------------------------------------- writing
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
    ready id), which is the order :func:`read_trace` adds nodes in."""
    bad = []
    for rank in range(graph.num_ranks):
        nodes = {n.id: n for n in graph.nodes(rank)}
        if any(d not in nodes for n in nodes.values() for d in n.deps):
            continue
        try:
            order = _issue_order({nid: n.deps for nid, n in nodes.items()}, f"rank {rank}")
        except ChakraError:
            continue
        if _collective_sequences(nodes, nodes) != _collective_sequences(nodes, order):
            bad.append(f"rank {rank}")
    return bad


def _chakra_node(node: Node, group_names: Mapping[tuple[int, ...], str], num_ranks: int,
                 notes: _Notes, inexact: list[str]) -> ChakraNode:
    label = node.label()
    out = ChakraNode(id=node.id, name=node.name)
    out.data_deps.extend(dict.fromkeys(node.deps))
    attrs = [_attr("is_cpu_op", bool_val=False)]
    if node.kind is NodeKind.COMPUTE:
        out.type = COMP_NODE
        if node.duration_ns is not None:
            micros = math.floor(node.duration_ns / 1000.0 + 0.5)
            if micros * 1000.0 != node.duration_ns:
                notes.add("compute durations rounded to whole microseconds (Chakra "
                          "duration_micros is uint64)",
                          f"{label} {node.duration_ns:g} ns -> {micros} us")
            out.duration_micros = micros
        if node.duration_ns is None or node.flops or node.nbytes:
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
        attrs.append(_attr("comm_type", int64_val=_COLLECTIVE_TO_CHAKRA[ctype]))
        attrs.append(_attr("comm_size", int64_val=_whole(size, "comm_size", label, inexact)))
        if group in group_names:
            attrs.append(_attr("pg_name", string_val=group_names[group]))
        if ctype in _ROOTED and node.root is not None:
            attrs.append(_attr("root", int64_val=node.root))
        if ctype is CollectiveType.BROADCAST:
            notes.add("broadcasts: AstraSim replays them as a delay, not as traffic", label)
        elif ctype in _ASTRA_REJECTS:
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
                comm_groups_path: str | Path | None = None) -> list[Path]:
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
    """
    prefix = Path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    group_names = _group_names(graph)
    notes = _Notes()
    inexact: list[str] = []
    paths: list[Path] = []
    for rank in range(graph.num_ranks):
        path = trace_path(prefix, rank)
        messages = []
        for node in graph.nodes(rank):
            try:
                messages.append(_chakra_node(node, group_names, graph.num_ranks, notes,
                                             inexact))
            except (ValueError, TypeError, OverflowError) as err:
                if isinstance(err, ChakraError):
                    raise
                raise ChakraError(f"{path}: {node.label()}: cannot encode: {err}") from None
        with open(path, "wb") as fh:
            encodeMessage(fh, GlobalMetadata(version=SCHEMA_VERSION))
            for message in messages:
                encodeMessage(fh, message)
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
