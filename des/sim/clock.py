"""Clocks the runtime runs on: SimPy's event loop (contended model) or a plain heap (closed form).

Both give the runtime the same three things: the current time, "call this at time t" and "run
until nothing is left". Calls at equal times run in the order they were scheduled. The SimPy
clock puts its calls on the environment's own heap, so they interleave with the transport's hop
events in one total order (SimPy orders equal times by insertion).
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from typing import Any

import simpy
from simpy.events import NORMAL


class HeapClock:
    """A bare event loop: a heap of ``(time, seq, function, args)``; no SimPy."""

    __slots__ = ("_heap", "_seq", "now")

    def __init__(self) -> None:
        self.now = 0.0
        self._heap: list[tuple[float, int, Callable[..., Any], tuple]] = []
        self._seq = itertools.count()

    def call_at(self, when: float, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` at ``when`` (never earlier than now)."""
        heapq.heappush(self._heap, (when if when > self.now else self.now, next(self._seq),
                                    fn, args))

    def run(self) -> None:
        """Run every scheduled call, in time order."""
        heap, pop = self._heap, heapq.heappop
        while heap:
            self.now, _, fn, args = pop(heap)
            fn(*args)


class _Call:
    """A scheduled call posing as a SimPy event (SimPy reads ``callbacks`` and ``_ok``)."""

    __slots__ = ("args", "callbacks", "fn")
    _ok = True

    def __init__(self, fn: Callable[..., Any], args: tuple) -> None:
        self.fn = fn
        self.args = args
        self.callbacks = (self._fire,)

    def _fire(self, _event: Any) -> None:
        self.fn(*self.args)


class SimPyClock:
    """The runtime's clock on a SimPy environment: calls go on the environment's heap as
    lightweight events, so runtime and transport events share one order."""

    __slots__ = ("env",)

    def __init__(self, env: simpy.Environment) -> None:
        self.env = env

    @property
    def now(self) -> float:
        """The environment's current time (ns)."""
        return self.env._now

    def call_at(self, when: float, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` at ``when`` (never earlier than now)."""
        env = self.env
        heapq.heappush(env._queue, (when if when > env._now else env._now, NORMAL,
                                    next(env._eid), _Call(fn, args)))

    def call_in_order(self, when: float, order: float, fn: Callable[..., Any],
                      *args: Any) -> None:
        """:meth:`call_at`, placed among the calls and events due at ``when`` as if it had
        been scheduled with sequence number ``order`` (SimPy's tie-break among equal times).
        :meth:`next_order` gives a fresh one."""
        env = self.env
        heapq.heappush(env._queue, (when if when > env._now else env._now, NORMAL, order,
                                    _Call(fn, args)))

    def next_order(self) -> int:
        """A fresh sequence number: later in the order than everything scheduled so far."""
        return next(self.env._eid)

    def run(self) -> None:
        """Run the environment until no event is left."""
        self.env.run()
