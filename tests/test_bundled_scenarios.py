"""Every bundled scenario (``configs/scenarios/*.yaml``) loads, runs, and its Result is
consistent with the graph it was asked to run and with the closed-form backend:

* every node ran exactly once, after its dependencies, and no two nodes of one stream of a rank
  overlap; compute and memory nodes took their hardware-model time divided by the rank's speed;
* every rank's compute + exposed communication + idle time adds up to when it finished;
* one collective record per collective of the graph, with its type, bytes and group; its start
  and end are its first member's join and last member's finish;
* links carry exactly what the collective step programs and point-to-point sends put on their
  routes (bytes and messages per link), never faster than their bandwidth allows;
* the makespan is at least the analytical backend's (no contention) and equal to it on the
  scenarios that have no contention; the others visibly contend.

The heaviest LLM scenarios run with fewer micro-batches or generated tokens (see ``REDUCED``):
the same model, parallelism, folding, topology and hardware, fewer repetitions of the same step.
Every check is per node, per collective or per link, so it holds at any repetition count; the
full sizes are what ``des simulate NAME`` runs, and they are not run here.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections import Counter, defaultdict

import pytest
import yaml

from collectives.base import make_plan
from des.app.config import Scenario, load_scenario, scenario_from_dict
from des.core.graph import NodeKind
from des.core.paths import bundled
from des.core.results import Result, union_length
from des.sim.analytical import analyze
from des.sim.choices import local_time, logical_dims
from des.sim.engine import simulate
from des.sim.options import Chunking
from topologies.faults import fault_links

BUNDLED = bundled("scenarios")

# Scenarios whose traffic contends for links (or loses one mid-run): the analytical backend,
# which has no contention, is a strict lower bound there. Everywhere else it must agree.
# llama70b_torus3d_64: its two data-parallel groups per tensor-parallel line are strided boxes
# (every other y): their hierarchical phases along y share the y links
CONTENDED = {"fattree_k4_alltoall", "llama70b_torus3d_64", "mixtral_8x7b_ep8",
             "torus4x4_link_failure"}

# workload.parallel settings cut for speed: each must be smaller than the bundled value.
REDUCED: dict[str, dict[str, int]] = {
    "gpt3_175b_tp8_pp8_a100": {"global_batch": 16},  # 16 of 64 micro-batches, still 2 x pp
    "llama2_70b_tp8_inference": {"generate": 4},  # prefill and 4 of 256 decode steps
    "llama70b_torus3d_64": {"global_batch": 64},  # 1 of 8 micro-batches per rank
    "llama2_7b_dp8_a100": {"global_batch": 16},  # 2 of 8 micro-batches per rank
    "llama2_7b_tp8_a100": {"global_batch": 2},  # 2 of 8 micro-batches
    "mixtral_8x7b_ep8": {"global_batch": 16},  # 1 of 2 micro-batches per rank
}

REL = 1e-9  # float residue of adding up many intervals


def load(name: str) -> Scenario:
    """The bundled scenario, with ``REDUCED`` applied to its ``workload.parallel``."""
    if name not in REDUCED:
        return load_scenario(name)
    data = yaml.safe_load(BUNDLED[name].read_text(encoding="utf-8"))
    parallel = data["workload"].get("parallel", {})
    for key, value in REDUCED[name].items():
        assert parallel[key] > value, f"{name}: REDUCED.{key} no longer reduces anything"
        parallel[key] = value
    return scenario_from_dict(data, source=name)


def expected_traffic(sc: Scenario, result: Result) -> tuple[dict[int, float], Counter[int], int]:
    """(bytes per link id, messages per link id, messages sent) that the graph's collectives
    (their step programs, with the algorithm and chunk count the run reports) and sends put on
    the topology's routes. A folded graph's messages are its representatives', repeated by
    every translation of the fold onto the ranks they stand for."""
    topo, opts, fold = sc.topology, sc.options, sc.graph.fold
    assert opts.chunking is Chunking.SPLIT and opts.chunk_bytes is None, (
        "expected_traffic assumes a collective is cut into `chunks` equal pieces")
    if fold is not None and not result.meta["folded"]["exact"]:
        fold = None  # the topology breaks the symmetry: span collectives were closed-form
    table = fold.table() if fold is not None else [range(topo.num_npus)]
    nbytes: dict[int, float] = defaultdict(float)
    messages: Counter[int] = Counter()
    sent = 0

    def carry(src: int, dst: int, size: float, count: int) -> None:
        nonlocal sent
        for image in table:
            sent += count
            for link in topo.route(image[src], image[dst]):
                nbytes[link] += size * count
                messages[link] += count

    stats = {c.index: c for c in result.collectives}
    for inst in sc.graph.collective_instances():
        if inst.span and fold is None:
            continue  # an explicitly folded collective without a fold is closed-form
        run = stats[inst.index]
        members = inst.span or inst.group
        plan = make_plan(inst.collective, members, inst.nbytes / run.chunks, run.algorithm,
                         dims=logical_dims(topo, members), root=inst.root,
                         options=opts.plan_options)
        for rank in inst.group:
            for k in range(plan.num_steps(rank)):
                for peer, size in plan.step(rank, k).sends:
                    carry(rank, peer, size, run.chunks)
    for pair in sc.graph.p2p_pairs():
        left = pair.nbytes
        if left == 0:
            carry(pair.src, pair.dst, 0.0, 1)
        while left > 0:
            size = min(opts.p2p_chunk_bytes, left)
            carry(pair.src, pair.dst, size, 1)
            left -= size
    return nbytes, messages, sent


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=REL, abs_tol=1e-6)


def check_ops(sc: Scenario, result: Result) -> None:
    graph, opts = sc.graph, sc.options
    ran = Counter((op.rank, op.node) for op in result.ops)
    assert set(ran) == {(n.rank, n.id) for n in graph.all_nodes()}, "nodes missing or invented"
    assert max(ran.values(), default=1) == 1, "a node ran twice"
    end = {(op.rank, op.node): op.end_ns for op in result.ops}
    streams: dict[tuple[int, str], list[tuple[float, float]]] = defaultdict(list)
    compute: dict[int, float] = defaultdict(float)
    durations: dict[tuple, float] = {}  # layers repeat: time each distinct node once
    for op in result.ops:
        node = graph.node(op.rank, op.node)
        late = [d for d in node.deps if end[(op.rank, d)] > op.start_ns]
        assert not late, f"{node.label()} started before its dependencies {late} ended"
        if op.stream != "p2p":
            streams[(op.rank, op.stream)].append((op.start_ns, op.end_ns))
        if node.kind in (NodeKind.COMPUTE, NodeKind.MEMORY):
            key = (node.kind, node.flops, node.nbytes, node.op_class, node.duration_ns,
                   tuple(node.kernels or ()))
            if key not in durations:
                durations[key] = local_time(node, sc.hardware, opts)
            took = op.end_ns - op.start_ns
            assert close(took, durations[key] / opts.speed.get(op.rank, 1.0)), (
                f"{node.label()} took {took} ns")
            compute[op.rank] += took
    for (rank, stream), spans in streams.items():
        spans.sort()
        for (_, a_end), (b_start, _) in itertools.pairwise(spans):
            assert b_start >= a_end, f"rank {rank} ran two nodes at once on {stream}"
    assert set(result.ranks) == set(range(graph.num_ranks))
    finished: dict[int, float] = defaultdict(float)
    for op in result.ops:
        finished[op.rank] = max(finished[op.rank], op.end_ns)
    for rank, st in result.ranks.items():
        own = rank if st.represented_by is None else st.represented_by  # folded: its figures
        assert st.finished_ns == finished[own]
        # one compute stream: its busy time is the sum of its nodes' durations
        assert close(st.compute_ns, compute[own]), f"rank {rank}: {st}"
        assert close(st.compute_ns + st.exposed_comm_ns + st.idle_ns, st.finished_ns), (
            f"rank {rank}: {st}")
        assert close(st.comm_ns, st.exposed_comm_ns + st.overlap_ns), f"rank {rank}: {st}"
        assert min(st.compute_ns, st.comm_ns, st.exposed_comm_ns, st.idle_ns) >= 0
    assert result.makespan_ns == max(finished.values())
    # ranks with work finish after t=0 (folded tensor-parallel peers have none)
    assert all(st.finished_ns > 0 for r, st in result.ranks.items()
               if next(graph.nodes(r), None) is not None)


def check_collectives(sc: Scenario, result: Result) -> None:
    instances = sc.graph.collective_instances()
    assert [c.index for c in result.collectives] == [i.index for i in instances]
    spans = {(op.rank, op.node): (op.start_ns, op.end_ns) for op in result.ops
             if op.kind == "collective"}
    for stats, inst in zip(result.collectives, instances, strict=True):
        assert (stats.collective, stats.nbytes, tuple(stats.group)) == (
            inst.collective.value, inst.nbytes, inst.span or inst.group), inst
        members = [spans[(r, nid)] for r, nid in inst.members.items()]
        assert stats.start_ns == min(s for s, _ in members), inst
        assert close(stats.end_ns, max(e for _, e in members)), inst
        assert close(stats.time_ns, stats.end_ns - stats.start_ns), inst


def check_links(name: str, sc: Scenario, result: Result) -> None:
    nbytes, messages, sent = expected_traffic(sc, result)
    assert result.meta["messages"] == sent
    for lk in result.links:
        assert lk.busy_ns >= lk.bytes / (lk.bandwidth_GBps * lk.derate) * (1 - REL), lk
        assert 0.0 <= lk.utilization <= 1.0 + REL, lk
    carried = sum(lk.bytes for lk in result.links)
    if sc.options.timed_faults:  # messages caught on the failed cable took detours
        assert result.meta["reroutes"] > 0, f"{name}: the timed fault never hit traffic"
        assert carried >= sum(nbytes.values()) * (1 - REL)
        return
    wrong = [(lk.id, lk.bytes, nbytes.get(lk.id, 0.0), lk.messages, messages[lk.id])
             for lk in result.links
             if lk.messages != messages[lk.id]
             or lk.bytes != pytest.approx(nbytes.get(lk.id, 0.0), rel=REL)]
    assert not wrong, f"{name}: (link, bytes, expected, messages, expected): {wrong[:5]}"
    assert sum(lk.messages for lk in result.links) == result.meta["hops"]


@pytest.mark.parametrize("name", sorted(BUNDLED))
def test_bundled_scenario_runs_consistently(name: str) -> None:
    sc = load(name)
    assert sc.name == name
    assert len(sc.graph) > 0
    result = simulate(sc.topology, sc.graph, hardware=sc.hardware, options=sc.options)
    check_ops(sc, result)
    check_collectives(sc, result)
    check_links(name, sc, result)

    # the analytical backend cannot take timed faults; without them it is still a lower bound
    options = dataclasses.replace(sc.options, timed_faults=[])
    bound = analyze(sc.topology, sc.graph, hardware=sc.hardware, options=options).makespan_ns
    assert result.makespan_ns >= bound * (1 - REL), (
        f"{name}: simulated {result.makespan_ns} beats the contention-free bound {bound}")
    if name in CONTENDED:
        assert result.makespan_ns > 1.01 * bound, f"{name}: listed as contended but is not"
    else:
        assert result.makespan_ns == pytest.approx(bound, rel=1e-6), (
            f"{name}: simulated {result.makespan_ns} vs analytical {bound}; if it contends by "
            "design, list it in CONTENDED")


def test_reductions_name_bundled_scenarios() -> None:
    assert set(REDUCED) <= set(BUNDLED)
    assert set(BUNDLED) >= CONTENDED


def test_failed_cable_activity_matches_its_busy_time() -> None:
    sc = load("torus4x4_link_failure")
    (fault,) = sc.options.timed_faults
    options = dataclasses.replace(sc.options, record_link_activity=True)
    result = simulate(sc.topology, sc.graph, options=options)
    for link in fault_links(sc.topology, fault):
        busy = result.link_activity.get(link, [])
        assert not [iv for iv in busy if fault.at_ns <= iv[0] < fault.until_ns], link
        assert union_length(busy) == pytest.approx(result.links[link].busy_ns, rel=REL), link
