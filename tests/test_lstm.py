"""LSTM training (DeepFlow's LSTM mode, :mod:`workloads.lstm`): the graph's FLOPs, node counts
and data-parallel bytes against closed forms, the (layer, step) wavefront that layer
parallelism pipelines, the even split of kernel parallelism, the input checks, and the kind
end to end through ``des simulate`` and ``des sweep``."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import run_des
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from des.app.cli import EXIT_OK, main
from des.app.config import load_scenario, scenario_from_dict
from des.app.sections import ConfigError
from des.app.sweep import run_sweep
from des.app.sweep_exec import LocalExecutor, run_point
from des.app.sweep_load import load_sweep, sweep_from_dict
from des.app.sweep_results import ranking
from des.core.graph import CollectiveType, NodeKind
from des.core.hardware import load_gpu
from des.core.schema import SchemaError
from des.sim.engine import simulate
from topologies.registry import build as build_topology
from workloads.lstm import (
    DTYPE_BYTES,
    GATES,
    LstmConfig,
    build_lstm,
    cell_backward,
    cell_forward,
    nodes_per_rank,
)
from workloads.parallel import ParallelError

A100 = load_gpu("A100-SXM4-80GB")
SCENARIO = "lstm_4x1024_dp2_pp2_tp2"

CONFIGS = [  # (layers, hidden, seq, batch, vocab, dp, pp, tp)
    (1, 64, 3, 4, 32, 1, 1, 1),
    (4, 128, 5, 8, 64, 2, 2, 2),
    (6, 96, 4, 6, 48, 3, 3, 1),
    (2, 256, 7, 4, 128, 1, 1, 4),
    (4, 64, 6, 4, 40, 1, 4, 2),
]


def config(layers: int, hidden: int, seq: int, batch: int, vocab: int, dp: int, pp: int,
           tp: int, dtype: str = "bf16") -> LstmConfig:
    return LstmConfig(layers, hidden, seq, batch, vocab, dtype, dp=dp, pp=pp, tp=tp)


def gemm_flops(node: Any) -> float:
    return sum(f for f, _, cls in node.kernels or () if cls == "gemm")


def rank_coords(cfg: LstmConfig, rank: int) -> tuple[int, int, int]:
    """(dp, pp, tp) coordinates: tp fastest, then pp, then dp."""
    return rank // (cfg.tp * cfg.pp), rank // cfg.tp % cfg.pp, rank % cfg.tp


# ---------------------------------------------------------------------- closed forms
@pytest.mark.parametrize("dims", CONFIGS)
def test_graph_gemm_flops_are_the_lstm_formula(dims: tuple[int, ...]) -> None:
    cfg = config(*dims)
    graph = build_lstm(cfg, cfg.world).graph
    total = sum(gemm_flops(n) for n in graph.all_nodes())
    b, h, t, layers, v = cfg.batch, cfg.hidden, cfg.seq, cfg.layers, cfg.vocab
    formula = 2 * b * (2 * h) * (4 * h) * t * layers * 3 + 2 * b * t * h * v * 3
    assert total == pytest.approx(formula, rel=1e-12)
    assert cfg.gemm_flops() == pytest.approx(formula, rel=1e-12)
    # BPTT: each cell's backward does exactly twice its forward's GEMM work
    by = defaultdict(float)
    for n in graph.all_nodes():
        if n.name in ("fwd.cell", "bwd.cell"):
            by[n.name] += gemm_flops(n)
    assert by["bwd.cell"] == pytest.approx(2 * by["fwd.cell"], rel=1e-12)
    assert by["fwd.cell"] == pytest.approx(2 * b * 2 * h * 4 * h * t * layers, rel=1e-12)


def test_cell_costs_follow_deepflow() -> None:
    b, h, e = 16, 256, 2
    gemm, point = cell_forward(b, h, 1, e)
    assert gemm.flops == 2 * b * (2 * h) * (GATES * h)
    assert gemm.bytes == e * (b * 2 * h + 2 * h * GATES * h + b * GATES * h)
    assert (point.flops, point.bytes) == (5 * b * GATES * h, 13 * e * b * GATES * h)
    point_b, grad_in, grad_w = cell_backward(b, h, 1, e)
    assert grad_in.flops == grad_w.flops == gemm.flops
    assert grad_in.bytes == e * (b * GATES * h + GATES * h * 2 * h + b * 2 * h)
    # the weight gradient is accumulated over the steps: read and written every step
    assert grad_w.bytes == e * (2 * h * b + b * GATES * h + 2 * (2 * h * GATES * h))
    assert point_b.flops == 5 * b * h


@pytest.mark.parametrize("dims", CONFIGS)
def test_node_counts(dims: tuple[int, ...]) -> None:
    cfg = config(*dims)
    graph = build_lstm(cfg, cfg.world).graph
    lp, t = cfg.layers_per_stage, cfg.seq
    for rank in range(cfg.world):
        _, stage, _ = rank_coords(cfg, rank)
        nodes = list(graph.nodes(rank))
        assert len(nodes) == nodes_per_rank(cfg, stage)
        names = Counter(n.name for n in nodes)
        assert names["fwd.cell"] == names["bwd.cell"] == lp * t
        assert names["optimizer"] == 1
        tp_each_step = lp * t if cfg.tp > 1 else 0
        assert names["tp.gather_h"] == names["tp.reduce_grad"] == tp_each_step
        assert names["pp.send_h"] == names["pp.recv_grad"] == (t if stage < cfg.pp - 1 else 0)
        assert names["pp.recv_h"] == names["pp.send_grad"] == (t if stage > 0 else 0)
        assert names["dp.layer"] == (lp if cfg.dp > 1 else 0)
    assert len(graph) == cfg.dp * cfg.tp * sum(nodes_per_rank(cfg, s) for s in range(cfg.pp))
    graph.validate(cfg.world)


@pytest.mark.parametrize("dims", [c for c in CONFIGS if c[5] > 1])
@pytest.mark.parametrize("dtype", ["bf16", "fp32"])
def test_data_parallel_all_reduce_is_every_weight_once(dims: tuple[int, ...], dtype: str
                                                       ) -> None:
    cfg = config(*dims, dtype=dtype)
    work = build_lstm(cfg, cfg.world)
    h, v, layers = cfg.hidden, cfg.vocab, cfg.layers
    params = v * h + layers * (2 * h + 1) * 4 * h + (h + 1) * v
    assert cfg.params() == params
    replica = [r for r in range(cfg.world) if rank_coords(cfg, r)[0] == 0]
    nodes = [n for r in replica for n in work.graph.nodes(r) if n.category == "dp"]
    assert all(n.collective is CollectiveType.ALL_REDUCE and len(n.group) == cfg.dp
               for n in nodes)
    assert sum(n.nbytes for n in nodes) == pytest.approx(params * DTYPE_BYTES[dtype])
    # each layer's all-reduce waits for that layer's last backward step (step 0), not for the
    # whole backward: the layers below it on the stage still have their step 0 to run
    for rank in range(cfg.world):
        cells = [n.id for n in work.graph.nodes(rank) if n.name == "bwd.cell"]
        layers = [n for n in work.graph.nodes(rank) if n.name == "dp.layer"]
        for below, node in zip(reversed(range(len(layers))), layers, strict=True):
            (dep,) = node.deps
            assert work.graph.node(rank, dep).name == "bwd.cell"
            assert sum(1 for c in cells if c > dep) == below


def test_no_data_parallel_reduction_with_one_replica() -> None:
    cfg = config(4, 64, 3, 4, 32, 1, 2, 2)
    graph = build_lstm(cfg, cfg.world).graph
    assert not [n for n in graph.all_nodes() if n.category == "dp"]


@pytest.mark.parametrize("tp", [2, 4])
def test_kernel_parallelism_splits_the_flops_evenly(tp: int) -> None:
    one = config(2, 256, 4, 8, 64, 1, 1, 1)
    split = config(2, 256, 4, 8, 64, 1, 1, tp)
    whole = sum(gemm_flops(n) for n in build_lstm(one, 1).graph.all_nodes())
    graph = build_lstm(split, tp).graph
    per_rank = [sum(gemm_flops(n) for n in graph.nodes(r)) for r in range(tp)]
    assert per_rank == pytest.approx([whole / tp] * tp, rel=1e-12)
    # every forward step all-gathers h_t and every backward step all-reduces [b, 2h]
    e, b, h = split.dtype_bytes, split.local_batch, split.hidden
    sizes = Counter((i.collective, i.nbytes) for i in graph.collective_instances())
    steps = split.layers * split.seq
    assert sizes[(CollectiveType.ALL_GATHER, b * h * e)] == steps
    assert sizes[(CollectiveType.ALL_REDUCE, 2 * b * h * e)] == steps


# ---------------------------------------------------------------------- the wavefront
def link_free(npus: int):
    """A switch whose links are so fast and short that transfers take no measurable time."""
    return build_topology("switch", {"npus": npus, "bandwidth": 1e12, "latency": 0.0,
                                     "switch_latency": 0.0})


def forward_cells(layers: int, seq: int, pp: int) -> tuple[float, float]:
    """(time from the first forward cell's start to the last one's end, one cell's time)."""
    cfg = LstmConfig(layers, 512, seq, 32, 64, pp=pp)
    graph = build_lstm(cfg, pp).graph
    result = simulate(link_free(max(pp, 2)), graph, hardware=A100)
    cells = [op for op in result.ops if graph.node(op.rank, op.node).name == "fwd.cell"]
    durations = {round(op.end_ns - op.start_ns, 6) for op in cells}
    assert len(durations) == 1, durations  # every cell costs the same
    return (max(op.end_ns for op in cells) - min(op.start_ns for op in cells),
            durations.pop())


@pytest.mark.parametrize(("layers", "seq"), [(4, 8), (3, 12), (8, 5)])
def test_layer_parallelism_pipelines_the_wavefront(layers: int, seq: int) -> None:
    span, cell = forward_cells(layers, seq, pp=layers)
    assert span == pytest.approx((seq + layers - 1) * cell, rel=1e-3)
    serial, cell1 = forward_cells(layers, seq, pp=1)
    assert cell1 == pytest.approx(cell)
    assert serial == pytest.approx(seq * layers * cell, rel=1e-9)  # one GPU: no overlap


def test_backward_runs_the_grid_in_reverse() -> None:
    cfg = LstmConfig(3, 256, 6, 16, 64, pp=3)
    graph = build_lstm(cfg, 3).graph
    result = simulate(link_free(3), graph, hardware=A100)
    ends: dict[tuple[int, int], float] = {}
    starts: dict[tuple[int, int], float] = {}
    for op in result.ops:
        node = graph.node(op.rank, op.node)
        if node.name == "bwd.cell":
            step = sum(1 for n in graph.nodes(op.rank)
                       if n.name == "bwd.cell" and n.id < node.id)
            key = (op.rank, cfg.seq - 1 - step)  # added from the last step down
            starts[key], ends[key] = op.start_ns, op.end_ns
    for (layer, t), start in starts.items():
        if t < cfg.seq - 1:
            assert start >= ends[(layer, t + 1)]  # the recurrence, backwards
        if layer < cfg.layers - 1:
            assert start >= ends[(layer + 1, t)]  # the gradient from the layer above


# ---------------------------------------------------------------------- input checks
def scenario(npus: int = 4, **workload: Any) -> dict[str, Any]:
    base = {"kind": "lstm_training", "layers": 4, "hidden": 256, "seq": 4, "batch": 8,
            "vocab": 64, "parallel": {"dp": 2, "pp": 2}}
    return {"name": "l", "topology": {"kind": "switch", "npus": npus,
                                      "bandwidth": "300 GB/s", "latency": "700 ns"},
            "hardware": "A100-SXM4-80GB", "workload": base | workload}


@pytest.mark.parametrize(("workload", "npus", "message"), [
    ({"parallel": {"pp": 3}}, 3, "workload.parallel.pp: 3 does not divide layers = 4"),
    ({"parallel": {"pp": 3}}, 3, "expected one of 1, 2, 4"),
    ({"parallel": {"tp": 3}}, 3, "workload.parallel.tp: 3 does not divide hidden = 256"),
    ({"parallel": {"tp": 2}, "hidden": 256, "vocab": 63}, 2,
     "workload.parallel.tp: 2 does not divide vocab = 63"),
    ({"parallel": {"dp": 4}, "batch": 6}, 4, "workload.parallel.dp: 4 does not divide batch"),
    ({"dtype": "bf17"}, 4, "workload.dtype: unknown dtype 'bf17'"),
    ({"hidden": 0}, 4, "workload.hidden"),
    ({"parallel": {"dp": 2, "pp": 1}}, 4, "workload.parallel: dp x pp x tp = 2 x 1 x 1 = 2"),
    ({"parallel": {"dp": 2, "ep": 2}}, 4, "workload.parallel.ep: unknown key"),
    ({"layer": 2}, 4, "workload.layer"),
])
def test_bad_input_names_the_key_and_what_is_allowed(workload: dict, npus: int,
                                                     message: str) -> None:
    with pytest.raises(ConfigError) as info:
        scenario_from_dict(scenario(npus, **workload))
    assert isinstance(info.value, SchemaError)
    assert message in str(info.value)


def test_dtype_error_lists_the_dtypes() -> None:
    with pytest.raises(ConfigError) as info:
        scenario_from_dict(scenario(dtype="int4"))
    assert all(d in str(info.value) for d in ("fp32", "bf16", "fp16"))


VALUES = st.one_of(st.none(), st.booleans(), st.integers(-2, 12), st.floats(allow_nan=True),
                   st.sampled_from(["bf16", "fp32", "int4", "", "4", [], {}]))
KEYS = ["layers", "hidden", "seq", "batch", "vocab", "dtype", "parallel", "layer"]


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=4),
       st.dictionaries(st.sampled_from(["dp", "pp", "tp", "ep"]), VALUES, max_size=3))
