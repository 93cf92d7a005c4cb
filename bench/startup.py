"""Start-up cost of the command line: CPU seconds (user + system) of

* ``python -c pass`` (the bare interpreter),
* ``python -m des --version`` (importing the CLI),
* ``python -m des simulate --quiet SCENARIO`` (a small bundled scenario, end to end),

each run ``--runs`` times in a fresh process, runs interleaved. With ``--baseline REV`` the same
commands also run against the tree of git revision REV (unpacked by :mod:`bench._baseline`),
interleaved with this tree's runs, and the table shows before/after ratios. "Beyond bare" is a
command's median minus the bare interpreter's median: what des itself costs.

Prints a table and writes ``bench/results/startup.json``. Never asserts anything about time.
Usage: ``python bench/startup.py [--runs 9] [--baseline bbfc2e4] [--scenario NAME]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def commands(scenario: str) -> dict[str, list[str]]:
    """The timed command lines, by label."""
    return {
        "python -c pass": [sys.executable, "-c", "pass"],
        "des --version": [sys.executable, "-m", "des", "--version"],
        f"des simulate --quiet {scenario}": [sys.executable, "-m", "des", "simulate",
                                             "--quiet", scenario],
    }


def cpu_seconds(argv: list[str], tree: Path) -> float:
    """CPU seconds (user + system) one run of ``argv`` takes with ``tree``'s code."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(argv, cwd=tree, env=env, check=True, stdout=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=9, help="runs per command and tree")
    parser.add_argument("--scenario", default="dp8_ring_overlap",
                        help="bundled scenario for the simulate run")
    parser.add_argument("--baseline", metavar="REV",
                        help="also time git revision REV and report after/before ratios")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "startup.json")
    args = parser.parse_args()

    from rich.console import Console
    from rich.table import Table

    console = Console(width=140)
    trees = {"after": ROOT}
    if args.baseline:
        from bench._baseline import checkout

        trees = {"before": checkout(args.baseline), "after": ROOT}
    cmds = commands(args.scenario)
    samples: dict[str, dict[str, list[float]]] = {t: {c: [] for c in cmds} for t in trees}
    for _ in range(args.runs):  # interleaved, so both trees see the same machine load
        for label, argv in cmds.items():
            for tree_name, tree in trees.items():
                samples[tree_name][label].append(cpu_seconds(argv, tree))
    medians = {t: {c: statistics.median(v) for c, v in s.items()} for t, s in samples.items()}
    bare = "python -c pass"
    table = Table(title=f"start-up CPU seconds (median of {args.runs} runs; min in brackets)")
    table.add_column("command")
    for t in trees:
        table.add_column(t, justify="right")
        table.add_column(f"{t} beyond bare", justify="right")
    if "before" in trees:
        table.add_column("after / before (beyond bare)", justify="right")
    rows = []
    for label in cmds:
        row = {"command": label}
        cells = [label]
        for t in trees:
            med = medians[t][label]
            beyond = med - medians[t][bare]
            row[t] = {"median_s": med, "min_s": min(samples[t][label]),
                      "beyond_bare_s": beyond, "runs_s": samples[t][label]}
            cells += [f"{med:.3f} ({min(samples[t][label]):.3f})",
                      "" if label == bare else f"{beyond:.3f}"]
        if "before" in trees and label != bare:
            ratio = row["after"]["beyond_bare_s"] / row["before"]["beyond_bare_s"]
            row["ratio_beyond_bare"] = ratio
            cells.append(f"{ratio:.2f}")
        elif "before" in trees:
            cells.append("")
        rows.append(row)
        table.add_row(*cells)
    console.print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "benchmark": "startup", "python": platform.python_version(),
        "machine": platform.machine(), "runs": args.runs, "scenario": args.scenario,
        "baseline": args.baseline, "rows": rows}, indent=1) + "\n")
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
