"""Scenario files: one YAML describes topology, hardware, workload, network options and outputs.

Quantities take explicit units (``50 GB/s``, ``500 ns``, ``1 MiB``; see :mod:`des.core.units`).
Every error is a :class:`ConfigError` naming the key path, the bad value and what is allowed.
Files are read with ``yaml.safe_load``, so a scenario can never construct Python objects.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.abc import Traversable
from pathlib import Path
from typing import Any

import yaml

from collectives import CollectiveError, check_algorithm
from des.core import schema, units
from des.core.graph import CollectiveType, EventGraph, GraphError
from des.core.hardware import (
    DEFAULT_DTYPE_BYTES,
    GpuSpec,
    HardwareError,
    gpu_from_dict,
    load_gpu,
)
from des.core.paths import bundled
from des.core.schema import SchemaError
from des.sim.engine import EngineOptions
from des.sim.hops import DEFAULT_PACKET_BYTES, TransportMode
from des.sim.options import ASTRA_ENDPOINT_DELAY_NS, ASTRA_LOCAL_MEM_BW, DEFAULT_CHUNKS
from topologies import Topology, TopologyError
from topologies.faults import LinkFault, apply_faults, random_faults
from topologies.registry import build as build_topology_kind
from topologies.registry import get_topology_kind, topology_kinds
from topologies.spec import parse_spec
from workloads import CollectiveSpec, collective_sequence, data_parallel_step
from workloads.gemm import SHARDS, build_gemm
from workloads.inference import InferenceConfig, build_inference
from workloads.llm import build_training
from workloads.models import ModelConfig, load_model, model_from_dict
from workloads.parallel import ParallelConfig, ParallelError

DEFAULT_SCENARIO = "dp8_ring_overlap"


class ConfigError(SchemaError):
    """A scenario that cannot be used; the message names the key path and what is allowed."""


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


# ---------------------------------------------------------------------- reading sections
class Section(schema.Section):
    """A scenario mapping read key by key (see :class:`des.core.schema.Section`); its errors,
    and those of the sections nested in it, are :class:`ConfigError`."""

    error = ConfigError


_unknown = schema.unknown
_show = schema.show
_positive_int = schema.positive_int
_nonneg_int = schema.nonneg_int
_positive_number = schema.positive_number
_positive_size = schema.positive(units.parse_size, "bytes")
_boolean = schema.boolean
_text = schema.text
_fraction = schema.fraction
_probability = schema.probability


def _ranks(value: Any, where: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{where}: expected a non-empty list of ranks, got {_show(value)}")
    return tuple(_nonneg_int(v, f"{where}[{i}]") for i, v in enumerate(value))


# ---------------------------------------------------------------------- topology
def build_topology(sec: Section, base: Path | None = None) -> Topology:
    """``topology:`` -> Topology: a registered kind (:mod:`topologies.registry`) and its
    parameters, each read by the kind's parser for it, or ``kind: custom`` with a file."""
    kind = sec.choice("kind", [*topology_kinds(), "custom"])
    if kind == "custom":
        file = sec.get("file", _text)
        sec.finish()
        path = Path(file) if Path(file).is_absolute() else (base or Path.cwd()) / file
        try:
            return parse_spec(str(path))
        except TopologyError as err:
            raise ConfigError(f"{sec.where('file')}: {err}") from None
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
    try:
        return build_topology_kind(kind, params)
    except TopologyError as err:
        raise ConfigError(f"{sec.path}: {err}") from None


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
def _size_range(value: Any, where: str) -> list[float]:
    sec = Section(value, where)
    low = sec.get("from", units.parse_size)
    high = sec.get("to", units.parse_size)
    factor = sec.get("factor", _positive_number, default=2.0)
    sec.finish()
    if not (low > 0 and high >= low and factor > 1):
        raise ConfigError(f"{where}: need 0 < from <= to and factor > 1")
    sizes = []
    size = low
    while size <= high * (1 + 1e-12) and len(sizes) < 64:
        sizes.append(float(round(size)))
        size *= factor
    return sizes


