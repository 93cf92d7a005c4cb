"""Which cheap estimate predicts a sweep point's simpy run time: graph nodes or analytical time?

For points of the shipped ``configs/sweeps/*.yaml`` (every valid point of the small sweeps, and
the stage-lab points given with ``--lab``), each in its own process (``--limit`` seconds for
the simpy run; a point over it is left out): build the scenario (timed), count its event-graph
nodes, run the analytical backend (timed), run simpy (timed). Prints one JSON row per point and
the Spearman rank correlation of each estimate with the simpy time (the order is what a
cheapest-first sweep needs), and writes ``bench/results/sweep_cost.json``. Never asserts.
Usage: ``python bench/sweep_cost.py [--limit 150] [--lab DP,TP,CP ...]``.
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # des's packages, not bench/collectives.py
LAB = ["64,1,1", "16,4,1", "4,16,1", "1,64,1", "8,8,1", "32,1,2", "8,1,8", "2,4,8", "4,1,16"]


def measure(sweep_name: str, index: int) -> dict:
    """One point: build, node count, analytical and simpy wall seconds."""
    from des.app.config import scenario_from_dict
    from des.app.sweep_load import load_sweep
    from des.sim.backends import get_backend

    sweep = load_sweep(sweep_name)
    point, reason = sweep.screen(sweep.points()[index])
    assert not reason, reason
    row: dict = {"sweep": sweep_name, "index": index, "values": point.values}
    start = time.perf_counter()
    scenario = scenario_from_dict(copy.deepcopy(point.scenario), point.scenario["name"])
    row["build_s"], row["nodes"] = time.perf_counter() - start, len(scenario.graph)
    for backend in ("analytical", "simpy"):
        scenario = scenario_from_dict(copy.deepcopy(point.scenario), point.scenario["name"])
        start = time.perf_counter()
        try:
            get_backend(backend).run(scenario.topology, scenario.graph,
                                     hardware=scenario.hardware, options=scenario.options)
            row[f"{backend}_s"] = time.perf_counter() - start
        except Exception as err:  # the analytical backend refuses timed faults
            row[f"{backend}_s"] = None
            row[f"{backend}_error"] = f"{type(err).__name__}: {err}"
    return row


def spearman(xs: list[float], ys: list[float]) -> float:
    """Spearman's rank correlation (average ranks for ties)."""
    def ranks(values: list[float]) -> list[float]:
        order = sorted(range(len(values)), key=values.__getitem__)
        out = [0.0] * len(values)
        i = 0
        while i < len(order):
            j = i
            while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
                j += 1
            for k in range(i, j + 1):
                out[order[k]] = (i + j) / 2
            i = j + 1
        return out
    rx, ry = ranks(xs), ranks(ys)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    sx = sum((a - mx) ** 2 for a in rx) ** 0.5
    sy = sum((b - my) ** 2 for b in ry) ** 0.5
    return cov / (sx * sy)


def _points(lab: list[str]) -> list[tuple[str, int]]:
    from des.app.sweep_load import load_sweep

    out = []
    for name in ("topology_comparison", "link_faults"):
        sweep = load_sweep(name)
        out += [(name, p.index) for p in sweep.points() if not sweep.screen(p)[1]]
    sweep = load_sweep("stage_lab_llama70b")
    for spec in lab:
        dp, tp, cp = (int(v) for v in spec.split(","))
        want = {"system": "system1", "workload.parallel.recompute": "none",
                "workload.parallel.dp": dp, "workload.parallel.tp": tp,
                "workload.parallel.cp": cp}
        out += [("stage_lab_llama70b", p.index) for p in sweep.points() if p.values == want]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=float, default=150.0, metavar="S")
    parser.add_argument("--lab", nargs="*", default=LAB, metavar="DP,TP,CP")
    parser.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one[0], int(args.one[1]))))
        return
    rows = []
    for name, index in _points(args.lab):
        try:
            done = subprocess.run([sys.executable, __file__, "--one", name, str(index)],
                                  capture_output=True, text=True, timeout=args.limit,
                                  cwd=ROOT, check=True)
        except subprocess.TimeoutExpired:
            print(f"{name} #{index}: over {args.limit:g} s, left out", file=sys.stderr)
            continue
        rows.append(json.loads(done.stdout))
        print(done.stdout.strip(), flush=True)
    both = [r for r in rows if r["analytical_s"] is not None]
    summary = {
        "points": len(rows),
        "spearman_nodes_vs_simpy": spearman([r["nodes"] for r in rows],
                                            [r["simpy_s"] for r in rows]),
        "spearman_analytical_vs_simpy": spearman([r["analytical_s"] for r in both],
                                                 [r["simpy_s"] for r in both]),
        "spearman_nodes_vs_simpy_same_points": spearman([r["nodes"] for r in both],
                                                        [r["simpy_s"] for r in both]),
        "analytical_points": len(both),
        "build_s": sum(r["build_s"] for r in rows),
        "analytical_s": sum(r["analytical_s"] for r in both),
        "simpy_s": sum(r["simpy_s"] for r in rows),
    }
    print(json.dumps(summary, indent=1))
    results = ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    (results / "sweep_cost.json").write_text(json.dumps({"rows": rows, "summary": summary},
                                                        indent=1) + "\n")


if __name__ == "__main__":
    main()
