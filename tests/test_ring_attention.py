"""Ring attention's two models (workloads/ring_attention.py): the phased model is within its
stated bound of the detailed one (equal when compute-bound), moves the same bytes over the same
links, has O(1) nodes per rank, layer and pass, and says it is approximate."""

from __future__ import annotations

import dataclasses
from collections import Counter, defaultdict

import pytest

import topologies as topo
from des.app.config import ConfigError, scenario_from_dict
from des.app.llm_report import training_report
from des.core.hardware import load_gpu
from des.sim.backends import get_backend
from des.sim.costs import MessageCost, p2p_time
from des.sim.options import EngineOptions
from workloads.llm import build_training
from workloads.models import ModelConfig
from workloads.parallel import ParallelConfig, ParallelError

GPU = load_gpu("A100-SXM4-80GB")
TINY = ModelConfig(name="tiny", layers=4, hidden=1024, heads=16, kv_heads=16, head_dim=64,
                   ffn=4096, activation="gelu", vocab=8, seq=2048)
OPTIONS = EngineOptions(comm_streams=2)
BACKENDS = ("simpy", "analytical")
# (bandwidth GB/s, latency ns): transfer-bound (slow, high latency) and compute-bound (fast)
SLOW, FAST = (25.0, 5000.0), (1e6, 0.0)


def both(par: ParallelConfig, topology, backend: str, options: EngineOptions = OPTIONS):
    """(workload, result) for the detailed and the phased model."""
    out = {}
    for mode in ("detailed", "phased"):
        workload = build_training(TINY, dataclasses.replace(par, ring_attention=mode),
                                  topology.num_npus)
        result = get_backend(backend).run(topology, workload.graph, hardware=GPU,
                                          options=options)
        out[mode] = workload, result
    return out


def ring_bound(workload, result, topology, options: EngineOptions) -> float:
    """The stated bound on |detailed - phased|: per ring, |(cp - 1) T_x(b) - T_rot|, with
    T_x(b) the uncontended send of one block and T_rot the phased rotation's time (read off the
    run), summed over each rank's rings (they run one after another), worst rank."""
    cp = workload.par.cp
    cost = MessageCost(topology, options)
    per_rank: dict[int, float] = defaultdict(float)
    for op in result.ops:
        if op.category != "cp":
            continue
        node = workload.graph.node(op.rank, op.node)
        assert node.kind.value == "collective" and node.collective.value == "all_gather"
        ring = node.group
        peer = ring[(ring.index(op.rank) + 1) % cp]
        t_x = p2p_time(node.nbytes / cp, op.rank, peer, cost, options)
        per_rank[op.rank] += abs((cp - 1) * t_x - (op.end_ns - op.start_ns))
    return max(per_rank.values())


