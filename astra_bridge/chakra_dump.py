"""A readable text dump of Chakra ET files (``des et dump``): one line per node with its id,
name, type, sizes, peers or group and dependencies, exactly as the file holds them (no
mapping to des nodes: METADATA and unknown nodes are listed too).

Decoding and its errors are :mod:`astra_bridge.chakra_files`'; the text is returned line by
line, never printed.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from astra_bridge.chakra_files import decode_file, discover_ranks, rank_files
from astra_bridge.chakra_mapping import ChakraError, trace_path
from astra_bridge.chakra_schema import CollectiveCommType, NodeType
from astra_bridge.chakra_schema import Node as ChakraNode
from des.core.schema import short
from des.core.window import NodeWindow

__all__ = ["dump_lines", "dump_node", "select_ranks"]

#: Attributes shown, in this order, when present (sizes, then peers and group).
SHOWN_ATTRS = ("comm_type", "comm_size", "num_ops", "tensor_size", "comm_src", "comm_dst",
               "comm_tag", "pg_name", "root", "op_class", "is_cpu_op")
#: Dependencies listed per kind before the rest are counted ("... +N").
MAX_DEPS_SHOWN = 64


def _value(attr: Any) -> Any:
    kind = attr.WhichOneof("value")
    return getattr(attr, kind) if kind is not None else None


def _text(value: Any) -> str:
    if isinstance(value, str):
        return short(value)  # quoted: a name with spaces or newlines stays one field
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return f"{value:g}" if isinstance(value, float) else str(value)
    values = getattr(value, "values", None)  # a *_list attribute
    if values is not None:
        return short(list(values))
    return short(value)


def _deps(ids: Sequence[int]) -> str:
    shown = ",".join(str(d) for d in ids[:MAX_DEPS_SHOWN])
    more = f",... +{len(ids) - MAX_DEPS_SHOWN}" if len(ids) > MAX_DEPS_SHOWN else ""
    return f"[{shown}{more}]"


def dump_node(node: ChakraNode) -> str:
    """One node as ``id name type key=value ... data_deps=[..] ctrl_deps=[..]``."""
    kind = NodeType.Name(node.type) if node.type in NodeType.values() else f"TYPE_{node.type}"
    attrs = {a.name: _value(a) for a in node.attr}
    fields = [f"{node.id:>6}", short(node.name), kind.removesuffix("_NODE")]
    for key in SHOWN_ATTRS:
        if key not in attrs or (key == "is_cpu_op" and not attrs[key]):
            continue
        value = attrs[key]
        if key == "comm_type" and isinstance(value, int) and value in CollectiveCommType.values():
            fields.append(f"comm_type={CollectiveCommType.Name(value)}")
        else:
            fields.append(f"{key}={_text(value)}")
    if node.duration_micros:
        fields.append(f"duration={node.duration_micros}us")
    fields.append(f"data_deps={_deps(node.data_deps)}")
    fields.append(f"ctrl_deps={_deps(node.ctrl_deps)}")
    return " ".join(fields)


def select_ranks(prefix: str | Path, rank: int | None = None) -> list[int]:
    """The ranks to read: ``rank`` alone (its file must exist) or every rank 0..N-1 of the
    prefix (no gap)."""
    prefix = Path(prefix)
    if rank is None:
        return list(range(discover_ranks(prefix)))
    if rank < 0:
        raise ChakraError(f"--rank {rank}: a rank is a whole number >= 0")
    if rank not in rank_files(prefix):
        have = sorted(rank_files(prefix))
        found = (f"ranks {have[0]}..{have[-1]} have files" if have
                 else f"no trace files {prefix.name}.<rank>.et there")
        raise ChakraError(f"{trace_path(prefix, rank)}: missing rank file for rank {rank} "
                          f"({found})")
    return [rank]


def dump_lines(prefix: str | Path, rank: int | None = None,
               window: NodeWindow | None = None) -> Iterator[str]:
    """The dump of ``{prefix}.{rank}.et``, one rank or all: per rank a header line
    (``# rank R: FILE, schema VERSION, N nodes``) then one line per node in file order whose
    id is in ``window``. Raises :class:`ChakraError` for a missing rank file or a file that
    is not a Chakra ET (before yielding that rank's lines)."""
    prefix = Path(prefix)
    window = window or NodeWindow()
    for r in select_ranks(prefix, rank):
        path = trace_path(prefix, r)
        meta, nodes, unknown = decode_file(path, r)
        picked = [n for n in nodes if n.id in window]
        note = f", {len(picked)} in --nodes {window}" if window != NodeWindow() else ""
        extra = f", {unknown} with fields unknown to the schema" if unknown else ""
        yield (f"# rank {r}: {path}, schema {short(meta.version)}, {len(nodes)} nodes"
               f"{note}{extra}")
        for node in picked:
            yield dump_node(node)
