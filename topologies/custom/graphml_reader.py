"""Custom topologies from GraphML (:func:`from_graphml`).

GraphML is parsed with :mod:`defusedxml`, which refuses entity-expansion ("billion laughs") and
external-entity documents; see :func:`from_graphml` for the attributes read.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, cast

from topologies.base import Topology, TopologyError, shortest_path_router
from topologies.custom.common import (
    DEFAULT_LINK_KIND,
    checked_bandwidth,
    checked_time,
    router_state,
)
from topologies.fattree import ecmp_router
from topologies.meta import CustomLayout

if TYPE_CHECKING:
    from xml.etree.ElementTree import Element

__all__ = ["from_graphml"]


def from_graphml(path: str | os.PathLike[str], *, routing: str = "shortest_path",
                 seed: int = 0) -> Topology:
    """A topology from a GraphML file, parsed with :mod:`defusedxml` (entity expansion and
    external entities are refused with a :class:`TopologyError`).

    Node attribute ``kind``: ``npu`` (the default) or ``switch``; switches may carry
    ``latency`` (forwarding latency; ignored on NPUs). Edge attributes: ``bandwidth``
    (required; a number in GB/s = bytes/ns or a unit string such as ``"400 Gb/s"``),
    ``latency`` (a number in ns or a unit string; default 0) and ``kind`` (default
    ``"link"``). Undirected edges (the graph's
    ``edgedefault``, overridable per edge by ``directed``) become duplex links, directed edges
    one link. Attribute defaults declared on ``<key>`` apply; other attributes are ignored.
    NPUs get ids 0..N-1 in natural sorted order of their node ids (digit runs compare as
    numbers, so ``gpu2`` precedes ``gpu10``), switches follow in the same order;
    ``layout.names`` maps node ids to device ids. ``routing`` is ``shortest_path`` or
    ``ecmp`` (hashed with ``seed``).
    """
    source = os.fspath(path)
    if routing not in ("shortest_path", "ecmp"):
        raise TopologyError(f"{source}: routing: unknown routing {routing!r}; expected "
                            f"shortest_path or ecmp")
    try:
        data = Path(source).read_bytes()
    except OSError as err:
        raise TopologyError(f"{source}: cannot read: {err}") from None
    # Imported here: the XML stack is only needed when a GraphML file is read, and
    # topologies is imported on every start-up.
    from xml.etree.ElementTree import ParseError

    import defusedxml
    import defusedxml.ElementTree

    try:
        root = defusedxml.ElementTree.fromstring(data)
    except defusedxml.DefusedXmlException as err:
        raise TopologyError(f"{source}: refused unsafe XML ({type(err).__name__}: {err})"
                            ) from None
    except ParseError as err:
        raise TopologyError(f"{source}: not well-formed XML: {err}") from None
    try:
        return _graphml_topology(root, source, routing, seed)
    except TopologyError as err:
        raise TopologyError(f"{source}: {err}") from None


def _local(tag: str) -> str:
    """An element's tag without its XML namespace."""
    return tag.rsplit("}", 1)[-1]