def _collective_specs(item: Any, where: str, num_ranks: int) -> list[CollectiveSpec]:
    """One op: a collective at one ``size``, a list of ``sizes`` or a ``size_range`` (an
    nccl-tests-style sweep: from, to, factor), each size run ``repeat`` times in turn."""
    sec = Section(item, where)
    ctype = sec.get("collective", lambda v, w: CollectiveType.parse(_text(v, w)))
    given = [k for k in ("size", "sizes", "size_range") if k in sec.data]
    if not given:
        raise ConfigError(f"{sec.where('size')}: required key is missing (or give sizes: "
                          "[...] or size_range: {from, to, factor})")
    if len(given) > 1:
        raise ConfigError(f"{where}: give only one of size, sizes or size_range, not "
                          f"{' and '.join(given)}")
    sizes = [sec.get("size", units.parse_size, default=None)]
    if given[0] == "sizes":
        raw = sec.get("sizes")
        if not isinstance(raw, list) or not raw:
            raise ConfigError(f"{sec.where('sizes')}: expected a non-empty list of sizes")
        sizes = [units.parse_size(v, f"{sec.where('sizes')}[{i}]") for i, v in enumerate(raw)]
    elif given[0] == "size_range":
        sizes = sec.get("size_range", _size_range)
    else:
        sec.known += ["sizes", "size_range"]
    group = sec.get("group", _ranks, default=None)
    for i, rank in enumerate(group or ()):
        if rank >= num_ranks:
            raise ConfigError(f"{sec.where('group')}[{i}]: rank {rank} is outside the "
                              f"topology's NPUs 0..{num_ranks - 1}")
    algorithm = sec.get("algorithm", _text, default=None)
    if algorithm != "auto":
        try:
            check_algorithm(ctype, algorithm)
        except CollectiveError as err:
            raise ConfigError(f"{sec.where('algorithm')}: {err}") from None
    repeat = sec.get("repeat", _positive_int, default=1)
    sec.finish()
    return [CollectiveSpec(ctype, size, group, algorithm, repeat) for size in sizes]


def _workload_collectives(sec: Section, num_ranks: int, name: str) -> EventGraph:
    ops = sec.get("ops")
    if not isinstance(ops, list) or not ops:
        raise ConfigError(f"{sec.where('ops')}: expected a non-empty list of collectives")
    specs = [spec for i, item in enumerate(ops)
             for spec in _collective_specs(item, f"{sec.where('ops')}[{i}]", num_ranks)]
    sec.finish()
    return collective_sequence(num_ranks, specs, name=name)


def _workload_dp_step(sec: Section, num_ranks: int, name: str) -> EventGraph:
    graph = data_parallel_step(
        num_ranks,
        layers=sec.get("layers", _positive_int),
        params_per_layer=sec.get("params_per_layer", _positive_number),
        tokens_per_rank=sec.get("tokens_per_rank", _positive_number),
        dtype_bytes=sec.get("dtype_bytes", _positive_int, default=DEFAULT_DTYPE_BYTES),
        algorithm=sec.get("algorithm", _text, default=None),
        name=name,
    )
    sec.finish()
    return graph


def _model(value: Any, where: str) -> ModelConfig:
    try:
        if isinstance(value, str):
            return load_model(value)
        if isinstance(value, Mapping):
            return model_from_dict(value, where)
    except ValueError as err:
        msg = str(err)
        raise ConfigError(msg if msg.startswith(where) else f"{where}: {msg}") from None
    raise ConfigError(f"{where}: expected a model preset name, a YAML path or a mapping, got "
                      f"{_show(value)}")


_PARALLEL_KEYS = {
    "dp": _positive_int, "tp": _positive_int, "pp": _positive_int, "cp": _positive_int,
    "ep": _positive_int, "sp": _boolean, "zero": _nonneg_int, "recompute": _text,
    "micro_batch": _positive_int, "global_batch": _positive_int, "schedule": _text,
    "virtual_stages": _positive_int, "order": _text, "bucket_size": units.parse_size,
    "grad_bytes": _positive_int, "dtype_bytes": _positive_int, "flash": _boolean,
    "fold_tp": _boolean,
}


def _parallel(value: Any, where: str, seq: int | None) -> ParallelConfig:
    sec = Section(value, where)
    kwargs = {}
    for key, parse in _PARALLEL_KEYS.items():
        if key in sec.data:
            kwargs["bucket_bytes" if key == "bucket_size" else key] = sec.get(key, parse)
        else:
            sec.known.append(key)
    sec.finish()
    try:
        return ParallelConfig(seq=seq, **kwargs)
    except ParallelError as err:
        raise ConfigError(str(err).replace("parallel.", f"{where}.", 1)) from None


