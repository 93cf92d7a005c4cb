"""Whether a folded graph is exact for the contended engine: the check the engine runs before
it trusts a fold, and that a workload parser runs to decide whether to fold at all.

A folded graph (:mod:`des.core.fold`) is exact on a topology when (1) every translation of its
fold maps the routes the representatives use onto identical, separate links
(:class:`topologies.symmetry.LinkOrbits`), and (2) every span collective's step program has the
fold's translations as its own symmetry (:func:`collectives.translation.fold_matches`), so a
representative's message to offset o stands for its receive from offset -o. The routes of (1)
are the sends' and, per span collective, the representative's sends in the plan the engine
will build (the algorithm and logical dimensions the backends choose, :mod:`des.sim.choices`).
"""

from __future__ import annotations

from collections.abc import Callable

from collectives.base import plan_class
from collectives.translation import span_plan
from collectives.translation import spans_match as plans_fit
from des.core.fold import Fold
from des.core.graph import CollectiveInstance, EventGraph
from des.sim.choices import algorithm_for
from des.sim.options import EngineOptions
from topologies.base import Topology
from topologies.symmetry import LinkOrbits

__all__ = ["fold_orbits", "fold_pairs", "spans_match"]

AlgorithmOf = Callable[[CollectiveInstance], str]

SMALL_GROUP = 64
"""Unfolded groups up to this size have every pair's route checked (their algorithm may send
between any two members); larger ones are never folded over."""


def orbits_of(topology: Topology, fold: Fold) -> LinkOrbits:
    """The fold's translations acting on ``topology``'s links, shared by every check and run on
    this topology until its routes or links change (the topology's route cache holds it, and
    it is relearnt when a link's state, derate or bandwidth differs from when it was learnt):
    learning the action costs one route per translation and representative route."""
    key = ("link-orbits", fold)
    orbits = topology._trees.get(key)
    if orbits is None or not orbits.current():  # a link changed since: prove it again
        orbits = topology._trees[key] = LinkOrbits(topology, fold.table_array())
    return orbits


def fold_pairs(graph: EventGraph, topology: Topology, options: EngineOptions,
               algorithm_of: AlgorithmOf) -> set[tuple[int, int]]:
    """The (source, destination) pairs whose routes an exact fold must map: sends, a span
    collective's representative to the peers its plan sends to (every span member for node
    programs, whose sends are not laid out in steps), small groups' every pair."""
    pairs = {(p.src, p.dst) for p in graph.p2p_pairs()}
    shapes: set[tuple] = set()  # the same collective recurs every layer: look at it once
    seen: set[tuple] = set()
    for inst in graph.collective_instances():
        shape = (inst.collective, inst.group, inst.span, inst.nbytes, inst.algorithm, inst.root)
        if shape in shapes:
            continue
        shapes.add(shape)
        algorithm = algorithm_of(inst)
        key = (inst.group, inst.span, algorithm)
        if key in seen:
            continue
        seen.add(key)
        rep = inst.group[0]
        if inst.span and plan_class(inst.collective, algorithm).node_program:
            pairs.update((rep, m) for m in inst.span if m != rep)
        elif inst.span:
            plan = span_plan(inst, algorithm, topology, options.plan_options)
            pairs.update((rep, peer) for k in range(plan.num_steps(rep))
                         for peer, _ in plan.step(rep, k).sends if peer != rep)
        elif len(inst.group) <= SMALL_GROUP:
            pairs.update((a, b) for a in inst.group for b in inst.group if a != b)
    return pairs


def fold_orbits(graph: EventGraph, topology: Topology, options: EngineOptions,
                algorithm_of: AlgorithmOf | None = None) -> LinkOrbits | None:
    """The link orbits of the graph's fold when they map every route the representatives use
    (condition 1 of the module doc), else None."""
    fold = graph.fold
    if fold is None or fold.count <= 1:
        return None
    algorithm_of = algorithm_of or (lambda inst: algorithm_for(inst, topology, options))
    orbits = orbits_of(topology, fold)
    pairs = fold_pairs(graph, topology, options, algorithm_of)
    return orbits if all(orbits.route(a, b) is not None for a, b in pairs) else None


def spans_match(graph: EventGraph, topology: Topology, options: EngineOptions) -> bool:
    """True when every span collective's plan, with the algorithm and plan options of a run
    with ``options``, has the fold's translations as its symmetry (condition 2 of the module
    doc; :func:`collectives.translation.spans_match`)."""
    return plans_fit(graph, topology, lambda inst: algorithm_for(inst, topology, options),
                     options.plan_options)
