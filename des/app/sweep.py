"""Design-space sweeps: a base scenario, axes over any of its keys, constraints, many runs.

A sweep file::

    name: stage-lab-llama70b
    base: {topology: ..., hardware: ..., workload: ...}    # a scenario mapping, or
    base: llama70b_torus3d_64                               # a scenario file or bundled name
    axes:                                                   # dotted scenario keys
      workload.parallel.tp: [1, 2, 4, 8]
      workload.parallel.dp: [1, 2, 4, 8]
      system: [...]                                         # or named groups of settings:
    groups:
      system:
        system1: {topology.bandwidth: 100 GB/s, hardware.hbm_bandwidth: 3 TB/s}
        system2: {topology.bandwidth: 2000 GB/s, hardware.hbm_bandwidth: 300 GB/s}
    derive:                                                 # values computed per point
      workload.parallel.micro_batch: global_batch // dp
    constraints:
      - tp * dp * cp == npus
    memory_limit: 80 GiB                                    # for the ranking that must fit

Every combination of axis values is a point. Constraints and derived values are arithmetic and
comparisons over the point's scenario values (by full dotted key, or by last component when that
is unique) and ``npus`` (its topology's NPUs), evaluated by a small interpreter of Python's
expression grammar that knows numbers, names, + - * / // % **, comparisons, and/or/not and
nothing else, so a sweep file cannot run code. A point that violates a constraint is recorded
with the reason; a point that fails to build or to run is recorded with its error; neither stops
the sweep.
"""

from __future__ import annotations

import ast
import copy
import hashlib
import itertools
import json
import operator
import os
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from des.core.paths import bundled
from des.core.schema import SchemaError, Section, entries, optional, short, show
from des.core.schema import text as _text
from des.sim.backends import DEFAULT_BACKEND, backend_names


class SweepError(SchemaError):
    """A sweep file that cannot be used; names the key and what is allowed."""


@dataclass(frozen=True)
class SweepPoint:
    """One combination of axis values and the scenario it gives."""

    index: int
    key: str
    values: dict[str, Any]
    scenario: dict[str, Any]


@dataclass
class PointResult:
    """What one point gave: ``status`` is ok, invalid (a constraint) or error."""

    key: str
    index: int
    values: dict[str, Any]
    status: str
    reason: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        """A flat row: axis values, status, reason, metrics (a metric named like an axis is
        prefixed ``result.`` so the axis value survives)."""
        row = {**self.values, "status": self.status, "reason": self.reason}
        for key, value in self.metrics.items():
            row[f"result.{key}" if key in row else key] = value
        return row


@dataclass
class Sweep:
    """A parsed sweep file."""

    name: str
    base: dict[str, Any]
    axes: dict[str, list[Any]]
    groups: dict[str, dict[str, dict[str, Any]]]
    constraints: list[str]
    memory_limit: float | None
    backend: str = DEFAULT_BACKEND
    derive: dict[str, str] = field(default_factory=dict)

    def points(self) -> list[SweepPoint]:
        """Every combination, in axis order (the first axis varies slowest)."""
        names = list(self.axes)
        out = []
        for index, combo in enumerate(itertools.product(*(self.axes[n] for n in names))):
            values = dict(zip(names, combo, strict=True))
            scenario = copy.deepcopy(self.base)
            for axis, value in values.items():
                if axis in self.groups:
                    for key, setting in self.groups[axis][value].items():
                        set_path(scenario, key, setting)
                else:
                    set_path(scenario, axis, value)
            scenario["name"] = f"{self.name}#{index}"
            out.append(SweepPoint(index, point_key(values, self.fingerprint()), values,
                                  scenario))
        return out

    def fingerprint(self) -> str:
        """What else decides a point's result: a changed base, group, derived value or
        constraint gives every point a new key, so old results are not reused."""
        return json.dumps([self.base, self.groups, self.derive, self.constraints],
                          sort_keys=True, default=str)

    def screen(self, point: SweepPoint) -> tuple[SweepPoint, str]:
        """Apply derived values and constraints before anything is built: the point to run,
        and "" or why it is invalid."""
        from des.app.config import ConfigError, Section, build_topology

        try:
            npus = build_topology(Section(point.scenario.get("topology"), "topology")).num_npus
        except (ConfigError, ValueError) as err:
            return point, f"topology: {err}"
        scenario = copy.deepcopy(point.scenario)
        names = scenario_names(scenario, npus)
        try:
            for key, text in self.derive.items():
                set_path(scenario, key, evaluate(check_expression(text, f"derive.{key}"), names))
            names = scenario_names(scenario, npus)
            for text in self.constraints:
                if not evaluate(check_expression(text, "constraint"), names):
                    return point, f"violates {text!r}"
        except (SweepError, ArithmeticError, TypeError, ValueError) as err:
            return point, f"{type(err).__name__}: {err}"
        return SweepPoint(point.index, point.key, point.values, scenario), ""


