"""Custom collectives (AstraSim's ``*-implementation-custom`` Chakra ETs): a ring written as a
program takes the ring's closed form on every backend, group positions map to members, and
malformed programs are refused with a SchemaError naming the file and the node."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest
from chakra.schema.protobuf.et_def_pb2 import (
    COMM_RECV_NODE,
    COMM_SEND_NODE,
    COMP_NODE,
    AttributeProto,
)
from chakra.schema.protobuf.et_def_pb2 import Node as ChakraNode
from helpers import write_et

from astra_bridge.configs import AstraConfigError, load_system
from astra_bridge.custom_collectives import CustomCollectiveError, read_program
from collectives import base
from collectives.base import PlanOptions, make_plan
from des.core.graph import CollectiveType, EventGraph
from des.core.schema import SchemaError
from des.sim.backends import run_backend
from des.sim.costs import MessageCost
from topologies import ring

GIB = 2**30 / 1e9  # AstraSim's GB/s in bytes/ns
AR = CollectiveType.ALL_REDUCE


@pytest.fixture(autouse=True)
def _registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Programs registered here (one name per tmp folder) leave the registry as it was."""
    monkeypatch.setattr(base, "_REGISTRY", dict(base._REGISTRY))


def send(nid: int, dst: int, size: int, deps: Sequence[int] = (), tag: int = 0) -> ChakraNode:
    return ChakraNode(id=nid, name=f"send{nid}", type=COMM_SEND_NODE, data_deps=list(deps),
                      attr=[AttributeProto(name="comm_dst", int64_val=dst),
                            AttributeProto(name="comm_size", int64_val=size),
                            AttributeProto(name="comm_tag", int64_val=tag)])


def recv(nid: int, src: int, size: int, deps: Sequence[int] = (), tag: int = 0) -> ChakraNode:
    return ChakraNode(id=nid, name=f"recv{nid}", type=COMM_RECV_NODE, data_deps=list(deps),
                      attr=[AttributeProto(name="comm_src", int64_val=src),
                            AttributeProto(name="comm_size", int64_val=size),
                            AttributeProto(name="comm_tag", int64_val=tag)])


def comp(nid: int, micros: int, deps: Sequence[int] = ()) -> ChakraNode:
    return ChakraNode(id=nid, name=f"comp{nid}", type=COMP_NODE, data_deps=list(deps),
                      duration_micros=micros)


def ring_program(n: int, size: int, comp_micros: int = 0) -> list[list[ChakraNode]]:
    """MSCCLang's ring all-reduce as its converter writes it: per step a send to the next
    rank, then a receive from the previous one (after the send), then (reduce-scatter half)
    a compute node."""
    ranks = []
    for r in range(n):
        nodes: list[ChakraNode] = []
        last: list[int] = []
        for k in range(2 * (n - 1)):
            nodes.append(send(len(nodes), (r + 1) % n, size, last))
            nodes.append(recv(len(nodes), (r - 1) % n, size, [len(nodes) - 1]))
            last = [len(nodes) - 1]
            if comp_micros and k < n - 1:
                nodes.append(comp(len(nodes), comp_micros, last))
                last = [len(nodes) - 1]
        ranks.append(nodes)
    return ranks


def system(tmp_path: Path, prefix: str, **extra) -> Path:
    path = tmp_path / "system.json"
    path.write_text(json.dumps({"all-reduce-implementation-custom": [prefix],
                                "preferred-dataset-splits": 4, **extra}))
    return path


def run(sys_path: Path, n: int, nbytes: float, aware: bool, backend: str = "simpy",
        group: Sequence[int] | None = None) -> dict[int, float]:
    topo = ring(n, 50 * GIB, 500.0)
    graph = EventGraph(n, "custom")
    graph.collective_all(AR, nbytes, group=group)
    options = load_system(sys_path, dims=1).engine_options(congestion_aware=aware)
    result = run_backend(backend, topo, graph, options=options)
    (stats,) = result.collectives
    if backend == "simpy":  # the program's messages are counted like any collective's
        assert stats.bytes_injected == stats.bytes_delivered > 0
    return {r: s.finished_ns for r, s in result.ranks.items()}


@pytest.mark.parametrize("backend", ["simpy", "analytical"])
@pytest.mark.parametrize("aware", [True, False])
def test_ring_program_takes_the_ring_closed_form(tmp_path: Path, aware: bool,
                                                 backend: str) -> None:
    """2(n-1) messages of S/n in sequence, nothing else: no endpoint delay, no chunks, no
    reduction cost (AstraSim's custom path has none; the workload's 1 MiB is ignored)."""
    n, size = 8, 131072
    write_et(tmp_path / "ring", ring_program(n, size))
    got = run(system(tmp_path, "ring"), n, 1 << 20, aware, backend)
    options = load_system(tmp_path / "system.json", dims=1).engine_options(
        congestion_aware=aware)
    cost = MessageCost(ring(n, 50 * GIB, 500.0), options)
    plan = make_plan(AR, tuple(range(n)), size * n, "ring",
                     options=PlanOptions(integer_sizes=True))
    closed = plan.closed_form(cost, lambda step: 0.0)
    assert closed == 2 * (n - 1) * cost(0, 1, size) == 14 * 2941
    assert got == dict.fromkeys(range(n), closed)


