"""Moving messages over routes: FIFO links, switches, and the hop model's timing.

Links serve messages first come, first served: a message reaching a link at ``h`` starts at
``max(h, free_at)``; when it ends, when its head reaches the far end and when its tail does come
from the hop model (:mod:`des.sim.hops`: store-and-forward, cut-through, AstraSim's quantized
hops, or a user's own). A switch the message passes through adds its forwarding latency.

Because a link's service is deterministic and FIFO, each message's departure is known when it
arrives (Lindley's recursion), so a hop costs exactly one SimPy event: the message's arrival at the
next link or at its destination. The message object is itself that event (SimPy needs only
``callbacks`` and ``_ok``), so a hop allocates nothing. Links and switches are therefore
event-driven servers on the SimPy environment rather than generator processes, which would cost
two or three events per hop. ``contention=False`` is AstraSim's congestion-unaware model: no
queues; a message takes the hop model's uncontended route time.

Failures: a message that reaches a link that is down is rerouted from that link's upstream
device. When a link goes down during the run (:meth:`Transport.link_down`), every message whose
head has not yet left it (queued, or in service) is pulled back and rerouted the same way,
whole: the partial transmission is lost and resent. A derate applies to messages that enter the
link after the change; ones already queued keep the rate they were admitted at.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from heapq import heappush
from typing import Any

import simpy
from simpy.events import NORMAL

from des.sim.hops import HopModel, route_summary
from topologies.base import LinkSpec, Topology

SAME_INSTANT_NS = 1e-6
"""Times closer than this (ns) are one instant when counting a link's queue."""


class Link:
    """A directed link as a FIFO server: a message occupies it for bytes / (bandwidth x derate)
    (longer in cut-through when its tail arrives late from upstream), then reaches the far end
    after the link latency. Keeps bytes carried, busy time and peak queue depth."""

    __slots__ = ("_ends", "activity", "busy_ns", "bytes", "free_at", "inflight", "messages",
                 "mirrored", "owner", "peak_queue", "spec")

    def __init__(self, spec: LinkSpec, record_activity: bool = False,
                 track_inflight: bool = False) -> None:
        self.spec = spec
        self.free_at = 0.0
        self.bytes = 0.0
        self.busy_ns = 0.0
        self.messages = 0
        self.peak_queue = 0
        self.owner: Any = None  # the lockstep batch whose symmetry needs this link to itself
        self.mirrored = False  # some figures were copied from a lockstep representative
        self._ends: deque[float] = deque()
        self.activity: list[tuple[float, float]] | None = [] if record_activity else None
        # (message, start, end, time its head leaves): only kept when links can fail mid-run
        self.inflight: deque[tuple[Message, float, float, float]] | None = (
            deque() if track_inflight else None)

    def track(self, msg: Message, start: float, end: float, leaves: float, now: float) -> None:
        """Remember a message until its head leaves (only when links can fail mid-run)."""
        inflight = self.inflight
        while inflight and inflight[0][3] <= now:
            inflight.popleft()
        inflight.append((msg, start, end, leaves))


class Switch:
    """A switch forwards between its ports (its links) after a fixed forwarding latency; port
    contention is the links' FIFO queues. Counts the bytes it forwards."""

    __slots__ = ("bytes", "id", "latency", "messages")

    def __init__(self, device: int, latency: float) -> None:
        self.id = device
        self.latency = latency
        self.bytes = 0.0
        self.messages = 0


class Message:
    """A message in flight, and the SimPy event of its next hop. ``handler(message)`` runs when
    its last byte reaches ``dst`` plus ``post_delay`` (receiver-side processing the sender
    already knows, e.g. an endpoint delay). ``tag`` and ``context`` are the sender's to use."""

    __slots__ = ("callbacks", "context", "dead", "dst", "due", "handler", "hop", "nbytes",
                 "post_delay", "route", "sent_at", "src", "tag", "tail_in")
    _ok = True  # read by SimPy when the message is processed as an event

    def __init__(self, src: int, dst: int, nbytes: float, route: tuple[int, ...],
                 handler: Callable[[Message], None], tag: Any = None, context: Any = None,
                 post_delay: float = 0.0) -> None:
        self.src = src
        self.dst = dst
        self.nbytes = nbytes
        self.route = route
        self.handler = handler
        self.tag = tag
        self.context = context
        self.post_delay = post_delay
        self.hop = 0
        self.tail_in = -math.inf
        self.sent_at = 0.0
        self.due = 0.0  # when its pending event fires
        self.dead = False  # set when pulled back from a failed link: its pending event is void
        self.callbacks: tuple | None = None

    def clone(self) -> Message:
        """A fresh copy to reroute (the original's scheduled event must stay void)."""
        copy = Message(self.src, self.dst, self.nbytes, self.route, self.handler, self.tag,
                       self.context, self.post_delay)
        copy.sent_at = self.sent_at
        return copy


