"""Loading a sweep file (or a bundled sweep) and its base scenario, validated key by key."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from des.app.sweep import Sweep
from des.app.sweep_expr import check_expression
from des.app.sweep_types import SweepError, canonical_json
from des.core import limits
from des.core.paths import bundled, read_file_or_bundled
from des.core.schema import Section, entries, optional, short, show
from des.core.schema import text as _text
from des.core.yaml_safe import YamlError, is_file, load_yaml, read_text
from des.sim.backends import DEFAULT_BACKEND, backend_names


def load_scenario_data(spec: str, base_dir: Path | None = None) -> dict[str, Any]:
    """The parsed (not yet built) mapping of a scenario file or bundled scenario."""
    found = read_file_or_bundled("scenarios", spec, base_dir)
    if found is None:
        raise SweepError(f"base {spec!r}: no such scenario file or bundled scenario; "
                         f"bundled: {', '.join(sorted(bundled('scenarios')))}")
    text = found[0]
    try:
        data = load_yaml(text, f"base {spec}")
    except YamlError as err:
        raise SweepError(str(err)) from None
    if not isinstance(data, dict):
        raise SweepError(f"base {spec!r}: a scenario is a mapping")
    return data


def load_sweep(spec: str | os.PathLike[str]) -> Sweep:
    """A sweep from a YAML file or a bundled sweep name (``configs/sweeps``)."""
    text = os.fspath(spec)
    path = Path(text)
    if is_file(path):
        source, base_dir = read_text(path, "sweep file"), path.parent
    else:
        presets = bundled("sweeps")
        if text not in presets:
            raise SweepError(f"sweep {text!r}: no such file and no bundled sweep of that name; "
                             f"bundled: {', '.join(sorted(presets)) or 'none'}")
        source, base_dir = read_text(presets[text], "sweep preset"), Path.cwd()
    try:
        data = load_yaml(source, text)
    except YamlError as err:
        raise SweepError(str(err)) from None
    return sweep_from_dict(data, Path(text).stem, base_dir)


_SWEEP_KEYS = ("name", "description", "base", "axes", "groups", "constraints", "memory_limit",
               "backend", "derive", "timeout", "limits")

#: What a sweep name may hold: it names the results folder ``sweeps/<name>``.
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+=@,-]*$")


def _mapping(value: Any, where: str) -> dict[str, Any]:
    """A group's settings: a mapping of dotted scenario keys to values."""
    if not isinstance(value, Mapping):
        raise SweepError(f"{where}: must be a mapping of scenario keys to values, like "
                         f"{{topology.bandwidth: 100 GB/s}}, got {show(value)}")
    for key in value:
        _key(key, f"{where}.{key}")
    return dict(value)


def _key_paths(value: dict[Any, Any], where: str) -> dict[str, Any]:
    """``value`` whose keys are scenario key paths (``network.chunks``): non-empty text."""
    for key in value:
        _key(key, where)
    return value


def _keyed(parse: Any) -> Any:
    """``parse`` (an :func:`entries` parser), then every key must be a key path."""
    def parse_keyed(value: Any, where: str) -> Any:
        parsed = parse(value, where)
        return None if parsed is None else _key_paths(parsed, where)
    return parse_keyed


def _key(key: Any, where: str) -> str:
    """A dotted scenario key (``workload.parallel.tp``): non-empty parts joined by dots."""
    if not isinstance(key, str) or not all(part.strip() for part in key.split(".")):
        raise SweepError(f"{where}: a scenario key must be dotted text like "
                         f"workload.parallel.tp, got {show(key)}")
    return key


def _name(value: Any, where: str) -> str:
    """A sweep name: it becomes the folder ``sweeps/<name>``, so it may not hold a path."""
    name = _text(value, where)
    if not _NAME.match(name) or name in (".", ".."):
        raise SweepError(f"{where}: {short(name)} cannot name the results folder "
                         "sweeps/<name>; use letters, digits and _ . + = @ , - (no path "
                         "separators, no leading dot or dash); --out DIR puts the results "
                         "anywhere")
    return name


def _axis_values(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list) or not value:
        raise SweepError(f"{where}: must be a non-empty list of values, got {show(value)}")
    seen = [canonical_json(v) for v in value]
    if len(set(seen)) != len(seen):
        repeated = next(v for v, t in zip(value, seen, strict=True) if seen.count(t) > 1)
        raise SweepError(f"{where}: value {short(repeated)} appears more than once")
    return value


