"""Lockstep batching: advance a symmetric collective for one representative rank, exactly.

When a collective's step program is invariant under translations of its group
(:meth:`collectives.base.CollectivePlan.translation_dims`), every member joins at the same
instant, and the topology maps the representative's routes onto every other member's routes
link for link (same bandwidth, derate, latency, switch latency; each member's links its own, used
by no other member and idle at the start), then every member's timeline is the representative's:
its messages leave and land at the same times on its own links. The run then simulates only the
representative (``group[0]``): a message it sends to the peer at offset o stands, by the
symmetry, for the message it receives from the peer at offset -o, so its arrival completes one of
the representative's own receives. The other members finish when it does, and their links get
its links' figures, marked as mirrored.

The symmetry holds only while nothing else touches those links. The transport calls
:meth:`LockstepBatch.materialize` the moment another message enters one of them, and the
contended model calls it before any timed fault fires: every member then gets a copy of the
representative's state (its progress, its in-flight messages on the mapped routes, its pending
timers, its links' queues), and the run continues message by message from that instant. Nothing
is approximated, so the result equals the message-by-message run's.

Equal also means the same order of the events that fall in one instant: two messages entering a
link at the same time queue in the order their events run. The decision to batch waits for the
end of the first member's instant (every member must have joined by then), so a collective whose
plan could batch starts its members there whether batching is on or off
(:class:`~des.sim.collective_run.CollectiveRun`); starting them as they join when it is off put
their first messages ahead of other traffic that the batched run let go first. Likewise, members
that finish in one instant are released at its end in the order they joined, batched or not: a
batch finishes every member at once, with nothing to tell the order their own last events would
have had. On falling back, each member's copy of a pending event takes the place right after the
representative's among events due at the same time, where the member's own event was.
"""

from __future__ import annotations

import copy
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from collectives.base import CollectivePlan
from collectives.translation import GroupTranslation
from topologies.base import Topology
from topologies.symmetry import route_signature

__all__ = ["LockstepBatch", "Symmetry", "find_symmetry"]

if TYPE_CHECKING:
    from des.sim.transport import Link, Transport


class Symmetry:
    """A proven translation symmetry of one collective on a topology: for every member
    position, the link that stands in for each of the representative's links, and the peer of
    each offset. Built by :func:`find_symmetry`; reusable while the topology is unchanged."""

    __slots__ = ("group", "link_map", "offsets", "translation")

    def __init__(self, group: tuple[int, ...], translation: GroupTranslation,
                 offsets: list[tuple[int, ...]], link_map: dict[int, list[int]]) -> None:
        self.group = group
        self.translation = translation
        self.offsets = offsets
        self.link_map = link_map  # representative link -> image link per member position

    def image_rank(self, position: int, rank: int) -> int:
        """The rank that ``rank`` (a member) stands for at member ``position``."""
        where = self.group.index(rank)
        coords = self.translation.coords(where)
        return self.group[self.translation.add(position, coords)]


def find_symmetry(plan: CollectivePlan, topology: Topology,
                  limit_members: int = 1 << 20) -> Symmetry | None:
    """The symmetry of ``plan`` on ``topology`` (see the module doc), or None when the plan
    declares none or the topology breaks it (routes that differ, or that share links between
    members)."""
    dims = plan.translation_dims()
    group = plan.group
    if dims is None or len(group) < 2 or len(group) > limit_members:
        return None
    tr = GroupTranslation(dims)
    rep = group[0]
    offsets: dict[tuple[int, ...], None] = {}
    for k in range(plan.num_steps(rep)):
        for peer, _ in plan.step(rep, k).sends:
            offsets[tr.coords(plan.position[peer])] = None
    rep_routes = {off: topology.route(rep, group[tr.position(off)]) for off in offsets}
    signatures = {off: route_signature(topology, route) for off, route in rep_routes.items()}
    link_map: dict[int, list[int]] = {}
    for route in rep_routes.values():
        for link in route:
            link_map.setdefault(link, [link] + [-1] * (len(group) - 1))
    owner: dict[int, int] = {link: 0 for link in link_map}
    for position in range(1, len(group)):
        src = group[position]
        for off, rep_route in rep_routes.items():
            route = topology.route(src, group[tr.add(position, off)])
            if route_signature(topology, route) != signatures[off]:  # one entry per hop
                return None
            for rep_link, link in zip(rep_route, route, strict=True):
                images = link_map[rep_link]
                if images[position] == -1:
                    if owner.setdefault(link, position) != position:
                        return None  # two members would share a link
                    images[position] = link
                elif images[position] != link:
                    return None  # one representative link would stand for two
    return Symmetry(group, tr, list(offsets), link_map)


