"""AstraSim's congestion-unaware backend on multi-dimensional networks charges a message only in
the first dimension in which its two NPUs differ (astra-network-analytical,
congestion_unaware/multi-dim-topology/MultiDimTopology.cc, ``send`` and
``get_dim_to_transfer``); des's AstraSim-unaware mode follows it, its own models do not."""

from __future__ import annotations

import math

import pytest

import topologies as topo
from des.core.graph import EventGraph
from des.sim.analytical import analyze
from des.sim.engine import simulate
from des.sim.options import EngineOptions
from topologies.hierarchical import first_dimension_route

BW, LAT = 50.0, 500.0
SIZE = 1e6


def fc4_switch2():
    return topo.hierarchical([topo.DimSpec("fully_connected", 4, BW, LAT),
                              topo.DimSpec("switch", 2, BW, LAT)])


def one_send(src: int, dst: int) -> EventGraph:
    g = EventGraph(8)
    g.send(src, dst, SIZE)
    g.recv(dst, src, SIZE)
    return g


def test_the_first_differing_dimension_is_the_only_one_charged():
    t = fc4_switch2()
    # 2 -> 4: coordinates (2, 0) -> (0, 1) differ in both; AstraSim charges dimension 0 only
    (link,) = first_dimension_route(t, 2, 4)
    assert t.links[link].kind == "dim0-fully_connected"
    assert (t.links[link].src, t.links[link].dst) == (2, 0)
    assert len(t.route(2, 4)) == 3  # the real route also crosses the switch
    # 0 -> 4 differ in dimension 1 only: up and down the switch
    assert [t.links[i].kind for i in first_dimension_route(t, 0, 4)] == ["dim1-switch"] * 2
    assert first_dimension_route(t, 5, 5) == ()


@pytest.mark.parametrize("backend", [simulate, analyze])
def test_astra_unaware_times_a_message_on_its_first_dimension(backend):
    t = fc4_switch2()
    unaware = EngineOptions.astra_compat(congestion_aware=False)
    result = backend(t, one_send(2, 4), options=unaware)
    one_hop = math.floor(LAT + SIZE / BW)  # AstraSim floors the unaware time
    send = next(op for op in result.ops if op.kind == "send")
    assert send.end_ns - send.start_ns == pytest.approx(one_hop)
    # des's own congestion-unaware model charges the whole route
    own = backend(t, one_send(2, 4), options=EngineOptions(contention=False))
    own_send = next(op for op in own.ops if op.kind == "send")
    assert own_send.end_ns - own_send.start_ns > 2 * LAT + SIZE / BW
