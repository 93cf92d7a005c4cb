"""Typed topology metadata: what every builder records, and that misspellings are errors."""

from __future__ import annotations

import pytest

import topologies as topo
from topologies.base import TopologyError
from topologies.meta import TopologyInfo
from topologies.routing_state import GridRouting, RingRouting


def test_unknown_kind_is_rejected_naming_the_allowed_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown kind 'torus'.*torus2d"):
        TopologyInfo(kind="torus")  # type: ignore[arg-type]


def test_router_state_of_the_wrong_kind_is_an_error() -> None:
    ring = topo.ring(4, 50.0, 500.0)
    assert isinstance(ring.state(RingRouting), RingRouting)
    with pytest.raises(TopologyError, match=r"GridRouting.*RingRouting"):
        ring.state(GridRouting)


@pytest.mark.parametrize(("build", "kind", "dims"), [
    (lambda: topo.ring(8, 50.0, 500.0), "ring", ()),
    (lambda: topo.switch(8, 50.0, 500.0), "switch", ()),
    (lambda: topo.torus2d(4, 2, 50.0, 500.0), "torus2d", (4, 2)),
    (lambda: topo.torus3d(2, 2, 2, 50.0, 500.0), "torus3d", (2, 2, 2)),
    (lambda: topo.mesh2d(3, 3, 50.0, 500.0), "mesh2d", (3, 3)),
])
def test_builders_record_kind_and_dimensions(build, kind: str, dims: tuple[int, ...]) -> None:
    info = build().info
    assert (info.kind, info.dims) == (kind, dims)
