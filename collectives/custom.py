"""Custom collectives: a collective given as a program of sends, receives and compute per rank.

AstraSim runs a collective whose system.json names a ``*-implementation-custom`` Chakra ET
(MSCCLang algorithms converted to Chakra) by executing each rank's ET as a dependency graph
(astra-sim/system/astraccl/custom_collectives/CustomAlgorithm.cc). A :class:`CustomProgram`
holds those graphs as plain data (reading the files is :mod:`astra_bridge`'s job) and
:class:`ProgramPlan` is the plan of such a collective. It is not a step program: its nodes run
under :class:`ProgramExecutor`, which reproduces CustomAlgorithm's semantics for any driver
that moves messages and keeps time:

* every node whose dependencies are done is issued at once, lowest id first;
* a send leaves when issued and is done when its data has arrived (the analytical frontends
  call the send handler on arrival, CommonNetworkApi::process_chunk_arrival);
* a receive is done when the matching message has arrived, or at once when it had arrived
  before the receive was issued; the n-th send from ``src`` to ``dst`` with a given tag and
  size matches the n-th such receive (CallbackTracker keyed by tag, src, dst, size, chunk id);
* a compute node takes its duration (AstraSim: the node's runtime in µs x 1000, else 1 ns);
* a rank's part ends when its last node is done (CustomAlgorithm::call then exit()).

Message sizes are the nodes' own: the workload's collective size is ignored, as AstraSim
ignores it, and the collective runs as one piece (no chunks, no endpoint delay: the nodes
are issued at stream init, Sys::generate_collective's custom branch).
Ranks of a program are positions in the collective's group (AstraSim maps them through the
communicator group's NPUs, CustomAlgorithm::convert_algo_rank_to_real_rank).
"""

from __future__ import annotations

import heapq
import itertools
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from collectives.base import (
    CollectiveError,
    CollectivePlan,
    MessageTime,
    Step,
    StepOverhead,
    register,
)
from des.core.graph import CollectiveType


class ProgramError(CollectiveError):
    """A custom collective program that cannot run (a cycle, an unmatched send or receive, a
    rank that waits forever); the message names the rank's source and the node."""


class OpKind(StrEnum):
    """What a program node does."""

    SEND = "send"
    RECV = "recv"
    COMPUTE = "compute"


@dataclass(frozen=True, slots=True)
class ProgramNode:
    """One node of one rank's program: ``peer`` is a program rank (send: destination,
    receive: source), ``nbytes`` the message size, ``duration_ns`` a compute node's time."""

    id: int
    kind: OpKind
    deps: tuple[int, ...] = ()
    peer: int = -1
    nbytes: int = 0
    tag: int = 0
    duration_ns: float = 0.0
    name: str = ""

    def label(self, source: str) -> str:
        """``source: node ID 'name'`` for error messages."""
        named = f" {self.name!r}" if self.name else ""
        return f"{source}: node {self.id}{named}"


MatchKey = tuple[int, int, int, int]
"""``(src, dst, tag, bytes)`` in program ranks: what pairs a send with a receive."""


@dataclass(frozen=True)
class CustomProgram:
    """Per program rank, its nodes (any order) and the source they came from (a file name)."""

    name: str
    ranks: tuple[tuple[ProgramNode, ...], ...]
    sources: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.sources) != len(self.ranks):
            raise ValueError("one source per rank")

    @property
    def size(self) -> int:
        """How many ranks the program is written for."""
        return len(self.ranks)

    def check(self) -> None:
        """Raise :class:`ProgramError` unless every rank can run to the end: dependencies name
        nodes of the same rank and have no cycle, peers are ranks of the program, every send
        has its receive and no rank waits forever on the others."""
        n = self.size
        if n == 0:
            raise ProgramError(f"custom collective {self.name}: no ranks")
        for rank, nodes in enumerate(self.ranks):
            source = self.sources[rank]
            if not nodes:  # AstraSim would never call exit(): the collective never ends
                raise ProgramError(f"{source}: no nodes: the collective would never finish")
            ids = {}
            for node in nodes:
                if node.id in ids:
                    raise ProgramError(f"{node.label(source)}: duplicate node id")
                ids[node.id] = node
            for node in nodes:
                for dep in node.deps:
                    if dep not in ids:
                        raise ProgramError(f"{node.label(source)}: depends on node {dep}, "
                                           "which is not in the file")
                if node.kind is not OpKind.COMPUTE and not 0 <= node.peer < n:
                    what = "destination" if node.kind is OpKind.SEND else "source"
                    raise ProgramError(f"{node.label(source)}: {what} rank {node.peer} is not "
                                       f"a rank of the program (0..{n - 1})")
            cycle = _find_cycle(ids)
            if cycle:
                path = " -> ".join(str(i) for i in cycle)
                raise ProgramError(f"{ids[cycle[0]].label(source)}: dependency cycle "
                                   f"({path})")
        self._check_matching()
        stuck = ProgramExecutor.dry_run(self)
        if stuck:
            rank, node = stuck[0]
            others = "" if len(stuck) == 1 else f" (and {len(stuck) - 1} more nodes)"
            raise ProgramError(f"{node.label(self.sources[rank])}: waits forever: its "
                               f"{node.kind.value} depends, through other ranks, on itself"
                               f"{others}")

    def _check_matching(self) -> None:
        sends: dict[MatchKey, list[tuple[int, ProgramNode]]] = defaultdict(list)
        recvs: dict[MatchKey, list[tuple[int, ProgramNode]]] = defaultdict(list)
        for rank, nodes in enumerate(self.ranks):
            for node in sorted(nodes, key=lambda nd: nd.id):
                if node.kind is OpKind.SEND:
                    sends[(rank, node.peer, node.tag, node.nbytes)].append((rank, node))
                elif node.kind is OpKind.RECV:
                    recvs[(node.peer, rank, node.tag, node.nbytes)].append((rank, node))
        for key in sorted(set(sends) | set(recvs)):
            src, dst, tag, nbytes = key
            have, want = sends.get(key, []), recvs.get(key, [])
            if len(have) == len(want):
                continue
            if len(have) > len(want):  # the first unmatched one names the problem
                (rank, node), what = have[len(want)], (f"send to rank {dst}", "receive", dst)
            else:
                (rank, node), what = want[len(have)], (f"receive from rank {src}", "send", src)
            raise ProgramError(
                f"{node.label(self.sources[rank])}: {what[0]} (tag {tag}, {nbytes} bytes) has "
                f"no matching {what[1]} in {self.sources[what[2]]} ({len(have)} such sends, "
                f"{len(want)} receives)")


