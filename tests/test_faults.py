"""Faulty links: derates, hard failures with detours, random faults, timed faults mid-run."""

from __future__ import annotations

import pytest
from helpers import p2p_graph

import topologies as topo
from des.app.config import ConfigError, scenario_from_dict
from des.sim.engine import EngineOptions, SimulationError, simulate
from topologies import TopologyError
from topologies.faults import LinkFault, apply_faults, cables, random_faults, set_fault

BW, LAT = 50.0, 500.0


def test_derate_slows_exactly_the_flows_that_cross_it():
    ring = topo.ring(8, BW, 0.0, bidirectional=False)
    size = 8 * 2**20
    graph = p2p_graph(8, [(0, 1, size), (4, 5, size)])
    base = simulate(ring, graph).ops
    set_fault(ring, LinkFault(0, 1, derate=0.5, one_way=True))
    slow = simulate(ring, graph).ops
    end = {(op.rank, op.kind): op.end_ns for op in base}
    after = {(op.rank, op.kind): op.end_ns for op in slow}
    assert after[(0, "send")] == pytest.approx(end[(0, "send")] / 0.5)
    assert after[(4, "send")] == end[(4, "send")]


def test_failed_link_is_never_used_and_the_detour_is_taken():
    ring = topo.ring(8, BW, LAT)
    set_fault(ring, LinkFault(2, 3, down=True))
    path = ring.path_devices(ring.route(1, 4))
    assert path == [1, 0, 7, 6, 5, 4]
    r = simulate(ring, p2p_graph(8, [(1, 4, 2**20)]))
    used = {(lk.src, lk.dst) for lk in r.links if lk.bytes > 0}
    assert (2, 3) not in used and (3, 2) not in used
    assert used == {(1, 0), (0, 7), (7, 6), (6, 5), (5, 4)}


def test_unreachable_pair_names_the_pair_and_the_failed_links():
    ring = topo.ring(6, BW, LAT)
    apply_faults(ring, [LinkFault(0, 1, down=True), LinkFault(3, 4, down=True)])
    with pytest.raises(TopologyError, match=r"no route from 1 to 5; failed links: .*0-1.*3-4"):
        ring.route(1, 5)
    with pytest.raises(SimulationError, match="no route from 1 to 5"):
        simulate(ring, p2p_graph(6, [(1, 5, 64.0)]))


def test_fault_on_devices_that_are_not_joined_is_refused():
    with pytest.raises(TopologyError, match="no link joins devices 0 and 3"):
        set_fault(topo.ring(8, BW, LAT), LinkFault(0, 3, down=True))
    with pytest.raises(TopologyError, match="outside"):
        set_fault(topo.ring(8, BW, LAT), LinkFault(0, 30, down=True))


@pytest.mark.parametrize("kwargs", [{"derate": 0.0}, {"derate": 1.5}, {"derate": -1.0},
                                    {"at_ns": -5.0}, {"at_ns": 10.0, "until_ns": 5.0}])
def test_invalid_faults_are_refused(kwargs):
    with pytest.raises(TopologyError):
        LinkFault(0, 1, **kwargs)


def test_random_faults_are_reproducible_and_respect_count_rate_and_kinds():
    t = topo.ring(16, BW, LAT)
    a = random_faults(t, seed=7, count=3)
    assert a == random_faults(t, seed=7, count=3)
    assert len(a) == 3 and len({(f.src, f.dst) for f in a}) == 3
    assert {(f.src, f.dst) for f in random_faults(t, seed=1, rate=1.0)} == set(cables(t))
    assert random_faults(t, seed=1, rate=0.0) == []
    assert any(random_faults(t, seed=s, count=3) != a for s in range(8, 12))
    soft = random_faults(t, seed=2, count=2, down=False, derate=0.25)
    assert all(not f.down and f.derate == 0.25 for f in soft)
    sw = topo.switch(8, BW, LAT)
    assert random_faults(sw, seed=0, rate=1.0, kinds=["nothing"]) == []
    with pytest.raises(TopologyError, match="exactly one of rate or count"):
        random_faults(t, seed=1)
    with pytest.raises(TopologyError, match=r"count must be in 0\.\.16"):
        random_faults(t, seed=1, count=17)


