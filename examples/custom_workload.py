"""Extension point: your own workload kind.

A workload kind in des is one :class:`~des.app.workload_kinds.WorkloadKind` registered with
:func:`~des.app.workload_kinds.register_workload`. It carries everything des needs to know:

* ``build``: the scenario parser, ``parse(section, num_ranks, name)`` -> an
  :class:`~des.core.graph.EventGraph` (or (graph, what built it)); it reads the scenario's
  ``workload:`` mapping key by key with :class:`~des.app.sections.Section`, so a typo or a bad
  unit is a :class:`~des.app.sections.ConfigError` naming the key path;
* ``report`` (with ``report_key``): the JSON section a finished run gets; ``render`` shows it;
* ``metrics``: the flat figures a sweep records, and ``rank_key``/``higher_is_better``/
  ``columns``: how a sweep ranks and tabulates points.

Once registered, the kind works from scenario files (``workload: {kind: parameter_server,
...}``), ``des simulate`` and ``des sweep``, exactly as the built-in kinds do.

This example registers a parameter-server step: every worker computes its gradients and pushes
them to the server rank; once all have arrived the server updates the parameters and sends them
back. Nodes carry categories (``compute``, ``push``, ``update``, ``pull``) that the report
groups time by. On a fully connected fabric nothing contends, so the step takes exactly
compute + 2 x (latency + gradient / bandwidth) + update, which the test checks.

Run: ``python examples/custom_workload.py``
"""

from __future__ import annotations

from typing import Any

from rich.console import Console

from des.app.config import Scenario, scenario_from_dict
from des.app.sections import ConfigError, Section
from des.app.workload_kinds import Column, WorkloadKind, evaluate, register_workload
from des.core import schema, units
from des.core.graph import EventGraph
from des.core.results import Result
from des.sim.backends import get_backend


def parameter_server_step(num_ranks: int, *, gradient_bytes: float, compute_ns: float,
                          update_ns: float, server: int = 0, name: str = "ps") -> EventGraph:
    """One step: workers compute and push ``gradient_bytes`` to ``server``, which updates and
    sends the parameters back to each."""
    graph = EventGraph(num_ranks, name)
    workers = [r for r in range(num_ranks) if r != server]
    pushed = []
    for w in workers:
        grads = graph.compute(w, duration_ns=compute_ns, name="backward", category="compute")
        push = graph.send(w, server, gradient_bytes, tag=w, deps=[grads], name="push",
                          category="push")
        graph.recv(w, server, gradient_bytes, tag=w, deps=[push], name="pull", category="pull")
        pushed.append(graph.recv(server, w, gradient_bytes, tag=w, name=f"push from {w}",
                                 category="push"))
    update = graph.compute(server, duration_ns=update_ns, deps=pushed, name="update",
                           category="update")
    for w in workers:
        graph.send(server, w, gradient_bytes, tag=w, deps=[update], name=f"pull to {w}",
                   category="pull")
    return graph


def parse_parameter_server(sec: Section, num_ranks: int, name: str) -> EventGraph:
    """``workload: {kind: parameter_server, gradient_size, compute, update, server}``."""
    server = sec.get("server", schema.nonneg_int, default=0)
    if server >= num_ranks or num_ranks < 2:
        raise ConfigError(f"{sec.where('server')}: rank {server} needs a topology with it and "
                          f"at least one worker; the topology has {num_ranks} NPUs")
    graph = parameter_server_step(
        num_ranks, gradient_bytes=sec.get("gradient_size", units.parse_size),
        compute_ns=sec.get("compute", units.parse_time),
        update_ns=sec.get("update", units.parse_time), server=server, name=name)
    sec.finish()
    return graph


def _report(result: Result, scenario: Scenario) -> dict[str, Any]:
    """Per category, the time from its first op's start to its last op's end."""
    spans: dict[str, list[float]] = {}
    for op in result.ops:
        span = spans.setdefault(op.category, [op.start_ns, op.end_ns])
        span[0], span[1] = min(span[0], op.start_ns), max(span[1], op.end_ns)
    return {"step_s": result.makespan_ns * 1e-9,
            **{f"{cat}_s": (end - start) * 1e-9 for cat, (start, end) in sorted(spans.items())
               if cat}}


def _metrics(report: dict[str, Any] | None, result: Result) -> dict[str, Any]:
    assert report is not None
    return {"iteration_s": report["step_s"], "push_s": report.get("push_s"),
            "pull_s": report.get("pull_s")}


def _render(report: dict[str, Any], console: Console) -> None:
    console.print("parameter server: " + ", ".join(f"{k[:-2]} {v * 1e6:.1f} us"
                                                    for k, v in report.items()))


PARAMETER_SERVER = register_workload(WorkloadKind(
    "parameter_server", "one parameter-server training step", parse_parameter_server,
    _metrics, columns=(Column("iteration_s", "step", "time"), Column("push_s", "push", "time")),
    report=_report, report_key="parameter_server", render=_render))

SCENARIO: dict[str, Any] = {
    "name": "parameter server",
    "topology": {"kind": "fully_connected", "npus": 5, "bandwidth": "100 GB/s",
                 "latency": "1 us"},
    "workload": {"kind": "parameter_server", "gradient_size": "64 MiB", "compute": "2 ms",
                 "update": "300 us"},
}


def main(backend: str = "simpy") -> dict[str, Any]:
    """Build the scenario as ``des simulate`` does, run it, evaluate it through its kind."""
    scenario = scenario_from_dict(SCENARIO, source="custom_workload")
    result = get_backend(backend).run(scenario.topology, scenario.graph,
                                      hardware=scenario.hardware, options=scenario.options)
    evaluation = evaluate(result, scenario)
    evaluation.attach(result)
    return {"kind": evaluation.kind.name, "report": evaluation.report,
            "metrics": evaluation.metrics, "makespan_ns": result.makespan_ns,
            "sort_key": evaluation.kind.sort_key(evaluation.metrics)}


if __name__ == "__main__":
    out = main()
    _render(out["report"], Console())
    size, bw, lat = 64 * 2**20, 100.0, 1000.0
    by_hand = 2e6 + 2 * (lat + size / bw) + 300e3
    print(f"step {out['makespan_ns'] / 1e3:.1f} us; by hand: compute + 2 x transfer + update "
          f"= {by_hand / 1e3:.1f} us")
