"""Running a custom collective (a node program, :mod:`collectives.custom`) on the contended
engine: :class:`~collectives.custom.ProgramExecutor` decides what each rank does, as AstraSim's
CustomAlgorithm does (astra-sim/system/astraccl/custom_collectives/CustomAlgorithm.cc), and the
engine's transport moves its messages, so they contend with all other traffic exactly as step
programs' messages do.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from collectives.custom import ProgramExecutor, ProgramPlan, Token
from des.core.graph import CollectiveInstance

if TYPE_CHECKING:
    from des.sim.engine import ContendedModel
    from des.sim.transport import Message


class ProgramRun:
    """One custom collective being executed: every member runs its program rank from the
    moment it joins (no endpoint delay: AstraSim issues the nodes at stream init) and is done
    when its last node is."""

    chunks = 1  # the program runs whole: its nodes carry their own message sizes

    def __init__(self, model: ContendedModel, inst: CollectiveInstance, plan_algorithm: str,
                 dims: tuple[int, ...] | None) -> None:
        self.model = model
        self.inst = inst
        self.clock = model.clock
        self.transport = model.transport
        plan = model.plan(inst, inst.group, inst.nbytes, plan_algorithm, None)
        assert isinstance(plan, ProgramPlan)
        self.plan = plan
        self.executor = ProgramExecutor(plan.program_data, lambda: self.clock.now,
                                        self.clock.call_at, self._send, self._finished)
        self.joined: dict[int, Callable[[], None]] = {}
        self.first_join = math.inf
        self.last_done = 0.0
        self.bytes_injected = self.bytes_delivered = 0.0

    def join(self, rank: int, done: Callable[[], None]) -> None:
        """``rank`` joins now and starts its program; ``done()`` when its last node is."""
        self.joined[rank] = done
        self.first_join = min(self.first_join, self.clock.now)
        self.executor.start(self.plan.position[rank])

    def _send(self, src: int, dst: int, nbytes: int, token: Token) -> None:
        group = self.plan.group
        self.bytes_injected += nbytes
        self.transport.send(group[src], group[dst], float(nbytes), self._landed, token, self)

    def _landed(self, msg: Message) -> None:
        self.bytes_delivered += msg.nbytes
        self.executor.delivered(msg.tag)

    def _finished(self, position: int) -> None:
        self.last_done = max(self.last_done, self.clock.now)
        self.joined[self.plan.group[position]]()

    def waiting_for(self) -> list[int]:
        """Members that have not joined yet (for deadlock reports)."""
        return [r for r in self.inst.group if r not in self.joined]
