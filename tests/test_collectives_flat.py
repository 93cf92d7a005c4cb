"""Flat collective algorithms: step-program invariants, alpha-beta closed forms, agreement with
the engine, and AstraSim's accounting (the per-chunk numbers of notes/astra_semantics.md s. 5)."""

from __future__ import annotations

import math
import random

import pytest
from helpers import check_aligned, reaches

import collectives.base as base
import topologies as topo
from collectives import barrier, direct, halving_doubling, pairwise, ring  # registers them
from collectives.base import (
    CollectiveError,
    PlanOptions,
    Step,
    algorithms_for,
    dry_run,
    make_plan,
)
from des.core.graph import CollectiveType as C
from des.core.graph import EventGraph
from des.sim.engine import EngineOptions, simulate

AR, RS, AG, A2A, BAR = C.ALL_REDUCE, C.REDUCE_SCATTER, C.ALL_GATHER, C.ALL_TO_ALL, C.BARRIER
SIZES = (2, 3, 4, 5, 8)

# (collective, algorithm) -> (steps, bytes sent / S, bytes reduced / S) per rank, as functions
# of the group size n
THEORY = {
    (AR, "ring"): lambda n: (2 * (n - 1), 2 * (n - 1) / n, (n - 1) / n),
    (RS, "ring"): lambda n: (n - 1, (n - 1) / n, (n - 1) / n),
    (AG, "ring"): lambda n: (n - 1, (n - 1) / n, 0.0),
    (A2A, "ring"): lambda n: (n * (n - 1) // 2, n * (n - 1) / 2 / n, 0.0),
    (AR, "ring_bidir"): lambda n: (2 * (n - 1), 2 * (n - 1) / n, (n - 1) / n),
    (RS, "ring_bidir"): lambda n: (n - 1, (n - 1) / n, (n - 1) / n),
    (AG, "ring_bidir"): lambda n: (n - 1, (n - 1) / n, 0.0),
    (A2A, "direct"): lambda n: (1, (n - 1) / n, 0.0),
    (RS, "direct"): lambda n: (1, (n - 1) / n, (n - 1) / n),
    (AG, "direct"): lambda n: (1, (n - 1) / n, 0.0),
    (AR, "direct"): lambda n: (2, 2 * (n - 1) / n, (n - 1) / n),
    (AR, "halving_doubling"): lambda n: (2 * _log2(n), 2 * (n - 1) / n, (n - 1) / n),
    (RS, "halving_doubling"): lambda n: (_log2(n), (n - 1) / n, (n - 1) / n),
    (AG, "halving_doubling"): lambda n: (_log2(n), (n - 1) / n, 0.0),
    (A2A, "pairwise"): lambda n: (n - 1, (n - 1) / n, 0.0),
    (BAR, "dissemination"): lambda n: (math.ceil(math.log2(n)), 0.0, 0.0),
}


def _log2(n: int) -> int:
    return n.bit_length() - 1


def _sizes(alg: str) -> tuple[int, ...]:
    return tuple(n for n in SIZES if alg != "halving_doubling" or n & (n - 1) == 0)


CASES = [(c, a, n) for (c, a) in THEORY for n in _sizes(a)]
CASE_IDS = [f"{c.value}-{a}-{n}" for c, a, n in CASES]


def scrambled(n: int) -> list[int]:
    """Group members that are neither 0..n-1 nor sorted, so position/rank mix-ups show."""
    return random.Random(n).sample(range(3 * n + 5), n)


# ------------------------------------------------------------------------- step programs
@pytest.mark.parametrize(("ctype", "alg", "n"), CASES, ids=CASE_IDS)
def test_step_programs_are_aligned_and_move_the_theoretical_bytes(ctype, alg, n):
    size = 3.0 * 2**20
    plan = make_plan(ctype, scrambled(n), size, alg)
    steps, sent, reduced = THEORY[(ctype, alg)](n)
    assert plan.algorithm == alg
    assert check_aligned(plan) == steps
    for r in plan.group:
        assert plan.bytes_sent(r) == pytest.approx(sent * size, rel=1e-12, abs=1e-9)
        red = sum(plan.step(r, k).reduce_bytes for k in range(steps))
        assert red == pytest.approx(reduced * size, rel=1e-12, abs=1e-9)
        assert all(plan.step(r, k).dim == 0 for k in range(steps))
    # every rank ends up depending on every other one (data or barrier arrival)
    assert all(s == set(plan.group) for s in reaches(plan).values())


@pytest.mark.parametrize("n", SIZES)
def test_ring_talks_only_to_ring_neighbours(n):
    group = scrambled(n)
    uni = make_plan(AR, group, 1e6, "ring")
    bi = make_plan(AR, group, 1e6, "ring_bidir")
    for i, r in enumerate(group):
        nxt, prv = group[(i + 1) % n], group[(i - 1) % n]
        for k in range(2 * (n - 1)):
            assert [p for p, _ in uni.step(r, k).sends] == [nxt]
            assert [p for p, _ in uni.step(r, k).recvs] == [prv]
            if n > 2:
                assert {p for p, _ in bi.step(r, k).sends} == {nxt, prv}
                assert [b for _, b in bi.step(r, k).sends] == pytest.approx([1e6 / (2 * n)] * 2)
            assert (uni.step(r, k).reduce_bytes > 0) == (k < n - 1)


@pytest.mark.parametrize("n", [2, 4, 8])
def test_halving_doubling_partners_and_message_sizes(n):
    group = scrambled(n)
    size = 2.0**20
    plan = make_plan(AR, group, size, "halving_doubling")
    k = _log2(n)
    offsets = [2**j for j in range(k)] + [n >> (j + 1) for j in range(k)]
    sizes = [size / 2 ** (j + 1) for j in range(k)] + [size / n * 2**j for j in range(k)]
    for i, r in enumerate(group):
        for s, (o, b) in enumerate(zip(offsets, sizes, strict=True)):
            assert plan.step(r, s).sends == ((group[i ^ o], b),)
            assert plan.step(r, s).reduce_bytes == (b if s < k else 0.0)


@pytest.mark.parametrize("ctype", [A2A, RS, AG, AR])
def test_direct_peers_rotate_like_astrasim(ctype):
    n, group = 5, scrambled(5)
    plan = make_plan(ctype, group, 1e6, "direct")
    for i, r in enumerate(group):
        for k in range(plan.num_steps(r)):
            step = plan.step(r, k)
            assert [p for p, _ in step.sends] == [group[(i + d) % n] for d in range(1, n)]
            assert [p for p, _ in step.recvs] == [group[(i - d) % n] for d in range(1, n)]


@pytest.mark.parametrize("ctype", [A2A, RS, AG, AR])
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("window", [1, 2, 3])
def test_direct_window_limits_messages_per_step_and_keeps_steps_aligned(ctype, n, window):
    size = 1e6
    plan = make_plan(ctype, scrambled(n), size, "direct", options=PlanOptions(window=window))
    phases = 2 if ctype is AR else 1
    per_phase = math.ceil((n - 1) / window)
    assert check_aligned(plan) == phases * per_phase
    _, sent, reduced = THEORY[(ctype, "direct")](n)
    for i, r in enumerate(plan.group):
        assert plan.bytes_sent(r) == pytest.approx(sent * size)
        assert sum(plan.step(r, k).reduce_bytes
                   for k in range(plan.num_steps(r))) == pytest.approx(reduced * size)
        for p in range(phases):  # each phase reaches every peer once, in rotation order
            peers = [q for k in range(p * per_phase, (p + 1) * per_phase)
                     for q, _ in plan.step(r, k).sends]
            assert peers == [plan.group[(i + d) % n] for d in range(1, n)]
        assert all(len(plan.step(r, k).sends) <= window for k in range(plan.num_steps(r)))


@pytest.mark.parametrize("n", SIZES)
def test_pairwise_shifts_by_k_in_step_k(n):
    group = scrambled(n)
    plan = make_plan(A2A, group, 1e6, "pairwise")
    for i, r in enumerate(group):
        for k in range(n - 1):
            assert plan.step(r, k) == Step(((group[(i + k + 1) % n], 1e6 / n),),
                                           ((group[(i - k - 1) % n], 1e6 / n),))


@pytest.mark.parametrize("n", [2, 3, 5, 8, 9, 33])
def test_dissemination_barrier_rounds(n):
    plan = make_plan(BAR, list(range(n)), 0, "dissemination")
    assert check_aligned(plan) == math.ceil(math.log2(n))
    assert all(s == set(range(n)) for s in reaches(plan).values())
    # one round fewer would leave someone uninformed (the round count is tight)
    plan.rounds -= 1
    assert any(s != set(range(n)) for s in reaches(plan).values())


@pytest.mark.parametrize(("ctype", "alg"), list(THEORY))
def test_single_rank_collectives_are_free(ctype, alg):
    plan = make_plan(ctype, [4], 1e6, alg)
    assert plan.num_steps(4) == 0
    assert plan.closed_form(lambda s, d, b: 1e9, lambda st: 1e9, start=7.0) == 7.0


def test_every_algorithm_is_registered_under_its_name():
    # other modules may register more algorithms; these must be there
    flat = {"direct", "halving_doubling", "ring", "ring_bidir"}
    for ctype in (AR, RS, AG):
        assert set(algorithms_for(ctype)) >= flat
    assert set(algorithms_for(A2A)) >= {"direct", "pairwise", "ring"}
    assert "dissemination" in algorithms_for(BAR)


# ------------------------------------------------------------------------- closed forms
ALPHA, BETA = 700.0, 25.0  # ns, bytes/ns
S = 3.0 * 2**20


def ab(src: int, dst: int, nbytes: float) -> float:
    return ALPHA + nbytes / BETA


def no_overhead(step: Step) -> float:
    return 0.0


def some_overhead(step: Step) -> float:
    return 13.0 + step.reduce_bytes / 1000.0 + 5.0 * len(step.recvs)


@pytest.mark.parametrize("n", SIZES)
def test_ring_closed_forms(n):
    m = ALPHA + S / (n * BETA)
    assert make_plan(AR, range(n), S, "ring").closed_form(ab, no_overhead) == pytest.approx(
        2 * (n - 1) * m, rel=1e-12)
    for ctype in (RS, AG):
        assert make_plan(ctype, range(n), S, "ring").closed_form(ab, no_overhead) == \
            pytest.approx((n - 1) * m, rel=1e-12)
    if n > 2:
        half = ALPHA + S / (2 * n * BETA)
        assert make_plan(AR, range(n), S, "ring_bidir").closed_form(ab, no_overhead) == \
            pytest.approx(2 * (n - 1) * half, rel=1e-12)


@pytest.mark.parametrize("n", SIZES)
def test_direct_pairwise_and_barrier_closed_forms(n):
    m = ALPHA + S / (n * BETA)
    assert make_plan(A2A, range(n), S, "direct").closed_form(ab, no_overhead) == \
        pytest.approx(m, rel=1e-12)
    assert make_plan(AR, range(n), S, "direct").closed_form(ab, no_overhead) == \
        pytest.approx(2 * m, rel=1e-12)
    assert make_plan(A2A, range(n), S, "pairwise").closed_form(ab, no_overhead) == \
        pytest.approx((n - 1) * m, rel=1e-12)
    assert make_plan(BAR, range(n), 0, "dissemination").closed_form(ab, no_overhead) == \
        pytest.approx(math.ceil(math.log2(n)) * ALPHA, rel=1e-12)


@pytest.mark.parametrize("n", [2, 4, 8, 16])
def test_halving_doubling_closed_form(n):
    k = _log2(n)
    expected = 2 * sum(ALPHA + S / 2**j / BETA for j in range(1, k + 1))
    plan = make_plan(AR, range(n), S, "halving_doubling")
    assert plan.closed_form(ab, no_overhead) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("options", [PlanOptions(), PlanOptions(integer_sizes=True, astra=True),
                                     PlanOptions(window=2)], ids=["plain", "astra", "window2"])
@pytest.mark.parametrize(("ctype", "alg", "n"), CASES, ids=CASE_IDS)
def test_closed_form_overrides_equal_dry_run_without_dry_running(ctype, alg, n, options,
                                                                  monkeypatch):
    plan = make_plan(ctype, scrambled(n), S + 7, alg, options=options)
    expected = dry_run(plan, ab, some_overhead, start=11.0)

    def refuse(*args, **kw):
        raise AssertionError("a uniform layout must not need the dry run")

    monkeypatch.setattr(base, "dry_run", refuse)
    assert plan.closed_form(ab, some_overhead, start=11.0) == pytest.approx(expected, rel=1e-9)


def ring_hops(n: int, latency: float = ALPHA, beta: float = BETA):
    """Unaware per-hop message time on an n-ring of NPUs 0..n-1 (AstraSim's formula)."""
    def t(src: int, dst: int, nbytes: float) -> float:
        d = abs(src - dst)
        return min(d, n - d) * latency + nbytes / beta
    return t


@pytest.mark.parametrize(("ctype", "alg", "n"), [c for c in CASES if c[2] >= 3], ids=[
    i for c, i in zip(CASES, CASE_IDS, strict=True) if c[2] >= 3])
def test_closed_form_falls_back_to_the_dry_run_on_uneven_layouts(ctype, alg, n):
    # the group laid out on a larger ring in scrambled order: edges differ in hop count
    t = ring_hops(3 * n + 5)
    plan = make_plan(ctype, scrambled(n), S, alg)
    assert plan.closed_form(t, some_overhead, 3.0) == pytest.approx(
        dry_run(plan, t, some_overhead, 3.0), rel=1e-12)


def test_uneven_ring_is_a_longest_path_not_the_slowest_edge_times_the_steps():
    # ring [0, 1, 2, 3] laid out on an 8-ring: the closing edge 3 -> 0 is 3 hops (notes 5.14)
    t = ring_hops(8, 500.0, 53.6870912)
    plan = make_plan(AR, [0, 1, 2, 3], 2**20, "ring")
    exact = plan.closed_form(t, no_overhead)
    assert exact == pytest.approx(dry_run(plan, t, no_overhead))
    slowest = 6 * t(3, 0, 2**18)
    # six consecutive ring edges cross the slow one at most twice
    assert exact == pytest.approx(4 * t(0, 1, 2**18) + 2 * t(3, 0, 2**18))
    assert exact < slowest


# ------------------------------------------------------------------------- the engine
BW, LAT = 50.0, 500.0
ENGINE_CASES = [(c, a, n) for (c, a) in THEORY for n in ((4, 8) if a == "halving_doubling"
                                                          else (2, 5))]


def run_collective(topology, ctype, alg, n, size):
    g = EventGraph(n)
    g.collective_all(ctype, size, algorithm=alg)
    return simulate(topology, g, options=EngineOptions(chunks=1)).makespan_ns


@pytest.mark.parametrize(("ctype", "alg", "n"), ENGINE_CASES,
                         ids=[f"{c.value}-{a}-{n}" for c, a, n in ENGINE_CASES])
def test_engine_matches_the_closed_form_on_a_fully_connected_fabric(ctype, alg, n):
    size = 0 if ctype is BAR else 3 * 2**20
    makespan = run_collective(topo.fully_connected(n, BW, LAT), ctype, alg, n, size)
    plan = make_plan(ctype, range(n), size, alg)
    expected = plan.closed_form(lambda s, d, b: LAT + b / BW, no_overhead)
    assert makespan == pytest.approx(expected, rel=1e-9)


def test_bidirectional_ring_takes_half_the_time_of_the_ring():
    n, size = 8, 2**26
    ring8 = topo.ring(n, BW, LAT)
    uni = run_collective(ring8, AR, "ring", n, size)
    bi = run_collective(ring8, AR, "ring_bidir", n, size)
    assert bi == pytest.approx(make_plan(AR, range(n), size, "ring_bidir").closed_form(
        lambda s, d, b: LAT + b / BW, no_overhead), rel=1e-9)
    assert 0.5 < bi / uni < 0.51


def test_direct_all_to_all_contends_on_a_switch_but_not_when_fully_connected():
    n, size = 8, 2**24
    plan = make_plan(A2A, range(n), size, "direct")
    fc = run_collective(topo.fully_connected(n, BW, LAT), A2A, "direct", n, size)
    assert fc == pytest.approx(plan.closed_form(lambda s, d, b: LAT + b / BW, no_overhead))
    sw = run_collective(topo.switch(n, BW, LAT), A2A, "direct", n, size)
    # uncontended a switch would cost two latencies more; its uplink serializes 7 messages
    uncontended = plan.closed_form(lambda s, d, b: 2 * LAT + b / BW + 4096 / BW, no_overhead)
    assert sw > 5 * uncontended
    assert sw >= (n - 1) * size / n / BW


# ------------------------------------------------------------------------- AstraSim accounting
ASTRA = PlanOptions(integer_sizes=True, astra=True)
B50 = 50 * 2**30 / 1e9  # 50 GB/s in bytes/ns = 53.6870912


def astra_time(hops):
    """Congestion-unaware message time: floor(hops * 500 + bytes / B)."""
    return lambda s, d, b: math.floor(hops(s, d) * 500 + b / B50)


def astra_overhead(step: Step) -> float:
    """Endpoint delay 10 plus the reduction 3 * floor(bytes / 1600) on reducing receives."""
    return 10 + (3 * math.floor(step.reduce_bytes / 1600) if step.reduce_bytes else 0)


ONE_HOP = astra_time(lambda s, d: 1)
TWO_HOPS = astra_time(lambda s, d: 2)


def ring_hop(n):
    return astra_time(lambda s, d: min(abs(s - d), n - abs(s - d)))


@pytest.mark.parametrize(("ctype", "alg", "n", "nbytes", "mtime", "expected"), [
    (AR, "ring", 8, 262144, ONE_HOP, 16110),                  # 5.1 ring8_allreduce
    (RS, "ring", 4, 262144, ONE_HOP, 5560),                   # 5.2 ring4_reducescatter
    (AG, "ring", 16, 16 * 262144, ONE_HOP, 80890),            # 5.3 ring16_allgather
    (A2A, "ring", 8, 262144, ONE_HOP, 31370),                 # 5.4 ring8_alltoall
    (A2A, "direct", 8, 262144, ring_hop(8), 2630),            # 5.5 ring8_alltoall_direct
    (AR, "ring", 8, 2**24, TWO_HOPS, 588528),                 # 5.6 switch8_allreduce_ring
    (AR, "direct", 8, 2**24, TWO_HOPS, 84084),                # 5.7 switch8_allreduce_direct
    (AR, "direct", 8, 2**24, ONE_HOP, 83084),                 # 5.8 fc8_allreduce_direct
    (AR, "halving_doubling", 16, 2**24, ring_hop(16), 614784),  # 5.9 ring16 HD
    (AR, "ring", 64, 2**30, astra_time(lambda s, d: 1), 41420935),  # 5.10 ring64 splits1
], ids=["5.1", "5.2", "5.3", "5.4", "5.5", "5.6", "5.7", "5.8", "5.9", "5.10"])
def test_astra_per_chunk_times(ctype, alg, n, nbytes, mtime, expected):
    plan = make_plan(ctype, range(n), nbytes, alg, options=ASTRA)
    assert dry_run(plan, mtime, astra_overhead, start=10) == expected
    assert plan.closed_form(mtime, astra_overhead, start=10) == expected


def test_astra_ring1024_closed_form_is_lazy_and_exact():
    # notes 5.17: one 256 MiB chunk over 1024 ranks, 2046 steps
    plan = make_plan(AR, range(1024), 2**28, "ring", options=ASTRA)
    assert plan.closed_form(ONE_HOP, astra_overhead, start=10) == 11_532_289
    assert plan.step(5, 2045).sends == ((6, 2**18),)


def test_astra_halving_doubling_charges_the_next_message_and_skips_the_last_receive():
    plan = make_plan(AR, range(16), 2**24, "halving_doubling", options=ASTRA)
    assert [plan.step(0, k).reduce_bytes for k in range(8)] == [
        2**22, 2**21, 2**20, 0, 0, 0, 0, 0]
    plain = make_plan(AR, range(16), 2**24, "halving_doubling")
    assert [plain.step(0, k).reduce_bytes for k in range(8)] == [
        2**23, 2**22, 2**21, 2**20, 0, 0, 0, 0]
    # message sizes and partners are AstraSim's in both modes
    for k in range(8):
        assert plan.step(3, k).sends == plain.step(3, k).sends


def test_astra_halving_doubling_integer_all_gather_restarts_from_the_halved_size():
    c = 4 * 250001 + 3  # floor(c/4) = 250001 is odd: AstraSim halves it to 125000, doubles back
    astra = make_plan(AR, range(4), c, "halving_doubling", options=ASTRA)
    plain = make_plan(AR, range(4), c, "halving_doubling", options=PlanOptions(integer_sizes=True))
    assert [astra.step(0, k).sends[0][1] for k in range(4)] == [500003, 250001, 250000, 500000]
    assert [plain.step(0, k).sends[0][1] for k in range(4)] == [500003, 250001, 250001, 500002]
    check_aligned(astra)


def test_astra_direct_charges_one_message_of_reduction_per_step():
    plain = make_plan(RS, range(8), 2**24, "direct")
    astra = make_plan(RS, range(8), 2**24, "direct", options=ASTRA)
    assert plain.step(0, 0).reduce_bytes == 7 * 2**21
    assert astra.step(0, 0).reduce_bytes == 2**21


@pytest.mark.parametrize(("ctype", "alg", "message"), [
    (AR, "ring", 349525), (RS, "ring", 349525), (AG, "ring", 349525), (A2A, "ring", 349525),
    (A2A, "direct", 349525), (AR, "direct", 349525), (A2A, "pairwise", 349525),
    (AR, "ring_bidir", 174762),
])
def test_integer_sizes_floor_like_astrasim(ctype, alg, message):
    plan = make_plan(ctype, [0, 1, 2], 2**20, alg, options=PlanOptions(integer_sizes=True))
    for k in range(plan.num_steps(0)):
        assert {b for _, b in plan.step(0, k).sends} == {message}
    fractional = make_plan(ctype, [0, 1, 2], 2**20, alg)
    assert fractional.step(0, 0).sends[0][1] != message


# ------------------------------------------------------------------------- errors
@pytest.mark.parametrize("ctype", [AR, RS, AG])
def test_halving_doubling_refuses_non_power_of_two_groups(ctype):
    with pytest.raises(CollectiveError, match=r"6 ranks.*'ring'"):
        make_plan(ctype, range(6), 1e6, "halving_doubling")


@pytest.mark.parametrize(("ctype", "alg"), list(THEORY))
def test_bad_groups_and_sizes_are_refused(ctype, alg):
    with pytest.raises(CollectiveError, match="empty group"):
        make_plan(ctype, [], 1e6, alg)
    with pytest.raises(CollectiveError, match="repeats a rank"):
        make_plan(ctype, [0, 1, 1, 2], 1e6, alg)
    with pytest.raises(CollectiveError, match=">= 0"):
        make_plan(ctype, [0, 1], -1.0, alg)


@pytest.mark.parametrize(("cls", "ctype"), [
    (ring.Ring, A2A), (ring.BidirectionalRing, BAR), (ring.RingAllToAll, AR),
    (direct.Direct, BAR), (halving_doubling.HalvingDoubling, A2A),
    (pairwise.PairwiseAllToAll, AR), (barrier.DisseminationBarrier, AR),
])
def test_plans_refuse_collectives_they_do_not_implement(cls, ctype):
    with pytest.raises(CollectiveError, match="does not implement"):
        cls(ctype, [0, 1], 1e6)


def test_direct_refuses_a_negative_window():
    with pytest.raises(CollectiveError, match="window"):
        make_plan(A2A, range(4), 1e6, "direct", options=PlanOptions(window=-1))
