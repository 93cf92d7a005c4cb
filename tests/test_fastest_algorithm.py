"""A list of algorithms for a collective type runs the fastest of them for each collective, by
the closed form the analytical backend times it with: the run equals the best single choice."""

from __future__ import annotations

import pytest

import topologies
from des.app.config import ConfigError, scenario_from_dict
from des.core.graph import EventGraph
from des.sim.analytical import analyze
from des.sim.engine import simulate
from des.sim.options import EngineOptions

CANDIDATES = ("rail_rings", "double_binary_tree", "auto")


def run(backend, algorithms, size: float) -> float:
    topo = topologies.superpod(2, gpus_per_node=4, nvlink_bandwidth=235.0, nic_bandwidth=24.0,
                               latency=1000.0)
    graph = EventGraph(8, "fastest")
    graph.collective_all("all_reduce", size)
    return backend(topo, graph, options=EngineOptions(
        chunks=1, algorithms={"all_reduce": algorithms})).makespan_ns


@pytest.mark.parametrize("size", [1e3, 1e6, 1e9])
def test_the_fastest_candidate_runs(size) -> None:
    singles = {name: run(analyze, name, size) for name in CANDIDATES}
    assert run(analyze, CANDIDATES, size) == min(singles.values())
    # the contended engine runs the same choice (nothing else contends here)
    assert run(simulate, CANDIDATES, size) == pytest.approx(
        run(simulate, min(singles, key=singles.get), size))


def test_latency_bound_and_bandwidth_bound_sizes_pick_differently() -> None:
    picks = set()
    for size in (1e3, 1e9):
        singles = {name: run(analyze, name, size) for name in CANDIDATES[:2]}
        picks.add(min(singles, key=singles.get))
    assert picks == {"rail_rings", "double_binary_tree"}


def scenario(algorithms) -> None:
    scenario_from_dict({"name": "x", "topology": {"kind": "switch", "npus": 4,
                                                  "bandwidth": "50 GB/s", "latency": "1 us"},
                        "network": {"algorithms": algorithms},
                        "workload": {"kind": "collectives",
                                     "ops": [{"collective": "all_reduce", "size": "1 MiB"}]}})


def test_a_list_of_algorithms_is_checked_name_by_name() -> None:
    scenario({"all_reduce": ["ring", "auto"]})
    with pytest.raises(ConfigError, match=r"network\.algorithms\.all_reduce\[1\]"):
        scenario({"all_reduce": ["ring", "no_such"]})
    with pytest.raises(ConfigError, match="empty list"):
        scenario({"all_reduce": []})


def test_candidates_that_cannot_run_the_group_are_passed_over() -> None:
    topo = topologies.switch(6, 50.0, 500.0)  # six ranks: no halving-doubling

    def makespan(algorithms):
        graph = EventGraph(6, "six")
        graph.collective_all("all_reduce", 1e6)
        return simulate(topo, graph, options=EngineOptions(
            algorithms={"all_reduce": algorithms})).makespan_ns

    assert makespan(("halving_doubling", "ring")) == makespan("ring")
    with pytest.raises(ValueError, match="none of the algorithms halving_doubling, torus2d"):
        makespan(("halving_doubling", "torus2d"))