def _timeout(value: Any, where: str) -> float:
    """Seconds from ``2 h``, ``30 min``, ``90 s`` (any time unit) or a bare number of seconds."""
    from des.core import units

    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise SweepError(f"{where}: expected a duration like '30 min' or seconds, "
                         f"got {show(value)}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        number, _, unit = value.strip().partition(" ")
        scale = {"min": 60.0, "h": 3600.0}.get(unit.strip())
        try:
            seconds = float(number) * scale if scale else units.parse_time(value, where) / 1e9
        except ValueError as err:
            raise SweepError(f"{where}: expected a duration like '30 min', '2 h', '90 s' or "
                             f"seconds: {err}") from None
    if not seconds > 0:
        raise SweepError(f"{where}: must be > 0, got {show(value)}")
    return seconds


def _expression(value: Any, where: str) -> str:
    check_expression(_text(value, where), where)
    return value


def _constraints(value: Any, where: str) -> list[str]:
    if not isinstance(value, list):
        raise SweepError(f"{where}: must be a list of expressions like 'tp * dp == npus', "
                         f"got {show(value)}")
    return [_expression(item, f"{where}[{i}]") for i, item in enumerate(value)]


def sweep_from_dict(data: Any, default_name: str = "sweep", base_dir: Path | None = None
                    ) -> Sweep:
    """Validate a parsed sweep file (errors are :class:`SweepError` naming the key path).
    Its ``limits:`` (:mod:`des.core.limits`) apply while it is read and are copied into the
    base scenario, so every point runs under them too."""
    sec = Section(data, "", label="sweep file", keys=_SWEEP_KEYS, error=SweepError)
    overrides = sec.get("limits", optional(limits.parse_overrides), default=None) or {}
    with limits.using(overrides):
        return _sweep(sec, default_name, base_dir, overrides)


def _sweep(sec: Section, default_name: str, base_dir: Path | None,
           overrides: dict[str, float]) -> Sweep:
    """The sweep of ``sec``, read with its ``limits:`` in force."""
    from des.core import units

    default_name = re.sub(r"[^A-Za-z0-9_.+=@,-]", "_", default_name).lstrip(".-") or "sweep"
    name = sec.get("name", _name, default=default_name)
    sec.get("description", _text, default="")

    def scenario(value: Any, where: str) -> dict[str, Any]:
        loaded = load_scenario_data(value, base_dir) if isinstance(value, str) else value
        if not isinstance(loaded, Mapping):
            raise SweepError(f"{where}: must be a scenario mapping or a scenario file / bundled "
                             f"name, got {show(value)}")
        return dict(loaded)

    base = sec.get("base", scenario)
    axes = sec.get("axes", entries(_axis_values, nonempty=True,
                                   expected="a mapping of scenario keys to lists of values"))
    for axis in axes:
        _key(axis, sec.where(f"axes.{axis}"))
    points = math.prod(len(values) for values in axes.values())  # before any is expanded
    limits.check("max_sweep_points", points, sec.where("axes"),
                 what=" x ".join(str(len(v)) for v in axes.values()) + " axis values")
    groups = sec.get("groups", optional(entries(
        entries(_mapping), expected="a mapping of group names to named settings")),
        default=None) or {}
    for axis, values in axes.items():
        if axis in groups:
            for i, value in enumerate(values):
                if not isinstance(value, str):
                    raise sec.fail(f"axes.{axis}[{i}]", f"must name a group under "
                                   f"groups.{axis}, got {show(value)}")
            missing = [v for v in values if v not in groups[axis]]
            if missing:
                raise sec.fail(f"axes.{axis}", f"{short(missing[0])} is not defined under "
                               f"groups.{axis}; defined: {', '.join(groups[axis])}")
    constraints = sec.get("constraints", optional(_constraints), default=None) or []
    derive = sec.get("derive", _keyed(optional(entries(
        _expression, expected="a mapping of scenario keys to expressions"))), default=None) or {}
    memory_limit = sec.get("memory_limit", optional(units.parse_size), default=None)
    backend = sec.choice("backend", backend_names(), default=DEFAULT_BACKEND, what="backend")
    timeout = sec.get("timeout", optional(_timeout), default=None)
    sec.finish()
    if overrides:  # every point's scenario runs under the sweep's limits
        base["limits"] = {**base.get("limits", {}), **overrides} if isinstance(
            base.get("limits", {}), Mapping) else overrides
    return Sweep(name, base, dict(axes), groups, constraints, memory_limit, backend, derive,
                 timeout, overrides)

