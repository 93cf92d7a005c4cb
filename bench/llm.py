"""How fast des simulates LLM training iterations, on both backends, written as a user would
write them (no folding switch: ``fold: auto`` folds what the topology proves symmetric).

* GPT-3 175B, TP8 x PP8 (3 interleaved stages), 64 micro-batches, 64 A100s (8 DGX nodes);
* Megatron-Turing NLG 530B (105 layers, hidden 20480, 128 heads), TP8 x PP35, 280
  micro-batches, 280 A100s (35 nodes) — RAPID-LLM's Python analytical backend takes about 70 s
  and 350-460 s for these two;
* GPT 1T (128 layers, hidden 25600, 160 heads), TP8 x PP64 x DP6, global batch 3072, 3072
  A100s: the largest configuration of Narayanan et al. 2021 (Table 1);
* a folding check: a smaller model (GPT-3 shapes, 8 layers) TP8 x PP2 x DP2 on 32 GPUs
  simulated folded (auto) and unfolded (fold: none).

Each case and backend runs in its own process (peak RSS is its own). Prints a table and writes
``bench/results/llm.json``; asserts nothing about time. ``--cases`` picks cases,
``--backends`` backends.
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
CASES = ("gpt3-175b", "mtnlg-530b", "gpt-1t", "fold-check-folded", "fold-check-full")
BACKENDS = ("simpy", "analytical")


def run_case(case: str, backend: str) -> dict:
    """Build and simulate one case in this process with ``backend``."""
    sys.path.insert(0, str(ROOT))
    from des.app.llm_report import training_report
    from des.core.hardware import load_gpu
    from des.sim.backends import get_backend
    from des.sim.options import EngineOptions
    from topologies import superpod
    from workloads.llm import build_training
    from workloads.models import ModelConfig, load_model
    from workloads.parallel import ParallelConfig

    cpu = time.process_time()
    if case == "gpt3-175b":
        model = load_model("gpt3-175b")
        par = ParallelConfig(tp=8, pp=8, sp=True, recompute="selective", global_batch=64,
                             schedule="interleaved", virtual_stages=3)
    elif case == "mtnlg-530b":
        model = ModelConfig(name="mt-nlg-530b", layers=105, hidden=20480, heads=128,
                            kv_heads=128, head_dim=160, ffn=81920, activation="gelu",
                            vocab=51200, seq=2048, position_embeddings=True)
        par = ParallelConfig(tp=8, pp=35, sp=True, recompute="selective", global_batch=280)
    elif case == "gpt-1t":
        model = ModelConfig(name="gpt-1t", layers=128, hidden=25600, heads=160, kv_heads=160,
                            head_dim=160, ffn=102400, activation="gelu", vocab=51200, seq=2048,
                            position_embeddings=True)
        par = ParallelConfig(tp=8, pp=64, dp=6, recompute="full", global_batch=3072,
                             schedule="interleaved", virtual_stages=2)
    else:
        base = load_model("gpt3-175b")
        model = ModelConfig(**{**base.__dict__, "name": "gpt3-shapes-8-layers", "layers": 8})
        par = ParallelConfig(tp=8, pp=2, dp=2, sp=True, recompute="selective", global_batch=8,
                             fold="auto" if case.endswith("folded") else "none")
    topo = superpod(par.world // 8, nvlink_bandwidth=230.0, nic_bandwidth=25.0, latency=1000.0)
    gpu = load_gpu("A100-SXM4-80GB")
    start = time.perf_counter()
    workload = build_training(model, par, topo.num_npus, topo,
                              contention=get_backend(backend).contention)  # as des simulate
    built = time.perf_counter() - start
    result = get_backend(backend).run(topo, workload.graph, hardware=gpu,
                                      options=EngineOptions(chunks=4, comm_streams=2))
    wall = time.perf_counter() - start
    report = training_report(result, workload, gpu)
    fold = workload.graph.fold
    return {"case": case, "backend": backend, "gpus": par.world,
            "micro_batches": par.micro_batches,
            "folded": "+".join(fold.folded_axes) if fold else "-",
            "simulated_ranks": len(workload.simulated_ranks), "nodes": len(workload.graph),
            "messages": result.meta["messages"], "iteration_s": report["iteration_s"],
            "mfu": report["mfu"], "build_s": built, "wall_s": wall,
            "cpu_s": time.process_time() - cpu,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        print(json.dumps(run_case(sys.argv[2], sys.argv[3])))
        return
    import argparse

    from rich.console import Console
    from rich.table import Table

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES)
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    args = parser.parse_args()
    console = Console(width=160)
    rows = []
    for case in args.cases:
        for backend in args.backends:
            console.print(f"running {case} ({backend}) ...", style="dim")
            out = subprocess.run([sys.executable, __file__, "--child", case, backend],
                                 capture_output=True, text=True, check=True)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    table = Table(title="LLM iteration simulation speed")
    for col in ("case", "backend", "GPUs", "micro-batches", "folded", "simulated ranks",
                "graph nodes", "messages", "iteration", "MFU", "CPU", "peak RSS"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(r["case"], r["backend"], str(r["gpus"]), str(r["micro_batches"]),
                      r["folded"], str(r["simulated_ranks"]), f"{r['nodes']:,}",
                      f"{r['messages']:,}", f"{r['iteration_s']:.3f} s", f"{r['mfu']:.1%}",
                      f"{r['cpu_s']:.1f} s", f"{r['peak_rss_mb']:.0f} MB")
    console.print(table)
    by = {(r["case"], r["backend"]): r for r in rows}
    for backend in args.backends:
        folded, full = by.get(("fold-check-folded", backend)), by.get(("fold-check-full",
                                                                        backend))
        if folded and full:
            console.print(f"folding ({backend}): iteration differs by "
                          f"{folded['iteration_s'] / full['iteration_s'] - 1:+.2e}, simulation "
                          f"{full['cpu_s'] / folded['cpu_s']:.1f}x less CPU")
    for case in args.cases:
        a, b = by.get((case, "analytical")), by.get((case, "simpy"))
        if a and b:
            console.print(f"{case}: analytical takes {a['cpu_s'] / b['cpu_s']:.2f}x the CPU "
                          "of the contended run")
    out = ROOT / "bench" / "results" / "llm.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"benchmark": "llm", "python": platform.python_version(),
                               "rows": rows}, indent=1) + "\n")
    console.print(f"wrote {out}")


if __name__ == "__main__":
    main()
