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
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from collectives import algorithms_for
from des.core.graph import CollectiveType
from des.core.schema import (
    SchemaError,
    check,
    positive_int,
    short,
    show,
    unknown,
)
from des.sim.options import ASTRA_ENDPOINT_DELAY_NS, EngineOptions
from topologies import DimSpec, Topology, fully_connected, hierarchical, ring, switch

log = logging.getLogger(__name__)

GIB_PER_GB = 2**30 / 1e9  # AstraSim network "GB/s" = 2^30 B/s; des bytes/ns = 1e9 B/s

# Bounds on what the files may ask for, checked before anything is built. They are far beyond
# any AstraSim system and keep a typo (an extra digit or ten) from becoming hours of work, an
# exhausted memory or an infinite time.
MAX_NPUS = 1 << 20  #: NPUs in the whole network (product of npus_count)
MAX_DIMENSIONS = 16  #: entries of network.yml's per-dimension lists
MAX_SPLITS = 1024  #: preferred-dataset-splits (chunks per collective)
MAX_ACTIVE_CHUNKS = MAX_SPLITS  #: active-chunks-per-dimension
MIN_BANDWIDTH_GBPS = 1e-6  #: slowest link or memory (GB/s): 1 kB/s
MAX_BANDWIDTH_GBPS = 1e12  #: fastest link or memory (GB/s)
MAX_DELAY_NS = 1e15  #: longest latency or endpoint delay (ns): 11.6 days
MAX_PEAK_TFLOPS = 1e9  #: peak-perf (TFLOP/s)
MAX_FILE_BYTES = 64 << 20  #: a configuration file larger than this is not a configuration

_TOPOLOGY_KINDS = {"Ring": "ring", "FullyConnected": "fully_connected", "Switch": "switch"}
_ALGORITHMS = {"ring": "ring", "direct": "direct", "halvingDoubling": "halving_doubling",
               "doubleBinaryTree": "double_binary_tree"}
_ASTRA_NAMES = {des: astra for astra, des in _ALGORITHMS.items()}
_IMPLEMENTATION_KEYS = {
    CollectiveType.ALL_REDUCE: "all-reduce-implementation",
    CollectiveType.REDUCE_SCATTER: "reduce-scatter-implementation",
    CollectiveType.ALL_GATHER: "all-gather-implementation",
    CollectiveType.ALL_TO_ALL: "all-to-all-implementation",
}
_POLICIES = ("LIFO", "FIFO")
_OPTIMIZATIONS = ("localBWAware", "baseline")
# a collective given as Chakra ETs, one per rank (CollectiveImplLookup.cc): it overrides the
# per-dimension implementation and covers every dimension
_CUSTOM_KEYS = {ctype: f"{key}-custom" for ctype, key in _IMPLEMENTATION_KEYS.items()}
_SYSTEM_KEYS = {
    "scheduling-policy", "endpoint-delay", "active-chunks-per-dimension",
    "preferred-dataset-splits", "collective-optimization", "local-mem-bw", "peak-perf",
    "roofline-enabled", "track-local-mem", "local-mem-trace-filename",
    *_IMPLEMENTATION_KEYS.values(), *_CUSTOM_KEYS.values(),
}


class AstraConfigError(SchemaError):
    """An AstraSim configuration file des cannot use; names the file, the key, the bad value
    and what is allowed."""


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
    #: ``track-local-mem``: report each rank's peak local memory from the trace's tensor sizes
    #: (:mod:`astra_bridge.local_mem`)
    track_local_mem: bool = False

    def algorithms(self) -> tuple[dict[str, str], tuple[str, ...]]:
        """des algorithm per collective, and the per-dimension algorithms of the hierarchical
        ones (all-reduce's, which des uses for every hierarchical collective). Over several
        dimensions a collective with no hierarchical algorithm in des (all-to-all) runs as one
        flat collective with its first dimension's algorithm."""
        algorithms: dict[str, str] = {}
        dim_algorithms: tuple[str, ...] = ()
        for ctype, per_dim in self.implementations.items():
            if len(per_dim) == 1:
                algorithms[ctype] = per_dim[0]
            elif "hierarchical" in algorithms_for(CollectiveType(ctype)):
                algorithms[ctype] = "hierarchical"
                if ctype == CollectiveType.ALL_REDUCE.value:
                    dim_algorithms = per_dim
            else:
                algorithms[ctype] = per_dim[0]
        if self.custom:  # a custom collective overrides every dimension's implementation
            from astra_bridge.custom_collectives import register_custom

            for ctype, prefix in self.custom.items():
                algorithms[ctype] = register_custom(CollectiveType(ctype), prefix)
        return algorithms, dim_algorithms

    def check_runnable(self, used: Iterable[CollectiveType], sizes: tuple[int, ...],
                       source: str = "system.json") -> list[str]:
        """Raise an :class:`AstraConfigError` naming the key when an implementation chosen for
        a collective the workload has (``used``) has no des algorithm on a network of
        ``sizes`` (AstraSim users often list one name for all four collectives, so this is
        checked only for the collectives used); the warnings about approximations."""
        algorithms, dim_algorithms = self.algorithms()
        active = [d for d, n in enumerate(sizes) if n > 1]
        warnings = []
        for ctype in sorted(set(used) & set(_IMPLEMENTATION_KEYS), key=lambda c: c.value):
            if ctype.value in self.custom:
                continue  # its Chakra ETs were checked when they were read
            key = _IMPLEMENTATION_KEYS[ctype]
            name = algorithms[ctype.value]
            if name != "hierarchical":
                _require(name, ctype, f"{source}: {key}[0]", f"{ctype} collectives")
                if len(sizes) > 1:
                    warnings.append(f"{source}: {key}: des has no per-dimension {ctype}; "
                                    f"it runs as one flat {_ASTRA_NAMES[name]!r} over the "
                                    "whole group")
                continue
            for d in active:
                phases = [CollectiveType.ALL_REDUCE] if (
                    ctype is CollectiveType.ALL_REDUCE and d == active[-1]) else [
                    CollectiveType.REDUCE_SCATTER, CollectiveType.ALL_GATHER]
                for phase in phases:
                    if ctype in (CollectiveType.REDUCE_SCATTER, CollectiveType.ALL_GATHER) \
                            and phase is not ctype:
                        continue
                    _require(dim_algorithms[d], phase,
                             f"{source}: {_IMPLEMENTATION_KEYS[CollectiveType.ALL_REDUCE]}[{d}]",
                             f"the {phase} phase of multi-dimensional {ctype} collectives "
                             "(des uses all-reduce's per-dimension list for every "
                             "hierarchical collective)")
        return warnings

    def engine_options(self, *, congestion_aware: bool = True, **overrides: Any
                       ) -> EngineOptions:
        """AstraSim-compatible engine options for this system."""
        algorithms, dim_algorithms = self.algorithms()
        return EngineOptions.astra_compat(
            congestion_aware=congestion_aware, endpoint_delay_ns=self.endpoint_delay_ns,
            local_mem_bw=self.local_mem_bw or 1e-9, splits=self.splits,
            algorithms=algorithms, dim_algorithms=dim_algorithms,
            chunks_in_flight=self.active_chunks, **overrides)


def _require(name: str, ctype: CollectiveType, where: str, needed_for: str) -> None:
    """Raise unless des algorithm ``name`` can run ``ctype``."""
    available = algorithms_for(ctype)
    if name not in available:
        allowed = [astra for astra, des in _ALGORITHMS.items() if des in available]
        raise AstraConfigError(f"{where}: {_ASTRA_NAMES[name]!r} has no des algorithm for "
                               f"{needed_for}; use one of {', '.join(allowed)}")


def read_config(path: str | Path, what: str, *, json_only: bool = False) -> Any:
    """The parsed JSON (``.json`` or ``json_only``) or YAML (anything else) of an AstraSim
    input file, or an
    :class:`AstraConfigError` naming ``what`` and the file: unreadable, too large, not UTF-8,
    not valid, or nested beyond the parser's depth."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise AstraConfigError(f"{what} {path}: {size} bytes is too large for a "
                                   f"configuration file (at most {MAX_FILE_BYTES})")
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise AstraConfigError(f"{what} {path}: cannot read: {err}") from None
    except UnicodeDecodeError as err:
        raise AstraConfigError(f"{what} {path}: not UTF-8 text: {err}") from None
    try:
        if json_only or path.suffix == ".json":
            return json.loads(text)
        return yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as err:
        kind = "JSON" if json_only else path.suffix[1:] or "YAML"
        raise AstraConfigError(f"{what} {path}: not valid {kind}: {err}") from None
    except RecursionError:
        raise AstraConfigError(f"{what} {path}: nested too deeply to be a configuration "
                               "file") from None


# ---------------------------------------------------------------------- value parsers
def _bounded(low: float, high: float, unit: str, *, zero: bool = False
             ) -> Callable[[Any, str], float]:
    """A parser of finite numbers in [low, high] ``unit`` (or exactly 0 when ``zero``)."""
    def parse(value: Any, where: str) -> float:
        number = _real(value)
        if number is None or not (low <= number <= high or (zero and number == 0)):
            also = "0 or " if zero else ""
            raise AstraConfigError(f"{where}: must be {also}a number from {low:g} to "
                                   f"{high:g} {unit}, got {show(value)}")
        return number
    return parse


def _real(value: Any) -> float | None:
    """``value`` as a finite float; None for anything else (bools, text, NaN, infinities,
    integers too large for a float)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _count(high: int, what: str) -> Callable[[Any, str], int]:
    """A parser of whole numbers in 1..high (a float with no fraction, as JSON writers
    sometimes emit, is accepted)."""
    def parse(value: Any, where: str) -> int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        number = positive_int(value, where)
        if number > high:
            raise AstraConfigError(f"{where}: {number} {what} is more than des accepts (at "
                                   f"most {high})")
        return number
    return parse


def one_of(allowed: Mapping[str, Any] | tuple[str, ...], what: str
           ) -> Callable[[Any, str], Any]:
    """A parser of one of ``allowed``'s names (a mapping gives the parsed value), listing them
    and suggesting the closest (whatever its case) on an error."""
    def parse(value: Any, where: str) -> Any:
        if not isinstance(value, str):
            raise AstraConfigError(f"{where}: must be a {what} name, one of "
                                   f"{', '.join(allowed)}; got {show(value)}")
        if value not in allowed:
            same = [name for name in allowed if name.lower() == value.lower()]
            if same:  # AstraSim compares names exactly: say which spelling it wants
                raise AstraConfigError(f"{where}: unknown {what} {short(value)} (did you mean "
                                       f"{same[0]!r}?); expected one of {', '.join(allowed)}")
            raise AstraConfigError(unknown(where, value, allowed, what))
        return allowed[value] if isinstance(allowed, Mapping) else value
    return parse


def _flag(value: Any, where: str) -> bool:
    """AstraSim's 0/1 switches (true/false too)."""
    if isinstance(value, bool) or (isinstance(value, int) and value in (0, 1)):
        return bool(value)
    raise AstraConfigError(f"{where}: must be 0 or 1 (or true/false), got {show(value)}")


def _text(value: Any, where: str) -> str:
    """A non-empty string (a file name)."""
    if isinstance(value, str) and value:
        return value
    raise AstraConfigError(f"{where}: must be a non-empty string, got {show(value)}")


def _per_dim(data: Mapping[Any, Any], key: str, source: str, dims: int | None = None) -> list:
    """A per-dimension list: non-empty, at most MAX_DIMENSIONS long (``dims`` when given)."""
    value = data.get(key)
    if not isinstance(value, list) or not value:
        need = "one entry per network dimension" if dims is None else \
            f"one entry per network dimension ({dims})"
        raise AstraConfigError(f"{source}: {key} must be a non-empty list with {need}, got "
                               f"{'nothing' if key not in data else show(value)}")
    if dims is not None and len(value) != dims:
        raise AstraConfigError(f"{source}: {key} must list one implementation per network "
                               f"dimension ({dims}), got {len(value)}: {short(value)}")
    if len(value) > MAX_DIMENSIONS:
        raise AstraConfigError(f"{source}: {key} has {len(value)} dimensions; des accepts at "
                               f"most {MAX_DIMENSIONS}")
    return value


# ---------------------------------------------------------------------- files
def network_from_dict(data: Any, source: str = "network.yml") -> AstraNetwork:
    """Read the four per-dimension lists and convert units; they must have equal lengths.
    Every value is checked (kind names, whole NPU counts, finite bandwidths and latencies
    within the module's bounds, at most :data:`MAX_NPUS` NPUs in all) before anything is
    built; an :class:`AstraConfigError` names ``source``, the entry and the bad value."""
    if not isinstance(data, Mapping):
        raise AstraConfigError(f"{source}: expected a mapping with topology, npus_count, "
                               f"bandwidth and latency, got {show(data)}")
    keys = ("topology", "npus_count", "bandwidth", "latency")
    unknown_keys = sorted(str(k) for k in set(data) - set(keys))
    if unknown_keys:
        log.warning("%s: ignoring keys des does not use: %s", source, ", ".join(unknown_keys))
    lists = {key: _per_dim(data, key, source) for key in keys}
    lengths = {k: len(v) for k, v in lists.items()}
    if len(set(lengths.values())) != 1:
        raise AstraConfigError(f"{source}: per-dimension lists differ in length: {lengths}")

    def each(key: str, parse: Callable[[Any, str], Any]) -> tuple:
        return tuple(check(parse, v, f"{source}: {key}[{i}]", AstraConfigError)
                     for i, v in enumerate(lists[key]))

    kinds = each("topology", one_of(_TOPOLOGY_KINDS, "topology kind"))
    sizes = each("npus_count", _count(MAX_NPUS, "NPUs"))
    bandwidths = each("bandwidth", _bounded(MIN_BANDWIDTH_GBPS, MAX_BANDWIDTH_GBPS, "GB/s"))
    latencies = each("latency", _bounded(0.0, MAX_DELAY_NS, "ns"))
    npus = math.prod(sizes)
    if npus > MAX_NPUS:
        raise AstraConfigError(f"{source}: npus_count {list(sizes)} makes {npus} NPUs; des "
                               f"accepts at most {MAX_NPUS}")
    if npus < 2 or (len(sizes) == 1 and sizes[0] < 2):
        raise AstraConfigError(f"{source}: npus_count {list(sizes)}: a network needs at least "
                               "2 NPUs")
    return AstraNetwork(kinds, sizes, tuple(b * GIB_PER_GB for b in bandwidths), latencies)


