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
link or at its destination. Links and switches are therefore event-driven servers on the SimPy
environment rather than generator processes, which would cost two or three events per hop.

Failures: a message that reaches a link that is down is rerouted from that link's upstream
device. When a link goes down during the run (:meth:`Transport.link_down`), every message whose
head has not yet left it (queued, or in service) is pulled back and rerouted the same way,
whole: the partial transmission is lost and resent. A derate applies to messages that enter the
link after the change; ones already queued keep the rate they were admitted at.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from enum import StrEnum
from typing import Any

import simpy

from topologies.base import LinkSpec, Topology


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
        # (message, epoch, start, end, time its head leaves): only kept when links can fail
        self.inflight: deque[tuple[Message, int, float, float, float]] | None = (
            deque() if track_inflight else None)

    def occupy(self, now: float, nbytes: float, tail_in: float, packet: float
               ) -> tuple[float, float]:
        """Admit a message whose head arrives now; return (start, end) of its transmission."""
        bandwidth = self.spec.bandwidth * self.spec.derate
        start = now if now > self.free_at else self.free_at
        end = start + nbytes / bandwidth
        tail_end = tail_in + min(packet, nbytes) / bandwidth
        if tail_end > end:
            end = tail_end
        self.free_at = end
        self.bytes += nbytes
        self.busy_ns += end - start
        self.messages += 1
        ends = self._ends
        while ends and ends[0] <= now:
            ends.popleft()
        ends.append(end)
        if len(ends) > self.peak_queue:
            self.peak_queue = len(ends)
        if self.activity is not None:
            self.activity.append((start, end))
        return start, end


    def track(self, msg: Message, start: float, end: float, leaves: float, now: float) -> None:
        """Remember a message until its head leaves (only when links can fail mid-run)."""
        inflight = self.inflight
        while inflight and inflight[0][4] <= now:
            inflight.popleft()
        inflight.append((msg, msg.epoch, start, end, leaves))


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
    """A message in flight; ``handler(message)`` runs when its last byte reaches ``dst``.
    ``tag`` and ``context`` are the sender's to use (collective runs put chunk and step there)."""

    __slots__ = ("context", "dst", "epoch", "handler", "hop", "nbytes", "route", "sent_at", "src",
                 "tag", "tail_in")

    def __init__(self, src: int, dst: int, nbytes: float, route: tuple[int, ...],
                 handler: Callable[[Message], None], tag: Any = None, context: Any = None) -> None:
        self.src = src
        self.dst = dst
        self.nbytes = nbytes
        self.route = route
        self.handler = handler
        self.tag = tag
        self.context = context
        self.hop = 0
        self.tail_in = float("-inf")
        self.sent_at = 0.0
        self.epoch = 0  # bumped when the message is pulled back; stale events then do nothing


class Transport:
    """Sends messages between NPUs over the topology's routes; one SimPy event per hop."""

    def __init__(self, env: simpy.Environment, topology: Topology,
                 mode: TransportMode = TransportMode.CUT_THROUGH,
                 packet_bytes: float = 4096.0, record_activity: bool = False,
                 track_inflight: bool = False) -> None:
        if packet_bytes <= 0:
            raise ValueError(f"packet size must be > 0 bytes, got {packet_bytes!r}")
        self.env = env
        self.topology = topology
        self.mode = TransportMode(mode)
        self.packet_bytes = float(packet_bytes)
        self.links = [Link(spec, record_activity, track_inflight) for spec in topology.links]
        self.switches = {sid: Switch(sid, lat) for sid, lat in topology.switch_latency.items()}
        self.hops = 0
        self.messages = 0
        self.reroutes = 0
        self.bytes_delivered = 0.0

    def send(self, src: int, dst: int, nbytes: float, handler: Callable[[Message], None],
             tag: Any = None, context: Any = None, flow: int = 0) -> Message:
        """Inject a message now; ``handler`` is called on delivery."""
        route = self.topology.route(src, dst, flow)
        msg = Message(src, dst, nbytes, route, handler, tag, context)
        msg.sent_at = self.env.now
        self.messages += 1
        if route:
            self._enter_link(msg)
        else:
            self._schedule(0.0, msg, self._deliver)
        return msg

    def _enter_link(self, msg: Message) -> None:
        link = self.links[msg.route[msg.hop]]
        if not link.spec.up:
            self._reroute(msg, link.spec.src)
            return
        nbytes = msg.nbytes
        packet = nbytes if self.mode is TransportMode.STORE_AND_FORWARD else self.packet_bytes
        now = self.env.now
        start, end = link.occupy(now, nbytes, msg.tail_in, packet)
        self.hops += 1
        latency = link.spec.latency
        msg.hop += 1
        if msg.hop == len(msg.route):
            if link.inflight is not None:
                link.track(msg, start, end, end + latency, now)
            self._schedule(end + latency - now, msg, self._deliver)
            return
        forward = latency
        switch = self.switches.get(link.spec.dst)
        if switch is not None:
            forward += switch.latency
            switch.bytes += nbytes
            switch.messages += 1
        msg.tail_in = end + forward
        head = start + min(packet, nbytes) / (link.spec.bandwidth * link.spec.derate)
        if link.inflight is not None:
            link.track(msg, start, end, head + forward, now)
        self._schedule(head + forward - now, msg, self._enter_link)

    def _deliver(self, msg: Message) -> None:
        self.bytes_delivered += msg.nbytes
        msg.handler(msg)

    def _schedule(self, delay: float, msg: Message, action: Callable[[Message], None]) -> None:
        event = self.env.timeout(delay if delay > 0.0 else 0.0)
        epoch = msg.epoch
        event.callbacks.append(lambda _event: action(msg) if msg.epoch == epoch else None)

    def _reroute(self, msg: Message, device: int) -> None:
        """Send ``msg`` on from ``device`` over a fresh route (the old one hit a down link)."""
        msg.route = self.topology.route_from(device, msg.dst)
        msg.hop = 0
        msg.tail_in = float("-inf")
        self.reroutes += 1
        if msg.route:
            self._enter_link(msg)
        else:
            self._schedule(0.0, msg, self._deliver)

    def link_down(self, link_id: int) -> int:
        """Link ``link_id`` has just failed: pull back every message whose head has not left it
        and reroute it from the link's upstream device. Returns how many were rerouted."""
        link = self.links[link_id]
        if link.inflight is None:
            raise RuntimeError("link_down needs a transport built with track_inflight=True")
        now = self.env.now
        stranded = []
        for msg, epoch, start, end, leaves in link.inflight:
            if leaves > now and msg.epoch == epoch:
                stranded.append(msg)
                sent = min(max(now - start, 0.0), end - start)  # what went out before the cut
                link.busy_ns -= (end - start) - sent
                link.bytes -= msg.nbytes * (1.0 - sent / (end - start) if end > start else 1.0)
                link.messages -= 1
        link.inflight.clear()
        link._ends.clear()
        link.free_at = now
        for msg in stranded:
            msg.epoch += 1
            self._reroute(msg, link.spec.src)
        return len(stranded)