def _graphml_topology(root: Element, source: str, routing: str, seed: int) -> Topology:
    if _local(root.tag) != "graphml":
        raise TopologyError(f"root element is <{_local(root.tag)}>, not <graphml>")
    keys: dict[str, tuple[str, str, str | None]] = {}  # key id -> (for, attr name, default)
    for key in root:
        if _local(key.tag) != "key":
            continue
        key_id = key.get("id")
        if not key_id:
            raise TopologyError("a <key> has no id")
        default = next((c.text or "" for c in key if _local(c.tag) == "default"), None)
        keys[key_id] = (key.get("for", "all"), key.get("attr.name") or key_id, default)
    graphs = [g for g in root if _local(g.tag) == "graph"]
    if len(graphs) != 1:
        raise TopologyError(f"expected one <graph>, found {len(graphs)}")
    graph = graphs[0]
    edgedefault = graph.get("edgedefault", "undirected")
    if edgedefault not in ("directed", "undirected"):
        raise TopologyError(f"<graph edgedefault={edgedefault!r}>: expected 'directed' or "
                            "'undirected'")
    undirected = edgedefault == "undirected"

    def attributes(element: Element, domain: str, what: str) -> dict[str, str]:
        values: dict[str, str] = {}
        for wanted in ("all", domain):  # a key for this domain beats one "for all"
            values.update({name: default for scope, name, default in keys.values()
                           if scope == wanted and default is not None})
        for child in element:
            tag = _local(child.tag)
            if tag == "graph":
                raise TopologyError(f"{what}: nested graphs are not supported")
            if tag != "data":
                continue
            key_id = child.get("key", "")
            if key_id not in keys:
                raise TopologyError(f"{what}: <data> refers to undeclared key {key_id!r}")
            values[keys[key_id][1]] = (child.text or "").strip()
        return values

    nodes: dict[str, dict[str, str]] = {}
    edges: list[tuple[str, Element]] = []
    for element in graph:
        tag = _local(element.tag)
        if tag == "node":
            node_id = element.get("id")
            if node_id is None:
                raise TopologyError(f"node {len(nodes)}: has no id")
            if node_id in nodes:
                raise TopologyError(f"node {node_id!r}: declared twice")
            nodes[node_id] = attributes(element, "node", f"node {node_id!r}")
        elif tag == "edge":
            edges.append((f"edge {len(edges)}", element))
        elif tag == "hyperedge":
            raise TopologyError("hyperedges are not supported")

    npus: list[str] = []
    switches: list[str] = []
    for node_id in sorted(nodes, key=_natural_key):
        kind = nodes[node_id].get("kind", "npu").strip().lower()
        if kind not in ("npu", "switch"):
            raise TopologyError(f"node {node_id!r}: unknown kind {kind!r}; expected npu or "
                                f"switch")
        (npus if kind == "npu" else switches).append(node_id)
    if not npus:
        raise TopologyError(f"no NPU nodes (kind 'npu') among {len(nodes)} nodes")

    router = ecmp_router if routing == "ecmp" else shortest_path_router
    topo = Topology(Path(source).stem or "graphml", len(npus), router)
    names = {node_id: device for device, node_id in enumerate(npus)}
    for node_id in switches:
        latency = checked_time(nodes[node_id].get("latency", "0"), f"node {node_id!r}: latency")
        names[node_id] = topo.add_switch(latency)

    for label, element in edges:
        ends = element.get("source"), element.get("target")
        what = f"{label} ({ends[0]} -> {ends[1]})" if element.get("id") is None else (
            f"{label} {element.get('id')!r} ({ends[0]} -> {ends[1]})")
        for end in ends:
            if end is None:
                raise TopologyError(f"{what}: needs both source and target")
            if end not in names:
                raise TopologyError(f"{what}: dangling endpoint {end!r}, not a declared node")
        src, dst = names[cast(str, ends[0])], names[cast(str, ends[1])]
        if src == dst:
            raise TopologyError(f"{what}: an edge from a node to itself")
        values = attributes(element, "edge", what)
        if not values.get("bandwidth"):
            raise TopologyError(f"{what}: missing bandwidth")
        bandwidth = checked_bandwidth(_number_or_text(values["bandwidth"]), f"{what}: bandwidth")
        latency = checked_time(_number_or_text(values.get("latency", "0") or "0"),
                               f"{what}: latency")
        kind = values.get("kind") or DEFAULT_LINK_KIND
        directed = element.get("directed")
        if directed is not None and directed not in ("true", "false"):
            raise TopologyError(f"{what}: directed={directed!r}; expected 'true' or 'false'")
        duplex = undirected if directed is None else directed == "false"
        if duplex:
            topo.add_duplex(src, dst, bandwidth, latency, kind)
        else:
            topo.add_link(src, dst, bandwidth, latency, kind)
    topo.layout = CustomLayout(source, routing, names)
    topo.router_state = router_state(routing, seed, {})
    return topo


def _natural_key(text: str) -> tuple[tuple[tuple[int, int, str], ...], str]:
    parts = re.split(r"(\d+)", text)
    return (tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts if p), text)


def _number_or_text(text: str) -> float | str:
    """GraphML data is text: a plain number stays a number (in the internal unit)."""
    try:
        return float(text)
    except ValueError:
        return text

