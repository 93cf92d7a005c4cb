"""Checking an event graph before it runs: per-node sanity, collectives matched across ranks by
(group, sequence) and send/recv pairs by (src, dst, tag), and no dependency cycle through them.
:meth:`des.core.graph.EventGraph.validate` runs this and caches the matching.

Every check is linear in the graph's size: a group's members are checked once per distinct
group (not once per member, which is quadratic in the group size), and the cycle check is
Kahn's algorithm over integer vertices. Only when Kahn's algorithm leaves vertices unprocessed
is the cycle searched for (with :mod:`graphlib`, over the same vertices in the same order as
before, so the error names the same cycle)."""

from __future__ import annotations

import graphlib
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from itertools import accumulate

from des.core.graph import CollectiveInstance, GraphError, Node, NodeKind, P2PPair

__all__ = ["match"]

_COLLECTIVE, _SEND, _RECV = NodeKind.COLLECTIVE, NodeKind.SEND, NodeKind.RECV  # enum reads cost


def match(by_rank: Sequence[Mapping[int, Node]]
          ) -> tuple[list[CollectiveInstance], list[P2PPair]]:
    """Check every node of ``by_rank`` (one id -> node mapping per rank), match collectives and
    send/recv pairs, and check that nothing deadlocks; raise :class:`GraphError` naming the
    first problem."""
    checker = _Checker(by_rank)
    checker.check_nodes()
    collectives = checker.match_collectives()
    pairs = checker.match_p2p()
    checker.check_acyclic(collectives, pairs)
    return collectives, pairs


