"""Topologies: devices, directed links and routing. Never imports SimPy or the engine."""

from topologies.base import (
    LinkSpec,
    Topology,
    TopologyError,
    no_route_error,
    path_is_up,
    shortest_path_router,
)
from topologies.builders import fully_connected, ring, switch

__all__ = [
    "LinkSpec",
    "Topology",
    "TopologyError",
    "fully_connected",
    "no_route_error",
    "path_is_up",
    "ring",
    "shortest_path_router",
    "switch",
]
