"""AstraSim-compatible mode against AstraSim's own results on its microbenchmark cases.

Each case folder of ``reference/astra`` holds the exact network.yml and system.json
AstraSim ran, and expected.json with every rank's finished time for both analytical backends.
One-dimensional cases must match the congestion-aware backend within 1% per rank (contention
simulated); multi-dimensional ones, which that backend refuses, the congestion-unaware backend
(des with contention off). The workload of these cases is one collective per rank; traces with
compute, send/recv and groups are tested with the Chakra importer.
"""

from __future__ import annotations

import pytest
from helpers import ASTRA_REFERENCE, assert_finished_like_astra, astra_expected

from astra_bridge.configs import load_network, load_system
from des.core.graph import CollectiveType, EventGraph
from des.sim.analytical import analyze
from des.sim.engine import simulate

ONE_DIM = [
    "ring8_allreduce_1MiB",
    "ring16_allgather_1MiB",
    "ring4_reducescatter_1MiB",
    "ring8_alltoall_1MiB",
    "ring8_alltoall_direct_1MiB",
    "switch8_allreduce_ring_64MiB",
    "switch8_allreduce_direct_64MiB",
    "fc8_allreduce_direct_64MiB",
    "ring16_allreduce_halvingdoubling_64MiB",
    "ring64_allreduce_1GiB_splits1",
]
MULTI_DIM = ["mesh2d_ringring_4x4_allreduce_64MiB", "dgx_fc_switch_8x2_allreduce_64MiB"]



def run_case(name: str, congestion_aware: bool, backend=simulate
             ) -> tuple[dict[int, float], dict]:
    folder = ASTRA_REFERENCE / name
    expected = astra_expected(name)
    network = load_network(folder / "network.yml")
    system = load_system(folder / "system.json", dims=len(network.sizes))
    topo = network.topology()
    workload = expected["inputs"]["workload"]
    ctype = CollectiveType.parse(workload["collective"])
    n = topo.num_npus
    # AstraSim sizes an all-gather by its input, des by its output (the gathered buffer)
    nbytes = workload["comm_size_bytes"] * (n if ctype is CollectiveType.ALL_GATHER else 1)
    graph = EventGraph(n, name)
    graph.collective_all(ctype, nbytes)
    result = backend(topo, graph, options=system.engine_options(
        congestion_aware=congestion_aware))
    backend = "congestion_aware" if congestion_aware else "congestion_unaware"
    return {r: s.finished_ns for r, s in result.ranks.items()}, expected["results"][backend]


def assert_ranks_match(got: dict[int, float], want: dict) -> None:
    assert_finished_like_astra(got, want, rel=0.01)


@pytest.mark.parametrize("name", ONE_DIM)
def test_one_dimensional_cases_match_congestion_aware(name):
    got, want = run_case(name, congestion_aware=True)
    assert_ranks_match(got, want)


@pytest.mark.parametrize("name", ONE_DIM)
def test_one_dimensional_cases_match_congestion_unaware_without_contention(name):
    got, want = run_case(name, congestion_aware=False)
    assert_ranks_match(got, want)


@pytest.mark.parametrize("name", MULTI_DIM)
def test_multi_dimensional_cases_match_congestion_unaware(name):
    got, want = run_case(name, congestion_aware=False)
    assert_ranks_match(got, want)


@pytest.mark.parametrize("name", ONE_DIM + MULTI_DIM)
def test_analytical_backend_matches_congestion_unaware(name):
    got, want = run_case(name, congestion_aware=False, backend=analyze)
    assert_ranks_match(got, want)
