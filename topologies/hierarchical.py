"""Hierarchical (multi-dimensional) topologies in the style of ASTRA-sim 2.0 (Won et al.,
"ASTRA-sim2.0: Modeling Hierarchical Networks and Disaggregated Systems for Large-model
Training at Scale", ISPASS 2023): a stack of dimensions, each a ring, a fully connected group
or a switch, e.g. ``[FullyConnected 8, Switch 16, Ring 4]`` = 512 NPUs.

NPU ids put dimension 0 fastest: ``id = c0 + s0*(c1 + s1*(c2 + ...))``, so NPUs 0..s0-1 form
the first dimension-0 group (ASTRA-sim's convention). For every dimension d and every group of
NPUs that differ only in coordinate d, dimension d's topology is built among them, in
coordinate order: a ring (link c -> c+1, and c+1 -> c when bidirectional; a 2-ring is one duplex
pair), all-to-all direct links, or one new switch with an uplink and a downlink per NPU.
Switches get device ids after the NPUs, dimension by dimension, group by group. Links are
labelled ``"dim{d}-{kind}"`` (``"dim0-ring"``, ``"dim1-switch"``...). Dimensions of size 1 add
nothing.

Routing is dimension-order (Dally & Towles, *Principles and Practices of Interconnection
Networks*, 2004): correct coordinate 0 with dimension 0's topology (ring: the shorter way,
forward on ties or when unidirectional; fully connected: the direct link; switch: up then
down), then coordinate 1, and so on. If any link of that path is down the route falls back to
:func:`~topologies.base.shortest_path_router` over the surviving links.

``info.bisection_bandwidth`` (bytes/ns, one direction): cutting dimension d in half
(coordinate < floor(s_d / 2) on one side) splits each of its ``N / s_d`` groups, and each split
group carries ``g_d * bandwidth_d`` across: a bidirectional ring of size >= 3 has g = 2 links
across, a unidirectional ring or a 2-ring g = 1, a fully connected group
g = floor(s/2) * ceil(s/2), a switch g = floor(s/2) (the smaller half's uplinks). The reported
value is the minimum of ``N / s_d * g_d * bandwidth_d`` over dimensions with s_d >= 2 (per
dimension values in ``layout.bisection_by_dim``, None for size-1 dimensions). For odd sizes
the halves differ by one slice; the value is then the bandwidth of that near-balanced cut.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from math import prod
from numbers import Integral

from topologies.base import LinkSpec, Topology, TopologyError, path_is_up, shortest_path_router
from topologies.meta import DimSpec, HierarchicalLayout, TopologyInfo
from topologies.routing_state import DimTables, HierarchicalRouting

__all__ = ["DIM_KINDS", "FULLY_CONNECTED", "RING", "SWITCH", "DimSpec", "hierarchical",
           "hierarchical_coords"]

RING = "ring"
FULLY_CONNECTED = "fully_connected"
SWITCH = "switch"
DIM_KINDS = (FULLY_CONNECTED, RING, SWITCH)


def hierarchical(dims: Sequence[DimSpec]) -> Topology:
    """A multi-dimensional stack of rings, fully connected groups and switches; see the module
    docstring for the id convention, link kinds, routing and bisection bandwidth."""
    specs = _check_dims(dims)
    sizes = tuple(spec.size for spec in specs)
    n = prod(sizes)
    name = "hierarchical:" + "_".join(f"{spec.kind}{spec.size}" for spec in specs)
    topo = Topology(name, n, _hierarchical_router)
    tables: list[DimTables] = []
    stride = 1
    for d, spec in enumerate(specs):
        tables.append(_build_dim(topo, d, spec, stride))
        stride *= spec.size
    by_dim = tuple(_cut_bandwidth(spec, n) for spec in specs)
    topo.router_state = HierarchicalRouting(tuple(tables))
    topo.layout = HierarchicalLayout(tuple(specs), by_dim)
    topo.info = TopologyInfo("hierarchical", dims=sizes,
                             bisection_bandwidth=min(bw for bw in by_dim if bw is not None))
    return topo


def hierarchical_coords(topo: Topology, npu: int) -> tuple[int, ...]:
    """The per-dimension coordinates (c0, c1, ...) of ``npu`` in a hierarchical topology."""
    if topo.info.kind != "hierarchical":
        raise TopologyError(f"{topo.name}: not a hierarchical topology")
    if not (isinstance(npu, int) and 0 <= npu < topo.num_npus):
        raise TopologyError(f"{topo.name}: NPU {npu!r} is outside 0..{topo.num_npus - 1}")
    return topo.state(HierarchicalRouting).coords(npu)


# ---------------------------------------------------------------------- checking
def _check_dims(dims: Sequence[DimSpec]) -> list[DimSpec]:
    specs = list(dims)
    for d, spec in enumerate(specs):
        _check_dim(d, spec)
        specs[d] = replace(spec, size=int(spec.size))  # numpy integers -> int
    total = prod(spec.size for spec in specs)
    if total < 2:
        raise TopologyError(f"hierarchical: needs at least 2 NPUs, got {total} "
                            f"from {len(specs)} dimension(s)")
    return specs


def _check_dim(d: int, spec: DimSpec) -> None:
    where = f"hierarchical: dim {d}"
    if not isinstance(spec, DimSpec):
        raise TopologyError(f"{where}: expected a DimSpec, got {spec!r}")
    if spec.kind not in DIM_KINDS:
        raise TopologyError(f"{where}: unknown kind {spec.kind!r}; "
                            f"allowed: {', '.join(DIM_KINDS)}")
    size = spec.size
    if not isinstance(size, Integral) or isinstance(size, bool) or size < 1:
        raise TopologyError(f"{where} ({spec.kind}): size must be an integer >= 1, "
                            f"got {size!r}")
    if not spec.bandwidth > 0:
        raise TopologyError(f"{where} ({spec.kind}): bandwidth must be > 0, "
                            f"got {spec.bandwidth!r}")
    for what in ("latency", "switch_latency"):
        if not getattr(spec, what) >= 0:
            raise TopologyError(f"{where} ({spec.kind}): {what} must be >= 0, "
                                f"got {getattr(spec, what)!r}")


# ---------------------------------------------------------------------- building
def _groups(n: int, size: int, stride: int) -> list[list[int]]:
    """The groups of NPUs that differ only in the coordinate with this size and stride."""
    return [[base + c * stride for c in range(size)]
            for base in range(n) if (base // stride) % size == 0]


class _Tables:
    """The mutable link-id lists of one dimension while it is built (see DimTables)."""

    def __init__(self) -> None:
        self.forward: list[int] = []
        self.backward: list[int] = []
        self.direct: list[list[int]] = []
        self.up: list[int] = []
        self.down: list[int] = []


def _build_dim(topo: Topology, d: int, spec: DimSpec, stride: int) -> DimTables:
    tables = _Tables()
    if spec.size >= 2:
        build = {RING: _build_ring, FULLY_CONNECTED: _build_fc, SWITCH: _build_switch}[spec.kind]
        for group in _groups(topo.num_npus, spec.size, stride):
            build(topo, f"dim{d}-{spec.kind}", spec, group, tables)
    return DimTables(spec.kind, spec.size, stride, tuple(tables.forward),
                     tuple(tables.backward), tuple(map(tuple, tables.direct)),
                     tuple(tables.up), tuple(tables.down))


def _build_ring(topo: Topology, kind: str, spec: DimSpec, group: list[int],
                tables: _Tables) -> None:
    if not tables.forward:
        tables.forward = [-1] * topo.num_npus
        if spec.bidirectional and spec.size > 2:  # a 2-ring's forward links join both ways
            tables.backward = [-1] * topo.num_npus
    s = len(group)
    for i in range(s):
        tables.forward[group[i]] = topo.add_link(group[i], group[(i + 1) % s], spec.bandwidth,
                                                 spec.latency, kind)
    if tables.backward:
        for i in range(s):
            nxt = group[(i + 1) % s]
            tables.backward[nxt] = topo.add_link(nxt, group[i], spec.bandwidth, spec.latency,
                                                 kind)


def _build_fc(topo: Topology, kind: str, spec: DimSpec, group: list[int],
              tables: _Tables) -> None:
    if not tables.direct:
        tables.direct = [[] for _ in range(topo.num_npus)]
    for a in group:
        tables.direct[a] = [-1 if a == b else
                            topo.add_link(a, b, spec.bandwidth, spec.latency, kind)
                            for b in group]


def _build_switch(topo: Topology, kind: str, spec: DimSpec, group: list[int],
                  tables: _Tables) -> None:
    if not tables.up:
        tables.up = [-1] * topo.num_npus
        tables.down = [-1] * topo.num_npus
    sw = topo.add_switch(spec.switch_latency)
    for npu in group:
        tables.up[npu] = topo.add_link(npu, sw, spec.bandwidth, spec.latency, kind)
    for npu in group:
        tables.down[npu] = topo.add_link(sw, npu, spec.bandwidth, spec.latency, kind)


def _cut_bandwidth(spec: DimSpec, n: int) -> float | None:
    """Bandwidth across the cut that halves this dimension (None for size 1)."""
    s = spec.size
    if s < 2:
        return None
    if spec.kind == RING:
        across = 2 if spec.bidirectional and s > 2 else 1
    elif spec.kind == FULLY_CONNECTED:
        across = (s // 2) * (s - s // 2)
    else:
        across = s // 2
    return n // s * across * float(spec.bandwidth)


# ---------------------------------------------------------------------- routing
def _hierarchical_router(topo: Topology, src: int, dst: int, flow: int = 0) -> tuple[int, ...]:
    """Dimension-order route; shortest path over up links if a link on it is down."""
    path: list[int] = []
    cur = src
    for t in topo.state(HierarchicalRouting).tables:
        here, there = (cur // t.stride) % t.size, (dst // t.stride) % t.size
        if here != there:
            nxt = cur + (there - here) * t.stride
            path.extend(_segment(topo.links, t, cur, nxt, here, there))
            cur = nxt
    if not path_is_up(topo, path):
        return shortest_path_router(topo, src, dst, flow)
    return tuple(path)


def first_dimension_route(topo: Topology, src: int, dst: int) -> tuple[int, ...]:
    """The links AstraSim's congestion-unaware backend charges a message on a hierarchical
    stack: only the segment in the first dimension in which ``src`` and ``dst`` differ, between
    their coordinates in that dimension (astra-network-analytical,
    ``congestion_unaware/multi-dim-topology/MultiDimTopology.cc``: ``send`` translates both
    ids to addresses, ``get_dim_to_transfer`` returns the first differing dimension, and only
    that dimension's topology times the chunk). Other topologies: their route."""
    state = topo.router_state
    if not isinstance(state, HierarchicalRouting):
        return topo.route(src, dst)
    for t in state.tables:
        here, there = (src // t.stride) % t.size, (dst // t.stride) % t.size
        if here != there:
            nxt = src + (there - here) * t.stride
            return tuple(_segment(topo.links, t, src, nxt, here, there))
    return ()


def _segment(links: list[LinkSpec], t: DimTables, cur: int, nxt: int, here: int,
             there: int) -> list[int]:
    """Link ids from ``cur`` to ``nxt`` (same group, coordinates here -> there) in one dim."""
    if t.kind == FULLY_CONNECTED:
        return [t.direct[cur][there]]
    if t.kind == SWITCH:
        return [t.up[cur], t.down[nxt]]
    ahead = (there - here) % t.size
    table, hops = t.forward, ahead
    if t.backward and ahead > t.size - ahead:
        table, hops = t.backward, t.size - ahead
    out: list[int] = []
    for _ in range(hops):
        out.append(table[cur])
        cur = links[out[-1]].dst
    return out
