"""Custom topologies from a YAML edge list (:func:`from_yaml`, :func:`from_dict`).

YAML format (quantities take units, see :mod:`des.core.units`; a bare number is bytes/ns = GB/s for
bandwidth and ns for latency)::

    name: my-fabric
    npus: 4                    # NPUs named 0..3 (or give a `nodes:` list, below)
    switches: [{id: sw0, latency: 100 ns}]
    links:
      - {src: 0, dst: sw0, bandwidth: 100 GB/s, latency: 500 ns, duplex: true, kind: nic}
    routing: shortest_path     # or ecmp, or explicit
    routes:                    # only with routing: explicit
      - {src: 0, dst: 3, path: [0, sw0, 3]}

* Device names are strings or integers and are compared as text, so ``0`` and ``"0"`` are the
  same device. ``npus: N`` names the NPUs ``0..N-1``. Instead (or as well, if the counts agree)
  a ``nodes:`` list may name every device: each entry a bare name (an NPU) or a mapping
  ``{id, kind: npu|switch, latency}``. NPUs get device ids ``0..N-1`` in the order they are
  listed; switches (from ``nodes`` first, then ``switches``) follow in the order listed.
  ``topo.layout.names`` (a :class:`~topologies.meta.CustomLayout`) maps each name as written
  in the file to its device id.
* Links: ``src``, ``dst`` and ``bandwidth`` are required; ``latency`` defaults to 0,
  ``duplex`` to true (one directed link each way) and ``kind`` to ``"link"``.
* Routing: ``shortest_path`` (the default) is
  :func:`~topologies.base.shortest_path_router` (fewest hops, deterministic ties); ``ecmp`` is
  :func:`~topologies.fattree.ecmp_router` hashed with the optional top-level ``seed``;
  ``explicit`` uses the listed device paths verbatim (between devices joined by parallel links,
  the lowest-id link that is up). Routes are directional: a route 0 -> 3 says nothing about
  3 -> 0. Pairs without an explicit route, and explicit routes broken by a failed link, fall
  back to the shortest path over the surviving links.

Every error is a :class:`~topologies.base.TopologyError` that names the key path, e.g.
``links[3].dst: unknown device 'sw9'; known: 0..3, sw0``.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from des.core.schema import SchemaError
from des.core.yaml_safe import YamlError, is_file, load_yaml, read_text
from topologies.base import Topology, TopologyError, shortest_path_router
from topologies.custom.common import (
    DEFAULT_LINK_KIND,
    checked_bandwidth,
    checked_time,
    router_state,
)
from topologies.fattree import ecmp_router
from topologies.meta import CustomLayout
from topologies.routing_state import ExplicitRouting

__all__ = ["explicit_router", "from_dict", "from_yaml"]

TOP_KEYS = ("name", "description", "npus", "nodes", "switches", "links", "routing", "routes",
            "seed")
NODE_KEYS = ("id", "kind", "latency")
SWITCH_KEYS = ("id", "latency", "kind")
LINK_KEYS = ("src", "dst", "bandwidth", "latency", "duplex", "kind")
ROUTE_KEYS = ("src", "dst", "path")
ROUTINGS = ("shortest_path", "ecmp", "explicit")


def from_yaml(path_or_text: str | os.PathLike[str]) -> Topology:
    """A topology from a YAML file (a path, or a one-line string naming an existing file) or
    from YAML text; see the module docstring for the format. Loaded safely (no Python objects)
    and refusing duplicate keys."""
    source = ""
    if isinstance(path_or_text, os.PathLike) or (
            "\n" not in path_or_text
            and (is_file(path_or_text) or path_or_text.endswith((".yaml", ".yml")))):
        path = Path(path_or_text)
        source = str(path)
        try:
            text = read_text(path, "topology file")
        except SchemaError as err:
            raise TopologyError(str(err)) from None
    else:
        text = path_or_text
    try:  # des's one safe loader: no Python objects, bounded work, no duplicate keys
        data = load_yaml(text, source or "topology")
    except YamlError as err:
        raise TopologyError(str(err)) from None
    return from_dict(data, source=source)


def from_dict(data: Any, source: str = "") -> Topology:
    """A topology from parsed YAML (a mapping); ``source`` (a file name) prefixes errors and
    names the topology when the data has no ``name``. See the module docstring."""
    try:
        return _Builder(source).build(data)
    except TopologyError as err:
        msg = str(err)
        if source and not msg.startswith(source):
            msg = f"{source}: {msg}"
        raise TopologyError(msg) from None


class _Builder:
    """Reads one YAML topology; every check names its key path."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.keys: dict[str, int] = {}  # name as text -> device id
        self.names: dict[Any, int] = {}  # name as written -> device id
        self.npu_range: int | None = None  # set when NPUs are named 0..N-1 by `npus: N`

    # -------------------------------------------------------------- top level
    def build(self, data: Any) -> Topology:
        top = _mapping(data, "topology", TOP_KEYS)
        name = top.get("name", Path(self.source).stem if self.source else "custom")
        if not isinstance(name, str) or not name:
            raise TopologyError(f"name: expected a non-empty string, got {name!r}")
        if "description" in top and not isinstance(top["description"], str):
            raise TopologyError(f"description: expected a string, got {top['description']!r}")
        routing = top.get("routing", "shortest_path")
        if routing not in ROUTINGS:
            raise TopologyError(f"routing: unknown routing {routing!r}; expected one of "
                                f"{', '.join(ROUTINGS)}")
        seed = top.get("seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TopologyError(f"seed: expected an integer, got {seed!r}")

        npus, switches = self._devices(top)
        router = {"shortest_path": shortest_path_router, "ecmp": ecmp_router,
                  "explicit": explicit_router}[routing]
        topo = Topology(name, len(npus), router)
        for device, npu_name in enumerate(npus):
            self._register(npu_name, device, "npus")
        for where, switch_name, latency, kind in switches:
            self._register(switch_name, topo.add_switch(latency, kind), where)

        if "links" not in top:
            raise TopologyError(f"links: required key is missing (allowed keys: "
                                f"{', '.join(TOP_KEYS)})")
        for i, item in enumerate(_sequence(top["links"], "links")):
            self._link(topo, item, f"links[{i}]")

        explicit: dict[tuple[int, int], tuple[int, ...]] = {}
        if "routes" in top:
            if routing != "explicit":
                raise TopologyError(f"routes: only allowed with routing: explicit (routing is "
                                    f"{routing!r})")
            for i, item in enumerate(_sequence(top["routes"], "routes")):
                pair, path = self._route(topo, item, f"routes[{i}]")
                if pair in explicit:
                    raise TopologyError(f"routes[{i}]: a second route from {item['src']!r} to "
                                        f"{item['dst']!r}")
                explicit[pair] = path
        topo.layout = CustomLayout(self.source, routing, dict(self.names),
                                   top.get("description", ""))
        topo.router_state = router_state(routing, seed, explicit)
        return topo

    # -------------------------------------------------------------- devices
    def _devices(self, top: Mapping[str, Any]
                 ) -> tuple[list[Any], list[tuple[str, Any, float, str]]]:
        """NPU names in device order, and (key path, name, latency, kind) per switch."""
        npus: list[Any] = []
        switches: list[tuple[str, Any, float, str]] = []
        seen: dict[str, str] = {}

        def claim(name: Any, where: str) -> None:
            text = _name_text(name, where)
            if text in seen:
                raise TopologyError(f"{where}: duplicate device id {name!r} (already "
                                    f"{seen[text]})")
            seen[text] = where

        count = None
        if "npus" in top:
            count = top["npus"]
            if isinstance(count, bool) or not isinstance(count, int) or count < 1:
                raise TopologyError(f"npus: expected a positive integer, got {count!r}")
        if "nodes" in top:
            for i, item in enumerate(_sequence(top["nodes"], "nodes")):
                where = f"nodes[{i}]"
                if isinstance(item, Mapping):
                    entry = _mapping(item, where, NODE_KEYS)
                    if "id" not in entry:
                        raise TopologyError(f"{where}.id: required key is missing")
                    kind = entry.get("kind", "npu")
                    if kind not in ("npu", "switch"):
                        raise TopologyError(f"{where}.kind: unknown kind {kind!r}; expected "
                                            f"npu or switch")
                    node_name = entry["id"]
                    claim(node_name, f"{where}.id")
                    if kind == "npu":
                        if "latency" in entry:
                            raise TopologyError(f"{where}.latency: only switches have a "
                                                f"forwarding latency")
                        npus.append(node_name)
                    else:
                        latency = checked_time(entry.get("latency", 0), f"{where}.latency")
                        switches.append((where, node_name, latency, "switch"))
                else:
                    claim(item, where)
                    npus.append(item)
            if count is not None and count != len(npus):
                raise TopologyError(f"npus: {count} disagrees with the {len(npus)} NPU "
                                    f"entries of nodes")
        elif count is not None:
            npus = list(range(count))
            self.npu_range = count
            for device in npus:
                claim(device, f"NPU {device}")
        if not npus:
            raise TopologyError("npus: required key is missing (give npus: N, or a nodes: list "
                                "with at least one NPU)")
        for i, item in enumerate(_sequence(top.get("switches", []), "switches")):
            where = f"switches[{i}]"
            if isinstance(item, Mapping):
                entry = _mapping(item, where, SWITCH_KEYS)
                if "id" not in entry:
                    raise TopologyError(f"{where}.id: required key is missing")
                kind = entry.get("kind", "switch")
                if not isinstance(kind, str) or not kind:
                    raise TopologyError(f"{where}.kind: expected a non-empty string, got "
                                        f"{kind!r}")
                claim(entry["id"], f"{where}.id")
                switches.append((where, entry["id"], checked_time(entry.get("latency", 0),
                                                           f"{where}.latency"), kind))
            else:
                claim(item, where)
                switches.append((where, item, 0.0, "switch"))
        return npus, switches

    def _register(self, name: Any, device: int, where: str) -> None:
        self.keys[_name_text(name, where)] = device
        self.names[name] = device

    def _device(self, name: Any, where: str) -> int:
        text = _name_text(name, where)
        if text not in self.keys:
            raise TopologyError(f"{where}: unknown device {name!r}; known: {self._known()}")
        return self.keys[text]

    def _known(self) -> str:
        names = [str(n) for n in self.names]
        if self.npu_range is not None:
            names = [f"0..{self.npu_range - 1}" if self.npu_range > 1 else "0",
                     *names[self.npu_range:]]
        shown = ", ".join(names[:30])
        return shown + (f" and {len(names) - 30} more" if len(names) > 30 else "")

    # -------------------------------------------------------------- links and routes
    def _link(self, topo: Topology, item: Any, where: str) -> None:
        entry = _mapping(item, where, LINK_KEYS)
        for key in ("src", "dst", "bandwidth"):
            if key not in entry:
                raise TopologyError(f"{where}.{key}: required key is missing")
        src = self._device(entry["src"], f"{where}.src")
        dst = self._device(entry["dst"], f"{where}.dst")
        if src == dst:
            raise TopologyError(f"{where}: a link from {entry['src']!r} to itself")
        bandwidth = checked_bandwidth(entry["bandwidth"], f"{where}.bandwidth")
        latency = checked_time(entry.get("latency", 0), f"{where}.latency")
        duplex = entry.get("duplex", True)
        if not isinstance(duplex, bool):
            raise TopologyError(f"{where}.duplex: expected true or false, got {duplex!r}")
        kind = entry.get("kind", DEFAULT_LINK_KIND)
        if not isinstance(kind, str) or not kind:
            raise TopologyError(f"{where}.kind: expected a non-empty string, got {kind!r}")
        if duplex:
            topo.add_duplex(src, dst, bandwidth, latency, kind)
        else:
            topo.add_link(src, dst, bandwidth, latency, kind)

    def _route(self, topo: Topology, item: Any, where: str
               ) -> tuple[tuple[int, int], tuple[int, ...]]:
        entry = _mapping(item, where, ROUTE_KEYS)
        for key in ROUTE_KEYS:
            if key not in entry:
                raise TopologyError(f"{where}.{key}: required key is missing")
        ends = []
        for key in ("src", "dst"):
            device = self._device(entry[key], f"{where}.{key}")
            if topo.is_switch(device):
                raise TopologyError(f"{where}.{key}: {entry[key]!r} is a switch; routes join "
                                    f"NPUs")
            ends.append(device)
        src, dst = ends
        if src == dst:
            raise TopologyError(f"{where}: src and dst are both {entry['src']!r}")
        raw = _sequence(entry["path"], f"{where}.path")
        path = tuple(self._device(name, f"{where}.path[{i}]") for i, name in enumerate(raw))
        if len(path) < 2:
            raise TopologyError(f"{where}.path: needs at least two devices, got {list(raw)!r}")
        if path[0] != src:
            raise TopologyError(f"{where}.path: starts at {raw[0]!r}, not at src "
                                f"{entry['src']!r}")
        if path[-1] != dst:
            raise TopologyError(f"{where}.path: ends at {raw[-1]!r}, not at dst "
                                f"{entry['dst']!r}")
        if len(set(path)) != len(path):
            raise TopologyError(f"{where}.path: visits a device twice: {list(raw)!r}")
        for i in range(len(path) - 1):
            if not topo.links_between(path[i], path[i + 1], up_only=False):
                raise TopologyError(f"{where}.path[{i}]->path[{i + 1}]: no link from "
                                    f"{raw[i]!r} to {raw[i + 1]!r}")
        return (src, dst), path


def explicit_router(topo: Topology, src: int, dst: int, flow: int = 0) -> tuple[int, ...]:
    """The device path in the topology's :class:`~topologies.routing_state.ExplicitRouting`
    ``routes[(src, dst)]`` as link ids (the lowest-id up link between each pair); pairs without
    one, or whose path has a hop with no up link, take
    :func:`~topologies.base.shortest_path_router`."""
    state = topo.router_state
    devices = state.routes.get((src, dst)) if isinstance(state, ExplicitRouting) else None
    if devices is not None:
        path: list[int] = []
        for a, b in itertools.pairwise(devices):
            up = topo.links_between(a, b)
            if not up:
                break
            path.append(min(link.id for link in up))
        else:
            return tuple(path)
    return shortest_path_router(topo, src, dst, flow)


def _mapping(data: Any, where: str, allowed: Sequence[str]) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise TopologyError(f"{where}: expected a mapping, got {type(data).__name__} "
                            f"{data!r}")
    for key in data:
        if key not in allowed:
            prefix = "" if where == "topology" else f"{where}."
            raise TopologyError(f"{prefix}{key}: unknown key; allowed keys: "
                                f"{', '.join(allowed)}")
    return data


def _sequence(data: Any, where: str) -> Sequence[Any]:
    if isinstance(data, str) or not isinstance(data, Sequence):
        raise TopologyError(f"{where}: expected a list, got {type(data).__name__} {data!r}")
    return data


def _name_text(name: Any, where: str) -> str:
    if isinstance(name, bool) or not isinstance(name, str | int) or name == "":
        raise TopologyError(f"{where}: a device id must be a name or an integer, got "
                            f"{name!r}")
    return str(name)

