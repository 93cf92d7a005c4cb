"""``des sweep``: its options, the progress bar, and what is written when a sweep finishes,
times out or is stopped.

Exit codes: 0 every point has a result; 2 bad input, including a sweep none of whose points
ran (all invalid or failed to run; the reasons are named); 3 (:data:`EXIT_CUT_OFF`) the sweep
was stopped by its timeout, Ctrl-C or SIGTERM before every point finished -- the ranking,
``results.csv``/``results.json`` and the plots still cover the points that finished, and
rerunning the same command resumes.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from des.sim.backends import backend_names

if TYPE_CHECKING:  # the sweep machinery loads only when a sweep runs (start-up cost)
    from des.app.sweep_types import SweepProgress, SweepRun

EXIT_CUT_OFF = 3


def add_arguments(sweep: argparse.ArgumentParser, backend_help: str) -> None:
    """The ``des sweep`` options."""
    sweep.add_argument("sweep", help="sweep YAML file or bundled sweep name")
    sweep.add_argument("--out", type=Path, metavar="DIR",
                       help="results folder (default sweeps/<name>)")
    sweep.add_argument("--backend", choices=backend_names(),
                       help="override the sweep's backend (analytical: fast first pass); "
                            + backend_help)
    add_executor_arguments(sweep)
    sweep.add_argument("--timeout", type=float, metavar="SECONDS",
                       help="stop after SECONDS (default: the sweep file's timeout, else none), "
                            "write what finished and exit 3; rerunning resumes")
    sweep.add_argument("--top", type=int, default=10, metavar="N", help="ranking rows")
    sweep.add_argument("--plots", action="store_true",
                       help="time vs strategy and Pareto front PNGs (plot extra)")
    sweep.add_argument("--compare", metavar="AXIS",
                       help="also plot iteration time across the values of AXIS (plot extra)")


def add_executor_arguments(parser: argparse.ArgumentParser) -> None:
    """``--executor/--workers/--scheduler``, shared by ``des sweep`` and ``des search``."""
    parser.add_argument("--executor", choices=["local", "dask"], default="local",
                        help="local process pool (default) or a Dask cluster")
    parser.add_argument("--workers", type=int, metavar="N", help="processes (default: cores)")
    parser.add_argument("--scheduler", metavar="ADDRESS",
                        help="Dask scheduler to connect to (default: a local cluster)")


class SweepBar:
    """A rich progress bar for :func:`run_sweep`: a count while estimating, then a bar weighted
    by the points' estimated costs, so the time left is cost-weighted, not point-counted."""

    def __init__(self, console: Console) -> None:
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(),
                                 TextColumn("{task.fields[points]}"), TimeElapsedColumn(),
                                 TextColumn("left"), TimeRemainingColumn(),
                                 console=console, transient=True)
        self.tasks: dict[str, TaskID] = {}

    def __call__(self, state: SweepProgress) -> None:
        if state.phase not in self.tasks:
            for task in self.tasks.values():
                self.progress.update(task, visible=False)
            self.tasks[state.phase] = self.progress.add_task(state.phase, total=None,
                                                             points="")
        resumed = f" (+{state.resumed} before)" if state.resumed else ""
        self.progress.update(self.tasks[state.phase], total=state.cost_total or None,
                             completed=state.cost_done,
                             points=f"{state.done}/{state.total} points{resumed}")

    def __enter__(self) -> SweepBar:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While the sweep runs, SIGTERM stops it like Ctrl-C (its results are still written)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def make_executor(args: argparse.Namespace) -> Any:
    """The executor :func:`add_executor_arguments`' options name; a SchemaError (exit 2) for
    ``--workers`` below 1."""
    from des.app.sweep_exec import LocalExecutor
    from des.core.schema import SchemaError

    if args.workers is not None and args.workers < 1:
        raise SchemaError(f"--workers: must be >= 1, got {args.workers}")
    if args.executor == "dask":
        from des.app.sweep_dask import DaskExecutor

        return DaskExecutor(args.scheduler, workers=args.workers)
    return LocalExecutor(args.workers)


