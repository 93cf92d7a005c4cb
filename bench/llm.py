"""How fast des simulates LLM training iterations, and what folding tensor-parallel peers costs
in accuracy.

* GPT-3 175B, TP8 x PP8 (3 interleaved stages), 64 micro-batches, 64 A100s (8 DGX nodes);
* Megatron-Turing NLG 530B (105 layers, hidden 20480, 128 heads), TP8 x PP35, 280
  micro-batches, 280 A100s (35 nodes) — RAPID-LLM's Python analytical backend takes about 70 s
  and 350-460 s for these two;
* a folding check: a smaller model (GPT-3 shapes, 8 layers) TP8 x PP2 on 16 GPUs simulated both
  with every tensor-parallel rank and with them folded.

Each case runs in its own process (peak RSS is its own). Prints a table and writes
``bench/results/llm.json``; asserts nothing about time.
"""

from __future__ import annotations

import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CASES = ("gpt3-175b", "mtnlg-530b", "fold-check-folded", "fold-check-full")


def run_case(case: str) -> dict:
    """Build and simulate one case in this process."""
    sys.path.insert(0, str(ROOT))
    from des.app.llm_report import training_report
    from des.core.hardware import load_gpu
    from des.sim.engine import simulate
    from des.sim.options import EngineOptions
    from topologies import superpod
    from workloads.llm import build_training
    from workloads.models import ModelConfig, load_model
    from workloads.parallel import ParallelConfig

    if case == "gpt3-175b":
        model = load_model("gpt3-175b")
        par = ParallelConfig(tp=8, pp=8, sp=True, recompute="selective", global_batch=64,
                             schedule="interleaved", virtual_stages=3, fold_tp=True)
    elif case == "mtnlg-530b":
        model = ModelConfig(name="mt-nlg-530b", layers=105, hidden=20480, heads=128,
                            kv_heads=128, head_dim=160, ffn=81920, activation="gelu",
                            vocab=51200, seq=2048, position_embeddings=True)
        par = ParallelConfig(tp=8, pp=35, sp=True, recompute="selective", global_batch=280,
                             fold_tp=True)
    else:
        base = load_model("gpt3-175b")
        model = ModelConfig(**{**base.__dict__, "name": "gpt3-shapes-8-layers", "layers": 8})
        par = ParallelConfig(tp=8, pp=2, sp=True, recompute="selective", global_batch=8,
                             fold_tp=case.endswith("folded"))
    topo = superpod(par.world // 8, nvlink_bandwidth=230.0, nic_bandwidth=25.0, latency=1000.0)
    gpu = load_gpu("A100-SXM4-80GB")
    start = time.perf_counter()
    workload = build_training(model, par, topo.num_npus)
    built = time.perf_counter() - start
    result = simulate(topo, workload.graph, hardware=gpu,
                      options=EngineOptions(chunks=4, comm_streams=2))
    wall = time.perf_counter() - start
    report = training_report(result, workload, gpu)
    return {"case": case, "gpus": par.world, "micro_batches": par.micro_batches,
            "simulated_ranks": len(workload.simulated_ranks), "nodes": len(workload.graph),
            "messages": result.meta["messages"], "iteration_s": report["iteration_s"],
            "mfu": report["mfu"], "build_s": built, "wall_s": wall,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        print(json.dumps(run_case(sys.argv[2])))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console(width=140)
    rows = []
    for case in CASES:
        console.print(f"running {case} ...", style="dim")
        out = subprocess.run([sys.executable, __file__, "--child", case], capture_output=True,
                             text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    table = Table(title="LLM iteration simulation speed")
    for col in ("case", "GPUs", "micro-batches", "simulated ranks", "graph nodes", "messages",
                "iteration", "MFU", "wall", "peak RSS"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(r["case"], str(r["gpus"]), str(r["micro_batches"]),
                      str(r["simulated_ranks"]), f"{r['nodes']:,}", f"{r['messages']:,}",
                      f"{r['iteration_s']:.3f} s", f"{r['mfu']:.1%}", f"{r['wall_s']:.1f} s",
                      f"{r['peak_rss_mb']:.0f} MB")
    console.print(table)
    folded = next(r for r in rows if r["case"] == "fold-check-folded")
    full = next(r for r in rows if r["case"] == "fold-check-full")
    console.print(f"folding: iteration differs by "
                  f"{folded['iteration_s'] / full['iteration_s'] - 1:+.2e}, simulation "
                  f"{full['wall_s'] / folded['wall_s']:.1f}x faster")
    out = ROOT / "bench" / "results" / "llm.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"benchmark": "llm", "python": platform.python_version(),
                               "rows": rows}, indent=1) + "\n")
    console.print(f"wrote {out}")


if __name__ == "__main__":
    main()
