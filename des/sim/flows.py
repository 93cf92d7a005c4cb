"""Point-to-point flows: windowed chunks, and trains that move a lone flow as one event.

A send moves in chunks of at most ``p2p_chunk_bytes`` with at most ``p2p_window`` undelivered
(NCCL's slotted buffers), so flows that share a link interleave (:class:`Flow`). A pipeline
activation of 100 MB is then a hundred messages, which dominates large pipelined runs.

Trains, an exact shortcut: a flow whose route is idle when it starts (no message queued on any of
its links, none owned by another shortcut) behaves exactly as it would alone, until something
else enters one of its links. So it is simulated once, alone, in a private SimPy environment on
the same links (memoized per route and size), and its links are marked as its own; at the
recorded end it adds the recorded figures and lands. If another message enters one of its links
first, the train is materialized at that instant: the private simulation is rerun up to that
instant and its state (link queues and figures, chunks in flight, bytes sent and delivered) is
moved into the real transport, and the flow goes on chunk by chunk from there. Either way every
chunk's timing is the chunk-by-chunk one.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import simpy

from des.sim.options import EngineOptions
from des.sim.transport import Message, Transport


class Flow:
    """One send in flight: chunks of at most ``chunk`` bytes, at most ``window`` of them
    undelivered at a time; the next chunk leaves when one is delivered (credit return is taken
    as instantaneous). ``landed()`` is called when the last byte has arrived."""

    __slots__ = ("chunk", "delivered", "dst", "landed", "nbytes", "offset", "src", "tag",
                 "transport", "window")

    def __init__(self, transport: Transport, options: EngineOptions, src: int, dst: int,
                 nbytes: float, tag: Any, landed: Callable[[], None]) -> None:
        self.transport = transport
        self.src, self.dst, self.nbytes, self.tag = src, dst, nbytes, tag
        self.landed = landed
        self.chunk = options.p2p_chunk_bytes
        self.window = options.p2p_window
        self.offset = 0.0
        self.delivered = 0.0

    def start(self) -> None:
        """Send the first window of chunks now."""
        if self.nbytes == 0:  # an empty message still crosses the route
            self.transport.send(self.src, self.dst, 0.0, self.arrived)
            return
        for _ in range(self.window):
            self._send_next()

    def _send_next(self) -> None:
        size = min(self.chunk, self.nbytes - self.offset)
        if size <= 0:
            return
        self.offset += size
        self.transport.send(self.src, self.dst, size, self.arrived, tag=self.tag)

    def arrived(self, msg: Message) -> None:
        """A chunk landed: the flow is done, or the next chunk leaves."""
        self.delivered += msg.nbytes
        if self.delivered >= self.nbytes:
            self.landed()
        else:
            self._send_next()


@dataclass
class TrainRecording:
    """A lone flow's run: duration, counters, and per link its figures (bytes, busy ns,
    messages, peak queue, activity relative to the start)."""

    duration: float
    messages: int
    hops: int
    delivered: float
    links: list[tuple[int, float, float, int, int, list[tuple[float, float]]]] = field(
        default_factory=list)
    injected: float = 0.0


class _Alone:
    """A flow simulated by itself in a private environment over the same links."""

    def __init__(self, transport: Transport, options: EngineOptions, route: tuple[int, ...],
                 src: int, dst: int, nbytes: float, tag: Any) -> None:
        self.env = simpy.Environment()
        self.transport = Transport(self.env, transport.topology, transport.hop_model,
                                   record_activity=transport.record_activity,
                                   track_inflight=transport.track_inflight,
                                   contention=transport.contention, only=set(route))
        self.transport.route = lambda _s, _d, _f=0: route
        self.end: float | None = None
        self.flow = Flow(self.transport, options, src, dst, nbytes, tag, self._landed)
        self.flow.start()

    def _landed(self) -> None:
        self.end = self.env.now

    def run(self, until: float | None = None) -> None:
        """Run alone to the end, or up to (not including) ``until`` (relative time)."""
        if until is None:
            self.env.run()
        elif until > 0:
            self.env.run(until=until)


class Train:
    """A lone flow moved as one event while its links are its own (see the module doc)."""

    def __init__(self, model: Any, route: tuple[int, ...], src: int, dst: int, nbytes: float,
                 tag: Any, landed: Callable[[], None]) -> None:
        self.model = model
        self.transport: Transport = model.transport
        self.route, self.src, self.dst, self.nbytes, self.tag = route, src, dst, nbytes, tag
        self.landed = landed
        self.run = self  # what the transport compares a message's context with
        self.start = model.clock.now
        self.done = False
        key = (route, nbytes)
        rec = model.train_recordings.get(key)
        if rec is None:
            rec = model.train_recordings[key] = self._record()
        self.recording = rec
        for link in set(route):
            self.transport.links[link].owner = self
        model.trains.add(self)
        model.clock.call_at(self.start + rec.duration, self._finish)

    @staticmethod
    def possible(transport: Transport, route: tuple[int, ...], now: float) -> bool:
        """True when no link of ``route`` is busy or owned by another shortcut."""
        links = transport.links
        return bool(route) and all(links[i].free_at <= now and links[i].owner is None
                                   for i in route)

    def _record(self) -> TrainRecording:
        alone = _Alone(self.transport, self.model.options, self.route, self.src, self.dst,
                       self.nbytes, self.tag)
        alone.run()
        t = alone.transport
        rec = TrainRecording(alone.end, t.messages, t.hops, t.bytes_delivered,
                             injected=t.bytes_injected)
        for i in sorted(set(self.route)):
            lk = t.links[i]
            rec.links.append((i, lk.bytes, lk.busy_ns, lk.messages, lk.peak_queue,
                              list(lk.activity or ())))
        return rec

    def _release(self) -> None:
        self.done = True
        self.model.trains.discard(self)
        for link in set(self.route):
            self.transport.links[link].owner = None

    def _finish(self) -> None:
        if self.done:
            return
        self._release()
        rec, t, start = self.recording, self.transport, self.start
        t.messages += rec.messages
        t.hops += rec.hops
        t.bytes_injected += rec.injected
        t.bytes_delivered += rec.delivered
        for i, nbytes, busy, msgs, peak, activity in rec.links:
            lk = t.links[i]
            lk.bytes += nbytes
            lk.busy_ns += busy
            lk.messages += msgs
            lk.peak_queue = max(lk.peak_queue, peak)
            if lk.activity is not None:
                lk.activity.extend((s + start, e + start) for s, e in activity)
        self.landed()

    def materialize(self) -> None:
        """Another message is entering one of the train's links now: move the flow's state as
        of now into the real transport and go on chunk by chunk."""
        if self.done:
            return
        self._release()
        start, t = self.start, self.transport
        alone = _Alone(t, self.model.options, self.route, self.src, self.dst, self.nbytes,
                       self.tag)
        alone.run(until=self.model.clock.now - start)
        a = alone.transport
        t.messages += a.messages
        t.hops += a.hops
        t.bytes_injected += a.bytes_injected  # its undelivered chunks land in t, below
        t.bytes_delivered += a.bytes_delivered
        for i in set(self.route):
            mine, theirs = t.links[i], a.links[i]
            mine.free_at = theirs.free_at + start
            mine._ends = deque(e + start for e in theirs._ends)
            mine.bytes += theirs.bytes
            mine.busy_ns += theirs.busy_ns
            mine.messages += theirs.messages
            mine.peak_queue = max(mine.peak_queue, theirs.peak_queue)
            if mine.activity is not None and theirs.activity:
                mine.activity.extend((s + start, e + start) for s, e in theirs.activity)
        flow = Flow(t, self.model.options, self.src, self.dst, self.nbytes, self.tag,
                    self.landed)
        flow.offset, flow.delivered = alone.flow.offset, alone.flow.delivered
        pending = sorted((when, eid, ev) for when, _prio, eid, ev in alone.env._queue
                         if isinstance(ev, Message))
        copies: dict[int, Message] = {}
        for when, _eid, msg in pending:
            copy = copies[id(msg)] = msg.clone()
            copy.handler = flow.arrived
            copy.hop, copy.tail_in = msg.hop, msg.tail_in + start
            copy.sent_at = msg.sent_at + start
            to_link = msg.callbacks[0] == a._enter_link
            t.schedule_at(when + start, copy, t._to_link if to_link else t._to_dst)
        for i in set(self.route):  # what a failing link would have to pull back
            mine, theirs = t.links[i], a.links[i]
            if mine.inflight is not None and theirs.inflight is not None:
                mine.inflight.extend((copies[id(m)], s + start, e + start, left + start)
                                     for m, s, e, left in theirs.inflight if id(m) in copies)
