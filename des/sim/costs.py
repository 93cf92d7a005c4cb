"""Closed-form, uncontended costs: one message on its route, a collective of chunked steps,
a windowed send. The analytical backend times everything with them; the engine uses them for
collectives over folded (symmetric, not simulated) peers.

* one message: the time a lone message takes on its route: the hop model (:mod:`des.sim.hops`)
  walked over idle links, the very timing the contended transport applies hop by hop;
* a collective: ``chunks`` x the plan's closed-form chunk time when chunks run one at a time,
  or, when chunks are pipelined, the larger of a pipeline bound (first chunk, then one more
  bottleneck step per chunk) and a link bound (every step's serialization of every chunk, one
  latency): exact for a ring on uniform links (alpha-beta model, Hockney 1994; pipelining as in
  Patarasuk & Yuan 2009). Multi-dimensional plans are a flow shop: each chunk passes through its
  phases, each phase waits for a slot in its dimension, as the engine's per-dimension queues do;
* a send: its chunks pipelined behind the first one on the route, limited by the window.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections import defaultdict
from collections.abc import Callable

from collectives.base import CollectivePlan, Step, dry_run
from des.sim.choices import message_route
from des.sim.hops import route_summary
from des.sim.options import EngineOptions
from topologies.base import Topology


class MessageCost:
    """Uncontended time of one message on its route: the hop model walked over an idle route
    (or its congestion-unaware route time), so it equals what the transport gives a lone
    message by construction."""

    def __init__(self, topology: Topology, options: EngineOptions) -> None:
        self.topology = topology
        self.options = options
        self.hop_model = options.hop_model_instance()
        self.route = message_route(topology, options)
        self._cache: dict[tuple[int, int, float], float] = {}

    def __call__(self, src: int, dst: int, nbytes: float) -> float:
        key = (src, dst, nbytes)
        cost = self._cache.get(key)
        if cost is None:
            cost = self._cache[key] = self._compute(src, dst, nbytes)
        return cost

    def _compute(self, src: int, dst: int, nbytes: float) -> float:
        topo = self.topology
        route = self.route(src, dst)
        if not route:
            return 0.0
        specs = [topo.links[i] for i in route]
        if not self.options.contention:
            latency, bottleneck = route_summary(specs, topo.switch_latency)
            return self.hop_model.uncontended(latency, bottleneck, nbytes)
        switch_ns = [topo.switch_latency.get(sp.dst, 0.0) for sp in specs]
        return self.hop_model.lone_time(specs, switch_ns, nbytes)

    def serialization(self, src: int, dst: int, nbytes: float) -> float:
        """Time the message holds its slowest link."""
        route = self.route(src, dst)
        if not route:
            return 0.0
        return max(nbytes / (self.topology.links[i].bandwidth * self.topology.links[i].derate)
                   for i in route)


def phases(plan: CollectivePlan) -> list[tuple[int, range]]:
    """(dimension, steps) of each run of consecutive steps in one dimension."""
    rank = plan.group[0]
    out: list[tuple[int, range]] = []
    first = 0
    total = plan.num_steps(rank)
    for k in range(1, total + 1):
        if k == total or plan.step(rank, k).dim != plan.step(rank, first).dim:
            out.append((plan.step(rank, first).dim, range(first, k)))
            first = k
    return out


def flow_shop_time(durations: list[tuple[int, float]], chunks: int, in_flight: int,
                   holds: list[dict[int, float]] | None = None) -> float:
    """Identical chunks through phases ``(dimension, duration)``; a dimension holds at most
    ``in_flight`` chunks (0 = any number) and queues the rest first come, first served, as the
    engine's per-dimension queues do. ``holds``: per phase, how long one chunk occupies each
    link it sends on (the serialization of its messages there): a link carries one chunk after
    another, so a chunk's phase ends no sooner than each of its links has carried it after
    every chunk ahead of it there (its latency may overlap theirs: a lower bound of the
    contended engine, which interleaves chunks message by message; links a phase does not use,
    such as the other direction of a ring, do not wait). Returns when the last chunk leaves its
    last phase."""
    seq = itertools.count()
    busy: dict[int, int] = defaultdict(int)
    free: dict[int, float] = defaultdict(float)  # when a link has carried the chunks so far
    waiting: dict[int, list[tuple[int, int]]] = defaultdict(list)
    events: list[tuple[float, int, int, int]] = []  # (time, seq, chunk, phase finished)
    end = 0.0

    def start(t: float, chunk: int, phase: int) -> None:
        dim = durations[phase][0]
        busy[dim] += 1
        done = t + durations[phase][1]
        if holds is not None:  # each link carries it after the chunks ahead of it
            for link, hold in holds[phase].items():
                free[link] = max(t, free[link]) + hold
                if free[link] > done:
                    done = free[link]
        heapq.heappush(events, (done, next(seq), chunk, phase))

    def request(t: float, chunk: int, phase: int) -> None:
        dim = durations[phase][0]
        if in_flight and busy[dim] >= in_flight:
            waiting[dim].append((chunk, phase))
            return
        start(t, chunk, phase)

    for chunk in range(chunks):
        request(0.0, chunk, 0)
    while events:
        t, _, chunk, phase = heapq.heappop(events)
        end = max(end, t)
        dim = durations[phase][0]
        busy[dim] -= 1
        if phase + 1 < len(durations):
            request(t, chunk, phase + 1)
        if waiting[dim]:
            nxt_chunk, nxt_phase = waiting[dim].pop(0)
            start(t, nxt_chunk, nxt_phase)
    return end


def _holding(plan: CollectivePlan, cost: MessageCost, steps: range) -> dict[int, float]:
    """How long one chunk's ``steps`` occupy each link the first member sends on: per link, the
    serialization of the messages that cross it."""
    rank = plan.group[0]
    links = cost.topology.links
    hold: dict[int, float] = defaultdict(float)
    for k in steps:
        for peer, nbytes in plan.step(rank, k).sends:
            for i in cost.route(rank, peer):
                hold[i] += nbytes / links[i].effective_bandwidth
    return dict(hold)


def collective_time(plan: CollectivePlan, chunks: int, in_flight: int, cost: MessageCost,
                    overhead: Callable[[Step], float], start_overhead: float) -> float:
    """Closed-form time of a collective of ``chunks`` chunks of ``plan`` (see module doc).
    A node program runs whole and pays no start overhead (AstraSim issues a custom
    collective's nodes at stream init, Sys::generate_collective)."""
    if plan.node_program:
        return plan.closed_form(cost, overhead)
    if plan.multi_dim:  # each phase starts with the endpoint delay, as in the engine
        split = phases(plan)
        durations = [(dim, dry_run(plan, cost, overhead, start_overhead, steps))
                     for dim, steps in split]
        return flow_shop_time(durations, chunks, in_flight,
                              [_holding(plan, cost, steps) for _, steps in split])
    one = plan.closed_form(cost, overhead, start_overhead)
    if chunks <= 1 or plan.num_steps(plan.group[0]) == 0:
        return one
    if in_flight == 1:
        return chunks * one
    rank = plan.group[0]
    sers = []
    for k in range(plan.num_steps(rank)):
        step = plan.step(rank, k)
        sers.append(max((cost.serialization(rank, p, b) for p, b in step.sends), default=0.0))
    bottleneck = max(sers, default=0.0)
    pipeline = one + (chunks - 1) * bottleneck
    last_latency = one - sum(sers)  # what is not serialization in one chunk
    links = chunks * sum(sers) + max(last_latency / max(len(sers), 1), 0.0)
    return max(pipeline, links)


def p2p_time(nbytes: float, src: int, dst: int, cost: MessageCost,
             options: EngineOptions) -> float:
    """A send of ``nbytes`` in chunks with a credit window, uncontended."""
    chunk = min(options.p2p_chunk_bytes, nbytes) if nbytes > 0 else 0.0
    if chunk <= 0:
        return cost(src, dst, 0.0)
    count = math.ceil(nbytes / chunk)
    first = cost(src, dst, chunk)
    per_chunk = cost.serialization(src, dst, chunk)
    # a window of w chunks keeps the pipe full unless one round trip outlasts w serializations
    per_chunk = max(per_chunk, first / options.p2p_window)
    if count == 1:
        return first
    # after the first chunk lands the others follow one bottleneck serialization apart
    last = cost.serialization(src, dst, nbytes - chunk * (count - 1))
    return first + (count - 2) * per_chunk + last
