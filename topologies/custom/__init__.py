"""Custom topologies from files: a YAML edge list (:func:`from_yaml`, :func:`from_dict`;
format in :mod:`topologies.custom.yaml_reader`) or GraphML (:func:`from_graphml`, in
:mod:`topologies.custom.graphml_reader`). Both build a :class:`~topologies.base.Topology` with a
:class:`~topologies.meta.CustomLayout` naming each device as written in the file."""

from topologies.custom.graphml_reader import from_graphml
from topologies.custom.yaml_reader import explicit_router, from_dict, from_yaml

__all__ = ["explicit_router", "from_dict", "from_graphml", "from_yaml"]
