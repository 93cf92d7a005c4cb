"""Roofline statistics per rank (AstraSim's roofline-enabled figures): reproduced on AstraSim's
own roofline case, and closed forms on hand-made compute nodes."""

from __future__ import annotations

import json

import pytest
from helpers import ASTRA_REFERENCE

from des.core.graph import EventGraph
from des.core.hardware import gpu_from_dict
from des.sim.engine import simulate
from des.sim.roofline_stats import roofline_stats
from topologies.base import Topology

GPU = gpu_from_dict({"name": "g", "peak_flops": {"bf16": "100 TFLOP/s"},
                     "hbm_bandwidth": "1 TB/s", "hbm_capacity": "80 GiB",
                     "launch_overhead": "0 ns", "efficiency": {"default": [1.0, 1.0]}})


def test_closed_forms_on_one_compute_and_one_memory_bound_node():
    g = EventGraph(1)
    # ridge at 100 FLOP/byte: 1e9 FLOPs on 1e6 bytes is compute-bound (10 us), on 1e8 bytes
    # memory-bound (100 us)
    a = g.compute(0, kernels=[(1e9, 1e6, "gemm")])
    g.compute(0, kernels=[(1e9, 1e8, "gemm")], deps=[a])
    g.compute(0, duration_ns=10_000.0)  # a replayed node: time only
    result = simulate(Topology("one", 1), g, hardware=GPU)
    st = roofline_stats(g, result, GPU)[0]
    total = 10_000 + 100_000 + 10_000
    assert st.compute_ns == pytest.approx(total)
    assert st.roofline_ns == pytest.approx(110_000)
    assert st.compute_bound == pytest.approx(10_000 / total)
    # compute utilization: 1 on the first, 10/100 on the second
    assert st.compute_utilization == pytest.approx((10_000 * 1.0 + 100_000 * 0.1) / total)
    # memory utilization: 1e6 B in 10 us = 0.1 of 1 TB/s; the second saturates HBM
    assert st.memory_utilization == pytest.approx((10_000 * 0.1 + 100_000 * 1.0) / total)
    assert st.operation_intensity == pytest.approx((10_000 * 1000 + 100_000 * 10) / total)


def test_no_hardware_no_statistics():
    g = EventGraph(1)
    g.compute(0, duration_ns=5.0)
    assert roofline_stats(g, simulate(Topology("one", 1), g), None) == {}


@pytest.mark.parametrize("backend", ["congestion_aware", "congestion_unaware"])
def test_astra_roofline_case_statistics(backend):
    from astra_bridge.inputs import load_inputs

    folder = ASTRA_REFERENCE / "roofline_compute_4"
    inputs = load_inputs(folder / "workload" / "workload", folder / "system.json",
                         folder / "network.yml", remote_memory=folder / "remote_memory.json")
    model = "aware" if backend == "congestion_aware" else "unaware"
    result = simulate(inputs.topology, inputs.graph, hardware=inputs.hardware,
                      options=inputs.options(model))
    stats = roofline_stats(inputs.graph, result, inputs.hardware)
    expected = json.loads((folder / "expected.json").read_text())["results"][backend]
    for rank, want in expected["per_rank"].items():
        got = stats[int(rank)].as_dict()
        for key in ("compute_bound_pct", "avg_compute_util_pct", "avg_memory_util_pct"):
            assert got[key] == pytest.approx(want["roofline"][key], abs=6e-4), key
        # AstraSim prints 3 decimals; intensities are ~640 FLOP/byte
        assert got["avg_operation_intensity"] == pytest.approx(
            want["roofline"]["avg_operation_intensity"], rel=5e-6)
