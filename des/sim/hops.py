"""The hop model: when a message's head and tail leave and reach each hop, in every transport mode.

This is the one place hop timing is written. The contended transport (:mod:`des.sim.transport`)
asks it for every hop a message takes; the closed-form costs (:mod:`des.sim.costs`) ask it for a
lone message on an idle route by walking the same hops, so the two agree by construction.

A message of B bytes enters a link at ``start`` (after any queue: FIFO arbitration is the
transport's), link bandwidth b after its derate, latency L:

* ``store_and_forward``: the link is busy ``B/b``; the whole message reaches the far end at
  ``start + B/b + L``, and only then enters the next link (AstraSim congestion-aware semantics);
* ``cut_through``: the head moves on after one packet, ``P = min(packet, B)``: it reaches the far
  end at ``start + P/b + L``; the link stays reserved for the whole message and cannot finish
  before the tail has come in from upstream: ``end = max(start + B/b, tail_in + P/b)``
  (virtual cut-through, Kermani & Kleinrock 1979). Store-and-forward is the case P = B;
* ``astra`` (quantized store-and-forward): busy ``floor(B/b)``, far end ``floor(L + B/b)`` after
  the start: AstraSim's integer nanoseconds (astra-network-analytical, congestion-aware Link);
* uncontended (AstraSim's congestion-unaware model): no per-hop queues; the whole route costs
  ``sum(L) + sum(s) + B / min(b)``, floored when quantized (its ``Topology::send``).

A switch the message passes through adds its forwarding latency ``s`` to the arrival at the next
link; that is the transport's (and :meth:`HopModel.lone_time`'s) to add, since it depends on the
device, not the link.

Extension point: subclass :class:`HopModel` and override :meth:`HopModel.hop` to model another
link (credit-based flow control, a pause model, a different serialization rule); pass an instance
as ``EngineOptions.hop_model``. ``examples/custom_link_model.py`` shows one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from enum import StrEnum

from topologies.base import LinkSpec

DEFAULT_PACKET_BYTES = 4096.0
"""Cut-through packet (flit) granularity: the head moves on after this many bytes."""


class TransportMode(StrEnum):
    """How a message crosses a multi-hop route."""

    STORE_AND_FORWARD = "store_and_forward"
    CUT_THROUGH = "cut_through"


class HopModel:
    """Times one hop of one message. The base class is the physical model (cut-through, or
    store-and-forward when ``store_and_forward``); :class:`AstraHopModel` is AstraSim's.

    :meth:`hop` must be a pure function of its arguments (the transport keeps per-link FIFO
    state and accounting), and must return ``end >= start`` and ``arrive >= head``.
    """

    __slots__ = ("packet_bytes", "store_and_forward")

    quantized = False

    def __init__(self, packet_bytes: float = DEFAULT_PACKET_BYTES,
                 store_and_forward: bool = False) -> None:
        if not packet_bytes > 0:
            raise ValueError(f"packet size must be > 0 bytes, got {packet_bytes!r}")
        self.packet_bytes = float(packet_bytes)
        self.store_and_forward = store_and_forward

    def hop(self, spec: LinkSpec, nbytes: float, start: float,
            tail_in: float) -> tuple[float, float, float]:
        """``(end, head, arrive)`` of a message of ``nbytes`` that starts on link ``spec`` at
        ``start``: when the link is free again, when its head reaches the far end, when its
        tail does. ``tail_in`` is when its tail reached this link's upstream end (-inf at the
        first hop)."""
        bandwidth = spec.bandwidth * spec.derate
        end = start + nbytes / bandwidth
        if self.store_and_forward:
            arrive = end + spec.latency
            return end, arrive, arrive
        packet = (self.packet_bytes if self.packet_bytes < nbytes else nbytes) / bandwidth
        if tail_in + packet > end:  # the tail comes in late from upstream
            end = tail_in + packet
        return end, start + packet + spec.latency, end + spec.latency

    def lone_time(self, specs: Sequence[LinkSpec], switch_ns: Sequence[float],
                  nbytes: float) -> float:
        """Time a lone message takes on an idle route: :meth:`hop` walked over ``specs``, with
        ``switch_ns[i]`` the forwarding latency at the device after link i (last one unused)."""
        start, tail_in, arrive = 0.0, -math.inf, 0.0
        last = len(specs) - 1
        for i, spec in enumerate(specs):
            _end, head, arrive = self.hop(spec, nbytes, start, tail_in)
            if i < last:
                start, tail_in = head + switch_ns[i], arrive + switch_ns[i]
        return arrive

    def uncontended(self, latency_ns: float, bottleneck: float, nbytes: float) -> float:
        """AstraSim's congestion-unaware time of a route: its total latency (links and switches
        passed through) plus serialization once at the ``bottleneck`` bandwidth."""
        total = latency_ns + nbytes / bottleneck
        return math.floor(total) if self.quantized else total


class AstraHopModel(HopModel):
    """AstraSim's quantized store-and-forward hop: the link is busy ``floor(B/b)`` and the
    message reaches the next device ``floor(L + B/b)`` after it started (astra-network-analytical
    congestion-aware backend, ``Link::send``/``Chunk``); unaware times are floored likewise."""

    __slots__ = ()

    quantized = True

    def __init__(self, packet_bytes: float = DEFAULT_PACKET_BYTES) -> None:
        super().__init__(packet_bytes, store_and_forward=True)

    def hop(self, spec: LinkSpec, nbytes: float, start: float,
            tail_in: float) -> tuple[float, float, float]:
        """See :meth:`HopModel.hop`; quantized store-and-forward."""
        serialization = nbytes / (spec.bandwidth * spec.derate)
        arrive = start + math.floor(spec.latency + serialization)
        return start + math.floor(serialization), arrive, arrive


def hop_model_for(transport: TransportMode, packet_bytes: float = DEFAULT_PACKET_BYTES,
                  quantize: bool = False) -> HopModel:
    """The built-in hop model of a transport mode (AstraSim's when ``quantize``)."""
    if quantize:
        return AstraHopModel(packet_bytes)
    return HopModel(packet_bytes, TransportMode(transport) is TransportMode.STORE_AND_FORWARD)


def route_summary(specs: Sequence[LinkSpec],
                  switch_latency: Mapping[int, float]) -> tuple[float, float]:
    """(total latency of the links and of the switches passed through, bottleneck bandwidth)
    of a route, for the uncontended model."""
    latency = sum(sp.latency for sp in specs) + sum(
        switch_latency.get(sp.dst, 0.0) for sp in specs[:-1])
    return latency, min(sp.bandwidth * sp.derate for sp in specs)
