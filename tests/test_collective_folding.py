"""A collectives scenario folds onto rank 0 where the topology's translations prove it exact: on a
D-mod-K fat tree, an all-to-all (and any direct collective) run for one host gives every host's
finish and every link's bytes, messages and busy time of the unfolded run; where anything
breaks the symmetry (ECMP hashing, a subgroup, AstraSim's cyclic peer order, a fault) it is not
folded."""

from __future__ import annotations

import pytest

from des.app.config import scenario_from_dict
from des.sim.analytical import analyze
from des.sim.engine import simulate


def scenario(k: int = 4, ops=None, fold: str = "auto", network=None, topology=None,
             backend: str = "simpy", **extra):
    ops = ops or [{"collective": "all_to_all", "size": "1 MiB", "repeat": 2}]
    return scenario_from_dict({
        "name": "fold",
        "topology": {"kind": "fat_tree", "k": k, "bandwidth": "400 Gb/s", "latency": "500 ns",
                     "switch_latency": "200 ns", **(topology or {})},
        "network": {"chunks": 4, **(network or {})},
        "workload": {"kind": "collectives", "fold": fold, "ops": ops}, **extra},
        backend=backend)


def run(sc, backend=simulate):
    return backend(sc.topology, sc.graph, options=sc.options)


def assert_same(folded, unfolded) -> None:
    assert folded.makespan_ns == pytest.approx(unfolded.makespan_ns, rel=1e-12)
    assert sorted(folded.ranks) == sorted(unfolded.ranks)
    for rank, stats in unfolded.ranks.items():
        assert folded.ranks[rank].finished_ns == pytest.approx(stats.finished_ns, rel=1e-12)
    for a, b in zip(unfolded.links, folded.links, strict=True):
        assert (b.id, b.bytes, b.messages) == (a.id, a.bytes, a.messages), b.id
        assert b.busy_ns == pytest.approx(a.busy_ns, rel=1e-12, abs=1e-9), b.id
    assert folded.meta["messages"] == unfolded.meta["messages"]
    assert folded.meta["bytes_delivered"] == pytest.approx(unfolded.meta["bytes_delivered"])


@pytest.mark.parametrize(("k", "ops"), [
    (4, [{"collective": "all_to_all", "size": "1 MiB", "repeat": 2}]),
    (8, [{"collective": "all_to_all", "size": "4 MiB"}]),
    (4, [{"collective": "reduce_scatter", "size": "2 MiB", "algorithm": "direct"},
         {"collective": "all_gather", "size": "2 MiB", "algorithm": "direct"},
         {"collective": "all_reduce", "size": "1 MiB", "algorithm": "direct"}]),
])
def test_folded_collectives_equal_the_unfolded_run(k, ops) -> None:
    folded_sc, plain_sc = scenario(k, ops), scenario(k, ops, fold="none")
    assert folded_sc.graph.fold is not None and plain_sc.graph.fold is None
    # the folded graph holds rank 0's nodes only
    assert {n.rank for n in folded_sc.graph.all_nodes()} == {0}
    folded, plain = run(folded_sc), run(plain_sc)
    hosts = folded_sc.topology.num_npus
    assert folded.meta["folded"]["exact"] and folded.meta["folded"]["copies"] == hosts
    assert_same(folded, plain)
    # every host and link has its figures, copied from its representative
    assert all(s.represented_by == 0 for r, s in folded.ranks.items() if r)
    assert sum(lk.bytes for lk in folded.links if lk.kind == "host-edge") > 0


def test_windowed_all_to_all_folds_and_equals_the_unfolded_run() -> None:
    network = {"window": 3, "chunks": 1}
    folded_sc = scenario(4, network=network)
    assert folded_sc.graph.fold is not None
    assert_same(run(folded_sc), run(scenario(4, network=network, fold="none")))


def test_the_closed_form_backend_gives_the_same_on_the_folded_graph() -> None:
    folded_sc = scenario(4, backend="analytical")
    assert folded_sc.graph.fold is not None
    plain_sc = scenario(4, fold="none", backend="analytical")
    folded, plain = run(folded_sc, analyze), run(plain_sc, analyze)
    assert folded.makespan_ns == pytest.approx(plain.makespan_ns, rel=1e-12)


@pytest.mark.parametrize("breaks", ["ecmp", "subgroup", "astra", "fault", "ring"])
def test_nothing_folds_where_the_symmetry_is_not_proven(breaks) -> None:
    if breaks == "ecmp":  # hashed routes do not commute with the translations
        sc = scenario(4, topology={"routing": "ecmp"})
    elif breaks == "subgroup":
        sc = scenario(4, ops=[{"collective": "all_to_all", "size": "1 MiB",
                               "group": list(range(8))}])
    elif breaks == "astra":  # AstraSim's direct takes peers in cyclic order, not by coordinate
        sc = scenario(4, network={"model": "astra_congestion_aware"})
    elif breaks == "fault":
        sc = scenario(4, faults={"links": [{"link": [0, 16], "derate": 0.5}]})
    else:  # a flat ring over the hosts in id order is cyclic, not a grid translation
        sc = scenario(4, ops=[{"collective": "all_reduce", "size": "1 MiB",
                               "algorithm": "ring"}])
    assert sc.graph.fold is None


def test_a_link_changed_after_the_fold_was_proven_is_not_trusted() -> None:
    sc = scenario(4)
    assert sc.graph.fold is not None
    sc.topology.links[0].derate = 0.25  # no invalidate_routes: the proof must notice
    result = run(sc)
    assert not result.meta["folded"]["exact"]
