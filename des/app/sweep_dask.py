"""Run sweep points on a Dask cluster (the ``cluster`` extra: ``pip install 'des[cluster]'``).

Why Dask: it is pure Python and installs with pip like the rest of des, so the same
``pip install 'des[cluster]'`` works on a laptop, in CI and on a cluster's login node. Without a
scheduler address it starts a ``LocalCluster`` of worker processes on this machine, which is how
laptops and CI run it; with one it connects to a running scheduler, and dask-jobqueue starts
schedulers and workers as SLURM or PBS jobs on HPC clusters (dask-kubernetes and others do the
same elsewhere). Each point is a small, independent task -- one scenario in, one
:class:`~des.app.sweep_types.PointResult` out -- so Dask's plain futures API is all that is
needed: no separate runtime or object store to run and size, as Ray needs, and nothing to
compile.

Points are submitted as ``des.app.sweep_exec.run_point`` tasks and yielded as they complete, so
:func:`des.app.sweep.run_sweep` streams them to ``points.jsonl`` (and resumes) exactly as with the
local process pool. Workers import des themselves: on a remote cluster the same des version must
be installed where the workers run.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import time
from collections.abc import Iterator
from types import ModuleType
from typing import Any

from des.app.sweep_exec import estimate_cost, run_point
from des.app.sweep_types import PointResult, SweepError, SweepPoint

INSTALL_HINT = "pip install 'des[cluster]'"


def _distributed() -> ModuleType:
    """``dask.distributed``, imported on first use, or a SweepError naming the extra."""
    try:
        return importlib.import_module("dask.distributed")
    except ImportError as err:
        raise SweepError(f"the dask executor needs dask.distributed ({err}): {INSTALL_HINT}"
                         ) from None


class DaskExecutor:
    """Sweep points as Dask tasks: on a running scheduler (``address``), on a given ``client``,
    or on a ``LocalCluster`` of ``workers`` single-threaded processes (default: one per core)
    started for each :meth:`run` and closed when it ends."""

    name = "dask"

    def __init__(self, address: str | None = None, *, workers: int | None = None,
                 client: Any = None) -> None:
        if workers is not None and workers < 1:
            raise SweepError(f"workers: expected a whole number >= 1, got {workers!r}")
        if address is not None and client is not None:
            raise SweepError("give a scheduler address or a client, not both")
        _distributed()  # fail here, before a sweep starts, when dask is missing
        self.address = address
        self.workers = workers
        self.client = client
        self._open: contextlib.ExitStack | None = None
        self._active: Any = None

    def __enter__(self) -> DaskExecutor:
        """Keep one client (and local cluster) for several calls, e.g. a sweep's estimates and
        its runs; closed on exit."""
        self._open = contextlib.ExitStack()
        self._active = self._open.enter_context(self._session())
        return self

    def __exit__(self, *exc: object) -> None:
        stack, self._open, self._active = self._open, None, None
        if stack is not None:
            stack.close()

    @contextlib.contextmanager
    def _session(self) -> Iterator[Any]:
        """A client for one run; closes what it started (never a client it was given)."""
        dd = _distributed()
        if self._active is not None:
            yield self._active
            return
        if self.client is not None:
            yield self.client
            return
        with contextlib.ExitStack() as stack:
            if self.address is not None:
                try:
                    client = stack.enter_context(dd.Client(self.address))
                except OSError as err:
                    raise SweepError(f"cannot reach the Dask scheduler at {self.address!r}: "
                                     f"{err}") from None
            else:
                cluster = stack.enter_context(dd.LocalCluster(
                    n_workers=self.workers or os.cpu_count() or 1, threads_per_worker=1,
                    processes=True, dashboard_address=":0"))
                client = stack.enter_context(dd.Client(cluster))
            yield client

    def run(self, points: list[SweepPoint], backend: str, constraints: list[str],
            deadline: float | None = None) -> Iterator[PointResult]:
        """Results as they finish (not in point order), points prioritised in the order given.
        A point whose task keeps killing its workers (a crash, the OS's out-of-memory killer)
        becomes an ``error`` result; any other failure (a lost scheduler) is raised, and a rerun
        resumes from what was recorded. At ``deadline`` (or when the caller stops) the rest is
        cancelled; a local cluster is closed with its workers, a running scheduler is asked to
        cancel (a task already running there may finish on its own, unrecorded)."""
        killed = _distributed().KilledWorker
        for point, outcome in self._map(run_point, points, (backend, constraints), deadline):
            if isinstance(outcome, killed):
                yield PointResult(point.key, point.index, point.values, "error",
                                  f"KilledWorker: {outcome}")
            else:
                yield outcome

    def estimate(self, points: list[SweepPoint], deadline: float | None = None
                 ) -> Iterator[tuple[str, float]]:
        """Each point's ``(key, cost)`` (:func:`~des.app.sweep_exec.estimate_cost`)."""
        for point, outcome in self._map(estimate_cost, points, (), deadline):
            yield outcome if isinstance(outcome, tuple) else (point.key, 0.0)

    def _map(self, fn: Any, points: list[SweepPoint], args: tuple[Any, ...],
             deadline: float | None) -> Iterator[tuple[SweepPoint, Any]]:
        if not points:
            return
        dd = _distributed()
        killed = dd.KilledWorker
        with self._session() as client:
            futures = {client.submit(fn, point, *args, pure=False, priority=len(points) - i):
                       point for i, point in enumerate(points)}
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                for future in dd.as_completed(list(futures), timeout=timeout):
                    try:
                        yield futures[future], future.result()
                    except killed as err:
                        yield futures[future], err
            except TimeoutError:
                return
            finally:  # stopped early (an error, a deadline, or the caller closed us)
                client.cancel(list(futures), force=True)
