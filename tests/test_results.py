"""Tests for des.core.results: interval arithmetic, per-rank accounting, bandwidths, output."""

from __future__ import annotations

import itertools
import json
import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from des.core.graph import EventGraph
from des.core.results import (
    SCHEMA,
    LinkStats,
    OpRecord,
    Result,
    bus_factor,
    chrome_trace,
    intersection_length,
    merge_intervals,
    rank_stats,
    union_length,
    utilization_series,
    write_json,
    write_links_csv,
)
from des.sim.engine import EngineOptions, simulate
from topologies import ring


# ---------------------------------------------------------------------- intervals
@pytest.mark.parametrize(("intervals", "merged"), [
    ([], []),
    ([(0.0, 10.0)], [(0.0, 10.0)]),
    ([(0.0, 10.0), (2.0, 5.0)], [(0.0, 10.0)]),                  # nested
    ([(2.0, 5.0), (0.0, 10.0)], [(0.0, 10.0)]),                  # nested, unsorted
    ([(0.0, 5.0), (5.0, 8.0)], [(0.0, 8.0)]),                    # touching
    ([(0.0, 5.0), (3.0, 8.0)], [(0.0, 8.0)]),                    # overlapping
    ([(6.0, 8.0), (0.0, 5.0)], [(0.0, 5.0), (6.0, 8.0)]),        # disjoint, unsorted
    ([(3.0, 3.0), (4.0, 2.0)], []),                              # empty and reversed
    ([(0.0, 2.0), (2.0, 2.0), (2.0, 4.0)], [(0.0, 4.0)]),
    ([(0.0, 1.0), (5.0, 5.0), (7.0, 9.0)], [(0.0, 1.0), (7.0, 9.0)]),
])
def test_merge_intervals(intervals, merged) -> None:
    assert merge_intervals(intervals) == merged
    assert union_length(intervals) == sum(e - s for s, e in merged)


def test_union_length_cases() -> None:
    assert union_length([]) == 0.0
    assert union_length([(0, 10), (2, 5)]) == 10
    assert union_length([(0, 5), (5, 8)]) == 8
    assert union_length([(0, 5), (10, 12)]) == 7
    assert union_length([(4, 4)]) == 0
    assert union_length(iter([(0, 3), (1, 4)])) == 4  # any iterable


@pytest.mark.parametrize(("a", "b", "expected"), [
    ([], [], 0.0),
    ([(0.0, 10.0)], [], 0.0),
    ([(0.0, 10.0)], [(5.0, 20.0)], 5.0),
    ([(5.0, 20.0)], [(0.0, 10.0)], 5.0),
    ([(0.0, 10.0)], [(2.0, 3.0), (4.0, 6.0)], 3.0),              # nested
    ([(0.0, 5.0)], [(5.0, 9.0)], 0.0),                           # touching
    ([(0.0, 2.0), (4.0, 6.0), (8.0, 10.0)], [(1.0, 9.0)], 4.0),
    ([(0.0, 2.0), (3.0, 4.0)], [(0.0, 2.0), (3.0, 4.0)], 3.0),   # identical
])
def test_intersection_length(a, b, expected) -> None:
    assert intersection_length(a, b) == expected
    assert intersection_length(b, a) == expected


_interval = st.tuples(st.integers(0, 40), st.integers(0, 40))


def _grid_cover(intervals) -> set[int]:
    """Unit cells [k, k+1) covered by integer intervals."""
    return {k for s, e in intervals for k in range(s, e)}


@settings(max_examples=150, deadline=None)
@given(st.lists(_interval, max_size=12))
def test_union_length_properties(intervals) -> None:
    total = union_length(intervals)
    lengths = sum(max(e - s, 0) for s, e in intervals)
    assert 0 <= total <= lengths
    assert total == len(_grid_cover(intervals))  # brute force on the integer grid
    merged = merge_intervals(intervals)
    assert all(s < e for s, e in merged)
    assert all(a[1] < b[0] for a, b in itertools.pairwise(merged))
    assert _grid_cover(merged) == _grid_cover(intervals)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(1, 5)), max_size=10))
