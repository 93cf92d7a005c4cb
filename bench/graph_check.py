"""Cost of validating a large event graph (:meth:`des.core.graph.EventGraph.validate`): node
checks, collective and send/recv matching, and the global cycle check.

The graph is generated (deterministic): ``--ranks`` ranks, each a chain of ``--layers`` blocks
of compute -> all-reduce over all ranks -> compute -> all-gather over a group of 8 -> send/recv
to the next rank (a pipeline ring, tag per layer). The default, 256 ranks x 90 layers, is
~115k nodes. Times are the best of ``--repeat`` fresh graphs. With ``--baseline REV`` the same
run repeats in a subprocess against git revision REV's tree (see :mod:`bench._baseline`) and
the table shows ratios.

Prints a table and writes ``bench/results/graph_check.json``. Never asserts anything about time.
Usage: ``python bench/graph_check.py [--ranks 256] [--layers 90] [--baseline bbfc2e4]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def build(ranks: int, layers: int):  # -> EventGraph
    """The generated graph (see the module docstring)."""
    from des.core.graph import EventGraph

    g = EventGraph(ranks, name=f"bench {ranks}x{layers}")
    everyone = list(range(ranks))
    last = {r: () for r in range(ranks)}
    for layer in range(layers):
        for r in range(ranks):
            last[r] = (g.compute(r, flops=1e9, deps=last[r]),)
        ar = g.collective_all("all_reduce", 1 << 20, group=everyone, deps=last)
        for r in range(ranks):
            last[r] = (g.compute(r, flops=1e9, deps=(ar[r],)),)
        for start in range(0, ranks, 8):
            octet = everyone[start:start + 8]
            ag = g.collective_all("all_gather", 1 << 16, group=octet,
                                  deps={r: last[r] for r in octet})
            for r in octet:
                last[r] = (ag[r],)
        for r in range(ranks):
            nxt, prv = (r + 1) % ranks, (r - 1) % ranks
            s = g.send(r, nxt, 4096, tag=layer, deps=last[r])
            v = g.recv(r, prv, 4096, tag=layer, deps=last[r])
            last[r] = (s, v)
    return g


def measure(root: Path, ranks: int, layers: int, repeat: int) -> dict:
    """Build and validate in this process with ``root``'s code."""
    sys.path.insert(0, str(root))
    best_build = best_validate = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        g = build(ranks, layers)
        best_build = min(best_build, time.perf_counter() - start)
        start = time.perf_counter()
        g.validate()
        best_validate = min(best_validate, time.perf_counter() - start)
        start = time.perf_counter()
        g.validate()  # unchanged graph: cached
        revalidate = time.perf_counter() - start
    return {"nodes": len(g), "build_s": best_build, "validate_s": best_validate,
            "revalidate_s": revalidate}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ranks", type=int, default=256)
    parser.add_argument("--layers", type=int, default=90)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--baseline", metavar="REV", help="also run git revision REV")
    parser.add_argument("--out", type=Path,
                        default=ROOT / "bench" / "results" / "graph_check.json")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.ranks, args.layers, args.repeat)))
        return
    sys.path.insert(0, str(ROOT))
    from rich.console import Console
    from rich.table import Table

    trees = {"after": ROOT}
    if args.baseline:
        from bench._baseline import checkout

        trees = {"before": checkout(args.baseline), "after": ROOT}
    runs = {}
    for name, tree in trees.items():
        out = subprocess.run([sys.executable, __file__, "--child", str(tree), "--ranks",
                              str(args.ranks), "--layers", str(args.layers), "--repeat",
                              str(args.repeat)], capture_output=True, text=True, check=True)
        runs[name] = json.loads(out.stdout.strip().splitlines()[-1])
    table = Table(title=f"validating a generated graph ({runs['after']['nodes']:,} nodes, "
                        f"{args.ranks} ranks; best of {args.repeat})")
    table.add_column("tree")
    for col in ("build graph", "validate", "validate again (cached)"):
        table.add_column(col, justify="right")
    for name, r in runs.items():
        table.add_row(name, f"{r['build_s']:.3f} s", f"{r['validate_s']:.3f} s",
                      f"{r['revalidate_s'] * 1e6:.1f} us")
    result = {"benchmark": "graph_check", "python": platform.python_version(),
              "ranks": args.ranks, "layers": args.layers, "baseline": args.baseline,
              "runs": runs}
    if "before" in runs:
        ratio = runs["after"]["validate_s"] / runs["before"]["validate_s"]
        result["validate_ratio_after_over_before"] = ratio
        table.add_row("after / before", "", f"{ratio:.2f}", "")
    Console(width=120).print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
