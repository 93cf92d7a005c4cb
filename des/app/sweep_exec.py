"""Running sweep points: one point built and simulated (:func:`run_point`, never raising),
and the local process-pool executor (:class:`LocalExecutor`; the Dask one is in
:mod:`des.app.sweep_dask`)."""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed

from des.app.sweep_expr import check_expression, evaluate, scenario_names
from des.app.sweep_types import PointResult, SweepError, SweepPoint


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

