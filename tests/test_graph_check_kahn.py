"""The cycle check (Kahn's algorithm over integer vertices) agrees with a reference
graphlib-based check on random graphs, names the same cycle, and a validated graph is not
checked again."""

from __future__ import annotations

import graphlib
import random

import pytest

import des.core.graph_check as graph_check
from des.core.graph import EventGraph, GraphError


def _reference_cycle(graph: EventGraph) -> list | None:
    """The old check: graphlib over tuple vertices, a collective one vertex."""
    vertex = {}
    for inst in graph._matched_for_reference:
        for rank, nid in inst.members.items():
            vertex[(rank, nid)] = ("coll", inst.index)
    sorter: graphlib.TopologicalSorter = graphlib.TopologicalSorter()
    for node in graph.all_nodes():
        v = vertex.get((node.rank, node.id), (node.rank, node.id))
        sorter.add(v, *(vertex.get((node.rank, d), (node.rank, d)) for d in node.deps))
    for p in graph._pairs_for_reference:
        sorter.add((p.dst, p.recv_id), (p.src, p.send_id))
    try:
        sorter.prepare()
    except graphlib.CycleError as err:
        return err.args[1]
    return None


def _random_graph(seed: int) -> EventGraph:
    rng = random.Random(seed)
    ranks = rng.randint(2, 4)
    g = EventGraph(ranks)
    for r in range(ranks):
        for _ in range(rng.randint(1, 6)):
            g.compute(r, duration_ns=1.0)
    g.collective_all("all_reduce", 64, group=list(range(ranks)))
    g.send(0, 1, 8, tag=1)
    g.recv(1, 0, 8, tag=1)
    for r in range(ranks):  # random extra deps, forward and (sometimes) backward
        nodes = list(g.nodes(r))
        for node in nodes:
            if rng.random() < 0.5:
                other = rng.choice(nodes)
                if other is not node or rng.random() < 0.1:
                    node.deps = (*node.deps, other.id)
    return g


@pytest.mark.parametrize("seed", range(60))
def test_cycle_check_matches_graphlib(seed: int) -> None:
    g = _random_graph(seed)
    checker = graph_check._Checker(g._nodes)
    collectives = checker.match_collectives()
    pairs = checker.match_p2p()
    g._matched_for_reference, g._pairs_for_reference = collectives, pairs
    cycle = _reference_cycle(g)
    if cycle is None:
        checker.check_acyclic(collectives, pairs)
    else:
        with pytest.raises(GraphError) as err:
            checker.check_acyclic(collectives, pairs)
        assert str(err.value) == checker.describe_cycle(cycle, collectives)
        assert "dependency cycle" in str(err.value)


def test_cycle_error_names_the_cycle() -> None:
    g = EventGraph(2)
    a = g.compute(0, duration_ns=1.0, name="a")
    s = g.send(0, 1, 8, deps=[a], name="s")
    r = g.recv(1, 0, 8, name="r")
    s1 = g.send(1, 0, 8, tag=2, deps=[r], name="back")
    del s1
    r0 = g.recv(0, 1, 8, tag=2, name="r0")
    g.node(0, a).deps = (r0,)
    with pytest.raises(GraphError) as err:
        g.validate()
    msg = str(err.value)
    assert msg.startswith("dependency cycle across ranks [0, 1]: ")
    for name in ("'a'", "'s'", "'r'", "'back'", "'r0'"):
        assert name in msg
    assert s == 1


def test_validated_graph_is_not_checked_again(monkeypatch: pytest.MonkeyPatch) -> None:
    g = EventGraph(2)
    g.collective_all("all_reduce", 64)
    calls = []
    real = graph_check.match
    monkeypatch.setattr(graph_check, "match", lambda by_rank: calls.append(1) or real(by_rank))
    g.validate(num_npus=2)
    g.validate(num_npus=4)
    g.collective_instances()
    g.p2p_pairs()
    assert len(calls) == 1
    g.compute(0, duration_ns=1.0)  # a change: checked again
    g.validate()
    assert len(calls) == 2


def test_group_checked_once_still_catches_bad_member() -> None:
    g = EventGraph(3)
    g.collective_all("all_reduce", 8, group=[0, 1])
    g.collective(2, "all_reduce", 8, group=[0, 1])  # rank 2 is not in its group
    with pytest.raises(GraphError, match="rank 2 is not in its group"):
        g.validate()