def _workload_llm_training(sec: Section, num_ranks: int, name: str) -> tuple[EventGraph, Any]:
    model = sec.get("model", _model)
    seq = sec.get("seq", _positive_int, default=None)
    par = sec.get("parallel", lambda v, w: _parallel(v, w, seq))
    sec.finish()
    try:
        workload = build_training(model, par, num_ranks)
    except ParallelError as err:
        raise ConfigError(f"{sec.path}: {err}") from None
    return workload.graph, workload


_INFERENCE_KEYS = {
    "tp": _positive_int, "pp": _positive_int, "batch": _positive_int, "prompt": _positive_int,
    "generate": _positive_int, "dtype_bytes": _positive_int, "flash": _boolean,
    "fold_tp": _boolean,
}


def _inference(value: Any, where: str) -> InferenceConfig:
    sec = Section(value, where)
    kwargs = {}
    for key, parse in _INFERENCE_KEYS.items():
        if key in sec.data:
            kwargs[key] = sec.get(key, parse)
        else:
            sec.known.append(key)
    sec.finish()
    try:
        return InferenceConfig(**kwargs)
    except ParallelError as err:
        raise ConfigError(str(err).replace("parallel.", f"{where}.", 1)) from None


def _workload_llm_inference(sec: Section, num_ranks: int, name: str) -> tuple[EventGraph, Any]:
    model = sec.get("model", _model)
    cfg = sec.get("parallel", _inference, default=None) or InferenceConfig()
    sec.finish()
    try:
        workload = build_inference(model, cfg, num_ranks)
    except ParallelError as err:
        raise ConfigError(f"{sec.path}: {err}") from None
    return workload.graph, workload


def _workload_gemm(sec: Section, num_ranks: int, name: str) -> tuple[EventGraph, Any]:
    m, n, k = (sec.get(key, _positive_int) for key in ("m", "n", "k"))
    tp = sec.get("tp", _positive_int, default=num_ranks)
    shard = sec.choice("shard", list(SHARDS))
    gather = sec.get("gather_output", _boolean, default=True)
    dtype_bytes = sec.get("dtype_bytes", _positive_int, default=DEFAULT_DTYPE_BYTES)
    fold = sec.get("fold_tp", _boolean, default=False)
    sec.finish()
    try:
        workload = build_gemm(m, n, k, tp=tp, shard=shard, npus=num_ranks,
                              dtype_bytes=dtype_bytes, gather_output=gather, fold_tp=fold)
    except ParallelError as err:
        raise ConfigError(f"{sec.path}: {err}") from None
    return workload.graph, workload


#: The scenario parser of each workload kind. How a kind is reported, measured and ranked is
#: its :class:`~des.app.workload_kinds.WorkloadKind` (a test keeps the two in step).
WORKLOADS: dict[str, Callable[[Section, int, str], Any]] = {
    "collectives": _workload_collectives,
    "data_parallel_step": _workload_dp_step,
    "gemm": _workload_gemm,
    "llm_inference": _workload_llm_inference,
    "llm_training": _workload_llm_training,
}


def build_workload(sec: Section, num_ranks: int, name: str) -> tuple[EventGraph, Any, str]:
    """``workload:`` -> (EventGraph over ``num_ranks`` ranks, what built it or None, kind)."""
    kind = sec.choice("kind", sorted(WORKLOADS))
    try:
        built = WORKLOADS[kind](sec, num_ranks, name)
    except (GraphError, CollectiveError) as err:
        raise ConfigError(f"{sec.path}: {err}") from None
    graph, workload = built if isinstance(built, tuple) else (built, None)
    return graph, workload, kind


# ---------------------------------------------------------------------- options
MODELS = ["des", "astra_congestion_aware", "astra_congestion_unaware"]


def _algorithms(value: Any, where: str) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: expected a mapping like {{all_reduce: ring_bidir}}")
    out = {}
    for key, name in value.items():
        try:
            ctype = CollectiveType.parse(str(key))
        except ValueError as err:
            raise ConfigError(f"{where}.{key}: {err}") from None
        name = _text(name, f"{where}.{key}")
        if name != "auto":
            try:
                check_algorithm(ctype, name)
            except CollectiveError as err:
                raise ConfigError(f"{where}.{key}: {err}") from None
        out[ctype.value] = name
    return out


