"""Peak local memory per rank, as AstraSim's ``track-local-mem`` reports it.

Reproduces astra-sim ``astra-sim/workload/LocalMemUsageTracker.cc`` as driven by
``astra-sim/workload/Workload.cc`` (``Workload::issue`` calls ``recordStart`` at a node's issue
tick; ``Workload::call`` and ``Workload::skip_invalid`` call ``recordEnd`` at its completion
tick; ``Workload::report`` prints ``sys[R] peak memory usage: {:.2f} {unit}`` from
``getPeakMemUsageFormatted``):

* a node's tensors are its ``inputs`` and ``outputs`` attributes, each a ``string_list`` of
  ``[name, size, name, size, ...]`` (size in bytes, a decimal string; ``parseIOInfos``). A node
  without either attribute is an error in AstraSim (``recordReads``/``recordWrites`` throw);
  an empty or non-``string_list`` attribute means no tensors; tensors of size 0 are ignored;
* at a node's completion its inputs are recorded as reads, then its outputs as writes, each
  spanning the node's (issue, completion) interval. A tensor is allocated at the *start* of the
  node that writes it; a tensor read before any write is taken as written at tick 0 with the
  size the read gives; a second write of a tensor is ``assert(false)`` (compiled out in a
  release build, which keeps the first: so does des);
* a tensor is freed at the *end* of its last recorded read; one never read stays allocated;
* ``buildMemoryTimeline``: at every tick that allocates or frees, in time order, the tensors
  written at that tick are added, then those last read at that tick removed, then the resident
  bytes summed; the peak is the largest such sum (0 when nothing is tracked).

des takes each node's issue and completion times from the op records of its run. Nodes des
skips (METADATA, INVALID) are not run, so their tensors are not tracked (AstraSim completes
them at their issue tick).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from astra_bridge.chakra_mapping import ChakraError
from des.core.results import Result
from des.core.schema import short

__all__ = ["TensorIO", "format_bytes", "node_tensors", "peak_local_memory", "rank_peaks"]

#: (inputs, outputs) of one node: ``(name, bytes)`` pairs in trace order.
TensorIO = tuple[tuple[tuple[str, int], ...], tuple[tuple[str, int], ...]]

_MAX_SIZE = 2**64 - 1  # AstraSim parses sizes with std::stoull


def _pairs(attrs: Mapping[str, Any], key: str, where: str) -> tuple[tuple[str, int], ...]:
    if key not in attrs:
        raise ChakraError(f"{where}: attribute {key!r} is missing; AstraSim's track-local-mem "
                          "needs 'inputs' and 'outputs' (string lists of name, size) on every "
                          "node")
    value = attrs[key]
    values = list(getattr(value, "values", ())) if hasattr(value, "values") else []
    if not values or not all(isinstance(v, str) for v in values):
        return ()  # AstraSim: not a string_list, or empty -> no tensors
    if len(values) % 2:
        raise ChakraError(f"{where}: attribute {key!r} must list name, size pairs; it has "
                          f"{len(values)} entries: {short(values)}")
    out = []
    for name, size in zip(values[::2], values[1::2], strict=True):
        if not (size.isascii() and size.isdigit()) or len(size) > 20 or int(size) > _MAX_SIZE:
            raise ChakraError(f"{where}: attribute {key!r}: tensor {name!r} has size "
                              f"{short(size)}; expected a whole number of bytes")
        out.append((name, int(size)))
    return tuple(out)


def node_tensors(attrs: Mapping[str, Any], where: str) -> TensorIO:
    """A node's (inputs, outputs) from its Chakra attributes (``parseIOInfos``)."""
    return _pairs(attrs, "inputs", where), _pairs(attrs, "outputs", where)


def peak_local_memory(nodes: Iterable[tuple[float, float, TensorIO]]) -> int:
    """One rank's peak resident bytes from ``(start, end, tensors)`` per node, in the order
    AstraSim's ``recordEnd`` sees them (completion order)."""
    size: dict[str, int] = {}
    written: dict[str, float] = {}  # tensor -> start of its writer (0: read before written)
    last_read: dict[str, float] = {}  # tensor -> end of its last recorded read
    for start, end, (inputs, outputs) in nodes:
        for name, nbytes in inputs:  # recordReads
            if nbytes == 0:
                continue
            if name not in size:
                size[name], written[name] = nbytes, 0.0
            last_read[name] = end
        for name, nbytes in outputs:  # recordWrites
            if nbytes == 0 or name in size:
                continue
            size[name], written[name] = nbytes, start
    allocs: dict[float, list[str]] = {}
    frees: dict[float, list[str]] = {}
    for name, tick in written.items():
        allocs.setdefault(tick, []).append(name)
    for name, tick in last_read.items():
        frees.setdefault(tick, []).append(name)
    resident: set[str] = set()
    peak = used = 0
    for tick in sorted(allocs.keys() | frees.keys()):  # buildMemoryTimeline
        for name in allocs.get(tick, ()):
            if name not in resident:
                resident.add(name)
                used += size[name]
        for name in frees.get(tick, ()):
            if name in resident:
                resident.remove(name)
                used -= size[name]
        peak = max(peak, used)
    return peak


def rank_peaks(tensor_io: Mapping[tuple[int, int], TensorIO], result: Result
               ) -> dict[int, int]:
    """Peak local memory (bytes) per rank of ``result``, from the tensors of each run node
    (``tensor_io[(rank, node)]``) and its op records' start and end."""
    spans: dict[tuple[int, int], tuple[float, float]] = {}
    for op in result.ops:
        key = (op.rank, op.node)
        if key in spans:
            s, e = spans[key]
            spans[key] = (min(s, op.start_ns), max(e, op.end_ns))
        else:
            spans[key] = (op.start_ns, op.end_ns)
    per_rank: dict[int, list[tuple[float, float, int, TensorIO]]] = {r: [] for r in result.ranks}
    for (rank, node), (start, end) in spans.items():
        io = tensor_io.get((rank, node))
        if io is not None and rank in per_rank:
            per_rank[rank].append((end, start, node, io))
    out = {}
    for rank, rows in per_rank.items():
        rows.sort(key=lambda row: row[:3])  # completion order; ties: earlier issue, then id
        out[rank] = peak_local_memory((start, end, io) for end, start, _, io in rows)
    return out


def format_bytes(nbytes: int) -> str:
    """Bytes as AstraSim prints its peak (``getPeakMemUsageFormatted``: B, KB, MB, GB or TB in
    powers of 1024, 2 decimals)."""
    units = ("B", "KB", "MB", "GB", "TB")
    step = 0
    while step < len(units) - 1 and nbytes >= 1024 ** (step + 1):
        step += 1
    return f"{nbytes / 1024 ** step:.2f} {units[step]}"
