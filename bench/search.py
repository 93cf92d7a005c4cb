"""How much of a space ``des search`` simulates, whether it finds the optimum, how long it takes.

For each shipped STAGE lab sweep (``configs/sweeps/stage_lab_*.yaml``): the search of the
sweep's space (no memory limit, as the sweep's first ranking; within the sweep's 80 GiB no point
fits, and the search says so too), against the full sweep's results (``--full NAME=DIR``: a
``des sweep`` results folder; with ``--run-full`` the sweep is run there first, resuming what is
done). Reported: points in the space (all combinations, and those the sweep's constraints
allow), points simulated with contention by the search, their fraction, whether the optimum
matches the full sweep's best (the same point and time), and wall time. A full sweep that has
not finished is compared over the points it has, and says so.

Then a synthetic space of >= 10^5 candidates (``configs/searches/llama70b_1024.yaml``:
Llama-2-70B on 1024 GPUs, every axis free): counts at each stage and time taken, for the
enumeration, prunes and bound alone and (``--synthetic-full``) for the whole search.

Prints a table and writes ``bench/results/search.json``. Never asserts.
Usage: ``python bench/search.py [--workers 2] [--full stage_lab_llama70b=DIR ...]
[--run-full] [--synthetic-full] [--skip-lab]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
LABS = ("stage_lab_llama70b", "stage_lab_gpt175b")
SYNTHETIC = ROOT / "configs" / "searches" / "llama70b_1024.yaml"


def lab_row(name: str, full_dir: Path | None, run_full: bool, workers: int,
            reuse: dict | None = None) -> dict:
    """One STAGE sweep: the search (or a previous run's, ``reuse``) against the full sweep."""
    from des.app.search import run_search
    from des.app.search_spec import load_spec
    from des.app.sweep import run_sweep
    from des.app.sweep_exec import LocalExecutor
    from des.app.sweep_results import load_done, ranking

    spec = load_spec(name)
    spec.memory_limit, spec.memory_limit_set = None, True
    sweep = spec.sweep
    points = sweep.points()
    if reuse is not None:
        row = {k: v for k, v in reuse.items() if not k.startswith("full")
               and k not in ("optimum_matches", "search_not_worse_than_any_done")}
    else:
        start = time.perf_counter()
        found = run_search(spec, LocalExecutor(workers))
        wall = time.perf_counter() - start
        valid = sum(1 for p in points if not sweep.screen(p)[1])
        row = {"sweep": name, "points": len(points), "valid_points": valid,
               "simulated": found.counts["confirmed"], "analysed": found.counts["analysed"],
               "fraction_of_valid": found.counts["confirmed"] / valid,
               "fraction_of_points": found.counts["confirmed"] / len(points),
               "search_wall_s": wall, "proven": found.proven, "stop": found.stop,
               "best": found.best.values if found.best else None,
               "best_key": found.best.point.key if found.best else None,
               "best_s": found.best.confirmed_s if found.best else None,
               "bound_gap": found.bound_gap,
               "confirmed": [{"values": c.values, "contended_s": c.confirmed_s,
                              "analytical_s": c.analytical_s, "bound_s": c.prescreen_s}
                             for c in found.confirmed],
               "analysed_points": [{"key": c.point.key, "analytical_s": c.analytical_s,
                                    "bound_s": c.prescreen_s}
                                   for c in [*found.confirmed, *found.runners_up]
                                   if c.analytical_s is not None]}
    valid = row["valid_points"]
    if full_dir is not None and run_full:
        start = time.perf_counter()
        run_sweep(sweep, full_dir, executor=LocalExecutor(workers))
        row["full_wall_s"] = time.perf_counter() - start
    if full_dir is not None and (full_dir / "points.jsonl").is_file():
        done = load_done(full_dir)
        keys = {p.key for p in points}
        results = [r for r in done.values() if r.key in keys]
        ok = [r for r in results if r.status == "ok"]
        row["full_ok_points"] = len(ok)
        row["full_complete"] = len(ok) == valid
        row["full_sim_wall_s"] = sum(r.metrics.get("wall_s", 0.0) for r in ok)
        best = ranking(results)
        if best and row["best_s"] is not None:
            row["full_best"] = best[0].values
            row["full_best_s"] = best[0].metrics["iteration_s"]
            row["optimum_matches"] = (best[0].key == row["best_key"]
                                      and best[0].metrics["iteration_s"] == row["best_s"])
            row["search_not_worse_than_any_done"] = all(
                row["best_s"] <= r.metrics["iteration_s"] for r in ok)
        # the lower-bound property on every point the search analysed that the sweep ran
        simpy = {r.key: r.metrics["iteration_s"] for r in ok}
        pairs = [(a["analytical_s"], a["bound_s"], simpy[a["key"]])
                 for a in row.get("analysed_points", []) if a["key"] in simpy]
        row["bound_checked_points"] = len(pairs)
        row["analytical_above_contended"] = sum(a > t * (1 + 1e-9) for a, _, t in pairs)
        row["closed_form_above_contended"] = sum(b > t * (1 + 1e-9) for _, b, t in pairs)
        row["worst_analytical_over_contended"] = max((a / t for a, _, t in pairs),
                                                     default=None)
        fit = ranking(results, sweep.memory_limit)
        row["full_points_within_memory_limit"] = len(fit)
    return row


def synthetic_row(full: bool, workers: int, analyse_max: int | None = None) -> dict:
    """The >= 10^5-candidate space: counts and times of each stage (the search's own
    :func:`~des.app.search.prescreen`)."""
    from des.app.search import prescreen, run_search
    from des.app.search_spec import load_spec
    from des.app.sweep_exec import LocalExecutor

    spec = load_spec(str(SYNTHETIC))
    space, screen = prescreen(spec)
    row = {"space": SYNTHETIC.name, "candidates": len(space.cands), **screen.counts,
           "enumerate_s": screen.wall["enumerate"], "prune_s": screen.wall["prune"],
           "bound_s": screen.wall["prescreen"]}
    if full:  # optionally a budget: each analytical run of a 1024-GPU candidate takes seconds
        spec.confirm.analyse_max = analyse_max
        start = time.perf_counter()
        found = run_search(spec, LocalExecutor(workers))
        row.update(search_wall_s=time.perf_counter() - start, counts=found.counts,
                   proven=found.proven, stop=found.stop,
                   best=found.best.strategy if found.best else None,
                   best_s=found.best.confirmed_s if found.best else None,
                   bound_gap=found.bound_gap)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--full", action="append", default=[], metavar="NAME=DIR",
                        help="a full sweep's results folder (default sweeps/<name>)")
    parser.add_argument("--run-full", action="store_true",
                        help="run (or resume) the full sweeps there first")
    parser.add_argument("--synthetic-full", action="store_true",
                        help="also run the whole search of the synthetic space")
    parser.add_argument("--analyse-max", type=int, default=None,
                        help="cap the analytical runs of the whole synthetic search "
                             "(default: none, the search runs to its proof)")
    parser.add_argument("--skip-lab", action="store_true")
    parser.add_argument("--reuse", type=Path, metavar="JSON",
                        help="take the lab searches from an earlier run's JSON; only compare")
    parser.add_argument("--skip-synthetic", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "search.json")
    args = parser.parse_args()
    dirs = {name: ROOT / "sweeps" / name for name in LABS}
    for item in args.full:
        name, _, folder = item.partition("=")
        dirs[name] = Path(folder)
    old = {}
    if args.reuse:
        old = json.loads(args.reuse.read_text())
    before = {r["sweep"]: r for r in old.get("labs", [])}
    labs = [] if args.skip_lab else [lab_row(n, dirs.get(n), args.run_full, args.workers,
                                             before.get(n)) for n in LABS]
    synthetic = old.get("synthetic") if args.skip_synthetic else synthetic_row(
        args.synthetic_full, args.workers, args.analyse_max)
    print(f"{'sweep':22} {'points':>7} {'valid':>6} {'simulated':>9} {'fraction':>9} "
          f"{'optimum':>8} {'search s':>9} {'full sweep':>16}")
    for r in labs:
        full = (f"{r['full_ok_points']}/{r['valid_points']} done" if "full_ok_points" in r
                else "not given")
        match = r.get("optimum_matches")
        print(f"{r['sweep']:22} {r['points']:7d} {r['valid_points']:6d} {r['simulated']:9d} "
              f"{r['fraction_of_valid']:9.1%} {match!s:>8} {r['search_wall_s']:9.1f} "
              f"{full:>16}")
    s = synthetic or {}
    if s:
        print(f"\nsynthetic {s['space']}: {s['candidates']:,} candidates, "
              f"{s['pruned_divisibility']:,} pruned by divisibility, {s['pruned_memory']:,} "
              f"by memory, {s['pruned_equivalent']:,} as the same graph, {s['survivors']:,} "
              f"survivors; enumerate {s['enumerate_s']:.2f} s, "
              f"prune {s['prune_s']:.2f} s, bound {s['bound_s']:.2f} s")
    if "search_wall_s" in s:
        c = s["counts"]
        print(f"  whole search: {s['search_wall_s']:.0f} s, {c['analysed']} analysed, "
              f"{c['confirmed']} confirmed, best {s['best_s']} s, proven {s['proven']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"labs": labs, "synthetic": synthetic}, indent=1,
                                   default=str) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