def _names(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: expected a list of algorithm names, one per dimension")
    return tuple(value)


def _reduction(value: Any, where: str, hardware: GpuSpec | None) -> float | None:
    if value in (False, "off", None):
        return None
    if value == "hbm":
        if hardware is None:
            raise ConfigError(f"{where}: 'hbm' needs a hardware model to take the bandwidth from")
        return hardware.hbm_bandwidth
    return units.parse_bandwidth(value, where)


def build_options(sec: Section, stragglers: Any, num_npus: int,
                  hardware: GpuSpec | None = None) -> EngineOptions:
    """``network:`` and ``stragglers:`` -> EngineOptions.

    ``model: des`` (default) is des's own fabric model; ``astra_congestion_aware`` and
    ``astra_congestion_unaware`` reproduce AstraSim's analytical backends, reading
    ``endpoint_delay``, ``reduction`` (AstraSim's local-mem-bw) and ``chunks``
    (preferred-dataset-splits) from the same section.
    """
    model = sec.choice("model", MODELS, default="des")
    common = dict(
        comm_streams=sec.get("comm_streams", _positive_int, default=1),
        chunks_in_flight=sec.get("chunks_in_flight", _nonneg_int, default=0 if model == "des"
                                 else 1),
        algorithms=sec.get("algorithms", _algorithms, default={}),
        dim_algorithms=sec.get("dim_algorithms", _names, default=()),
        window=sec.get("window", _nonneg_int, default=0),
    )
    endpoint = sec.get("endpoint_delay", units.parse_time, default=None)
    reduction = sec.get("reduction", lambda v, w: _reduction(v, w, hardware), default=None)
    chunks = sec.get("chunks", _positive_int, default=DEFAULT_CHUNKS)
    try:
        if model == "des":
            opts = EngineOptions(
                transport=TransportMode(sec.choice(
                    "transport", [m.value for m in TransportMode],
                    default=TransportMode.CUT_THROUGH.value)),
                packet_bytes=sec.get("packet_size", _positive_size,
                                     default=DEFAULT_PACKET_BYTES),
                contention=sec.get("contention", _boolean, default=True),
                chunks=chunks, chunk_bytes=sec.get("chunk_size", _positive_size,
                                                   default=None),
                endpoint_delay_ns=endpoint or 0.0, reduction_bandwidth=reduction, **common)
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
def scenario_from_dict(data: Any, source: str = "<dict>", base: Path | None = None) -> Scenario:
    """Build a Scenario from parsed YAML; ``base`` resolves relative file and output paths."""
    base = base or Path.cwd()
    root = Section(data, "", label=source)
    name = root.get("name", _text, default=Path(source).stem)
    description = root.get("description", _text, default="")
    topology = build_topology(root.section("topology", required=True), base)
    timed_faults = build_faults(root.section("faults"), topology)
    hardware = _build_hardware(root.get("hardware", default=None))
    options = build_options(root.section("network"), root.get("stragglers", default=None),
                            topology.num_npus, hardware)
    options.timed_faults = timed_faults
    workload = root.section("workload", required=True)
    graph, built_from, kind = build_workload(workload, topology.num_npus, name)
    outputs = _build_outputs(root.section("outputs"), base)
    root.finish()
    try:
        graph.validate(num_npus=topology.num_npus)
    except GraphError as err:
        raise ConfigError(f"workload: {err}") from None
    return Scenario(name, description, topology, graph, hardware, options, outputs, source,
                    built_from, kind)


def load_scenario(spec: str | os.PathLike[str] | None = None) -> Scenario:
    """A scenario from a YAML path or a bundled scenario name (None: the embedded default)."""
    text = os.fspath(spec) if spec is not None else DEFAULT_SCENARIO
    path = Path(text)
    source: Traversable | Path
    if path.is_file():
        source = path
    else:
        presets = bundled("scenarios")
        if text not in presets:
            names = ", ".join(sorted(presets))
            raise ConfigError(f"scenario {text!r}: no such file and no bundled scenario of that "
                              f"name; bundled: {names}")
        source = presets[text]
    try:
        data = yaml.safe_load(source.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(f"{text}: not valid YAML: {err}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{text}: cannot read: {err}") from None
    base = path.parent if isinstance(source, Path) else Path.cwd()
    return scenario_from_dict(data, source=text, base=base)
