"""How a collective becomes point-to-point transfers: step programs.

An algorithm turns one collective over a group into a :class:`CollectivePlan`: for every member
a sequence of steps, each sending some messages and receiving some. The contract every plan
keeps, and the engine and the analytical backend rely on:

* **Aligned steps.** A message a rank sends in its step k is received by its peer in the peer's
  step k. Ranks with nothing to do in a step get an empty step (it costs nothing).
* **Timing.** Step 0 starts when the rank joins the collective (after a start overhead in
  AstraSim-compatible runs); step k+1 starts when every receive of step k has arrived and the
  step's overhead (endpoint delay, reduction) has passed; its sends leave at once. A rank is done
  when its last step is over and its own sends have been delivered.
* **Dimensions.** Each step names the logical dimension it works in (``Step.dim``, 0 for flat
  algorithms). The engine lets at most ``chunks_in_flight`` chunks of a rank work in one
  dimension at a time; a chunk whose next step is in another dimension queues there (FIFO), which
  is how hierarchical algorithms pipeline chunks across dimensions (AstraSim's per-dimension
  queues).
* **Lazy.** Plans answer per (rank, step), so a 1024-rank ring costs no memory up front.

The data of a collective is split into chunks that run the same plan independently; the engine
owns chunking and asks the plan about one chunk's bytes. Sizes follow
:class:`~des.core.graph.CollectiveType` (full buffer at each rank; all-gather: the gathered output).
This package never imports SimPy or the engine, and knows ranks, not links.

A plan class declares the collectives it runs in ``supports`` (checked by
:class:`CollectivePlan`'s constructor) and does its own setup in ``_prepare``, which the
constructor calls once the common fields are set and checked.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from des.core.graph import CollectiveType


class CollectiveError(ValueError):
    """A collective that an algorithm cannot run (bad group, unsupported type, ...)."""


@dataclass(frozen=True, slots=True)
class Step:
    """One step of one rank: messages to send ``(peer, bytes)`` and to receive ``(peer, bytes)``;
    ``reduce_bytes`` is how much received data the rank reduces into its buffer after the step's
    receives; ``dim`` is the logical dimension the step works in."""

    sends: tuple[tuple[int, float], ...] = ()
    recvs: tuple[tuple[int, float], ...] = ()
    reduce_bytes: float = 0.0
    dim: int = 0


EMPTY_STEP = Step()


@dataclass(frozen=True)
class PlanOptions:
    """How a plan sizes and shapes its messages.

    ``integer_sizes``: message bytes are whole numbers, split by floor division (AstraSim);
    ``window``: direct algorithms keep at most this many messages in flight (0 = all at once);
    ``dim_algorithms``: for hierarchical algorithms, the algorithm of each dimension;
    ``astra``: reproduce AstraSim's accounting where it departs from the physics (which received
    bytes count as reduced in halving-doubling, say); each plan documents what it changes.
    """

    integer_sizes: bool = False
    window: int = 0
    dim_algorithms: tuple[str, ...] = ()
    astra: bool = False


MessageTime = Callable[[int, int, float], float]
"""``(src, dst, bytes) -> ns`` for one uncontended message."""
StepOverhead = Callable[[Step], float]
"""``step -> ns`` added after a step's receives (endpoint delay, reduction)."""


