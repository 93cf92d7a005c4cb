"""Topology kinds by name: the one table scenario files, short specs and the API build from.

A kind is a builder function ``(bandwidth, latency, **params) -> Topology`` registered with
:func:`register_topology`; :func:`topologies.spec.build` looks every kind up here, the built-in
ones included, so a registered kind works everywhere a built-in one does::

    @register_topology("dragonfly", required=("groups", "routers_per_group"),
                       optional=("hosts_per_router",),
                       types={"groups": schema.positive_int, ...})
    def dragonfly(bandwidth, latency, *, groups, routers_per_group, hosts_per_router=1):
        ...

* scenario files: ``topology: {kind: dragonfly, groups: 4, ..., bandwidth: 50 GB/s}``, each
  parameter read by its parser in ``types`` (any ``parse(value, where)``, e.g. the unit parsers
  of :mod:`des.core.units`; a parameter with no parser there takes the shared one of that name
  in :data:`PARAM_TYPES`, else the value as the file gives it);
* short specs: ``dragonfly:groups=4,routers_per_group=4`` (``key=value`` pairs, numbers in
  internal units; ``spec`` replaces that reader for a kind with a shorter syntax);
* code: ``topologies.build("dragonfly", {"groups": 4, ..., "bandwidth": 50.0})``.

A registered kind's topology reports ``info.kind == "custom"`` (the structure the algorithm
choice, the exporter and the plots know nothing about) and ``info.name`` its kind: see
:class:`~topologies.meta.TopologyInfo`. ``custom`` itself is reserved for files.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from des.core import schema, units
from des.core.schema import Parser
from topologies.base import Topology, TopologyError

Builder = Callable[..., Topology]
"""``builder(bandwidth, latency, **params) -> Topology`` (bytes/ns and ns; bandwidth None when
the kind's ``bandwidth`` is not ``"required"`` and none was given)."""

SpecReader = Callable[[str, str, float, float], dict[str, Any]]
"""``reader(rest, text, bandwidth, latency) -> params`` for the short spec ``kind:rest`` (``text``
is the whole spec, for errors); the params include ``bandwidth`` and ``latency``."""

Need = Literal["required", "optional"]

#: The parsers scenario files use for parameters of these names, whatever the kind.
PARAM_TYPES: dict[str, Parser] = {
    "npus": schema.positive_int, "x": schema.positive_int, "y": schema.positive_int,
    "z": schema.positive_int, "k": schema.positive_int, "leaves": schema.positive_int,
    "hosts_per_leaf": schema.positive_int, "spines": schema.positive_int,
    "nodes": schema.positive_int, "gpus_per_node": schema.positive_int,
    "seed": schema.nonneg_int, "bidirectional": schema.boolean, "routing": schema.text,
    "oversubscription": schema.positive_number,
    "bandwidth": units.parse_bandwidth, "uplink_bandwidth": units.parse_bandwidth,
    "nic_bandwidth": units.parse_bandwidth,
    "latency": units.parse_time, "switch_latency": units.parse_time,
    "nvswitch_latency": units.parse_time, "leaf_latency": units.parse_time,
}

RESERVED = ("custom",)  # ``kind: custom`` reads a file (des.app.config, parse_spec)


def _as_given(value: Any, where: str) -> Any:
    return value


@dataclass(frozen=True)
class TopologyKind:
    """One registered topology kind (see the module doc): its builder, parameter names,
    parameter parsers for scenario files, short-spec aliases and reader, whether it needs a
    link ``bandwidth``, an example spec for error messages, and whether des ships it."""

    kind: str
    build: Builder
    required: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()
    types: Mapping[str, Parser] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    spec: SpecReader | None = None
    bandwidth: Need = "required"
    example: str = ""
    builtin: bool = False

    @property
    def params(self) -> tuple[str, ...]:
        """Every parameter a scenario may give, ``bandwidth`` and ``latency`` included."""
        return (*self.required, *self.optional, "bandwidth", "latency")

    def parser(self, name: str) -> Parser:
        """How a scenario file's value of parameter ``name`` is read."""
        return self.types.get(name) or PARAM_TYPES.get(name) or _as_given


_KINDS: dict[str, TopologyKind] = {}
_ALIASES: dict[str, str] = {}


def register_topology(kind: str, *, required: tuple[str, ...] = (),
                      optional: tuple[str, ...] = (), types: Mapping[str, Parser] | None = None,
                      aliases: tuple[str, ...] = (), spec: SpecReader | None = None,
                      bandwidth: Need = "required", example: str = "",
                      builtin: bool = False) -> Callable[[Builder], Builder]:
    """Decorator: make ``builder(bandwidth, latency, **params) -> Topology`` the topology
    ``kind``. A kind or alias already taken (or ``custom``) is a :class:`TopologyError`."""
    for name in (kind, *aliases):
        if not isinstance(name, str) or not name or ":" in name or name != name.lower():
            raise TopologyError(f"topology kind {name!r}: expected a lower-case name "
                                "without ':'")
        if name in _KINDS or name in _ALIASES or name in RESERVED:
            raise TopologyError(f"topology kind {name!r} is already registered")
    params = (*required, *optional)
    if len(set(params)) != len(params) or {"bandwidth", "latency"} & set(params):
        raise TopologyError(f"{kind}: parameters must be distinct and must not repeat "
                            f"bandwidth or latency, got {params}")
    unknown = set(types or {}) - set(params) - {"bandwidth", "latency"}
    if unknown:
        raise TopologyError(f"{kind}: types names unknown parameter(s) {sorted(unknown)}")

    def wrap(builder: Builder) -> Builder:
        if kind in _KINDS:  # registered since the decorator was made
            raise TopologyError(f"topology kind {kind!r} is already registered")
        _KINDS[kind] = TopologyKind(kind, builder, tuple(required), tuple(optional),
                                    dict(types or {}), tuple(aliases), spec, bandwidth,
                                    example or f"{kind}:" + ",".join(f"{p}=..." for p in
                                                                     required),
                                    builtin)
        _ALIASES.update({alias: kind for alias in aliases})
        return builder

    return wrap


def topology_kinds() -> list[str]:
    """The registered kinds' names, sorted (aliases not included)."""
    return sorted(_KINDS)


def canonical(kind: str) -> str:
    """``kind`` with a short-spec alias (``fc``, ``fattree``...) resolved."""
    return _ALIASES.get(kind, kind)


def get_topology_kind(kind: str) -> TopologyKind:
    """The registered kind called ``kind`` (or one of its aliases); :class:`TopologyError`
    listing the registered kinds otherwise."""
    found = _KINDS.get(canonical(kind)) if isinstance(kind, str) else None
    if found is None:
        raise TopologyError(f"unknown topology kind {kind!r}; expected one of "
                            f"{', '.join(topology_kinds())}")
    return found


def build(kind: str, params: Mapping[str, Any]) -> Topology:
    """A topology of ``kind`` from converted parameters (``bandwidth`` in bytes/ns and
    ``latency`` in ns, plus the kind's own): the one dispatch point of every topology kind."""
    entry = get_topology_kind(kind)
    allowed = (*entry.required, *entry.optional, "bandwidth", "latency")
    extra = set(params) - set(allowed)
    if extra:
        raise TopologyError(f"{entry.kind}: unknown parameter(s) {sorted(extra)}; expected "
                            f"{', '.join(allowed)}")
    missing = [k for k in entry.required if k not in params]
    if entry.bandwidth == "required" and "bandwidth" not in params:
        missing.append("bandwidth")
    if missing:
        raise TopologyError(f"{entry.kind}: missing parameter(s) {', '.join(missing)}")
    if entry.builtin:  # a size worked out from the parameters: refused before building
        from topologies.sizes import check_size

        check_size(entry.kind, params)
    p = dict(params)
    topo = entry.build(p.pop("bandwidth", None), p.pop("latency", 0.0), **p)
    if not isinstance(topo, Topology):
        raise TopologyError(f"{entry.kind}: the builder returned {type(topo).__name__}, not a "
                            "Topology")
    if not entry.builtin and topo.info.kind == "custom" and not topo.info.name:
        topo.info = replace(topo.info, name=entry.kind)
    return topo


__all__ = ["PARAM_TYPES", "Builder", "SpecReader", "TopologyKind", "build", "canonical",
           "get_topology_kind", "register_topology", "topology_kinds"]
