"""Export a des scenario as AstraSim inputs: Chakra traces, comm groups, system.json,
network.yml and remote_memory.json, in a folder AstraSim runs from.

AstraSim's analytical network knows stacks of Ring / FullyConnected / Switch dimensions with
one bandwidth and latency each and no faults. Rings, fully connected fabrics, single switches
and hierarchical stacks of them export exactly; tori export as stacks of rings (AstraSim then
runs collectives per dimension, as des's hierarchical algorithm does, but routes point-to-point
messages on the first differing dimension only). Meshes (XY routing over non-wrapping links),
fat trees, custom fabrics and faulty links cannot be expressed and are refused with the nearest
stack that can. Bandwidths go out in AstraSim's GB/s (2^30 B/s).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from astra_bridge.chakra_write import write_trace
from astra_bridge.configs import GIB_PER_GB
from des.core.graph import CollectiveType, EventGraph, NodeKind
from des.core.hardware import GpuSpec
from des.core.schema import SchemaError
from des.sim.choices import algorithm_for, local_time
from des.sim.options import ASTRA_LOCAL_MEM_BW, EngineOptions
from topologies.base import Topology
from topologies.meta import HierarchicalLayout, LeafSpineLayout, SuperpodLayout

_KIND_NAMES = {"ring": "Ring", "fully_connected": "FullyConnected", "switch": "Switch"}
_ALGORITHM_NAMES = {"ring": "ring", "direct": "direct", "halving_doubling": "halvingDoubling",
                    "double_binary_tree": "doubleBinaryTree"}
_NEAREST = {"ring_bidir": "ring", "pairwise": "direct", "torus2d": "ring",
            "hierarchical": "ring", "binomial_tree": "ring", "dissemination": "ring"}


class ExportError(SchemaError):
    """The scenario cannot be written as AstraSim inputs; says why and what would do (a
    :class:`~des.core.schema.SchemaError`: the scenario is the input at fault)."""


@dataclass
class ExportedFiles:
    """Paths of what :func:`export` wrote, and the command-line flags AstraSim needs."""

    folder: Path
    workload_prefix: Path
    system: Path
    network: Path
    remote_memory: Path
    comm_groups: Path | None
    notes: list[str]

    def flags(self) -> list[str]:
        """AstraSim's command-line arguments for these files (paths relative to the folder)."""
        args = [f"--workload-configuration={self.workload_prefix.relative_to(self.folder)}",
                f"--system-configuration={self.system.name}",
                f"--remote-memory-configuration={self.remote_memory.name}",
                f"--network-configuration={self.network.name}"]
        if self.comm_groups is not None:
            args.append(f"--comm-group-configuration={self.comm_groups.name}")
        return args


def network_dims(topology: Topology) -> list[dict]:
    """AstraSim dimensions of a topology, or ExportError naming the nearest expressible stack."""
    if any(not lk.up or lk.derate != 1.0 for lk in topology.links):
        raise ExportError("AstraSim's analytical backends have no faulty or derated links; "
                          "export the topology without its faults")
    info, layout = topology.info, topology.layout
    kind = info.kind

    def dim(k: str, n: int, links: list) -> dict:
        bws = {lk.bandwidth for lk in links}
        lats = {lk.latency for lk in links}
        if len(bws) > 1 or len(lats) > 1:
            raise ExportError(f"dimension {k} x{n} mixes link bandwidths or latencies; AstraSim "
                              "has one of each per dimension")
        return {"topology": _KIND_NAMES[k], "npus": n, "bandwidth": bws.pop(),
                "latency": lats.pop()}

    if kind in _KIND_NAMES:
        if kind == "ring" and not info.bidirectional:
            raise ExportError("AstraSim's rings are bidirectional; export a bidirectional ring")
        if any(lat for lat in topology.switch_latency.values()):
            raise ExportError("AstraSim's switches forward without delay; set switch_latency 0")
        return [dim(kind, topology.num_npus, topology.links)]
    if kind == "hierarchical" and isinstance(layout, HierarchicalLayout):
        out = []
        for d, spec in enumerate(layout.specs):
            links = [lk for lk in topology.links if lk.kind.startswith(f"dim{d}-")]
            if spec.size > 1:
                out.append(dim(spec.kind, spec.size, links))
        return out
    if kind in ("torus2d", "torus3d"):
        return [dim("ring", n, [lk for lk in topology.links if lk.kind == axis])
                for n, axis in zip(info.dims, "xyz", strict=False) if n > 1]
    dims = info.dims
    nearest = {
        "mesh2d": f"Ring {dims[0]} x Ring {dims[1]} (a torus: AstraSim has no mesh)"
        if dims else "a stack of rings",
        "fat_tree": f"Switch {topology.num_npus} (one switch: AstraSim has no multi-tier "
                    "Clos or ECMP)",
        "leaf_spine": f"Switch {layout.hosts_per_leaf} x Switch {layout.leaves}"
        if isinstance(layout, LeafSpineLayout) else "a stack of switches",
        "superpod": f"Switch {layout.gpus_per_node} x Switch {layout.nodes}"
        if isinstance(layout, SuperpodLayout) else "a stack of switches",
    }.get(kind, f"Switch {topology.num_npus}")
    raise ExportError(f"AstraSim cannot express the {kind} topology "
                      f"{topology.name}; the nearest stack it can is {nearest}")


