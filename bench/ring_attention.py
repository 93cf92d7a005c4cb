"""What ring attention's phase-level model saves: one STAGE lab point with cp = 64.

The point is ``configs/sweeps/stage_lab_llama70b.yaml``'s base scenario on System 1 with
dp = 1, tp = 1, cp = 64, recompute none (micro_batch = global_batch // dp = 512): Llama-70B,
80 layers, on a 4x4x4 torus. It is built and simulated with ``parallel.ring_attention``
``detailed`` (every KV exchange a send/recv pair and a compute node per block) and ``phased``
(:mod:`workloads.ring_attention`: O(1) nodes per rank, layer and pass), on both backends, each
case in its own process so CPU seconds and peak RSS are its own.

Usage: ``python bench/ring_attention.py [--modes detailed,phased] [--backends simpy,analytical]``
(``--modes default`` runs the scenario without the key, e.g. on a checkout that predates it).
Prints a table and writes ``bench/results/ring_attention.json``; asserts nothing about time.

Measured (2-CPU container, Python 3.11; "before" is commit bbfc2e4, which only had the detailed
model): 2,621,888 nodes -> 61,888. Analytical 52.3 CPU s, 2120 MB -> 1.5 CPU s, 123 MB (35x,
17x); SimPy 137.0 CPU s, 2120 MB, 31.0 M messages -> 10.3 CPU s, 140 MB, 2.6 M messages (13x,
15x). Iteration 13.49998 s -> 13.49334 s (analytical) and 13.49349 s (SimPy): -4.9e-4.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SWEEP = ROOT / "configs" / "sweeps" / "stage_lab_llama70b.yaml"


def scenario_data(mode: str) -> dict:
    """The sweep's base scenario at the cp = 64 point (System 1, recompute none)."""
    import yaml

    sweep = yaml.safe_load(SWEEP.read_text())
    data = sweep["base"]
    par = data["workload"]["parallel"]
    par.update(dp=1, tp=1, cp=64, recompute="none")
    par["micro_batch"] = par["global_batch"] // par["dp"]
    if mode != "default":
        par["ring_attention"] = mode
    data["name"] = f"stage_lab_llama70b cp64 {mode}"
    return data


def run_case(mode: str, backend: str) -> dict:
    """Build and simulate one case in this process."""
    sys.path.insert(0, str(ROOT))
    from des.app.config import scenario_from_dict
    from des.sim.backends import get_backend

    start = time.perf_counter()
    scenario = scenario_from_dict(scenario_data(mode), "stage_lab_cp64")
    built = time.perf_counter() - start
    result = get_backend(backend).run(scenario.topology, scenario.graph,
                                      hardware=scenario.hardware, options=scenario.options)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"mode": mode, "backend": backend, "nodes": len(scenario.graph),
            "messages": result.meta.get("messages", 0), "iteration_s": result.makespan_ns * 1e-9,
            "build_s": built, "wall_s": time.perf_counter() - start,
            "cpu_s": usage.ru_utime + usage.ru_stime, "peak_rss_mb": usage.ru_maxrss / 1024}


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        print(json.dumps(run_case(sys.argv[2], sys.argv[3])))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", default="detailed,phased")
    parser.add_argument("--backends", default="simpy,analytical")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "ring_attention.json"))
    args = parser.parse_args()
    rows = []
    for mode in args.modes.split(","):
        for backend in args.backends.split(","):
            print(f"running {mode} on {backend} ...", file=sys.stderr, flush=True)
            out = subprocess.run([sys.executable, __file__, "--child", mode, backend],
                                 capture_output=True, text=True, check=True)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    print(f"{'mode':>9} {'backend':>10} {'nodes':>11} {'iteration':>12} {'CPU':>9} "
          f"{'peak RSS':>10}")
    for r in rows:
        print(f"{r['mode']:>9} {r['backend']:>10} {r['nodes']:>11,} {r['iteration_s']:>10.4f} s "
              f"{r['cpu_s']:>7.1f} s {r['peak_rss_mb']:>7.0f} MB")
    for backend in args.backends.split(","):
        by_mode = {r["mode"]: r for r in rows if r["backend"] == backend}
        if "detailed" in by_mode and "phased" in by_mode:
            d, p = by_mode["detailed"], by_mode["phased"]
            print(f"{backend}: phased is {d['cpu_s'] / p['cpu_s']:.1f}x less CPU, "
                  f"{d['peak_rss_mb'] / p['peak_rss_mb']:.1f}x less peak RSS; iteration "
                  f"differs by {p['iteration_s'] / d['iteration_s'] - 1:+.2e}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"benchmark": "ring_attention", "python": platform.python_version(),
                               "rows": rows}, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
