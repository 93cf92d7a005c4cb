"""The contended engine's side of folding: canonical routes, and replays of recurring collectives.

A folded graph (:mod:`des.core.fold`) simulates one representative per orbit of ranks. When the
topology maps the representatives' routes onto identical, separate links
(:class:`topologies.symmetry.LinkOrbits`), every message is routed over the canonical link of each
orbit and a span collective runs for its representative only (:class:`FoldedRouting`).

Replays, an exact shortcut: a span collective whose canonical links no other traffic of the graph
ever touches (no send, no other group), and whose group's collectives on the representative are
ordered by dependencies (so two of them never overlap), always runs on idle links of its own.
The first one of each shape (type, size, span, algorithm, root) is simulated message by message
and its duration and per-link figures are recorded; later ones of that shape take exactly that
duration and add exactly those figures. Both conditions are checked from the graph before the
run, so nothing can break them halfway.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from des.core.fold import Fold
from des.core.graph import CollectiveInstance, EventGraph
from topologies.symmetry import LinkOrbits

if TYPE_CHECKING:
    from des.sim.transport import Transport


@dataclass
class Recording:
    """What one run of a recurring collective did: its duration, messages and hops, and per
    canonical link (id, bytes, busy ns, messages, peak queue, activity relative to the start)."""

    duration: float
    messages: int
    hops: int
    delivered: float
    links: list[tuple[int, float, float, int, int, list[tuple[float, float]]]] = field(
        default_factory=list)


class FoldedRouting:
    """Canonical routes of a folded graph, and the groups whose collectives replay."""

    def __init__(self, orbits: LinkOrbits, fold: Fold, graph: EventGraph,
                 instances: list[CollectiveInstance]) -> None:
        self.orbits = orbits
        self.fold = fold
        self.graph = graph
        self.instances = instances
        self.recordings: dict[tuple, Recording] = {}
        self.replays = 0
        self._replayable = self._find_replayable()

    # ------------------------------------------------------------------ the guard
    def _group_links(self, inst: CollectiveInstance) -> set[int]:
        if inst.span:
            pairs = [(inst.group[0], m) for m in inst.span if m != inst.group[0]]
        else:
            pairs = [(a, b) for a in inst.group for b in inst.group if a != b]
        out: set[int] = set()
        for a, b in pairs:
            out.update(self.orbits.route(a, b) or ())
        return out

    def _find_replayable(self) -> set[tuple[int, ...]]:
        """Spans whose canonical links only their own collectives use, and whose collectives
        on the representative follow one another through dependencies."""
        users: dict[int, set] = {}
        for pair in self.graph.p2p_pairs():
            for link in self.orbits.route(pair.src, pair.dst) or ():
                users.setdefault(link, set()).add("p2p")
        links_of: dict[tuple[int, ...], set[int]] = {}
        for inst in self.instances:
            key = inst.span or inst.group
            if key not in links_of:
                links_of[key] = self._group_links(inst)
                for link in links_of[key]:
                    users.setdefault(link, set()).add(key)
        out = set()
        for span, links in links_of.items():
            if not any(len(users[link]) > 1 for link in links) and self._ordered(span):
                out.add(span)
        return out

    def _ordered(self, span: tuple[int, ...]) -> bool:
        """True when the span's collectives on each simulated member form a dependency chain."""
        nodes: dict[int, list[int]] = {}
        for inst in self.instances:
            if (inst.span or inst.group) == span:
                for rank, nid in inst.members.items():
                    nodes.setdefault(rank, []).append(nid)
        graph = self.graph
        for rank, ids in nodes.items():
            ids.sort()
            for earlier, later in itertools.pairwise(ids):
                if not _depends_on(graph, rank, later, earlier):
                    return False
        return True

    def replayable(self, inst: CollectiveInstance) -> bool:
        """True when ``inst`` may replay a recording of its shape (see the module doc)."""
        return bool(inst.span) and inst.span in self._replayable

    # ------------------------------------------------------------------ record and replay
    @staticmethod
    def shape(inst: CollectiveInstance, algorithm: str) -> tuple:
        """What a recording is valid for."""
        return (inst.collective, inst.nbytes, inst.span, algorithm, inst.root)

    def record(self, transport: Transport, links: set[int], start: float, messages: int,
               delivered: float) -> Callable[[float], Recording]:
        """Snapshot ``links`` now; the returned function, called when the run ends at ``end``,
        gives the run's :class:`Recording` (``messages`` and ``delivered`` bytes are the run's
        own, from its plan: other traffic moves the transport's counters meanwhile)."""
        before = {i: (transport.links[i].bytes, transport.links[i].busy_ns,
                      transport.links[i].messages, len(transport.links[i].activity or ()))
                  for i in links}

        def finish(end: float) -> Recording:
            rec = Recording(end - start, messages, 0, delivered)
            for i, (b, busy, msgs, act) in before.items():
                lk = transport.links[i]
                activity = [(s - start, e - start) for s, e in (lk.activity or [])[act:]]
                rec.links.append((i, lk.bytes - b, lk.busy_ns - busy, lk.messages - msgs,
                                  lk.peak_queue, activity))
                rec.hops += lk.messages - msgs  # the links are the run's alone
            return rec

        return finish

    def replay(self, transport: Transport, rec: Recording, start: float) -> None:
        """Add a recorded run's figures, as if it ran again from ``start``."""
        self.replays += 1
        transport.messages += rec.messages
        transport.hops += rec.hops
        transport.bytes_injected += rec.delivered  # a recorded run delivered all it sent
        transport.bytes_delivered += rec.delivered
        for i, nbytes, busy, msgs, peak, activity in rec.links:
            lk = transport.links[i]
            lk.bytes += nbytes
            lk.busy_ns += busy
            lk.messages += msgs
            lk.peak_queue = max(lk.peak_queue, peak)
            if lk.activity is not None:
                lk.activity.extend((s + start, e + start) for s, e in activity)

    def links_for(self, inst: CollectiveInstance) -> set[int]:
        """The canonical links ``inst``'s messages can use."""
        return self._group_links(inst)