def test_any_workload_section_loads_or_names_its_error(changes: dict, parallel: dict) -> None:
    doc = scenario(npus=4)
    doc["workload"].update(changes)
    if "parallel" not in changes:
        doc["workload"]["parallel"] = parallel
    try:
        sc = scenario_from_dict(doc)
    except SchemaError as err:
        assert str(err).startswith("workload"), err
    else:
        sc.graph.validate(4)


def test_builder_refuses_bad_numbers() -> None:
    with pytest.raises(ParallelError, match="seq: must be a positive integer"):
        LstmConfig(2, 64, 0, 4, 32)
    with pytest.raises(ParallelError, match="topology has 3 NPUs"):
        build_lstm(LstmConfig(2, 64, 2, 4, 32, pp=2), 3)


# ---------------------------------------------------------------------- end to end
def test_bundled_scenario_runs_through_the_cli(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    run = run_des("simulate", SCENARIO, "--json", str(out))
    assert run.returncode == EXIT_OK, run.stderr
    assert "tokens/s" in run.stdout and "GEMM TFLOP/s" in run.stdout
    meta = json.loads(out.read_text())["meta"]
    lstm, metrics = meta["lstm"], meta["metrics"]
    sc = load_scenario(SCENARIO)
    cfg = sc.workload.config
    assert (cfg.layers, cfg.hidden, cfg.dp, cfg.pp, cfg.tp) == (4, 1024, 2, 2, 2)
    assert lstm["tokens_per_iteration"] == cfg.batch * cfg.seq
    assert lstm["tokens_per_s"] == pytest.approx(cfg.tokens / lstm["iteration_s"])
    assert lstm["iteration_s"] == pytest.approx(metrics["makespan_ns"] * 1e-9)
    assert lstm["tflops"] == pytest.approx(cfg.gemm_flops() / lstm["iteration_s"] * 1e-12)
    assert 0 < lstm["fraction_of_peak"] < 1
    assert metrics["workload"] == "lstm_training"
    assert metrics["tokens_per_s"] == lstm["tokens_per_s"]
    # the slowest rank's time: compute and idle, plus exposed communication (dimensions may
    # be exposed at the same moment, so their sum is at least their union)
    parts = lstm["breakdown_s"]
    busy = sum(v for k, v in parts.items() if k.startswith("compute_")) + parts["idle"]
    exposed = sum(v for k, v in parts.items() if k.startswith("exposed_"))
    assert busy < parts["finished"] <= busy + exposed * (1 + 1e-9)
    assert set(parts) >= {"compute_fwd", "compute_bwd", "compute_optimizer", "exposed_tp",
                          "exposed_pp", "exposed_dp", "idle"}


def test_list_shows_the_scenario_description() -> None:
    run = run_des("list")
    assert run.returncode == EXIT_OK, run.stderr
    assert SCENARIO in run.stdout and "LSTM" in run.stdout


def test_bundled_sweep_ranks_every_split_and_agrees_with_the_cli(tmp_path: Path) -> None:
    sweep = load_sweep("lstm_parallelism")
    results = run_sweep(sweep, tmp_path / "sweep", executor=LocalExecutor(1))
    ok = [r for r in results if r.status == "ok"]
    splits = {(r.values["workload.parallel.dp"], r.values["workload.parallel.pp"],
               r.values["workload.parallel.tp"]) for r in ok}
    # every (dp, pp, tp) with dp x pp x tp = 8 and pp dividing the 4 layers
    assert splits == {(d, p, 8 // (d * p)) for d in (1, 2, 4, 8) for p in (1, 2, 4)
                      if 8 % (d * p) == 0}
    assert all(r.metrics["workload"] == "lstm_training" for r in ok)
    times = [r.metrics["iteration_s"] for r in ranking(results)]
    assert times == sorted(times)
    [swept] = [r for r in ok if (r.values["workload.parallel.dp"], r.values[
        "workload.parallel.pp"], r.values["workload.parallel.tp"]) == (2, 2, 2)]
    out = tmp_path / "p.json"
    assert main(["simulate", SCENARIO, "-q", "--json", str(out)]) == EXIT_OK
    simulated = json.loads(out.read_text())["meta"]["metrics"]
    assert {k: v for k, v in swept.metrics.items()
            if k not in ("topology", "backend", "wall_s")} == simulated


def test_a_small_sweep_point_matches_the_cli(tmp_path: Path) -> None:
    [point] = sweep_from_dict({"name": "p", "base": scenario(),
                               "axes": {"workload.dtype": ["fp32"]}}).points()
    swept = run_point(point, "analytical")
    assert swept.status == "ok", swept.reason
    path, out = tmp_path / "p.yaml", tmp_path / "p.json"
    path.write_text(yaml.safe_dump(point.scenario))
    assert main(["simulate", str(path), "--backend", "analytical", "-q", "--json",
                 str(out)]) == EXIT_OK
    simulated = json.loads(out.read_text())["meta"]["metrics"]
    assert {k: v for k, v in swept.metrics.items()
            if k not in ("topology", "backend", "wall_s")} == simulated


def test_bundled_scenario_reduces_every_weight_over_its_replicas() -> None:
    """The bundled scenario's gradient all-reduces: one replica's add up to every weight once,
    each over the dp ranks sharing a pipeline stage and tensor-parallel index."""
    sc = load_scenario(SCENARIO)
    work = sc.workload
    per_rank = {r: sum(v) for r, v in work.dp_bytes.items()}
    assert len(set(per_rank.values())) == 2  # first and last stage own different weights
    cfg = work.config
    total = sum(v for r, v in per_rank.items() if rank_coords(cfg, r)[0] == 0)
    assert total == cfg.params() * cfg.dtype_bytes
    nodes = [n for n in sc.graph.all_nodes() if n.kind is NodeKind.COLLECTIVE
             and n.category == "dp"]
    assert {len(n.group) for n in nodes} == {cfg.dp}
