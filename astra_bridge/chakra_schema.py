"""The MLCommons Chakra execution-trace schema (``et_def.proto``) built at run time from
``protobuf`` alone, so reading and writing Chakra ETs needs neither ``mlc-chakra`` (whose
dependencies weigh ~600 MB) nor ``protoc``.

The descriptor below declares the same file as Chakra's
https://github.com/mlcommons/chakra/blob/main/schema/protobuf/et_def.proto: package
``ChakraProtoMsg``, proto3, and the same message, enum, field and value names, field numbers,
types and labels, in the same order. Messages built from it therefore serialize to the same
bytes as ``chakra.schema.protobuf.et_def_pb2``'s and parse each other's output;
``tests/test_chakra_compat.py`` checks both (the descriptors field by field, the bytes of rich
and random nodes) against ``mlc-chakra`` from the ``test`` extra.

The file lives in a descriptor pool of its own, not protobuf's default pool, so it never
clashes with ``et_def_pb2`` when both are imported in one process. The module exports what
des used from ``et_def_pb2``: the message classes (``Node``, ``GlobalMetadata``,
``AttributeProto``, the ``*List`` messages, ``IOInfo``, ``Tensor``), the enum wrappers
``NodeType`` and ``CollectiveCommType`` (``.Name``/``.Value``) and every enum value as a
module constant (``COMP_NODE``, ``ALL_REDUCE``...).
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper

__all__ = [
    "ALL_GATHER", "ALL_REDUCE", "ALL_TO_ALL", "BARRIER", "BROADCAST", "COMM_COLL_NODE",
    "COMM_RECV_NODE", "COMM_SEND_NODE", "COMP_NODE", "FILE_NAME", "GATHER", "INVALID_NODE",
    "MEM_LOAD_NODE", "MEM_STORE_NODE", "METADATA_NODE", "PACKAGE", "REDUCE", "REDUCE_SCATTER",
    "REDUCE_SCATTER_BLOCK", "SCATTER", "AttributeProto", "BoolList", "BytesList",
    "CollectiveCommType", "DoubleList", "Fixed32List", "Fixed64List", "FloatList",
    "GlobalMetadata", "IOInfo", "Int32List", "Int64List", "Node", "NodeType", "Sfixed32List",
    "Sfixed64List", "Sint32List", "Sint64List", "StringList", "Tensor", "Uint32List",
    "Uint64List", "file_descriptor_proto",
]

FILE_NAME = "et_def.proto"
PACKAGE = "ChakraProtoMsg"

_F = descriptor_pb2.FieldDescriptorProto

#: The scalar kinds of ``AttributeProto``'s ``value`` oneof, in et_def.proto's order: kind
#: ``k`` is field ``{k}_val`` (number 3 + 2i) and its list ``{K}List`` is ``{k}_list``
#: (number 4 + 2i), whose message holds ``repeated <type> values = 1``.
_ATTR_KINDS: tuple[tuple[str, int], ...] = (
    ("double", _F.TYPE_DOUBLE), ("float", _F.TYPE_FLOAT),
    ("int32", _F.TYPE_INT32), ("int64", _F.TYPE_INT64),
    ("uint32", _F.TYPE_UINT32), ("uint64", _F.TYPE_UINT64),
    ("sint32", _F.TYPE_SINT32), ("sint64", _F.TYPE_SINT64),
    ("fixed32", _F.TYPE_FIXED32), ("fixed64", _F.TYPE_FIXED64),
    ("sfixed32", _F.TYPE_SFIXED32), ("sfixed64", _F.TYPE_SFIXED64),
    ("bool", _F.TYPE_BOOL), ("string", _F.TYPE_STRING), ("bytes", _F.TYPE_BYTES),
)

_NODE_TYPES = ("INVALID_NODE", "METADATA_NODE", "MEM_LOAD_NODE", "MEM_STORE_NODE", "COMP_NODE",
               "COMM_SEND_NODE", "COMM_RECV_NODE", "COMM_COLL_NODE")
_COLLECTIVE_TYPES = ("ALL_REDUCE", "REDUCE", "ALL_GATHER", "GATHER", "SCATTER", "BROADCAST",
                     "ALL_TO_ALL", "REDUCE_SCATTER", "REDUCE_SCATTER_BLOCK", "BARRIER")

# (name, number, type, message/enum name or "", repeated): one message's fields in order
_Field = tuple[str, int, int, str, bool]


def _list_name(kind: str) -> str:
    return kind.capitalize() + "List"  # "uint32" -> "Uint32List", as et_def.proto names them


def _messages() -> list[tuple[str, list[_Field]]]:
    """Every message of et_def.proto with its fields, in the file's order."""
    attr: list[_Field] = [("name", 1, _F.TYPE_STRING, "", False),
                          ("doc_string", 2, _F.TYPE_STRING, "", False)]
    for i, (kind, ftype) in enumerate(_ATTR_KINDS):
        attr.append((f"{kind}_val", 3 + 2 * i, ftype, "", False))
        attr.append((f"{kind}_list", 4 + 2 * i, _F.TYPE_MESSAGE, _list_name(kind), False))
    lists = [(_list_name(kind), [("values", 1, ftype, "", True)]) for kind, ftype in _ATTR_KINDS]
    u64 = _F.TYPE_UINT64
    node: list[_Field] = [
        ("id", 1, u64, "", False), ("name", 2, _F.TYPE_STRING, "", False),
        ("type", 3, _F.TYPE_ENUM, "NodeType", False),
        ("ctrl_deps", 4, u64, "", True), ("data_deps", 5, u64, "", True),
        ("start_time_micros", 6, u64, "", False), ("duration_micros", 7, u64, "", False),
        ("inputs", 8, _F.TYPE_MESSAGE, "IOInfo", False),
        ("outputs", 9, _F.TYPE_MESSAGE, "IOInfo", False),
        ("attr", 10, _F.TYPE_MESSAGE, "AttributeProto", True),
    ]
    io_info: list[_Field] = [(n, i, _F.TYPE_STRING, "", False)
                             for i, n in enumerate(("values", "shapes", "types"), start=1)]
    tensor: list[_Field] = [(n, i, u64, "", False) for i, n in enumerate(
        ("tensor_id", "storage_id", "offset", "num_elem", "elem_bytes"), start=1)]
    tensor.append(("device", 6, _F.TYPE_STRING, "", False))
    return [("AttributeProto", attr), *lists,
            ("GlobalMetadata", [("version", 1, _F.TYPE_STRING, "", False),
                                ("attr", 2, _F.TYPE_MESSAGE, "AttributeProto", True)]),
            ("Node", node), ("IOInfo", io_info), ("Tensor", tensor)]


