"""Chakra ET files as bytes and protobuf messages: finding the rank files of a prefix, reading
them (plain or gzip-compressed) and decoding the length-delimited messages, with errors that
name the file, rank and byte offset. What the messages mean is :mod:`astra_bridge.chakra_read`'s
job.
"""

from __future__ import annotations

import io
import os
import re
import zlib
from pathlib import Path

from google.protobuf.message import DecodeError
from google.protobuf.unknown_fields import UnknownFieldSet

from astra_bridge.chakra_framing import decode_message, open_trace
from astra_bridge.chakra_mapping import ChakraError, trace_path
from astra_bridge.chakra_schema import GlobalMetadata, NodeType
from astra_bridge.chakra_schema import Node as ChakraNode

__all__ = ["MAX_TRACE_BYTES", "check_rank_files", "decode_file", "discover_ranks", "rank_files"]

#: Largest rank file read (after gzip decompression): far beyond AstraSim's and STAGE's traces,
#: small enough that a corrupt or hostile file cannot exhaust memory.
MAX_TRACE_BYTES = 2 << 30


def rank_files(prefix: Path) -> set[int]:
    """The ranks that have a ``{prefix}.{rank}.et`` file (a listing: no file is opened)."""
    folder = prefix.parent if str(prefix.parent) else Path(".")
    pattern = re.compile(re.escape(prefix.name) + r"\.(0|[1-9]\d{0,8})\.et")
    try:
        names = os.listdir(folder)
    except OSError as err:
        raise ChakraError(f"{trace_path(prefix, 0)}: cannot list {folder}: {err}") from None
    return {int(m.group(1)) for n in names if (m := pattern.fullmatch(n))}


def discover_ranks(prefix: Path) -> int:
    """How many ranks have ``{prefix}.{rank}.et`` files (they must be 0..N-1, no gap)."""
    folder = prefix.parent if str(prefix.parent) else Path(".")
    ranks = rank_files(prefix)
    if not ranks:
        raise ChakraError(f"{trace_path(prefix, 0)}: no trace files {prefix.name}.<rank>.et "
                          f"in {folder}")
    num_ranks = max(ranks) + 1
    if len(ranks) != num_ranks:  # the first gap, found in at most len(ranks) + 1 steps
        first = next(r for r in range(num_ranks) if r not in ranks)
        gaps = num_ranks - len(ranks)
        raise ChakraError(f"{trace_path(prefix, first)}: missing rank file ({gaps} of ranks "
                          f"0..{num_ranks - 1} have no trace)")
    return num_ranks


def check_rank_files(prefix: Path, num_ranks: int, why: str = "") -> None:
    """Raise a :class:`ChakraError` naming the first of ranks 0..num_ranks-1 without a
    ``{prefix}.{rank}.et`` file, before any file is read (``why`` says where ``num_ranks``
    came from). Costs one directory listing, whatever ``num_ranks`` is."""
    ranks = rank_files(prefix)
    have = next((r for r in range(min(num_ranks, len(ranks) + 1)) if r not in ranks),
                min(num_ranks, len(ranks) + 1))
    if have < num_ranks:
        found = f"only ranks 0..{have - 1} have files" if have else "rank 0 has no file"
        raise ChakraError(f"{trace_path(prefix, have)}: missing rank file: {num_ranks} ranks "
                          f"needed{why}, {found}")


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
    if not os.access(path, os.R_OK):
        raise ChakraError(f"{path}: rank {rank}: file is not readable")
    try:
        with open_trace(str(path)) as fh:  # plain or gzip-compressed, as chakra reads it
            data = fh.read(MAX_TRACE_BYTES + 1)
    except (OSError, EOFError, zlib.error) as err:
        raise ChakraError(f"{path}: rank {rank}: cannot read (corrupt gzip?): {err}") from None
    if len(data) > MAX_TRACE_BYTES:
        raise ChakraError(f"{path}: rank {rank}: more than {MAX_TRACE_BYTES} bytes (after "
                          "decompression); des reads trace files up to that size")
    return data


def decode_file(path: Path, rank: int) -> tuple[GlobalMetadata, list[ChakraNode], int]:
    """GlobalMetadata, the nodes, and how many nodes carried fields unknown to the schema."""
    data = _read_bytes(path, rank)
    if not data:
        raise ChakraError(f"{path}: rank {rank}: empty file (no GlobalMetadata, no nodes)")
    buf = _Buffer(data)
    meta = GlobalMetadata()
    try:
        ok = decode_message(buf, meta)
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
            ok = decode_message(buf, node)
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
        if decode_message(buf, node) and not buf.short and node.type and not len(
                UnknownFieldSet(node)):
            return (f"GlobalMetadata is missing: the first message is a "
                    f"{NodeType.Name(node.type)} (node {node.id})")
    except (DecodeError, ValueError):
        pass
    return "corrupt GlobalMetadata (the first message)"

