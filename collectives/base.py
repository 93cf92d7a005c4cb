"""How a collective becomes point-to-point transfers.

An algorithm turns one collective over a group into a :class:`CollectivePlan`: for every member
a sequence of steps, each sending some messages and receiving some. Step k of a rank starts when
the rank has joined the collective (k = 0) or when every receive of step k-1 has arrived; its
sends leave at once. A rank is done when its last step's receives have arrived and its own sends
have been delivered. The plan is evaluated lazily per (rank, step), so a 1024-rank ring costs no
memory up front.

The data of a collective is split into chunks that run the same plan independently (pipelined);
the engine owns chunking and only asks the plan about one chunk's bytes. This package never
imports SimPy or the engine, and knows ranks, not links.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from des.graph import CollectiveType


class CollectiveError(ValueError):
    """A collective that an algorithm cannot run (bad group, unsupported type, ...)."""


@dataclass(frozen=True, slots=True)
class Step:
    """One step of one rank: messages to send ``(peer, bytes)`` and to receive ``(peer, bytes)``;
    ``reduce_bytes`` is how much received data the rank reduces into its buffer in this step."""

    sends: tuple[tuple[int, float], ...] = ()
    recvs: tuple[tuple[int, float], ...] = ()
    reduce_bytes: float = 0.0


class CollectivePlan(ABC):
    """The step program of one collective for one chunk of ``nbytes`` (full-buffer bytes)."""

    algorithm: str = ""

    def __init__(self, collective: CollectiveType, group: Sequence[int], nbytes: float) -> None:
        if len(group) < 1:
            raise CollectiveError(f"{collective}: empty group")
        if len(set(group)) != len(group):
            raise CollectiveError(f"{collective}: group {list(group)} repeats a rank")
        if nbytes < 0:
            raise CollectiveError(f"{collective}: size must be >= 0, got {nbytes!r}")
        self.collective = collective
        self.group = tuple(group)
        self.nbytes = float(nbytes)
        self.size = len(self.group)
        self.position = {rank: i for i, rank in enumerate(self.group)}

    @abstractmethod
    def num_steps(self, rank: int) -> int:
        """How many steps ``rank`` runs."""

    @abstractmethod
    def step(self, rank: int, k: int) -> Step:
        """Step ``k`` (0-based) of ``rank``."""

    def bytes_sent(self, rank: int) -> float:
        """Total bytes ``rank`` sends for this chunk (what conservation tests add up)."""
        return sum(b for k in range(self.num_steps(rank)) for _, b in self.step(rank, k).sends)


PlanFactory = Callable[[CollectiveType, Sequence[int], float], CollectivePlan]

_REGISTRY: dict[tuple[CollectiveType, str], PlanFactory] = {}


def register(collective: CollectiveType, algorithm: str) -> Callable[[PlanFactory], PlanFactory]:
    """Class decorator: make ``algorithm`` available for ``collective``."""

    def wrap(factory: PlanFactory) -> PlanFactory:
        _REGISTRY[(collective, algorithm)] = factory
        return factory

    return wrap


def algorithms_for(collective: CollectiveType) -> list[str]:
    """Names of the algorithms registered for ``collective``."""
    return sorted(alg for (ctype, alg) in _REGISTRY if ctype is collective)


DEFAULT_ALGORITHM = {
    CollectiveType.ALL_REDUCE: "ring",
    CollectiveType.ALL_GATHER: "ring",
    CollectiveType.REDUCE_SCATTER: "ring",
    CollectiveType.ALL_TO_ALL: "direct",
}


def check_algorithm(collective: CollectiveType, algorithm: str | None) -> str:
    """The algorithm that will run (``algorithm`` or the default); raises CollectiveError if
    none is registered, naming the available ones."""
    name = algorithm or DEFAULT_ALGORITHM.get(collective)
    if name is None or (collective, name) not in _REGISTRY:
        known = ", ".join(algorithms_for(collective)) or "none yet"
        what = f"algorithm {name!r}" if name else "default algorithm"
        raise CollectiveError(f"no {what} for {collective}; available: {known}")
    return name


def make_plan(collective: CollectiveType, group: Sequence[int], nbytes: float,
              algorithm: str | None = None) -> CollectivePlan:
    """The plan of ``algorithm`` (or the collective's default) for one chunk of ``nbytes``."""
    return _REGISTRY[(collective, check_algorithm(collective, algorithm))](collective, group,
                                                                          nbytes)
