"""The built-in topology kinds, registered like any user's, and the short spec strings of the CLI.

Every kind, built-in or not, is a builder in the registry of :mod:`topologies.registry`, and
:func:`build` (re-exported from there) is the one dispatch point: scenario files (after unit
conversion), short specs and code all end there. Short specs of the built-in kinds: ``ring:8``
(``ring:8:uni``), ``fc:8``, ``switch:16``, ``mesh2d:4x4``,
``torus2d:4x8``, ``torus3d:4x4x4``, ``fattree:k=4``, ``leafspine:leaves=4,hosts=8,spines=2``,
``superpod:nodes=4``, ``hier:fc8,switch16,ring4`` (a dimension may carry its own bandwidth in
GB/s: ``fc8@150``), or a path to a YAML edge list or GraphML file. Numbers are in internal units:
bandwidth bytes/ns (= GB/s), latency ns. A registered kind without a reader of its own takes
``key=value`` pairs: ``dragonfly:groups=4,routers_per_group=4``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from des.core import schema
from des.core.schema import SchemaError
from topologies.base import Topology, TopologyError
from topologies.builders import fully_connected, ring, switch
from topologies.registry import (
    PARAM_TYPES,
    TopologyKind,
    build,
    get_topology_kind,
    register_topology,
    topology_kinds,
)

ALIASES = {"fc": "fully_connected"}  # dimension kinds of hierarchical specs

# ---------------------------------------------------------------------- short-spec readers


def _count(rest: str, text: str, bandwidth: float, latency: float) -> dict[str, Any]:
    count, _, flag = rest.partition(":")
    params: dict[str, Any] = {"bandwidth": bandwidth, "latency": latency,
                              "npus": _int(count, text)}
    if flag:
        if not text.lower().startswith("ring:"):
            raise TopologyError(f"{text!r}: only ring takes a flag (ring:8:uni)")
        if flag not in ("uni", "bi"):
            raise TopologyError(f"{text!r}: ring flag must be 'uni' or 'bi', got {flag!r}")
        params["bidirectional"] = flag == "bi"
    return params


def _sizes(want: int) -> Any:
    def read(rest: str, text: str, bandwidth: float, latency: float) -> dict[str, Any]:
        sizes = [_int(v, text) for v in rest.lower().split("x")]
        if len(sizes) != want:
            kind = text.partition(":")[0]
            raise TopologyError(f"{text!r}: {kind} needs {want} sizes like "
                                f"{'4x4x4' if want == 3 else '4x4'}")
        return {"bandwidth": bandwidth, "latency": latency, **dict(zip("xyz", sizes,
                                                                        strict=False))}
    return read


_HIER_DIM = re.compile(r"^(ring|fc|fully_connected|switch)(\d+)(?:@(\d+(?:\.\d*)?(?:e[+-]?\d+)?|"
                       r"\.\d+(?:e[+-]?\d+)?))?$")


def _hier(rest: str, text: str, bandwidth: float, latency: float) -> dict[str, Any]:
    dims = []
    for part in rest.split(","):
        m = _HIER_DIM.match(part.strip().lower())
        if not m:
            raise TopologyError(f"{text!r}: cannot read dimension {part!r}; expected "
                                "e.g. fc8, switch16, ring4 or ring4@100 (GB/s)")
        dim: dict[str, Any] = {"kind": ALIASES.get(m[1], m[1]), "size": int(m[2])}
        if m[3]:
            dim["bandwidth"] = float(m[3])
        dims.append(dim)
    return {"bandwidth": bandwidth, "latency": latency, "dims": dims}


_SHORT_KEYS = {"hosts": "hosts_per_leaf", "oversub": "oversubscription",
               "gpus": "gpus_per_node", "nic": "nic_bandwidth"}


def key_values(rest: str, text: str, bandwidth: float, latency: float) -> dict[str, Any]:
    """The default short-spec reader: ``key=value`` pairs, numbers in internal units."""
    params: dict[str, Any] = {"bandwidth": bandwidth, "latency": latency}
    for item in rest.split(","):
        key, eq, value = item.partition("=")
        if not eq:
            raise TopologyError(f"{text!r}: expected key=value pairs, got {item!r}")
        key = _SHORT_KEYS.get(key.strip(), key.strip())
        params[key] = _number(value, text)
    return params


def _superpod_spec(rest: str, text: str, bandwidth: float, latency: float) -> dict[str, Any]:
    params = key_values(rest, text, bandwidth, latency)
    # --bandwidth is the NIC's; NVLink 4 gives 450 GB/s per direction
    params.setdefault("nic_bandwidth", bandwidth)
    params["bandwidth"] = 450.0
    return params


# ---------------------------------------------------------------------- built-in kinds
@register_topology("ring", required=("npus",), optional=("bidirectional",), spec=_count,
                   example="ring:8", builtin=True)
def _ring(bandwidth: float, latency: float, npus: int, bidirectional: bool = True) -> Topology:
    return ring(npus, bandwidth, latency, bidirectional=bidirectional)


@register_topology("fully_connected", required=("npus",), aliases=("fc",), spec=_count,
                   example="fc:8", builtin=True)
def _fully_connected(bandwidth: float, latency: float, npus: int) -> Topology:
    return fully_connected(npus, bandwidth, latency)


@register_topology("switch", required=("npus",), optional=("switch_latency",), spec=_count,
                   example="switch:16", builtin=True)
def _switch(bandwidth: float, latency: float, npus: int, switch_latency: float = 0.0
            ) -> Topology:
    return switch(npus, bandwidth, latency, switch_latency=switch_latency)


def _grid(kind: str) -> Any:
    def make(bandwidth: float, latency: float, **sizes: int) -> Topology:
        from topologies import grid

        return getattr(grid, kind)(*(sizes[d] for d in "xyz" if d in sizes), bandwidth,
                                   latency)
    return make


register_topology("mesh2d", required=("x", "y"), aliases=("mesh",), spec=_sizes(2),
                  example="mesh2d:4x4", builtin=True)(_grid("mesh2d"))
register_topology("torus2d", required=("x", "y"), aliases=("torus",), spec=_sizes(2),
                  example="torus2d:4x8", builtin=True)(_grid("torus2d"))
register_topology("torus3d", required=("x", "y", "z"), spec=_sizes(3), example="torus3d:4x4x4",
                  builtin=True)(_grid("torus3d"))


@register_topology("fat_tree", required=("k",), optional=("switch_latency", "seed", "routing"),
                   aliases=("fattree",), spec=key_values, example="fattree:k=4", builtin=True)
def _fat_tree(bandwidth: float, latency: float, k: int, **options: Any) -> Topology:
    from topologies.fattree import fat_tree

    return fat_tree(k, bandwidth, latency, **options)


@register_topology("leaf_spine", required=("leaves", "hosts_per_leaf", "spines"),
                   optional=("uplink_bandwidth", "oversubscription", "switch_latency", "seed"),
                   aliases=("leafspine",), spec=key_values,
                   example="leafspine:leaves=4,hosts=8,spines=2", builtin=True)
def _leaf_spine(bandwidth: float, latency: float, leaves: int, hosts_per_leaf: int,
                spines: int, **options: Any) -> Topology:
    from topologies.fattree import leaf_spine

    return leaf_spine(leaves, hosts_per_leaf, spines, bandwidth, latency, **options)


@register_topology("superpod", required=("nodes", "nic_bandwidth"),
                   optional=("gpus_per_node", "spines", "nvswitch_latency", "leaf_latency",
                             "seed"),
                   spec=_superpod_spec, example="superpod:nodes=4", builtin=True)
def _superpod(bandwidth: float, latency: float, nodes: int, **options: Any) -> Topology:
    from topologies.fattree import superpod

    return superpod(nodes, nvlink_bandwidth=bandwidth, latency=latency, **options)


def _dims(value: Any, where: str) -> list[dict[str, Any]]:
    """A scenario file's ``dims:`` list of a hierarchical topology (units converted)."""
    if not isinstance(value, list) or not value:
        raise SchemaError(f"{where}: expected a list of dimensions like "
                          "{kind: ring, size: 4, bandwidth: 50 GB/s}")
    dims = []
    for i, item in enumerate(value):
        sec = schema.Section(item, f"{where}[{i}]")
        dim = {"kind": sec.choice("kind", ["ring", "fully_connected", "switch"]),
               "size": sec.get("size", schema.positive_int)}
        for key in ("bandwidth", "latency", "switch_latency", "bidirectional"):
            if key in sec.data:
                dim[key] = sec.get(key, PARAM_TYPES[key])
            else:
                sec.known.append(key)
        sec.finish()
        dims.append(dim)
    return dims


