"""Building any topology by kind from plain parameters, and the short spec strings of the CLI.

:func:`build` is the one dispatch point: scenario files (after unit conversion) and short specs
both end there. Short specs: ``ring:8`` (``ring:8:uni``), ``fc:8``, ``switch:16``, ``mesh2d:4x4``,
``torus2d:4x8``, ``torus3d:4x4x4``, ``fattree:k=4``, ``leafspine:leaves=4,hosts=8,spines=2``,
``superpod:nodes=4``, ``hier:fc8,switch16,ring4`` (a dimension may carry its own bandwidth in
GB/s: ``fc8@150``), or a path to a YAML edge list or GraphML file. Numbers are in internal units:
bandwidth bytes/ns (= GB/s), latency ns.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from topologies.base import Topology, TopologyError
from topologies.builders import fully_connected, ring, switch

# kind -> (required parameters, optional parameters); every kind also takes bandwidth/latency
PARAMS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "ring": (("npus",), ("bidirectional",)),
    "fully_connected": (("npus",), ()),
    "switch": (("npus",), ("switch_latency",)),
    "mesh2d": (("x", "y"), ()),
    "torus2d": (("x", "y"), ()),
    "torus3d": (("x", "y", "z"), ()),
    "fat_tree": (("k",), ("switch_latency", "seed")),
    "leaf_spine": (("leaves", "hosts_per_leaf", "spines"),
                   ("uplink_bandwidth", "oversubscription", "switch_latency", "seed")),
    "superpod": (("nodes", "nic_bandwidth"),
                 ("gpus_per_node", "spines", "nvswitch_latency", "leaf_latency", "seed")),
    "hierarchical": (("dims",), ()),
}
KINDS = sorted(PARAMS)
ALIASES = {"fc": "fully_connected", "fattree": "fat_tree", "leafspine": "leaf_spine",
           "hier": "hierarchical", "mesh": "mesh2d", "torus": "torus2d"}


def build(kind: str, params: Mapping[str, Any]) -> Topology:
    """A topology of ``kind`` from converted parameters (``bandwidth`` in bytes/ns and
    ``latency`` in ns, plus the kind's own; see :data:`PARAMS`)."""
    kind = ALIASES.get(kind, kind)
    if kind not in PARAMS:
        raise TopologyError(f"unknown topology kind {kind!r}; expected one of {', '.join(KINDS)}")
    required, optional = PARAMS[kind]
    extra = set(params) - set(required) - set(optional) - {"bandwidth", "latency"}
    if extra:
        raise TopologyError(f"{kind}: unknown parameter(s) {sorted(extra)}; expected "
                            f"{', '.join((*required, *optional, 'bandwidth', 'latency'))}")
    missing = [k for k in required if k not in params]
    if kind != "hierarchical" and "bandwidth" not in params:  # superpod: NVLink bandwidth
        missing.append("bandwidth")
    if missing:
        raise TopologyError(f"{kind}: missing parameter(s) {', '.join(missing)}")
    p = dict(params)
    bw, lat = p.pop("bandwidth", None), p.pop("latency", 0.0)
    if kind == "ring":
        return ring(p["npus"], bw, lat, bidirectional=p.get("bidirectional", True))
    if kind == "fully_connected":
        return fully_connected(p["npus"], bw, lat)
    if kind == "switch":
        return switch(p["npus"], bw, lat, switch_latency=p.get("switch_latency", 0.0))
    if kind in ("mesh2d", "torus2d", "torus3d"):
        from topologies import grid

        sizes = [p[d] for d in ("x", "y", "z") if d in p]
        return getattr(grid, kind)(*sizes, bw, lat)
    if kind == "fat_tree":
        from topologies.fattree import fat_tree

        return fat_tree(p.pop("k"), bw, lat, **p)
    if kind == "leaf_spine":
        from topologies.fattree import leaf_spine

        return leaf_spine(p.pop("leaves"), p.pop("hosts_per_leaf"), p.pop("spines"), bw, lat,
                          **p)
    if kind == "superpod":
        from topologies.fattree import superpod

        return superpod(p.pop("nodes"), nvlink_bandwidth=bw, latency=lat, **p)
    from topologies.hierarchical import DimSpec, hierarchical

    dims = [d if isinstance(d, DimSpec) else DimSpec(**_dim_defaults(d, bw, lat))
            for d in p["dims"]]
    return hierarchical(dims)


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


_HIER_DIM = re.compile(r"^(ring|fc|fully_connected|switch)(\d+)(?:@([\d.]+))?$")


def parse_spec(text: str, bandwidth: float = 50.0, latency: float = 500.0) -> Topology:
    """A topology from a short spec (see the module docstring) or a file path."""
    text = text.strip()
    path = Path(text)
    if path.suffix.lower() in (".yaml", ".yml", ".graphml", ".xml") or path.is_file():
        return _from_file(path)
    kind, _, rest = text.partition(":")
    kind = ALIASES.get(kind.lower(), kind.lower())
    if kind not in PARAMS or not rest:
        raise TopologyError(
            f"cannot read topology spec {text!r}; expected e.g. ring:8, fc:8, switch:16, "
            "mesh2d:4x4, torus2d:4x4, torus3d:4x4x4, fattree:k=4, "
            "leafspine:leaves=4,hosts=8,spines=2, superpod:nodes=4, hier:fc8,switch16,ring4, "
            "or a .yaml/.graphml file")
    base = {"bandwidth": bandwidth, "latency": latency}
    if kind in ("ring", "fully_connected", "switch"):
        count, _, flag = rest.partition(":")
        params: dict[str, Any] = {"npus": _int(count, text)}
        if kind == "ring" and flag:
            if flag not in ("uni", "bi"):
                raise TopologyError(f"{text!r}: ring flag must be 'uni' or 'bi', got {flag!r}")
            params["bidirectional"] = flag == "bi"
        return build(kind, {**base, **params})
    if kind in ("mesh2d", "torus2d", "torus3d"):
        sizes = [_int(v, text) for v in rest.lower().split("x")]
        want = 3 if kind == "torus3d" else 2
        if len(sizes) != want:
            raise TopologyError(f"{text!r}: {kind} needs {want} sizes like "
                                f"{'4x4x4' if want == 3 else '4x4'}")
        return build(kind, {**base, **dict(zip("xyz", sizes, strict=False))})
    if kind == "hierarchical":
        dims = []
        for part in rest.split(","):
            m = _HIER_DIM.match(part.strip().lower())
            if not m:
                raise TopologyError(f"{text!r}: cannot read dimension {part!r}; expected "
                                    "e.g. fc8, switch16, ring4 or ring4@100 (GB/s)")
            dim = {"kind": ALIASES.get(m[1], m[1]), "size": int(m[2])}
            if m[3]:
                dim["bandwidth"] = float(m[3])
            dims.append(dim)
        return build(kind, {**base, "dims": dims})
    params = {}
    for item in rest.split(","):
        key, eq, value = item.partition("=")
        if not eq:
            raise TopologyError(f"{text!r}: expected key=value pairs, got {item!r}")
        key = {"hosts": "hosts_per_leaf", "oversub": "oversubscription",
               "gpus": "gpus_per_node", "nic": "nic_bandwidth"}.get(key.strip(), key.strip())
        params[key] = _number(value, text)
    if kind == "superpod":  # --bandwidth is the NIC's; NVLink 4 gives 450 GB/s per direction
        params.setdefault("nic_bandwidth", bandwidth)
        base = {"bandwidth": 450.0, "latency": latency}
    return build(kind, {**base, **params})


def _from_file(path: Path) -> Topology:
    if not path.is_file():
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
