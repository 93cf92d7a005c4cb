"""Engine throughput: simulated chunk-hops per wall second and peak memory.

Two many-flow workloads at 64, 256 and 1024 NPUs, each in its own process so that peak RSS is
that case's alone:

* ``ring_allreduce``: 1 GiB ring all-reduce in 4 chunks on a bidirectional ring (1 hop per
  message, 2(N-1) x 4 x N messages: the shape of AstraSim's ring1024_allreduce_1GiB case);
* ``switch_alltoall``: 64 MiB direct all-to-all in 4 chunks through one switch (2 hops per
  message, N(N-1) x 4 messages, every downlink contended).

Prints a table and writes ``bench/results/engine.json``. Never asserts anything about time.
Usage: ``python bench/engine.py [--sizes 64 256 1024] [--cases ring_allreduce ...]``.
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
CASES = ("ring_allreduce", "switch_alltoall")


def run_case(case: str, npus: int) -> dict:
    """Build and simulate one case in this process; return its measurements."""
    sys.path.insert(0, str(ROOT))
    import topologies
    from des.core.graph import EventGraph
    from des.sim.engine import EngineOptions, simulate

    graph = EventGraph(npus, case)
    if case == "ring_allreduce":
        topo = topologies.ring(npus, 50.0, 500.0)
        graph.collective_all("all_reduce", 2**30)
    elif case == "switch_alltoall":
        topo = topologies.switch(npus, 50.0, 500.0, switch_latency=100.0)
        graph.collective_all("all_to_all", 64 * 2**20)
    else:
        raise SystemExit(f"unknown case {case!r}; expected one of {', '.join(CASES)}")
    start = time.perf_counter()
    result = simulate(topo, graph, options=EngineOptions(chunks=4))
    wall = time.perf_counter() - start
    return {
        "case": case,
        "npus": npus,
        "messages": result.meta["messages"],
        "chunk_hops": result.meta["hops"],
        "simulated_ns": result.makespan_ns,
        "wall_s": wall,
        "hops_per_s": result.meta["hops"] / wall,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "engine.json")
    parser.add_argument("--child", nargs=2, metavar=("CASE", "NPUS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_case(args.child[0], int(args.child[1]))))
        return

    from rich.console import Console
    from rich.table import Table

    rows = []
    console = Console(width=140)
    for case in args.cases:
        for npus in args.sizes:
            console.print(f"running {case} on {npus} NPUs ...", style="dim")
            out = subprocess.run([sys.executable, __file__, "--child", case, str(npus)],
                                 capture_output=True, text=True, check=True)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    table = Table(title="des engine throughput")
    for col in ("case", "NPUs", "messages", "chunk-hops", "simulated", "wall", "hops/s",
                "peak RSS"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(r["case"], str(r["npus"]), f"{r['messages']:,}", f"{r['chunk_hops']:,}",
                      f"{r['simulated_ns'] / 1e6:.3f} ms", f"{r['wall_s']:.2f} s",
                      f"{r['hops_per_s']:,.0f}", f"{r['peak_rss_mb']:.0f} MB")
    console.print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "benchmark": "engine",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "rows": rows,
    }, indent=1) + "\n")
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
