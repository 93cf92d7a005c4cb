"""AstraSim's analytical-backend configuration files in des terms.

``network.yml`` (``topology``, ``npus_count``, ``bandwidth``, ``latency``: one entry per
dimension; Ring / FullyConnected / Switch) becomes a des topology; ``system.json`` becomes
:class:`~des.sim.options.EngineOptions` in AstraSim-compatible mode. Units are converted here and
nowhere else: AstraSim's network GB/s are 2^30 B/s, its ``local-mem-bw`` is 1e9 B/s (= bytes/ns)
and ``peak-perf`` is TFLOP/s; latencies are ns. Unknown or unsupported keys are reported as
warnings naming them, never dropped silently.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from des.core.graph import CollectiveType
from des.sim.options import ASTRA_ENDPOINT_DELAY_NS, EngineOptions
from topologies import DimSpec, Topology, fully_connected, hierarchical, ring, switch

log = logging.getLogger(__name__)

GIB_PER_GB = 2**30 / 1e9  # AstraSim network "GB/s" = 2^30 B/s; des bytes/ns = 1e9 B/s

_TOPOLOGY_KINDS = {"Ring": "ring", "FullyConnected": "fully_connected", "Switch": "switch"}
_ALGORITHMS = {"ring": "ring", "direct": "direct", "halvingDoubling": "halving_doubling",
               "doubleBinaryTree": "double_binary_tree"}
_IMPLEMENTATION_KEYS = {
    CollectiveType.ALL_REDUCE: "all-reduce-implementation",
    CollectiveType.REDUCE_SCATTER: "reduce-scatter-implementation",
    CollectiveType.ALL_GATHER: "all-gather-implementation",
    CollectiveType.ALL_TO_ALL: "all-to-all-implementation",
}
# a collective given as Chakra ETs, one per rank (CollectiveImplLookup.cc): it overrides the
# per-dimension implementation and covers every dimension
_CUSTOM_KEYS = {ctype: f"{key}-custom" for ctype, key in _IMPLEMENTATION_KEYS.items()}
_SYSTEM_KEYS = {
    "scheduling-policy", "endpoint-delay", "active-chunks-per-dimension",
    "preferred-dataset-splits", "collective-optimization", "local-mem-bw", "peak-perf",
    "roofline-enabled", *_IMPLEMENTATION_KEYS.values(), *_CUSTOM_KEYS.values(),
}


class AstraConfigError(ValueError):
    """An AstraSim configuration file des cannot use; names the file and the key."""


@dataclass(frozen=True)
class AstraNetwork:
    """One ``network.yml``: per dimension its kind, NPU count, bandwidth (bytes/ns, converted)
    and latency (ns)."""

    kinds: tuple[str, ...]
    sizes: tuple[int, ...]
    bandwidths: tuple[float, ...]
    latencies: tuple[float, ...]

    @property
    def npus(self) -> int:
        """NPUs in the whole system."""
        total = 1
        for n in self.sizes:
            total *= n
        return total

    def topology(self) -> Topology:
        """The des topology: one dimension as its builder, several as a hierarchical stack."""
        if len(self.sizes) == 1:
            kind, n, bw, lat = self.kinds[0], self.sizes[0], self.bandwidths[0], self.latencies[0]
            if kind == "ring":
                return ring(n, bw, lat)
            if kind == "fully_connected":
                return fully_connected(n, bw, lat)
            return switch(n, bw, lat)
        return hierarchical([DimSpec(k, n, bw, lat) for k, n, bw, lat in
                             zip(self.kinds, self.sizes, self.bandwidths, self.latencies,
                                 strict=True)])


@dataclass(frozen=True)
class AstraSystem:
    """One ``system.json``, with des algorithm names per collective and dimension."""

    endpoint_delay_ns: float = ASTRA_ENDPOINT_DELAY_NS
    active_chunks: int = 1
    splits: int = 1
    local_mem_bw: float = 0.0  # bytes/ns
    peak_tflops: float = 0.0
    roofline: bool = False
    scheduling_policy: str = "LIFO"
    optimization: str = "localBWAware"
    implementations: dict[str, tuple[str, ...]] = field(default_factory=dict)
    custom: dict[str, Path] = field(default_factory=dict)  # collective -> ET prefix

    def engine_options(self, *, congestion_aware: bool = True, **overrides: Any
                       ) -> EngineOptions:
        """AstraSim-compatible engine options for this system; custom collectives are read
        and registered here (:mod:`astra_bridge.custom_collectives`)."""
        algorithms, dim_algorithms = {}, ()
        for ctype, per_dim in self.implementations.items():
            if len(per_dim) == 1:
                algorithms[ctype] = per_dim[0]
            else:
                algorithms[ctype] = "hierarchical"
                if ctype == CollectiveType.ALL_REDUCE.value:
                    dim_algorithms = per_dim
        if self.custom:
            from astra_bridge.custom_collectives import register_custom

            for ctype, prefix in self.custom.items():
                algorithms[ctype] = register_custom(CollectiveType(ctype), prefix)
        return EngineOptions.astra_compat(
            congestion_aware=congestion_aware, endpoint_delay_ns=self.endpoint_delay_ns,
            local_mem_bw=self.local_mem_bw or 1e-9, splits=self.splits,
            algorithms=algorithms, dim_algorithms=dim_algorithms,
            chunks_in_flight=self.active_chunks, **overrides)


def _load(path: str | Path, what: str) -> Any:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise AstraConfigError(f"{what} {path}: cannot read: {err}") from None
    try:
        return json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as err:
        raise AstraConfigError(f"{what} {path}: not valid {path.suffix[1:] or 'YAML'}: "
                               f"{err}") from None


def network_from_dict(data: Any, source: str = "network.yml") -> AstraNetwork:
    """Read the four per-dimension lists and convert units; they must have equal lengths."""
    if not isinstance(data, Mapping):
        raise AstraConfigError(f"{source}: expected a mapping with topology, npus_count, "
                               "bandwidth and latency")
    keys = ("topology", "npus_count", "bandwidth", "latency")
    unknown = sorted(set(data) - set(keys))
    if unknown:
        log.warning("%s: ignoring keys des does not use: %s", source, ", ".join(unknown))
    lists = {}
    for key in keys:
        value = data.get(key)
        if not isinstance(value, list) or not value:
            raise AstraConfigError(f"{source}: {key} must be a non-empty list, got {value!r}")
        lists[key] = value
    lengths = {k: len(v) for k, v in lists.items()}
    if len(set(lengths.values())) != 1:
        raise AstraConfigError(f"{source}: per-dimension lists differ in length: {lengths}")
    kinds = []
    for i, kind in enumerate(lists["topology"]):
        if kind not in _TOPOLOGY_KINDS:
            raise AstraConfigError(f"{source}: topology[{i}]: unknown {kind!r}; expected one of "
                                   f"{', '.join(_TOPOLOGY_KINDS)}")
        kinds.append(_TOPOLOGY_KINDS[kind])
    for key in ("npus_count", "bandwidth", "latency"):
        for i, v in enumerate(lists[key]):
            if isinstance(v, bool) or not isinstance(v, int | float) or v < 0 or \
                    (key != "latency" and v <= 0):
                raise AstraConfigError(f"{source}: {key}[{i}] = {v!r} is not a valid number")
    return AstraNetwork(tuple(kinds), tuple(int(n) for n in lists["npus_count"]),
                        tuple(float(b) * GIB_PER_GB for b in lists["bandwidth"]),
                        tuple(float(x) for x in lists["latency"]))


def load_network(path: str | Path) -> AstraNetwork:
    """An AstraSim analytical ``network.yml``."""
    return network_from_dict(_load(path, "network file"), str(path))


def system_from_dict(data: Any, dims: int, source: str = "system.json") -> AstraSystem:
    """Read ``system.json`` for a network of ``dims`` dimensions."""
    if not isinstance(data, Mapping):
        raise AstraConfigError(f"{source}: expected a JSON object")
    unknown = sorted(set(data) - _SYSTEM_KEYS)
    if unknown:
        log.warning("%s: ignoring keys des does not model: %s", source, ", ".join(unknown))
    implementations = {}
    for ctype, key in _IMPLEMENTATION_KEYS.items():
        names = data.get(key, ["ring"] * dims)
        if not isinstance(names, list) or len(names) != dims:
            raise AstraConfigError(f"{source}: {key} must list one implementation per network "
                                   f"dimension ({dims}), got {names!r}")
        mapped = []
        for i, name in enumerate(names):
            if name not in _ALGORITHMS:
                raise AstraConfigError(f"{source}: {key}[{i}]: unsupported {name!r}; des knows "
                                       f"{', '.join(_ALGORITHMS)}")
            mapped.append(_ALGORITHMS[name])
        implementations[ctype.value] = tuple(mapped)
    custom = {}
    for ctype, key in _CUSTOM_KEYS.items():
        if key not in data:
            continue
        value = data[key]  # AstraSim: "There should be 1 Chakra ET only"
        if not (isinstance(value, list) and len(value) == 1 and isinstance(value[0], str)
                and value[0]):
            raise AstraConfigError(f"{source}: {key} must list one Chakra ET path prefix (it "
                                   f"covers every dimension), got {value!r}")
        # AstraSim opens it relative to its working directory; des relative to system.json's
        prefix = Path(value[0])
        custom[ctype.value] = prefix if prefix.is_absolute() else Path(source).parent / prefix
    policy = data.get("scheduling-policy", "LIFO")
    if policy not in ("LIFO", "FIFO"):
        raise AstraConfigError(f"{source}: scheduling-policy {policy!r}; expected LIFO or FIFO")
    optimization = data.get("collective-optimization", "localBWAware")
    if optimization != "localBWAware":
        log.warning("%s: collective-optimization %r is modelled as localBWAware", source,
                    optimization)
    return AstraSystem(
        endpoint_delay_ns=float(data.get("endpoint-delay", AstraSystem.endpoint_delay_ns)),
        active_chunks=int(data.get("active-chunks-per-dimension", AstraSystem.active_chunks)),
        splits=int(data.get("preferred-dataset-splits", AstraSystem.splits)),
        local_mem_bw=float(data.get("local-mem-bw", 0.0)),
        peak_tflops=float(data.get("peak-perf", 0.0)),
        roofline=bool(data.get("roofline-enabled", 0)),
        scheduling_policy=policy, optimization=optimization,
        implementations=implementations, custom=custom)


def load_system(path: str | Path, dims: int) -> AstraSystem:
    """An AstraSim ``system.json`` for a network of ``dims`` dimensions."""
    return system_from_dict(_load(path, "system file"), dims, str(path))
