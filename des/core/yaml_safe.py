"""Reading user files with bounded work: UTF-8 text, YAML and JSON, one way for every input.

Every YAML input of des (scenarios, sweeps, custom topologies, GPU and model presets,
measurement files) goes through :func:`load_yaml`, and every user file is read with
:func:`read_text`. Besides building no Python objects (a ``yaml.SafeLoader``), the loader
refuses, with a :class:`YamlError` naming the source, the line and what is allowed:

* a key given twice in one mapping (``<<`` merge keys may be overridden, as YAML intends);
* nesting deeper than :attr:`YamlLimits.max_depth`, counted through aliases too (a deeper
  document would exhaust Python's recursion in whatever walks it);
* more than :attr:`YamlLimits.max_nodes` values once aliases are expanded (a ten-line
  "billion laughs" file names 10^9 values: it is refused after composing its few nodes, before
  anything walks it) and an alias that refers to itself (a structure that never ends);
* integers of more than :attr:`YamlLimits.max_int_digits` digits (Python refuses to convert
  more than 4300 digits, and no figure des reads needs more than a few dozen).

:func:`read_text` refuses files that are not UTF-8 or are larger than
:attr:`YamlLimits.max_bytes`, naming the file and the offending byte. The limits are plain
fields: pass your own :class:`YamlLimits` to raise them. :func:`load_json` applies the same
limits to JSON inputs (HuggingFace configs).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from des.core.schema import SchemaError, short

__all__ = ["LIMITS", "FileError", "YamlError", "YamlLimits", "is_file", "load_json",
           "load_yaml", "read_text"]


@dataclass(frozen=True)
class YamlLimits:
    """Bounds on one input document (see the module doc)."""

    max_depth: int = 100
    max_nodes: int = 2_000_000
    max_int_digits: int = 100
    max_bytes: int = 16 * 1024 * 1024


#: The limits used when none are given.
LIMITS = YamlLimits()


class FileError(SchemaError):
    """A user file that cannot be read as text (missing, unreadable, not UTF-8, too large)."""


class YamlError(SchemaError):
    """A YAML (or JSON) document that is not valid or exceeds a :class:`YamlLimits` bound."""


def is_file(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` names a readable regular file; False, not an OSError, for a name
    the system refuses (too long, bad characters): user input is tried as a path first."""
    try:
        return Path(path).is_file()
    except (OSError, ValueError):
        return False


def read_text(path: str | os.PathLike[str] | Any, what: str = "file",
              limits: YamlLimits = LIMITS) -> str:
    """The UTF-8 text of ``path`` (a path or an ``importlib`` Traversable); every failure is a
    :class:`FileError` naming the file and what went wrong."""
    name = os.fspath(path) if isinstance(path, (str, os.PathLike)) else str(path)
    try:
        if isinstance(path, (str, os.PathLike)):
            size = Path(path).stat().st_size
            if size > limits.max_bytes:
                raise FileError(f"{name}: {what} is {size:,} bytes; at most "
                                f"{limits.max_bytes:,} are read (YamlLimits.max_bytes)")
        data = path.read_bytes() if hasattr(path, "read_bytes") else Path(path).read_bytes()
    except FileNotFoundError:
        raise FileError(f"{name}: cannot read the {what}: no such file") from None
    except IsADirectoryError:
        raise FileError(f"{name}: is a folder, not a {what}") from None
    except OSError as err:
        raise FileError(f"{name}: cannot read the {what}: {err.strerror or err}") from None
    if len(data) > limits.max_bytes:
        raise FileError(f"{name}: {what} is {len(data):,} bytes; at most "
                        f"{limits.max_bytes:,} are read (YamlLimits.max_bytes)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise FileError(f"{name}: not UTF-8 text: byte 0x{data[err.start]:02x} at offset "
                        f"{err.start} (line {line}); save the {what} as UTF-8") from None


# ---------------------------------------------------------------------- YAML
_MERGE_TAG = "tag:yaml.org,2002:merge"


class _Loader(yaml.SafeLoader):
    """A SafeLoader that counts depth while composing, refuses duplicate keys and long
    integers while constructing (the limits are set per instance)."""

    limits: YamlLimits = LIMITS
    depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            return super().compose_node(parent, index)
        self.depth += 1
        if self.depth > self.limits.max_depth:
            mark = self.peek_event().start_mark
            raise _Refused(f"nesting deeper than {self.limits.max_depth} levels "
                           "(YamlLimits.max_depth)", mark)
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def fetch_flow_collection_start(self, token_class: Any) -> None:
        # the scanner's cost grows with the square of the open brackets: stop it early
        if self.flow_level >= self.limits.max_depth:
            raise _Refused(f"nesting deeper than {self.limits.max_depth} levels "
                           "(YamlLimits.max_depth)", self.get_mark())
        super().fetch_flow_collection_start(token_class)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, Any] = {}
            for key_node, _ in node.value:
                if key_node.tag == _MERGE_TAG:
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.get(key)
                    if first is not None:
                        raise _Refused(f"duplicate key {short(key)} (first given on line "
                                       f"{first.line + 1}); give each key once",
                                       key_node.start_mark)
                    seen[key] = key_node.start_mark
                except TypeError:  # unhashable: construct_mapping names it
                    pass
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        digits = sum(ch.isalnum() for ch in str(node.value))
        if digits > self.limits.max_int_digits:
            raise _Refused(f"an integer of {digits} digits; at most "
                           f"{self.limits.max_int_digits} are read (YamlLimits.max_int_digits)",
                           node.start_mark)
        return super().construct_yaml_int(node)


