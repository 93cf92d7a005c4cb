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

from chakra.schema.protobuf.et_def_pb2 import GlobalMetadata, NodeType
from chakra.schema.protobuf.et_def_pb2 import Node as ChakraNode
from chakra.src.third_party.utils.protolib import decodeMessage, openFileRd
from google.protobuf.message import DecodeError
from google.protobuf.unknown_fields import UnknownFieldSet

from astra_bridge.chakra_mapping import ChakraError, trace_path

__all__ = ["decode_file", "discover_ranks"]


def discover_ranks(prefix: Path) -> int:
    """How many ranks have ``{prefix}.{rank}.et`` files (they must be 0..N-1, no gap)."""
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


def decode_file(path: Path, rank: int) -> tuple[GlobalMetadata, list[ChakraNode], int]:
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

