"""Reading Chakra ET files into a des event graph (:func:`read_trace`).

The framing of the files, the node-type mapping and the issue order nodes are added in are
described in :mod:`astra_bridge.chakra_mapping`; AstraSim's comm-group JSON is read here too
(:func:`read_comm_groups`), since only the reader resolves ``pg_name``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from astra_bridge.chakra_files import check_rank_files, decode_file, discover_ranks
from astra_bridge.chakra_mapping import (
    ASTRA_REJECTS,
    COLLECTIVE_FROM_CHAKRA,
    ROOTED,
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
    CollectiveCommType,
    NodeType,
)
from astra_bridge.chakra_schema import Node as ChakraNode
from astra_bridge.configs import MAX_FILE_BYTES, MAX_NPUS
from astra_bridge.local_mem import TensorIO, node_tensors
from des.core.graph import CollectiveType, EventGraph, GraphError, Node, NodeKind
from des.core.schema import short, show

__all__ = ["TraceGraph", "read_comm_groups", "read_trace"]

log = logging.getLogger(__name__)

#: Dependencies that nodes may inherit through skipped nodes, per rank file: a chain of skipped
#: nodes each adding new dependencies grows quadratically, so a small hostile file could
#: otherwise ask for billions.
MAX_INHERITED_DEPS = 10_000_000


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
    #: ``(rank, id)`` -> the node's (inputs, outputs) tensors, read only when asked for
    #: (``read_trace(..., tensors=True)``, AstraSim's ``track-local-mem``)
    tensor_io: dict[tuple[int, int], TensorIO] = field(default_factory=dict)


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
        path = Path(source)
        try:
            size = path.stat().st_size
            if size > MAX_FILE_BYTES:
                raise ChakraError(f"{where}: comm-group file of {size} bytes is too large (at "
                                  f"most {MAX_FILE_BYTES})")
            raw = json.loads(path.read_text(encoding="utf-8"))
        except OSError as err:
            raise ChakraError(f"{where}: cannot read comm-group file: {err}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ChakraError(f"{where}: comm-group file is not valid JSON: {err}") from None
        except RecursionError:
            raise ChakraError(f"{where}: comm-group file is nested too deeply") from None
    if not isinstance(raw, Mapping):
        raise ChakraError(f"{where}: expected an object {{pg_name: list of ranks}}, "
                          f"got {show(raw)}")
    groups: dict[str, tuple[int, ...]] = {}
    for key, ranks in raw.items():
        if (not isinstance(ranks, Sequence) or isinstance(ranks, str | bytes)
                or not all(isinstance(r, int) and not isinstance(r, bool) for r in ranks)):
            raise ChakraError(f"{where}: group {key!r}: expected a list of integer ranks, "
                              f"got {show(ranks)}")
        if not ranks:
            raise ChakraError(f"{where}: group {key!r}: empty; a comm group needs at least "
                              "one rank")
        bad = next((r for r in ranks if not 0 <= r < MAX_NPUS), None)
        if bad is not None:
            raise ChakraError(f"{where}: group {key!r}: rank {short(bad)} is not a rank "
                              f"(0..{MAX_NPUS - 1})")
        if len(set(ranks)) != len(ranks):
            again = next(r for i, r in enumerate(ranks) if r in ranks[:i])
            raise ChakraError(f"{where}: group {key!r}: rank {again} appears twice in "
                              f"{short(list(ranks))}")
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


def _number(attrs: Mapping[str, Any], key: str, where: str, default: Any = None, *,
            signed: bool = False) -> Any:
    """Attribute ``key`` as a finite number (>= 0 unless ``signed``); ``default`` when absent
    (no default: the attribute is required)."""
    value = attrs.get(key)
    if value is None:
        if default is None:
            raise ChakraError(f"{where}: required attribute {key!r} is missing")
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or (
            isinstance(value, float) and not math.isfinite(value)) or (
            not signed and value < 0):
        allowed = "a finite number" if signed else "a finite number >= 0"
        raise ChakraError(f"{where}: attribute {key!r} must be {allowed}, got {show(value)}")
    return value


def _integer(attrs: Mapping[str, Any], key: str, where: str, default: Any = None, *,
             signed: bool = False) -> int:
    """Attribute ``key`` as a whole number (see :func:`_number`)."""
    value = _number(attrs, key, where, default, signed=signed)
    if isinstance(value, float) and not value.is_integer():
        raise ChakraError(f"{where}: attribute {key!r} must be a whole number, got "
                          f"{show(value)}")
    return int(value)


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
    inherited = 0

    def through(start: int) -> tuple[int, ...]:
        """The kept nodes skipped node ``start`` stands for: its deps, skipped ones replaced
        by theirs. Iterative (a chain of skipped nodes can be as long as the file) and
        memoised; the total is bounded by MAX_INHERITED_DEPS."""
        nonlocal inherited
        if start in expanded:
            return expanded[start]
        on_path = {start}
        stack: list[tuple[int, Iterator[int]]] = [(start, iter(raw[start]))]
        while stack:
            nid, pending = stack[-1]
            for dep in pending:
                if dep in skipped and dep not in expanded:
                    if dep in on_path:
                        raise ChakraError(f"{path}: rank {rank}: dependency cycle through "
                                          f"skipped node {dep}")
                    on_path.add(dep)
                    stack.append((dep, iter(raw[dep])))
                    break
            else:
                stack.pop()
                on_path.discard(nid)
                out: list[int] = []
                for dep in raw[nid]:
                    out.extend(expanded[dep] if dep in skipped else (dep,))
                expanded[nid] = tuple(dict.fromkeys(out))
                inherited += len(expanded[nid])
                if inherited > MAX_INHERITED_DEPS:
                    raise ChakraError(f"{path}: rank {rank}: more than {MAX_INHERITED_DEPS} "
                                      "dependencies inherited through skipped (METADATA or "
                                      "unknown) nodes; des reads traces up to that")
        return expanded[start]

    result = {}
    for nid in nodes:
        if nid in skipped:
            continue
        if any(d in skipped for d in raw[nid]):
            out: list[int] = []
            for dep in raw[nid]:
                out.extend(through(dep) if dep in skipped else (dep,))
            result[nid] = tuple(dict.fromkeys(out))
        else:
            result[nid] = raw[nid]
    return result


def _convert_node(node: ChakraNode, rank: int, deps: tuple[int, ...], groups: _Groups,
                  where: str, notes: Notes, trace: TraceGraph) -> Node:
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
        code = _integer(attrs, "comm_type", where)
        ctype = COLLECTIVE_FROM_CHAKRA.get(code)
        if ctype is None:
            name = (CollectiveCommType.Name(code) if code in CollectiveCommType.values()
                    else f"unknown code {code}")
            known = ", ".join(CollectiveCommType.Name(c) for c in COLLECTIVE_FROM_CHAKRA)
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
        if ctype in ROOTED:
            root = _integer(attrs, "root", where, group[0])
            if root not in group:
                raise ChakraError(f"{where}: root {root} is not in the comm group "
                                  f"{pg_name!r} = {short(list(group))}")
        if ctype is CollectiveType.BROADCAST:
            notes.add("broadcasts: AstraSim replays a broadcast as a delay of duration_micros "
                      "(1 ns if 0), des simulates it as a collective from group[0]", ref)
        elif ctype in ASTRA_REJECTS:
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
        peer = _integer(attrs, other, where)
        mine = attrs.get(own)
        if mine is not None and mine != rank:
            raise ChakraError(f"{where}: {'send' if send else 'recv'} with {own}={mine} on "
                              f"rank {rank} (AstraSim requires {own} == the rank)")
        if not 0 <= peer < groups.num_ranks or peer == rank:
            raise ChakraError(f"{where}: {other}={peer} is not another rank of "
                              f"0..{groups.num_ranks - 1}")
        return Node(kind=NodeKind.SEND if send else NodeKind.RECV,
                    nbytes=float(_number(attrs, "comm_size", where)), peer=peer,
                    tag=_integer(attrs, "comm_tag", where, 0, signed=True), **base)
    # MEM_LOAD_NODE / MEM_STORE_NODE
    notes.add("memory nodes: AstraSim times them with its remote-memory model "
              "(remote_memory.json), des with the local memory bandwidth", ref)
    return Node(kind=NodeKind.MEMORY, nbytes=float(_number(attrs, "tensor_size", where)),
                mem_op="load" if node.type == MEM_LOAD_NODE else "store", **base)


_KEPT_TYPES = {COMP_NODE, COMM_COLL_NODE, COMM_SEND_NODE, COMM_RECV_NODE, MEM_LOAD_NODE,
               MEM_STORE_NODE}


def read_trace(prefix: str | Path, num_ranks: int | None = None,
               comm_groups: Mapping[str, Sequence[int]] | str | Path | None = None, *,
               name: str = "", tensors: bool = False) -> TraceGraph:
    """Read ``{prefix}.{rank}.et`` for every rank into a des :class:`EventGraph`.

    ``num_ranks`` defaults to the contiguous ranks found next to ``prefix`` (a gap is an
    error). ``comm_groups`` is AstraSim's comm-group JSON (path) or the same mapping; when
    omitted, ``{prefix}.comm_groups.json`` is used if it exists (what
    :func:`~astra_bridge.chakra_write.write_trace` writes). Raises :class:`ChakraError` naming
    the file, rank and node for: a missing rank file, an empty/truncated/corrupt file, a
    missing GlobalMetadata, a repeated node id, a dependency on an absent node or a cycle, a
    missing required attribute or one that is not a finite, non-negative number, a pg_name not
    in the comm groups, a root outside its group, an unsupported collective type, an
    unreadable or malformed comm-group file, and (naming the prefix) collectives that do not
    match across ranks, unpaired sends and receives or a cross-rank deadlock. Every missing
    rank file is found before any file is read. A :class:`ChakraError` is a
    :class:`~des.core.schema.SchemaError`.

    ``tensors``: also read every modelled node's ``inputs`` and ``outputs`` tensors into
    :attr:`TraceGraph.tensor_io` (:func:`astra_bridge.local_mem.node_tensors`; a node missing
    either attribute, or one that is not name, size pairs, is a :class:`ChakraError`).
    """
    prefix = Path(prefix)
    if num_ranks is None:
        num_ranks = discover_ranks(prefix)
    elif (isinstance(num_ranks, bool) or not isinstance(num_ranks, int)
          or not 1 <= num_ranks <= MAX_NPUS):
        raise ChakraError(f"{trace_path(prefix, 0)}: num_ranks must be an integer in "
                          f"1..{MAX_NPUS}, got {show(num_ranks)}")
    else:
        check_rank_files(prefix, num_ranks)
    if num_ranks > MAX_NPUS:
        raise ChakraError(f"{trace_path(prefix, num_ranks - 1)}: {num_ranks} rank files; des "
                          f"reads at most {MAX_NPUS}")
    if comm_groups is None:
        default = prefix.with_name(f"{prefix.name}.comm_groups.json")
        comm_groups = default if default.is_file() else None
    groups = _Groups(comm_groups, num_ranks)
    trace = TraceGraph(EventGraph(num_ranks, name=name or prefix.name), [])
    notes = Notes()
    skipped_types: Counter[str] = Counter()
    for rank in range(num_ranks):
        path = trace_path(prefix, rank)
        _, raw_nodes, unknown = decode_file(path, rank)
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
        for nid in issue_order(deps, f"{path}: rank {rank}"):
            where = f"{path}: rank {rank}: node {nid}{name_of[nid]}"
            trace.graph.add(_convert_node(nodes[nid], rank, deps[nid], groups, where, notes,
                                          trace))
            if tensors:
                trace.tensor_io[(rank, nid)] = node_tensors(_attrs(nodes[nid]), where)
            ids[nid] = nid
        trace.node_ids.append(ids)
    if skipped_types:
        counts = ", ".join(f"{n} {t}" for t, n in sorted(skipped_types.items()))
        trace.warnings.append(f"skipped nodes des does not model ({counts}); their "
                              "dependants inherit their dependencies")
    if tensors and trace.skipped_nodes:
        trace.warnings.append("track-local-mem: the tensors of skipped nodes are not tracked "
                              "(des does not run them)")
    trace.warnings.extend(notes.render())
    trace.comm_groups = dict(groups.used)
    try:  # collectives matched across ranks, sends paired with receives, no deadlock
        trace.graph.validate()
    except GraphError as err:
        raise ChakraError(f"{prefix}.*.et: {err}") from None
    for line in trace.warnings:
        log.debug("%s: %s", prefix, line)
    return trace

