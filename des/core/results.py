"""One Result per simulation, and its writers: JSON (versioned schema), CSV of links, Chrome trace.

Per rank (interval unions over the rank's ops): ``compute_ns`` is time its compute stream is busy,
``comm_ns`` time with any collective or send/recv in progress, ``exposed_comm_ns`` the part of
``comm_ns`` not overlapped by compute, ``idle_ns`` the rest of ``[0, finished_ns]``. Time a rank
spends inside a collective waiting for late peers is communication, as NCCL kernel timings and
AstraSim's exposed communication count it. Collective
bandwidths follow the nccl-tests definitions (algbw = size / time; busbw = algbw x 2(n-1)/n for
all-reduce, x (n-1)/n for all-gather, reduce-scatter and all-to-all, x 1 for broadcast/reduce;
NVIDIA nccl-tests doc/PERFORMANCE.md).
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Version of the JSON document. Additions keep the version (readers ignore unknown keys):
#: ``ops[].category``, ``collectives[].bytes_injected``/``bytes_delivered`` and
#: ``meta.bytes_injected``/``bytes_delivered`` were added within ``des.result/1``;
#: ``meta.wall_seconds`` was removed (see :attr:`Result.wall_seconds`).
SCHEMA = "des.result/1"

COMM_KINDS = frozenset({"collective", "send", "recv"})


@dataclass(slots=True)
class OpRecord:
    """When one node ran: rank, node id and name, kind, the stream it ran on, start and end (ns),
    and the node's workload category (``fwd``, ``tp``...; ``""`` if it has none), which reports
    group time by."""

    rank: int
    node: int
    name: str
    kind: str
    stream: str
    start_ns: float
    end_ns: float
    category: str = ""


@dataclass(slots=True)
class RankStats:
    """Time accounting of one rank (ns)."""

    finished_ns: float
    compute_ns: float
    comm_ns: float
    exposed_comm_ns: float
    overlap_ns: float
    idle_ns: float
    represented_by: int | None = None  # folded: these are that simulated rank's figures


@dataclass(slots=True)
class LinkStats:
    """Traffic on one directed link over the whole run. ``mirrored``: some of these figures
    were copied from a symmetric representative's link (lockstep batching) rather than
    simulated message by message on this one; they are exact either way."""

    id: int
    src: int
    dst: int
    kind: str
    bandwidth_GBps: float
    derate: float
    bytes: float
    messages: int
    busy_ns: float
    utilization: float
    peak_queue: int
    mirrored: bool = False


@dataclass(slots=True)
class CollectiveStats:
    """One collective instance: from the first member joining to the last member finishing.
    ``bytes_injected`` and ``bytes_delivered``: the bytes its messages carried, counted for
    every member a folded or lockstep run stands for; equal at the end of every run."""

    index: int
    collective: str
    algorithm: str
    group: list[int]
    nbytes: float
    chunks: int
    start_ns: float
    end_ns: float
    time_ns: float
    algbw_GBps: float
    busbw_GBps: float
    bytes_injected: float | None = None  # what its messages carried (None: not moved as
    bytes_delivered: float | None = None  # messages, e.g. timed in closed form)


@dataclass
class Result:
    """Everything a run measured. Times in ns, sizes in bytes, bandwidths in GB/s (1e9 B/s)."""

    makespan_ns: float
    ranks: dict[int, RankStats]
    links: list[LinkStats]
    collectives: list[CollectiveStats]
    ops: list[OpRecord]
    meta: dict[str, Any] = field(default_factory=dict)
    link_activity: dict[int, list[tuple[float, float]]] = field(default_factory=dict, repr=False)
    #: Wall-clock seconds the run took; never written to the JSON, so the same input gives the
    #: same bytes (the terminal summary shows it). None when not measured.
    wall_seconds: float | None = field(default=None, compare=False)

    def to_dict(self, *, include_ops: bool = True) -> dict[str, Any]:
        """The JSON document (schema ``des.result/1``): a function of the inputs alone (no
        wall-clock time), so two runs of the same input write identical bytes."""
        doc: dict[str, Any] = {
            "schema": SCHEMA,
            "makespan_ns": self.makespan_ns,
            "meta": self.meta,
            "ranks": {str(r): _fields(s) for r, s in sorted(self.ranks.items())},
            "links": [_fields(lk) for lk in self.links],
            "collectives": [_fields(c) for c in self.collectives],
        }
        if include_ops:
            doc["ops"] = [_fields(op) for op in self.ops]
        return doc

    def hottest_links(self, count: int = 5) -> list[LinkStats]:
        """Links by utilization, busiest first (ties by id)."""
        used = [lk for lk in self.links if lk.bytes > 0]
        return sorted(used, key=lambda lk: (-lk.utilization, lk.id))[:count]


def _fields(record: Any) -> dict[str, Any]:
    """A flat record's fields as a dict, what ``dataclasses.asdict`` gives for these records
    (lists copied) without its recursive deep copy, which took most of a large run's JSON
    writing (10^5-10^6 ops)."""
    out = {}
    for name in record.__dataclass_fields__:
        value = getattr(record, name)
        out[name] = list(value) if isinstance(value, list) else value
    return out


# ---------------------------------------------------------------------- metrics
def union_length(intervals: Iterable[tuple[float, float]]) -> float:
    """Total length covered by a set of intervals."""
    return sum(end - start for start, end in merge_intervals(intervals))


def merge_intervals(intervals: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    """Sorted, non-overlapping cover of the given intervals (empty ones dropped)."""
    merged: list[tuple[float, float]] = []
    ordered = sorted([iv for iv in intervals if iv[1] > iv[0]])
    if not ordered:
        return merged
    low, high = ordered[0]  # the interval being grown
    for start, end in ordered:
        if start <= high:
            if end > high:
                high = end
        else:
            merged.append((low, high))
            low, high = start, end
    merged.append((low, high))
    return merged


def intersection_length(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> float:
    """Length of the overlap of two merged interval lists."""
    i = j = 0
    total = 0.0
    na, nb = len(a), len(b)
    while i < na and j < nb:
        a0, a1 = a[i]
        b0, b1 = b[j]
        lo = a0 if a0 >= b0 else b0  # max() and min(): the first of equals, as they do
        hi = a1 if a1 <= b1 else b1
        if hi > lo:
            total += hi - lo
        if a1 < b1:
            i += 1
        else:
            j += 1
    return total


def rank_stats(ops: Iterable[OpRecord], num_ranks: int) -> dict[int, RankStats]:
    """Per-rank time accounting from op intervals (see the module docstring)."""
    compute: dict[int, list[tuple[float, float]]] = defaultdict(list)
    comm: dict[int, list[tuple[float, float]]] = defaultdict(list)
    finished: dict[int, float] = defaultdict(float)
    for op in ops:  # once per op of runs of 10^5-10^6 ops: kept lean
        rank, end = op.rank, op.end_ns
        (comm if op.kind in COMM_KINDS else compute)[rank].append((op.start_ns, end))
        if end > finished[rank]:
            finished[rank] = end
    stats = {}
    for rank in range(num_ranks):
        busy_compute = merge_intervals(compute[rank])
        busy_comm = merge_intervals(comm[rank])
        compute_ns = sum((e - s for s, e in busy_compute), 0.0)
        comm_ns = sum((e - s for s, e in busy_comm), 0.0)
        overlap = intersection_length(busy_compute, busy_comm)
        busy = compute_ns + comm_ns - overlap
        idle = finished[rank] - busy
        if idle < 1e-9 * finished[rank]:  # float residue of adding up many intervals
            idle = 0.0
        stats[rank] = RankStats(finished[rank], compute_ns, comm_ns, comm_ns - overlap, overlap,
                                idle)
    return stats


def bus_factor(collective: str, n: int) -> float:
    """nccl-tests bus-bandwidth factor for a collective over n ranks."""
    if n <= 1:
        return 0.0
    if collective == "all_reduce":
        return 2.0 * (n - 1) / n
    if collective in ("all_gather", "reduce_scatter", "all_to_all"):
        return (n - 1) / n
    if collective in ("broadcast", "reduce"):
        return 1.0
    return 0.0


# ---------------------------------------------------------------------- writers
def write_json(result: Result, path: str | Path, *, include_ops: bool = True) -> Path:
    """Write the JSON document; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(document_text(result.to_dict(include_ops=include_ops)))
    return path


