"""Topologies: devices, directed links and routing. Never imports SimPy or the engine."""

from topologies.base import LinkSpec, Topology, TopologyError, shortest_path_router
from topologies.builders import fully_connected, ring, switch

__all__ = [
    "LinkSpec",
    "Topology",
    "TopologyError",
    "fully_connected",
    "ring",
    "shortest_path_router",
    "switch",
]
