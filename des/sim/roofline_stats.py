"""Roofline statistics of a finished run, per rank: how much of its GPU time was compute-bound,
and its time-weighted compute utilization, memory utilization and operation intensity.

The definitions are AstraSim's (``astra-sim/workload/Workload.cc``, ``issue_comp``, and
``Statistics::extract_utilizations``, printed with ``roofline-enabled``): for each compute
operation timed by the roofline, with operation intensity ``I = FLOPs / bytes``, attainable
rate ``P = min(peak x eff_c, I x bandwidth x eff_m)`` (AstraSim: efficiencies 1),

* compute utilization ``P / peak``, memory utilization ``(P / I) / bandwidth``;
* compute-bound when its compute term is at least its memory term (``P`` reaches the compute
  roof; AstraSim: not ``P < peak``);

and per rank each figure is the sum over those operations weighted by their time, divided by
the rank's whole compute time, so operations with a given duration (AstraSim's replayed
nodes) count in the denominator only. A compute node made of several kernels contributes each
kernel with its share of the node's time (shares in proportion to the kernels' roofline times).
Peaks are the datasheet ones (``GpuSpec.peak_flops[default_dtype]``, ``hbm_bandwidth``), so
with des's efficiencies below 1 utilization says how far below the datasheet the run is.
"""

from __future__ import annotations

from dataclasses import dataclass

from des.core import hardware as hw
from des.core.graph import EventGraph
from des.core.results import Result

__all__ = ["RooflineStats", "roofline_stats"]


@dataclass(frozen=True)
class RooflineStats:
    """One rank's roofline statistics (fractions in [0, 1]; intensity in FLOP/byte) over
    ``compute_ns`` of compute time, of which ``roofline_ns`` was timed by the roofline."""

    compute_bound: float
    compute_utilization: float
    memory_utilization: float
    operation_intensity: float
    compute_ns: float
    roofline_ns: float

    def as_dict(self) -> dict[str, float]:
        """JSON form, percentages as AstraSim prints them."""
        return {"compute_bound_pct": 100 * self.compute_bound,
                "avg_compute_util_pct": 100 * self.compute_utilization,
                "avg_memory_util_pct": 100 * self.memory_utilization,
                "avg_operation_intensity": self.operation_intensity,
                "compute_ns": self.compute_ns, "roofline_ns": self.roofline_ns}


def _node_figures(spec: hw.GpuSpec, kernels: list[tuple[float, float, str]]
                  ) -> tuple[float, float, float, float, float]:
    """Per unit of a node's time: (compute-bound share, compute utilization, memory
    utilization, intensity, share timed by the roofline), each kernel weighted by its roofline
    time. A kernel that moves no bytes is not timed by the roofline (AstraSim skips such
    nodes): it weighs in the time, not in the figures."""
    terms = [hw.roofline_terms(spec, f, b, c, None) for f, b, c in kernels]
    total = sum(max(t) for t in terms)
    peak = spec.peak_flops[spec.default_dtype]
    out = [0.0] * 5
    for (flops, nbytes, _), (compute_ns, memory_ns) in zip(kernels, terms, strict=True):
        if nbytes <= 0:
            continue
        longest = max(compute_ns, memory_ns)
        share = longest / total if total > 0 else 1.0 / len(kernels)
        intensity = flops / nbytes
        rate = flops / longest if longest > 0 else 0.0  # the attainable FLOP rate P
        out[0] += share if compute_ns >= memory_ns else 0.0
        out[1] += rate / peak * share
        out[2] += (rate / intensity / spec.hbm_bandwidth if intensity > 0 else 0.0) * share
        out[3] += intensity * share
        out[4] += share
    return out[0], out[1], out[2], out[3], out[4]


def roofline_stats(graph: EventGraph, result: Result,
                   hardware: hw.GpuSpec | None) -> dict[int, RooflineStats]:
    """Per-rank statistics of ``result`` (a run of ``graph``); empty without ``hardware`` or
    when no rank computed. Nodes with the same kernels are evaluated once."""
    if hardware is None:
        return {}
    sums: dict[int, list[float]] = {}
    cache: dict[tuple, tuple[float, float, float, float, float]] = {}
    for op in result.ops:
        if op.kind != "compute" or op.end_ns <= op.start_ns:
            continue
        duration = op.end_ns - op.start_ns
        acc = sums.setdefault(op.rank, [0.0] * 6)  # bound, cu, mu, oi, total, roofline
        acc[4] += duration
        node = graph.node(op.rank, op.node)
        if node.kernels:
            key: tuple = tuple(node.kernels)
        elif node.flops or node.nbytes:
            key = ((node.flops, node.nbytes, node.op_class or ""),)
        else:
            continue
        figures = cache.get(key)
        if figures is None:
            figures = cache[key] = _node_figures(hardware, list(key))
        for i in range(4):
            acc[i] += figures[i] * duration
        acc[5] += figures[4] * duration
    return {rank: RooflineStats(a[0] / a[4], a[1] / a[4], a[2] / a[4], a[3] / a[4], a[4], a[5])
            for rank, a in sorted(sums.items()) if a[4] > 0}
