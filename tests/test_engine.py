"""Engine physics against closed forms: hops, both transport modes, sharing, ring all-reduce,
roofline, overlap, stragglers, byte conservation, determinism and stall diagnosis."""

from __future__ import annotations

import dataclasses
import itertools
import math

import pytest
from helpers import circular_wait_graph, p2p_graph

import topologies as topo
from des.core.graph import EventGraph
from des.core.hardware import compute_time_ns, load_gpu
from des.sim.engine import EngineOptions, SimulationError, simulate
from topologies.base import Topology

BW, LAT = 50.0, 500.0  # bytes/ns (50 GB/s), ns


def one_message(**kw) -> EngineOptions:
    """Options under which a send is one message (no p2p chunking)."""
    return EngineOptions(p2p_chunk_bytes=1 << 40, **kw)


def chain(bandwidths: list[float], latencies: list[float], switch_latency: float = 0.0
          ) -> Topology:
    """NPU 0 -> switches -> NPU 1 through len(bandwidths) links."""
    t = Topology("chain", 2)
    devices = [0] + [t.add_switch(switch_latency) for _ in bandwidths[1:]] + [1]
    for (a, b), bw, lat in zip(itertools.pairwise(devices), bandwidths, latencies, strict=True):
        t.add_link(a, b, bw, lat)
    return t


# ---------------------------------------------------------------------- transport modes
@pytest.mark.parametrize("hops", [1, 2, 3, 5])
def test_multi_hop_store_and_forward_matches_closed_form(hops):
    size = 3e6
    ring = topo.ring(8, BW, LAT, bidirectional=False)
    r = simulate(ring, p2p_graph(8, [(0, hops, size)]),
                 options=one_message(transport="store_and_forward"))
    assert r.makespan_ns == pytest.approx(hops * (size / BW + LAT), rel=1e-12)


@pytest.mark.parametrize("hops", [1, 2, 3, 5])
@pytest.mark.parametrize("packet", [512.0, 4096.0])
def test_multi_hop_cut_through_matches_closed_form(hops, packet):
    size = 3e6
    ring = topo.ring(8, BW, LAT, bidirectional=False)
    r = simulate(ring, p2p_graph(8, [(0, hops, size)]),
                 options=one_message(transport="cut_through", packet_bytes=packet))
    expected = size / BW + (hops - 1) * packet / BW + hops * LAT
    assert r.makespan_ns == pytest.approx(expected, rel=1e-12)


def test_cut_through_is_limited_by_the_slowest_link_either_side():
    size, pkt = 1e6, 4096.0
    opts = one_message(packet_bytes=pkt)
    # slow second link: its serialization dominates
    r = simulate(chain([100.0, 25.0], [100.0, 200.0]), p2p_graph(2, [(0, 1, size)]), options=opts)
    assert r.makespan_ns == pytest.approx(pkt / 100.0 + 100.0 + size / 25.0 + 200.0, rel=1e-12)
    # slow first link: the tail arrives late, the fast link waits for it
    r = simulate(chain([25.0, 100.0], [100.0, 200.0]), p2p_graph(2, [(0, 1, size)]), options=opts)
    assert r.makespan_ns == pytest.approx(size / 25.0 + 100.0 + pkt / 100.0 + 200.0, rel=1e-12)


def test_switch_forwarding_latency_is_paid_per_switch():
    size = 1e6
    t = chain([BW, BW, BW], [LAT] * 3, switch_latency=300.0)
    r = simulate(t, p2p_graph(2, [(0, 1, size)]),
                 options=one_message(transport="store_and_forward"))
    assert r.makespan_ns == pytest.approx(3 * (size / BW + LAT) + 2 * 300.0, rel=1e-12)


def test_zero_byte_message_pays_only_latency():
    ring = topo.ring(4, BW, LAT, bidirectional=False)
    r = simulate(ring, p2p_graph(4, [(0, 2, 0.0)]), options=one_message())
    assert r.makespan_ns == pytest.approx(2 * LAT)


