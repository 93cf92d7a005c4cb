"""The closed-form backend: communication at its uncontended time, on a plain heap, no SimPy.

:class:`ClosedFormModel` is the communication model the runtime (:mod:`des.sim.runtime`) runs on
for fast first passes: a collective's members start together when the last one joins and end
together after its closed-form time (:mod:`des.sim.costs`); a send lands after its windowed,
chunked closed-form time. Everything else (streams, issue order, hardware model, send/recv
pairing) is the runtime's, shared with the contended backend, so where nothing contends both
backends agree; with contention this answer is a lower bound.

:func:`analyze` (and :class:`AnalyticalBackend`) is the front door: a runtime with this model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

from des.core import hardware as hw
from des.core.graph import EventGraph, Node, P2PPair
from des.core.results import LinkStats, Result
from des.sim.choices import logical_dims
from des.sim.clock import HeapClock
from des.sim.collective_run import ClosedFormCollective
from des.sim.costs import MessageCost, p2p_time
from des.sim.options import EngineOptions
from des.sim.runtime import Runtime, SimulationError
from topologies.base import Topology


class AnalyticalError(SimulationError):
    """The graph cannot be scheduled (it would deadlock), or asks for what the closed-form
    model cannot time (timed faults); names ranks and nodes."""


class ClosedFormModel:
    """Uncontended communication in closed form (see the module doc)."""

    backend = "analytical"

    def __init__(self, topology: Topology, options: EngineOptions) -> None:
        if options.timed_faults:
            raise AnalyticalError("timed faults change the network during the run; the "
                                  "analytical backend cannot model them: use the simpy backend")
        self.topology = topology
        self.options = options
        self.clock = HeapClock()
        self.cost = MessageCost(topology, options)
        self.runs: dict[int, ClosedFormCollective] = {}
        self._durations: dict[tuple, tuple[int, float, float]] = {}

    def attach(self, runtime: Runtime) -> None:
        """Keep the runtime's collective instances and algorithms."""
        self.runtime = runtime
        self._by_node = {(rank, nid): inst for inst in runtime.instances
                         for rank, nid in inst.members.items()}

    def run(self) -> None:
        """Run the heap to the end."""
        self.clock.run()

    def join(self, node: Node, done: Callable[[], None]) -> None:
        """Rank ``node.rank`` joins its collective; all finish together after the last joins."""
        inst = self._by_node[(node.rank, node.id)]
        run = self.runs.get(inst.index)
        if run is None:
            run = self.runs[inst.index] = ClosedFormCollective(
                self.options, self.topology.num_npus, self.clock, inst,
                self.runtime.algorithms[inst.index],
                partial(logical_dims, self.topology, inst.span or inst.group,
                        not self.options.astra),
                self.cost, self._durations)
        run.join(node.rank, done)

    def send(self, node: Node, pair: P2PPair, landed: Callable[[], None]) -> None:
        """The send lands after its closed-form time."""
        duration = p2p_time(node.nbytes, node.rank, node.peer, self.cost, self.options)
        self.clock.call_at(self.clock.now + duration, landed)

    def collectives(self) -> Iterable[tuple[Any, str, int]]:
        """Each collective started, with its algorithm and chunk count."""
        for index, run in self.runs.items():
            yield run, self.runtime.algorithms[index], run.chunks

    def links(self, makespan_ns: float) -> list[LinkStats]:
        """Every link, with no traffic recorded (the closed form does not route messages)."""
        return [LinkStats(lk.id, lk.src, lk.dst, lk.kind, lk.bandwidth, lk.derate, 0.0, 0,
                          0.0, 0.0, 0) for lk in self.topology.links]

    def traffic(self, run: Any) -> None:
        """No collective is moved as messages."""
        return None

    def verify(self) -> None:
        """Nothing to conserve: no messages are moved."""

    def detach(self) -> None:
        """Drop the collectives (their callbacks refer to the runtime), the node index and the
        back reference to the runtime: no reference cycle is left through the graph."""
        self.runs = {}
        self._by_node = {}
        self.runtime = None

    def meta(self) -> dict[str, Any]:
        """No messages are moved; a folded graph says what was folded (closed-form times are
        exact for every image of a representative whose routes have the same parameters,
        which the builder checked)."""
        out: dict[str, Any] = {"messages": 0, "hops": 0, "reroutes": 0}
        fold = self.runtime.graph.fold
        if fold is not None and fold.count > 1:
            out["folded"] = {**fold.summary(fold.count), "exact": True, "closed_form": True}
        return out

    def link_activity(self) -> dict[int, list[tuple[float, float]]]:
        """None is recorded."""
        return {}


class AnalyticalBackend(Runtime):
    """The runtime with the closed-form model; :meth:`run` gives a Result."""

    def __init__(self, topology: Topology, graph: EventGraph, *,
                 hardware: hw.GpuSpec | None = None,
                 options: EngineOptions | None = None) -> None:
        options = options or EngineOptions()
        super().__init__(topology, graph, ClosedFormModel(topology, options),
                         hardware=hardware, options=options)

    def run(self, progress: Callable[[int, int], None] | None = None) -> Result:
        """Schedule every node; raise :class:`AnalyticalError` if some never become ready."""
        try:
            return super().run(progress)
        except AnalyticalError:
            raise
        except SimulationError as err:
            raise AnalyticalError(str(err)) from None


def analyze(topology: Topology, graph: EventGraph, *, hardware: hw.GpuSpec | None = None,
            options: EngineOptions | None = None,
            progress: Callable[[int, int], None] | None = None) -> Result:
    """Run ``graph`` on ``topology`` in closed form; see :class:`AnalyticalBackend`."""
    return AnalyticalBackend(topology, graph, hardware=hardware, options=options).run(progress)