def test_union_length_of_disjoint_intervals_is_sum(gaps_and_lengths) -> None:
    intervals, t = [], 0
    for gap, length in gaps_and_lengths:
        t += gap
        intervals.append((t, t + length))
        t += length
    # gaps of 0 make touching intervals; still no overlap, so the sum is exact
    assert union_length(intervals[::-1]) == sum(e - s for s, e in intervals)


@settings(max_examples=150, deadline=None)
@given(st.lists(_interval, max_size=8), st.lists(_interval, max_size=8))
def test_intersection_length_brute_force(a, b) -> None:
    ma, mb = merge_intervals(a), merge_intervals(b)
    expected = len(_grid_cover(a) & _grid_cover(b))
    assert intersection_length(ma, mb) == expected
    assert union_length(a + b) == union_length(a) + union_length(b) - expected


# ---------------------------------------------------------------------- rank_stats
def op(rank: int, kind: str, start: float, end: float, node: int = 0) -> OpRecord:
    stream = "compute" if kind in ("compute", "memory") else "comm0"
    return OpRecord(rank, node, "", kind, stream, start, end)


def test_rank_stats_overlap() -> None:
    stats = rank_stats([op(0, "compute", 0, 10), op(0, "collective", 5, 20)], 1)
    s = stats[0]
    assert s.compute_ns == 10
    assert s.comm_ns == 15
    assert s.overlap_ns == 5
    assert s.exposed_comm_ns == 10
    assert s.finished_ns == 20
    assert s.idle_ns == 0


def test_rank_stats_gap_is_idle() -> None:
    s = rank_stats([op(0, "compute", 0, 10), op(0, "send", 14, 20)], 1)[0]
    assert (s.compute_ns, s.comm_ns, s.overlap_ns, s.exposed_comm_ns) == (10, 6, 0, 6)
    assert s.finished_ns == 20
    assert s.idle_ns == 4


def test_rank_stats_leading_gap_is_idle() -> None:
    s = rank_stats([op(0, "recv", 30, 50)], 1)[0]
    assert s.comm_ns == 20 and s.exposed_comm_ns == 20
    assert s.idle_ns == 30


def test_rank_stats_kinds() -> None:
    # memory counts as compute; send, recv and collective as communication
    ops = [op(0, "memory", 0, 4), op(0, "compute", 2, 6), op(0, "recv", 10, 12),
           op(0, "send", 11, 13), op(0, "collective", 20, 21)]
    s = rank_stats(ops, 1)[0]
    assert s.compute_ns == 6
    assert s.comm_ns == 4
    assert s.overlap_ns == 0
    assert s.finished_ns == 21
    assert s.idle_ns == 21 - 6 - 4


def test_rank_stats_rank_without_ops_is_zero() -> None:
    stats = rank_stats([op(1, "compute", 0, 10)], 3)
    assert set(stats) == {0, 1, 2}
    for r in (0, 2):
        s = stats[r]
        assert (s.finished_ns, s.compute_ns, s.comm_ns, s.exposed_comm_ns, s.overlap_ns,
                s.idle_ns) == (0, 0, 0, 0, 0, 0)
    assert stats[1].compute_ns == 10


def test_rank_stats_separates_ranks() -> None:
    stats = rank_stats([op(0, "compute", 0, 10), op(1, "collective", 5, 20)], 2)
    assert stats[0].comm_ns == 0 and stats[0].finished_ns == 10
    assert stats[1].compute_ns == 0 and stats[1].exposed_comm_ns == 15


@pytest.mark.parametrize("seed", [49, 66])
def test_rank_stats_back_to_back_has_no_float_idle(seed: int) -> None:
    """Compute and communication alternating back to back leave no idle time, even though
    adding up the interval lengths in floats leaves a residue of a few 1e-9 ns."""
    rng = random.Random(seed)
    t = rng.random() * 1e8
    ops = []
    for i in range(40):
        d = rng.random() * 1e6 / 3
        ops.append(op(0, "compute" if i % 2 == 0 else "collective", t, t + d, i))
        t += d
    ops.insert(0, op(0, "compute", 0.0, ops[0].start_ns, 99))
    s = rank_stats(ops, 1)[0]
    residue = s.finished_ns - (s.compute_ns + s.comm_ns - s.overlap_ns)
    assert residue != 0.0  # the premise: float sums do not cancel exactly here
    assert s.idle_ns == 0.0


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["compute", "collective", "send", "memory"]),
                          st.integers(0, 50), st.integers(1, 20)), min_size=1, max_size=10))