# ---------------------------------------------------------------------- contention
def test_two_flows_sharing_a_link_each_take_about_twice_as_long():
    size = 64 * 2**20  # 64 chunks of 1 MiB
    sw = topo.switch(4, BW, LAT)
    alone = simulate(sw, p2p_graph(4, [(0, 2, size)])).makespan_ns
    shared = simulate(sw, p2p_graph(4, [(0, 2, size), (1, 2, size)]))
    sends = [op.end_ns for op in shared.ops if op.kind == "send"]
    window = EngineOptions().p2p_window * EngineOptions().p2p_chunk_bytes / BW
    for end in sends:  # both finish near 2x; the first at most one window earlier
        assert 2 * alone - window - 2 * LAT <= end <= 2 * alone + 1e-6
    downlink = next(lk for lk in shared.links if (lk.src, lk.dst) == (4, 2))
    assert downlink.bytes == 2 * size


def test_flows_on_disjoint_links_do_not_slow_each_other():
    size = 8 * 2**20
    sw = topo.switch(4, BW, LAT)
    alone = simulate(sw, p2p_graph(4, [(0, 2, size)])).makespan_ns
    both = simulate(sw, p2p_graph(4, [(0, 2, size), (1, 3, size)]))
    assert [op.end_ns for op in both.ops if op.kind == "send"] == [alone, alone]


def test_fifo_link_queues_a_second_message_behind_the_first():
    size = 1e6
    sw = topo.switch(3, BW, LAT)
    r = simulate(sw, p2p_graph(3, [(0, 2, size), (1, 2, size)]),
                 options=one_message(transport="store_and_forward"))
    ends = sorted(op.end_ns for op in r.ops if op.kind == "send")
    # uplinks in parallel, then the shared downlink serves one message after the other
    assert ends == pytest.approx([2 * (size / BW + LAT), 3 * size / BW + 2 * LAT])
    downlink = next(lk for lk in r.links if (lk.src, lk.dst) == (3, 2))
    assert downlink.peak_queue == 2


def test_derated_link_slows_its_flow_by_one_over_derate():
    size = 4e6
    ring = topo.ring(4, BW, 0.0, bidirectional=False)
    base = simulate(ring, p2p_graph(4, [(0, 1, size)]), options=one_message()).makespan_ns
    ring.links[0].derate = 0.25
    slow = simulate(ring, p2p_graph(4, [(0, 1, size)]), options=one_message()).makespan_ns
    assert slow == pytest.approx(base / 0.25)


# ---------------------------------------------------------------------- collectives
@pytest.mark.parametrize("n", [2, 4, 8, 16])
@pytest.mark.parametrize("transport", ["store_and_forward", "cut_through"])
def test_ring_allreduce_matches_2_n_minus_1_steps(n, transport):
    size = 2**24
    g = EventGraph(n)
    g.collective_all("all_reduce", size, algorithm="ring")
    r = simulate(topo.ring(n, BW, LAT), g, options=EngineOptions(chunks=1, transport=transport))
    expected = 2 * (n - 1) * (size / n / BW + LAT)
    assert r.makespan_ns == pytest.approx(expected, rel=1e-12)
    coll = r.collectives[0]
    assert coll.busbw_GBps == pytest.approx(size / expected * 2 * (n - 1) / n)


@pytest.mark.parametrize("kind", ["all_gather", "reduce_scatter"])
def test_ring_allgather_and_reducescatter_take_n_minus_1_steps(kind):
    n, size = 8, 2**24
    g = EventGraph(n)
    g.collective_all(kind, size)
    r = simulate(topo.ring(n, BW, LAT), g, options=EngineOptions(chunks=1))
    assert r.makespan_ns == pytest.approx((n - 1) * (size / n / BW + LAT), rel=1e-12)


def test_chunking_pipelines_the_ring_but_never_beats_the_bandwidth_bound():
    n, size = 8, 2**24
    g = EventGraph(n)
    g.collective_all("all_reduce", size, algorithm="ring")
    ring = topo.ring(n, BW, LAT)
    times = [simulate(ring, g, options=EngineOptions(chunks=c)).makespan_ns for c in (1, 2, 4, 8)]
    bound = 2 * (n - 1) / n * size / BW
    assert all(t >= bound for t in times)
    assert all(a >= b * (1 - 1e-12) for a, b in itertools.pairwise(times))
    assert times[0] - times[-1] > 0  # chunks hide per-step latency...
    # ...until the ring is saturated: every link busy from t=0, one latency at the end
    assert times[-1] == pytest.approx(bound + LAT, rel=1e-12)


