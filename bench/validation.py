"""Accuracy against published measurements: Megatron-LM iteration times (Korthikanti et al.
2022, Table 5, A100-80GB DGX nodes).

Every case is built from its published configuration only: the model dimensions, the parallel
strategy, the recomputation mode, and a machine description that is the same for every case
(DGX A100: 8 GPUs on NVSwitch at the ~230 GB/s NCCL achieves of NVLink's 300 GB/s, one
200 Gb/s HDR NIC per GPU on rail-optimized leaves; the A100-SXM4-80GB preset with its stated
efficiencies). Nothing is fitted per case. "full" is full recomputation with tensor-parallel
all-reduces; "selective+sp" is sequence parallelism with selective (attention-only)
recomputation. Attention is Megatron's 2022 standard (fused softmax, score matrices through
HBM), not FlashAttention, which those runs predate. Tensor-parallel peers are folded (exact on
this topology; tests/test_llm_training.py checks folding).

Prints measured and predicted seconds with the error for the SimPy engine and the analytical
backend, and writes ``bench/results/validation.json``.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "validation" / "megatron_korthikanti2022_table5.yaml"
sys.path.insert(0, str(ROOT))

from des.core.hardware import load_gpu  # noqa: E402
from des.sim.backends import run_backend  # noqa: E402
from des.sim.options import EngineOptions  # noqa: E402
from topologies import superpod  # noqa: E402
from workloads.llm import build_training  # noqa: E402
from workloads.models import ModelConfig  # noqa: E402
from workloads.parallel import ParallelConfig  # noqa: E402

# Links carry data at the rate NCCL achieves, not the signalling rate: NVLink 3 is 300 GB/s
# per direction per A100 (12 links x 25 GB/s), of which NCCL's all-reduce reaches ~230 GB/s bus
# bandwidth on a DGX A100 (NVIDIA nccl-tests all_reduce_perf, 8 GPUs, large messages).
NVLINK = 230.0
NIC = 200 / 8       # GB/s: one HDR InfiniBand NIC (200 Gb/s) per GPU
LATENCY = 1000.0    # ns per link


def case_inputs(case: dict, mode: str) -> tuple[ModelConfig, ParallelConfig]:
    """The model and strategy of one published case in one recomputation mode."""
    m = case["model"]
    model = ModelConfig(name=case["name"], layers=m["layers"], hidden=m["hidden"],
                        heads=m["heads"], kv_heads=m["heads"], head_dim=m["head_dim"],
                        ffn=m["ffn"], activation="gelu", vocab=m["vocab"], seq=m["seq"],
                        position_embeddings=True)
    p = case["parallel"]
    v = p.get("pipeline_interleaving", 1)
    par = ParallelConfig(dp=p["dp"], tp=p["tp"], pp=p["pp"], micro_batch=p["micro_batch"],
                         global_batch=p["global_batch"], sp=mode == "selective+sp",
                         recompute="selective" if mode == "selective+sp" else "full",
                         schedule="interleaved" if v > 1 else "1f1b", virtual_stages=v,
                         flash=False, fold_tp=True)
    return model, par


def main() -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=140)
    if not DATA.is_file():
        console.print(f"validation data not found at {DATA}")
        return
    cases = yaml.safe_load(DATA.read_text())["cases"]
    gpu = load_gpu("A100-SXM4-80GB")
    options = EngineOptions(chunks=4, comm_streams=2)
    rows = []
    for case in cases:
        for mode, measured in case["measured_iteration_s"].items():
            model, par = case_inputs(case, mode)
            topo = superpod(par.world // 8, nvlink_bandwidth=NVLINK, nic_bandwidth=NIC,
                            latency=LATENCY)
            workload = build_training(model, par, topo.num_npus)
            start = time.perf_counter()
            sim = run_backend("simpy", topo, workload.graph, hardware=gpu, options=options)
            wall = time.perf_counter() - start
            ana = run_backend("analytical", topo, workload.graph, hardware=gpu,
                              options=options)
            rows.append({
                "case": case["name"], "mode": mode, "measured_s": measured,
                "simpy_s": sim.makespan_ns * 1e-9, "analytical_s": ana.makespan_ns * 1e-9,
                "simpy_error": sim.makespan_ns * 1e-9 / measured - 1,
                "analytical_error": ana.makespan_ns * 1e-9 / measured - 1,
                "wall_s": wall, "nodes": len(workload.graph),
            })
    table = Table(title="Megatron-LM iteration time (Korthikanti et al. 2022, Table 5)")
    for col in ("case", "mode", "measured", "des simpy", "error", "des analytical", "error",
                "sim wall"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(r["case"], r["mode"], f"{r['measured_s']:.2f} s", f"{r['simpy_s']:.2f} s",
                      f"{r['simpy_error']:+.1%}", f"{r['analytical_s']:.2f} s",
                      f"{r['analytical_error']:+.1%}", f"{r['wall_s']:.1f} s")
    console.print(table)
    mean_abs = sum(abs(r["simpy_error"]) for r in rows) / len(rows)
    console.print(f"mean absolute error (simpy): {mean_abs:.1%}")
    out = ROOT / "bench" / "results" / "validation.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"benchmark": "validation", "python": platform.python_version(),
                               "source": str(DATA.name), "rows": rows,
                               "mean_abs_error": mean_abs}, indent=1) + "\n")
    console.print(f"wrote {out}")


if __name__ == "__main__":
    main()
