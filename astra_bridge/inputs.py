"""A full set of AstraSim inputs (Chakra traces, system, network, comm groups, remote memory) as a
des scenario, runnable in three models:

* ``des``: des's own fabric model on AstraSim's topology and workload (cut-through, pipelined
  chunks, contention everywhere), keeping the system's algorithm choices and chunk count;
* ``aware``: AstraSim's congestion-aware semantics (:meth:`EngineOptions.astra_compat`);
* ``unaware``: its congestion-unaware semantics (no contention).

AstraSim's roofline (``roofline-enabled``) becomes a des GPU whose peak is ``peak-perf`` and
whose memory bandwidth is ``local-mem-bw`` at full efficiency with no launch overhead, which is
exactly AstraSim's ``num_ops / min(bw x intensity, peak)``; without it, compute nodes that only
carry ``num_ops`` take AstraSim's 1 ns.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from astra_bridge.chakra_files import check_rank_files, rank_files
from astra_bridge.chakra_mapping import ChakraError, trace_path
from astra_bridge.chakra_read import TraceGraph, read_comm_groups, read_trace
from astra_bridge.configs import (
    AstraConfigError,
    AstraNetwork,
    AstraSystem,
    load_network,
    load_system,
    one_of,
    read_config,
)
from des.core.graph import EventGraph, NodeKind
from des.core.hardware import GpuSpec
from des.core.schema import check, show
from des.sim.choices import NOOP
from des.sim.options import EngineOptions
from topologies.base import Topology

log = logging.getLogger(__name__)

MODELS = ("des", "aware", "unaware")


@dataclass
class AstraInputs:
    """AstraSim's inputs read into des objects."""

    network: AstraNetwork
    system: AstraSystem
    trace: TraceGraph
    topology: Topology
    hardware: GpuSpec | None
    warnings: list[str] = field(default_factory=list)

    @property
    def aware_refusal(self) -> str | None:
        """Why AstraSim's congestion-aware binary would refuse this network, or None: it builds
        one-dimensional topologies only (astra-network-analytical,
        ``congestion_aware/topology/Helper.cpp``: "only support 1-dim topology", exit -1);
        des runs such networks with every dimension's links contended."""
        dims = len(self.network.sizes)
        if dims == 1:
            return None
        shape = " x ".join(f"{k} {n}" for k, n in zip(self.network.kinds, self.network.sizes,
                                                      strict=True))
        return (f"AstraSim's congestion-aware backend would refuse this {dims}-dimension "
                f"network ({shape}): it supports one-dimension topologies only; des runs it "
                "with contention on every dimension")

    @property
    def graph(self) -> EventGraph:
        """The event graph of the traces."""
        return self.trace.graph

    def options(self, model: str = "aware") -> EngineOptions:
        """Engine options for ``model`` (see the module docstring)."""
        if model not in MODELS:
            raise ValueError(f"unknown model {model!r}; expected one of {', '.join(MODELS)}")
        if model == "des":
            compat = self.system.engine_options()
            return EngineOptions(chunks=self.system.splits, algorithms=compat.algorithms,
                                 dim_algorithms=compat.dim_algorithms)
        options = self.system.engine_options(congestion_aware=model == "aware")
        options.recv_busy_from_post = True
        return options


def astra_hardware(system: AstraSystem) -> GpuSpec | None:
    """The roofline GPU a system.json describes, or None when its roofline is off."""
    if not system.roofline:
        return None
    if system.peak_tflops <= 0 or system.local_mem_bw <= 0:
        raise AstraConfigError(f"system.json: roofline-enabled needs peak-perf and local-mem-bw "
                               f"> 0, got {system.peak_tflops:g} and {system.local_mem_bw:g}")
    return GpuSpec(
        name=f"AstraSim roofline ({system.peak_tflops:g} TFLOP/s, "
             f"{system.local_mem_bw:g} GB/s)",
        peak_flops={"fp16": system.peak_tflops * 1000.0},
        hbm_bandwidth=system.local_mem_bw,
        hbm_capacity=float(2**60),
        efficiency={"default": (1.0, 1.0)},
        launch_overhead_ns=0.0,
        default_dtype="fp16",
        sources=("AstraSim system.json: peak-perf (TFLOP/s) and local-mem-bw (GB/s = 1e9 B/s)",),
    )