def test_every_byte_of_a_ring_allreduce_crosses_exactly_the_expected_links():
    n, size, chunks = 6, 6 * 2**20, 3
    g = EventGraph(n)
    g.collective_all("all_reduce", size, algorithm="ring")
    r = simulate(topo.ring(n, BW, LAT), g, options=EngineOptions(chunks=chunks))
    per_link = 2 * (n - 1) * size / n  # each forward link carries every step's slice
    forward = [lk for lk in r.links if (lk.dst - lk.src) % n == 1]
    assert [lk.bytes for lk in forward] == pytest.approx([per_link] * n)
    assert sum(lk.bytes for lk in r.links) == pytest.approx(n * per_link)
    assert all(lk.messages == 2 * (n - 1) * chunks for lk in forward)


def test_bytes_are_conserved_on_a_switch_all_to_all():
    n, size = 8, 8 * 2**20
    g = EventGraph(n)
    g.collective_all("all_to_all", size)
    r = simulate(topo.switch(n, BW, LAT), g, options=EngineOptions(chunks=2))
    sent = n * (n - 1) * size / n
    up = sum(lk.bytes for lk in r.links if lk.kind == "uplink")
    down = sum(lk.bytes for lk in r.links if lk.kind == "downlink")
    assert up == pytest.approx(sent) and down == pytest.approx(sent)
    assert r.meta["hops"] == 2 * r.meta["messages"]


def test_collectives_on_disjoint_halves_of_a_ring_run_concurrently():
    size = 2**22
    solo = EventGraph(8)
    solo.collective_all("all_reduce", size, group=[0, 1, 2, 3])
    both = EventGraph(8)
    both.collective_all("all_reduce", size, group=[0, 1, 2, 3])
    both.collective_all("all_reduce", size, group=[4, 5, 6, 7])
    fc = topo.fully_connected(8, BW, LAT)
    t_solo = simulate(fc, solo, options=EngineOptions(chunks=1)).makespan_ns
    t_both = simulate(fc, both, options=EngineOptions(chunks=1)).makespan_ns
    assert t_both == t_solo


# ---------------------------------------------------------------------- compute side
def test_roofline_compute_and_memory_bound_nodes():
    gpu = load_gpu("A100-SXM4-80GB")
    g = EventGraph(1)
    heavy = g.compute(0, flops=1e13, nbytes=1e6, op_class="gemm")
    g.compute(0, flops=1e6, nbytes=1e10, op_class="elementwise", deps=[heavy])
    r = simulate(topo.Topology("one", 1), g, hardware=gpu)
    peak, (eff_c, _) = gpu.peak_flops["bf16"], gpu.efficiency["gemm"]
    _, eff_m = gpu.efficiency["elementwise"]
    expected = (1e13 / (peak * eff_c) + gpu.launch_overhead_ns
                + 1e10 / (gpu.hbm_bandwidth * eff_m) + gpu.launch_overhead_ns)
    assert r.makespan_ns == pytest.approx(expected, rel=1e-12)
    assert r.makespan_ns == pytest.approx(
        compute_time_ns(gpu, 1e13, 1e6, "gemm") + compute_time_ns(gpu, 1e6, 1e10, "elementwise"))


def test_memory_nodes_move_bytes_at_hbm_bandwidth_and_slow_with_speed():
    gpu = load_gpu("H100-SXM5-80GB")
    g = EventGraph(1)
    load = g.memory(0, 3e9, op="load")
    g.memory(0, 1e9, op="store", deps=[load])
    eff = gpu.efficiency["default"][1]
    r = simulate(topo.Topology("one", 1), g, hardware=gpu)
    assert r.makespan_ns == pytest.approx(4e9 / (gpu.hbm_bandwidth * eff), rel=1e-12)
    slow = simulate(topo.Topology("one", 1), g, hardware=gpu, options=EngineOptions(speed={0: 0.5}))
    assert slow.makespan_ns == pytest.approx(2 * r.makespan_ns, rel=1e-12)