#: The document's lists of records, written one record per line.
_RECORD_LISTS = ("links", "collectives", "ops")


def document_text(doc: dict[str, Any]) -> str:
    """The JSON text of a result document: indented, except that each record of its long lists
    (links, collectives, ops) is one compact line. Python's indenting encoder is pure Python,
    and spent tens of seconds on a GPT-3 step's 10^5 ops; compact records go through its C
    encoder."""
    record = json.JSONEncoder(separators=(", ", ": ")).encode
    parts = []
    for key, value in doc.items():
        if key in _RECORD_LISTS and isinstance(value, list) and value:
            body = ",\n  ".join(record(item) for item in value)
            parts.append(f" {json.dumps(key)}: [\n  {body}\n ]")
        else:
            parts.append(f" {json.dumps(key)}: " + json.dumps(value, indent=1).replace("\n", "\n "))
    return "{\n" + ",\n".join(parts) + "\n}\n"


def write_links_csv(result: Result, path: str | Path) -> Path:
    """One row per directed link."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = list(LinkStats.__dataclass_fields__)
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(names)
        for lk in result.links:
            writer.writerow([getattr(lk, n) for n in names])
    return path


def utilization_series(intervals: list[tuple[float, float]], end_ns: float,
                       bins: int) -> list[tuple[float, float]]:
    """Busy fraction of a link in ``bins`` equal windows of [0, end_ns], as (start, fraction):
    the busy time up to each window edge (the union of the intervals, :func:`merge_intervals`,
    clipped to the run) and its differences, vectorised over the windows."""
    if end_ns <= 0 or bins < 1:
        return []
    import numpy as np  # lazily: importing des stays lean

    width = end_ns / bins
    pieces = [(max(a, 0.0), min(b, end_ns)) for a, b in merge_intervals(intervals)]
    spans = np.array([p for p in pieces if p[1] > p[0]], dtype=float).reshape(-1, 2)
    starts, ends = spans[:, 0], spans[:, 1]
    covered = np.concatenate(([0.0], np.cumsum(ends - starts)))
    edges = np.arange(bins + 1) * width
    done = np.searchsorted(ends, edges, side="right")  # pieces over by each edge
    inside = done < len(starts)
    partial = np.zeros(bins + 1)
    partial[inside] = np.maximum(edges[inside] - starts[done[inside]], 0.0)
    busy = np.diff(covered[done] + partial)
    return [(b * width, float(busy[b]) / width) for b in range(bins)]


def chrome_trace(result: Result, bins: int = 200) -> dict[str, Any]:
    """Chrome trace-event document: a process per NPU with a track per stream, and a counter
    track per used link (Perfetto and chrome://tracing open it). Link counters show the busy
    fraction per time window when the run recorded link activity, else the run's average."""
    events: list[dict[str, Any]] = []
    streams: dict[int, dict[str, int]] = defaultdict(dict)
    for rank in sorted(result.ranks):
        events.append({"ph": "M", "name": "process_name", "pid": rank, "tid": 0,
                       "args": {"name": f"NPU {rank}"}})
    for op in result.ops:
        tids = streams[op.rank]
        if op.stream not in tids:
            tids[op.stream] = len(tids) + 1
            events.append({"ph": "M", "name": "thread_name", "pid": op.rank,
                           "tid": tids[op.stream], "args": {"name": op.stream}})
        events.append({"ph": "X", "name": op.name or f"{op.kind} {op.node}", "cat": op.kind,
                       "pid": op.rank, "tid": tids[op.stream], "ts": op.start_ns / 1e3,
                       "dur": (op.end_ns - op.start_ns) / 1e3, "args": {"node": op.node}})
    links_pid = max(result.ranks, default=0) + 1
    events.append({"ph": "M", "name": "process_name", "pid": links_pid, "tid": 0,
                   "args": {"name": "links"}})
    for lk in result.links:
        if lk.bytes <= 0:
            continue
        name = f"link {lk.src}->{lk.dst} #{lk.id}"
        activity = result.link_activity.get(lk.id)
        series = (utilization_series(activity, result.makespan_ns, bins) if activity
                  else [(0.0, lk.utilization)])
        series.append((result.makespan_ns, 0.0))
        for ts, util in series:
            events.append({"ph": "C", "name": name, "pid": links_pid, "ts": ts / 1e3,
                           "args": {"utilization": round(util, 6)}})
    return {"traceEvents": events, "displayTimeUnit": "ns",
            "otherData": {"schema": SCHEMA, "makespan_ns": result.makespan_ns}}


def write_chrome_trace(result: Result, path: str | Path) -> Path:
    """Write :func:`chrome_trace` as JSON."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(chrome_trace(result)))
    return path