#: AstraSim's remote-memory architectures (``memory-type``); des models only the first.
MEMORY_TYPES = ("NO_MEMORY_EXPANSION", "PER_NODE_MEMORY_EXPANSION", "PER_NPU_MEMORY_EXPANSION",
                "MEMORY_POOL")


def _check_remote_memory(path: str | Path | None) -> list[str]:
    """Check AstraSim's remote-memory JSON (an object with a known ``memory-type``); the
    warnings for what des does not model."""
    if path is None:
        return []
    data = read_config(path, "remote memory file", json_only=True)
    if not isinstance(data, dict):
        raise AstraConfigError(f"remote memory file {path}: expected a JSON object with "
                               f"memory-type, got {show(data)}")
    if "memory-type" not in data:
        raise AstraConfigError(f"remote memory file {path}: memory-type: required key is "
                               f"missing; expected one of {', '.join(MEMORY_TYPES)}")
    kind = check(one_of(MEMORY_TYPES, "memory type"), data["memory-type"],
                 f"remote memory file {path}: memory-type", AstraConfigError)
    if kind == "NO_MEMORY_EXPANSION":
        return []
    return [f"{path}: memory-type {kind!r} is not modelled; memory nodes use local HBM"]


def _check_workload_files(workload: str | Path, network: AstraNetwork, source: str | Path
                          ) -> list[str]:
    """Refuse a network with more NPUs than the workload has rank files (before anything is
    built, so a mistyped npus_count costs a directory listing, not a topology); warn when
    files are left over (AstraSim ignores them too)."""
    prefix = Path(str(workload))
    ranks = rank_files(prefix)
    npus = network.npus
    if not ranks:
        raise ChakraError(f"{trace_path(prefix, 0)}: no trace files {prefix.name}.<rank>.et "
                          f"in {prefix.parent}")
    check_rank_files(prefix, npus, f" by {source} (npus_count {list(network.sizes)})")
    extra = sum(1 for r in ranks if r >= npus)
    if extra:
        return [f"{prefix}: {extra} rank files beyond the {npus} NPUs of {source} are not "
                "simulated"]
    return []


def load_inputs(workload: str | Path, system: str | Path, network: str | Path, *,
                comm_groups: str | Path | None = None,
                remote_memory: str | Path | None = None) -> AstraInputs:
    """Read AstraSim's command-line inputs (``--workload-configuration`` prefix and the rest).

    Every file is checked before anything is built: the network and system files, the
    remote-memory and comm-group files, and that the workload has a rank file for every NPU of
    the network; then the topology is built and the traces read. Bad input raises a
    :class:`~des.core.schema.SchemaError` (:class:`AstraConfigError` or
    :class:`~astra_bridge.chakra_mapping.ChakraError`) naming the file."""
    net = load_network(network)
    sysc = load_system(system, dims=len(net.sizes))
    warnings = _check_remote_memory(remote_memory)
    if comm_groups is not None:
        read_comm_groups(comm_groups)  # its shape; ranks are checked where groups are used
    warnings += _check_workload_files(workload, net, network)
    topology = net.topology()
    trace = read_trace(workload, num_ranks=net.npus, comm_groups=comm_groups,
                       name=Path(str(workload)).name, tensors=sysc.track_local_mem)
    used = {node.collective for node in trace.graph.all_nodes()
            if node.kind is NodeKind.COLLECTIVE and node.collective is not None}
    warnings += sysc.check_runnable(used, net.sizes, str(system))
    hardware = astra_hardware(sysc)
    warnings = list(trace.warnings) + warnings
    if hardware is None:  # AstraSim times FLOP-only compute nodes at its minimum without one
        for rank, node_id in trace.roofline_nodes:
            node = trace.graph.node(rank, node_id)
            node.duration_ns = 0.0
    else:  # AstraSim skips roofline nodes that move no bytes
        for rank, node_id in trace.roofline_nodes:
            node = trace.graph.node(rank, node_id)
            if node.nbytes == 0:
                node.op_class = NOOP
    for message in warnings:
        log.warning("%s", message)
    return AstraInputs(net, sysc, trace, topology, hardware, warnings)
