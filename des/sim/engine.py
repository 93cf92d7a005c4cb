"""The contended backend: communication timed by SimPy links and switches.

:class:`ContendedModel` is the communication model the runtime (:mod:`des.sim.runtime`) runs on
when contention matters: messages cross links through :mod:`des.sim.transport` (FIFO links,
switches, the hop model), collectives run as chunked step programs (:mod:`des.sim.collective_run`)
and contend with all other traffic, sends move in windowed chunks, and timed faults fail or derate
links mid-run. The only SimPy process is the one applying timed faults: links, switches,
collectives and the GPUs' streams are event-driven (callbacks on SimPy's heap), one event per
chunk-hop or per stream transition.

:func:`simulate` (and :class:`Simulator`) is the front door: a runtime with this model.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from typing import Any

import simpy

from collectives.base import CollectivePlan, make_plan, plan_class
from collectives.translation import fold_matches
from des.core import hardware as hw
from des.core.graph import CollectiveInstance, EventGraph, Node, P2PPair
from des.core.results import LinkStats, Result
from des.sim.choices import logical_dims, message_route
from des.sim.clock import SimPyClock
from des.sim.collective_run import ClosedFormCollective, CollectiveRun, chunk_layout
from des.sim.costs import MessageCost
from des.sim.flows import Flow, Train, TrainRecording
from des.sim.fold_check import fold_orbits
from des.sim.folded import FoldedRouting, ReplayedCollective
from des.sim.lockstep import Symmetry, find_symmetry
from des.sim.options import EngineOptions
from des.sim.program_run import ProgramRun
from des.sim.runtime import ConservationError, Runtime, SimulationError
from des.sim.transport import Transport
from topologies.base import Topology, TopologyError
from topologies.faults import LinkFault, fault_links, set_fault
from topologies.symmetry import LinkOrbits

log = logging.getLogger(__name__)

__all__ = ["ContendedModel", "EngineOptions", "SimulationError", "Simulator", "simulate"]


class ContendedModel:
    """Communication over SimPy links and switches with contention (see the module doc)."""

    backend = "simpy"

    def __init__(self, topology: Topology, options: EngineOptions) -> None:
        self.topology = topology
        self.options = options
        self.env = simpy.Environment()
        self.clock = SimPyClock(self.env)
        self.transport = Transport(self.env, topology, options.hop_model_instance(),
                                   record_activity=options.record_link_activity,
                                   track_inflight=bool(options.timed_faults),
                                   contention=options.contention)
        self.transport.route = message_route(topology, options)
        for fault in options.timed_faults:
            fault_links(topology, fault)  # names real links: fail now, not mid-run
        self.runs: dict[int, CollectiveRun | ClosedFormCollective | ProgramRun] = {}
        self._cost: MessageCost | None = None
        self._durations: dict[tuple, tuple[int, float, float]] = {}  # closed-form shapes
        self._chunk_counts: dict[tuple, int] = {}  # replayed shapes' chunk counts
        self._symmetries: dict[tuple, Symmetry | None] = {}
        self.closed_form_spans = 0  # folded collectives timed in closed form (no symmetry)
        self._recording: dict[int, tuple] = {}  # run id -> shape it is recording
        self.plans: dict[tuple, CollectivePlan] = {}  # step programs, built once per shape
        self.trains: set[Train] = set()  # lone flows moved as one event (des.sim.flows)
        self.train_count = 0
        self.train_recordings: dict[tuple, TrainRecording] = {}

    def attach(self, runtime: Runtime) -> None:
        """Keep the runtime's graph and algorithms; start the timed-fault processes."""
        self.runtime = runtime
        self.graph = runtime.graph
        self._instances = runtime.instances
        self._by_node = {(rank, nid): inst.index for inst in runtime.instances
                         for rank, nid in inst.members.items()}
        for fault in self.options.timed_faults:
            self.env.process(self._fault_process(fault))
        self.fold = runtime.graph.fold if runtime.graph.fold and runtime.graph.fold.count > 1 \
            else None
        self.orbits: LinkOrbits | None = None
        # how many ranks each simulated rank stands for in the figures: the fold's count when
        # the fold is exact, else 1 (an inexact fold reports its representatives' own)
        self.copies = 1
        self.folding: FoldedRouting | None = None
        if self.fold is not None:
            if self.options.timed_faults:  # (stragglers: refused by the runtime)
                raise SimulationError(
                    "a folded graph cannot take timed faults (the folded ranks are not "
                    "simulated to reroute); build it unfolded (fold: none)")
            orbits = fold_orbits(self.graph, self.topology, self.options,
                                 lambda inst: self.runtime.algorithms[inst.index])
            if orbits is not None:
                self.orbits = orbits
                self.copies = self.fold.count
                self.transport.route = self._folded_route
                # replaying a recording assumes a recurring collective always takes the same
                # time; with translations cut along the fabric's dimensions (an axis folded
                # as several factors) that does not hold (a torus case differs by 1.5%)
                aligned = len(self.fold.folded_axes) < len(self.fold.axes)
                if self.options.sends_complete_collective and self.options.replay \
                        and not aligned:
                    self.folding = FoldedRouting(orbits, self.fold, self.graph,
                                                 self._instances)

    def _folded_route(self, src: int, dst: int, flow: int = 0) -> tuple[int, ...]:
        route = self.orbits.route(src, dst)
        if route is None:
            raise SimulationError(
                f"the folded graph's translations do not map the route {src} -> {dst} onto "
                f"identical, separate links in {self.topology.name}: folding is not exact "
                "here; build the graph unfolded (fold: none)")
        return route

    def run(self) -> None:
        """Run SimPy to the end; timed faults never leak into the caller's topology."""
        saved = [(lk.up, lk.derate) for lk in self.topology.links]
        try:
            self.clock.run()
        except TopologyError as err:
            raise SimulationError(f"at t={self.env.now:.0f} ns: {err}") from None
        finally:
            for lk, (up, derate) in zip(self.topology.links, saved, strict=True):
                lk.up, lk.derate = up, derate
            self.topology.invalidate_routes()
        log.info("simulated %d messages, %d hops", self.transport.messages,
                 self.transport.hops)

    # ------------------------------------------------------------------ communication
    def join(self, node: Node, done: Callable[[], None]) -> None:
        """Rank ``node.rank`` joins its collective (created when its first member arrives)."""
        run = self._run_of(node)
        shape = self._recording.pop(id(run), None)
        if shape is not None:  # the first of a recurring shape: record what it does
            plan, rep = run.plan, node.rank
            sends = [b for k in range(plan.num_steps(rep)) for _, b in plan.step(rep, k).sends]
            finish = self.folding.record(self.transport, self.folding.links_for(run.inst),
                                         self.clock.now, len(sends) * run.chunks,
                                         sum(sends) * run.chunks)

            def recorded() -> None:
                self.folding.recordings.setdefault(shape, finish(self.clock.now))
                done()

            run.join(node.rank, recorded)
            return
        run.join(node.rank, done)

    def plan(self, inst: CollectiveInstance, members: tuple[int, ...], nbytes: float,
             algorithm: str, dims: tuple[int, ...] | None) -> CollectivePlan:
        """The step (or node) program of a collective shape, built once per model: the same
        collective recurs every layer, and plans are read-only once built."""
        options = self.options.plan_options
        key = (inst.collective, members, nbytes, algorithm,
               None if dims is None else tuple(dims), inst.root, options)
        plan = self.plans.get(key)
        if plan is None:
            plan = self.plans[key] = make_plan(inst.collective, members, nbytes, algorithm,
                                               dims=dims, root=inst.root, options=options)
        return plan

    def _run_of(self, node: Node) -> CollectiveRun | ClosedFormCollective | ProgramRun:
        index = self._by_node[(node.rank, node.id)]
        run = self.runs.get(index)
        if run is None:
            inst = self._instances[index]
            algorithm = self.runtime.algorithms[index]
            folded = bool(inst.span) and self.orbits is not None
            run = self._replayed_run(inst, algorithm) if folded else None
            if run is None:
                dims = logical_dims(self.topology, inst.span or inst.group,
                                    not self.options.astra)
                if folded:
                    run = self._folded_run(inst, algorithm, dims)
                if run is None and inst.span:
                    run = ClosedFormCollective(self.options, self.topology.num_npus, self.clock,
                                               inst, algorithm, lambda: dims, self.message_cost,
                                               self._durations)
                    self.closed_form_spans += 1
                elif run is None and plan_class(inst.collective, algorithm).node_program:
                    run = ProgramRun(self, inst, algorithm, dims)
                elif run is None:
                    run = CollectiveRun(self, inst, algorithm, dims)
            self.runs[index] = run
        return run

    def _replayed_run(self, inst: CollectiveInstance, algorithm: str
                      ) -> ReplayedCollective | None:
        """A span collective of an exactly folded graph whose shape has a recording it may
        replay exactly (des.sim.folded); None when it has none."""
        if self.folding is None:
            return None
        rec = self.folding.recordings.get(FoldedRouting.shape(inst, algorithm))
        if rec is None or not self.folding.replayable(inst):
            return None
        key = (inst.collective, inst.nbytes, len(inst.span))
        chunks = self._chunk_counts.get(key)
        if chunks is None:  # the same shape recurs every layer: lay its chunks out once
            chunks = self._chunk_counts[key] = chunk_layout(
                inst.collective, inst.nbytes, len(inst.span), self.topology.num_npus,
                self.options.chunks, self.options.chunking, self.options.chunk_bytes)[0]
        return ReplayedCollective(self.folding, self.transport, self.clock, inst, rec, chunks)

    def _folded_run(self, inst: CollectiveInstance, algorithm: str,
                    dims: tuple[int, ...] | None) -> CollectiveRun | None:
        """A span collective of an exactly folded graph that is not replayed: its
        representative's messages (recorded for later replays where that is exact)."""
        shape = FoldedRouting.shape(inst, algorithm)
        replayable = self.folding is not None and self.folding.replayable(inst)
        run = CollectiveRun(self, inst, algorithm, dims, folded=True)
        if not fold_matches(run.plan, self.fold):  # cached per group shape
            return None
        if replayable:
            self._recording[id(run)] = shape
        return run

    def symmetry(self, plan: CollectivePlan) -> Symmetry | None:
        """The plan's translation symmetry on this topology, if it has one (cached per group
        and algorithm until a timed fault changes the links)."""
        key = (plan.group, plan.collective, type(plan), plan.dims, plan.options)
        if key not in self._symmetries:
            self._symmetries[key] = find_symmetry(plan, self.topology)
        return self._symmetries[key]

    @property
    def message_cost(self) -> MessageCost:
        """Closed-form message costs on this topology (for folded collectives)."""
        if self._cost is None:
            self._cost = MessageCost(self.topology, self.options)
        return self._cost

    def send(self, node: Node, pair: P2PPair, landed: Callable[[], None]) -> None:
        """Start a windowed, chunked flow for send ``node`` (a train while its route is idle
        and it has more chunks than its window: des.sim.flows)."""
        opts = self.options
        if opts.trains and node.nbytes > opts.p2p_chunk_bytes * opts.p2p_window:
            route = self.transport.route(node.rank, node.peer, 0)
            if Train.possible(self.transport, route, self.clock.now):
                Train(self, route, node.rank, node.peer, node.nbytes, node.tag, landed)
                self.train_count += 1
                return
        Flow(self.transport, opts, node.rank, node.peer, node.nbytes, node.tag, landed).start()

    def _fault_process(self, fault: LinkFault):
        """SimPy process: apply a timed fault at ``at_ns`` and lift it at ``until_ns``. Going
        down reroutes what is queued on the links; a derate affects later messages only."""
        yield self.env.timeout(fault.at_ns)
        self._unbatch_all()
        ids = set_fault(self.topology, fault, active=True)
        log.info("t=%.0f ns: %s", self.env.now, fault.label())
        if fault.down:
            for link_id in ids:
                self.transport.link_down(link_id)
        if fault.until_ns is not None:
            yield self.env.timeout(fault.until_ns - fault.at_ns)
            self._unbatch_all()
            set_fault(self.topology, fault, active=False)
            log.info("t=%.0f ns: %s lifted", self.env.now, fault.label())

    def _unbatch_all(self) -> None:
        """A fault changes links: every lockstep run falls back, and no symmetry proven before
        holds any longer."""
        for run in self.runs.values():
            batch = getattr(run, "batch", None)
            if batch is not None:
                batch.materialize()
        for train in list(self.trains):
            train.materialize()
        self._symmetries.clear()

    # ------------------------------------------------------------------ results
    def collectives(self) -> Iterable[tuple[Any, str, int]]:
        """Each collective started, with its algorithm and chunk count."""
        for index, run in self.runs.items():
            yield run, self.runtime.algorithms[index], run.chunks

    def links(self, makespan_ns: float) -> list[LinkStats]:
        """Bytes, messages, busy time, utilization and peak queue of every link; in a folded
        run every link of an orbit shows its canonical link's figures, marked mirrored."""
        source = {lk.spec.id: lk for lk in self.transport.links}
        if self.orbits is not None:
            for canonical, orbit in self.orbits.members.items():
                for link in orbit:
                    if link != canonical:
                        source[link] = self.transport.links[canonical]
        out = []
        for lk in self.transport.links:
            src = source[lk.spec.id]
            out.append(LinkStats(
                lk.spec.id, lk.spec.src, lk.spec.dst, lk.spec.kind, lk.spec.bandwidth,
                lk.spec.derate, src.bytes, src.messages, src.busy_ns,
                src.busy_ns / makespan_ns if makespan_ns > 0 else 0.0, src.peak_queue,
                src.mirrored or src is not lk))
        return out

    def traffic(self, run: Any) -> tuple[float, float] | None:
        """A collective's injected and delivered bytes, for every rank it stands for; None
        for one timed in closed form."""
        injected = run.bytes_injected
        if injected is None:  # timed in closed form: no messages moved
            return None
        return injected * self.copies, run.bytes_delivered * self.copies

    def verify(self) -> None:
        """Every byte injected was delivered, in the run and per collective (lockstep members,
        trains, replays, reroutes around failed links included); else ConservationError."""
        t = self.transport
        problems = []
        if not _same(t.bytes_injected, t.bytes_delivered):
            problems.append(f"the run injected {t.bytes_injected:,.0f} B and delivered "
                            f"{t.bytes_delivered:,.0f} B (difference "
                            f"{t.bytes_injected - t.bytes_delivered:+,.0f} B)")
        for index, run in sorted(self.runs.items()):
            sent = run.bytes_injected
            if sent is not None and not _same(sent, run.bytes_delivered):
                problems.append(f"collective #{index} ({run.inst.collective.value} on "
                                f"{list(run.inst.group)[:8]}) injected {sent:,.0f} B and "
                                f"delivered {run.bytes_delivered:,.0f} B (difference "
                                f"{sent - run.bytes_delivered:+,.0f} B)")
        if problems:
            raise ConservationError("bytes not conserved (an engine bug): "
                                    + "; ".join(problems[:5]))

    def meta(self) -> dict[str, Any]:
        """Messages and hops of the run (with the folded ranks' and lockstep members' own,
        which were mirrored, not simulated), reroutes, bytes injected and delivered."""
        t = self.transport
        count = self.copies  # inexact: reps' own only
        simulated = t.messages - t.mirrored_messages
        out = {"messages": t.messages * count, "hops": t.hops * count,
               "reroutes": t.reroutes * count,
               "bytes_injected": t.bytes_injected * count,
               "bytes_delivered": t.bytes_delivered * count,
               "mirrored_messages": t.messages * count - simulated,
               "trains": self.train_count}
        if self.fold is not None:
            out["folded"] = {**self.fold.summary(count),
                             "exact": self.orbits is not None and not self.closed_form_spans,
                             "closed_form_collectives": self.closed_form_spans,
                             "replayed_collectives": self.folding.replays if self.folding
                             else 0}
        return out

    def detach(self) -> None:
        """Drop the collectives (they refer to the model, their callbacks to the runtime), the
        node index, the trains and the back reference to the runtime, and close the transport:
        what is left holds no reference cycle through the graph or the topology, so reference
        counting frees a run's objects (the cyclic collector may not run again for a long time,
        see :mod:`des.core.gc_pause`)."""
        self.runs = {}
        self._by_node = {}
        self.trains = set()
        self.runtime = None
        self.transport.close()

    def link_activity(self) -> dict[int, list[tuple[float, float]]]:
        """Transmission intervals per link (when ``record_link_activity``)."""
        return {lk.spec.id: lk.activity for lk in self.transport.links if lk.activity}


def _same(a: float, b: float) -> bool:
    """Equal byte counts, up to the rounding of summing them in different orders."""
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-6)


class Simulator(Runtime):
    """The runtime with the contended model: runs one event graph on one topology;
    :meth:`run` returns a :class:`~des.core.results.Result`."""

    def __init__(self, topology: Topology, graph: EventGraph, *,
                 hardware: hw.GpuSpec | None = None,
                 options: EngineOptions | None = None) -> None:
        options = options or EngineOptions()
        super().__init__(topology, graph, ContendedModel(topology, options),
                         hardware=hardware, options=options)


def simulate(topology: Topology, graph: EventGraph, *, hardware: hw.GpuSpec | None = None,
             options: EngineOptions | None = None,
             progress: Callable[[int, int], None] | None = None) -> Result:
    """Run ``graph`` on ``topology`` with contention; see :class:`Simulator`."""
    return Simulator(topology, graph, hardware=hardware, options=options).run(progress)