def _find_cycle(nodes: dict[int, ProgramNode]) -> list[int]:
    """A dependency cycle as node ids (first repeated at the end), or [] when there is none."""
    state: dict[int, int] = {}  # 1 on the stack, 2 done
    for root in sorted(nodes):
        if root in state:
            continue
        stack: list[tuple[int, int]] = [(root, 0)]
        path = [root]
        state[root] = 1
        while stack:
            nid, i = stack[-1]
            deps = nodes[nid].deps
            if i < len(deps):
                stack[-1] = (nid, i + 1)
                dep = deps[i]
                if state.get(dep) == 1:
                    return [*path[path.index(dep):], dep][::-1]
                if dep not in state:
                    state[dep] = 1
                    stack.append((dep, 0))
                    path.append(dep)
            else:
                state[nid] = 2
                stack.pop()
                path.pop()
    return []


Token = tuple[int, int, MatchKey]
"""A message in flight: ``(sending program rank, send node id, match key)``."""


class _RankState:
    __slots__ = ("arrived", "left", "nodes", "pending", "posted")

    def __init__(self, nodes: dict[int, ProgramNode]) -> None:
        self.nodes = nodes
        self.pending = {nid: len(nd.deps) for nid, nd in nodes.items()}
        self.left = len(nodes)
        self.arrived: dict[MatchKey, int] = defaultdict(int)       # landed, not yet received
        self.posted: dict[MatchKey, deque[int]] = defaultdict(deque)  # receives waiting


