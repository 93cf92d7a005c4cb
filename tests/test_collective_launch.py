"""A collective call's fixed launch time: every member's communication stream is taken for
``collective_launch_ns`` before the collective's data moves, in both backends alike."""

from __future__ import annotations

import pytest

import topologies
from des.app.config import ConfigError, scenario_from_dict
from des.core.graph import EventGraph
from des.sim.analytical import analyze
from des.sim.engine import simulate
from des.sim.options import EngineOptions


def chain(calls: int) -> EventGraph:
    graph = EventGraph(8, "chain")
    last: dict[int, int] = {}
    for _ in range(calls):
        last = graph.collective_all("all_reduce", 1e6,
                                    deps={r: (last[r],) for r in last} if last else None)
    return graph


@pytest.mark.parametrize("backend", [simulate, analyze])
def test_each_call_adds_its_launch_once(backend) -> None:
    topo = topologies.switch(8, 50.0, 500.0)
    base = backend(topo, chain(3), options=EngineOptions()).makespan_ns
    launched = backend(topo, chain(3), options=EngineOptions(collective_launch_ns=8400.0))
    assert launched.makespan_ns == pytest.approx(base + 3 * 8400.0)
    # the launch is the collective's own time on its stream
    first = min((op for op in launched.ops if op.rank == 0), key=lambda op: op.start_ns)
    assert first.start_ns == 0.0 and first.end_ns > 8400.0


def test_the_scenario_key_reads_a_time_and_refuses_a_negative_one() -> None:
    def load(value):
        return scenario_from_dict({
            "name": "x", "topology": {"kind": "switch", "npus": 4, "bandwidth": "50 GB/s",
                                      "latency": "1 us"},
            "network": {"collective_launch": value},
            "workload": {"kind": "collectives",
                         "ops": [{"collective": "all_reduce", "size": "1 MiB"}]}})

    assert load("8.4 us").options.collective_launch_ns == pytest.approx(8400.0)
    with pytest.raises(ConfigError, match="collective_launch"):
        load("-1 us")
