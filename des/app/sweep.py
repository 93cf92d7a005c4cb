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
    timeout: 2 h                                            # optional: stop, keep what ran

Every combination of axis values is a point. Constraints and derived values are arithmetic and
comparisons over the point's scenario values (by full dotted key, or by last component when that
is unique) and ``npus`` (its topology's NPUs), evaluated by a small interpreter of Python's
expression grammar that knows numbers, names, + - * / // % **, comparisons, and/or/not and
nothing else, so a sweep file cannot run code. A point that violates a constraint is recorded
with the reason; a point that fails to build or to run is recorded with its error; neither stops
the sweep.

With the simpy backend the points run cheapest first by estimated cost
(:mod:`des.app.sweep_cost`), so a sweep stopped early has the most points done. A sweep stops
at its ``timeout`` (``--timeout`` seconds on the command line; a bare number in the file is
seconds too) or on Ctrl-C: no new point starts, running ones are killed, and
:func:`run_sweep` returns what finished, saying how many points were cut off; a rerun resumes.

This module holds the sweep and its resumable run; the interpreter is :mod:`des.app.sweep_expr`,
file loading :mod:`des.app.sweep_load`, executors :mod:`des.app.sweep_exec` (and
:mod:`des.app.sweep_dask`), results and ranking :mod:`des.app.sweep_results`, NPU counts
for screening :mod:`des.app.sweep_npus`.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import inspect
import itertools
import json
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from des.app.sweep_cost import ESTIMATED_BACKENDS, cheapest_first, estimate
from des.app.sweep_exec import LocalExecutor
from des.app.sweep_expr import check_expression, evaluate, scenario_names
from des.app.sweep_results import load_done, results_path
from des.app.sweep_types import (
    PointResult,
    SweepError,
    SweepPoint,
    SweepProgress,
    SweepRun,
    canonical_json,
)
from des.core import limits
from des.sim.backends import DEFAULT_BACKEND


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
    timeout: float | None = None  # seconds
    limits: dict[str, float] = field(default_factory=dict)  # the file's limits: section
    _npus: Any = field(default=None, init=False, repr=False, compare=False)

    def points(self, backend: str | None = None) -> list[SweepPoint]:
        """Every combination, in axis order (the first axis varies slowest); keys depend on
        the ``backend`` that runs them (default: the sweep's), so results of one backend are
        never taken for another's when a sweep is rerun on the same folder."""
        count = self.count()
        with limits.using(self.limits):  # refused before one point is expanded or copied
            limits.check("max_sweep_points", count, f"sweep {self.name}",
                         what=" x ".join(str(len(v)) for v in self.axes.values())
                         + " axis values")
        fingerprint = self.fingerprint()
        if (backend or self.backend) != self.backend:
            fingerprint += f"|backend={backend}"
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
            out.append(SweepPoint(index, point_key(values, fingerprint), values, scenario))
        return out

    def count(self) -> int:
        """How many points the sweep has (the product of its axes' lengths), without
        expanding any."""
        return math.prod(len(values) for values in self.axes.values())

    def fingerprint(self) -> str:
        """What else decides a point's result: a changed base, group, derived value or
        constraint gives every point a new key, so old results are not reused."""
        return canonical_json([self.base, self.groups, self.derive, self.constraints])

    def screen(self, point: SweepPoint) -> tuple[SweepPoint, str]:
        """Apply derived values and constraints before anything is built: the point to run,
        and "" or why it is invalid."""
        from des.app.config import ConfigError
        from des.app.sweep_npus import NpuCounter

        if self._npus is None:  # one per sweep: each distinct topology worked out once
            self._npus = NpuCounter()
        try:
            npus = self._npus(point.scenario.get("topology"))
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
        except (SweepError, ArithmeticError, TypeError, ValueError, RecursionError) as err:
            return point, f"{type(err).__name__}: {err}"
        return SweepPoint(point.index, point.key, point.values, scenario), ""


def point_key(values: Mapping[str, Any], fingerprint: str = "") -> str:
    """A stable id of a point (the same values and sweep give the same key in every run)."""
    text = canonical_json(values) + fingerprint
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



def _mend_torn_line(path: Path) -> None:
    """A line torn by a kill must not swallow the next one."""
    if path.is_file() and path.stat().st_size:
        with path.open("rb") as fh:
            fh.seek(-1, os.SEEK_END)
            torn = fh.read(1) != b"\n"
        if torn:
            with path.open("a") as fh:
                fh.write("\n")


def _results(executor: Any, points: list[SweepPoint], backend: str, deadline: float | None
             ) -> Iterator[PointResult]:
    """The executor's results; it is handed the deadline when it takes one, and is stopped
    (its iterator closed) at the deadline when it does not."""
    params = inspect.signature(executor.run).parameters
    takes = "deadline" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())
    stream = (executor.run(points, backend, [], deadline=deadline) if takes
              else executor.run(points, backend, []))
    try:
        for result in stream:
            yield result
            if deadline is not None and time.monotonic() >= deadline:
                return
    finally:
        close = getattr(stream, "close", None)
        if close:
            close()


