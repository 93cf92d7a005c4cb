"""Moving messages over routes: FIFO links, switches, store-and-forward and cut-through.

Timing model (one message of B bytes entering hop i at time h, link bandwidth b after derate,
latency L, forwarding latency s at a switch it enters):

* the link serves messages first come, first served: ``start = max(h, free_at)``;
* ``store_and_forward``: the link is busy ``B/b``; the whole message reaches the next device at
  ``start + B/b + L (+ s)`` and only then enters the next link (AstraSim congestion-aware
  semantics);
* ``cut_through``: the head moves on after one packet: it reaches the next link at
  ``start + P/b + L (+ s)`` with ``P = min(packet, B)``; the link stays reserved for the whole
  message and cannot finish before the tail has come in from upstream:
  ``end = max(start + B/b, tail_in + P/b)`` (virtual cut-through, Kermani & Kleinrock 1979).

Store-and-forward is the special case P = B, so both modes share one code path. Because a
link's service is deterministic and FIFO, each message's departure is known when it arrives
(Lindley's recursion), so a hop costs exactly one SimPy event: the message's arrival at the next
link or at its destination. The message object is itself that event (SimPy needs only
``callbacks`` and ``_ok``), so a hop allocates nothing. Links and switches are therefore
event-driven servers on the SimPy environment rather than generator processes, which would cost
two or three events per hop.

``quantize`` reproduces AstraSim's integer nanoseconds: a hop keeps its link busy
``floor(B/b)`` and reaches the next device ``floor(L + B/b)`` after it started (store-and-forward
only). ``contention=False`` is AstraSim's congestion-unaware model: no queues; a message takes
``sum(L) + sum(s) + B / min(b)`` (serialization once), floored when quantized.

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
from enum import StrEnum
from heapq import heappush
from typing import Any

import simpy
from simpy.events import NORMAL

from topologies.base import LinkSpec, Topology

#: Bytes a cut-through head must receive before moving on (des's default packet size).
DEFAULT_PACKET_BYTES = 4096.0

class TransportMode(StrEnum):
    """How a message crosses a multi-hop route."""

    STORE_AND_FORWARD = "store_and_forward"
    CUT_THROUGH = "cut_through"


class Link:
    """A directed link as a FIFO server: a message occupies it for bytes / (bandwidth x derate)
    (longer in cut-through when its tail arrives late from upstream), then reaches the far end
    after the link latency. Keeps bytes carried, busy time and peak queue depth."""

    __slots__ = ("_ends", "activity", "busy_ns", "bytes", "free_at", "inflight", "messages",
                 "peak_queue", "spec")

    def __init__(self, spec: LinkSpec, record_activity: bool = False,
                 track_inflight: bool = False) -> None:
        self.spec = spec
        self.free_at = 0.0
        self.bytes = 0.0
        self.busy_ns = 0.0
        self.messages = 0
        self.peak_queue = 0
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

    __slots__ = ("callbacks", "context", "dead", "dst", "handler", "hop", "nbytes",
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

    def __init__(self, env: simpy.Environment, topology: Topology,
                 mode: TransportMode = TransportMode.CUT_THROUGH,
                 packet_bytes: float = DEFAULT_PACKET_BYTES, record_activity: bool = False,
                 track_inflight: bool = False, contention: bool = True,
                 quantize: bool = False) -> None:
        if packet_bytes <= 0:
            raise ValueError(f"packet size must be > 0 bytes, got {packet_bytes!r}")
        self.env = env
        self.topology = topology
        self.mode = TransportMode(mode)
        if quantize and contention and self.mode is not TransportMode.STORE_AND_FORWARD:
            raise ValueError("quantized (AstraSim) hops are defined for store_and_forward only")
        self.packet_bytes = float(packet_bytes)
        self.contention = contention
        self.quantize = quantize
        self.links = [Link(spec, record_activity, track_inflight) for spec in topology.links]
        self.switches = {sid: Switch(sid, lat) for sid, lat in topology.switch_latency.items()}
        self.hops = 0
        self.messages = 0
        self.reroutes = 0
        self.bytes_delivered = 0.0
        # one event per hop is the hot path: schedule straight onto SimPy's heap (what
        # Environment.schedule does, minus two calls) with a callback tuple made once
        self._queue = env._queue
        self._eid = env._eid
        self._to_link = (self._enter_link,)
        self._to_dst = (self._deliver,)
        self._summaries: dict[tuple[int, ...], tuple[float, float]] = {}

    def send(self, src: int, dst: int, nbytes: float, handler: Callable[[Message], None],
             tag: Any = None, context: Any = None, flow: int = 0,
             post_delay: float = 0.0) -> Message:
        """Inject a message now; ``handler`` is called on delivery (+ ``post_delay``)."""
        route = self.topology.route(src, dst, flow)
        msg = Message(src, dst, nbytes, route, handler, tag, context, post_delay)
        msg.sent_at = self.env._now
        self.messages += 1
        if not route:
            self._schedule(post_delay, msg, self._to_dst)
        elif self.contention:
            self._enter_link(msg)
        else:
            self._send_uncontended(msg)
        return msg

    def _schedule(self, delay: float, msg: Message, callbacks: tuple) -> None:
        msg.callbacks = callbacks
        heappush(self._queue, (self.env._now + (delay if delay > 0.0 else 0.0), NORMAL,
                               next(self._eid), msg))

    def _send_uncontended(self, msg: Message) -> None:
        route = msg.route
        summary = self._summaries.get(route)
        if summary is None:  # latency (links and switches passed through), bottleneck
            specs = [self.links[i].spec for i in route]
            latency = sum(sp.latency for sp in specs) + sum(
                self.switches[sp.dst].latency for sp in specs[:-1] if sp.dst in self.switches)
            summary = self._summaries[route] = (
                latency, min(sp.bandwidth * sp.derate for sp in specs))
        latency, bottleneck = summary
        nbytes = msg.nbytes
        for i in route:
            link = self.links[i]
            link.bytes += nbytes
            link.busy_ns += nbytes / (link.spec.bandwidth * link.spec.derate)
            link.messages += 1
        self.hops += len(route)
        delay = latency + nbytes / bottleneck
        if self.quantize:
            delay = math.floor(delay)
        self._schedule(delay + msg.post_delay, msg, self._to_dst)

    def _enter_link(self, msg: Message) -> None:
        if msg.dead:
            return
        link = self.links[msg.route[msg.hop]]
        spec = link.spec
        if not spec.up:
            self._reroute(msg, spec.src)
            return
        bandwidth = spec.bandwidth * spec.derate
        nbytes = msg.nbytes
        serialization = nbytes / bandwidth
        now = self.env._now  # the property costs a call per hop
        start = now if now > link.free_at else link.free_at
        if self.quantize:  # AstraSim: busy floor(S), next device floor(L + S) after the start
            end = start + math.floor(serialization)
            arrive = start + math.floor(spec.latency + serialization)
            head_arrive = arrive
        else:
            end = start + serialization
            if self.mode is TransportMode.STORE_AND_FORWARD:
                head = end
            else:
                packet = (self.packet_bytes if self.packet_bytes < nbytes else nbytes) / bandwidth
                head = start + packet
                if msg.tail_in + packet > end:  # the tail comes in late from upstream
                    end = msg.tail_in + packet
            arrive = end + spec.latency
            head_arrive = head + spec.latency
        # link accounting (Link.record, inlined: this runs once per hop)
        link.free_at = end
        link.bytes += nbytes
        link.busy_ns += end - start
        link.messages += 1
        ends = link._ends
        while ends and ends[0] <= now:
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
        link.inflight.clear()
        link._ends.clear()
        link.free_at = now
        for msg in stranded:
            msg.dead = True
            self._reroute(msg.clone(), link.spec.src)
        return len(stranded)