class Transport:
    """Sends messages between NPUs over the topology's routes; one SimPy event per hop."""

    def __init__(self, env: simpy.Environment, topology: Topology, hop_model: HopModel,
                 record_activity: bool = False, track_inflight: bool = False,
                 contention: bool = True, only: set[int] | None = None) -> None:
        self.env = env
        self.topology = topology
        self.hop_model = hop_model
        self.contention = contention
        self.record_activity = record_activity
        self.track_inflight = track_inflight
        self._hop = hop_model.hop
        # where messages go: the topology's routes, or a folded graph's canonical routes
        self.route: Callable[[int, int, int], tuple[int, ...]] = topology.route
        # ``only``: a private transport for a few links (a train's lone run) builds just those
        self.links = [Link(spec, record_activity, track_inflight)
                      if only is None or spec.id in only else None for spec in topology.links]
        self.switches = {sid: Switch(sid, lat) for sid, lat in topology.switch_latency.items()}
        self.hops = 0
        self.messages = 0
        self.reroutes = 0
        self.bytes_injected = 0.0  # what senders handed over; the engine checks it all lands
        self.bytes_delivered = 0.0
        self.mirrored_messages = 0  # messages of lockstep members that were not simulated
        # one event per hop is the hot path: schedule straight onto SimPy's heap (what
        # Environment.schedule does, minus two calls) with a callback tuple made once
        self._queue = env._queue
        self._eid = env._eid
        self._to_link = (self._enter_link,)
        self._to_dst = (self._deliver,)
        self._summaries: dict[tuple[int, ...], tuple[float, float]] = {}

    def close(self) -> None:
        """After the run: drop the callbacks that refer back to this transport or to its owner
        (its own bound methods, a folded graph's router), so no reference cycle keeps the links
        and the topology alive once the run's objects are released. Sending again raises."""
        self._to_link = self._to_dst = ()
        self.route = _closed

    def send(self, src: int, dst: int, nbytes: float, handler: Callable[[Message], None],
             tag: Any = None, context: Any = None, flow: int = 0,
             post_delay: float = 0.0) -> Message:
        """Inject a message now; ``handler`` is called on delivery (+ ``post_delay``)."""
        route = self.route(src, dst, flow)
        msg = Message(src, dst, nbytes, route, handler, tag, context, post_delay)
        msg.sent_at = self.env._now
        self.messages += 1
        self.bytes_injected += nbytes
        if not route:
            self._schedule(post_delay, msg, self._to_dst)
        elif self.contention:
            self._enter_link(msg)
        else:
            self._send_uncontended(msg)
        return msg

    def _schedule(self, delay: float, msg: Message, callbacks: tuple) -> None:
        msg.callbacks = callbacks
        msg.due = due = self.env._now + (delay if delay > 0.0 else 0.0)
        heappush(self._queue, (due, NORMAL, next(self._eid), msg))

    def schedule_at(self, when: float, msg: Message, callbacks: tuple,
                    order: float | None = None) -> None:
        """Schedule ``msg``'s next event at ``when`` (a lockstep member's copy of a message),
        exactly (``now + (when - now)`` can be an ulp off the original's time), and among the
        events due then as if scheduled with sequence number ``order`` (default: now)."""
        msg.callbacks = callbacks
        msg.due = due = when if when > self.env._now else self.env._now
        heappush(self._queue, (due, NORMAL, next(self._eid) if order is None else order, msg))

    def pending_order(self, events: dict[int, Any]) -> dict[int, float]:
        """The sequence numbers of those of ``events`` (by id) that are scheduled."""
        return {id(entry[3]): entry[2] for entry in self._queue if id(entry[3]) in events}

    def _send_uncontended(self, msg: Message) -> None:
        route = msg.route
        summary = self._summaries.get(route)
        if summary is None:  # latency (links and switches passed through), bottleneck
            summary = self._summaries[route] = route_summary(
                [self.links[i].spec for i in route], self.topology.switch_latency)
        latency, bottleneck = summary
        nbytes = msg.nbytes
        for i in route:
            link = self.links[i]
            link.bytes += nbytes
            link.busy_ns += nbytes / (link.spec.bandwidth * link.spec.derate)
            link.messages += 1
        self.hops += len(route)
        delay = self.hop_model.uncontended(latency, bottleneck, nbytes)
        self._schedule(delay + msg.post_delay, msg, self._to_dst)

    def _enter_link(self, msg: Message) -> None:
        if msg.dead:
            return
        link = self.links[msg.route[msg.hop]]
        if link.owner is not None and msg.context is not link.owner.run:
            link.owner.materialize()  # other traffic breaks a lockstep symmetry: unfold first
        spec = link.spec
        if not spec.up:
            self._reroute(msg, spec.src)
            return
        nbytes = msg.nbytes
        now = self.env._now  # the property costs a call per hop
        start = now if now > link.free_at else link.free_at
        end, head_arrive, arrive = self._hop(spec, nbytes, start, msg.tail_in)
        # link accounting (Link.record, inlined: this runs once per hop)
        link.free_at = end
        link.bytes += nbytes
        link.busy_ns += end - start
        link.messages += 1
        ends = link._ends
        # a message that ends at the very instant another arrives has left: "the same instant"
        # allows for float rounding (times reached by different sums, as replays and trains do)
        while ends and ends[0] <= now + SAME_INSTANT_NS:
            ends.popleft()
        ends.append(end)
        if len(ends) > link.peak_queue:
            link.peak_queue = len(ends)
        if link.activity is not None:
            link.activity.append((start, end))
        self.hops += 1
        msg.hop += 1
        if msg.hop == len(msg.route):
            if link.inflight is not None:
                link.track(msg, start, end, arrive, now)
            self._schedule(arrive + msg.post_delay - now, msg, self._to_dst)
            return
        switch = self.switches.get(spec.dst)
        if switch is not None:
            arrive += switch.latency
            head_arrive += switch.latency
            switch.bytes += nbytes
            switch.messages += 1
        msg.tail_in = arrive
        if link.inflight is not None:
            link.track(msg, start, end, head_arrive, now)
        self._schedule(head_arrive - now, msg, self._to_link)

    def _deliver(self, msg: Message) -> None:
        if msg.dead:
            return
        self.bytes_delivered += msg.nbytes
        msg.handler(msg)

    def _reroute(self, msg: Message, device: int) -> None:
        """Send ``msg`` on from ``device`` over a fresh route (the old one hit a down link)."""
        msg.route = self.topology.route_from(device, msg.dst)
        msg.hop = 0
        msg.tail_in = -math.inf
        self.reroutes += 1
        if msg.route:
            self._enter_link(msg)
        else:
            self._schedule(msg.post_delay, msg, self._to_dst)

    def link_down(self, link_id: int) -> int:
        """Link ``link_id`` has just failed: pull back every message whose head has not left it
        and reroute it from the link's upstream device. Returns how many were rerouted."""
        link = self.links[link_id]
        if link.inflight is None:
            raise RuntimeError("link_down needs a transport built with track_inflight=True")
        now = self.env._now  # the property costs a call per hop
        stranded = []
        for msg, start, end, leaves in link.inflight:
            if leaves > now and not msg.dead:
                stranded.append(msg)
                sent = min(max(now - start, 0.0), end - start)  # what went out before the cut
                link.busy_ns -= (end - start) - sent
                link.bytes -= msg.nbytes * (1.0 - sent / (end - start) if end > start else 1.0)
                link.messages -= 1
                if link.activity is not None:  # keep only what went out before the cut
                    _truncate(link.activity, start, end, start + sent)
        link.inflight.clear()
        link._ends.clear()
        link.free_at = now
        for msg in stranded:
            msg.dead = True
            self._reroute(msg.clone(), link.spec.src)
        return len(stranded)


def _closed(src: int, dst: int, flow: int = 0) -> tuple[int, ...]:
    raise RuntimeError("this transport is closed: its run has ended")


def _truncate(activity: list[tuple[float, float]], start: float, end: float,
              cut: float) -> None:
    """Shorten the interval ``(start, end)`` (searched from the newest) to end at ``cut``, or
    drop it when nothing went out."""
    for i in range(len(activity) - 1, -1, -1):
        if activity[i] == (start, end):
            if cut > start:
                activity[i] = (start, cut)
            else:
                del activity[i]
            return