@register_topology("hierarchical", required=("dims",), types={"dims": _dims},
                   aliases=("hier",), spec=_hier, bandwidth="optional",
                   example="hier:fc8,switch16,ring4", builtin=True)
def _hierarchical(bandwidth: float | None, latency: float, dims: list[Any]) -> Topology:
    from topologies.hierarchical import DimSpec, hierarchical

    return hierarchical([d if isinstance(d, DimSpec) else DimSpec(**_dim_defaults(d, bandwidth,
                                                                                   latency))
                         for d in dims])


def _dim_defaults(dim: Mapping[str, Any], bandwidth: float | None, latency: float
                  ) -> dict[str, Any]:
    out = dict(dim)
    out["kind"] = ALIASES.get(out.get("kind", ""), out.get("kind", ""))
    if "bandwidth" not in out:
        if bandwidth is None:
            raise TopologyError(f"hierarchical: dimension {dim} has no bandwidth")
        out["bandwidth"] = bandwidth
    out.setdefault("latency", latency)
    return out


def parse_spec(text: str, bandwidth: float = 50.0, latency: float = 500.0) -> Topology:
    """A topology from a short spec ``kind:rest`` of any registered kind (see the module
    docstring; a kind with no reader of its own takes ``key=value`` pairs) or a file path."""
    text = text.strip()
    path = Path(text)
    if path.suffix.lower() in (".yaml", ".yml", ".graphml", ".xml") or _is_file(path):
        return _from_file(path)
    kind, _, rest = text.partition(":")
    try:
        entry: TopologyKind | None = get_topology_kind(kind.lower())
    except TopologyError:
        entry = None
    if entry is None or not rest:
        examples = ", ".join(get_topology_kind(k).example for k in topology_kinds())
        raise TopologyError(f"cannot read topology spec {text!r}; expected e.g. {examples}, "
                            "or a .yaml/.graphml file")
    return build(entry.kind, (entry.spec or key_values)(rest, text, bandwidth, latency))


def _is_file(path: Path) -> bool:
    """``path.is_file()``, False for names the system cannot even look up (too long, NUL)."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def _from_file(path: Path) -> Topology:
    if not _is_file(path):
        raise TopologyError(f"topology file not found: {path}")
    from topologies import custom

    if path.suffix.lower() in (".graphml", ".xml"):
        return custom.from_graphml(path)
    return custom.from_yaml(path)


def _int(value: str, spec: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise TopologyError(f"{spec!r}: {value!r} is not a whole number") from None


def _number(value: str, spec: str) -> int | float:
    try:
        number = float(value)
    except ValueError:
        raise TopologyError(f"{spec!r}: {value!r} is not a number") from None
    return int(number) if number.is_integer() else number
