"""Decisions both backends make the same way: which algorithm a collective runs, the logical
dimensions of a group, how long local work takes, and what a step's overhead costs."""

from __future__ import annotations

import math
from collections.abc import Callable

from collectives.base import DEFAULT_ALGORITHM, CollectiveError, Step
from des.core import hardware as hw
from des.core.graph import CollectiveInstance, Node, NodeKind
from des.sim.options import EngineOptions
from topologies.base import Topology
from topologies.dims import logical_dims

__all__ = ["ModelError", "algorithm_for", "local_time", "logical_dims",
           "message_route", "step_overhead"]


class ModelError(RuntimeError):
    """The graph asks for something the models cannot time; names the node."""


def algorithm_for(inst: CollectiveInstance, topology: Topology, options: EngineOptions) -> str:
    """The node's algorithm, else the options' choice for its type, else ``auto``, which picks
    by topology, group and size (:func:`collectives.auto.choose_algorithm`). In AstraSim modes
    the fallback is AstraSim's own default (``ring``, ``direct`` for all-to-all), not ``auto``.
    Options may name several algorithms for a type: the :func:`fastest` of them runs."""
    name = inst.algorithm or options.algorithms.get(inst.collective.value)
    if isinstance(name, tuple):
        return fastest(inst, name, topology, options)
    if not name and options.astra:
        name = DEFAULT_ALGORITHM.get(inst.collective)
    if not name or name == "auto":
        name = _auto(inst, topology, options)
    return name


def _auto(inst: CollectiveInstance, topology: Topology, options: EngineOptions) -> str:
    """What ``auto`` picks for the collective (:func:`collectives.auto.choose_algorithm`)."""
    from collectives.auto import choose_algorithm, topology_hints

    members = inst.span or inst.group
    kind, _ = topology_hints(topology)
    return choose_algorithm(inst.collective, len(members), inst.nbytes, topology_kind=kind,
                            dims=logical_dims(topology, members, not options.astra))


def fastest(inst: CollectiveInstance, candidates: tuple[str, ...], topology: Topology,
            options: EngineOptions) -> str:
    """The candidate (``auto`` standing for what it picks) under which the collective takes
    the least uncontended time, in the closed form the analytical backend times it with
    (:func:`des.sim.costs.collective_time`); the first on ties. Candidates that cannot run
    the collective or its group (halving-doubling on six ranks, say) are passed over; none
    left is an error. This is how NCCL chooses an algorithm and protocol for each call: the
    least time in its own cost model (src/graph/tuning.cc, ncclTopoGetAlgoTime), here des's
    model of the topology."""
    from des.sim.collective_run import closed_form_plan
    from des.sim.costs import MessageCost, collective_time

    cost = MessageCost(topology, options)
    dims = logical_dims(topology, inst.span or inst.group, not options.astra)
    best, best_time = "", math.inf
    for candidate in candidates:
        name = _auto(inst, topology, options) if candidate == "auto" else candidate
        try:
            chunks, _, plan = closed_form_plan(inst, name, options, topology.num_npus, dims)
            time = collective_time(plan, chunks, options.chunks_in_flight, cost,
                                   lambda st: step_overhead(st, options),
                                   options.endpoint_delay_ns)
        except CollectiveError:
            continue
        if time < best_time:
            best, best_time = name, time
    if not best:
        raise CollectiveError(f"none of the algorithms {', '.join(candidates)} runs "
                              f"{inst.collective} over {len(inst.span or inst.group)} ranks")
    return best


def message_route(topology: Topology, options: EngineOptions
                  ) -> Callable[[int, int, int], tuple[int, ...]]:
    """Where a message goes: the topology's route; in AstraSim's congestion-unaware mode on a
    hierarchical stack, only the segment in the first dimension in which the ends differ, the
    one AstraSim charges (:func:`topologies.hierarchical.first_dimension_route`)."""
    if options.astra and not options.contention:
        from topologies.hierarchical import first_dimension_route

        return lambda src, dst, flow=0: first_dimension_route(topology, src, dst)
    return topology.route


NOOP = "noop"  # op class of nodes that take no time at all (AstraSim skips some nodes)


def local_time(node: Node, hardware: hw.GpuSpec | None, options: EngineOptions) -> float:
    """Duration of a compute or memory node at full speed, in ns: its explicit duration, else
    the roofline of its FLOPs and bytes (of each of its kernels, summed); at least
    ``min_compute_ns`` (op class ``noop``: 0); whole nanoseconds when ``quantize`` (AstraSim's
    integer cycles)."""
    if node.op_class == NOOP:
        return 0.0
    if node.duration_ns is not None:
        return max(float(node.duration_ns), options.min_compute_ns)
    if hardware is None:
        if node.flops or node.nbytes:
            raise ModelError(f"{node.label()} has FLOPs/bytes but no hardware model was given")
        return options.min_compute_ns
    if node.kind is NodeKind.MEMORY:
        t = hw.memory_time_ns(hardware, node.nbytes)
    elif node.kernels is not None:  # each kernel its own roofline and launch
        t = sum(hw.compute_time_ns(hardware, f, b, c) for f, b, c in node.kernels)
    else:
        t = hw.compute_time_ns(hardware, node.flops, node.nbytes, node.op_class)
    return math.floor(t) if options.quantize else t


def step_overhead(step: Step, options: EngineOptions) -> float:
    """Endpoint delay plus reduction time (3 x reduced bytes / bandwidth: two reads and a
    write, AstraSim's MemBus accounting) after a step's receives."""
    extra = options.endpoint_delay_ns
    if step.reduce_bytes and options.reduction_bandwidth is not None:
        per_pass = step.reduce_bytes / options.reduction_bandwidth
        extra += 3 * (math.floor(per_pass) if options.quantize else per_pass)
    return extra