def point_key(values: Mapping[str, Any], fingerprint: str = "") -> str:
    """A stable id of a point (the same values and sweep give the same key in every run)."""
    text = json.dumps(values, sort_keys=True, default=str) + fingerprint
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def set_path(doc: dict[str, Any], path: str, value: Any) -> None:
    """Set ``doc[a][b][c] = value`` for ``path`` ``a.b.c``, creating mappings on the way."""
    parts = path.split(".")
    node = doc
    for i, part in enumerate(parts[:-1]):
        nxt = node.get(part)
        if nxt is None:
            nxt = node[part] = {}
        elif not isinstance(nxt, dict):
            raise SweepError(f"axis {path}: {'.'.join(parts[:i + 1])} is not a mapping in the "
                             "base scenario")
        node = nxt
    node[parts[-1]] = value


# ---------------------------------------------------------------------- constraints
_BINARY: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_COMPARE: dict[type, Callable[[Any, Any], bool]] = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge,
}


def check_expression(text: str, where: str) -> ast.Expression:
    """Parse a constraint, allowing only the nodes :func:`evaluate` knows."""
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as err:
        raise SweepError(f"{where}: cannot read {text!r}: {err.msg}") from None
    allowed = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.BoolOp, ast.Compare, ast.Name,
               ast.Constant, ast.Load, ast.And, ast.Or, ast.Not, ast.USub, ast.UAdd,
               ast.Attribute, *_BINARY, *_COMPARE)
    for node in ast.walk(tree):
        if not isinstance(node, allowed):
            raise SweepError(f"{where}: {type(node).__name__} is not allowed in {text!r}; "
                             "use numbers, axis names, arithmetic, comparisons, and/or/not")
        if isinstance(node, ast.Constant) and not isinstance(node.value, int | float | str):
            raise SweepError(f"{where}: constant {node.value!r} is not allowed")
    return tree


def evaluate(tree: ast.AST, names: Mapping[str, Any]) -> Any:
    """Evaluate a checked constraint with ``names`` bound."""
    if isinstance(tree, ast.Expression):
        return evaluate(tree.body, names)
    if isinstance(tree, ast.Constant):
        return tree.value
    if isinstance(tree, ast.Name | ast.Attribute):
        dotted = ast.unparse(tree)
        if dotted not in names:
            raise SweepError(f"unknown name {dotted!r} in a constraint; known: "
                             f"{', '.join(sorted(names))}")
        return names[dotted]
    if isinstance(tree, ast.BinOp):
        left, right = evaluate(tree.left, names), evaluate(tree.right, names)
        if isinstance(tree.op, ast.Pow) and isinstance(right, int | float) and abs(right) > 256:
            raise SweepError(f"exponent {right!r} is too large in {ast.unparse(tree)!r}")
        return _BINARY[type(tree.op)](left, right)
    if isinstance(tree, ast.UnaryOp):
        value = evaluate(tree.operand, names)
        return {ast.USub: operator.neg, ast.UAdd: operator.pos,
                ast.Not: operator.not_}[type(tree.op)](value)
    if isinstance(tree, ast.BoolOp):
        values = (evaluate(v, names) for v in tree.values)
        return all(values) if isinstance(tree.op, ast.And) else any(values)
    if isinstance(tree, ast.Compare):
        left = evaluate(tree.left, names)
        for op, right_node in zip(tree.ops, tree.comparators, strict=True):
            right = evaluate(right_node, names)
            if not _COMPARE[type(op)](left, right):
                return False
            left = right
        return True
    raise SweepError(f"cannot evaluate {ast.unparse(tree)!r}")