class ProgramExecutor:
    """Runs a :class:`CustomProgram` as AstraSim's CustomAlgorithm does (module doc), on a
    driver's clock and network.

    ``now()`` is the current time; ``call_at(t, fn, *args)`` calls ``fn(*args)`` at ``t``;
    ``send(src, dst, nbytes, token)`` moves a message between program ranks and must call
    :meth:`delivered` with ``token`` when it has arrived; ``finished(rank)`` is called when a
    program rank's last node is done.
    """

    def __init__(self, program: CustomProgram, now: Callable[[], float],
                 call_at: Callable[..., None], send: Callable[[int, int, int, Token], None],
                 finished: Callable[[int], None]) -> None:
        self.program = program
        self.now = now
        self.call_at = call_at
        self.send = send
        self.finished = finished
        self.children = [_children(nodes) for nodes in program.ranks]
        self.states: dict[int, _RankState] = {}

    def _state(self, rank: int) -> _RankState:
        state = self.states.get(rank)
        if state is None:  # also before the rank starts: data may land for it early
            state = self.states[rank] = _RankState({nd.id: nd
                                                    for nd in self.program.ranks[rank]})
        return state

    def start(self, rank: int) -> None:
        """Program rank ``rank`` starts: its dependency-free nodes are issued."""
        state = self._state(rank)
        for nid in sorted(n for n, c in state.pending.items() if c == 0):
            self._issue(rank, state, state.nodes[nid])

    def _issue(self, rank: int, state: _RankState, node: ProgramNode) -> None:
        if node.kind is OpKind.SEND:
            key = (rank, node.peer, node.tag, node.nbytes)
            self.send(rank, node.peer, node.nbytes, (rank, node.id, key))
        elif node.kind is OpKind.RECV:
            key = (node.peer, rank, node.tag, node.nbytes)
            if state.arrived[key]:  # landed before it was posted: done in this instant
                state.arrived[key] -= 1
                self.call_at(self.now(), self._done, rank, node.id)
            else:
                state.posted[key].append(node.id)
        else:
            self.call_at(self.now() + node.duration_ns, self._done, rank, node.id)

    def delivered(self, token: Token) -> None:
        """A message has arrived: its send is done, then its receive (if posted)."""
        src, send_id, key = token
        self._done(src, send_id)
        dst = key[1]
        state = self._state(dst)
        waiting = state.posted.get(key)
        if waiting:
            self._done(dst, waiting.popleft())
        else:
            state.arrived[key] += 1

    def _done(self, rank: int, nid: int) -> None:
        state = self.states[rank]
        freed = []
        for child in self.children[rank].get(nid, ()):
            state.pending[child] -= 1
            if state.pending[child] == 0:
                freed.append(child)
        for child in sorted(freed):
            self._issue(rank, state, state.nodes[child])
        state.left -= 1
        if state.left == 0:
            self.finished(rank)

    def stuck(self) -> list[tuple[int, ProgramNode]]:
        """Nodes not done, per rank, in id order: those that wait forever once nothing moves."""
        out = []
        for rank, nodes in enumerate(self.program.ranks):
            state = self.states.get(rank)
            if state is None:
                continue
            for node in sorted(nodes, key=lambda nd: nd.id):
                blocked = state.pending[node.id] > 0
                if (not blocked and node.kind is OpKind.RECV
                        and node.id in state.posted[(node.peer, rank, node.tag, node.nbytes)]):
                    blocked = True
                if blocked:
                    out.append((rank, node))
        return out

    @classmethod
    def simulate(cls, program: CustomProgram, message_time: MessageTime,
                 ranks: Sequence[int] | None = None
                 ) -> tuple[float, list[tuple[int, ProgramNode]]]:
        """Every rank starts at 0 and messages take ``message_time(src, dst, bytes)`` (program
        ranks, or ``ranks[i]`` when given): (when the last rank finishes, nodes stuck)."""
        heap: list[tuple[float, int, Callable[..., None], tuple]] = []
        seq = itertools.count()
        clock = [0.0]
        end = [0.0]
        real = ranks or range(program.size)

        def call_at(when: float, fn: Callable[..., None], *args: object) -> None:
            heapq.heappush(heap, (when, next(seq), fn, args))

        def send(src: int, dst: int, nbytes: int, token: Token) -> None:
            call_at(clock[0] + message_time(real[src], real[dst], nbytes), run.delivered, token)

        def finished(rank: int) -> None:
            end[0] = max(end[0], clock[0])

        run = cls(program, lambda: clock[0], call_at, send, finished)
        for rank in range(program.size):
            run.start(rank)
        while heap:
            clock[0], _, fn, args = heapq.heappop(heap)
            fn(*args)
        return end[0], run.stuck()

    @classmethod
    def dry_run(cls, program: CustomProgram) -> list[tuple[int, ProgramNode]]:
        """The nodes that never finish (none for a program that runs to its end). Whether a
        node finishes does not depend on timing: sends never wait for receives."""
        return cls.simulate(program, lambda src, dst, nbytes: 1.0)[1]


def _children(nodes: Sequence[ProgramNode]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = defaultdict(list)
    for node in nodes:
        for dep in node.deps:
            out[dep].append(node.id)
    return dict(out)


class ProgramPlan(CollectivePlan):
    """The plan of a custom collective: :attr:`program_data` run over the group (program rank
    i is group member i). It has no steps; the engine runs it with :class:`ProgramExecutor`
    (``des.sim.program_run``) and the closed form simulates it without contention.
    Subclasses made by :func:`register_program` carry the program."""

    node_program = True
    program_data: CustomProgram

    def _prepare(self) -> None:
        if self.program_data.size != self.size:
            raise CollectiveError(
                f"custom collective {self.program_data.name} is written for "
                f"{self.program_data.size} ranks but the {self.collective} group has "
                f"{self.size}: {list(self.group)}")

    def num_steps(self, rank: int) -> int:
        return 0

    def step(self, rank: int, k: int) -> Step:
        raise IndexError(f"{self.algorithm} is a node program, not a step program")

    def bytes_sent(self, rank: int) -> float:
        i = self.position[rank]
        return float(sum(nd.nbytes for nd in self.program_data.ranks[i]
                         if nd.kind is OpKind.SEND))

    def closed_form(self, message_time: MessageTime, overhead: StepOverhead,
                    start: float = 0.0) -> float:
        """Every member starts at ``start``; messages take their uncontended time (step
        overheads do not apply: a program's compute nodes are its overheads)."""
        end, stuck = ProgramExecutor.simulate(self.program_data, message_time, self.group)
        if stuck:
            rank, node = stuck[0]
            raise ProgramError(f"{node.label(self.program_data.sources[rank])}: never "
                               "finishes")
        return start + end


def register_program(collective: CollectiveType, program: CustomProgram, *,
                     checked: bool = False) -> str:
    """Register ``program`` (checked first unless ``checked``) as an algorithm for
    ``collective``; returns its name, ``custom:`` + the program's name (registering the same
    name again replaces it)."""
    if not checked:
        program.check()
    name = f"custom:{program.name}"
    plan = type("CustomProgramPlan", (ProgramPlan,),
                {"algorithm": name, "program_data": program,
                 "supports": frozenset({collective})})
    register(collective, name)(plan)
    return name