def file_descriptor_proto() -> descriptor_pb2.FileDescriptorProto:
    """A fresh ``FileDescriptorProto`` of et_def.proto (what ``protoc`` would have produced)."""
    fdp = descriptor_pb2.FileDescriptorProto(name=FILE_NAME, package=PACKAGE, syntax="proto3")
    for name, fields in _messages():
        msg = fdp.message_type.add(name=name)
        if name == "AttributeProto":
            msg.oneof_decl.add(name="value")
        for fname, number, ftype, type_name, repeated in fields:
            field = msg.field.add(name=fname, number=number, type=ftype,  # type: ignore[arg-type]
                                  label=_F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL)
            if type_name:
                field.type_name = f".{PACKAGE}.{type_name}"
            if name == "AttributeProto" and number >= 3:  # every value kind is in the oneof
                field.oneof_index = 0
    for name, values in (("NodeType", _NODE_TYPES), ("CollectiveCommType", _COLLECTIVE_TYPES)):
        enum = fdp.enum_type.add(name=name)
        for number, value in enumerate(values):
            enum.value.add(name=value, number=number)
    return fdp


_POOL = descriptor_pool.DescriptorPool()
_FILE = _POOL.Add(file_descriptor_proto())


def _message(name: str) -> Any:
    return message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f"{PACKAGE}.{name}"))


AttributeProto = _message("AttributeProto")
DoubleList = _message("DoubleList")
FloatList = _message("FloatList")
Int32List = _message("Int32List")
Int64List = _message("Int64List")
Uint32List = _message("Uint32List")
Uint64List = _message("Uint64List")
Sint32List = _message("Sint32List")
Sint64List = _message("Sint64List")
Fixed32List = _message("Fixed32List")
Fixed64List = _message("Fixed64List")
Sfixed32List = _message("Sfixed32List")
Sfixed64List = _message("Sfixed64List")
BoolList = _message("BoolList")
StringList = _message("StringList")
BytesList = _message("BytesList")
GlobalMetadata = _message("GlobalMetadata")
Node = _message("Node")
IOInfo = _message("IOInfo")
Tensor = _message("Tensor")

NodeType = EnumTypeWrapper(_POOL.FindEnumTypeByName(f"{PACKAGE}.NodeType"))
CollectiveCommType = EnumTypeWrapper(_POOL.FindEnumTypeByName(f"{PACKAGE}.CollectiveCommType"))

# the enum values as module constants, as protoc's generated module has them
INVALID_NODE: int = NodeType.Value("INVALID_NODE")
METADATA_NODE: int = NodeType.Value("METADATA_NODE")
MEM_LOAD_NODE: int = NodeType.Value("MEM_LOAD_NODE")
MEM_STORE_NODE: int = NodeType.Value("MEM_STORE_NODE")
COMP_NODE: int = NodeType.Value("COMP_NODE")
COMM_SEND_NODE: int = NodeType.Value("COMM_SEND_NODE")
COMM_RECV_NODE: int = NodeType.Value("COMM_RECV_NODE")
COMM_COLL_NODE: int = NodeType.Value("COMM_COLL_NODE")
ALL_REDUCE: int = CollectiveCommType.Value("ALL_REDUCE")
REDUCE: int = CollectiveCommType.Value("REDUCE")
ALL_GATHER: int = CollectiveCommType.Value("ALL_GATHER")
GATHER: int = CollectiveCommType.Value("GATHER")
SCATTER: int = CollectiveCommType.Value("SCATTER")
BROADCAST: int = CollectiveCommType.Value("BROADCAST")
ALL_TO_ALL: int = CollectiveCommType.Value("ALL_TO_ALL")
REDUCE_SCATTER: int = CollectiveCommType.Value("REDUCE_SCATTER")
REDUCE_SCATTER_BLOCK: int = CollectiveCommType.Value("REDUCE_SCATTER_BLOCK")
BARRIER: int = CollectiveCommType.Value("BARRIER")
