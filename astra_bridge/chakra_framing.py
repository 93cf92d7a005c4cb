"""The framing of Chakra ET files: each protobuf message is preceded by its length as a base-128
varint, and a file may be gzip-compressed. Same behaviour as ``mlc-chakra``'s
``chakra/src/third_party/utils/protolib.py`` (``encodeMessage``, ``decodeMessage``,
``openFileRd``), written here so des needs ``protobuf`` alone; ``tests/test_chakra_compat.py``
checks that both write the same bytes and decode arbitrary byte strings alike.

Reading keeps protolib's conventions, which AstraSim's traces were written against:

* a length prefix of 0 (an empty message) or the end of the file inside a prefix ends the
  stream (:func:`decode_message` returns False);
* the length is read as protolib reads it (a 32-bit varint: above 2**63 a negative number,
  which reads to the end of the file, otherwise the low 32 bits are kept); a prefix of 10
  bytes or more without its last byte raises nothing and returns False;
* a message cut short is handed to protobuf as far as it goes (callers spot the short read,
  see :mod:`astra_bridge.chakra_files`); a malformed one raises protobuf's ``DecodeError``.
"""

from __future__ import annotations

import gzip
from typing import IO, Any, BinaryIO

__all__ = ["decode_message", "encode_message", "encode_varint", "open_trace"]

_MASK32 = 0xFFFFFFFF
_MAX_SIGNED64 = 0x7FFFFFFFFFFFFFFF


def encode_varint(value: int) -> bytes:
    """``value`` (>= 0) as a base-128 varint, least significant group first (protobuf's wire
    format, https://protobuf.dev/programming-guides/encoding/#varints)."""
    if value < 0:
        raise ValueError(f"a length prefix is never negative, got {value}")
    out = bytearray()
    while value > 0x7F:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_message(out: IO[bytes], message: Any) -> None:
    """Write ``message`` serialized, preceded by its length as a varint."""
    data = message.SerializeToString()
    out.write(encode_varint(len(data)))
    out.write(data)


def _read_length(fh: IO[bytes]) -> int | None:
    """The next length prefix, or None at the end of the file or on an over-long varint."""
    value = 0
    shift = 0
    while True:
        byte = fh.read(1)
        if not byte:
            return None
        value |= (byte[0] & 0x7F) << shift
        if not byte[0] & 0x80:
            # protolib's _DecodeVarint32: above 2**63 the value less 2**64 with every bit above
            # the low 32 set (always negative, so the message reads to the end of the file),
            # else the low 32 bits
            if value > _MAX_SIGNED64:
                return (value - (1 << 64)) | ~_MASK32
            return value & _MASK32
        shift += 7
        if shift >= 64:
            return None


def decode_message(fh: IO[bytes], message: Any) -> bool:
    """Read one length-prefixed message from ``fh`` into ``message``; False when there is no
    further message (end of the file, an empty message, a broken length prefix) or reading
    ``fh`` fails with an ``OSError``, as in protolib."""
    try:
        size = _read_length(fh)
        if not size:
            return False
        message.ParseFromString(fh.read(size))  # a negative size reads to the end, as protolib
    except OSError:
        return False
    return True


def open_trace(path: str) -> BinaryIO:
    """``path`` opened for binary reading, through gzip when it is gzip-compressed (tried
    first, as protolib's ``openFileRd`` does). Raises ``OSError`` when it cannot be opened
    (where protolib prints and exits)."""
    try:
        fh = gzip.open(path, "rb")  # noqa: SIM115 - returned open, the caller closes it
    except OSError:
        return open(path, "rb")
    try:
        fh.seek(1)  # makes gzip check its magic number now rather than on the first read
        fh.seek(0)
    except OSError:  # not gzip (BadGzipFile) or unreadable as gzip: read it plain
        fh.close()
        return open(path, "rb")
    except BaseException:
        fh.close()
        raise
    return fh  # type: ignore[return-value]
