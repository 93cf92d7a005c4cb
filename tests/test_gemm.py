"""Distributed GEMM workloads: per-rank FLOPs and bytes, the collective of each split, times
against the roofline and the network, the report and the scenario kind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

import topologies as topo
from des.app.cli import EXIT_OK, main
from des.app.config import ConfigError, load_scenario, scenario_from_dict
from des.core.graph import CollectiveType, NodeKind
from des.core.hardware import compute_time_ns, load_gpu
from des.sim.engine import simulate
from workloads.gemm import GemmWorkload, build_gemm, gemm_report, local_gemm
from workloads.parallel import ParallelError

H100 = load_gpu("H100-SXM5-80GB")
M, N, K = 4096, 2048, 8192


def nodes(work: GemmWorkload, rank: int = 0):
    return list(work.graph.nodes(rank))


@pytest.mark.parametrize("shard", ["m", "n", "k"])
@pytest.mark.parametrize("tp", [1, 2, 8])
def test_flops_per_rank_are_a_tp_th_of_the_gemm(shard: str, tp: int) -> None:
    work = build_gemm(M, N, K, tp=tp, shard=shard, npus=tp)
    for rank in range(tp):
        compute = [n for n in nodes(work, rank) if n.kind is NodeKind.COMPUTE]
        assert len(compute) == 1
        assert compute[0].flops == 2.0 * M * N * K / tp
        assert compute[0].kernels[0][2] == "gemm"
    assert work.flops == 2.0 * M * N * K


@pytest.mark.parametrize(("shard", "a", "b", "c"), [
    ("m", M * K / 8, K * N, M * N / 8),
    ("n", M * K, K * N / 8, M * N / 8),
    ("k", M * K / 8, K * N / 8, M * N),
])
def test_bytes_read_the_shards_and_write_c(shard: str, a: float, b: float, c: float) -> None:
    work = build_gemm(M, N, K, tp=8, shard=shard, npus=8, dtype_bytes=4)
    assert nodes(work)[0].nbytes == 4 * (a + b + c)
    assert local_gemm(M, N, K, 8, shard, 4) == (2.0 * M * N * K / 8, 4 * (a + b + c))


@pytest.mark.parametrize(("shard", "gather", "kind"), [
    ("m", True, CollectiveType.ALL_GATHER),
    ("n", True, CollectiveType.ALL_GATHER),
    ("k", True, CollectiveType.ALL_REDUCE),
    ("k", False, CollectiveType.REDUCE_SCATTER),
    ("m", False, None),
    ("n", False, None),
])
def test_collective_of_each_split(shard: str, gather: bool, kind: CollectiveType | None
                                  ) -> None:
    work = build_gemm(M, N, K, tp=4, shard=shard, npus=4, gather_output=gather)
    work.graph.validate(num_npus=4)
    colls = [n for r in range(4) for n in nodes(work, r) if n.kind is NodeKind.COLLECTIVE]
    assert work.collective is kind
    if kind is None:
        assert colls == []
        return
    assert len(colls) == 4
    for node in colls:
        assert node.collective is kind
        assert node.nbytes == M * N * 2  # gathered C, or the full C reduced
        assert node.group == (0, 1, 2, 3)
        assert node.deps == (0,)  # after the local GEMM


def test_one_rank_is_the_roofline_of_the_whole_gemm() -> None:
    work = build_gemm(M, N, K, tp=1, shard="k", npus=1)
    result = simulate(topo.switch(2, 450.0, 700.0), work.graph, hardware=H100)
    flops, nbytes = 2.0 * M * N * K, 2.0 * (M * K + K * N + M * N)
    assert result.makespan_ns == pytest.approx(compute_time_ns(H100, flops, nbytes, "gemm"))
    assert work.collective is None


@pytest.mark.parametrize("shard", ["m", "n", "k"])
def test_fast_network_time_is_compute_time(shard: str) -> None:
    work = build_gemm(M, N, K, tp=8, shard=shard, npus=8)
    result = simulate(topo.switch(8, 1e7, 0.0), work.graph, hardware=H100)
    flops, nbytes = local_gemm(M, N, K, 8, shard)
    compute = compute_time_ns(H100, flops, nbytes, "gemm")
    assert result.makespan_ns == pytest.approx(compute, rel=0.01)
    report = gemm_report(result, work)
    assert report["compute_share"] > 0.99
    assert report["tflops"] == pytest.approx(2.0 * M * N * K / result.makespan_ns * 1e-3)


def test_slow_network_all_reduce_dominates_the_k_split() -> None:
    work = build_gemm(M, N, K, tp=8, shard="k", npus=8)
    result = simulate(topo.switch(8, 10.0, 1000.0), work.graph, hardware=H100)
    report = gemm_report(result, work, H100.peak_flops["bf16"] * 1e9)
    # ring all-reduce: 2 (n-1)/n of C through each 10 GB/s port
    ring = 2 * 7 / 8 * M * N * 2 / 10.0
    assert report["communication_s"] * 1e9 == pytest.approx(ring, rel=0.05)
    assert report["communication_share"] > 0.9
    assert report["compute_share"] + report["communication_share"] == pytest.approx(1.0)
    assert report["collective"] == "all_reduce" and report["collective_bytes"] == M * N * 2
    assert 0 < report["fraction_of_peak"] < 0.1


def test_k_split_moves_more_than_the_m_split_without_gather() -> None:
    switch = topo.switch(8, 50.0, 1000.0)
    k = simulate(switch, build_gemm(M, N, K, tp=8, shard="k", npus=8).graph, hardware=H100)
    m = simulate(switch, build_gemm(M, N, K, tp=8, shard="m", npus=8,
                                    gather_output=False).graph, hardware=H100)
    assert k.makespan_ns > 2 * m.makespan_ns


def test_fold_tp_gives_the_same_time() -> None:
    switch = topo.switch(8, 450.0, 700.0)
    full = simulate(switch, build_gemm(M, N, K, tp=8, shard="k", npus=8).graph,
                    hardware=H100)
    work = build_gemm(M, N, K, tp=8, shard="k", npus=8, fold_tp=True)
    assert work.simulated_ranks == [0]
    folded = simulate(switch, work.graph, hardware=H100)
    assert folded.makespan_ns == pytest.approx(full.makespan_ns, rel=0.01)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"tp": 3, "npus": 3}, "does not split over tp = 3"),
    ({"npus": 4}, "topology has 4 NPUs"),
    ({"shard": "x"}, "shard 'x'"),
    ({"gather_output": "yes"}, "gather_output"),
])
def test_errors(kwargs: dict, message: str) -> None:
    args = {"tp": 8, "shard": "m", "npus": 8} | kwargs
    with pytest.raises(ParallelError, match=message):
        build_gemm(M, N, K, **args)
    with pytest.raises(ParallelError, match="m must be"):
        build_gemm(0, N, K, tp=1, shard="m", npus=1)


# ---------------------------------------------------------------------- scenario kind
def scenario(**workload: object) -> dict:
    return {"name": "g", "topology": {"kind": "switch", "npus": 4, "bandwidth": "450 GB/s",
                                      "latency": "700 ns"},
            "hardware": "H100-SXM5-80GB",
            "workload": {"kind": "gemm", "m": 1024, "n": 1024, "k": 1024, "shard": "k"}
            | workload}


def test_scenario_kind() -> None:
    sc = scenario_from_dict(scenario(gather_output=False))
    assert isinstance(sc.workload, GemmWorkload)
    assert sc.workload.tp == 4  # all the topology's NPUs by default
    assert sc.workload.collective is CollectiveType.REDUCE_SCATTER


@pytest.mark.parametrize(("workload", "message"), [
    ({"shard": "j"}, "workload.shard: unknown value 'j'"),
    ({"m": 0}, "workload.m"),
    ({"gather_output": 1}, "workload.gather_output"),
    ({"tp": 2}, "topology has 4 NPUs"),
    ({"n": 1023, "shard": "n"}, "n = 1023 does not split"),
    ({"size": 3}, "workload.size: unknown key"),
])
def test_scenario_errors(workload: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        scenario_from_dict(scenario(**workload))
    assert message in str(info.value)


def test_bundled_gemm_scenario() -> None:
    sc = load_scenario("gemm_tp8")
    work = sc.workload
    assert (work.m, work.n, work.k, work.tp, work.shard) == (16384, 16384, 16384, 8, "k")
    assert work.collective is CollectiveType.ALL_REDUCE
    assert work.collective_bytes == 16384 * 16384 * 2


def test_cli_reports_tflops(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "g.yaml"
    path.write_text(yaml.safe_dump(scenario()))
    out_json = tmp_path / "r.json"
    assert main(["simulate", str(path), "--json", str(out_json)]) == EXIT_OK
    out = " ".join(capsys.readouterr().out.split())
    assert "TFLOP/s" in out and "exposed communication" in out
    gemm = json.loads(out_json.read_text())["meta"]["gemm"]
    assert gemm["flops"] == 2 * 1024**3
    assert gemm["tflops"] == pytest.approx(gemm["flops"] / gemm["time_s"] * 1e-12)
