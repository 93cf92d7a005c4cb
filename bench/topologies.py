"""Topology build and routing cost at scale.

For 32x32 and 64x64 meshes, 32x32 and 64x64 tori, a 16x16x16 torus and a k=16 fat tree (1024
hosts): the time to build the topology, and the time to route pairs with a cold cache. Tables of
up to 1024 NPUs route every ordered pair (the full route table); larger ones route a fixed
random sample of pairs and extrapolate the full table from the mean time per route (marked as
such). Each case runs in its own process so peak RSS is its own.

With ``--baseline REV`` every case also runs against git revision REV's tree (unpacked by
:mod:`bench._baseline`) and the table adds the after/before ratio of the routing time.
``--cases`` picks cases by name substring.

Prints a table and writes ``bench/results/topologies.json``. Never asserts anything about time.
Usage: ``python bench/topologies.py [--sample 50000] [--baseline bbfc2e4] [--cases fat,leaf]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CASES = {
    "mesh2d 32x32": "mesh2d:32x32",
    "mesh2d 64x64": "mesh2d:64x64",
    "torus2d 32x32": "torus2d:32x32",
    "torus2d 64x64": "torus2d:64x64",
    "torus3d 16x16x16": "torus3d:16x16x16",
    "fat_tree k=16": "fattree:k=16",
    "leaf_spine 32x32:16": "leafspine:leaves=32,hosts=32,spines=16",
    "superpod 128x8": "superpod:nodes=128",
}
FULL_TABLE_LIMIT = 1024


def run_case(spec: str, sample: int, root: Path = ROOT) -> dict:
    """Build and route one topology in this process with ``root``'s code."""
    sys.path.insert(0, str(root))
    from topologies.spec import parse_spec

    start = time.perf_counter()
    topo = parse_spec(spec)
    build = time.perf_counter() - start
    n = topo.num_npus
    if n <= FULL_TABLE_LIMIT:
        pairs = [(s, d) for s in range(n) for d in range(n) if s != d]
    else:
        rng = random.Random(0)
        pairs = [(rng.randrange(n), rng.randrange(n)) for _ in range(sample)]
        pairs = [(s, d) for s, d in pairs if s != d]
    start = time.perf_counter()
    hops = 0
    for s, d in pairs:
        hops += len(topo.route(s, d))
    routing = time.perf_counter() - start
    per_route = routing / len(pairs)
    return {
        "spec": spec,
        "npus": n,
        "devices": topo.num_devices,
        "links": len(topo.links),
        "build_s": build,
        "pairs_routed": len(pairs),
        "routing_s": routing,
        "us_per_route": per_route * 1e6,
        "mean_hops": hops / len(pairs),
        "full_table_s": per_route * n * (n - 1),
        "full_table_extrapolated": n > FULL_TABLE_LIMIT,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sample", type=int, default=50_000,
                        help="pairs routed on topologies larger than 1024 NPUs")
    parser.add_argument("--out", type=Path,
                        default=ROOT / "bench" / "results" / "topologies.json")
    parser.add_argument("--baseline", metavar="REV", help="also run git revision REV")
    parser.add_argument("--cases", help="comma-separated substrings of case names to run")
    parser.add_argument("--child", metavar="SPEC", help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, default=ROOT, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_case(args.child, args.sample, args.root)))
        return
    sys.path.insert(0, str(ROOT))
    baseline = None
    if args.baseline:
        from bench._baseline import checkout

        baseline = checkout(args.baseline)
    wanted = args.cases.split(",") if args.cases else None

    from rich.console import Console
    from rich.table import Table

    console = Console(width=140)
    rows = []
    def child(spec: str, root: Path) -> dict:
        out = subprocess.run([sys.executable, __file__, "--child", spec, "--sample",
                              str(args.sample), "--root", str(root)],
                             capture_output=True, text=True, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])

    for name, spec in CASES.items():
        if wanted and not any(w in name for w in wanted):
            continue
        console.print(f"running {name} ...", style="dim")
        row = {"case": name, **child(spec, ROOT)}
        if baseline is not None:
            row["before"] = child(spec, baseline)
            row["routing_ratio"] = row["routing_s"] / row["before"]["routing_s"]
        rows.append(row)
    table = Table(title="topology build and routing")
    for col in ("case", "NPUs", "devices", "links", "build", "pairs routed", "per route",
                "mean hops", "full route table", "peak RSS"):
        table.add_column(col, justify="right")
    if baseline is not None:
        table.add_column("per route before", justify="right")
        table.add_column("routing after/before", justify="right")
    for r in rows:
        full = f"{r['full_table_s']:.1f} s" + (" (extrapolated)" if r["full_table_extrapolated"]
                                               else "")
        cells = [r["case"], str(r["npus"]), str(r["devices"]), f"{r['links']:,}",
                 f"{r['build_s']:.2f} s", f"{r['pairs_routed']:,}",
                 f"{r['us_per_route']:.1f} us", f"{r['mean_hops']:.1f}", full,
                 f"{r['peak_rss_mb']:.0f} MB"]
        if baseline is not None:
            cells += [f"{r['before']['us_per_route']:.1f} us", f"{r['routing_ratio']:.2f}"]
        table.add_row(*cells)
    console.print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"benchmark": "topologies",
                                    "python": platform.python_version(),
                                    "machine": platform.machine(),
                                    "baseline": args.baseline, "rows": rows},
                                   indent=1) + "\n")
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
