"""Accuracy against published measurements: every file of a measurement folder, on one machine
description, with both backends.

Default data: the repository's ``validation/`` (Megatron-LM on DGX A100: Korthikanti et al.
2022 Table 5 iteration times; Narayanan et al. 2021 Table 1 throughputs, compared as iteration
time through the paper's FLOP count; the Megatron-LM README's GPT-3 175B run; each file cites
its source). Default machine:
``configs/machines/selene-dgx-a100.yaml``
(the same for every row; see :mod:`des.app.validation`). Nothing is fitted per case.

Prints, per row, measured and predicted seconds and the error for the SimPy engine and the
analytical backend, and where the SimPy run's time goes on its slowest rank (compute by phase,
exposed communication per parallel dimension, idle); ends with
``mean |error| X%, max Y%, N rows`` per backend; writes JSON (``--json``, default
``bench/results/validation.json``).

nccl-tests files in the same folders (``format: nccl-tests``, :mod:`des.app.validation_nccl`)
run as collective sweeps on the same machine: per file, a table of size, measured bus
bandwidth, des's bus bandwidth and error per backend, and a line
``FILE: mean |error| X%, max Y%, N sizes`` per backend.

Usage: ``python bench/validation.py [--data DIR ...] [--machine NAME|YAML] [--json OUT]
[--backends simpy analytical] [--cases NAME ...] [--only rows|nccl]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = [ROOT / "validation"]
sys.path.insert(0, str(ROOT))

from des.app.config import scenario_from_dict  # noqa: E402
from des.app.llm_report import breakdown  # noqa: E402
from des.app.validation import (  # noqa: E402
    layer_seconds,
    load_machine,
    load_rows,
    scenario_dict,
)
from des.app.validation_nccl import compare_run, load_runs  # noqa: E402
from des.sim.backends import run_backend  # noqa: E402

BACKENDS = ("simpy", "analytical")


def simulate_row(row, machine: dict, backends: tuple[str, ...]) -> dict:
    """Build one row's scenario and simulate it with each backend: per backend the seconds
    compared (the iteration, or the row's layer's pass spans) and the CPU it took."""
    out: dict = {}
    cpu = time.process_time()
    scenario = scenario_from_dict(scenario_dict(row, machine))
    out["build_cpu_s"] = time.process_time() - cpu
    fold = scenario.graph.fold
    out["folded_axes"] = list(fold.folded_axes) if fold else []
    out["nodes"] = len(scenario.graph)
    for backend in backends:
        cpu = time.process_time()
        result = run_backend(backend, scenario.topology, scenario.graph,
                             hardware=scenario.hardware, options=scenario.options)
        seconds = (result.makespan_ns * 1e-9 if row.layer is None
                   else layer_seconds(result, row.layer))
        out[backend] = {"seconds": seconds, "cpu_s": time.process_time() - cpu}
        if backend == BACKENDS[0] or "breakdown_s" not in out:
            ranks = scenario.workload.simulated_ranks
            rank = max(ranks, key=lambda r: result.ranks[r].finished_ns)
            out["breakdown_s"] = breakdown(result, rank)
            out["breakdown_backend"] = backend
    return out


def run_row(row, machine: dict, backends: tuple[str, ...],
            simulated: dict | None = None) -> dict:
    """One row compared with each backend. A layer's forward and backward rows share one
    simulation of their mode, kept in ``simulated``."""
    key = (row.source, row.case, row.mode, row.layer)
    sim = (simulated or {}).get(key) if row.layer is not None else None
    if sim is None:
        sim = simulate_row(row, machine, backends)
        if simulated is not None and row.layer is not None:
            simulated[key] = sim
    out = {"source": row.source, "case": row.case, "mode": row.mode, "gpus": row.gpus,
           "measured_s": row.measured_s, "measured_as": row.measured_as,
           "layer_pass": row.layer_pass,
           **{k: v for k, v in sim.items() if k not in backends}}
    for backend in backends:
        seconds = sim[backend]["seconds"]
        if row.layer_pass is not None:
            seconds = seconds[row.layer_pass]
        out[backend] = {"predicted_s": seconds, "error": seconds / row.measured_s - 1,
                        "cpu_s": sim[backend]["cpu_s"]}
    return out


def is_layer_row(row: dict) -> bool:
    """A per-layer pass time (Korthikanti et al. 2022 Table 4), not an iteration."""
    return row["layer_pass"] is not None


def summary(rows: list[dict], backend: str) -> dict:
    """Mean and max |error| of ``backend`` over ``rows``."""
    errors = [abs(r[backend]["error"]) for r in rows]
    if not errors:
        return {}
    return {"mean_abs_error": sum(errors) / len(errors), "max_abs_error": max(errors),
            "rows": len(errors)}


def nccl_results(runs, machine: dict, backends: tuple[str, ...]) -> list[dict]:
    """Each nccl-tests run simulated with each backend: per size, measured and des busbw."""
    out = []
    for run in runs:
        per_backend = {b: compare_run(run, machine, b) for b in backends}
        out.append({"source": run.source, "run": run.name, "collective": run.collective,
                    "ranks": run.ranks, "nodes": run.nodes, "command": run.command,
                    "sizes": per_backend})
    return out


def nccl_summaries(results: list[dict], backends: tuple[str, ...]) -> dict:
    """Per measurement file and backend: mean and max |time error| over its sizes."""
    out: dict[str, dict] = {}
    for r in results:
        for b in backends:
            errors = out.setdefault(r["source"], {}).setdefault(b, [])
            errors.extend(abs(s["error"]) for s in r["sizes"][b])
    return {src: {b: {"mean_abs_error": sum(e) / len(e), "max_abs_error": max(e),
                      "sizes": len(e)} for b, e in per.items()} for src, per in out.items()}


def print_nccl(console, results: list[dict], backends: tuple[str, ...], machine: dict) -> dict:
    """The per-run tables and per-file summary lines; returns the summaries."""
    from rich.table import Table

    for r in results:
        table = Table(title=f"{r['source']}: {r['run']} ({r['collective']}, {r['ranks']} GPUs on "
                            f"{r['nodes']} node(s)) vs des on {machine['name']}")
        for c in ["size", "measured us", "measured busbw", *[x for b in backends for x in
                                                           (f"{b} us", f"{b} busbw", "error")]]:
            table.add_column(c, justify="right")
        first = r["sizes"][backends[0]]
        for i, row in enumerate(first):
            cells = [f"{row['size']:,}", f"{row['measured_us']:.1f}",
                     f"{row['measured_busbw']:.2f}"]
            for b in backends:
                s = r["sizes"][b][i]
                cells += [f"{s['des_us']:.1f}", f"{s['des_busbw']:.2f}", f"{s['error']:+.1%}"]
            table.add_row(*cells)
        console.print(table)
    console.print("busbw in GB/s, nccl-tests definitions (out-of-place); error = des time / "
                  "measured time - 1 (negative: des too fast)")
    summaries = nccl_summaries(results, backends)
    for src, per in summaries.items():
        for b, s in per.items():
            console.print(f"{src} ({b}): mean |error| {s['mean_abs_error']:.1%}, max "
                          f"{s['max_abs_error']:.1%}, {s['sizes']} sizes")
    return summaries


def print_iterations(console, results: list[dict], backends: tuple[str, ...], machine: dict,
                     data: list[str]) -> None:
    """The iteration rows' table, with the slowest rank's breakdown."""
    from rich.table import Table

    table = Table(title=f"Measured vs des on {machine['name']} ({', '.join(data)})")
    cols = ["case", "mode", "GPUs", "measured"]
    for b in backends:
        cols += [b, "error"]
    cols += ["fwd", "bwd", "recomp", "other", "exp tp", "exp pp", "exp dp", "idle", "cpu s"]
    for c in cols:
        table.add_column(c, justify="right", no_wrap=c in ("case", "mode"))
    for r in results:
        bd = r["breakdown_s"]
        cells = [r["case"], r["mode"], str(r["gpus"]), f"{r['measured_s']:.2f} s"]
        for b in backends:
            cells += [f"{r[b]['predicted_s']:.2f} s", f"{r[b]['error']:+.1%}"]
        cells += [f"{bd.get(k, 0.0):.2f}" for k in ("compute_fwd", "compute_bwd",
                                                  "compute_recompute", "compute_other",
                                                  "exposed_tp", "exposed_pp", "exposed_dp",
                                                  "idle")]
        cells.append(f"{sum(r[b]['cpu_s'] for b in backends) + r['build_cpu_s']:.1f}")
        table.add_row(*cells)
    console.print(table)
    console.print("breakdown: seconds on the slowest simulated rank (SimPy run): compute by "
                  "phase, communication no compute overlaps, idle (pipeline bubble, waits)")


def print_layers(console, results: list[dict], backends: tuple[str, ...]) -> None:
    """The per-layer rows: one layer's forward and backward pass per mode, and their summary
    (kept apart from the iteration rows' headline)."""
    from rich.table import Table

    table = Table(title="One transformer layer's passes, measured vs des (ms; backward "
                        "includes recomputation and tensor-parallel communication)")
    for c in ["case", "mode", "pass", "measured", *[x for b in backends for x in (b, "error")]]:
        table.add_column(c, justify="right", no_wrap=True)
    for r in results:
        cells = [r["case"], r["mode"], r["layer_pass"],
                 f"{r['measured_s'] * 1e3:.2f}"]
        for b in backends:
            cells += [f"{r[b]['predicted_s'] * 1e3:.2f}", f"{r[b]['error']:+.1%}"]
        table.add_row(*cells)
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    from rich.console import Console

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", nargs="+", default=[str(d) for d in DATA],
                        help="folders of measurement YAML files")
    parser.add_argument("--machine", default="selene-dgx-a100",
                        help="machine description (bundled name or YAML path)")
    parser.add_argument("--json", default=str(ROOT / "bench" / "results" / "validation.json"))
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--cases", nargs="*", help="only these case names")
    parser.add_argument("--only", choices=("rows", "nccl"),
                        help="only the training rows, or only the nccl-tests files")
    args = parser.parse_args(argv)
    console = Console(width=180)
    missing = [d for d in args.data if not Path(d).is_dir()]
    if missing or not args.data:
        console.print(f"measurement folder not found: {', '.join(missing) or '(none given)'}")
        return 2
    rows = [row for folder in args.data for row in load_rows(folder)]
    if args.cases:
        rows = [r for r in rows if r.case in args.cases]
    runs = [run for folder in args.data for run in load_runs(folder)]
    if args.only == "nccl":
        rows = []
    elif args.only == "rows":
        runs = []
    machine = load_machine(args.machine)
    backends = tuple(args.backends)
    nccl = nccl_results(runs, machine, backends)
    nccl_summary = print_nccl(console, nccl, backends, machine) if nccl else {}
    results = []
    simulated: dict = {}  # a layer mode's run, shared by its forward and backward rows
    for row in rows:
        console.print(f"[dim]{row.case} {row.mode} ({row.gpus} GPUs)...[/dim]")
        results.append(run_row(row, machine, backends, simulated))

    if not results:
        return _write(args, machine, results, {}, nccl, nccl_summary, console)
    iterations = [r for r in results if not is_layer_row(r)]
    if iterations:
        print_iterations(console, iterations, backends, machine, args.data)
    layers = [r for r in results if is_layer_row(r)]
    if layers:
        print_layers(console, layers, backends)
    summaries = {f"{b} per-layer": summary(layers, b) for b in backends if layers}
    summaries.update({b: summary(iterations, b) for b in backends if iterations})
    for b, s in summaries.items():
        if s:  # the iteration rows' lines last: the headline
            console.print(f"{b}: mean |error| {s['mean_abs_error']:.1%}, max "
                          f"{s['max_abs_error']:.1%}, {s['rows']} rows")
    return _write(args, machine, results, summaries, nccl, nccl_summary, console)


def _write(args, machine: dict, results: list[dict], summaries: dict, nccl: list[dict],
           nccl_summary: dict, console) -> int:
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"benchmark": "validation", "python": platform.python_version(),
                               "data": str(args.data), "machine": machine["name"],
                               "rows": results, "summary": summaries, "nccl_tests": nccl,
                               "nccl_summary": nccl_summary}, indent=1) + "\n")
    console.print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