class CollectivePlan(ABC):
    """The step program of one collective for one chunk of ``nbytes`` (full-buffer bytes).

    ``dims`` are the group's logical dimensions (sizes, dimension 0 varying fastest in group
    order) for topology-aware algorithms; flat algorithms ignore them. ``root`` is the group
    member that broadcast and reduce start from or end at.

    Subclasses declare the collectives they run in ``supports`` (empty: any), which the
    constructor enforces with one shared error, and put their own setup in :meth:`_prepare`
    (called at the end of the constructor) instead of overriding ``__init__``.
    """

    algorithm: str = ""
    supports: frozenset[CollectiveType] = frozenset()  # collectives it runs; empty = any
    multi_dim: bool = False  # True when steps span more than one logical dimension
    # True when step k of every rank reduces the same bytes in the same dimension, so one
    # rank's step k tells what any receiver of its step-k messages pays after them
    uniform_steps: bool = False
    # True when rotating the group by one position maps the program onto itself: position i's
    # step k, with every peer moved on by one position, is position i+1's step k
    cyclic: bool = False
    # True for node programs (collectives.custom): no steps, the whole buffer in one piece
    node_program: bool = False

    def __init__(self, collective: CollectiveType, group: Sequence[int], nbytes: float, *,
                 dims: Sequence[int] | None = None, root: int | None = None,
                 options: PlanOptions | None = None) -> None:
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
        self.dims = tuple(dims) if dims else (self.size,)
        self.root = self.group[0] if root is None else root
        if self.root not in self.position:
            raise CollectiveError(f"{collective}: root {self.root} is not in the group")
        self.options = options or PlanOptions()
        if self.supports and collective not in self.supports:
            known = ", ".join(c for c in CollectiveType if c in self.supports)
            raise CollectiveError(f"{self.algorithm} does not implement {collective}; "
                                  f"it supports {known}")
        self._prepare()

    def _prepare(self) -> None:
        """Algorithm-specific setup, run at the end of the constructor once the common fields
        are set and the collective is known to be supported (default: nothing)."""
        return

    def translation_dims(self) -> tuple[int, ...] | None:
        """The group structure the step program is invariant under, or None.

        ``(d0, d1, ...)`` (product = group size; position i has coordinates in mixed radix,
        d0 fastest) means: translating every position by any vector modulo the dims maps each
        rank's step k onto the translated rank's step k, peers translated alike, with the same
        bytes, reductions and dimension. The engine uses it to advance a lockstep collective
        for one representative rank (:mod:`des.sim.lockstep`). Flat plans declare ``cyclic``
        and get ``(n,)``; tests check every declaration against the step program."""
        return (self.size,) if self.cyclic and self.size > 1 else None

    def split(self, nbytes: float, parts: int) -> float:
        """``nbytes / parts``, floored when the options ask for whole-byte messages."""
        if self.options.integer_sizes:
            return float(int(nbytes) // parts)
        return nbytes / parts

    @abstractmethod
    def num_steps(self, rank: int) -> int:
        """How many steps ``rank`` runs (the same for every rank of aligned plans)."""

    @abstractmethod
    def step(self, rank: int, k: int) -> Step:
        """Step ``k`` (0-based) of ``rank``."""

    def bytes_sent(self, rank: int) -> float:
        """Total bytes ``rank`` sends for this chunk (what conservation tests add up)."""
        return sum(b for k in range(self.num_steps(rank)) for _, b in self.step(rank, k).sends)

    def closed_form(self, message_time: MessageTime, overhead: StepOverhead,
                    start: float = 0.0) -> float:
        """Time for one chunk when every member joins at once and nothing contends: the last
        member's finish. The default evaluates the step program as a longest-path recurrence,
        O(ranks x steps x degree); regular algorithms override it with their alpha-beta form."""
        return dry_run(self, message_time, overhead, start)


def dry_run(plan: CollectivePlan, message_time: MessageTime, overhead: StepOverhead,
            start: float = 0.0, steps: range | None = None) -> float:
    """Finish time of one chunk without contention: step k+1 of a rank starts after the latest
    of its step-k receives (each sent at its sender's step-k start) plus the step's overhead.
    ``steps`` limits the run to a range of steps (one phase), all ranks starting together."""
    begin = dict.fromkeys(plan.group, start)
    done = dict.fromkeys(plan.group, start)
    if steps is None:
        steps = range(max((plan.num_steps(r) for r in plan.group), default=0))
    for k in steps:
        nxt = {}
        for rank in plan.group:
            if k >= plan.num_steps(rank):
                nxt[rank] = begin[rank]
                continue
            step = plan.step(rank, k)
            t = begin[rank]
            for peer, nbytes in step.recvs:
                t = max(t, begin[peer] + message_time(peer, rank, nbytes))
            for peer, nbytes in step.sends:  # a rank is not done before its sends land
                done[rank] = max(done[rank], begin[rank] + message_time(rank, peer, nbytes))
            nxt[rank] = t + (overhead(step) if step.recvs else 0.0)
        begin = nxt
    return max(max(begin.values()), max(done.values()))


PlanFactory = Callable[..., CollectivePlan]

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
    CollectiveType.BARRIER: "dissemination",
    CollectiveType.BROADCAST: "binomial_tree",
    CollectiveType.REDUCE: "binomial_tree",
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


def plan_class(collective: CollectiveType, algorithm: str | None) -> PlanFactory:
    """What :func:`make_plan` would call for ``algorithm`` (its class attributes, such as
    ``node_program``, tell how the plan runs before it is built)."""
    return _REGISTRY[(collective, check_algorithm(collective, algorithm))]


def make_plan(collective: CollectiveType, group: Sequence[int], nbytes: float,
              algorithm: str | None = None, *, dims: Sequence[int] | None = None,
              root: int | None = None, options: PlanOptions | None = None) -> CollectivePlan:
    """The plan of ``algorithm`` (or the collective's default) for one chunk of ``nbytes``."""
    factory = _REGISTRY[(collective, check_algorithm(collective, algorithm))]
    return factory(collective, group, nbytes, dims=dims, root=root, options=options)