def test_link_going_down_mid_run_reroutes_queued_chunks_and_loses_nothing():
    ring = topo.ring(8, BW, LAT)
    size = 64 * 2**20
    graph = p2p_graph(8, [(0, 1, size)])
    base = simulate(ring, graph)
    cut = 200_000.0
    r = simulate(ring, graph, options=EngineOptions(
        timed_faults=[LinkFault(0, 1, down=True, at_ns=cut)]))
    assert r.meta["reroutes"] > 0
    direct = next(lk for lk in r.links if (lk.src, lk.dst) == (0, 1))
    assert direct.bytes == pytest.approx(cut * BW)  # what crossed before the cut
    detour = next(lk for lk in r.links if (lk.src, lk.dst) == (0, 7))
    assert direct.bytes + detour.bytes >= size  # the interrupted chunk is resent whole
    assert r.makespan_ns > base.makespan_ns
    recv = next(op for op in r.ops if op.kind == "recv")
    assert recv.end_ns == r.makespan_ns
    assert all(lk.up for lk in ring.links)  # the caller's topology is restored


def test_timed_fault_recovers():
    ring = topo.ring(4, BW, LAT, bidirectional=False)
    # with the only path down from 1 us to 2 us, a send at t=0 of a long message waits:
    # no detour exists on a unidirectional ring, so the run must report it, not hang
    graph = p2p_graph(4, [(0, 1, 2**20)])
    with pytest.raises(SimulationError, match="no route from 0 to 1"):
        simulate(ring, graph, options=EngineOptions(
            timed_faults=[LinkFault(0, 1, down=True, at_ns=1000.0, until_ns=2000.0)]))


def test_timed_derate_slows_only_what_enters_after_it():
    ring = topo.ring(4, BW, 0.0, bidirectional=False)
    chunk = 2**20
    graph = p2p_graph(4, [(0, 1, 8 * chunk)])
    opts = dict(p2p_chunk_bytes=chunk, p2p_window=1)
    base = simulate(ring, graph, options=EngineOptions(**opts)).makespan_ns
    slowed = simulate(ring, graph, options=EngineOptions(
        **opts, timed_faults=[LinkFault(0, 1, derate=0.5, at_ns=base / 2)])).makespan_ns
    # half the chunks went at full rate, the other half at half rate
    assert slowed == pytest.approx(base / 2 + base / 2 / 0.5)


def test_scenario_faults_section():
    doc = {
        "topology": {"kind": "ring", "npus": 8, "bandwidth": "50 GB/s", "latency": "500 ns"},
        "faults": {"links": [{"link": [0, 1], "down": True},
                             {"link": "4-5", "derate": 0.5, "at": "1 us", "until": "2 us"}],
                   "random": {"seed": 3, "count": 2, "down": False, "derate": 0.25}},
        "workload": {"kind": "collectives", "ops": [{"collective": "all_reduce",
                                                     "size": "1 MiB"}]},
    }
    sc = scenario_from_dict(doc)
    down = [(lk.src, lk.dst) for lk in sc.topology.links if not lk.up]
    assert sorted(down) == [(0, 1), (1, 0)]
    assert sum(1 for lk in sc.topology.links if lk.derate == 0.25) in (2, 4)
    assert [f.label() for f in sc.options.timed_faults] == ["4-5 derate 0.5 from 1000 ns "
                                                            "until 2000 ns"]


@pytest.mark.parametrize(("faults", "message"), [
    ({"links": [{"link": [0, 1]}]}, "either down: true or a derate"),
    ({"links": [{"link": [0, 1], "down": True, "derate": 0.5}]}, "either down"),
    ({"links": [{"link": [0, 1], "derate": 1.5}]}, r"faults.links\[0\].derate"),
    ({"links": [{"link": "a-b", "down": True}]}, r"faults.links\[0\].link"),
    ({"links": [{"link": [0, 3], "down": True}]}, "no link joins devices 0 and 3"),
    ({"links": [{"link": [0, 1], "down": True, "when": 3}]}, "unknown key 'when'"),
    ({"links": [{"link": [0, 1], "down": True, "at": "2 us", "until": "1 us"}]},
     "must be after the start"),
    ({"random": {"seed": 1}}, "exactly one of rate or count"),
    ({"random": {"seed": 1, "rate": 2}}, r"faults.random.rate"),
    ({"links": {"link": [0, 1]}}, "expected a list of link faults"),
])
def test_scenario_fault_errors_name_the_key(faults, message):
    doc = {
        "topology": {"kind": "ring", "npus": 8, "bandwidth": "50 GB/s"},
        "faults": faults,
        "workload": {"kind": "collectives", "ops": [{"collective": "all_reduce", "size": 8}]},
    }
    with pytest.raises(ConfigError, match=message):
        scenario_from_dict(doc)