def system_json(topology: Topology, graph: EventGraph, options: EngineOptions,
                hardware: GpuSpec | None, dims: int, notes: list[str]) -> dict:
    """AstraSim's system.json for these options (names in AstraSim's spelling)."""
    chosen: dict[CollectiveType, str] = {}
    for inst in graph.collective_instances():
        chosen.setdefault(inst.collective, algorithm_for(inst, topology, options))
    impl = {}
    for ctype, key in ((CollectiveType.ALL_REDUCE, "all-reduce-implementation"),
                       (CollectiveType.REDUCE_SCATTER, "reduce-scatter-implementation"),
                       (CollectiveType.ALL_GATHER, "all-gather-implementation"),
                       (CollectiveType.ALL_TO_ALL, "all-to-all-implementation")):
        name = chosen.get(ctype, "ring")
        if name == "hierarchical" and options.dim_algorithms:
            names = list(options.dim_algorithms)
        else:
            if name not in _ALGORITHM_NAMES:
                notes.append(f"{ctype}: des algorithm {name!r} has no AstraSim counterpart; "
                             f"exported as {_NEAREST.get(name, 'ring')!r}")
                name = _NEAREST.get(name, "ring")
            names = [name] * dims
        impl[key] = [_ALGORITHM_NAMES.get(n, "ring") for n in names]
    flops = any(n.flops for n in graph.all_nodes())
    system = {
        "scheduling-policy": "LIFO",
        "endpoint-delay": int(options.endpoint_delay_ns),
        "active-chunks-per-dimension": options.chunks_in_flight or 1,
        "preferred-dataset-splits": options.chunks,
        **impl,
        "collective-optimization": "localBWAware",
        "local-mem-bw": hardware.hbm_bandwidth if hardware else
        (options.reduction_bandwidth or ASTRA_LOCAL_MEM_BW),
        "peak-perf": hardware.peak_flops[hardware.default_dtype] / 1000 if hardware else 900,
        "roofline-enabled": int(bool(flops and hardware)),
    }
    if not options.astra:
        notes.append("des's own model (cut-through, pipelined chunks, free reductions) differs "
                     "from AstraSim's; compare with the AstraSim-compatible model")
    return system


COMPUTE_EXPORTS = ("roofline", "durations")
"""How compute nodes go out: ``roofline``, their FLOPs and bytes for AstraSim's roofline at
the GPU's datasheet peaks (des's per-class efficiencies and launch overhead are lost);
``durations``, the time des gives each node on ``hardware`` (efficiencies included), which
AstraSim replays, so both sides compute for the same time (to whole microseconds)."""


def export(graph: EventGraph, topology: Topology, folder: str | Path, *,
           options: EngineOptions | None = None, hardware: GpuSpec | None = None,
           prefix: str = "workload", compute: str = "roofline") -> ExportedFiles:
    """Write AstraSim's inputs for this graph and topology into ``folder``; ``compute``: one
    of :data:`COMPUTE_EXPORTS`."""
    if compute not in COMPUTE_EXPORTS:
        raise ExportError(f"compute export {compute!r}; expected one of "
                          f"{', '.join(COMPUTE_EXPORTS)}")
    options = options or EngineOptions()
    folder = Path(folder)
    dims = network_dims(topology)
    notes: list[str] = []
    system = system_json(topology, graph, options, hardware, len(dims), notes)
    durations = None
    if compute == "durations" and hardware is not None:
        durations = {(n.rank, n.id): local_time(n, hardware, options)
                     for n in graph.all_nodes()
                     if n.kind is NodeKind.COMPUTE and n.duration_ns is None}
        system["roofline-enabled"] = 0
        if durations:
            notes.append("compute exported as des's per-node durations on "
                         f"{hardware.name} (efficiencies and launch overhead included), "
                         "rounded to whole microseconds; AstraSim replays them")
    (folder / "workload").mkdir(parents=True, exist_ok=True)
    network = {
        "topology": [d["topology"] for d in dims],
        "npus_count": [d["npus"] for d in dims],
        "bandwidth": [_gbps(d["bandwidth"]) for d in dims],
        "latency": [d["latency"] for d in dims],
    }
    network_path = folder / "network.yml"
    network_path.write_text("".join(f"{k}: [ {', '.join(str(v) for v in vals)} ]\n"
                                    for k, vals in network.items()))
    system_path = folder / "system.json"
    system_path.write_text(json.dumps(system, indent=2) + "\n")
    remote = folder / "remote_memory.json"
    remote.write_text(json.dumps({"memory-type": "NO_MEMORY_EXPANSION"}) + "\n")
    workload_prefix = folder / "workload" / prefix
    groups_path = folder / "comm_group.json"
    written = write_trace(graph, workload_prefix, comm_groups_path=groups_path,
                          durations=durations)
    comm_groups = groups_path if groups_path in written or groups_path.exists() else None
    return ExportedFiles(folder, workload_prefix, system_path, network_path, remote,
                         comm_groups, notes)


def _gbps(bytes_per_ns: float) -> float:
    """des bytes/ns as AstraSim GB/s (2^30 B/s), rounded to 9 significant digits."""
    value = bytes_per_ns / GIB_PER_GB
    return float(f"{value:.9g}") if math.isfinite(value) else value
