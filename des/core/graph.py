"""The event graph: the one intermediate representation workloads build and backends run.

A graph holds, per rank, nodes that carry *sizes* (bytes, FLOPs) and dependency edges; it never
holds times, which come from the hardware and network models when a backend runs it. Collectives
are matched across ranks by (group, sequence) where the sequence is the order in which a rank adds
its collectives on that group; send/recv pairs are matched by (src, dst, tag) in order of addition.
"""

from __future__ import annotations

import graphlib
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum


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
        self._check_rank(rank, "rank")
        node = Node(rank, self._next_id[rank], kind, name, tuple(deps), **fields)
        return self.add(node).id

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
            kernels = tuple((float(f), float(b), str(c)) for f, b, c in kernels)
            flops = sum(k[0] for k in kernels)
            nbytes = sum(k[1] for k in kernels)
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
        members = tuple(range(self.num_ranks)) if group is None else tuple(int(r) for r in group)
        return self._new(rank, NodeKind.COLLECTIVE, name, deps, nbytes=float(nbytes),
                         collective=CollectiveType.parse(collective), group=members,
                         algorithm=algorithm, root=root,
                         span=None if span is None else tuple(int(r) for r in span),
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
        for node in self.all_nodes():
            self._check_node(node)
        collectives = self._match_collectives()
        pairs = self._match_p2p()
        self._check_acyclic(collectives, pairs)
        self._matched = (collectives, pairs)

    def _check_node(self, node: Node) -> None:
        own = self._nodes[node.rank]
        for dep in node.deps:
            if dep not in own:
                raise GraphError(
                    f"{node.label()} depends on node {dep}, which rank {node.rank} does not have"
                )
        if node.nbytes < 0 or node.flops < 0 or (node.duration_ns or 0) < 0:
            raise GraphError(f"{node.label()}: sizes and durations must be >= 0")
        if node.kind in (NodeKind.SEND, NodeKind.RECV):
            if not (0 <= node.peer < self.num_ranks):
                raise GraphError(
                    f"{node.label()}: peer {node.peer} is outside 0..{self.num_ranks - 1}"
                )
            if node.peer == node.rank:
                raise GraphError(f"{node.label()}: a {node.kind} to itself")
        if node.kind is NodeKind.COLLECTIVE:
            group = node.group or ()
            bad = [r for r in group if not (isinstance(r, int) and 0 <= r < self.num_ranks)]
            if bad:
                raise GraphError(
                    f"{node.label()}: group members {bad} are outside 0..{self.num_ranks - 1}"
                )
            if len(set(group)) != len(group):
                raise GraphError(f"{node.label()}: group {list(group)} repeats a rank")
            if node.rank not in group:
                raise GraphError(
                    f"{node.label()}: rank {node.rank} is not in its group {list(group)}")
            if node.root is not None and node.root not in (node.span or group):
                raise GraphError(f"{node.label()}: root {node.root} is not in the group")
            if node.span is not None:
                if not set(group) <= set(node.span) or len(set(node.span)) != len(node.span):
                    raise GraphError(f"{node.label()}: folded group {list(group)} must be "
                                     f"distinct members of its span {list(node.span)}")
                bad = [r for r in node.span if not 0 <= r < self.num_ranks]
                if bad:
                    raise GraphError(f"{node.label()}: span members {bad} are outside "
                                     f"0..{self.num_ranks - 1}")

    def _match_collectives(self) -> list[CollectiveInstance]:
        instances: dict[tuple[tuple[int, ...], int], CollectiveInstance] = {}
        order: list[CollectiveInstance] = []
        for rank, nodes in enumerate(self._nodes):
            seq: dict[tuple[int, ...], int] = defaultdict(int)
            for node in nodes.values():
                if node.kind is not NodeKind.COLLECTIVE:
                    continue
                key = (node.group, seq[node.group])
                seq[node.group] += 1
                inst = instances.get(key)
                if inst is None:
                    inst = CollectiveInstance(len(order), node.group, key[1], node.collective,
                                              node.nbytes, node.algorithm, node.root,
                                              span=node.span)
                    instances[key] = inst
                    order.append(inst)
                else:
                    self._check_agrees(inst, node)
                inst.members[rank] = node.id
        for inst in order:
            missing = [r for r in inst.group if r not in inst.members]
            if missing:
                first = next(iter(inst.members.items()))
                waiting = self.node(*first)
                raise GraphError(
                    f"collective #{inst.seq} ({inst.collective}) on group {list(inst.group)}: "
                    f"ranks {missing} never issue it; {waiting.label()} would wait forever"
                )
        return order

    def _check_agrees(self, inst: CollectiveInstance, node: Node) -> None:
        first_rank, first_id = next(iter(inst.members.items()))
        first = self.node(first_rank, first_id)
        for attr in ("collective", "nbytes", "algorithm", "root", "span"):
            if getattr(first, attr) != getattr(node, attr):
                raise GraphError(
                    f"collective #{inst.seq} on group {list(inst.group)}: {first.label()} has "
                    f"{attr}={getattr(first, attr)!r} but {node.label()} has "
                    f"{attr}={getattr(node, attr)!r}"
                )

    def _match_p2p(self) -> list[P2PPair]:
        sends: dict[tuple[int, int, int], list[Node]] = defaultdict(list)
        recvs: dict[tuple[int, int, int], list[Node]] = defaultdict(list)
        for node in self.all_nodes():
            if node.kind is NodeKind.SEND:
                sends[(node.rank, node.peer, node.tag)].append(node)
            elif node.kind is NodeKind.RECV:
                recvs[(node.peer, node.rank, node.tag)].append(node)
        pairs: list[P2PPair] = []
        for key in sends.keys() | recvs.keys():
            s_list, r_list = sends.get(key, []), recvs.get(key, [])
            for s, r in zip(s_list, r_list, strict=False):
                if s.nbytes != r.nbytes:
                    raise GraphError(
                        f"{s.label()} sends {s.nbytes:g} B but the matching {r.label()} "
                        f"expects {r.nbytes:g} B"
                    )
                pairs.append(P2PPair(key[0], key[1], key[2], s.nbytes, s.id, r.id))
            if len(s_list) != len(r_list):
                extra = s_list[len(r_list):] or r_list[len(s_list):]
                side = "receive" if len(s_list) > len(r_list) else "send"
                raise GraphError(
                    f"{extra[0].label()} has no matching {side} "
                    f"(src {key[0]} -> dst {key[1]}, tag {key[2]})"
                )
        pairs.sort(key=lambda p: (p.src, p.send_id))
        return pairs

    def _check_acyclic(self, collectives: list[CollectiveInstance], pairs: list[P2PPair]) -> None:
        """One global dependency graph: each collective is a single vertex shared by its members,
        each receive also depends on its send. A cycle there deadlocks any backend."""
        vertex: dict[tuple[int, int], tuple] = {}
        for inst in collectives:
            for rank, nid in inst.members.items():
                vertex[(rank, nid)] = ("coll", inst.index)
        sorter: graphlib.TopologicalSorter = graphlib.TopologicalSorter()
        for node in self.all_nodes():
            v = vertex.get((node.rank, node.id), (node.rank, node.id))
            sorter.add(v, *(vertex.get((node.rank, d), (node.rank, d)) for d in node.deps))
        for p in pairs:
            sorter.add((p.dst, p.recv_id), (p.src, p.send_id))
        try:
            sorter.prepare()
        except graphlib.CycleError as err:
            raise GraphError(self._describe_cycle(err.args[1], collectives)) from None

    def _describe_cycle(self, cycle: list[tuple], collectives: list[CollectiveInstance]) -> str:
        names = []
        for v in cycle[:12]:
            if v[0] == "coll":
                inst = collectives[v[1]]
                names.append(f"collective #{inst.seq} ({inst.collective}) on {list(inst.group)}")
            else:
                names.append(self.node(*v).label())
        ranks = sorted({v[0] for v in cycle if v[0] != "coll"})
        where = f"within rank {ranks[0]}" if len(ranks) == 1 else f"across ranks {ranks}"
        return f"dependency cycle {where}: " + " -> ".join(names)