def test_rank_stats_accounting_adds_up(spec) -> None:
    ops = [op(0, kind, s, s + d, i) for i, (kind, s, d) in enumerate(spec)]
    s = rank_stats(ops, 1)[0]
    assert s.finished_ns == max(o.end_ns for o in ops)
    assert s.compute_ns + s.exposed_comm_ns + s.idle_ns == pytest.approx(s.finished_ns)
    assert s.overlap_ns == pytest.approx(s.comm_ns - s.exposed_comm_ns)
    assert 0 <= s.overlap_ns <= min(s.compute_ns, s.comm_ns)
    assert s.idle_ns == pytest.approx(s.finished_ns - union_length((o.start_ns, o.end_ns)
                                                                   for o in ops))


# ---------------------------------------------------------------------- bus factor
@pytest.mark.parametrize(("collective", "n", "factor"), [
    ("all_reduce", 2, 1.0),
    ("all_reduce", 4, 1.5),
    ("all_reduce", 8, 1.75),
    ("all_gather", 4, 0.75),
    ("all_gather", 8, 0.875),
    ("reduce_scatter", 4, 0.75),
    ("all_to_all", 4, 0.75),
    ("all_to_all", 16, 15 / 16),
    ("broadcast", 4, 1.0),
    ("reduce", 8, 1.0),
    ("all_reduce", 1, 0.0),
    ("all_gather", 1, 0.0),
    ("broadcast", 1, 0.0),
])
def test_bus_factor(collective: str, n: int, factor: float) -> None:
    assert bus_factor(collective, n) == pytest.approx(factor, rel=1e-15)


# ---------------------------------------------------------------------- utilization
def test_utilization_series_half() -> None:
    assert utilization_series([(0.0, 5.0)], 10.0, 2) == [(0.0, 1.0), (5.0, 0.0)]
    assert utilization_series([(5.0, 10.0)], 10.0, 2) == [(0.0, 0.0), (5.0, 1.0)]


def test_utilization_series_partial_bins() -> None:
    series = utilization_series([(1.0, 3.0), (2.0, 4.0), (7.0, 8.0)], 10.0, 5)
    assert [t for t, _ in series] == [0.0, 2.0, 4.0, 6.0, 8.0]
    assert [f for _, f in series] == pytest.approx([0.5, 1.0, 0.0, 0.5, 0.0])


def test_utilization_series_clips_at_end() -> None:
    assert utilization_series([(5.0, 15.0)], 10.0, 2) == [(0.0, 0.0), (5.0, 1.0)]
    assert utilization_series([(12.0, 15.0)], 10.0, 2) == [(0.0, 0.0), (5.0, 0.0)]


def test_utilization_series_clips_at_zero() -> None:
    assert utilization_series([(-5.0, 5.0)], 10.0, 2) == [(0.0, 1.0), (5.0, 0.0)]
    assert utilization_series([(-12.0, -11.0)], 10.0, 2) == [(0.0, 0.0), (5.0, 0.0)]


def test_utilization_series_degenerate() -> None:
    assert utilization_series([(0.0, 1.0)], 0.0, 4) == []
    assert utilization_series([(0.0, 1.0)], 10.0, 0) == []
    assert utilization_series([], 10.0, 2) == [(0.0, 0.0), (5.0, 0.0)]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 100), st.floats(0, 100)), max_size=10),
       st.integers(1, 17))
def test_utilization_series_properties(raw, bins) -> None:
    end = 100.0
    series = utilization_series(raw, end, bins)
    assert len(series) == bins
    assert all(0.0 <= f <= 1.0 + 1e-9 for _, f in series)
    mean = sum(f for _, f in series) / bins
    assert mean * end == pytest.approx(union_length(raw), abs=1e-6)


# ---------------------------------------------------------------------- Result
def link(i: int, nbytes: float, util: float) -> LinkStats:
    return LinkStats(i, i, i + 1, "ring", 50.0, 1.0, nbytes, 1 if nbytes else 0,
                     util * 100.0, util, 1)


def small_result() -> Result:
    ops = [op(0, "compute", 0, 10), op(0, "collective", 5, 20, node=1)]
    links = [link(0, 100, 0.2), link(1, 0, 0.0), link(2, 300, 0.9), link(3, 200, 0.2),
             link(4, 50, 0.5)]
    return Result(20.0, rank_stats(ops, 1), links, [], ops, {"graph": "g"})