class LockstepBatch:
    """The representative's run of one batched collective and everything needed to mirror it
    or to fall back from it (see the module doc). Owned by a
    :class:`~des.sim.collective_run.CollectiveRun` while it is batched."""

    def __init__(self, run: Any, symmetry: Symmetry, transport: Transport) -> None:
        self.run = run
        self.symmetry = symmetry
        self.transport = transport
        self.inflight: dict[int, Any] = {}  # id -> representative message not yet delivered
        # key -> (when, action, args, sequence number of its event)
        self.timers: dict[int, tuple[float, Callable[..., None], tuple, int]] = {}
        self._next_timer = 0
        links = transport.links
        self.base = {}
        for link_id in symmetry.link_map:
            link = links[link_id]
            self.base[link_id] = (link.bytes, link.busy_ns, link.messages,
                                  len(link.activity or ()), link.peak_queue)
            # the representative link counts the batch's own peak queue from here (its earlier
            # peak, other traffic's, is kept in base): that is what every member's link sees
            link.peak_queue = 0
        self.sent_count = 0  # the representative's messages, sent and delivered bytes so far
        self.sent_bytes = 0.0
        self.delivered_bytes = 0.0
        for images in symmetry.link_map.values():
            for link in images:
                links[link].owner = self

    @staticmethod
    def links_idle(symmetry: Symmetry, transport: Transport, now: float) -> bool:
        """True when no member's link is busy or owned by another batch."""
        links = transport.links
        return all(links[link].free_at <= now and links[link].owner is None
                   for images in symmetry.link_map.values() for link in images)

    # ------------------------------------------------------------------ while batched
    def sent(self, msg: Any) -> None:
        """The representative sent ``msg``."""
        self.inflight[id(msg)] = msg
        self.sent_count += 1
        self.sent_bytes += msg.nbytes

    def delivered(self, msg: Any) -> None:
        """``msg`` (the representative's) has landed."""
        self.inflight.pop(id(msg), None)
        self.delivered_bytes += msg.nbytes

    def later(self, when: float, action: Callable[..., None], args: tuple) -> None:
        """Schedule a representative timer, remembered until it fires."""
        key = self._next_timer
        self._next_timer += 1
        clock = self.run.clock
        order = clock.next_order()
        self.timers[key] = (when, action, args, order)
        clock.call_in_order(when, order, self._fire, key)

    def _fire(self, key: int) -> None:
        entry = self.timers.pop(key, None)
        if entry is not None:
            entry[1](*entry[2])

    # ------------------------------------------------------------------ mirroring
    def _mirror_links(self) -> int:
        """Copy the representative links' queues and their traffic since the batch began onto
        every member's links; return how many members were mirrored."""
        links = self.transport.links
        members = len(self.symmetry.group)
        hops = 0
        for rep_link, images in self.symmetry.link_map.items():
            rep = links[rep_link]
            b0, busy0, m0, a0, peak0 = self.base[rep_link]
            dbytes, dbusy, dmsg = rep.bytes - b0, rep.busy_ns - busy0, rep.messages - m0
            peak = rep.peak_queue
            rep.peak_queue = max(peak0, peak)
            hops += dmsg
            new_activity = rep.activity[a0:] if rep.activity is not None else None
            for link_id in images[1:]:
                link: Link = links[link_id]
                link.free_at = rep.free_at
                link.bytes += dbytes
                link.busy_ns += dbusy
                link.messages += dmsg
                link.mirrored = True
                link._ends = deque(rep._ends)
                link.peak_queue = max(link.peak_queue, peak)
                if link.activity is not None and new_activity:
                    link.activity.extend(new_activity)
            for link_id in images:
                links[link_id].owner = None
        t = self.transport
        t.mirrored_messages += (members - 1) * self.sent_count
        t.messages += (members - 1) * self.sent_count
        t.hops += (members - 1) * hops
        # every member sent what the representative sent; what it has not delivered yet is
        # cloned per member on materializing and delivered (and counted) then
        t.bytes_injected += (members - 1) * self.sent_bytes
        t.bytes_delivered += (members - 1) * self.delivered_bytes
        self.run.bytes_injected += (members - 1) * self.sent_bytes
        self.run.bytes_delivered += (members - 1) * self.delivered_bytes
        return members - 1

    def finish(self) -> None:
        """The representative is done: mirror its links and counters onto every member."""
        self._mirror_links()

    def materialize(self) -> None:
        """Something breaks the symmetry now: give every member the representative's state
        and continue message by message (see the module doc)."""
        run, sym, transport = self.run, self.symmetry, self.transport
        rep = sym.group[0]
        rep_part = run.parts[rep]
        self._mirror_links()
        # Each member's copy of a pending event goes right after the representative's in the
        # order of events due at the same time: where the message-by-message run has the
        # members' own, which every member scheduled in the same instant as the representative.
        # Scheduled now (last among equals), a copy would come after events that run has after
        # it, and a tie on a link (a copy and other traffic entering it at once) would go the
        # other way.
        members = len(sym.group)
        order = transport.pending_order(self.inflight)
        # in-flight links of timed-fault tracking hold the representative's messages only
        clones: dict[int, list[Any]] = {}
        for key, msg in self.inflight.items():
            copies = clones[key] = []
            seq = order.get(key)
            for position in range(1, members):
                src = sym.group[position]
                dst = sym.image_rank(position, msg.dst)
                image = msg.clone()
                image.src, image.dst = src, dst
                image.route = transport.topology.route(src, dst)
                image.hop, image.tail_in = msg.hop, msg.tail_in
                transport.schedule_at(msg.due, image, msg.callbacks,
                                      None if seq is None else seq + position / members)
                copies.append(image)
        links = transport.links
        for rep_link, images in sym.link_map.items():
            inflight = links[rep_link].inflight
            if inflight is None:
                continue
            for entry in inflight:
                copies = clones.get(id(entry[0]))
                if copies is None:
                    continue
                for position, link_id in enumerate(images[1:], start=1):
                    links[link_id].inflight.append((copies[position - 1], *entry[1:]))
        for position in range(1, len(sym.group)):
            rank = sym.group[position]
            part = copy.deepcopy(rep_part, {id(rep_part.node): run.graph_node(rank),
                                            id(rep_part.done): run.joined_done[rank]})
            run.parts[rank] = part
            for when, action, args, seq in self.timers.values():
                if args and args[0] == rep:
                    run.clock.call_in_order(when, seq + position / members, action, rank,
                                            part, *args[2:])
        run.unbatch()
