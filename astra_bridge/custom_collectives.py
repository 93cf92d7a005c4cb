"""AstraSim custom collectives: ``*-implementation-custom`` Chakra ETs as des node programs.

A system.json key such as ``"all-reduce-implementation-custom": ["dir/custom_allreduce"]``
makes AstraSim run every all-reduce as the Chakra ET ``dir/custom_allreduce.{pos}.et`` of each
rank, ``pos`` being the rank's position in the collective's group (CollectiveImplLookup.cc,
CustomAlgorithm.cc under astra-sim/system/astraccl/). Each file holds ``COMM_SEND_NODE``
(``comm_dst``, ``comm_size``, ``comm_tag``), ``COMM_RECV_NODE`` (``comm_src``, ...) and
``COMP_NODE`` nodes (``duration_micros`` x 1000 ns, 1 ns when zero) with their dependencies.
:func:`read_program` turns the files into a :class:`~collectives.custom.CustomProgram` and
:func:`register_custom` registers it as the algorithm of that collective type.

AstraSim opens the path relative to its working directory; des resolves a relative path
against the folder of the system.json that names it (the reference runs start AstraSim in that
folder), so the inputs work from anywhere. Message sizes are the files' ``comm_size``: the
workload's collective size is ignored, as AstraSim ignores it. ETs from the newer converter
(``msg_chunk_cnt`` / ``total_chunk_cnt`` attributes, sizes derived from the collective's size)
are refused rather than timed with the wrong sizes.
"""

from __future__ import annotations

from pathlib import Path

from astra_bridge.chakra_files import decode_file, discover_ranks
from astra_bridge.chakra_mapping import ChakraError, trace_path
from astra_bridge.chakra_schema import NodeType
from collectives.custom import (
    CustomProgram,
    OpKind,
    ProgramError,
    ProgramNode,
    register_program,
)
from des.core.graph import CollectiveType
from des.core.schema import SchemaError

__all__ = ["CustomCollectiveError", "read_program", "register_custom"]

_KINDS = {NodeType.COMM_SEND_NODE: OpKind.SEND, NodeType.COMM_RECV_NODE: OpKind.RECV,
          NodeType.COMP_NODE: OpKind.COMPUTE}
_CHUNK_ATTRS = ("msg_chunk_cnt", "msg_chunk_idx", "total_chunk_cnt")


class CustomCollectiveError(ChakraError, SchemaError):
    """A custom collective's Chakra ETs des cannot run; names the file and the node."""


def _attr_values(node) -> dict:
    out = {}
    for attr in node.attr:
        kind = attr.WhichOneof("value")
        out[attr.name] = getattr(attr, kind) if kind is not None else None
    return out


def _int_attr(attrs: dict, key: str, where: str) -> int:
    value = attrs.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise CustomCollectiveError(f"{where}: attribute {key!r} must be an integer, got "
                                    f"{value!r}")
    return value


def _read_rank(path: Path, rank: int) -> tuple[ProgramNode, ...]:
    try:
        _meta, raw, _unknown = decode_file(path, rank)
    except CustomCollectiveError:
        raise
    except ChakraError as err:
        raise CustomCollectiveError(str(err)) from None
    nodes = []
    for node in raw:
        named = f" {node.name!r}" if node.name else ""
        where = f"{path}: node {node.id}{named}"
        kind = _KINDS.get(node.type)
        if kind is None:  # AstraSim's CustomAlgorithm::issue would take it and never finish
            raise CustomCollectiveError(f"{where}: {NodeType.Name(node.type)} in a custom "
                                        "collective; only COMM_SEND_NODE, COMM_RECV_NODE and "
                                        "COMP_NODE can run")
        deps = tuple(dict.fromkeys((*node.data_deps, *node.ctrl_deps)))
        attrs = _attr_values(node)
        if kind is OpKind.COMPUTE:
            micros = node.duration_micros
            nodes.append(ProgramNode(node.id, kind, deps, name=node.name,
                                     duration_ns=micros * 1000.0 if micros else 1.0))
            continue
        chunked = [k for k in _CHUNK_ATTRS if k in attrs]
        if chunked and any(attrs[k] != -1 for k in chunked):
            raise CustomCollectiveError(f"{where}: {', '.join(chunked)}: message sizes derived "
                                        "from the collective's size are not modelled; give "
                                        "comm_size")
        size = _int_attr(attrs, "comm_size", where)
        if size <= 0:
            raise CustomCollectiveError(f"{where}: comm_size must be > 0, got {size}")
        peer = _int_attr(attrs, "comm_dst" if kind is OpKind.SEND else "comm_src", where)
        tag = _int_attr(attrs, "comm_tag", where) if "comm_tag" in attrs else 0
        nodes.append(ProgramNode(node.id, kind, deps, peer=peer, nbytes=size, tag=tag,
                                 name=node.name))
    return tuple(nodes)


def read_program(prefix: str | Path, ranks: int | None = None) -> CustomProgram:
    """The custom collective ``{prefix}.{rank}.et`` for ``ranks`` ranks (default: as many as
    there are files, 0..N-1 without a gap), checked (:meth:`CustomProgram.check`)."""
    prefix = Path(prefix)
    try:
        count = discover_ranks(prefix) if ranks is None else ranks
    except ChakraError as err:
        raise CustomCollectiveError(f"custom collective: {err}") from None
    per_rank, sources = [], []
    for rank in range(count):
        path = trace_path(prefix, rank)
        if not path.is_file():
            raise CustomCollectiveError(f"{path}: missing rank file of the custom collective "
                                        f"{prefix} (rank {rank} of {count})")
        per_rank.append(_read_rank(path, rank))
        sources.append(str(path))
    for rank, nodes in enumerate(per_rank):  # a peer past the last file: that file is missing
        for node in nodes:
            if node.kind is not OpKind.COMPUTE and node.peer >= count:
                raise CustomCollectiveError(
                    f"{trace_path(prefix, node.peer)}: missing rank file of the custom "
                    f"collective {prefix}: {node.label(sources[rank])} names rank {node.peer}")
    program = CustomProgram(str(prefix), tuple(per_rank), tuple(sources))
    try:
        program.check()
    except ProgramError as err:
        raise CustomCollectiveError(str(err)) from None
    return program


def register_custom(collective: CollectiveType, prefix: str | Path,
                    ranks: int | None = None) -> str:
    """Read the custom collective at ``prefix`` and register it for ``collective``; returns
    the algorithm name to ask for (``custom:`` + the prefix)."""
    program = read_program(prefix, ranks)
    try:
        return register_program(collective, program, checked=True)
    except ProgramError as err:
        raise CustomCollectiveError(str(err)) from None
