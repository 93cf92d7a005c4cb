"""Collectives on a rail-optimised superpod follow the rails, as NCCL's rail-aligned rings do:
groups spanning several GPUs of several nodes run per dimension (GPU in node, then node), so no
byte crosses rails through the spines, and the bus bandwidth is the NICs' aggregate rather
than one spine link's."""

from __future__ import annotations

import pytest

import topologies as topo
from des.core.graph import EventGraph
from des.sim.choices import logical_dims
from des.sim.engine import simulate
from des.sim.options import EngineOptions

NIC = 24.0
NVLINK = 230.0


def superpod(nodes: int):
    return topo.superpod(nodes, nvlink_bandwidth=NVLINK, nic_bandwidth=NIC, latency=1000.0)


def spine_bytes(result) -> float:
    return sum(link.bytes for link in result.links if link.kind == "leaf-spine")


def run(nodes: int, group: tuple[int, ...] | None, nbytes: float = 2.0**30, **kw):
    t = superpod(nodes)
    g = EventGraph(t.num_npus)
    g.collective_all("all_reduce", nbytes, group=group, **kw)
    return simulate(t, g, options=EngineOptions())


def test_superpod_dimensions_are_gpus_then_nodes():
    t = superpod(4)
    assert t.info.dims == (8, 4)
    assert logical_dims(t, tuple(range(32))) == (8, 4)
    assert logical_dims(t, tuple(range(8, 16))) == (8,)  # one node
    assert logical_dims(t, (3, 11, 19, 27)) == (4,)  # one rail
    strided = tuple(r for r in range(32) if r % 8 in (0, 4))
    assert logical_dims(t, strided) == (2, 4)  # any set of GPU indices per node
    assert logical_dims(t, (0, 1, 8)) is None  # not a product of coordinate sets
    assert logical_dims(t, strided, subgrids=False) is None  # AstraSim modes stay flat


@pytest.mark.parametrize("nodes", [2, 4])
def test_a_multi_node_all_reduce_stays_on_the_rails(nodes):
    result = run(nodes, None)
    (stats,) = result.collectives
    assert stats.algorithm == "hierarchical"
    assert spine_bytes(result) == 0.0
    n, size = 8 * nodes, 2.0**30
    # the inter-node phase alone: each GPU all-reduces 1/8 of the data over its rail's ring
    rail_phase = 2 * (nodes - 1) / nodes * size / 8 / NIC
    assert stats.time_ns > rail_phase
    # every NIC of every node carries its rail's share: nothing idles
    nic_bytes = [link.bytes for link in result.links if link.kind == "nic"]
    assert min(nic_bytes) == pytest.approx(max(nic_bytes))
    # far above one spine link's bandwidth (nodes x NIC / spines), which the flat ring hit
    flat = run(nodes, None, algorithm="ring")
    assert spine_bytes(flat) > 0
    assert stats.busbw_GBps > 5 * flat.collectives[0].busbw_GBps
    assert stats.busbw_GBps == pytest.approx(2 * (n - 1) / n * size / stats.time_ns)


def test_a_data_parallel_group_on_one_rail_runs_a_flat_ring_on_it():
    group = (5, 13, 21, 29)
    result = run(4, group)
    assert result.collectives[0].algorithm == "ring"
    assert spine_bytes(result) == 0.0


def test_a_strided_group_runs_per_dimension_without_crossing_rails():
    group = tuple(r for r in range(32) if r % 8 in (0, 4))
    result = run(4, group)
    assert result.collectives[0].algorithm == "hierarchical"
    assert spine_bytes(result) == 0.0
