"""Where the CPU time of one GPT-3 175B training step goes (TP8 x PP8, 3 interleaved stages, 64
micro-batches, 64 A100s in 8 DGX nodes, as ``bench/llm.py``'s ``gpt3-175b`` case), per backend:
building the graph (``build_training``), simulating it (``Backend.run``: validation, the shared
runtime, the result), the training report, and how much of all that the cyclic garbage
collector took. CPU seconds (``time.process_time``), imports excluded.

With ``--baseline REV`` every round also runs git revision REV's tree (see
:mod:`bench._baseline`), alternating with this tree, so both see the same load, and the table
shows medians and ratios; the result's JSON document is hashed so the table also says whether
both trees computed the same bytes. Each run is its own process.

Prints a table and writes ``bench/results/step_phases.json``; asserts nothing about time.
Usage: ``python bench/step_phases.py [--rounds 3] [--backends simpy analytical]
[--baseline REV]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BACKENDS = ("simpy", "analytical")
PHASES = ("build", "simulate", "report", "gc", "total")


def measure(backend: str) -> dict:
    """One step on ``backend`` in this process (this tree first on sys.path)."""
    import gc
    import hashlib
    import time

    from des.app.llm_report import training_report
    from des.core.hardware import load_gpu
    from des.sim.backends import get_backend
    from des.sim.options import EngineOptions
    from topologies import superpod
    from workloads.llm import build_training
    from workloads.models import load_model
    from workloads.parallel import ParallelConfig

    in_gc = [0.0, 0.0]  # total, start of the current collection

    def collector(phase: str, _info: dict) -> None:
        if phase == "start":
            in_gc[1] = time.process_time()
        else:
            in_gc[0] += time.process_time() - in_gc[1]

    gc.callbacks.append(collector)
    cpu = [time.process_time()]
    model = load_model("gpt3-175b")
    par = ParallelConfig(tp=8, pp=8, sp=True, recompute="selective", global_batch=64,
                         schedule="interleaved", virtual_stages=3)
    topo = superpod(par.world // 8, nvlink_bandwidth=230.0, nic_bandwidth=25.0, latency=1000.0)
    gpu = load_gpu("A100-SXM4-80GB")
    workload = build_training(model, par, topo.num_npus, topo)
    cpu.append(time.process_time())
    result = get_backend(backend).run(topo, workload.graph, hardware=gpu,
                                      options=EngineOptions(chunks=4, comm_streams=2))
    cpu.append(time.process_time())
    training_report(result, workload, gpu)
    cpu.append(time.process_time())
    gc.callbacks.remove(collector)
    doc = json.dumps(result.to_dict(), sort_keys=True).encode()
    return {"build": cpu[1] - cpu[0], "simulate": cpu[2] - cpu[1], "report": cpu[3] - cpu[2],
            "gc": in_gc[0], "total": cpu[3] - cpu[0], "nodes": len(workload.graph),
            "makespan_ns": result.makespan_ns,
            "result_sha256": hashlib.sha256(doc).hexdigest()[:16]}


def run_in(tree: Path, backend: str) -> dict:
    """:func:`measure` in a fresh interpreter on ``tree``'s code."""
    here = str(Path(__file__).resolve())  # by path: bench/ on sys.path would shadow packages
    code = (f"import sys, json, runpy; sys.path.insert(0, {str(tree)!r}); "
            f"measure = runpy.run_path({here!r})['measure']; "
            f"print(json.dumps(measure({backend!r})))")
    out = subprocess.run([sys.executable, "-c", code], cwd=tree, capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    from rich.console import Console
    from rich.table import Table

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--baseline", metavar="REV", default=None)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "step_phases.json"))
    args = parser.parse_args()
    trees = {"after" if args.baseline else "this tree": ROOT}
    if args.baseline:
        from _baseline import checkout
        trees = {"before": checkout(args.baseline), **trees}
    runs: dict[tuple[str, str], list[dict]] = {}
    for _ in range(args.rounds):
        for backend in args.backends:
            for name, tree in trees.items():
                runs.setdefault((name, backend), []).append(run_in(tree, backend))
    rows = []
    for (name, backend), samples in runs.items():
        row = {"tree": name, "backend": backend, "rounds": len(samples),
               "nodes": samples[0]["nodes"], "makespan_ns": samples[0]["makespan_ns"],
               "result_sha256": sorted({s["result_sha256"] for s in samples})}
        row.update({p: statistics.median(s[p] for s in samples) for p in PHASES})
        rows.append(row)
    table = Table(title=f"GPT-3 175B step, CPU seconds (median of {args.rounds}, imports "
                        "excluded)")
    for col in ("tree", "backend", *PHASES, "result"):
        table.add_column(col, justify="left" if col in ("tree", "backend", "result")
                         else "right")
    for row in rows:
        table.add_row(row["tree"], row["backend"], *(f"{row[p]:.2f}" for p in PHASES),
                      ",".join(h[:8] for h in row["result_sha256"]))
    ratios = {}
    if args.baseline:
        for backend in args.backends:
            before = next(r for r in rows if r["tree"] == "before" and r["backend"] == backend)
            after = next(r for r in rows if r["tree"] == "after" and r["backend"] == backend)
            ratios[backend] = {p: after[p] / before[p] if before[p] else None for p in PHASES}
            ratios[backend]["same_result"] = before["result_sha256"] == after["result_sha256"]
            table.add_row("after / before", backend,
                          *(f"{ratios[backend][p]:.2f}" if ratios[backend][p] is not None
                            else "-" for p in PHASES),
                          "same" if ratios[backend]["same_result"] else "DIFFERENT")
    for name in trees:
        sim = {r["backend"]: r["simulate"] for r in rows if r["tree"] == name}
        if "simpy" in sim and "analytical" in sim and sim["analytical"]:
            ratios[f"simpy/analytical simulate ({name})"] = sim["simpy"] / sim["analytical"]
    console = Console(width=120)
    console.print(table)
    for key, value in ratios.items():
        if isinstance(value, float):
            console.print(f"{key}: {value:.2f}x")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"python": platform.python_version(), "baseline": args.baseline,
                               "rows": rows, "ratios": ratios}, indent=1) + "\n")
    console.print(f"wrote {out}")


if __name__ == "__main__":
    main()