def all_invalid(results: SweepRun) -> str:
    """"" unless no point of a finished sweep ran (each is invalid or failed to run); then why
    (the distinct reasons, which name the key a mistyped axis got wrong)."""
    if not results or len(results) < results.total or any(r.status == "ok" for r in results):
        return ""
    reasons = list(dict.fromkeys(r.reason for r in results))
    more = f" (and {len(reasons) - 3} other reasons)" if len(reasons) > 3 else ""
    return "; ".join(reasons[:3]) + more


def run(args: argparse.Namespace, console: Console) -> int:
    """``des sweep``: run, write the tables and plots, render the ranking; the exit code."""
    from des.app.render import render_sweep
    from des.app.sweep import run_sweep
    from des.app.sweep_load import load_sweep
    from des.app.sweep_results import write_table
    from des.app.sweep_types import SweepError

    sweep = load_sweep(args.sweep)
    out = args.out or Path("sweeps") / sweep.name
    executor = make_executor(args)
    timeout = args.timeout if args.timeout is not None else sweep.timeout
    if timeout is not None and not timeout > 0:
        raise SweepError(f"--timeout: must be > 0 seconds, got {timeout}")
    limit = f", timeout {timeout:g} s" if timeout is not None else ""
    console.print(f"sweep [bold]{escape(str(sweep.name))}[/]: {sweep.count()} points, "
                  f"backend {args.backend or sweep.backend}, executor {executor.name}{limit}, "
                  f"results in {escape(str(out))}", highlight=False, markup=True)
    with SweepBar(console) as bar, sigterm_as_interrupt():
        results = run_sweep(sweep, out, executor=executor, backend=args.backend,
                            timeout=timeout, progress=bar)
    csv_path, json_path = write_table(results, out)
    render_sweep(sweep, results, console, args.top)
    console.print(f"wrote {csv_path} and {json_path}")
    reason = all_invalid(results)
    if reason:
        failed = sum(1 for r in results if r.status != "invalid")
        what = (f"all {results.total} points are invalid" if not failed else
                f"no point of {results.total} ran ({results.total - failed} invalid, "
                f"{failed} failed to run)")
        raise SweepError(f"sweep {sweep.name}: {what}: {reason}")
    _plots(args, results, out, sweep.memory_limit, console, partial=not results.complete)
    if not results.complete:
        why = (f"timed out after {timeout:g} s" if results.stopped == "timeout" and timeout
               else results.stopped or "stopped")
        console.print(f"[bold yellow]sweep {why}:[/] {len(results)} of {results.total} points "
                      f"finished, {results.cut_off} cut off; rerun the same command to resume "
                      f"(finished points are kept in {escape(str(out / 'points.jsonl'))})",
                      highlight=False, markup=True)
        return EXIT_CUT_OFF
    return 0


def _plots(args: argparse.Namespace, results: SweepRun, out: Path, memory_limit: Any,
           console: Console, partial: bool) -> None:
    """The ``--plots`` and ``--compare`` PNGs; on a cut-off sweep a plot with nothing to draw
    is a warning, not an error (the other files are written already)."""
    from des.app.plots import PlotError

    jobs = []
    if args.plots:
        from des.app.sweep_plots import pareto, time_vs_strategy

        jobs += [lambda: time_vs_strategy(results, out / "time_vs_strategy.png"),
                 lambda: pareto(results, out / "pareto.png", memory_limit=memory_limit)]
    if args.compare:
        from des.app.sweep_plots import compare

        leaf = re.sub(r"[^A-Za-z0-9_.+=@,-]", "_", args.compare.rsplit(".", 1)[-1])
        name = f"compare_{leaf.lstrip('.') or 'axis'}.png"  # stays inside the results folder
        jobs.append(lambda: compare(results, out / name, by=args.compare))
    for job in jobs:
        try:
            console.print(f"wrote {job()}")
        except PlotError as err:
            if not partial:
                raise
            console.print(f"[yellow]no plot:[/] {escape(str(err))}", highlight=False,
                          markup=True)
