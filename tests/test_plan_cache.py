"""The contended model builds a collective's step program once per shape, not once per
occurrence, and the run's result does not change."""

from __future__ import annotations

import pytest

import des.sim.engine as engine
from des.core.graph import EventGraph
from des.sim.engine import simulate
from topologies import ring


def _graph() -> EventGraph:
    g = EventGraph(4)
    deps: dict[int, list[int]] = {}
    for _ in range(3):  # three identical all-reduces, then a different size
        ids = g.collective_all("all_reduce", 1 << 20, deps=deps)
        deps = {r: [i] for r, i in ids.items()}
    g.collective_all("all_reduce", 1 << 16, deps=deps)
    return g


def test_plans_built_once_per_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = engine.make_plan

    def counting(*args, **kwargs):
        calls.append(args[:4])
        return real(*args, **kwargs)

    topo = ring(4, 10.0, 100.0)
    before = simulate(topo, _graph())
    monkeypatch.setattr(engine, "make_plan", counting)
    after = simulate(ring(4, 10.0, 100.0), _graph())
    assert len(calls) == len(set(calls)) == 2
    assert after.makespan_ns == before.makespan_ns
