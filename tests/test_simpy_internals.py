"""The SimPy internals des leans on, checked directly so an upgrade fails here, by name, rather
than as wrong times deep inside a simulation.

``des.sim.transport`` schedules one event per hop by pushing straight onto the environment's
heap, ``heappush(env._queue, (env._now + delay, NORMAL, next(env._eid), message))``, where the
:class:`~des.sim.transport.Message` poses as an event: it has ``callbacks`` and a class
attribute ``_ok = True`` and nothing else SimPy's event carries. It and
``des.sim.collective_run`` read the clock as ``env._now``. ``setup.cfg`` pins ``simpy>=4.1,<5``
for this; if one of these tests fails after an upgrade, the message says what changed.
"""

from __future__ import annotations

import heapq
import itertools
from typing import Any

import pytest
import simpy
import simpy.events

WHY = "(des.sim.transport schedules hop events straight onto SimPy's heap)"


class FakeEvent:
    """What des.sim.transport.Message offers SimPy: ``callbacks`` and ``_ok``, no more."""

    __slots__ = ("callbacks", "name")
    _ok = True

    def __init__(self, name: str, callbacks: tuple) -> None:
        self.name = name
        self.callbacks = callbacks


def push(env: simpy.Environment, delay: float, event: Any) -> None:
    """Exactly how des.sim.transport.Transport._schedule schedules a message."""
    heapq.heappush(env._queue, (env._now + delay, simpy.events.NORMAL, next(env._eid), event))


def test_environment_has_the_heap_counter_and_clock_des_uses() -> None:
    env = simpy.Environment(initial_time=7.5)
    for name in ("_queue", "_eid", "_now"):
        assert hasattr(env, name), f"simpy.Environment has no {name} any more {WHY}"
    assert isinstance(env._queue, list), f"Environment._queue is no longer a list heap {WHY}"
    assert isinstance(env._eid, itertools.count), (
        f"Environment._eid is no longer an itertools.count {WHY}")
    assert env._now == env.now == 7.5, f"Environment._now is no longer the clock {WHY}"


def test_normal_priority_exists_and_comes_after_urgent() -> None:
    assert hasattr(simpy.events, "NORMAL"), f"simpy.events.NORMAL is gone {WHY}"
    normal, urgent = simpy.events.NORMAL, simpy.events.URGENT
    assert isinstance(normal, int) and isinstance(urgent, int), (
        f"event priorities are no longer ints {WHY}")
    assert urgent < normal, "URGENT no longer sorts before NORMAL in the heap"


def test_heap_entries_are_time_priority_eid_event() -> None:
    env = simpy.Environment()
    timeout = env.timeout(5.0)
    assert len(env._queue) == 1
    entry = env._queue[0]
    assert isinstance(entry, tuple) and len(entry) == 4, (
        f"heap entries are no longer (time, priority, eid, event) tuples: {entry!r} {WHY}")
    at, priority, eid, event = entry
    assert (at, priority, event) == (5.0, simpy.events.NORMAL, timeout), (
        f"heap entry layout changed: {entry!r} {WHY}")
    assert isinstance(eid, int) and next(env._eid) > eid, (
        f"Environment._eid no longer numbers the heap entries {WHY}")


def test_a_duck_typed_event_on_the_heap_is_processed_in_time_order() -> None:
    env = simpy.Environment()
    calls: list[tuple[str, float, object]] = []

    def record(event: FakeEvent) -> None:
        calls.append((event.name, env.now, event))

    late, early, tie = (FakeEvent(n, (record,)) for n in ("late", "early", "tie"))
    push(env, 3.0, late)
    push(env, 1.0, early)
    env.timeout(2.0).callbacks.append(lambda _e: calls.append(("timeout", env.now, None)))
    push(env, 3.0, tie)  # same time as `late`, pushed after it: runs after it
    env.run()
    assert [(name, t) for name, t, _ in calls] == [
        ("early", 1.0), ("timeout", 2.0), ("late", 3.0), ("tie", 3.0)], (
        f"events pushed onto Environment._queue ran out of order or not at all: {calls} {WHY}")
    assert calls[0][2] is early and calls[2][2] is late, (
        "SimPy no longer passes the event itself to its callbacks")
    assert env._now == env.now == 3.0


def test_step_processes_one_pushed_event_and_clears_its_callbacks() -> None:
    env = simpy.Environment()
    seen: list[float] = []
    first = FakeEvent("first", (lambda e: seen.append(env._now),))
    push(env, 4.0, first)
    push(env, 6.0, FakeEvent("second", (lambda e: seen.append(env._now),)))
    env.step()
    assert seen == [4.0], f"Environment.step() did not process the pushed event at t=4 {WHY}"
    assert first.callbacks is None, (
        "SimPy no longer sets a processed event's callbacks to None (Message reuses the slot)")
    env.step()
    assert seen == [4.0, 6.0]
    with pytest.raises(simpy.core.EmptySchedule):
        env.step()


def test_message_offers_what_simpy_reads() -> None:
    from des.sim.transport import Message

    assert Message._ok is True
    assert "callbacks" in Message.__slots__


def test_a_pushed_event_with_ok_false_would_crash_so_ok_must_stay_true() -> None:
    # Why Message carries _ok = True: SimPy treats a not-ok event as a failure to raise.
    env = simpy.Environment()

    class Failed(FakeEvent):
        __slots__ = ("_value",)
        _ok = False

    failed = Failed("failed", ())
    failed._value = RuntimeError("boom")
    push(env, 1.0, failed)
    with pytest.raises(RuntimeError, match="boom"):
        env.run()