def _depends_on(graph: EventGraph, rank: int, later: int, earlier: int) -> bool:
    """True when node ``later`` of ``rank`` transitively depends on node ``earlier`` (a search
    through dependencies with ids above ``earlier``: builders add nodes after their deps)."""
    seen: set[int] = set()
    stack = [later]
    while stack:
        nid = stack.pop()
        for dep in graph.node(rank, nid).deps:
            if dep == earlier:
                return True
            if dep > earlier and dep not in seen:
                seen.add(dep)
                stack.append(dep)
    return False


class ReplayedCollective:
    """A recurring span collective that replays its shape's recording: its representative
    finishes the recorded duration after joining, and the recorded figures are added then."""

    # one per occurrence of a recurring collective (tens of thousands per LLM step)
    __slots__ = ("bytes_delivered", "bytes_injected", "chunks", "clock", "first_join", "inst",
                 "joined", "last_done", "recording", "routing", "transport")

    def __init__(self, routing: FoldedRouting, transport: Transport, clock,
                 inst: CollectiveInstance, recording: Recording, chunks: int) -> None:
        self.routing = routing
        self.transport = transport
        self.clock = clock
        self.inst = inst
        self.recording = recording
        self.chunks = chunks
        self.first_join = float("inf")
        self.last_done = 0.0
        self.joined: dict[int, Callable[[], None]] = {}
        self.bytes_injected = self.bytes_delivered = 0.0

    def join(self, rank: int, done: Callable[[], None]) -> None:
        """The representative joins; it is done after the recorded duration."""
        now = self.clock.now
        self.joined[rank] = done
        self.first_join = min(self.first_join, now)
        self.last_done = now + self.recording.duration
        self.clock.call_at(self.last_done, self._finish, now, done)

    def _finish(self, start: float, done: Callable[[], None]) -> None:
        self.routing.replay(self.transport, self.recording, start)
        self.bytes_injected = self.bytes_delivered = self.recording.delivered
        done()

    def waiting_for(self) -> list[int]:
        """Members that have not joined yet (for deadlock reports)."""
        return [r for r in self.inst.group if r not in self.joined]
