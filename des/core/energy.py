"""Energy of one simulated step: what the GPUs' arithmetic, HBM traffic, links, switches and idle
power cost over a finished run, from the event graph, the Result and the GPU's energy figures
(:class:`~des.core.energy_spec.EnergySpec`, the ``energy:`` section of a hardware YAML).

The model is additive (an activity-based estimate in the manner of Horowitz, "Computing's
energy problem", ISSCC 2014: energy = operations x energy per operation, plus static power x
time)::

    compute  = sum over compute nodes of FLOPs x pJ/FLOP(default dtype)
    hbm      = sum over compute and memory nodes of HBM bytes x pJ/B(HBM)
    links    = sum over links of bytes carried x pJ/B(link class)
    switches = sum over links leaving a switch of bytes x pJ/B(switch traversal)
    static   = idle power x GPUs (every NPU of the topology) x makespan

* Work counts once per node of the graph, for every rank: a folded rank (its RankStats say
  ``represented_by``) counts its representative's work, since it ran the same nodes. Links come
  from the Result, whose folded and lockstep-mirrored links already carry their own bytes.
* FLOPs are charged at the GPU's default dtype, the dtype the roofline times them at.
* Collective reductions' own arithmetic and HBM traffic are not in the graph as nodes, so they
  are not charged; a compute node given only a duration (replayed traces) has no FLOPs or bytes
  and costs no dynamic energy (the report counts such nodes).
* Link and switch energy need the bytes each link carried: the closed-form backend moves no
  messages, and a folded run that timed some collectives in closed form moved none for them.
  The caller may pass those bytes laid out on the links (``unmoved``, from
  :func:`des.sim.link_traffic.unmoved_link_bytes`); the report says how many bytes were laid
  out rather than simulated, or, without them, that link energy misses that traffic.
* A figure the hardware does not set is charged as zero and listed under ``missing``.

Units: energies in joules, power in watts (internally pJ x 1e-12 = J and W x ns x 1e-9 = J).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from des.core.energy_spec import LINK_CLASSES, EnergySpec, link_class
from des.core.graph import EventGraph, NodeKind
from des.core.hardware import GpuSpec
from des.core.results import Result

__all__ = ["EnergyReport", "energy_report"]

_PJ = 1e-12  # joules per picojoule
_NS = 1e-9  # seconds per nanosecond


@dataclass(frozen=True)
class EnergyReport:
    """The energy of one run, in joules, and what it was computed from.

    ``compute_j``, ``hbm_j``, ``link_j`` (per link class), ``switch_j`` and ``static_j`` add up
    to ``total_j``; ``average_power_w`` is ``total_j`` over the makespan (all GPUs, links and
    switches together), ``per_gpu_power_w`` that over ``gpus``. ``tokens``: the tokens the step
    produced (training: global batch x sequence; inference: generated tokens), None when the
    workload has no tokens, and then ``per_token_j`` is None too. ``flops``, ``hbm_bytes``,
    ``link_bytes`` and ``switch_bytes`` are the amounts charged; ``missing`` names the figures
    the hardware did not set (charged as 0); ``unknown_work_nodes`` counts compute nodes with
    only a duration; ``links_measured`` is False when the backend moved no messages, and
    ``closed_form_collectives`` counts collectives whose traffic no link carried;
    ``laid_out_bytes`` is the part of ``link_bytes`` laid out for them rather than simulated.
    """

    compute_j: float
    hbm_j: float
    link_j: dict[str, float]
    switch_j: float
    static_j: float
    total_j: float
    makespan_ns: float
    gpus: int
    average_power_w: float
    per_gpu_power_w: float
    tokens: float | None
    per_token_j: float | None
    flops: float
    hbm_bytes: float
    link_bytes: dict[str, float]
    switch_bytes: float
    pj_per_flop: float | None
    missing: tuple[str, ...] = ()
    unknown_work_nodes: int = 0
    links_measured: bool = True
    closed_form_collectives: int = 0
    laid_out_bytes: float = 0.0
    notes: tuple[str, ...] = field(default=())

    def as_dict(self) -> dict[str, Any]:
        """JSON form (lists for tuples)."""
        out = asdict(self)
        out["links_j"] = sum(self.link_j.values())
        out["missing"] = list(self.missing)
        out["notes"] = list(self.notes)
        return out

    def metrics(self) -> dict[str, float | None]:
        """The flat figures a sweep records for a point."""
        return {"energy_j": self.total_j, "energy_per_token_j": self.per_token_j,
                "avg_power_w": self.average_power_w, "energy_compute_j": self.compute_j,
                "energy_hbm_j": self.hbm_j, "energy_links_j": sum(self.link_j.values()),
                "energy_switch_j": self.switch_j, "energy_static_j": self.static_j}


def _rank_work(graph: EventGraph) -> tuple[list[float], list[float], list[int]]:
    """Per rank of the graph: FLOPs, HBM bytes, and compute nodes with only a duration."""
    flops = [0.0] * graph.num_ranks
    nbytes = [0.0] * graph.num_ranks
    unknown = [0] * graph.num_ranks
    for rank in range(graph.num_ranks):
        for node in graph.nodes(rank):
            if node.kind == NodeKind.COMPUTE:
                flops[rank] += node.flops
                nbytes[rank] += node.nbytes
                if not (node.flops or node.nbytes) and node.duration_ns:
                    unknown[rank] += 1
            elif node.kind == NodeKind.MEMORY:
                nbytes[rank] += node.nbytes
    return flops, nbytes, unknown


def energy_report(graph: EventGraph, result: Result, gpu: GpuSpec,
                  tokens: float | None = None, spec: EnergySpec | None = None,
                  unmoved: Mapping[int, float] | None = None, unlaid: int = 0
                  ) -> EnergyReport:
    """The energy of ``result`` (a run of ``graph`` on GPUs ``gpu``) under ``spec`` (default:
    ``gpu.energy``; a ValueError when neither is set). ``tokens``: what the step produced, for
    the energy per token. ``unmoved``: link id -> bytes of the traffic the run timed without
    moving messages, laid out on its links; ``unlaid``: collectives that could not be laid out.
    See the module doc for the model and its assumptions."""
    spec = spec if spec is not None else gpu.energy
    if spec is None:
        raise ValueError(f"{gpu.name}: no energy figures (the hardware has no 'energy' section)")
    missing: list[str] = []
    notes: list[str] = []

    flops_by_rank, bytes_by_rank, unknown_by_rank = _rank_work(graph)
    flops = hbm_bytes = 0.0
    unknown = 0
    for rank, stats in result.ranks.items():  # a folded rank did its representative's work
        source = stats.represented_by if stats.represented_by is not None else rank
        flops += flops_by_rank[source]
        hbm_bytes += bytes_by_rank[source]
        unknown += unknown_by_rank[source]

    dtype = gpu.default_dtype
    pj_per_flop = spec.flop_energy(dtype, gpu.peak_flops.get(dtype))
    if pj_per_flop is None and flops > 0:
        missing.append(f"flop_energy.{dtype}")
    if spec.hbm_pj_per_byte is None and hbm_bytes > 0:
        missing.append("hbm_energy")
    compute_j = flops * (pj_per_flop or 0.0) * _PJ
    hbm_j = hbm_bytes * (spec.hbm_pj_per_byte or 0.0) * _PJ

    npus = int(result.meta.get("npus", len(result.ranks)))
    link_bytes: dict[str, float] = defaultdict(float)
    switch_bytes = laid_out = 0.0
    for link in result.links:
        extra = unmoved.get(link.id, 0.0) if unmoved else 0.0
        laid_out += extra
        carried = link.bytes + extra
        if carried <= 0:
            continue
        link_bytes[link_class(link.kind, spec)] += carried
        if link.src >= npus:  # devices past the NPUs are switches; this byte crossed one
            switch_bytes += carried
    link_j = {}
    for cls in LINK_CLASSES:
        per_byte = spec.link_pj_per_byte.get(cls)
        if per_byte is None and link_bytes.get(cls, 0.0) > 0:
            missing.append(f"link_energy.{cls}")
        link_j[cls] = link_bytes.get(cls, 0.0) * (per_byte or 0.0) * _PJ
    if spec.switch_pj_per_byte is None and switch_bytes > 0:
        missing.append("switch_energy")
    switch_j = switch_bytes * (spec.switch_pj_per_byte or 0.0) * _PJ

    if spec.idle_power_w is None:
        missing.append("idle_power")
    static_j = (spec.idle_power_w or 0.0) * npus * result.makespan_ns * _NS

    links_measured = result.meta.get("backend") != "analytical"
    closed = sum(1 for c in result.collectives
                 if c.bytes_injected is None and len(c.group) > 1 and c.nbytes > 0)
    if unmoved is not None:
        if laid_out > 0:
            what = "the run" if not links_measured else f"{closed} collectives timed in closed form"
            notes.append(f"link bytes of {what} laid out from step programs on their routes "
                         "(not simulated)")
        if unlaid:
            notes.append(f"{unlaid} collectives without a step program could not be laid out: "
                         "their link energy is not counted")
    elif not links_measured:
        notes.append("the closed-form backend moves no messages: link and switch energy "
                     "are not measured (0)")
    elif closed:
        notes.append(f"{closed} collectives were timed in closed form and moved no bytes on "
                     "links: their link energy is not counted")
    if unknown:
        notes.append(f"{unknown} compute nodes have only a duration (no FLOPs or bytes) and "
                     "cost no dynamic energy")

    total = compute_j + hbm_j + sum(link_j.values()) + switch_j + static_j
    seconds = result.makespan_ns * _NS
    power = total / seconds if seconds > 0 else 0.0
    per_token = total / tokens if tokens else None
    return EnergyReport(
        compute_j, hbm_j, link_j, switch_j, static_j, total, result.makespan_ns, npus, power,
        power / npus if npus else 0.0, tokens, per_token, flops, hbm_bytes,
        {cls: link_bytes.get(cls, 0.0) for cls in LINK_CLASSES}, switch_bytes, pj_per_flop,
        tuple(missing), unknown, links_measured, closed if links_measured else 0, laid_out,
        tuple(notes))