_Loader.add_constructor("tag:yaml.org,2002:int", _Loader.construct_yaml_int)


class _Refused(Exception):
    """A limit or rule broken at ``mark`` (turned into a YamlError with the source)."""

    def __init__(self, message: str, mark: Any) -> None:
        super().__init__(message)
        self.mark = mark


def _check_expansion(root: yaml.Node, limits: YamlLimits) -> None:
    """Refuse a composed document whose expansion (aliases followed) has more than
    ``max_nodes`` values, is deeper than ``max_depth`` or refers to itself. Work is linear
    in the distinct nodes: each is sized once (iteratively, no recursion)."""
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    open_: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            kids = _children(node)
            total = 1 + sum(size[id(k)] for k in kids)
            deepest = 1 + max((depth[id(k)] for k in kids), default=0)
            open_.discard(key)
            if total > limits.max_nodes:
                raise _Refused(f"more than {limits.max_nodes:,} values once aliases are "
                               "expanded (YamlLimits.max_nodes); is it an alias bomb?",
                               node.start_mark)
            if deepest > limits.max_depth:
                raise _Refused(f"nesting deeper than {limits.max_depth} levels once aliases "
                               "are expanded (YamlLimits.max_depth)", node.start_mark)
            size[key], depth[key] = total, deepest
            continue
        if key in size:
            continue
        if key in open_:
            raise _Refused("an alias refers to the structure that contains it (a value "
                           "that never ends)", node.start_mark)
        open_.add(key)
        stack.append((node, True))
        for kid in _children(node):
            if id(kid) in open_:
                raise _Refused("an alias refers to the structure that contains it (a value "
                               "that never ends)", kid.start_mark)
            if id(kid) not in size:
                stack.append((kid, False))


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def load_yaml(text: str, source: str = "input", limits: YamlLimits = LIMITS) -> Any:
    """The value of one YAML document, loaded safely with ``limits`` (see the module doc);
    a :class:`YamlError` starting with ``source`` and the line otherwise."""
    try:
        loader = _Loader(text)
    except yaml.reader.ReaderError as err:  # control characters are refused up front
        line = text.count("\n", 0, err.position) + 1
        raise YamlError(f"{source}, line {line}: not valid YAML: character "
                        f"#x{err.character:04x} is not allowed ({err.reason})") from None
    loader.limits = limits
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node, limits)
        return loader.construct_document(node)
    except _Refused as err:
        raise YamlError(f"{source}{_where(err.mark)}: {err}") from None
    except yaml.YAMLError as err:
        raise YamlError(f"{source}: not valid YAML: {_describe(err)}") from None
    except (RecursionError, ValueError) as err:  # defensive: limits should come first
        raise YamlError(f"{source}: cannot read the YAML: {short(str(err))}") from None
    finally:
        loader.dispose()


def _where(mark: Any) -> str:
    return f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""


def _describe(err: yaml.YAMLError) -> str:
    """A YAML error in one line: its problem and where (never the whole input)."""
    if isinstance(err, yaml.MarkedYAMLError):
        parts = [p for p in (err.context, err.problem) if p]
        mark = err.problem_mark or err.context_mark
        return f"{'; '.join(parts)}{_where(mark)}"
    return short(str(err))


# ---------------------------------------------------------------------- JSON
def load_json(text: str, source: str = "input", limits: YamlLimits = LIMITS) -> Any:
    """A JSON document with the same bounds as :func:`load_yaml` (duplicate keys, nesting,
    long integers); a :class:`YamlError` starting with ``source`` otherwise."""
    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in items:
            if key in out:
                raise _Refused(f"duplicate key {short(key)}; give each key once", None)
            out[key] = value
        return out

    def integer(digits: str) -> int:
        if len(digits.lstrip("-")) > limits.max_int_digits:
            raise _Refused(f"an integer of {len(digits.lstrip('-'))} digits; at most "
                           f"{limits.max_int_digits} are read (YamlLimits.max_int_digits)",
                           None)
        return int(digits)

    depth = _json_depth(text)
    if depth > limits.max_depth:
        raise YamlError(f"{source}: nesting deeper than {limits.max_depth} levels "
                        "(YamlLimits.max_depth)")
    try:
        return json.loads(text, object_pairs_hook=pairs, parse_int=integer)
    except _Refused as err:
        raise YamlError(f"{source}: {err}") from None
    except json.JSONDecodeError as err:
        raise YamlError(f"{source}: not valid JSON: {err.msg} at line {err.lineno}, column "
                        f"{err.colno}") from None
    except (RecursionError, ValueError) as err:
        raise YamlError(f"{source}: cannot read the JSON: {short(str(err))}") from None


def _json_depth(text: str) -> int:
    """The deepest bracket nesting of a JSON text (brackets inside strings skipped)."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest
