"""Scenario files: one YAML describes topology, hardware, workload, network options and outputs.

Quantities take explicit units (``50 GB/s``, ``500 ns``, ``1 MiB``; see :mod:`des.core.units`).
Every error is a :class:`ConfigError` naming the key path, the bad value and what is allowed.
Files are read with :func:`des.core.yaml_safe.load_yaml` (a safe loader with bounds on
nesting, aliases, integer length and duplicate keys), so a scenario can never construct Python
objects or make the loader do unbounded work.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.abc import Traversable
from pathlib import Path
from typing import Any

from collectives import CollectiveError, algorithms_for, check_algorithm
from des.app.sections import ConfigError, Section
from des.app.workload_kinds import get_workload_kind, scenario_kinds
from des.core import limits, schema, units
from des.core.graph import CollectiveType, EventGraph, GraphError
from des.core.hardware import GpuSpec, HardwareError, gpu_from_dict, load_gpu
from des.core.paths import bundled
from des.core.schema import SchemaError
from des.core.yaml_safe import is_file, load_yaml, read_text
from des.sim.backends import DEFAULT_BACKEND, get_backend
from des.sim.engine import EngineOptions
from des.sim.hops import DEFAULT_PACKET_BYTES, TransportMode
from des.sim.options import ASTRA_ENDPOINT_DELAY_NS, ASTRA_LOCAL_MEM_BW, DEFAULT_CHUNKS
from des.sim.work import check_work
from topologies import Topology, TopologyError
from topologies.faults import LinkFault, apply_faults, random_faults
from topologies.registry import build as build_topology_kind
from topologies.registry import get_topology_kind, topology_kinds
from topologies.spec import parse_spec

DEFAULT_SCENARIO = "dp8_ring_overlap"


@dataclass
class Outputs:
    """Where to write results; None means do not write that file."""

    json: Path | None = None
    trace: Path | None = None
    links_csv: Path | None = None


@dataclass
class Scenario:
    """A fully built scenario, ready to simulate."""

    name: str
    description: str
    topology: Topology
    graph: EventGraph
    hardware: GpuSpec | None
    options: EngineOptions
    outputs: Outputs = field(default_factory=Outputs)
    source: str = ""
    workload: Any = None  # what built the graph, when a report needs it (LLM training)
    kind: str = ""  # workload.kind (des.app.workload_kinds); "" for graphs from elsewhere


_show = schema.show
_positive_int = schema.positive_int
_nonneg_int = schema.nonneg_int
_positive_number = schema.positive_number
_positive_size = schema.positive(units.parse_size, "bytes")
_boolean = schema.boolean
_text = schema.text
_fraction = schema.fraction
_probability = schema.probability


# ---------------------------------------------------------------------- topology
def build_topology(sec: Section, base: Path | None = None) -> Topology:
    """``topology:`` -> Topology: a registered kind (:mod:`topologies.registry`) and its
    parameters, each read by the kind's parser for it, or ``kind: custom`` with a file."""
    kind, params = topology_params(sec, base)
    if kind == "custom":
        try:
            return parse_spec(str(params["file"]))
        except TopologyError as err:
            raise ConfigError(f"{sec.where('file')}: {err}") from None
    try:
        return build_topology_kind(kind, params)
    except TopologyError as err:
        raise ConfigError(f"{sec.path}: {err}") from None


def topology_params(sec: Section, base: Path | None = None) -> tuple[str, dict[str, Any]]:
    """``topology:`` read and checked but not built: its kind and converted parameters
    (``custom`` with the resolved ``file``)."""
    kind = sec.choice("kind", [*topology_kinds(), "custom"])
    if kind == "custom":
        file = sec.get("file", _text)
        sec.finish()
        return kind, {"file": Path(file) if Path(file).is_absolute()
                      else (base or Path.cwd()) / file}
    entry = get_topology_kind(kind)
    params: dict[str, Any] = {}
    for key in entry.params:
        if key in entry.required or (key == "bandwidth" and entry.bandwidth == "required"):
            params[key] = sec.get(key, entry.parser(key))
        else:
            value = sec.get(key, entry.parser(key), default=None)
            if value is not None:
                params[key] = value
    sec.finish()
    return kind, params


def _cable_value(value: Any, where: str) -> tuple[int, int]:
    if isinstance(value, str):
        a, dash, b = value.partition("-")
        if dash and a.strip().isdigit() and b.strip().isdigit():
            return int(a), int(b)
    elif isinstance(value, list) and len(value) == 2:
        return _nonneg_int(value[0], f"{where}[0]"), _nonneg_int(value[1], f"{where}[1]")
    raise ConfigError(f"{where}: expected a pair of device ids like [3, 7] or '3-7', "
                      f"got {_show(value)}")


def build_faults(sec: Section, topology: Topology) -> list[LinkFault]:
    """``faults:`` -> the untimed faults applied to ``topology``, the timed ones returned."""
    faults: list[LinkFault] = []
    items = sec.get("links", default=[])
    if not isinstance(items, list):
        raise ConfigError(f"{sec.where('links')}: expected a list of link faults")
    for i, item in enumerate(items):
        f = Section(item, f"{sec.where('links')}[{i}]")
        src, dst = f.get("link", _cable_value)
        down = f.get("down", _boolean, default=False)
        derate = f.get("derate", _fraction, default=None)
        if down == (derate is not None):
            raise ConfigError(f"{f.path}: give either down: true or a derate in (0, 1]")
        try:
            faults.append(LinkFault(
                src, dst, down=down, derate=derate or 1.0,
                at_ns=f.get("at", units.parse_time, default=0.0),
                until_ns=f.get("until", units.parse_time, default=None),
                one_way=f.get("one_way", _boolean, default=False)))
        except TopologyError as err:
            raise ConfigError(f"{f.path}: {err}") from None
        f.finish()
    if "random" in sec.data:
        r = sec.section("random")
        down = r.get("down", _boolean, default=True)
        kinds = r.get("kinds", default=None)
        if kinds is not None and not (isinstance(kinds, list)
                                      and all(isinstance(k, str) for k in kinds)):
            raise ConfigError(f"{r.where('kinds')}: expected a list of link kinds")
        try:
            faults += random_faults(
                topology, seed=r.get("seed", _nonneg_int),
                rate=r.get("rate", _probability, default=None),
                count=r.get("count", _nonneg_int, default=None),
                down=down, derate=r.get("derate", _fraction, default=0.5), kinds=kinds)
        except TopologyError as err:
            raise ConfigError(f"{r.path}: {err}") from None
        r.finish()
    else:
        sec.known.append("random")
    sec.finish()
    try:
        return apply_faults(topology, faults)
    except TopologyError as err:
        raise ConfigError(f"{sec.path}: {err}") from None


# ---------------------------------------------------------------------- workload
def build_workload(sec: Section, num_ranks: int, name: str, topology: Topology | None = None,
                   symmetric: bool = True, contention: bool = True,
                   options: EngineOptions | None = None) -> tuple[EventGraph, Any, str]:
    """``workload:`` -> (EventGraph over ``num_ranks`` ranks, what built it or None, kind):
    the kind's parser from the one registry of :mod:`des.app.workload_kinds`. Kinds that fold
    symmetric ranks get the ``topology`` and whether the run is ``symmetric`` (no stragglers
    or timed faults) to prove folding exact, whether it is for a backend with
    ``contention`` (link by link) or the closed-form one (route parameters), and the run's
    engine ``options`` (the algorithms and plans the backends will choose)."""
    kind = sec.choice("kind", scenario_kinds())
    entry = get_workload_kind(kind)
    extra = {"topology": topology, "symmetric": symmetric, "contention": contention,
             "options": options} if entry.folds else {}
    try:
        built = entry.build(sec, num_ranks, name, **extra)
    except (GraphError, CollectiveError) as err:
        raise ConfigError(f"{sec.path}: {err}") from None
    graph, workload = built if isinstance(built, tuple) else (built, None)
    if not isinstance(graph, EventGraph):
        raise ConfigError(f"{sec.path}: the {kind} parser returned {type(graph).__name__}, "
                          "not an EventGraph")
    return graph, workload, kind


# ---------------------------------------------------------------------- options
MODELS = ["des", "astra_congestion_aware", "astra_congestion_unaware"]


def _algorithms(value: Any, where: str) -> dict[str, str | tuple[str, ...]]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: expected a mapping like {{all_reduce: ring_bidir}} (a list "
                          "of names picks the fastest of them: [rail_rings, auto])")
    out: dict[str, str | tuple[str, ...]] = {}
    for key, given in value.items():
        try:
            ctype = CollectiveType.parse(str(key))
        except ValueError as err:
            raise ConfigError(f"{where}.{key}: {err}") from None
        names = given if isinstance(given, list) else [given]
        if not names:
            raise ConfigError(f"{where}.{key}: an empty list names no algorithm")
        for i, name in enumerate(names):
            at = f"{where}.{key}" + (f"[{i}]" if isinstance(given, list) else "")
            name = _text(name, at)
            if name != "auto":
                try:
                    check_algorithm(ctype, name)
                except CollectiveError as err:
                    raise ConfigError(f"{at}: {err}") from None
        out[ctype.value] = tuple(names) if isinstance(given, list) else names[0]
    return out


def _dim_algorithm_names() -> list[str]:
    """The algorithms a dimension of a hierarchical collective may run: those its phases
    (reduce-scatter, all-gather, all-reduce) all know, not the multi-dimensional ones."""
    phases = (CollectiveType.REDUCE_SCATTER, CollectiveType.ALL_GATHER,
              CollectiveType.ALL_REDUCE)
    common = set.intersection(*(set(algorithms_for(c)) for c in phases))
    return sorted(common - {"hierarchical", "torus2d"})


def _names(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: expected a list of algorithm names, one per dimension, "
                          f"from {', '.join(_dim_algorithm_names())}; got {_show(value)}")
    allowed = _dim_algorithm_names()
    for i, name in enumerate(value):
        if name not in allowed:
            raise ConfigError(schema.unknown(f"{where}[{i}]", name, allowed, "algorithm"))
    return tuple(value)


def _packet_size(value: Any, where: str) -> float:
    size = units.parse_size(value, where)
    if not size >= 1:
        raise ConfigError(f"{where}: must be at least 1 byte, got {schema.short(value)}")
    return size


def _chunks(value: Any, where: str) -> int:
    count = _positive_int(value, where)
    limits.check("max_chunks", count, where)
    return count


def _delay(value: Any, where: str) -> float:
    ns = units.parse_time(value, where)
    limits.check("max_latency", ns, where)
    return ns


def _reduction(value: Any, where: str, hardware: GpuSpec | None) -> float | None:
    if value in (False, "off", None):
        return None
    if value == "hbm":
        if hardware is None:
            raise ConfigError(f"{where}: 'hbm' needs a hardware model to take the bandwidth from")
        return hardware.hbm_bandwidth
    bandwidth = units.parse_bandwidth(value, where)
    if not bandwidth > 0:
        raise ConfigError(f"{where}: must be > 0, or off; got {schema.short(value)}")
    limits.check("min_bandwidth", bandwidth, where)
    limits.check("max_bandwidth", bandwidth, where)
    return bandwidth


def build_options(sec: Section, stragglers: Any, num_npus: int,
                  hardware: GpuSpec | None = None) -> EngineOptions:
    """``network:`` and ``stragglers:`` -> EngineOptions.

    ``model: des`` (default) is des's own fabric model; ``astra_congestion_aware`` and
    ``astra_congestion_unaware`` reproduce AstraSim's analytical backends, reading
    ``endpoint_delay``, ``reduction`` (AstraSim's local-mem-bw) and ``chunks``
    (preferred-dataset-splits) from the same section. ``collective_launch`` (des model only) is
    the fixed time every collective call takes before its data moves.
    """
    model = sec.choice("model", MODELS, default="des")
    common = dict(
        comm_streams=sec.get("comm_streams", _positive_int, default=1),
        chunks_in_flight=sec.get("chunks_in_flight", _nonneg_int, default=0 if model == "des"
                                 else 1),
        algorithms=sec.get("algorithms", _algorithms, default={}),
        dim_algorithms=sec.get("dim_algorithms", _names, default=()),
        window=sec.get("window", _nonneg_int, default=0),
        p2p_rendezvous=sec.choice("p2p", ["eager", "rendezvous"], default="eager")
        == "rendezvous",
    )
    endpoint = sec.get("endpoint_delay", _delay, default=None)
    reduction = sec.get("reduction", lambda v, w: _reduction(v, w, hardware), default=None)
    chunks = sec.get("chunks", _chunks, default=DEFAULT_CHUNKS)
    try:
        if model == "des":
            opts = EngineOptions(
                transport=TransportMode(sec.choice(
                    "transport", [m.value for m in TransportMode],
                    default=TransportMode.CUT_THROUGH.value)),
                packet_bytes=sec.get("packet_size", _packet_size,
                                     default=DEFAULT_PACKET_BYTES),
                contention=sec.get("contention", _boolean, default=True),
                chunks=chunks, chunk_bytes=sec.get("chunk_size", _positive_size,
                                                   default=None),
                endpoint_delay_ns=endpoint or 0.0, reduction_bandwidth=reduction,
                collective_launch_ns=sec.get("collective_launch", _delay, default=0.0), **common)
        else:
            opts = EngineOptions.astra_compat(
                congestion_aware=model == "astra_congestion_aware",
                endpoint_delay_ns=ASTRA_ENDPOINT_DELAY_NS if endpoint is None else endpoint,
                local_mem_bw=reduction or ASTRA_LOCAL_MEM_BW, splits=chunks, **common)
    except ConfigError:  # a key read inside the try already names its own path
        raise
    except ValueError as err:
        raise ConfigError(f"{sec.path or 'network'}: {err}") from None
    sec.finish()
    if stragglers is None:
        return opts
    if not isinstance(stragglers, list):
        raise ConfigError(
            f"stragglers: expected a list of {{rank, speed}}, got {_show(stragglers)}")
    for i, item in enumerate(stragglers):
        s = Section(item, f"stragglers[{i}]")
        rank = s.get("rank", _nonneg_int)
        if rank >= num_npus:
            raise ConfigError(f"{s.where('rank')}: rank {rank} is outside 0..{num_npus - 1}")
        speed = s.get("speed", _positive_number)
        s.finish()
        opts.speed[rank] = speed
    return opts


def _build_hardware(value: Any) -> GpuSpec | None:
    if value is None:
        return None
    try:
        if isinstance(value, str):
            return load_gpu(value)
        if isinstance(value, Mapping):
            return gpu_from_dict(value, where="hardware")
    except HardwareError as err:
        msg = str(err)
        raise ConfigError(msg if msg.startswith("hardware") else f"hardware: {msg}") from None
    raise ConfigError(f"hardware: expected a preset name, a file path or a mapping, "
                      f"got {_show(value)}")


def _build_outputs(sec: Section, base: Path) -> Outputs:
    def path(value: Any, where: str) -> Path:
        p = Path(_text(value, where))
        return p if p.is_absolute() else base / p

    out = Outputs(json=sec.get("json", path, default=None),
                  trace=sec.get("trace", path, default=None),
                  links_csv=sec.get("links_csv", path, default=None))
    sec.finish()
    return out


# ---------------------------------------------------------------------- entry points
def scenario_from_dict(data: Any, source: str = "<dict>", base: Path | None = None, *,
                       backend: str = DEFAULT_BACKEND) -> Scenario:
    """Build a Scenario from parsed YAML; ``base`` resolves relative file and output paths.
    ``backend``: what the graph will run on. A graph for a backend without contention
    (:attr:`des.sim.backends.Backend.contention`) folds wherever symmetric ranks take the same
    time, a graph for the contended one only where they also load separate, identical links
    (:func:`workloads.folding.fold_holds`)."""
    contention = get_backend(backend).contention
    root = Section(data, "", label=source)
    with limits.using(root.get("limits", default=None)):
        return _scenario(root, source, base or Path.cwd(), contention)


def _scenario(root: Section, source: str, base: Path, contention: bool = True) -> Scenario:
    """The scenario of ``root``, read with its ``limits:`` in force."""
    name = root.get("name", _text, default=Path(source).stem)
    description = root.get("description", _text, default="")
    topology = build_topology(root.section("topology", required=True), base)
    timed_faults = build_faults(root.section("faults"), topology)
    hardware = _build_hardware(root.get("hardware", default=None))
    options = build_options(root.section("network"), root.get("stragglers", default=None),
                            topology.num_npus, hardware)
    options.timed_faults = timed_faults
    workload = root.section("workload", required=True)
    symmetric = not options.timed_faults and len(set(options.speed.values()) | {1.0}) == 1
    graph, built_from, kind = build_workload(workload, topology.num_npus, name, topology,
                                             symmetric, contention, options)
    outputs = _build_outputs(root.section("outputs"), base)
    root.finish()
    try:
        graph.validate(num_npus=topology.num_npus)
    except GraphError as err:
        raise ConfigError(f"workload: {err}") from None
    check_work(graph, options, topology.num_npus, "workload")
    return Scenario(name, description, topology, graph, hardware, options, outputs, source,
                    built_from, kind)


def load_scenario(spec: str | os.PathLike[str] | None = None, *,
                  backend: str = DEFAULT_BACKEND) -> Scenario:
    """A scenario from a YAML path or a bundled scenario name (None: the embedded default),
    built for ``backend`` (see :func:`scenario_from_dict`)."""
    text = os.fspath(spec) if spec is not None else DEFAULT_SCENARIO
    path = Path(text)
    source: Traversable | Path
    if is_file(path):
        source = path
    else:
        presets = bundled("scenarios")
        if text not in presets:
            names = ", ".join(sorted(presets))
            raise ConfigError(f"scenario {text!r}: no such file and no bundled scenario of that "
                              f"name; bundled: {names}")
        source = presets[text]
    try:
        data = load_yaml(read_text(source, "scenario file"), text)
    except SchemaError as err:  # unreadable, not UTF-8, not valid YAML or over a limit
        raise ConfigError(str(err)) from None
    base = path.parent if isinstance(source, Path) else Path.cwd()
    return scenario_from_dict(data, source=text, base=base, backend=backend)


__all__ = ["DEFAULT_SCENARIO", "ConfigError", "Outputs", "Scenario", "Section", "build_faults",
           "build_options", "build_topology", "build_workload", "load_scenario",
           "scenario_from_dict"]
