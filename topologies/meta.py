"""What a topology is, as typed data: the metadata every topology carries and the layout
details particular to one family of builders.

:class:`TopologyInfo` is the small record every :class:`~topologies.base.Topology` has (its
``info`` attribute): the kind, the logical dimensions, ring direction and the closed-form
bisection bandwidth. The algorithm choice (:mod:`collectives.auto`, :mod:`des.sim.choices`),
the AstraSim exporter, plots and reports read it by attribute, so a misspelt field is an error,
not a silently different algorithm.

A topology's ``layout`` attribute holds the builder-specific description (switch ids per tier,
per-dimension specs, device names from a file), one of the ``*Layout`` classes below, or None
for the basic builders. Routing tables live apart, in :mod:`topologies.routing_state`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

TopologyKind = Literal["ring", "fully_connected", "switch", "mesh2d", "torus2d", "torus3d",
                       "hierarchical", "fat_tree", "leaf_spine", "superpod", "custom"]
"""The kinds of topology the builders make; ``custom`` covers files and hand-built ones."""

KINDS: tuple[str, ...] = get_args(TopologyKind)


@dataclass(frozen=True, slots=True)
class TopologyInfo:
    """Metadata every topology carries.

    ``kind`` names the builder family (``custom`` for files, hand-built topologies and the
    kinds users register: the family says what structure the algorithm choice, the AstraSim
    exporter and the plots may rely on, so it stays this closed set). ``name`` is the
    registered kind that built a ``custom`` topology (``dragonfly``), "" otherwise.
    ``dims`` are the logical dimension sizes, in NPU-id order (fastest first): (x, y[, z]) for
    grids, the per-dimension sizes for hierarchical stacks, () for everything else.
    ``rail_aligned``: dimension 0 indexes each GPU's NIC (its rail), so a subgroup with any set
    of indices per dimension keeps its per-dimension phases on the rails (rail-optimised
    superpods); on other grids only boxes (contiguous coordinates) run per dimension.
    ``bidirectional`` is False only for a unidirectional ring. ``bisection_bandwidth`` is the
    builder's closed-form bisection bandwidth (bytes/ns, one direction), None when there is
    none (custom fabrics: estimate it with :func:`topologies.analysis.bisection_bandwidth`).
    """

    kind: TopologyKind = "custom"
    dims: tuple[int, ...] = ()
    rail_aligned: bool = False
    bidirectional: bool = True
    bisection_bandwidth: float | None = None
    name: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"TopologyInfo.kind: unknown kind {self.kind!r}; expected one of "
                             f"{', '.join(KINDS)}")


@dataclass(frozen=True)
class DimSpec:
    """One dimension of a hierarchical stack: ``kind`` is ``"ring"``, ``"fully_connected"`` or
    ``"switch"``; ``size`` NPUs per group; per-link ``bandwidth`` (bytes/ns) and ``latency``
    (ns); ``switch_latency`` (ns) is the forwarding latency of this dimension's switches;
    ``bidirectional`` only matters for rings (False: forward links only)."""

    kind: str
    size: int
    bandwidth: float
    latency: float
    switch_latency: float = 0.0
    bidirectional: bool = True


@dataclass(frozen=True, slots=True)
class HierarchicalLayout:
    """A hierarchical stack as built: its dimension specs (dimension 0 first) and the
    bandwidth of the cut that halves each dimension (bytes/ns, None for size-1 dimensions)."""

    specs: tuple[DimSpec, ...]
    bisection_by_dim: tuple[float | None, ...]


@dataclass(frozen=True, slots=True)
class FatTreeLayout:
    """A k-ary fat tree as built: switch ids per tier (edge and aggregation pod-major) and the
    uniform link bandwidth (bytes/ns) and latency (ns)."""

    k: int
    pods: int
    hosts: int
    edge_switches: tuple[int, ...]
    agg_switches: tuple[int, ...]
    core_switches: tuple[int, ...]
    bandwidth: float
    latency: float


@dataclass(frozen=True, slots=True)
class LeafSpineLayout:
    """A leaf-spine Clos as built: counts, switch ids per tier, host and uplink bandwidths
    (bytes/ns), the resulting oversubscription and the link latency (ns)."""

    leaves: int
    hosts_per_leaf: int
    spines: int
    hosts: int
    leaf_switches: tuple[int, ...]
    spine_switches: tuple[int, ...]
    host_bandwidth: float
    uplink_bandwidth: float
    oversubscription: float
    latency: float


@dataclass(frozen=True, slots=True)
class SuperpodLayout:
    """A rail-optimized SuperPOD as built: counts, switch ids (one NVSwitch per node, one rail
    leaf per GPU index, the spines), bandwidths (bytes/ns) and the link latency (ns)."""

    nodes: int
    gpus_per_node: int
    spines: int
    nvswitches: tuple[int, ...]
    rail_leaves: tuple[int, ...]
    spine_switches: tuple[int, ...]
    nvlink_bandwidth: float
    nic_bandwidth: float
    uplink_bandwidth: float
    latency: float


@dataclass(frozen=True, slots=True)
class CustomLayout:
    """A topology read from a file: where from (``source``, empty for in-memory data), the
    routing named there (``shortest_path``, ``ecmp`` or ``explicit``), each device name as
    written mapped to its device id, and the file's description."""

    source: str
    routing: str
    names: Mapping[Any, int] = field(default_factory=dict)
    description: str = ""


Layout = HierarchicalLayout | FatTreeLayout | LeafSpineLayout | SuperpodLayout | CustomLayout
"""The builder-specific description a topology may hold in its ``layout`` attribute."""