def load_network(path: str | Path) -> AstraNetwork:
    """An AstraSim analytical ``network.yml``."""
    return network_from_dict(read_config(path, "network file"), str(path))


def system_from_dict(data: Any, dims: int, source: str = "system.json") -> AstraSystem:
    """Read ``system.json`` for a network of ``dims`` dimensions. Every value is checked
    (names against the implementations, policies and optimizations AstraSim has, counts and
    bandwidths within the module's bounds); an :class:`AstraConfigError` names ``source``, the
    key, the bad value and what is allowed."""
    if not isinstance(data, Mapping):
        raise AstraConfigError(f"{source}: expected a JSON object, got {show(data)}")
    unknown_keys = sorted(str(k) for k in set(data) - _SYSTEM_KEYS)
    if unknown_keys:
        log.warning("%s: ignoring keys des does not model: %s", source, ", ".join(unknown_keys))

    def get(key: str, parse: Callable[[Any, str], Any], default: Any) -> Any:
        if key not in data:
            return default
        return check(parse, data[key], f"{source}: {key}", AstraConfigError)

    implementations = {}
    algorithm = one_of(_ALGORITHMS, "implementation")
    for ctype, key in _IMPLEMENTATION_KEYS.items():
        names = _per_dim(data, key, source, dims) if key in data else ["ring"] * dims
        implementations[ctype.value] = tuple(
            check(algorithm, name, f"{source}: {key}[{i}]", AstraConfigError)
            for i, name in enumerate(names))
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
    optimization = get("collective-optimization", one_of(_OPTIMIZATIONS, "optimization"),
                       "localBWAware")
    if optimization != "localBWAware":
        log.warning("%s: collective-optimization %r is modelled as localBWAware", source,
                    optimization)
    bandwidth = _bounded(MIN_BANDWIDTH_GBPS, MAX_BANDWIDTH_GBPS, "GB/s", zero=True)
    system = AstraSystem(
        endpoint_delay_ns=float(get("endpoint-delay", _bounded(0.0, MAX_DELAY_NS, "ns"),
                                    AstraSystem.endpoint_delay_ns)),
        active_chunks=get("active-chunks-per-dimension",
                          _count(MAX_ACTIVE_CHUNKS, "active chunks"), AstraSystem.active_chunks),
        splits=get("preferred-dataset-splits", _count(MAX_SPLITS, "splits"),
                   AstraSystem.splits),
        local_mem_bw=get("local-mem-bw", bandwidth, 0.0),
        peak_tflops=get("peak-perf", _bounded(1e-9, MAX_PEAK_TFLOPS, "TFLOP/s", zero=True),
                        0.0),
        roofline=get("roofline-enabled", _flag, False),
        scheduling_policy=get("scheduling-policy", one_of(_POLICIES, "policy"), "LIFO"),
        optimization=optimization, implementations=implementations, custom=custom,
        track_local_mem=get("track-local-mem", _flag, False))
    trace_file = get("local-mem-trace-filename", _text, None)
    if system.track_local_mem and trace_file is not None:
        # AstraSim (Workload::report) writes its Perfetto memory trace to
        # ``{local-mem-trace-filename}.{rank}.json``; des reports only the peak
        log.warning("%s: local-mem-trace-filename %r: des reports the peak local memory but "
                    "does not write AstraSim's memory trace", source, trace_file)
    if system.roofline and (system.peak_tflops <= 0 or system.local_mem_bw <= 0):
        raise AstraConfigError(f"{source}: roofline-enabled needs peak-perf and local-mem-bw "
                               f"> 0, got {system.peak_tflops:g} and {system.local_mem_bw:g}")
    return system


def load_system(path: str | Path, dims: int) -> AstraSystem:
    """An AstraSim ``system.json`` for a network of ``dims`` dimensions."""
    return system_from_dict(read_config(path, "system file"), dims, str(path))