def test_straggler_speed_scales_compute_time():
    g = EventGraph(2)
    g.compute(0, duration_ns=1000.0)
    g.compute(1, duration_ns=1000.0)
    r = simulate(topo.ring(2, BW, LAT), g, options=EngineOptions(speed={1: 0.25}))
    assert r.ranks[0].finished_ns == 1000.0
    assert r.ranks[1].finished_ns == 4000.0


def test_straggler_delays_the_collective_for_everyone():
    n, size, work = 4, 2**20, 1e5
    g = EventGraph(n)
    pre = {r: (g.compute(r, duration_ns=work),) for r in range(n)}
    g.collective_all("all_reduce", size, deps=pre, algorithm="ring")
    ring = topo.ring(n, BW, LAT)
    ar = 2 * (n - 1) * (size / n / BW + LAT)
    r = simulate(ring, g, options=EngineOptions(chunks=1, speed={2: 0.5}))
    assert r.makespan_ns == pytest.approx(2 * work + ar)
    # waiting inside the collective for the late peer is communication time, as NCCL kernel
    # timings (and AstraSim's exposed communication) count it
    assert r.ranks[0].exposed_comm_ns == pytest.approx(work + ar)
    # the straggler's first receive is already waiting when it joins: one latency less
    assert r.ranks[2].exposed_comm_ns == pytest.approx(ar - LAT)


def test_communication_overlaps_independent_compute():
    n, size = 4, 2**22
    ring = topo.ring(n, BW, LAT)
    ar = 2 * (n - 1) * (size / n / BW + LAT)
    work = 3 * ar
    g = EventGraph(n)
    for r in range(n):
        g.compute(r, duration_ns=work)
    g.collective_all("all_reduce", size, algorithm="ring")
    res = simulate(ring, g, options=EngineOptions(chunks=1))
    assert res.makespan_ns == pytest.approx(work)
    st = res.ranks[0]
    assert st.exposed_comm_ns == 0.0 and st.overlap_ns == pytest.approx(ar)

    dep = EventGraph(n)
    pre = {r: (dep.compute(r, duration_ns=work),) for r in range(n)}
    dep.collective_all("all_reduce", size, deps=pre, algorithm="ring")
    res = simulate(ring, dep, options=EngineOptions(chunks=1))
    assert res.makespan_ns == pytest.approx(work + ar)
    assert res.ranks[0].exposed_comm_ns == pytest.approx(ar)


def test_compute_stream_runs_one_node_at_a_time():
    g = EventGraph(1)
    for _ in range(3):
        g.compute(0, duration_ns=10.0)
    r = simulate(topo.Topology("one", 1), g)
    assert r.makespan_ns == 30.0
    assert [(op.start_ns, op.end_ns) for op in r.ops] == [(0, 10), (10, 20), (20, 30)]


def test_comm_streams_limit_concurrent_collectives():
    n, size = 4, 2**22
    g = EventGraph(n)
    g.collective_all("all_reduce", size, group=[0, 1])
    g.collective_all("all_reduce", size, group=[0, 2])
    fc = topo.fully_connected(n, BW, LAT)
    one = simulate(fc, g, options=EngineOptions(chunks=1, comm_streams=1)).makespan_ns
    two = simulate(fc, g, options=EngineOptions(chunks=1, comm_streams=2)).makespan_ns
    single = 2 * (size / 2 / BW + LAT)
    assert one == pytest.approx(2 * single) and two == pytest.approx(single)


def test_flops_without_hardware_is_an_error():
    g = EventGraph(1)
    g.compute(0, flops=1e9, name="gemm")
    with pytest.raises(SimulationError, match=r"'gemm'.*no hardware model"):
        simulate(topo.Topology("one", 1), g)


# ---------------------------------------------------------------------- p2p semantics
def test_late_receive_completes_when_posted_and_counts_no_comm_time():
    size = 1e6
    g = EventGraph(2)
    g.send(0, 1, size)
    wait = g.compute(1, duration_ns=1e6)
    g.recv(1, 0, size, deps=[wait])
    r = simulate(topo.ring(2, BW, LAT), g, options=one_message())
    recv = next(op for op in r.ops if op.kind == "recv")
    assert recv.start_ns == recv.end_ns == 1e6


