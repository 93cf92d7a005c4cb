"""The backends by name: the one place a string like ``"simpy"`` becomes a way to run a graph.

The command line, sweeps and benches choose a backend by name; they all look it up here, so a
new backend is added once and an unknown name fails the same way everywhere, listing the known
ones. Every backend has the same call shape: ``run(topology, graph, hardware=..., options=...,
progress=...)`` returns a :class:`~des.core.results.Result`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from des.core.graph import EventGraph
from des.core.hardware import GpuSpec
from des.core.results import Result
from des.sim.options import EngineOptions
from des.sim.runtime import SimulationError
from topologies.base import Topology

Progress = Callable[[int, int], None]


class BackendError(ValueError):
    """An unknown backend name; the message lists the known ones."""


class Runner(Protocol):
    """Runs an event graph on a topology and returns its Result."""

    def __call__(self, topology: Topology, graph: EventGraph, *,
                 hardware: GpuSpec | None = None, options: EngineOptions | None = None,
                 progress: Progress | None = None) -> Result: ...


@dataclass(frozen=True)
class Backend:
    """A named way to run an event graph: ``run``, a one-line ``description``, and whether
    symmetric ranks contend on links (``contention``): a graph for a backend without folds
    wherever ranks take the same time, not only where they load separate, identical links."""

    name: str
    description: str
    run: Runner
    contention: bool = True


def _simpy(topology: Topology, graph: EventGraph, *, hardware: GpuSpec | None = None,
           options: EngineOptions | None = None, progress: Progress | None = None) -> Result:
    from des.sim.engine import simulate  # SimPy is imported only when a run needs it

    return simulate(topology, graph, hardware=hardware, options=options, progress=progress)


def _analytical(topology: Topology, graph: EventGraph, *, hardware: GpuSpec | None = None,
                options: EngineOptions | None = None, progress: Progress | None = None
                ) -> Result:
    from des.sim.analytical import analyze

    return analyze(topology, graph, hardware=hardware, options=options, progress=progress)


BACKENDS: dict[str, Backend] = {
    "simpy": Backend("simpy", "every link simulated, with contention (default)", _simpy),
    "analytical": Backend("analytical", "closed-form uncontended costs, much faster, a lower "
                          "bound", _analytical, contention=False),
}
DEFAULT_BACKEND = "simpy"

#: What a backend raises for a graph it cannot run (bad input, not a bug).
RUN_ERRORS: tuple[type[Exception], ...] = (SimulationError,)  # AnalyticalError is one


def backend_names() -> list[str]:
    """Known backend names, default first."""
    return [DEFAULT_BACKEND, *(n for n in BACKENDS if n != DEFAULT_BACKEND)]


def get_backend(name: str) -> Backend:
    """The backend called ``name``; :class:`BackendError` listing the known ones otherwise."""
    found = BACKENDS.get(name) if isinstance(name, str) else None
    if found is None:
        raise BackendError(f"unknown backend {name!r}; expected one of "
                           f"{', '.join(backend_names())}")
    return found


def run_backend(name: str, topology: Topology, graph: EventGraph, *,
                hardware: GpuSpec | None = None, options: EngineOptions | None = None,
                progress: Progress | None = None) -> Result:
    """Run ``graph`` on ``topology`` with the backend called ``name``."""
    return get_backend(name).run(topology, graph, hardware=hardware, options=options,
                                 progress=progress)


__all__ = ["BACKENDS", "DEFAULT_BACKEND", "RUN_ERRORS", "Backend", "BackendError", "Runner",
           "backend_names", "get_backend", "run_backend"]