def test_to_dict_with_and_without_ops() -> None:
    res = small_result()
    full = res.to_dict()
    assert full["schema"] == SCHEMA == "des.result/1"
    assert full["makespan_ns"] == 20.0
    assert len(full["ops"]) == 2
    assert full["ranks"]["0"]["exposed_comm_ns"] == 10
    slim = res.to_dict(include_ops=False)
    assert "ops" not in slim
    assert set(full) - set(slim) == {"ops"}
    json.dumps(full)  # serializable as is


def test_hottest_links_order_and_filter() -> None:
    res = small_result()
    assert [lk.id for lk in res.hottest_links(10)] == [2, 4, 0, 3]  # ties by id, unused dropped
    assert [lk.id for lk in res.hottest_links(2)] == [2, 4]
    assert res.hottest_links(0) == []


def test_writers(tmp_path) -> None:
    res = small_result()
    path = write_json(res, tmp_path / "a" / "r.json", include_ops=False)
    assert json.loads(path.read_text()) == json.loads(json.dumps(res.to_dict(include_ops=False)))
    csv_path = write_links_csv(res, tmp_path / "b" / "l.csv")
    lines = csv_path.read_text().splitlines()
    assert len(lines) == len(res.links) + 1
    assert lines[0].split(",")[:3] == ["id", "src", "dst"]


def test_chrome_trace_events() -> None:
    res = small_result()
    trace = chrome_trace(res)
    events = trace["traceEvents"]
    xs = [e for e in events if e["ph"] == "X"]
    assert len(xs) == 2
    assert {(e["ts"], e["dur"]) for e in xs} == {(0.0, 0.01), (0.005, 0.015)}  # microseconds
    counters = {e["name"] for e in events if e["ph"] == "C"}
    assert len(counters) == 4  # only used links get a counter track
    assert trace["otherData"]["makespan_ns"] == 20.0


# ---------------------------------------------------------------------- end to end
def test_end_to_end_ring_all_reduce_bandwidths() -> None:
    topo = ring(4, 50.0, 500.0)
    graph = EventGraph(4)
    nbytes = 4096 * 4
    graph.collective_all("all_reduce", nbytes, algorithm="ring")
    res = simulate(topo, graph)
    assert len(res.collectives) == 1
    c = res.collectives[0]
    assert c.collective == "all_reduce"
    assert c.group == [0, 1, 2, 3]
    assert c.nbytes == nbytes
    assert c.time_ns == pytest.approx(c.end_ns - c.start_ns)
    # each chunk runs 2(n-1) = 6 dependent steps, each paying at least the link latency
    assert c.time_ns >= 6 * 500.0
    assert c.algbw_GBps == pytest.approx(nbytes / c.time_ns, rel=1e-12)
    assert c.busbw_GBps == pytest.approx(c.algbw_GBps * 2 * 3 / 4, rel=1e-12)
    assert c.busbw_GBps < 50.0  # cannot beat the link
    assert res.makespan_ns == pytest.approx(c.end_ns)
    for r in range(4):
        s = res.ranks[r]
        assert s.compute_ns == 0
        assert s.comm_ns == pytest.approx(s.finished_ns)
        assert s.exposed_comm_ns == pytest.approx(s.comm_ns)
    # ring all-reduce moves 2(n-1)/n of the buffer out of every rank
    sent = sum(lk.bytes for lk in res.links)
    assert sent == pytest.approx(4 * 2 * 3 / 4 * nbytes)
    assert all(0.0 <= lk.utilization <= 1.0 for lk in res.links)


def test_end_to_end_bandwidth_grows_with_size() -> None:
    def busbw(nbytes: float) -> float:
        graph = EventGraph(4)
        graph.collective_all("all_reduce", nbytes, algorithm="ring")
        res = simulate(ring(4, 50.0, 500.0), graph, options=EngineOptions(chunks=4))
        return res.collectives[0].busbw_GBps

    small, large = busbw(16 * 1024), busbw(16 * 1024 * 1024)
    assert small < large < 50.0
    assert large > 0.9 * 50.0  # latency is amortized for large buffers
    assert not math.isnan(small)