def test_early_receive_waits_for_data():
    size = 1e6
    g = EventGraph(2)
    late = g.compute(0, duration_ns=5000.0)
    g.send(0, 1, size, deps=[late])
    g.recv(1, 0, size)
    r = simulate(topo.ring(2, BW, LAT), g, options=one_message())
    recv = next(op for op in r.ops if op.kind == "recv")
    assert recv.start_ns == 5000.0  # comm time starts when the sender is ready
    assert recv.end_ns == pytest.approx(5000.0 + size / BW + LAT)


@pytest.mark.parametrize("backend", ["simpy", "analytical"])
def test_rendezvous_sends_leave_when_the_receive_is_posted(backend):
    from des.sim.backends import run_backend
    size = 1e6
    g = EventGraph(2)
    g.send(0, 1, size)
    wait = g.compute(1, duration_ns=1e6)
    g.recv(1, 0, size, deps=[wait])
    ring = topo.ring(2, BW, LAT)
    eager = run_backend(backend, ring, g, options=one_message())
    rdv = run_backend(backend, ring, g,
                      options=dataclasses.replace(one_message(), p2p_rendezvous=True))
    send = {r: next(op for op in res.ops if op.kind == "send")
            for r, res in (("eager", eager), ("rdv", rdv))}
    assert send["eager"].start_ns == 0.0
    assert send["rdv"].start_ns == 1e6  # the receiver posted at 1 ms
    assert send["rdv"].end_ns == pytest.approx(1e6 + size / BW + LAT)
    assert rdv.makespan_ns == pytest.approx(eager.makespan_ns + size / BW + LAT)


def test_a_send_whose_receive_never_posts_is_diagnosed():
    # each rank receives only after its own send is done: fine when sends are eager, a
    # deadlock when each send waits for the other's receive
    g = EventGraph(2)
    for rank, peer in ((0, 1), (1, 0)):
        sent = g.send(rank, peer, 1e6, tag=rank)
        g.recv(rank, peer, 1e6, tag=peer, deps=[sent])
    ring = topo.ring(2, BW, LAT)
    assert simulate(ring, g, options=one_message()).makespan_ns > 0
    options = dataclasses.replace(one_message(), p2p_rendezvous=True)
    with pytest.raises(SimulationError, match=r"waits for its receive .* \(p2p: rendezvous\)"):
        simulate(ring, g, options=options)


# ---------------------------------------------------------------------- stalls, determinism
def test_circular_wait_on_comm_streams_is_diagnosed_not_hung():
    # No dependency cycle, but with one comm stream each rank grabs a different collective first.
    g = circular_wait_graph()
    fc = topo.fully_connected(3, BW, LAT)
    with pytest.raises(SimulationError, match=r"(?s)stalled .* ranks \[0\] joined, \[1\] did not"):
        simulate(fc, g, options=EngineOptions(comm_streams=1))
    assert simulate(fc, g, options=EngineOptions(comm_streams=2)).makespan_ns > 0


def test_two_runs_give_identical_results():
    def run():
        g = EventGraph(8)
        for r in range(8):
            g.compute(r, duration_ns=100.0 * (r + 1))
        g.collective_all("all_reduce", 3 * 2**20)
        g.collective_all("all_to_all", 2**20)
        res = simulate(topo.switch(8, BW, LAT), g)
        assert res.wall_seconds is not None and "wall_seconds" not in res.to_dict()["meta"]
        return res.to_dict()

    assert run() == run()


def test_progress_callback_reports_every_node():
    g = EventGraph(1)
    for _ in range(5):
        g.compute(0, duration_ns=1.0)
    seen = []
    from des.sim.engine import Simulator

    Simulator(topo.Topology("one", 1), g, options=EngineOptions(progress_every=2)).run(
        lambda done, total: seen.append((done, total)))
    assert seen[-1] == (5, 5) and (2, 5) in seen


def test_invalid_engine_options_are_rejected():
    for bad in ({"comm_streams": 0}, {"chunks": 0}, {"speed": {0: 0.0}},
                {"speed": {0: math.nan}}, {"transport": "teleport"}, {"p2p_window": 0}):
        with pytest.raises(ValueError):
            EngineOptions(**bad)