def run_sweep(sweep: Sweep, out: str | os.PathLike[str], *, executor: Any = None,
              backend: str | None = None, timeout: float | None = None,
              progress: Callable[[SweepProgress], None] | None = None) -> SweepRun:
    """Run every point not already in ``out`` and return all results in point order. Each
    result is appended to ``out/points.jsonl`` (flushed) as it arrives, so a killed sweep
    resumes where it stopped. With the simpy backend the points are estimated and run
    cheapest first (:mod:`des.app.sweep_cost`).

    ``timeout`` (seconds; default the sweep's own) or Ctrl-C (KeyboardInterrupt) stops the run:
    no new point starts, running ones are stopped, and what finished is returned with
    ``stopped`` set and ``cut_off`` counting the points without a result."""
    with limits.using(sweep.limits):
        return _run_sweep(sweep, out, executor=executor, backend=backend, timeout=timeout,
                          progress=progress)


def _run_sweep(sweep: Sweep, out: str | os.PathLike[str], *, executor: Any, backend: str | None,
               timeout: float | None, progress: Callable[[SweepProgress], None] | None
               ) -> SweepRun:
    """:func:`run_sweep` with the sweep's limits in force."""
    from des.sim.backends import get_backend

    backend = get_backend(backend or sweep.backend).name  # an unknown name fails here, once
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    executor = executor or LocalExecutor()
    timeout = sweep.timeout if timeout is None else timeout
    deadline = None if timeout is None else time.monotonic() + timeout
    points = sweep.points(backend)
    done = load_done(out)
    resumed = sum(1 for p in points if p.key in done)
    path = results_path(out)
    _mend_torn_line(path)
    todo: list[SweepPoint] = []
    stopped = ""
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
            resumed += 1
        stream.flush()
        session = executor if hasattr(executor, "__enter__") else contextlib.nullcontext()
        try:
            with session:  # one cluster for the estimates and the runs
                stopped = _run(todo, out, executor, backend, deadline, stream, done, resumed,
                               progress)
        except KeyboardInterrupt:
            stopped = "interrupted"
        stream.flush()
    results = sorted((done[p.key] for p in points if p.key in done), key=lambda r: r.index)
    cut_off = len(points) - len(results)
    if cut_off and not stopped and deadline is not None and time.monotonic() >= deadline:
        stopped = "timeout"
    return SweepRun(results, total=len(points), cut_off=cut_off, stopped=stopped)


def _run(todo: list[SweepPoint], out: Path, executor: Any, backend: str,
         deadline: float | None, stream: Any, done: dict[str, PointResult], resumed: int,
         progress: Callable[[SweepProgress], None] | None) -> str:
    """Estimate (simpy), order and run ``todo``, streaming results; "" or why it stopped."""
    def report(phase: str, count: int, cost_done: float, cost_total: float) -> None:
        if progress:
            progress(SweepProgress(phase, count, len(todo), cost_done, cost_total, resumed))

    if backend in ESTIMATED_BACKENDS and todo:
        costs = estimate(todo, out, executor, deadline,
                         lambda n: report("estimating", n, float(n), float(len(todo))))
        if len(costs) < len(todo):
            return "timeout"
        todo = cheapest_first(todo, costs)
    else:
        costs = {p.key: 1.0 for p in todo}
    weight = {p.key: max(costs.get(p.key, 1.0), 1.0) for p in todo}  # a failed build costs 1
    cost_total, cost_done, count = float(sum(weight.values())), 0.0, 0
    report("running", 0, 0.0, cost_total)
    for result in _results(executor, todo, backend, deadline):
        stream.write(json.dumps(asdict(result), default=str) + "\n")
        stream.flush()
        done[result.key] = result
        count += 1
        cost_done += weight.get(result.key, 1.0)
        report("running", count, cost_done, cost_total)
    late = deadline is not None and time.monotonic() >= deadline
    return "timeout" if count < len(todo) and late else ""