def test_compute_nodes_take_their_runtime(tmp_path: Path) -> None:
    """The MSCCLang example's shape: 7 reduce-scatter steps with a 7 us compute each."""
    write_et(tmp_path / "ring", ring_program(8, 131072, comp_micros=7))
    got = run(system(tmp_path, "ring"), 8, 1 << 20, aware=False)
    assert set(got.values()) == {14 * 2941 + 7 * 7000}


def test_group_positions_map_to_members(tmp_path: Path) -> None:
    """Program rank i is the group's i-th member (AstraSim's comm_group->involved_NPUs): a
    4-rank ring over NPUs 1, 3, 5, 7 of an 8-ring crosses two links per message."""
    write_et(tmp_path / "ring", ring_program(4, 65536))
    group = [1, 3, 5, 7]
    got = run(system(tmp_path, "ring"), 8, 1 << 20, aware=False, group=group)
    options = load_system(tmp_path / "system.json", dims=1).engine_options(
        congestion_aware=False)
    per_message = MessageCost(ring(8, 50 * GIB, 500.0), options)(1, 3, 65536)
    assert {got[r] for r in group} == {6 * per_message}
    closed = run(system(tmp_path, "ring"), 8, 1 << 20, aware=False, backend="analytical",
                 group=group)
    assert {closed[r] for r in group} == {6 * per_message}


def test_relative_prefix_is_read_from_the_system_json_folder(tmp_path: Path,
                                                             monkeypatch) -> None:
    (tmp_path / "cc").mkdir()
    write_et(tmp_path / "cc" / "ring", ring_program(4, 4096))
    monkeypatch.chdir(tmp_path.parent)
    options = load_system(system(tmp_path, "cc/ring"), dims=1).engine_options()
    assert options.algorithms["all_reduce"] == f"custom:{tmp_path / 'cc' / 'ring'}"


def test_custom_key_takes_one_path(tmp_path: Path) -> None:
    path = tmp_path / "system.json"
    path.write_text(json.dumps({"all-reduce-implementation-custom": ["a", "b"]}))
    with pytest.raises(AstraConfigError, match="all-reduce-implementation-custom"):
        load_system(path, dims=1)


# --------------------------------------------------------------------------- malformed ETs
def refused(prefix: Path, match: str) -> CustomCollectiveError:
    with pytest.raises(CustomCollectiveError, match=match) as info:
        read_program(prefix)
    assert isinstance(info.value, SchemaError)
    return info.value


def test_missing_rank_file(tmp_path: Path) -> None:
    prefix = write_et(tmp_path / "ring", ring_program(4, 4096))
    (tmp_path / "ring.2.et").unlink()
    err = refused(prefix, "missing rank file")
    assert "ring.2.et" in str(err)


def test_missing_last_rank_file_names_the_node_that_needs_it(tmp_path: Path) -> None:
    prefix = write_et(tmp_path / "ring", ring_program(4, 4096))
    (tmp_path / "ring.3.et").unlink()
    err = str(refused(prefix, "missing rank file"))
    assert "ring.3.et" in err and "ring.0.et: node 1 'recv1'" in err


def test_send_without_matching_receive(tmp_path: Path) -> None:
    ranks = [[send(0, 1, 4096)], [comp(0, 1)]]
    err = str(refused(write_et(tmp_path / "p", ranks), "no matching receive"))
    assert "p.0.et: node 0 'send0'" in err and "p.1.et" in err


def test_receive_of_another_size_does_not_match(tmp_path: Path) -> None:
    ranks = [[send(0, 1, 4096)], [recv(0, 0, 1024)]]
    refused(write_et(tmp_path / "p", ranks), r"1024 bytes\) has no matching send")


def test_dependency_cycle(tmp_path: Path) -> None:
    ranks = [[send(0, 1, 64, deps=[2]), comp(1, 1, [0]), comp(2, 1, [1])],
             [recv(0, 0, 64)]]
    err = str(refused(write_et(tmp_path / "p", ranks), "dependency cycle"))
    assert "p.0.et: node" in err and "0 -> " in err


def test_cross_rank_wait_cycle(tmp_path: Path) -> None:
    """Every rank receives before it sends: each waits for the previous one, forever."""
    n = 3
    ranks = [[recv(0, (r - 1) % n, 64), send(1, (r + 1) % n, 64, [0])] for r in range(n)]
    refused(write_et(tmp_path / "p", ranks), r"p\.0\.et: node 0 'recv0': waits forever")


def test_group_of_another_size_is_refused(tmp_path: Path) -> None:
    write_et(tmp_path / "ring", ring_program(4, 4096))
    with pytest.raises(ValueError, match="written for 4 ranks but the all_reduce group has 8"):
        run(system(tmp_path, "ring"), 8, 1 << 20, aware=False)
