"""The bytes each link would have carried for the traffic a run timed in closed form, which moved
no messages: every collective and send of a closed-form (analytical) run, and the folded
collectives a contended run timed in closed form. The energy model (:mod:`des.core.energy`)
charges links for them from this layout.

A collective is laid out as the engine would run it: the same chunk layout
(:func:`~des.sim.collective_run.chunk_layout`), logical dimensions and step program
(:func:`collectives.base.make_plan`); every message's bytes are added to each link of its route
(:func:`~des.sim.choices.message_route`, flow 0: on ECMP fabrics another equal-cost path may be
taken, with the same number of links of the same kinds). In a folded graph a collective or send
of representatives stands for its images under the fold's translations; each distinct image is
laid out on its own links. Node programs (custom collectives without a step program) cannot be
laid out and are counted instead. Pure: no SimPy, no clock.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable

from collectives.base import plan_class
from des.core.fold import Fold
from des.core.graph import EventGraph
from des.core.results import Result
from des.sim.choices import logical_dims, message_route
from des.sim.collective_run import closed_form_plan
from des.sim.options import EngineOptions
from topologies.base import Topology

__all__ = ["unmoved_link_bytes"]

Pairs = dict[tuple[int, int], float]


def _images(fold: Fold | None, ranks: Iterable[int]) -> list[dict[int, int]]:
    """The distinct images of ``ranks`` under the fold's translations, as rank maps (the
    identity alone when the graph is not folded)."""
    ranks = tuple(ranks)
    if fold is None or fold.count <= 1:
        return [{r: r for r in ranks}]
    seen: set[frozenset[int]] = set()
    maps = []
    for image in fold.table():
        moved = tuple(image[r] for r in ranks)
        if frozenset(moved) not in seen:
            seen.add(frozenset(moved))
            maps.append(dict(zip(ranks, moved, strict=True)))
    return maps


def _route_pairs(pairs: Pairs, maps: list[dict[int, int]],
                 route: Callable[[int, int, int], tuple[int, ...]]) -> dict[int, float]:
    out: dict[int, float] = defaultdict(float)
    for mapping in maps:
        for (src, dst), nbytes in pairs.items():
            for link in route(mapping[src], mapping[dst], 0):
                out[link] += nbytes
    return out


def unmoved_link_bytes(topology: Topology, graph: EventGraph, result: Result,
                       options: EngineOptions) -> tuple[dict[int, float], int]:
    """(link id -> bytes, collectives that could not be laid out) for the traffic ``result``
    (a run of ``graph`` on ``topology`` with ``options``) timed without moving messages."""
    route = message_route(topology, options)
    instances = {inst.index: inst for inst in graph.collective_instances()}
    out: dict[int, float] = defaultdict(float)
    # the same collective recurs every layer and micro-batch: lay each shape out once
    shapes: dict[tuple, list] = {}
    for stats in result.collectives:
        inst = instances.get(stats.index)
        if stats.bytes_injected is not None or inst is None or inst.nbytes <= 0:
            continue
        span = tuple(inst.span or inst.group)
        if len(span) < 2:
            continue
        key = (inst.collective, inst.nbytes, span, stats.algorithm, inst.root)
        entry = shapes.get(key)
        if entry is None:
            shapes[key] = [inst, span, stats.algorithm, 1]
        else:
            entry[3] += 1
    skipped = 0
    for inst, span, algorithm, count in shapes.values():
        per_link = _collective_links(topology, graph.fold, inst, span, algorithm, options,
                                     route)
        if per_link is None:
            skipped += count
            continue
        for link, nbytes in per_link.items():
            out[link] += nbytes * count
    if result.meta.get("backend") == "analytical":  # sends moved no messages either
        sends: Pairs = defaultdict(float)  # a pipeline pair sends once per micro-batch
        for pair in graph.p2p_pairs():
            if pair.nbytes > 0:
                sends[(pair.src, pair.dst)] += pair.nbytes
        for (src, dst), total in sends.items():
            routed = _route_pairs({(src, dst): total}, _images(graph.fold, (src, dst)), route)
            for link, nbytes in routed.items():
                out[link] += nbytes
    return dict(out), skipped


def _collective_links(topology: Topology, fold: Fold | None, inst, span: tuple[int, ...],
                      algorithm: str, options: EngineOptions,
                      route: Callable[[int, int, int], tuple[int, ...]]
                      ) -> dict[int, float] | None:
    """Link id -> bytes of one collective over ``span`` and its fold images; None for a node
    program (no step program to lay out)."""
    if plan_class(inst.collective, algorithm).node_program:
        return None
    chunks, _, plan = closed_form_plan(inst, algorithm, options, topology.num_npus,
                                       logical_dims(topology, span, not options.astra))
    pairs: Pairs = defaultdict(float)
    for rank in span:
        for k in range(plan.num_steps(rank)):
            for peer, nbytes in plan.step(rank, k).sends:
                pairs[(rank, peer)] += nbytes * chunks
    return _route_pairs(pairs, _images(fold, span), route)
