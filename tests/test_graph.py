"""The event graph: building, matching across ranks, and every validation error."""

from __future__ import annotations

import pytest

from des.core.graph import CollectiveType, EventGraph, GraphError, NodeKind


def two_rank_allreduce() -> EventGraph:
    g = EventGraph(2, "ar")
    a = g.compute(0, flops=1e9, name="fwd")
    g.collective(0, "all_reduce", 1024, deps=[a])
    g.collective(1, "allreduce", 1024)
    return g


def test_collectives_match_by_group_and_sequence():
    g = EventGraph(4)
    first = g.collective_all("all_gather", 4096, group=[0, 1])
    second = g.collective_all("all_gather", 4096, group=[0, 1])
    other = g.collective_all("all_reduce", 64, group=[2, 3])
    g.validate()
    insts = g.collective_instances()
    assert [(i.group, i.seq) for i in insts] == [((0, 1), 0), ((0, 1), 1), ((2, 3), 0)]
    assert insts[0].members == first and insts[1].members == second
    assert insts[2].members == other
    assert insts[2].collective is CollectiveType.ALL_REDUCE


def test_p2p_pairs_match_in_order_per_src_dst_tag():
    g = EventGraph(2)
    s1, s2 = g.send(0, 1, 10, tag=7), g.send(0, 1, 20, tag=7)
    r1, r2 = g.recv(1, 0, 10, tag=7), g.recv(1, 0, 20, tag=7)
    pairs = g.p2p_pairs()
    assert [(p.send_id, p.recv_id, p.nbytes) for p in pairs] == [(s1, r1, 10), (s2, r2, 20)]


def test_collective_type_parsing_accepts_spellings_and_rejects_unknown():
    for spelling in ("all_reduce", "all-reduce", "AllReduce", "ALL_REDUCE"):
        assert CollectiveType.parse(spelling) is CollectiveType.ALL_REDUCE
    with pytest.raises(ValueError, match="expected one of all_reduce"):
        CollectiveType.parse("allreduce2")


def test_node_ids_and_kinds():
    g = two_rank_allreduce()
    kinds = [n.kind for n in g.nodes(0)]
    assert kinds == [NodeKind.COMPUTE, NodeKind.COLLECTIVE]
    assert [n.id for n in g.nodes(0)] == [0, 1]
    assert len(g) == 3


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda g: g.compute(0, deps=[5]), r"rank 0 node 0 depends on node 5"),
        (lambda g: g.compute(2), r"rank 2 is outside 0\.\.1"),
        (lambda g: (g.send(0, 1, 8), g.recv(1, 0, 16)), r"sends 8 B .* expects 16 B"),
        (lambda g: g.send(0, 1, 8, name="lonely"), r"'lonely'.*no matching receive"),
        (lambda g: g.recv(1, 0, 8), r"rank 1 node 0 has no matching send"),
        (lambda g: g.send(0, 5, 8), r"peer 5 is outside"),
        (lambda g: g.send(0, 0, 8), r"to itself"),
        (lambda g: g.compute(0, flops=-1), r"must be >= 0"),
        (lambda g: g.collective(0, "all_reduce", 8, group=[0, 3]), r"group members \[3\]"),
        (lambda g: g.collective(0, "all_reduce", 8, group=[0, 0]), r"repeats a rank"),
        (lambda g: g.collective(0, "all_reduce", 8, group=[1]), r"not in its group"),
        (lambda g: g.collective(0, "all_reduce", 8), r"ranks \[1\] never issue it"),
        (lambda g: (g.collective(0, "all_reduce", 8), g.collective(1, "all_gather", 8)),
         r"collective=.*all_reduce.* but rank 1 node 0 has collective=.*all_gather"),
        (lambda g: (g.collective(0, "all_reduce", 8), g.collective(1, "all_reduce", 16)),
         r"nbytes=8\.0 but rank 1 node 0 has nbytes=16\.0"),
        (lambda g: (g.collective(0, "broadcast", 8, root=0),
                    g.collective(1, "broadcast", 8, root=1)), r"root=0 but .* root=1"),
    ],
)
def test_validation_errors_name_rank_and_node(build, message):
    g = EventGraph(2)
    with pytest.raises(GraphError, match=message):
        build(g)
        g.validate()


def test_cycle_within_a_rank_is_reported():
    g = EventGraph(1)
    from des.core.graph import Node

    g.add(Node(0, 0, NodeKind.COMPUTE, "a", deps=(1,)))
    g.add(Node(0, 1, NodeKind.COMPUTE, "b", deps=(0,)))
    with pytest.raises(GraphError, match=r"cycle within rank 0: .*'a'.*'b'|cycle within rank 0"):
        g.validate()


def test_cross_rank_deadlock_through_send_and_recv_is_reported():
    # Each rank receives before it sends: neither send can ever start.
    g = EventGraph(2)
    r0 = g.recv(0, 1, 8)
    g.send(0, 1, 8, deps=[r0])
    r1 = g.recv(1, 0, 8)
    g.send(1, 0, 8, deps=[r1])
    with pytest.raises(GraphError, match=r"cycle across ranks \[0, 1\]"):
        g.validate()


def test_cross_rank_deadlock_through_collectives_is_reported():
    # Rank 0 runs A then B, rank 1 runs B then A (as dependencies, not just order).
    g = EventGraph(3)
    a0 = g.collective(0, "all_reduce", 8, group=[0, 1])
    g.collective(0, "all_reduce", 8, group=[0, 2], deps=[a0])
    b2 = g.collective(2, "all_reduce", 8, group=[0, 2])
    g.collective(2, "all_reduce", 8, group=[2, 1], deps=[b2])
    c1 = g.collective(1, "all_reduce", 8, group=[2, 1])
    g.collective(1, "all_reduce", 8, group=[0, 1], deps=[c1])
    with pytest.raises(GraphError, match="dependency cycle across ranks"):
        g.validate()


def test_graph_larger_than_topology_is_rejected():
    g = two_rank_allreduce()
    with pytest.raises(GraphError, match="2 ranks but the topology has only 1 NPUs"):
        g.validate(num_npus=1)


def test_duplicate_node_id_is_rejected():
    from des.core.graph import Node

    g = EventGraph(1)
    g.add(Node(0, 3, NodeKind.COMPUTE))
    with pytest.raises(GraphError, match="id 3 is already used on rank 0"):
        g.add(Node(0, 3, NodeKind.COMPUTE))


def test_memory_op_must_be_load_or_store():
    g = EventGraph(1)
    with pytest.raises(GraphError, match="expected 'load' or 'store'"):
        g.memory(0, 64, op="copy")


def test_zero_ranks_is_rejected():
    with pytest.raises(GraphError, match="at least one rank"):
        EventGraph(0)


def test_matching_is_recomputed_after_mutation():
    g = two_rank_allreduce()
    assert len(g.collective_instances()) == 1
    g.collective_all("all_gather", 8)
    assert len(g.collective_instances()) == 2
