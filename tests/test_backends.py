"""The backend registry: one table of backends by name, one error for an unknown name."""

from __future__ import annotations

import pytest

import topologies as topo
from des.core.graph import EventGraph
from des.sim.backends import BACKENDS, BackendError, backend_names, get_backend, run_backend


def test_backend_registry_names_and_describes_every_backend():
    assert backend_names()[0] == "simpy" and set(backend_names()) == set(BACKENDS)
    assert all(b.description and b.name == name for name, b in BACKENDS.items())


def test_an_unknown_backend_lists_the_known_ones():
    with pytest.raises(BackendError, match="unknown backend 'ns3'; expected one of simpy, "
                                           "analytical"):
        get_backend("ns3")


def test_both_backends_run_through_the_registry():
    graph = EventGraph(4)
    graph.collective_all("all_reduce", 2**16)
    ring = topo.ring(4, 50.0, 500.0)
    results = {name: run_backend(name, ring, graph, progress=lambda done, total: None)
               for name in backend_names()}
    assert {r.meta["backend"] for r in results.values()} == set(backend_names())
    assert results["analytical"].makespan_ns <= results["simpy"].makespan_ns * (1 + 1e-9)