def _leaves(doc: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in doc.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from _leaves(value, path + ".")
        elif isinstance(value, int | float | str) and not isinstance(value, bool):
            yield path, value


def scenario_names(scenario: Mapping[str, Any], npus: int) -> dict[str, Any]:
    """Names a constraint may use: every number or string of the scenario by dotted key,
    unique last components, ``npus``."""
    return constraint_names(dict(_leaves(scenario)), npus)


def constraint_names(values: Mapping[str, Any], npus: int) -> dict[str, Any]:
    """Names from ``values``: full keys, unique last components, and ``npus``."""
    names: dict[str, Any] = {"npus": npus}
    short: dict[str, list[str]] = {}
    for key, value in values.items():
        names[key] = value
        short.setdefault(key.rsplit(".", 1)[-1], []).append(key)
    for leaf, keys in short.items():
        if len(keys) == 1 and leaf not in names:
            names[leaf] = values[keys[0]]
    return names


# ---------------------------------------------------------------------- loading
def load_scenario_data(spec: str, base_dir: Path | None = None) -> dict[str, Any]:
    """The parsed (not yet built) mapping of a scenario file or bundled scenario."""
    path = Path(spec)
    if not path.is_absolute() and base_dir is not None and (base_dir / path).is_file():
        path = base_dir / path
    if path.is_file():
        text = path.read_text(encoding="utf-8")
    else:
        presets = bundled("scenarios")
        if spec not in presets:
            raise SweepError(f"base {spec!r}: no such scenario file or bundled scenario; "
                             f"bundled: {', '.join(sorted(presets))}")
        text = presets[spec].read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise SweepError(f"base {spec!r}: not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise SweepError(f"base {spec!r}: a scenario is a mapping")
    return data


def load_sweep(spec: str | os.PathLike[str]) -> Sweep:
    """A sweep from a YAML file or a bundled sweep name (``configs/sweeps``)."""
    text = os.fspath(spec)
    path = Path(text)
    if path.is_file():
        source, base_dir = path.read_text(encoding="utf-8"), path.parent
    else:
        presets = bundled("sweeps")
        if text not in presets:
            raise SweepError(f"sweep {text!r}: no such file and no bundled sweep of that name; "
                             f"bundled: {', '.join(sorted(presets)) or 'none'}")
        source, base_dir = presets[text].read_text(encoding="utf-8"), Path.cwd()
    try:
        data = yaml.safe_load(source)
    except yaml.YAMLError as err:
        raise SweepError(f"{text}: not valid YAML: {err}") from None
    return sweep_from_dict(data, Path(text).stem, base_dir)


_SWEEP_KEYS = ("name", "description", "base", "axes", "groups", "constraints", "memory_limit",
               "backend", "derive")


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise SweepError(f"{where}: must be a mapping, got {show(value)}")
    return dict(value)


def _axis_values(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list) or not value:
        raise SweepError(f"{where}: must be a non-empty list of values, got {show(value)}")
    seen = [json.dumps(v, sort_keys=True, default=str) for v in value]
    if len(set(seen)) != len(seen):
        repeated = next(v for v, t in zip(value, seen, strict=True) if seen.count(t) > 1)
        raise SweepError(f"{where}: value {short(repeated)} appears more than once")
    return value


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
    """Validate a parsed sweep file (errors are :class:`SweepError` naming the key path)."""
    from des.core import units

    sec = Section(data, "", label="sweep file", keys=_SWEEP_KEYS, error=SweepError)
    name = sec.get("name", _text, default=default_name)
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
    groups = sec.get("groups", optional(entries(
        entries(_mapping), expected="a mapping of group names to named settings")),
        default=None) or {}
    for axis, values in axes.items():
        if axis in groups:
            missing = [v for v in values if v not in groups[axis]]
            if missing:
                raise sec.fail(f"axes.{axis}", f"{short(missing[0])} is not defined under "
                               f"groups.{axis}; defined: {', '.join(groups[axis])}")
    constraints = sec.get("constraints", optional(_constraints), default=None) or []
    derive = sec.get("derive", optional(entries(
        _expression, expected="a mapping of scenario keys to expressions")), default=None) or {}
    memory_limit = sec.get("memory_limit", optional(units.parse_size), default=None)
    backend = sec.choice("backend", backend_names(), default=DEFAULT_BACKEND, what="backend")
    sec.finish()
    return Sweep(name, base, dict(axes), groups, constraints, memory_limit, backend, derive)


# ---------------------------------------------------------------------- running one point
def run_point(point: SweepPoint, backend: str, constraints: list[str] | None = None
              ) -> PointResult:
    """Build and simulate one (screened) point; never raises: errors become its status.
    ``constraints`` are checked again here for callers that did not screen."""
    from des.app.config import scenario_from_dict
    from des.app.workload_kinds import evaluate as evaluate_run
    from des.sim.backends import get_backend

    start = time.perf_counter()
    try:
        scenario = scenario_from_dict(copy.deepcopy(point.scenario), point.scenario["name"])
    except Exception as err:  # a bad point is a result, not a crash
        return PointResult(point.key, point.index, point.values, "invalid", str(err))
    names = scenario_names(point.scenario, scenario.topology.num_npus)
    for text in constraints or ():
        try:
            ok = evaluate(check_expression(text, "constraint"), names)
        except (SweepError, ArithmeticError, TypeError, ValueError) as err:
            return PointResult(point.key, point.index, point.values, "invalid",
                               f"constraint {text!r}: {type(err).__name__}: {err}")
        if not ok:
            return PointResult(point.key, point.index, point.values, "invalid",
                               f"violates {text!r}")
    try:
        result = get_backend(backend).run(scenario.topology, scenario.graph,
                                          hardware=scenario.hardware, options=scenario.options)
        metrics = evaluate_run(result, scenario).metrics
    except Exception as err:  # likewise a point that fails to run
        return PointResult(point.key, point.index, point.values, "error",
                           f"{type(err).__name__}: {err}")
    metrics.update(topology=scenario.topology.name, backend=backend,
                   wall_s=time.perf_counter() - start)
    return PointResult(point.key, point.index, point.values, "ok", "", metrics)


# ---------------------------------------------------------------------- executors
class LocalExecutor:
    """A process pool on this machine (all cores by default)."""

    name = "local"

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or os.cpu_count() or 1

    def run(self, points: list[SweepPoint], backend: str, constraints: list[str]
            ) -> Iterator[PointResult]:
        """Results as they finish (not in point order)."""
        if self.workers == 1:
            for point in points:
                yield run_point(point, backend, constraints)
            return
        with ProcessPoolExecutor(max_workers=self.workers) as pool:
            futures = [pool.submit(run_point, p, backend, constraints) for p in points]
            for future in as_completed(futures):
                yield future.result()


def results_path(out: Path) -> Path:
    """Where a sweep streams its results (one JSON object per line)."""
    return out / "points.jsonl"


def load_done(out: Path) -> dict[str, PointResult]:
    """Results already on disk (resuming); a torn last line is ignored."""
    done: dict[str, PointResult] = {}
    path = results_path(out)
    if not path.is_file():
        return done
    for line in path.read_text().splitlines():
        try:
            doc = json.loads(line)
        except json.JSONDecodeError:
            continue
        done[doc["key"]] = PointResult(**doc)
    return done


def run_sweep(sweep: Sweep, out: str | os.PathLike[str], *, executor: Any = None,
              backend: str | None = None,
              progress: Callable[[int, int], None] | None = None) -> list[PointResult]:
    """Run every point not already in ``out`` and return all results in point order. Each
    result is appended to ``out/points.jsonl`` (flushed) as it arrives, so a killed sweep
    resumes where it stopped."""
    from des.sim.backends import get_backend

    backend = get_backend(backend or sweep.backend).name  # an unknown name fails here, once
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    executor = executor or LocalExecutor()
    points = sweep.points()
    done = load_done(out)
    finished = sum(1 for p in points if p.key in done)
    if progress:
        progress(finished, len(points))
    todo = []
    path = results_path(out)
    if path.is_file() and path.stat().st_size:
        with path.open("rb") as fh:  # a line torn by a kill must not swallow the next one
            fh.seek(-1, os.SEEK_END)
            torn = fh.read(1) != b"\n"
        if torn:
            with path.open("a") as fh:
                fh.write("\n")
    with path.open("a") as stream:
        for point in points:  # derived values and constraints cost nothing: settle them here
            if point.key in done:
                continue
            screened, reason = sweep.screen(point)
            if not reason:
                todo.append(screened)
                continue
            result = PointResult(point.key, point.index, point.values, "invalid", reason)
            stream.write(json.dumps(asdict(result), default=str) + "\n")
            done[result.key] = result
            finished += 1
        stream.flush()
        if progress:
            progress(finished, len(points))
        for result in executor.run(todo, backend, []):
            stream.write(json.dumps(asdict(result), default=str) + "\n")
            stream.flush()
            done[result.key] = result
            finished += 1
            if progress:
                progress(finished, len(points))
    return sorted((done[p.key] for p in points if p.key in done), key=lambda r: r.index)


def write_table(results: list[PointResult], out: str | os.PathLike[str]) -> tuple[Path, Path]:
    """``results.csv`` and ``results.json``: one row per point with every axis and metric."""
    import csv

    out = Path(out)
    rows = [r.row() for r in results]
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    csv_path, json_path = out / "results.csv", out / "results.json"
    with csv_path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    json_path.write_text(json.dumps(rows, indent=1, default=str) + "\n")
    return csv_path, json_path


def ranking(results: list[PointResult], memory_limit: float | None = None
            ) -> list[PointResult]:
    """Finished points best first by their workload kind's rank key (iteration time for
    training, output tokens/s for inference, the makespan otherwise; see
    :mod:`des.app.workload_kinds`); with ``memory_limit``, only those that fit."""
    from des.app.workload_kinds import ranking_kind

    ok = [r for r in results if r.status == "ok"]
    if memory_limit is not None:
        ok = [r for r in ok if (r.metrics.get("peak_memory_bytes") or 0) <= memory_limit]
    kind = ranking_kind(r.metrics for r in ok)
    return sorted(ok, key=lambda r: (kind.sort_key(r.metrics), r.index))
