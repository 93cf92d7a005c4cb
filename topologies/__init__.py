"""Topologies: devices, directed links, routing and faults. Never imports SimPy or the engine.

Builders: :func:`ring`, :func:`fully_connected`, :func:`switch`, :func:`mesh2d`,
:func:`torus2d`, :func:`torus3d`, :func:`hierarchical`, :func:`fat_tree`, :func:`leaf_spine`,
:func:`superpod`, and custom fabrics from YAML or GraphML (:mod:`topologies.custom`);
:func:`parse_spec` reads the CLI's short forms (``torus3d:4x4x4``). What a topology is lives
in typed attributes: ``info`` (:class:`TopologyInfo`), ``layout`` (:mod:`topologies.meta`) and
``router_state`` (:mod:`topologies.routing_state`).
"""

from topologies.base import (
    LinkSpec,
    Topology,
    TopologyError,
    no_route_error,
    path_is_up,
    shortest_path_router,
)
from topologies.builders import fully_connected, ring, switch
from topologies.custom import from_graphml, from_yaml
from topologies.fattree import fat_tree, leaf_spine, superpod
from topologies.faults import LinkFault, apply_faults, random_faults, set_fault
from topologies.grid import mesh2d, torus2d, torus3d
from topologies.hierarchical import DimSpec, hierarchical
from topologies.meta import TopologyInfo
from topologies.spec import build, parse_spec

__all__ = [
    "DimSpec",
    "LinkFault",
    "LinkSpec",
    "Topology",
    "TopologyError",
    "TopologyInfo",
    "apply_faults",
    "build",
    "fat_tree",
    "from_graphml",
    "from_yaml",
    "fully_connected",
    "hierarchical",
    "leaf_spine",
    "mesh2d",
    "no_route_error",
    "parse_spec",
    "path_is_up",
    "random_faults",
    "ring",
    "set_fault",
    "shortest_path_router",
    "superpod",
    "switch",
    "torus2d",
    "torus3d",
]