STRATEGIES = {
    "cp": dict(),
    "cp+tp": dict(tp=2),
    "cp+tp+sp": dict(tp=2, sp=True),
    "cp+dp": dict(dp=2, global_batch=2, bucket_bytes=1e15),  # gradients after the backward
    "cp+recompute": dict(recompute="full"),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("strategy", list(STRATEGIES))
@pytest.mark.parametrize("cp", [2, 4, 8])
@pytest.mark.parametrize("network", ["slow", "fast"])
def test_phased_is_within_its_bound_of_detailed(backend, strategy, cp, network):
    par = ParallelConfig(cp=cp, **STRATEGIES[strategy])
    bandwidth, latency = SLOW if network == "slow" else FAST
    topology = topo.switch(par.world, bandwidth, latency)
    runs = both(par, topology, backend)
    detailed = runs["detailed"][1].makespan_ns
    phased = runs["phased"][1].makespan_ns
    bound = ring_bound(*runs["phased"], topology, OPTIONS)
    assert abs(detailed - phased) <= bound * (1 + 1e-9) + 1e-9 * detailed
    if network == "fast":  # compute-bound: exactly equal
        assert phased == pytest.approx(detailed, rel=1e-12)
    else:  # transfer-bound: the rotation's pipelined chunks pay fewer per-exchange latencies
        assert phased <= detailed * (1 + 1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_both_models_give_the_closed_form_of_a_ring(backend):
    """One layer's forward ring, uncontended: (cp - 1) max(t_c, T_x(b)) + t_c for detailed,
    max((cp - 1) t_c, T_x((cp - 1) b)) + t_c for phased, read off the op records."""
    cp = 4
    par = ParallelConfig(cp=cp)
    topology = topo.switch(cp, *SLOW)
    runs = both(par, topology, backend)
    cost = MessageCost(topology, OPTIONS)
    for mode, (workload, result) in runs.items():
        ops = {op.name: op for op in result.ops if op.rank == 0}
        if mode == "detailed":
            send = next(n for n in workload.graph.nodes(0) if n.category == "cp")
            t_c = ops["fwd/L0.attn0"].end_ns - ops["fwd/L0.attn0"].start_ns
            t_x = p2p_time(send.nbytes, 0, send.peer, cost, OPTIONS)
            start, end = ops["fwd/L0.attn0"].start_ns, ops[f"fwd/L0.attn{cp - 1}"].end_ns
            expected = (cp - 1) * max(t_c, t_x) + t_c
        else:
            t_c = ops["fwd/L0.attn_last"].end_ns - ops["fwd/L0.attn_last"].start_ns
            t_rot = ops["cp/fwd/L0.kv"].end_ns - ops["cp/fwd/L0.kv"].start_ns
            start, end = ops["fwd/L0.attn_ring"].start_ns, ops["fwd/L0.attn_last"].end_ns
            expected = max((cp - 1) * t_c, t_rot) + t_c
            assert ops["fwd/L0.attn_ring"].end_ns - start == pytest.approx((cp - 1) * t_c)
        assert end - start == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("cp", [2, 4, 8])
def test_both_models_move_the_same_bytes_over_the_same_links(cp):
    par = ParallelConfig(cp=cp, tp=2)
    topology = topo.switch(par.world, *SLOW)
    runs = both(par, topology, "simpy")
    per_link = {mode: {lk.id: lk.bytes for lk in result.links}
                for mode, (_, result) in runs.items()}
    assert sum(per_link["detailed"].values()) > 0
    assert per_link["phased"] == pytest.approx(per_link["detailed"], rel=1e-12)


def test_phased_nodes_per_rank_and_layer_do_not_grow_with_cp():
    counts = {}
    for mode in ("detailed", "phased"):
        for cp in (2, 4, 8, 16, 64):
            model = dataclasses.replace(TINY, layers=1, seq=64 * 64)
            graph = build_training(model, ParallelConfig(cp=cp, ring_attention=mode), cp).graph
            counts[mode, cp] = Counter(n.name.split(".")[0] for n in graph.nodes(0)
                                       if "/L0" in n.name)
    for cp in (2, 4, 8, 16, 64):
        assert counts["phased", cp] == counts["phased", 2]  # the same nodes whatever cp
        assert sum(counts["detailed", cp].values()) - sum(counts["phased", cp].values()) \
            == 2 * (4 * cp - 3 - 3)  # forward and backward: 4 cp - 3 nodes become 3
    phased = Counter(n.kind.value for n in build_training(
        TINY, ParallelConfig(cp=8, ring_attention="phased"), 8).graph.nodes(0)
        if n.category == "cp")
    assert phased == {"collective": 2 * TINY.layers}


def test_phased_node_kernels_are_shared_not_copied():
    graph = build_training(TINY, ParallelConfig(cp=8, ring_attention="phased"), 8).graph
    rings = [n for n in graph.all_nodes() if n.name.endswith(".attn_ring")]
    assert len({id(n.kernels) for n in rings}) == 2  # one forward, one backward sequence
    assert all(len(n.kernels) % 7 == 0 for n in rings)  # cp - 1 blocks, launches included


def test_the_default_is_the_exact_detailed_model():
    assert ParallelConfig().ring_attention == "detailed"
    assert ParallelConfig(cp=4).approximations == ()
    assert ParallelConfig(ring_attention="phased").approximations == ()  # no ring at cp = 1
    assert ParallelConfig(cp=4, ring_attention="phased").approximations


def test_phased_runs_say_they_are_approximate():
    workload = build_training(TINY, ParallelConfig(cp=4, ring_attention="phased"), 4)
    assert "approximate" in workload.graph.name
    result = get_backend("analytical").run(topo.switch(4, *SLOW), workload.graph, hardware=GPU,
                                           options=OPTIONS)
    assert "approximate" in result.meta["graph"]
    report = training_report(result, workload, GPU)
    assert report["strategy"]["ring_attention"] == "phased"
    assert report["approximations"] and "ring_attention" in report["approximations"][0]
    exact = build_training(TINY, ParallelConfig(cp=4), 4)
    assert "approximate" not in exact.graph.name


def _scenario(parallel: dict) -> dict:
    return {"name": "ring", "topology": {"kind": "switch", "npus": 4, "bandwidth": "100 GB/s",
                                         "latency": "1 us"},
            "hardware": "A100-SXM4-80GB",
            "workload": {"kind": "llm_training", "model": "llama2-7b", "seq": 1024,
                         "parallel": parallel}}


def test_scenario_key_is_parsed_and_validated():
    scenario = scenario_from_dict(_scenario({"cp": 4, "ring_attention": "phased"}))
    assert scenario.workload.par.ring_attention == "phased"
    with pytest.raises(ConfigError, match=r"workload.parallel.ring_attention 'coarse'; "
                                          r"expected one of detailed, phased"):
        scenario_from_dict(_scenario({"cp": 4, "ring_attention": "coarse"}))
    with pytest.raises(ParallelError, match="ring_attention"):
        ParallelConfig(ring_attention="Phased")
