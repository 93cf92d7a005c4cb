"""Command line: parse arguments, load, run, render with rich. Thin on purpose.

Exit codes: 0 success; 2 bad input (scenario, graph, topology, hardware, units, or a graph that
deadlocks), with a one-paragraph message and no traceback; 1 an internal error.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from collectives import CollectiveError
from des import __version__
from des.analytical import AnalyticalError, analyze
from des.config import DEFAULT_SCENARIO, ConfigError, Scenario, load_scenario
from des.engine import SimulationError, Simulator
from des.graph import GraphError
from des.hardware import HardwareError
from des.plots import PlotError
from des.results import Result, write_chrome_trace, write_json, write_links_csv
from des.units import (
    UnitError,
    format_bandwidth,
    format_size,
    format_time,
    parse_bandwidth,
    parse_time,
)
from topologies import TopologyError
from topologies.analysis import summary
from topologies.faults import LinkFault, set_fault
from topologies.spec import parse_spec

BAD_INPUT = (PlotError, ConfigError, GraphError, TopologyError, HardwareError, UnitError,
             SimulationError, AnalyticalError, CollectiveError, FileNotFoundError, FileExistsError,
             IsADirectoryError, NotADirectoryError, PermissionError)
EXIT_OK, EXIT_INTERNAL, EXIT_BAD_INPUT = 0, 1, 2
RANK_ROWS = 16


def build_parser() -> argparse.ArgumentParser:
    """The ``des`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="des", description="Discrete-event simulator of distributed ML systems.")
    parser.add_argument("--version", action="version", version=f"des {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sim = sub.add_parser("simulate", help="run a scenario and print a summary",
                         description="Run a scenario file (or a bundled scenario by name). "
                         f"Without SCENARIO, runs the embedded default '{DEFAULT_SCENARIO}'.")
    sim.add_argument("scenario", nargs="?", help="YAML file or bundled scenario name")
    sim.add_argument("--out", type=Path, metavar="DIR",
                     help="write result.json, trace.json and links.csv into DIR")
    sim.add_argument("--json", type=Path, metavar="FILE", help="write the JSON result here")
    sim.add_argument("--trace", type=Path, metavar="FILE",
                     help="write a Chrome/Perfetto trace here")
    sim.add_argument("--csv", type=Path, metavar="FILE", help="write per-link CSV here")
    sim.add_argument("-q", "--quiet", action="store_true", help="print only the makespan")
    sim.add_argument("--backend", choices=["simpy", "analytical"], default="simpy",
                     help="simpy: every link simulated, with contention (default); analytical: "
                          "closed-form uncontended costs, much faster, a lower bound")
    sim.add_argument("--plot-links", type=Path, metavar="PNG",
                     help="draw link utilization on the topology (grid layout for mesh/torus; "
                          "needs the plot extra)")

    topo = sub.add_parser("topo", help="inspect a topology: summary or a route")
    tsub = topo.add_subparsers(dest="topo_command", metavar="ACTION", required=True)
    show = tsub.add_parser("show", help="devices, links, diameter, bisection bandwidth")
    route = tsub.add_parser("route", help="the path a message takes from SRC to DST")
    for p in (show, route):
        p.add_argument("spec", metavar="SPEC",
                       help="ring:8, fc:8, switch:16, mesh2d:4x4, torus3d:4x4x4, fattree:k=4, "
                            "leafspine:leaves=4,hosts=8,spines=2, superpod:nodes=4, "
                            "hier:fc8,switch16,ring4, or a .yaml/.graphml file")
        p.add_argument("--bandwidth", default="50 GB/s",
                       help="link bandwidth for short specs (default 50 GB/s)")
        p.add_argument("--latency", default="500 ns",
                       help="link latency for short specs (default 500 ns)")
        p.add_argument("--fail", action="append", default=[], metavar="A-B",
                       help="take the cable between devices A and B down (repeatable)")
        p.add_argument("--derate", action="append", default=[], metavar="A-B=F",
                       help="scale the cable's bandwidth by F in (0, 1] (repeatable)")
        p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    route.add_argument("src", type=int)
    route.add_argument("dst", type=int)
    route.add_argument("--flow", type=int, default=0, help="flow id (ECMP hashing)")
    show.add_argument("--png", type=Path, metavar="FILE",
                      help="draw the topology (needs the plot extra)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``des`` and ``python -m des``; returns the exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    console = Console()
    errors = Console(stderr=True)
    if args.command is None:
        build_parser().print_help()
        return EXIT_OK
    try:
        if args.command == "topo":
            return _topo(args, console)
        return _simulate(args, console)
    except BAD_INPUT as err:
        errors.print(f"[bold red]error:[/] {err}", highlight=False, markup=True)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        errors.print("interrupted")
        return 130
    except Exception as err:
        logging.getLogger("des").debug("internal error", exc_info=True)
        errors.print(f"[bold red]internal error:[/] {type(err).__name__}: {err} "
                     "(run with -v for details)")
        return EXIT_INTERNAL


def _simulate(args: argparse.Namespace, console: Console) -> int:
    scenario = load_scenario(args.scenario)
    if args.scenario is None and not args.quiet:
        console.print(f"No scenario given: running the embedded default "
                      f"[bold]{DEFAULT_SCENARIO}[/].")
    outputs = scenario.outputs
    json_path = args.json or (args.out / "result.json" if args.out else outputs.json)
    trace_path = args.trace or (args.out / "trace.json" if args.out else outputs.trace)
    csv_path = args.csv or (args.out / "links.csv" if args.out else outputs.links_csv)
    targets = [(p, w) for p, w in ((json_path, write_json), (trace_path, write_chrome_trace),
                                    (csv_path, write_links_csv)) if p]
    if args.plot_links:
        _check_writable(args.plot_links)
    for path, _ in targets:  # a bad output path fails now, not after a long run
        _check_writable(path)
    if trace_path:
        scenario.options.record_link_activity = True
    if args.backend == "analytical":
        result = analyze(scenario.topology, scenario.graph, hardware=scenario.hardware,
                         options=scenario.options)
        result.meta["scenario"] = scenario.name
    else:
        result = _run_with_progress(scenario, console, quiet=args.quiet)
    if args.quiet:
        console.print(f"{result.makespan_ns:.0f}")
    else:
        render(scenario, result, console)
    for path, write in targets:
        write(result, path)
        if not args.quiet:
            console.print(f"wrote {path}")
    if args.plot_links:
        from des.plots import draw_link_heatmap

        draw_link_heatmap(scenario.topology, result, args.plot_links)
        if not args.quiet:
            console.print(f"wrote {args.plot_links}")
    return EXIT_OK


def _topo(args: argparse.Namespace, console: Console) -> int:
    topo = parse_spec(args.spec, parse_bandwidth(args.bandwidth, "--bandwidth"),
                      parse_time(args.latency, "--latency"))
    faults = [LinkFault(*_cable(text, "--fail"), down=True) for text in args.fail]
    for text in args.derate:
        cable, eq, factor = text.partition("=")
        if not eq:
            raise ConfigError(f"--derate {text!r}: expected A-B=F, e.g. 3-7=0.5")
        try:
            value = float(factor)
        except ValueError:
            raise ConfigError(f"--derate {text!r}: {factor!r} is not a number") from None
        faults.append(LinkFault(*_cable(cable, "--derate"), derate=value))
    for fault in faults:
        set_fault(topo, fault)
    if args.topo_command == "route":
        path = topo.route(args.src, args.dst, args.flow)
        devices = topo.path_devices(path)
        hops = [{"link": i, "src": topo.links[i].src, "dst": topo.links[i].dst,
                 "kind": topo.links[i].kind, "bandwidth_GBps": topo.links[i].bandwidth,
                 "derate": topo.links[i].derate, "latency_ns": topo.links[i].latency}
                for i in path]
        if args.json:
            console.print_json(data={"topology": topo.name, "src": args.src, "dst": args.dst,
                                     "flow": args.flow, "devices": devices, "hops": hops})
        else:
            names = [f"{d}" if d < topo.num_npus else f"[dim]sw{d}[/]" for d in devices]
            console.print(f"{topo.name}: {args.src} -> {args.dst} in {len(path)} hops: "
                          + " -> ".join(names))
        return EXIT_OK
    info = summary(topo)
    if args.json:
        console.print_json(data=info)
    else:
        render_topology(info, console)
    if args.png:
        from des.plots import draw_topology

        draw_topology(topo, args.png)
        console.print(f"wrote {args.png}")
    return EXIT_OK


def _cable(text: str, flag: str) -> tuple[int, int]:
    a, dash, b = text.partition("-")
    if not dash or not a.strip().isdigit() or not b.strip().isdigit():
        raise ConfigError(f"{flag} {text!r}: expected two device ids like 3-7")
    return int(a), int(b)


def render_topology(info: dict, console: Console) -> None:
    """The ``topo show`` tables."""
    console.print(f"[bold]{info['name']}[/] ({info['kind']}): {info['npus']} NPUs, "
                  f"{info['switches']} switches, {info['links']} directed links", highlight=False)
    diam = info["diameter_hops"]
    console.print(f"diameter: {diam if diam >= 0 else 'n/a'} hops ({info['diameter_method']})",
                  highlight=False)
    console.print(f"bisection bandwidth: {format_bandwidth(info['bisection_bandwidth'])} "
                  f"per direction ({info['bisection_method']})", highlight=False)
    table = Table(title="Link classes", title_justify="left")
    for col in ("kind", "links", "bandwidth", "latency", "down", "derated"):
        table.add_column(col, justify="right")
    for row in info["link_classes"]:
        bw = format_bandwidth(row["bandwidth_min"])
        if row["bandwidth_max"] != row["bandwidth_min"]:
            bw += f" - {format_bandwidth(row['bandwidth_max'])}"
        lat = format_time(row["latency_min"])
        if row["latency_max"] != row["latency_min"]:
            lat += f" - {format_time(row['latency_max'])}"
        table.add_row(row["kind"], str(row["links"]), bw, lat, str(row["down"]),
                      str(row["derated"]))
    console.print(table)


def _check_writable(path: Path) -> None:
    """Create the output's folder and refuse a path that is a folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_dir():
        raise IsADirectoryError(f"output {path} is a directory; give a file name")


class _LazyProgress:
    """A rich progress bar that appears only once a run has taken more than half a second."""

    def __init__(self, console: Console, enabled: bool) -> None:
        self.console = console
        self.enabled = enabled
        self.started = time.perf_counter()
        self.bar: Progress | None = None
        self.task = None

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            if time.perf_counter() - self.started < 0.5:
                return
            self.bar = Progress(TextColumn("simulating"), BarColumn(),
                                TextColumn("{task.completed}/{task.total} nodes"),
                                TimeElapsedColumn(), console=self.console, transient=True)
            self.bar.start()
            self.task = self.bar.add_task("sim", total=total)
        self.bar.update(self.task, completed=done)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def _run_with_progress(scenario: Scenario, console: Console, quiet: bool) -> Result:
    progress = _LazyProgress(console, enabled=not quiet and console.is_terminal)
    try:
        sim = Simulator(scenario.topology, scenario.graph, hardware=scenario.hardware,
                        options=scenario.options)
        result = sim.run(progress)
    finally:
        progress.close()
    result.meta["scenario"] = scenario.name
    return result


def render(scenario: Scenario, result: Result, console: Console) -> None:
    """The terminal summary: what ran, the makespan, per-rank time, hottest links, collectives."""
    meta = result.meta
    console.print(f"[bold]{scenario.name}[/]: {scenario.description}" if scenario.description
                  else f"[bold]{scenario.name}[/]", highlight=False)
    hw = meta["hardware"] or "no hardware model (explicit durations)"
    work = (f"{meta['nodes']} nodes, {meta['hops']} chunk-hops" if meta["backend"] == "simpy"
            else f"{meta['nodes']} nodes list-scheduled at closed-form cost, no contention")
    console.print(f"topology {meta['topology']} ({meta['npus']} NPUs, "
                  f"{len(scenario.topology.links)} links) | {hw} | backend {meta['backend']} "
                  f"({meta['transport']}) | {work} in {meta['wall_seconds']:.2f} s",
                  highlight=False)
    faults = [f"{len(meta['failed_links'])} links down"] if meta["failed_links"] else []
    if meta["derated_links"]:
        faults.append(f"{len(meta['derated_links'])} derated")
    if meta["timed_faults"]:
        faults.append(f"timed: {'; '.join(meta['timed_faults'][:4])}")
    if faults:
        console.print(f"faults: {', '.join(faults)}; {meta['reroutes']} messages rerouted "
                      "mid-flight", highlight=False)
    console.print(f"[bold green]makespan {format_time(result.makespan_ns)}[/]")

    worst = max(result.ranks.values(), key=lambda st: st.finished_ns, default=None)
    if worst is not None and worst.finished_ns > 0:
        console.print(f"slowest rank: compute {_share(worst.compute_ns, worst.finished_ns)}, "
                      f"exposed communication {_share(worst.exposed_comm_ns, worst.finished_ns)}"
                      f", idle {_share(worst.idle_ns, worst.finished_ns)}", highlight=False)

    ranks = Table(title="Per-rank time", title_justify="left")
    for col in ("ranks", "finished", "compute", "comm", "exposed comm", "idle"):
        ranks.add_column(col, justify="right")
    rows = _group_ranks(result)
    for label, st in rows[:RANK_ROWS]:
        ranks.add_row(label, format_time(st.finished_ns), format_time(st.compute_ns),
                      format_time(st.comm_ns), format_time(st.exposed_comm_ns),
                      format_time(st.idle_ns))
    if len(rows) > RANK_ROWS:
        ranks.caption = f"{len(rows) - RANK_ROWS} more rows in the JSON"
    console.print(ranks)

    links = Table(title="Hottest links", title_justify="left")
    for col in ("link", "kind", "bandwidth", "bytes", "busy", "utilization", "peak queue"):
        links.add_column(col, justify="right")
    for lk in result.hottest_links(5):
        links.add_row(f"{lk.src}->{lk.dst}", lk.kind, format_bandwidth(lk.bandwidth_GBps),
                      format_size(lk.bytes), format_time(lk.busy_ns), f"{lk.utilization:.1%}",
                      str(lk.peak_queue))
    console.print(links)

    if result.collectives:
        colls = Table(title="Collectives", title_justify="left")
        for col in ("#", "collective", "algorithm", "ranks", "size", "time", "busbw GB/s"):
            colls.add_column(col, justify="right")
        for c in result.collectives[:12]:
            colls.add_row(str(c.index), c.collective, c.algorithm, str(len(c.group)),
                          format_size(c.nbytes), format_time(c.time_ns), f"{c.busbw_GBps:.1f}")
        if len(result.collectives) > 12:
            colls.caption = f"{len(result.collectives) - 12} more in the JSON"
        console.print(colls)


def _share(part: float, whole: float) -> str:
    return f"{format_time(part)} ({part / whole:.0%})"


def _group_ranks(result: Result) -> list[tuple[str, object]]:
    """Consecutive ranks whose times print the same share one row ("0-7")."""
    rows: list[tuple[list[int], tuple[str, ...], object]] = []
    for rank, st in sorted(result.ranks.items()):
        key = tuple(format_time(v) for v in (st.finished_ns, st.compute_ns, st.comm_ns,
                                             st.exposed_comm_ns, st.idle_ns))
        if rows and rows[-1][1] == key and rows[-1][0][-1] == rank - 1:
            rows[-1][0].append(rank)
        else:
            rows.append(([rank], key, st))
    return [(f"{r[0]}" if len(r) == 1 else f"{r[0]}-{r[-1]}", st) for r, _, st in rows]


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
