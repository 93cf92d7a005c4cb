"""Scenario files: one YAML describes topology, hardware, workload, network options and outputs.

Quantities take explicit units (``50 GB/s``, ``500 ns``, ``1 MiB``; see :mod:`des.units`). Every
error is a :class:`ConfigError` naming the key path, the bad value and what is allowed. Files are
read with ``yaml.safe_load``, so a scenario can never construct Python objects.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.abc import Traversable
from pathlib import Path
from typing import Any

import yaml

from collectives import CollectiveError, check_algorithm
from des import units
from des.engine import EngineOptions
from des.graph import CollectiveType, EventGraph, GraphError
from des.hardware import GpuSpec, HardwareError, gpu_from_dict, load_gpu
from des.paths import bundled
from des.transport import TransportMode
from topologies import Topology, TopologyError, fully_connected, ring, switch
from workloads import CollectiveSpec, collective_sequence, data_parallel_step

DEFAULT_SCENARIO = "dp8_ring_overlap"


class ConfigError(ValueError):
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


# ---------------------------------------------------------------------- reading sections
_MISSING = object()


class Section:
    """A mapping read key by key; :meth:`finish` rejects keys nobody asked for."""

    def __init__(self, data: Any, path: str, label: str = "") -> None:
        if not isinstance(data, Mapping):
            raise ConfigError(f"{path or label or 'scenario'}: expected a mapping of keys, "
                              f"got {_show(data)}")
        self.data = data
        self.path = path
        self.known: list[str] = []

    def where(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def get(self, key: str, parse: Callable[[Any, str], Any] | None = None,
            default: Any = _MISSING) -> Any:
        """The value at ``key`` converted by ``parse(value, where)``; ``default`` when absent."""
        self.known.append(key)
        if key not in self.data:
            if default is _MISSING:
                raise ConfigError(f"{self.where(key)}: required key is missing")
            return default
        value = self.data[key]
        if parse is None:
            return value
        where = self.where(key)
        try:
            return parse(value, where)
        except ConfigError:
            raise
        except (ValueError, TypeError) as err:
            msg = str(err)
            raise ConfigError(msg if msg.startswith(where) else f"{where}: {msg}") from None

    def choice(self, key: str, allowed: list[str], default: Any = _MISSING) -> str:
        """A string that must be one of ``allowed`` (suggests the closest on a typo)."""
        value = self.get(key, default=default)
        if value not in allowed:
            raise ConfigError(_unknown(self.where(key), value, allowed))
        return value

    def section(self, key: str, required: bool = False) -> Section:
        """A nested mapping (empty when absent and not required)."""
        value = self.get(key, default=_MISSING if required else {})
        return Section(value, self.where(key))

    def finish(self) -> None:
        """Raise on keys that were never asked for."""
        extra = [k for k in self.data if k not in self.known]
        if extra:
            bad = extra[0]
            raise ConfigError(_unknown(self.where(str(bad)), bad, self.known, what="key"))


def _unknown(where: str, value: Any, allowed: list[str], what: str = "value") -> str:
    allowed = [str(a) for a in dict.fromkeys(allowed)]
    hint = difflib.get_close_matches(str(value), allowed, n=1)
    maybe = f" (did you mean {hint[0]!r}?)" if hint else ""
    return f"{where}: unknown {what} {value!r}{maybe}; expected one of {', '.join(allowed)}"


def _show(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


def _positive_int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{where}: expected a whole number >= 1, got {_show(value)}")
    return value


def _nonneg_int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{where}: expected a whole number >= 0, got {_show(value)}")
    return value


def _positive_number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigError(f"{where}: expected a number > 0, got {_show(value)}")
    return float(value)


def _boolean(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: expected true or false, got {_show(value)}")
    return value


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{where}: expected text, got {_show(value)}")
    return value


def _ranks(value: Any, where: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{where}: expected a non-empty list of ranks, got {_show(value)}")
    return tuple(_nonneg_int(v, f"{where}[{i}]") for i, v in enumerate(value))


# ---------------------------------------------------------------------- topology
TOPOLOGY_KINDS = ["ring", "fully_connected", "switch"]


def build_topology(sec: Section) -> Topology:
    """``topology:`` -> Topology."""
    kind = sec.choice("kind", TOPOLOGY_KINDS)
    npus = sec.get("npus", _positive_int)
    bandwidth = sec.get("bandwidth", units.parse_bandwidth)
    latency = sec.get("latency", units.parse_time, default=0.0)
    if kind == "ring":
        bidir = sec.get("bidirectional", _boolean, default=True)
        build = lambda: ring(npus, bandwidth, latency, bidirectional=bidir)  # noqa: E731
    elif kind == "fully_connected":
        build = lambda: fully_connected(npus, bandwidth, latency)  # noqa: E731
    else:
        sw_lat = sec.get("switch_latency", units.parse_time, default=0.0)
        build = lambda: switch(npus, bandwidth, latency, switch_latency=sw_lat)  # noqa: E731
    sec.finish()
    try:
        return build()
    except TopologyError as err:
        raise ConfigError(f"{sec.path}: {err}") from None


# ---------------------------------------------------------------------- workload
def _collective_spec(item: Any, where: str, num_ranks: int) -> CollectiveSpec:
    sec = Section(item, where)
    ctype = sec.get("collective", lambda v, w: CollectiveType.parse(_text(v, w)))
    nbytes = sec.get("size", units.parse_size)
    group = sec.get("group", _ranks, default=None)
    for i, rank in enumerate(group or ()):
        if rank >= num_ranks:
            raise ConfigError(f"{sec.where('group')}[{i}]: rank {rank} is outside the "
                              f"topology's NPUs 0..{num_ranks - 1}")
    algorithm = sec.get("algorithm", _text, default=None)
    try:
        check_algorithm(ctype, algorithm)
    except CollectiveError as err:
        raise ConfigError(f"{sec.where('algorithm')}: {err}") from None
    spec = CollectiveSpec(ctype, nbytes, group, algorithm,
                          repeat=sec.get("repeat", _positive_int, default=1))
    sec.finish()
    return spec


def _workload_collectives(sec: Section, num_ranks: int, name: str) -> EventGraph:
    ops = sec.get("ops")
    if not isinstance(ops, list) or not ops:
        raise ConfigError(f"{sec.where('ops')}: expected a non-empty list of collectives")
    specs = [_collective_spec(item, f"{sec.where('ops')}[{i}]", num_ranks)
             for i, item in enumerate(ops)]
    sec.finish()
    return collective_sequence(num_ranks, specs, name=name)


def _workload_dp_step(sec: Section, num_ranks: int, name: str) -> EventGraph:
    graph = data_parallel_step(
        num_ranks,
        layers=sec.get("layers", _positive_int),
        params_per_layer=sec.get("params_per_layer", _positive_number),
        tokens_per_rank=sec.get("tokens_per_rank", _positive_number),
        dtype_bytes=sec.get("dtype_bytes", _positive_int, default=2),
        algorithm=sec.get("algorithm", _text, default=None),
        name=name,
    )
    sec.finish()
    return graph


WORKLOADS: dict[str, Callable[[Section, int, str], EventGraph]] = {
    "collectives": _workload_collectives,
    "data_parallel_step": _workload_dp_step,
}


def build_workload(sec: Section, num_ranks: int, name: str) -> EventGraph:
    """``workload:`` -> EventGraph over ``num_ranks`` ranks (one per NPU)."""
    kind = sec.choice("kind", sorted(WORKLOADS))
    try:
        return WORKLOADS[kind](sec, num_ranks, name)
    except (GraphError, CollectiveError) as err:
        raise ConfigError(f"{sec.path}: {err}") from None


# ---------------------------------------------------------------------- options
def build_options(sec: Section, stragglers: Any, num_npus: int) -> EngineOptions:
    """``network:`` and ``stragglers:`` -> EngineOptions."""
    opts = EngineOptions(
        transport=TransportMode(sec.choice("transport", [m.value for m in TransportMode],
                                           default=TransportMode.CUT_THROUGH.value)),
        packet_bytes=sec.get("packet_size", units.parse_size, default=4096.0),
        comm_streams=sec.get("comm_streams", _positive_int, default=1),
        chunks=sec.get("chunks", _positive_int, default=4),
        chunks_in_flight=sec.get("chunks_in_flight", _nonneg_int, default=0),
    )
    if opts.packet_bytes <= 0:
        raise ConfigError(f"{sec.where('packet_size')}: must be > 0 bytes")
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
    """Build a Scenario from parsed YAML; ``base`` resolves relative output paths."""
    root = Section(data, "", label=source)
    name = root.get("name", _text, default=Path(source).stem)
    description = root.get("description", _text, default="")
    topology = build_topology(root.section("topology", required=True))
    hardware = _build_hardware(root.get("hardware", default=None))
    options = build_options(root.section("network"), root.get("stragglers", default=None),
                            topology.num_npus)
    workload = root.section("workload", required=True)
    graph = build_workload(workload, topology.num_npus, name)
    outputs = _build_outputs(root.section("outputs"), base or Path.cwd())
    root.finish()
    try:
        graph.validate(num_npus=topology.num_npus)
    except GraphError as err:
        raise ConfigError(f"workload: {err}") from None
    return Scenario(name, description, topology, graph, hardware, options, outputs, source)


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
