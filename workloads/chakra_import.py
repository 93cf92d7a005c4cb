"""Chakra execution traces as a workload source.

A thin public entry point: :func:`read_trace` turns AstraSim-style Chakra ET files
(``{prefix}.{rank}.et``, the MLCommons Chakra ET schema) plus an optional comm-group JSON into
an :class:`~des.graph.EventGraph` wrapped in a :class:`TraceGraph`; :func:`write_trace` writes a
graph back out as Chakra ET that AstraSim can run. The implementation, the node-type mapping
and the list of errors are in :mod:`astra_bridge.chakra_io`.

Example::

    from workloads.chakra_import import read_trace

    trace = read_trace("traces/workload", comm_groups="traces/comm_group.json")
    graph = trace.graph
"""

from astra_bridge.chakra_io import ChakraError, TraceGraph, read_trace, write_trace

__all__ = ["ChakraError", "TraceGraph", "read_trace", "write_trace"]
