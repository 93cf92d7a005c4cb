"""Running sweep points: one point built and simulated (:func:`run_point`, never raising),
one point's cost estimate (:func:`estimate_cost`), and the local process-pool executor
(:class:`LocalExecutor`; the Dask one is in :mod:`des.app.sweep_dask`).

An executor has ``run(points, backend, constraints, deadline=None)`` yielding results as they
finish, and may have ``estimate(points, deadline=None)`` yielding ``(key, cost)`` pairs. Points
are started in the order given (the sweep gives them cheapest first). ``deadline`` is a
:func:`time.monotonic` time: when it passes, or when the caller stops iterating (an interrupt),
no new point starts and running ones are killed before the call returns."""

from __future__ import annotations

import copy
import os
import signal
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from typing import Any, TypeVar

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
    try:  # an unknown backend is the run's failure, not the point's
        runner = get_backend(backend)
    except Exception as err:
        return PointResult(point.key, point.index, point.values, "error",
                           f"{type(err).__name__}: {err}")
    try:
        scenario = scenario_from_dict(copy.deepcopy(point.scenario), point.scenario["name"],
                                      backend=backend)
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
        result = runner.run(scenario.topology, scenario.graph, hardware=scenario.hardware,
                            options=scenario.options)
        metrics = evaluate_run(result, scenario).metrics
    except Exception as err:  # likewise a point that fails to run
        return PointResult(point.key, point.index, point.values, "error",
                           f"{type(err).__name__}: {err}")
    metrics.update(topology=scenario.topology.name, backend=backend,
                   wall_s=time.perf_counter() - start)
    return PointResult(point.key, point.index, point.values, "ok", "", metrics)


def estimate_cost(point: SweepPoint) -> tuple[str, float]:
    """``(key, cost)``: the number of nodes of the point's event graph, which predicts its
    simpy run time better than the analytical backend's run time does (see
    :mod:`des.app.sweep_cost`); 0 for a point that fails to build (it fails fast when run)."""
    from des.app.config import scenario_from_dict

    try:
        scenario = scenario_from_dict(copy.deepcopy(point.scenario), point.scenario["name"])
    except Exception:  # the run reports why; an estimate never fails
        return point.key, 0.0
    return point.key, float(len(scenario.graph))


# ---------------------------------------------------------------------- executors
T = TypeVar("T")


def _worker_signals() -> None:
    """Pool workers leave Ctrl-C to the sweep, which stops them itself, and die quietly on
    SIGTERM (a forked worker would otherwise inherit the command's SIGTERM handler and print
    a traceback when the sweep terminates it)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def _stop_pool(pool: ProcessPoolExecutor, futures: list[Future[Any]]) -> None:
    """Cancel what has not started and kill the workers still running a point, then wait for
    the pool to wind down: no orphan processes, no waiting for a long point to finish."""
    if all(f.done() for f in futures):
        pool.shutdown(wait=True)
        return
    processes = list((getattr(pool, "_processes", None) or {}).values())  # gone on shutdown
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(timeout=5)
        if process.is_alive():
            process.kill()
            process.join(timeout=5)
    pool.shutdown(wait=True)


class LocalExecutor:
    """A process pool on this machine (all cores by default)."""

    name = "local"

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or os.cpu_count() or 1

    def run(self, points: list[SweepPoint], backend: str, constraints: list[str],
            deadline: float | None = None) -> Iterator[PointResult]:
        """Results as they finish (not in point order), points started in the order given."""
        yield from self._map(run_point, points, (backend, constraints), deadline)

    def estimate(self, points: list[SweepPoint], deadline: float | None = None
                 ) -> Iterator[tuple[str, float]]:
        """Each point's ``(key, cost)`` (:func:`estimate_cost`) as it is worked out."""
        yield from self._map(estimate_cost, points, (), deadline)

    def _map(self, fn: Callable[..., T], points: list[SweepPoint], args: tuple[Any, ...],
             deadline: float | None) -> Iterator[T]:
        if self.workers == 1 and deadline is None:  # in this process: Ctrl-C reaches it
            for point in points:
                yield fn(point, *args)
            return
        if not points:
            return
        pool = ProcessPoolExecutor(max_workers=self.workers, initializer=_worker_signals)
        futures = [pool.submit(fn, p, *args) for p in points]  # started first come first
        try:
            for future in as_completed(futures, timeout=_remaining(deadline)):
                yield future.result()
        except TimeoutError:
            return
        finally:  # finished, timed out, interrupted or closed by the caller
            _stop_pool(pool, futures)