class _Checker:
    """The checks of one graph, over its per-rank node mappings."""

    def __init__(self, by_rank: Sequence[Mapping[int, Node]]) -> None:
        self.by_rank = by_rank
        self.num_ranks = len(by_rank)
        # group (or (group, span)) -> its members as a set, once that group has passed its
        # checks: a collective's members share their group, so each is checked once
        self.groups: dict[tuple, frozenset[int]] = {}
        # filled by check_nodes, in graph order: each rank's collectives, every send and recv
        self.collective_nodes: list[list[Node]] = []
        self.p2p_nodes: list[Node] = []

    def node(self, rank: int, node_id: int) -> Node:
        return self.by_rank[rank][node_id]

    def all_nodes(self) -> Iterator[Node]:
        for nodes in self.by_rank:
            yield from nodes.values()

    def check_nodes(self) -> None:
        """:meth:`check_node` on every node, rank by rank, with the common case inline (this
        runs once per node of graphs of 10^5-10^6 nodes); keeps the collectives and
        sends/receives for the matching."""
        check, check_peer, check_collective = self.check_node, self.check_peer, \
            self.check_collective
        p2p = self.p2p_nodes
        for own in self.by_rank:
            collectives: list[Node] = []
            self.collective_nodes.append(collectives)
            for node in own.values():
                for dep in node.deps:
                    if dep not in own:
                        check(node)
                if node.nbytes < 0 or node.flops < 0 or (node.duration_ns or 0) < 0:
                    check(node)
                kind = node.kind
                if kind is _COLLECTIVE:
                    collectives.append(node)
                    check_collective(node)
                elif kind is _SEND or kind is _RECV:
                    p2p.append(node)
                    check_peer(node)

    def check_node(self, node: Node) -> None:
        """Every check of one node (raises :class:`GraphError` naming the first problem)."""
        own = self.by_rank[node.rank]
        for dep in node.deps:
            if dep not in own:
                raise GraphError(
                    f"{node.label()} depends on node {dep}, which rank {node.rank} does not have"
                )
        if node.nbytes < 0 or node.flops < 0 or (node.duration_ns or 0) < 0:
            raise GraphError(f"{node.label()}: sizes and durations must be >= 0")
        if node.kind is _SEND or node.kind is _RECV:
            self.check_peer(node)
        if node.kind is _COLLECTIVE:
            self.check_collective(node)

    def check_peer(self, node: Node) -> None:
        if not (0 <= node.peer < self.num_ranks):
            raise GraphError(
                f"{node.label()}: peer {node.peer} is outside 0..{self.num_ranks - 1}"
            )
        if node.peer == node.rank:
            raise GraphError(f"{node.label()}: a {node.kind} to itself")

    def check_collective(self, node: Node) -> None:
        group = node.group or ()
        members = self.groups.get(group)
        if members is None:
            members = self.check_group(node, group)
        if node.rank not in members:
            raise GraphError(
                f"{node.label()}: rank {node.rank} is not in its group {list(group)}")
        if node.span is not None or node.root is not None:
            self.check_span_root(node, group, members)

    def check_group(self, node: Node, group: tuple[int, ...]) -> frozenset[int]:
        """Check a group the first time it is seen; return (and remember) its member set."""
        bad = [r for r in group if not (isinstance(r, int) and 0 <= r < self.num_ranks)]
        if bad:
            raise GraphError(
                f"{node.label()}: group members {bad} are outside 0..{self.num_ranks - 1}"
            )
        members = frozenset(group)
        if len(members) != len(group):
            raise GraphError(f"{node.label()}: group {list(group)} repeats a rank")
        self.groups[group] = members
        return members

    def check_span_root(self, node: Node, group: tuple[int, ...],
                        members: frozenset[int]) -> None:
        """The root (in the span, else the group) and the folded span; a span is checked once
        per (group, span)."""
        span = node.span
        allowed = self.groups.get((group, span))
        checked = allowed is not None
        if allowed is None:
            allowed = frozenset(span) if span else members
        if node.root is not None and node.root not in allowed:
            raise GraphError(f"{node.label()}: root {node.root} is not in the group")
        if checked:
            return
        if span is not None:
            if not members <= frozenset(span) or len(frozenset(span)) != len(span):
                raise GraphError(f"{node.label()}: folded group {list(group)} must be "
                                 f"distinct members of its span {list(span)}")
            bad = [r for r in span if not 0 <= r < self.num_ranks]
            if bad:
                raise GraphError(f"{node.label()}: span members {bad} are outside "
                                 f"0..{self.num_ranks - 1}")
        self.groups[(group, span)] = allowed

    def match_collectives(self) -> list[CollectiveInstance]:
        instances: dict[tuple[tuple[int, ...], int], CollectiveInstance] = {}
        order: list[CollectiveInstance] = []
        for rank, nodes in enumerate(self.collective_nodes):
            seq: dict[tuple[int, ...], int] = {}
            for node in nodes:
                group = node.group
                k = seq.get(group, 0)
                seq[group] = k + 1
                key = (group, k)
                inst = instances.get(key)
                if inst is None:
                    inst = CollectiveInstance(len(order), node.group, key[1], node.collective,
                                              node.nbytes, node.algorithm, node.root,
                                              span=node.span)
                    instances[key] = inst
                    order.append(inst)
                else:
                    self.check_agrees(inst, node)
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

    def check_agrees(self, inst: CollectiveInstance, node: Node) -> None:
        first_rank, first_id = next(iter(inst.members.items()))
        first = self.node(first_rank, first_id)
        for attr in ("collective", "nbytes", "algorithm", "root", "span"):
            if getattr(first, attr) != getattr(node, attr):
                raise GraphError(
                    f"collective #{inst.seq} on group {list(inst.group)}: {first.label()} has "
                    f"{attr}={getattr(first, attr)!r} but {node.label()} has "
                    f"{attr}={getattr(node, attr)!r}"
                )

    def match_p2p(self) -> list[P2PPair]:
        sends: dict[tuple[int, int, int], list[Node]] = defaultdict(list)
        recvs: dict[tuple[int, int, int], list[Node]] = defaultdict(list)
        for node in self.p2p_nodes:
            if node.kind is _SEND:
                sends[(node.rank, node.peer, node.tag)].append(node)
            else:
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

    def check_acyclic(self, collectives: list[CollectiveInstance], pairs: list[P2PPair]) -> None:
        """One global dependency graph: each collective is a single vertex shared by its members,
        each receive also depends on its send. A cycle there deadlocks any backend.

        Kahn's algorithm over flat integer arrays: node ``i`` of rank ``r`` is vertex
        ``base[r] + i``, collective ``c`` is vertex ``total + c`` (its members' own vertices
        stay isolated). Linear in nodes plus edges; the cycle is located only on failure."""
        position: list[dict[int, int] | None] = []  # None: ids are 0..n-1 in order
        base: list[int] = []
        total = 0
        for nodes in self.by_rank:
            base.append(total)
            ids = list(nodes)
            position.append(None if ids == list(range(len(ids)))
                            else {nid: i for i, nid in enumerate(ids)})
            total += len(ids)

        def slot(rank: int, nid: int) -> int:
            pos = position[rank]
            return base[rank] + (nid if pos is None else pos[nid])

        rep = list(range(total + len(collectives)))  # vertex of each node slot
        for inst in collectives:
            v = total + inst.index
            for rank, nid in inst.members.items():
                rep[slot(rank, nid)] = v
        heads: list[int] = []  # edge k: heads[k] must finish before tails[k]
        tails: list[int] = []
        for rank, nodes in enumerate(self.by_rank):
            pos, b = position[rank], base[rank]
            for node in nodes.values():
                if node.deps:
                    v = rep[b + (node.id if pos is None else pos[node.id])]
                    for d in node.deps:
                        heads.append(rep[b + (d if pos is None else pos[d])])
                        tails.append(v)
        for p in pairs:
            heads.append(rep[slot(p.src, p.send_id)])
            tails.append(rep[slot(p.dst, p.recv_id)])
        if not _kahn_complete(len(rep), heads, tails):
            self.raise_cycle(collectives, pairs)

    def raise_cycle(self, collectives: list[CollectiveInstance], pairs: list[P2PPair]) -> None:
        """Find and name a cycle (only called once Kahn's algorithm proved there is one): the
        vertices in the order the check has always added them, so graphlib's depth-first
        search names the same cycle as before."""
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
            raise GraphError(self.describe_cycle(err.args[1], collectives)) from None
        raise AssertionError("Kahn's algorithm found a cycle that graphlib does not")

    def describe_cycle(self, cycle: list[tuple], collectives: list[CollectiveInstance]) -> str:
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


def _kahn_complete(num_vertices: int, heads: list[int], tails: list[int]) -> bool:
    """True when every vertex of the graph with edges ``heads[k] -> tails[k]`` can be ordered
    (Kahn's algorithm over a compressed adjacency array): False means a cycle."""
    indegree = [0] * num_vertices
    count = [0] * (num_vertices + 1)
    for t in tails:
        indegree[t] += 1
    for h in heads:
        count[h + 1] += 1
    start = list(accumulate(count))  # successors of u: succ[start[u]:start[u + 1]]
    fill = start[:-1]
    succ = [0] * len(heads)
    for h, t in zip(heads, tails, strict=True):
        succ[fill[h]] = t
        fill[h] += 1
    ready = [v for v in range(num_vertices) if not indegree[v]]
    done = 0
    while ready:
        u = ready.pop()
        done += 1
        for t in succ[start[u]:start[u + 1]]:
            indegree[t] -= 1
            if not indegree[t]:
                ready.append(t)
    return done == num_vertices
