"""The event graph: the one intermediate representation workloads build and backends run.

A graph holds, per rank, nodes that carry *sizes* (bytes, FLOPs) and dependency edges; it never
holds times, which come from the hardware and network models when a backend runs it. Collectives
are matched across ranks by (group, sequence) where the sequence is the order in which a rank adds
its collectives on that group; send/recv pairs are matched by (src, dst, tag) in order of addition.
The checks and the matching live in :mod:`des.core.graph_check`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from des.core.fold import Fold


class GraphError(ValueError):
    """An event graph that cannot be simulated; the message names the ranks and nodes at fault."""


class NodeKind(StrEnum):
    """What a node does: local work, a collective, one side of a point-to-point pair, or memory."""

    COMPUTE = "compute"
    COLLECTIVE = "collective"
    SEND = "send"
    RECV = "recv"
    MEMORY = "memory"


class CollectiveType(StrEnum):
    """Collective operations. A node's ``nbytes`` is the full (unsharded) buffer at each rank:
    the all-reduce buffer, the reduce-scatter input, the all-gather output, the all-to-all send
    buffer, the broadcast/reduce buffer. This is AstraSim's ``comm_size`` and nccl-tests' size."""

    ALL_REDUCE = "all_reduce"
    ALL_GATHER = "all_gather"
    REDUCE_SCATTER = "reduce_scatter"
    ALL_TO_ALL = "all_to_all"
    BROADCAST = "broadcast"
    REDUCE = "reduce"
    BARRIER = "barrier"

    @classmethod
    def parse(cls, value: str | CollectiveType) -> CollectiveType:
        """Accept ``all_reduce``, ``all-reduce``, ``allreduce`` or ``ALL_REDUCE``."""
        if isinstance(value, CollectiveType):
            return value
        key = str(value).strip().lower().replace("-", "").replace("_", "")
        for member in cls:
            if member.value.replace("_", "") == key:
                return member
        allowed = ", ".join(m.value for m in cls)
        raise ValueError(f"unknown collective {value!r}; expected one of {allowed}")


@dataclass(slots=True, eq=False)
class Node:
    """One operation of one rank. Which fields matter depends on ``kind``:

    compute: ``flops`` and ``nbytes`` (HBM traffic) timed by the roofline, or ``duration_ns``,
    or ``kernels``, a sequence of ``(flops, bytes, op_class)`` run back to back (each its own
    roofline and launch; ``flops``/``nbytes`` then hold their totals);
    collective: ``collective``, ``nbytes``, ``group`` (ranks in communicator order),
    ``algorithm`` (None = the backend chooses), ``root`` for broadcast/reduce, and ``span``
    when symmetric peers are folded: the full group the collective runs over, of which
    ``group`` holds only the ranks that are simulated;
    send/recv: ``peer``, ``nbytes``, ``tag``; memory: ``nbytes`` and ``mem_op`` (load/store).

    ``category`` says what the node is for in its workload's terms (``fwd``, ``bwd``, ``tp``,
    ``prefill``...), set by the builder so reports can group time without parsing ``name``;
    ``""`` when the source has none (hand-built or imported graphs).
    """

    rank: int
    id: int
    kind: NodeKind
    name: str = ""
    deps: tuple[int, ...] = ()
    nbytes: float = 0.0
    flops: float = 0.0
    duration_ns: float | None = None
    op_class: str = ""
    collective: CollectiveType | None = None
    group: tuple[int, ...] | None = None
    algorithm: str | None = None
    root: int | None = None
    peer: int | None = None
    tag: int = 0
    mem_op: str = "load"
    kernels: tuple[tuple[float, float, str], ...] | None = None
    span: tuple[int, ...] | None = None
    category: str = ""

    def label(self) -> str:
        """``rank 3 node 17 ('fwd.mlp')``: how errors and reports name a node."""
        named = f" ({self.name!r})" if self.name else ""
        return f"rank {self.rank} node {self.id}{named}"


@dataclass(slots=True)
class CollectiveInstance:
    """One collective as its members see it: the k-th collective each adds on ``group``."""

    index: int
    group: tuple[int, ...]
    seq: int
    collective: CollectiveType
    nbytes: float
    algorithm: str | None
    root: int | None
    members: dict[int, int] = field(default_factory=dict)  # rank -> node id
    span: tuple[int, ...] | None = None  # the full group when peers are folded


@dataclass(slots=True)
class P2PPair:
    """A matched send (on ``src``) and receive (on ``dst``)."""

    src: int
    dst: int
    tag: int
    nbytes: float
    send_id: int
    recv_id: int


class EventGraph:
    """Per-rank nodes with sizes, plus dependency edges within a rank.

    Cross-rank coupling is implicit: collectives join by (group, sequence), sends pair with
    receives by (src, dst, tag). :meth:`validate` checks all of it and caches the matching, which
    backends read through :meth:`collective_instances` and :meth:`p2p_pairs`.
    """

    def __init__(self, num_ranks: int, name: str = "") -> None:
        if int(num_ranks) != num_ranks or num_ranks < 1:
            raise GraphError(f"an event graph needs at least one rank, got {num_ranks!r}")
        self.num_ranks = int(num_ranks)
        self.name = name
        self._nodes: list[dict[int, Node]] = [{} for _ in range(self.num_ranks)]
        self._next_id = [0] * self.num_ranks
        self._matched: tuple[list[CollectiveInstance], list[P2PPair]] | None = None
        self._groups: dict[tuple, tuple[int, ...]] = {}  # see _ranks
        # ranks this graph simulates for others (des.core.fold); None = every rank is here
        self.fold: Fold | None = None

    # ----------------------------------------------------------------- building
    def add(self, node: Node) -> Node:
        """Add a fully formed node (importers use this to keep their own ids)."""
        self._check_rank(node.rank, "node rank")
        nodes = self._nodes[node.rank]
        if node.id in nodes:
            raise GraphError(f"{node.label()}: id {node.id} is already used on rank {node.rank}")
        nodes[node.id] = node
        self._next_id[node.rank] = max(self._next_id[node.rank], node.id + 1)
        self._matched = None
        return node

    def _new(self, rank: int, kind: NodeKind, name: str, deps: Iterable[int], **fields) -> int:
        # add() without its checks: the next id is always free (builders add 10^5-10^6 nodes)
        self._check_rank(rank, "rank")
        nid = self._next_id[rank]
        self._nodes[rank][nid] = Node(rank, nid, kind, name, tuple(deps), **fields)
        self._next_id[rank] = nid + 1
        self._matched = None
        return nid

    def _ranks(self, ranks: Sequence[int]) -> tuple[int, ...]:
        """``ranks`` as a tuple of ints, one shared tuple per distinct group (every layer
        names the same few groups)."""
        if type(ranks) is not tuple:
            return tuple(int(r) for r in ranks)
        members = self._groups.get(ranks)
        if members is None:
            members = self._groups[ranks] = tuple(int(r) for r in ranks)
        return members

    def compute(
        self,
        rank: int,
        *,
        flops: float = 0.0,
        nbytes: float = 0.0,
        duration_ns: float | None = None,
        op_class: str = "",
        name: str = "",
        deps: Iterable[int] = (),
        kernels: Iterable[tuple[float, float, str]] | None = None,
        category: str = "",
    ) -> int:
        """Local work: FLOPs and HBM bytes for the roofline, an explicit duration, or a
        sequence of kernels ``(flops, bytes, op_class)`` (totals go to flops/nbytes)."""
        if kernels is not None:
            kernels = tuple([(float(f), float(b), str(c)) for f, b, c in kernels])
            flops = sum([k[0] for k in kernels])  # lists: faster than generators, same sums
            nbytes = sum([k[1] for k in kernels])
        return self._new(rank, NodeKind.COMPUTE, name, deps, flops=float(flops),
                         nbytes=float(nbytes), duration_ns=duration_ns, op_class=op_class,
                         kernels=kernels, category=category)

    def collective(
        self,
        rank: int,
        collective: CollectiveType | str,
        nbytes: float,
        *,
        group: Sequence[int] | None = None,
        algorithm: str | None = None,
        root: int | None = None,
        name: str = "",
        deps: Iterable[int] = (),
        span: Sequence[int] | None = None,
        category: str = "",
    ) -> int:
        """One rank's part of a collective; ``group`` defaults to every rank. With ``span``
        (folding), the collective runs over ``span`` but only ``group`` is simulated."""
        members = self._ranks(range(self.num_ranks) if group is None else group)
        return self._new(rank, NodeKind.COLLECTIVE, name, deps, nbytes=float(nbytes),
                         collective=CollectiveType.parse(collective), group=members,
                         algorithm=algorithm, root=root,
                         span=None if span is None else self._ranks(span),
                         category=category)

    def collective_all(
        self,
        collective: CollectiveType | str,
        nbytes: float,
        *,
        group: Sequence[int] | None = None,
        algorithm: str | None = None,
        root: int | None = None,
        name: str = "",
        deps: Mapping[int, Iterable[int]] | None = None,
        span: Sequence[int] | None = None,
        category: str = "",
    ) -> dict[int, int]:
        """The same collective on every member of ``group``; returns rank -> node id."""
        members = tuple(range(self.num_ranks)) if group is None else tuple(group)
        deps = deps or {}
        return {
            r: self.collective(r, collective, nbytes, group=members, algorithm=algorithm,
                               root=root, name=name, deps=deps.get(r, ()), span=span,
                               category=category)
            for r in members
        }

    def send(self, rank: int, peer: int, nbytes: float, *, tag: int = 0, name: str = "",
             deps: Iterable[int] = (), category: str = "") -> int:
        """Send ``nbytes`` to ``peer``; pairs with the matching :meth:`recv` on the peer."""
        return self._new(rank, NodeKind.SEND, name, deps, nbytes=float(nbytes), peer=int(peer),
                         tag=int(tag), category=category)

    def recv(self, rank: int, peer: int, nbytes: float, *, tag: int = 0, name: str = "",
             deps: Iterable[int] = (), category: str = "") -> int:
        """Receive ``nbytes`` from ``peer``."""
        return self._new(rank, NodeKind.RECV, name, deps, nbytes=float(nbytes), peer=int(peer),
                         tag=int(tag), category=category)

    def memory(self, rank: int, nbytes: float, *, op: str = "load", name: str = "",
               deps: Iterable[int] = (), category: str = "") -> int:
        """A load from or store to device memory of ``nbytes``."""
        if op not in ("load", "store"):
            raise GraphError(f"rank {rank}: memory op {op!r}; expected 'load' or 'store'")
        return self._new(rank, NodeKind.MEMORY, name, deps, nbytes=float(nbytes), mem_op=op,
                         category=category)

    # ----------------------------------------------------------------- reading
    def nodes(self, rank: int) -> Iterator[Node]:
        """A rank's nodes in the order they were added."""
        return iter(self._nodes[rank].values())

    def node(self, rank: int, node_id: int) -> Node:
        """One node by rank and id."""
        return self._nodes[rank][node_id]

    def all_nodes(self) -> Iterator[Node]:
        """Every node, rank by rank."""
        for nodes in self._nodes:
            yield from nodes.values()

    def __len__(self) -> int:
        return sum(len(n) for n in self._nodes)

    def collective_instances(self) -> list[CollectiveInstance]:
        """Matched collectives (validates the graph first if it changed)."""
        if self._matched is None:
            self.validate()
        assert self._matched is not None
        return self._matched[0]

    def p2p_pairs(self) -> list[P2PPair]:
        """Matched send/recv pairs (validates the graph first if it changed)."""
        if self._matched is None:
            self.validate()
        assert self._matched is not None
        return self._matched[1]

    # ----------------------------------------------------------------- checking
    def _check_rank(self, rank: int, what: str) -> None:
        if not (isinstance(rank, int) and 0 <= rank < self.num_ranks):
            raise GraphError(f"{what} {rank!r} is outside 0..{self.num_ranks - 1}")

    def validate(self, num_npus: int | None = None) -> None:
        """Check that the graph can run; raise :class:`GraphError` naming the first problem.

        Checks: ranks and peers inside the topology, sizes non-negative, dependencies on nodes the
        rank has, collectives whose members agree on type, size, group and algorithm and all issue
        it, every send matched by one receive of the same size, and no cycle, neither within a rank
        nor across ranks through send/recv and collectives (that would deadlock).
        """
        if num_npus is not None and self.num_ranks > num_npus:
            raise GraphError(
                f"the graph has {self.num_ranks} ranks but the topology has only {num_npus} NPUs"
            )
        if self._matched is not None:  # unchanged since it last passed: nothing to redo
            return
        from des.core.graph_check import match  # it imports this module's node records

        self._matched = match(self._nodes)
