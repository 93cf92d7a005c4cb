"""``des search``: its options, the tables it prints and the files it writes.

The spec is a YAML file (:mod:`des.app.search_spec`), a bundled sweep's name (its space is
searched), or built from flags (``--base SCENARIO --free tp=auto --free pp=1,2,4 ...``); flags
override the file's ``memory_limit`` and ``confirm`` settings. A spec with a ``hardware:``
section is a hardware search (:mod:`des.app.hw_search`). Exit codes: 0 done, 2 bad input.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from des.app.cli_sweep import add_executor_arguments, make_executor
from des.core.units import format_seconds

EXAMPLES = """examples:
  des search stage_lab_llama70b                      # search a bundled sweep's space
  des search llama70b_1024 --json best.json --csv runs.csv   # a bundled search
  des search --base llama70b_torus3d_64 --free tp=auto --free pp=auto \\
             --free recompute=none,full --memory-limit '80 GiB'
  des search configs/searches/hw_llama7b.yaml --plot pareto.png   # hardware search
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``des search`` options."""
    parser.add_argument("spec", nargs="?",
                        help="search spec YAML, or a bundled sweep name to search its space")
    parser.add_argument("--base", metavar="SCENARIO",
                        help="search this scenario (file or bundled name) with --free axes")
    parser.add_argument("--free", action="append", default=[], metavar="AXIS=VALUES",
                        help="a free strategy axis: tp=auto, pp=1,2,4, sp=false,true, "
                             "recompute=none,full ... (repeat)")
    parser.add_argument("--memory-limit", metavar="SIZE",
                        help="per-GPU memory limit ('80 GiB'; 'none' for no limit)")
    parser.add_argument("--margin", type=float, metavar="X",
                        help="how far the analytical time may exceed the contended one "
                             "(default 0: trusted as a lower bound)")
    parser.add_argument("--max-confirm", type=int, metavar="N",
                        help="most contended (SimPy) runs (default 64)")
    parser.add_argument("--analyse-max", type=int, metavar="N",
                        help="most analytical runs (default: no limit); a search stopped by "
                             "it says its best is not proven")
    add_executor_arguments(parser)
    parser.add_argument("--top", type=int, default=10, metavar="N", help="runner-up rows")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the result as JSON")
    parser.add_argument("--csv", type=Path, metavar="FILE",
                        help="write every candidate that reached a backend as CSV")
    parser.add_argument("--plot", type=Path, metavar="FILE.png",
                        help="hardware search: the Pareto front of time against cost "
                             "(plot extra)")
    parser.add_argument("--no-explain", action="store_true",
                        help="skip the winner's time breakdown (one more contended run)")


def _free(items: list[str]) -> dict[str, Any]:
    from des.app.search_spec import SearchError

    out: dict[str, Any] = {}
    for item in items:
        axis, sep, raw = item.partition("=")
        if not sep or not axis or not raw:
            raise SearchError(f"--free {item!r}: expected AXIS=VALUES like tp=1,2,4 or tp=auto")
        if raw == "auto":
            out[axis] = "auto"
            continue
        values: list[Any] = []
        for text in raw.split(";" if axis == "order" else ","):
            text = text.strip()
            if text in ("true", "false"):
                values.append(text == "true")
            elif text.isdigit():
                values.append(int(text))
            else:
                values.append(text)
        out[axis] = values
    return out


def load(args: argparse.Namespace) -> Any:
    """The spec the arguments name (a strategy or a hardware search)."""
    from des.app.search_spec import SearchError, load_spec, spec_from_dict

    if args.spec and args.base:
        raise SearchError("give a spec or --base, not both")
    if args.spec:
        spec = load_spec(args.spec)
        if getattr(spec, "kind", "") == "hardware":  # its own flags; the overrides below
            return spec                              # are strategy-search settings
        if args.free:
            raise SearchError("--free goes with --base (a spec file lists its free axes)")
    elif args.base:
        spec = spec_from_dict({"base": args.base, "free": _free(args.free)}, "search")
    else:
        raise SearchError("name a search spec (YAML file or bundled sweep) or give --base "
                          "SCENARIO with --free axes; see des search --help")
    if args.memory_limit is not None:
        from des.core import units

        spec.memory_limit_set = True
        spec.memory_limit = None if args.memory_limit == "none" else units.parse_size(
            args.memory_limit, "--memory-limit")
    if args.margin is not None:
        if not args.margin >= 0:
            raise SearchError(f"--margin: must be >= 0, got {args.margin}")
        spec.confirm.margin = args.margin
    if args.max_confirm is not None:
        if args.max_confirm < 1:
            raise SearchError(f"--max-confirm: must be >= 1, got {args.max_confirm}")
        spec.confirm.max = args.max_confirm
    if args.analyse_max is not None:
        if args.analyse_max < 1:
            raise SearchError(f"--analyse-max: must be >= 1, got {args.analyse_max}")
        spec.confirm.analyse_max = args.analyse_max
    return spec


def run(args: argparse.Namespace, console: Console) -> int:
    """``des search``: search, render, write; the exit code."""
    from des.app.search import SearchProgress, explain, run_search

    spec = load(args)
    _check_outputs(args)
    executor = make_executor(args)
    if getattr(spec, "kind", "") == "hardware":
        from des.app.hw_search import run_hw_search

        result = run_hw_search(spec, executor)
        render_hw(result, console, args.top)
        _write(args, result, console)
        if args.plot:
            from des.app.hw_search import plot_pareto

            console.print(f"wrote {plot_pareto(result, args.plot)}")
        return 0
    with console.status("searching: pruning and bounding", spinner="dots") as status:
        def show(p: SearchProgress) -> None:
            best = f", best {format_seconds(p.best_s)}" if p.best_s is not None else ""
            floor = f", open bounds from {format_seconds(p.floor_s)}" \
                if p.floor_s is not None else ""
            status.update(f"searching {p.survivors:,} candidates: {p.analysed:,} analytical "
                          f"runs, {p.confirmed:,} contended{best}{floor}")

        result = run_search(spec, executor, show)
        if result.best is not None and not args.no_explain:
            result.explanation = explain(result.best)
    render(result, console, args.top)
    _write(args, result, console)
    return 0


def _check_outputs(args: argparse.Namespace) -> None:
    """A bad --json/--csv/--plot path fails now, not after a long search."""
    from des.app.cli_tools import check_writable

    for path in (args.json, args.csv, args.plot):
        if path:
            check_writable(path)


def _write(args: argparse.Namespace, result: Any, console: Console) -> None:
    if args.json:
        args.json.write_text(json.dumps(result.as_dict(), indent=1, default=str) + "\n")
        console.print(f"wrote {args.json}")
    if args.csv:
        from des.app.sweep_results import write_csv

        write_csv(result.rows(), args.csv)
        console.print(f"wrote {args.csv}")


def _s(value: float | None) -> str:
    return "-" if value is None else format_seconds(value)


def _strategy(s: dict[str, Any]) -> str:
    parts = [f"{k}{s[k]}" for k in ("tp", "pp", "dp", "cp", "ep") if s[k] > 1] or ["1 GPU"]
    extra = []
    if s["sp"]:
        extra.append("sp")
    if s["zero"]:
        extra.append(f"zero{s['zero']}")
    if s["recompute"] != "none":
        extra.append(f"rc:{s['recompute']}")
    if s["pp"] > 1:
        extra.append(s["schedule"] + (f"/v{s['virtual_stages']}" if s["virtual_stages"] > 1
                                      else ""))
    extra.append(f"mb{s['micro_batch']}")
    if s["order"] != "tp,cp,ep,pp,dp":
        extra.append(f"order {s['order']}")
    return " x ".join(parts) + "  " + " ".join(extra)


def render(result: Any, console: Console, top: int = 10) -> None:
    """The visit counts, the best strategy, runners-up, the bound's gap and the winner's
    breakdown."""
    from des.core.units import format_size

    c = result.counts
    table = Table(title=f"search {escape(result.name)}: how much of the space it visited",
                  title_justify="left")
    table.add_column("stage")
    table.add_column("candidates", justify="right")
    for label, key in (("enumerated", "enumerated"),
                       ("pruned by sweep constraints", "pruned_constraints"),
                       ("pruned by divisibility", "pruned_divisibility"),
                       ("pruned by memory", "pruned_memory"),
                       ("same graph as a kept one (ZeRO 1/2)", "pruned_equivalent"),
                       ("survivors (closed-form bound)", "survivors"),
                       ("ranked analytically", "analysed"),
                       ("confirmed (contended engine)", "confirmed")):
        table.add_row(label, f"{c.get(key, 0):,}")
    console.print(table)
    if result.pruned_by_rule:
        console.print("divisibility: " + ", ".join(
            f"{rule} {n:,}" for rule, n in sorted(result.pruned_by_rule.items(),
                                                  key=lambda kv: -kv[1])), highlight=False)
    if result.best is None:
        console.print("[bold red]no candidate fits and runs[/]" if not result.confirmed
                      else "no candidate confirmed", markup=True)
        if c.get("pruned_memory") and not c.get("survivors"):
            limits = {v for v in result.memory_limit.values() if v is not None}
            console.print(f"every candidate that divides needs more than "
                          f"{', '.join(format_size(v) for v in sorted(limits))} per GPU; "
                          "--memory-limit none searches without a limit", highlight=False)
        return
    best = result.best
    console.print(f"[bold]best[/] ({escape(best.context)}): {escape(_strategy(best.strategy))}: "
                  f"[bold]{best.confirmed_s:.4g} s[/] contended, analytical "
                  f"{_s(best.analytical_s)}, pre-screen bound {_s(best.prescreen_s)}, "
                  f"memory {format_size(best.memory_bytes)}", markup=True, highlight=False)
    proof = ("proven: every other candidate's lower bound exceeds it" if result.proven
             else "not proven")
    console.print(f"stop: {result.stop} ({proof}; margin {result.margin:g})", highlight=False)
    gap = result.bound_gap
    if gap.get("mean") is not None:
        console.print(f"analytical bound vs contended: {gap['min']:+.1%} .. {gap['max']:+.1%} "
                      f"(mean {gap['mean']:+.1%}); analytical above contended in "
                      f"{gap['analytical_above_contended']} of {len(result.confirmed)} "
                      f"(worst {gap['worst_excess']:.2%})", highlight=False)
    rows = Table(title="runners-up", title_justify="left")
    for col in ("context", "strategy", "contended", "analytical", "bound", "memory"):
        rows.add_column(col, justify="left" if col in ("context", "strategy") else "right")
    for cand in result.runners_up[:top]:
        rows.add_row(escape(cand.context), escape(_strategy(cand.strategy)),
                     _s(cand.confirmed_s), _s(cand.analytical_s), _s(cand.prescreen_s),
                     format_size(cand.memory_bytes))
    if result.runners_up:
        console.print(rows)
    if result.explanation:
        why = Table(title=f"why it wins: where its {result.explanation['iteration_s']:.4g} s "
                          f"go (rank {result.explanation.get('breakdown_rank')})",
                    title_justify="left")
        why.add_column("part")
        why.add_column("seconds", justify="right")
        why.add_column("share", justify="right")
        total = result.explanation["iteration_s"] or 1.0
        for part, seconds in result.explanation["breakdown_s"].items():
            if part == "finished" or not seconds:
                continue
            label = "idle (bubble, waiting)" if part == "idle" else part
            why.add_row(label, f"{seconds:.4g}", f"{seconds / total:.1%}")
        console.print(why)
        if result.explanation.get("mfu") is not None:
            console.print(f"MFU {result.explanation['mfu']:.1%}", highlight=False)
    w = result.wall_s
    console.print(f"wall: {w['total']:.1f} s (enumerate {w['enumerate']:.2f}, prune "
                  f"{w['prune']:.2f}, bound {w['prescreen']:.2f}, backends {w['search']:.1f})",
                  highlight=False)


def render_hw(result: Any, console: Console, top: int = 10) -> None:
    """A hardware search's Pareto front, cheapest first."""
    keys = list(result.front[0].values) if result.front else []
    table = Table(title=f"hardware search {escape(result.name)}: Pareto front of time vs cost "
                        f"({len(result.front)} of {len(result.evaluated)} designs)",
                  title_justify="left")
    for col in ("cost", "time", *(k.split(".", 1)[-1] for k in keys)):
        table.add_column(col, justify="right")
    strategies = {json.dumps(d.strategy, sort_keys=True) for d in result.front}
    joint = len(strategies) > 1
    if joint:
        table.add_column("strategy")
    for design in result.front[:max(top, 1) * 3]:
        cells = [f"{design.cost:,.0f}", _s(design.time_s),
                 *(str(design.values[k]) for k in keys)]
        if joint:
            cells.append(escape(_strategy(design.strategy)))
        table.add_row(*cells)
    console.print(table)
    if result.front and not joint:
        console.print(f"strategy (every design on the front): "
                      f"{escape(_strategy(result.front[0].strategy))}", highlight=False)
    c = result.counts
    console.print(f"{c['designs']} designs: {c['over_budget']} over the budget "
                  f"({result.budget_text}), {c['bounded']} dominated by a bound (never "
                  f"simulated with contention), {c['simulated']} contended runs, "
                  f"{c['errors']} errors; {result.method}; {result.wall_s:.1f} s; cost in "
                  f"{result.currency}", highlight=False)
