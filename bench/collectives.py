"""Collective simulation speed at scale, in des's own model and in AstraSim-compatible mode.

Cases (each in its own process, so peak RSS is its own):

* ring all-reduce of 1 GiB on rings of 64, 256 and 1024 NPUs in 4 chunks, AstraSim-compatible
  (congestion-aware) with the inputs of AstraSim's ``ring1024_allreduce_1GiB`` reference case
  (50 GB/s, 500 ns, endpoint delay 10 ns, local-mem-bw 1600): the 1024 run must give
  46,129,156 ns. AstraSim's own binary takes about 17 s and 365 MB on this class of machine
  (``expected.json`` of that case records its wall time and peak RSS);
* the same ring all-reduces in des's default model (cut-through, chunks pipelined);
* a 1 GiB all-reduce on a 32x32 mesh (topology-aware ``torus2d`` algorithm), a 64 MiB
  all-reduce on a 16x16x16 torus with every setting left at its default (``auto`` picks the
  hierarchical algorithm, lockstep batching runs it);
* a 16 MiB all-to-all on a 1024-host k=16 fat tree (issue 11's size) as a scenario with every
  setting left at its default (D-mod-K routing, 4 chunks, every peer at once): the scenario
  folds onto one host, proven exact by the fabric's translations (``fattree_default``); and the
  same all-to-all built unfolded, one chunk per peer and at most 16 peers in flight per rank
  (``fattree_unfolded``: the defaults unfolded are 4x its messages, about 330 s and 1.8 GB).

Wall seconds include building the graph (and, for scenarios, the fold's proof).

Prints wall seconds, simulated ns, messages and events per wall second, and peak RSS; writes
``bench/results/collectives.json``. Never asserts anything about time.
Usage: ``python bench/collectives.py [--cases ring_astra ...] [--sizes 64 256 1024]``.
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
REFERENCE = ROOT / "reference" / "astra" / "ring1024_allreduce_1GiB"
CASES = ("ring_astra", "ring_astra_unaware", "ring_des", "mesh_des", "torus3d_default",
         "fattree_default", "fattree_unfolded")
GB_ASTRA = 2**30 / 1e9  # AstraSim's GB/s in bytes/ns


def run_case(case: str, npus: int) -> dict:
    """Build and simulate one case in this process."""
    sys.path.insert(0, str(ROOT))
    import topologies
    from des.core.graph import EventGraph
    from des.sim.engine import simulate
    from des.sim.options import EngineOptions

    start = time.perf_counter()
    graph = EventGraph(npus, case)
    if case in ("ring_astra", "ring_astra_unaware"):
        topo = topologies.ring(npus, 50 * GB_ASTRA, 500.0)
        graph.collective_all("all_reduce", 2**30)
        options = EngineOptions.astra_compat(congestion_aware=case == "ring_astra",
                                             endpoint_delay_ns=10.0, local_mem_bw=1600.0,
                                             splits=4)
    elif case == "ring_des":
        topo = topologies.ring(npus, 50 * GB_ASTRA, 500.0)
        graph.collective_all("all_reduce", 2**30)
        options = EngineOptions(chunks=4)
    elif case == "mesh_des":
        side = round(npus ** 0.5)
        topo = topologies.mesh2d(side, side, 50.0, 500.0)
        graph = EventGraph(side * side, case)
        graph.collective_all("all_reduce", 2**30, algorithm="torus2d")
        options = EngineOptions(chunks=4)
    elif case == "torus3d_default":  # a 16x16x16 torus, 64 MiB, every setting left default
        topo = topologies.torus3d(16, 16, 16, 50.0, 500.0)
        graph = EventGraph(topo.num_npus, case)
        graph.collective_all("all_reduce", 64 * 2**20)
        options = EngineOptions()
    elif case == "fattree_default":
        from des.app.config import scenario_from_dict

        scenario = scenario_from_dict({
            "name": case, "topology": {"kind": "fat_tree", "k": 16, "bandwidth": "50 GB/s",
                                       "latency": "500 ns"},
            "workload": {"kind": "collectives",
                         "ops": [{"collective": "all_to_all", "size": "16 MiB"}]}})
        topo, graph, options = scenario.topology, scenario.graph, scenario.options
    elif case == "fattree_unfolded":
        topo = topologies.fat_tree(16, 50.0, 500.0)
        graph = EventGraph(topo.num_npus, case)
        graph.collective_all("all_to_all", 16 * 2**20)
        options = EngineOptions(chunks=1, window=16)
    else:
        raise SystemExit(f"unknown case {case!r}; expected one of {', '.join(CASES)}")
    result = simulate(topo, graph, options=options)
    wall = time.perf_counter() - start
    return {
        "case": case,
        "npus": topo.num_npus,
        "messages": result.meta["messages"],
        "chunk_hops": result.meta["hops"],
        "simulated_ns": result.makespan_ns,
        "wall_s": wall,
        "messages_per_s": result.meta["messages"] / wall,
        "hops_per_s": result.meta["hops"] / wall,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def astra_reference() -> dict | None:
    """AstraSim's own figures for ring1024_allreduce_1GiB per backend, when the reference data
    is present: simulated ns, wall seconds and peak RSS of its run."""
    path = REFERENCE / "expected.json"
    if not path.is_file():
        return None
    doc = json.loads(path.read_text())
    return {backend: {"simulated_ns": doc["results"][backend]["max_finished_ns"],
                      "wall_s": doc["astra_wall_clock_s"][backend],
                      "peak_rss_mb": doc["astra_max_rss_kb"][backend] / 1024}
            for backend in ("congestion_aware", "congestion_unaware")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--out", type=Path,
                        default=ROOT / "bench" / "results" / "collectives.json")
    parser.add_argument("--child", nargs=2, metavar=("CASE", "NPUS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_case(args.child[0], int(args.child[1]))))
        return

    from rich.console import Console
    from rich.table import Table

    console = Console(width=150)
    plan = [(c, n) for c in args.cases for n in
            (args.sizes if c.startswith("ring") else [4096 if c.startswith("torus") else 1024])]
    rows = []
    for case, npus in plan:
        console.print(f"running {case} on {npus} NPUs ...", style="dim")
        out = subprocess.run([sys.executable, __file__, "--child", case, str(npus)],
                             capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    reference = astra_reference()
    table = Table(title="collective simulation speed")
    for col in ("case", "NPUs", "messages", "chunk-hops", "simulated ns", "wall", "msgs/s",
                "peak RSS", "vs AstraSim"):
        table.add_column(col, justify="right")
    for r in rows:
        versus = ""
        backend = {"ring_astra": "congestion_aware",
                   "ring_astra_unaware": "congestion_unaware"}.get(r["case"])
        if reference and backend and r["npus"] == 1024:
            ref = reference[backend]
            same = "same answer" if r["simulated_ns"] == ref["simulated_ns"] else \
                f"AstraSim says {ref['simulated_ns']:,}"
            versus = f"{ref['wall_s'] / r['wall_s']:.2f}x AstraSim's speed, {same}"
        table.add_row(r["case"], str(r["npus"]), f"{r['messages']:,}", f"{r['chunk_hops']:,}",
                      f"{r['simulated_ns']:,.0f}", f"{r['wall_s']:.2f} s",
                      f"{r['messages_per_s']:,.0f}", f"{r['peak_rss_mb']:.0f} MB", versus)
    console.print(table)
    for backend, ref in (reference or {}).items():
        console.print(f"AstraSim {backend} on ring1024_allreduce_1GiB: "
                      f"{ref['simulated_ns']:,} ns in {ref['wall_s']} s, "
                      f"{ref['peak_rss_mb']:.0f} MB (recorded with the reference data)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"benchmark": "collectives",
                                    "python": platform.python_version(),
                                    "machine": platform.machine(), "astra": reference,
                                    "rows": rows}, indent=1) + "\n")
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
