"""Collectives in the engine: transport modes on a switch, sharing between groups, chunking,
endpoint and reduction overheads, and their scenario-file knobs."""

from __future__ import annotations

import math

import pytest

import topologies as topo
from des.app.config import ConfigError, scenario_from_dict
from des.core.graph import EventGraph
from des.sim.engine import simulate
from des.sim.options import EngineOptions

BW, LAT = 50.0, 500.0


def allreduce(n: int, size: float, group=None, algorithm=None) -> EventGraph:
    g = EventGraph(n)
    g.collective_all("all_reduce", size, group=group, algorithm=algorithm)
    return g


def test_ring_on_a_switch_pays_one_serialization_per_step_cut_through_two_store_forward():
    n, size = 8, 2**26
    s = size / n / BW
    sw = topo.switch(n, BW, LAT)
    ct = simulate(sw, allreduce(n, size), options=EngineOptions(chunks=1)).makespan_ns
    saf = simulate(sw, allreduce(n, size), options=EngineOptions(
        chunks=1, transport="store_and_forward")).makespan_ns
    steps = 2 * (n - 1)
    packet = EngineOptions().packet_bytes / BW
    assert ct == pytest.approx(steps * (s + packet + 2 * LAT), rel=1e-9)
    assert saf == pytest.approx(steps * (2 * s + 2 * LAT), rel=1e-9)
    assert saf / ct == pytest.approx(2.0, rel=0.01)


def test_allreduces_on_disjoint_ring_arcs_do_not_slow_each_other_but_shared_links_do():
    n, size = 8, 2**24
    ring = topo.ring(n, BW, LAT, bidirectional=False)
    opts = EngineOptions(chunks=1, comm_streams=2)
    alone = simulate(ring, allreduce(n, size, group=[0, 1, 2, 3]), options=opts).makespan_ns
    disjoint = EventGraph(n)
    disjoint.collective_all("all_reduce", size, group=[0, 1, 2, 3])
    disjoint.collective_all("all_reduce", size, group=[4, 5, 6, 7])
    # on a one-way ring the group 0..3 closes its ring through 4..7's arc: 3 -> 0 crosses
    # links 3->4 ... 7->0, which the second group also uses
    shared = simulate(ring, disjoint, options=opts).makespan_ns
    assert shared > alone * 1.2
    fc = topo.fully_connected(n, BW, LAT)
    alone_fc = simulate(fc, allreduce(n, size, group=[0, 1, 2, 3]), options=opts).makespan_ns
    assert simulate(fc, disjoint, options=opts).makespan_ns == alone_fc


def test_chunk_size_sets_the_number_of_chunks():
    n = 4
    opts = EngineOptions(chunk_bytes=3 * 2**20)
    r = simulate(topo.ring(n, BW, LAT), allreduce(n, 16 * 2**20), options=opts)
    assert r.collectives[0].chunks == math.ceil(16 / 3)


def test_endpoint_delay_and_reduction_add_exactly_their_cost_per_step():
    n, size = 4, 2**22
    ring = topo.ring(n, BW, LAT)
    base = simulate(ring, allreduce(n, size), options=EngineOptions(chunks=1)).makespan_ns
    e = 100.0
    with_e = simulate(ring, allreduce(n, size), options=EngineOptions(
        chunks=1, endpoint_delay_ns=e)).makespan_ns
    steps = 2 * (n - 1)
    assert with_e - base == pytest.approx(e * (steps + 1))  # once at start, once per step
    red_bw = 1000.0
    with_r = simulate(ring, allreduce(n, size), options=EngineOptions(
        chunks=1, reduction_bandwidth=red_bw)).makespan_ns
    assert with_r - base == pytest.approx((n - 1) * 3 * (size / n) / red_bw)


def test_chunks_in_flight_one_serialises_chunks():
    n, size = 4, 2**22
    ring = topo.ring(n, BW, LAT)
    one = simulate(ring, allreduce(n, size / 4), options=EngineOptions(chunks=1)).makespan_ns
    serial = simulate(ring, allreduce(n, size), options=EngineOptions(
        chunks=4, chunks_in_flight=1)).makespan_ns
    assert serial == pytest.approx(4 * one)


def test_auto_records_the_algorithm_that_ran():
    g = EventGraph(16)
    g.collective_all("all_reduce", 2**26, algorithm="auto")
    r = simulate(topo.torus2d(4, 4, BW, LAT), g)
    assert r.collectives[0].algorithm == "torus2d"
    small = EventGraph(8)
    small.collective_all("all_reduce", 4096, algorithm="auto")
    assert simulate(topo.switch(8, BW, LAT), small).collectives[0].algorithm == \
        "halving_doubling"


def _doc(**network):
    return {"topology": {"kind": "ring", "npus": 8, "bandwidth": "50 GB/s",
                         "latency": "500 ns"},
            "hardware": "A100-SXM4-80GB",
            "network": network,
            "workload": {"kind": "collectives", "ops": [
                {"collective": "all_reduce", "size_range": {"from": "1 MiB", "to": "16 MiB",
                                                            "factor": 4}},
                {"collective": "all_to_all", "sizes": ["1 MiB", "2 MiB"], "algorithm": "auto"},
            ]}}


def test_scenario_network_knobs():
    sc = scenario_from_dict(_doc(algorithms={"all_reduce": "ring_bidir"}, chunk_size="1 MiB",
                                 endpoint_delay="20 ns", reduction="hbm", window=2))
    o = sc.options
    assert o.algorithms == {"all_reduce": "ring_bidir"} and o.chunk_bytes == 2**20
    assert o.endpoint_delay_ns == 20.0 and o.window == 2
    assert o.reduction_bandwidth == sc.hardware.hbm_bandwidth
    sizes = [inst.nbytes for inst in sc.graph.collective_instances()]
    assert sizes == [2**20, 2**22, 2**24, 2**20, 2**21]


def test_scenario_astra_models():
    aware = scenario_from_dict(_doc(model="astra_congestion_aware", chunks=2,
                                    reduction="1600 GB/s")).options
    assert aware.quantize and aware.contention and aware.chunks == 2
    assert aware.reduction_bandwidth == 1600.0 and aware.endpoint_delay_ns == 10.0
    unaware = scenario_from_dict(_doc(model="astra_congestion_unaware")).options
    assert not unaware.contention and unaware.chunks_in_flight == 1


@pytest.mark.parametrize(("network", "message"), [
    ({"model": "astra"}, "network.model"),
    ({"algorithms": {"all_reduce": "fastest"}}, r"network.algorithms.all_reduce: no algorithm"),
    ({"algorithms": {"allreduce3": "ring"}}, "network.algorithms.allreduce3"),
    ({"reduction": "hbm?"}, "network.reduction"),
    ({"chunk_size": 0}, "network.chunk_size: must be > 0"),
    ({"window": -1}, "network.window"),
    ({"dim_algorithms": "ring"}, "network.dim_algorithms"),
])
def test_scenario_network_errors(network, message):
    with pytest.raises(ConfigError, match=message):
        scenario_from_dict(_doc(**network))


def test_size_range_and_size_are_exclusive():
    doc = _doc()
    doc["workload"]["ops"][0]["size"] = "1 MiB"
    with pytest.raises(ConfigError, match="only one of size, sizes or size_range"):
        scenario_from_dict(doc)
