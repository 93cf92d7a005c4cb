"""Command line: parse arguments, load, run, render with rich. Thin on purpose.

Exit codes: 0 success; 2 bad input (scenario, sweep, topology spec or file, hardware and model
presets, Chakra traces, AstraSim and HuggingFace configs, units, a graph that deadlocks, a sweep
whose points are all invalid, a file that cannot be read or written), with a one-paragraph
message and no traceback; 1 an internal error (a bug); 3 a sweep stopped by its timeout, Ctrl-C
or SIGTERM before every point finished (what finished is written; see :mod:`des.app.cli_sweep`).

:func:`main` is the one error boundary: every input error is a :class:`SchemaError` (the agreed
base class) or one of :data:`BAD_INPUT`. Its consoles print with rich markup and emoji codes
off, so text quoted from the user's files (``[/bold]``, ``:smile:``) is printed as written;
the few styled lines opt in with ``markup=True`` and escape what they quote.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.text import Text

from collectives import CollectiveError
from des import __version__
from des.app import cli_search, cli_sweep, cli_tools
from des.app.cli_tools import EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_OK, check_writable
from des.app.config import DEFAULT_SCENARIO, ConfigError, Scenario, load_scenario
from des.app.plots import PlotError
from des.app.render import render
from des.app.workload_kinds import evaluate
from des.core.graph import GraphError
from des.core.results import Result, write_chrome_trace, write_json, write_links_csv
from des.core.schema import SchemaError
from des.sim.backends import (
    BACKENDS,
    DEFAULT_BACKEND,
    RUN_ERRORS,
    BackendError,
    backend_names,
    get_backend,
)
from topologies import TopologyError
from workloads.parallel import ParallelError

# The AstraSim bridge (protobuf, Chakra), the sweep machinery and rich's progress bars are
# imported inside the commands that use them: together they cost more start-up time than a
# small ``des simulate`` run. Their error types join BAD_INPUT once their module is loaded (an
# error cannot be raised by a module that was never imported): see _bad_input().
BAD_INPUT = (  # SchemaError covers ConfigError, SweepError, HardwareError, UnitError, ...
    PlotError, SchemaError, GraphError, TopologyError,
    BackendError, *RUN_ERRORS, CollectiveError, ParallelError,
    # reading or writing the files the user named; YAML and encoding errors of a reader that
    # does not go through des.core.yaml_safe yet
    OSError, yaml.YAMLError, UnicodeError,
)
#: The longest error message printed: messages quote values shortened, but a library's may not.
MAX_MESSAGE = 2000
LAZY_BAD_INPUT = (("astra_bridge.configs", "AstraConfigError"),
                  ("astra_bridge.export", "ExportError"))
BACKEND_HELP = "; ".join(f"{b.name}: {b.description}" for b in BACKENDS.values())


def build_parser() -> argparse.ArgumentParser:
    """The ``des`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="des", description="Discrete-event simulator of distributed ML systems.")
    parser.add_argument("--version", action="version", version=f"des {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="print only the essential result (simulate: the makespan)")
    # the same switches after the subcommand; SUPPRESS keeps a value given before it
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="log progress to stderr")
    common.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                        help="print only the essential result (simulate: the makespan)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, under: Any = sub, **kwargs: Any) -> argparse.ArgumentParser:
        """A (sub)command that takes -v and -q too."""
        return under.add_parser(name, parents=[common], **kwargs)

    command("list", help="bundled scenarios, sweeps, models, GPUs and machines",
                   description="List what is bundled, each with its one-line description.")
    sim = command(
        "simulate", help="run a scenario and print a summary",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run a scenario file (or a bundled scenario by name). Without SCENARIO, "
        f"runs the embedded default '{DEFAULT_SCENARIO}'.",
        epilog="examples:\n"
        "  des simulate                                   # the embedded default\n"
        "  des simulate gpt3_175b_tp8_pp8_a100 --out run/  # a bundled scenario; JSON, trace, CSV\n"
        "  des simulate my.yaml --backend analytical -q    # closed form, makespan only\n"
        "  des simulate --workload-configuration traces/w --system-configuration system.json \\\n"
        "      --network-configuration network.yml --astra-compat   # AstraSim's inputs\n"
        "  des list                                        # what is bundled")
    sim.add_argument("scenario", nargs="?", help="YAML file or bundled scenario name")
    sim.add_argument("--out", type=Path, metavar="DIR",
                     help="write result.json, trace.json and links.csv into DIR")
    sim.add_argument("--json", type=Path, metavar="FILE", help="write the JSON result here")
    sim.add_argument("--trace", type=Path, metavar="FILE",
                     help="write a Chrome/Perfetto trace here")
    sim.add_argument("--csv", type=Path, metavar="FILE", help="write per-link CSV here")
    sim.add_argument("--backend", choices=backend_names(), default=DEFAULT_BACKEND,
                     help=BACKEND_HELP)
    astra = sim.add_argument_group(
        "AstraSim inputs", "run AstraSim's own input files (its flag names) instead of a scenario")
    astra.add_argument("--workload-configuration", metavar="PREFIX",
                       help="Chakra traces PREFIX.{rank}.et")
    astra.add_argument("--system-configuration", type=Path, metavar="JSON")
    astra.add_argument("--network-configuration", type=Path, metavar="YML")
    astra.add_argument("--comm-group-configuration", type=Path, metavar="JSON")
    astra.add_argument("--remote-memory-configuration", type=Path, metavar="JSON")
    astra.add_argument("--astra-compat", action="store_true",
                       help="AstraSim's congestion-aware semantics")
    astra.add_argument("--no-contention", action="store_true",
                       help="AstraSim's congestion-unaware semantics (no contention)")
    sim.add_argument("--plot-links", type=Path, metavar="PNG",
                     help="draw link utilization on the topology (grid layout for mesh/torus; "
                          "needs the plot extra)")
    sim.add_argument("--report", type=Path, metavar="HTML",
                     help="write a self-contained HTML report (tables, per-rank time, link "
                          "heat map, collectives) built from the JSON result")

    topo = command("topo", help="inspect a topology: summary or a route")
    tsub = topo.add_subparsers(dest="topo_command", metavar="ACTION", required=True)
    show = command("show", tsub, help="devices, links, diameter, bisection bandwidth")
    route = command("route", tsub, help="the path a message takes from SRC to DST")
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
    model = command("model", help="model descriptions: import a HuggingFace config")
    msub = model.add_subparsers(dest="model_command", metavar="ACTION", required=True)
    imp = command("import", msub, help="convert a HuggingFace config.json to des model YAML",
                          description="Read a local HuggingFace config.json and print the des "
                          "model YAML (or write it with --out).")
    imp.add_argument("config", type=Path, metavar="CONFIG.json")
    imp.add_argument("--name", help="model name (default: the config's _name_or_path, else "
                     "the folder holding config.json)")
    imp.add_argument("--seq", type=int, metavar="S",
                     help="sequence length (default: the config's max_position_embeddings)")
    imp.add_argument("--out", type=Path, metavar="FILE", help="write the YAML here")
    et = command("et", help="Chakra execution traces: dump as text")
    esub = et.add_subparsers(dest="et_command", metavar="ACTION", required=True)
    dump = command(
        "dump", esub, help="one line per node: id, name, type, sizes, peers/group, deps",
        description="Print Chakra ET files PREFIX.{rank}.et as text, one line per node in "
                    "file order: id, name, type, sizes (comm_size, num_ops, tensor_size, "
                    "duration), peers and group (comm_src/dst/tag, pg_name), data and "
                    "control deps.")
    dump.add_argument("prefix", metavar="PREFIX", help="traces PREFIX.{rank}.et")
    dump.add_argument("--rank", type=int, metavar="R", help="only rank R (default: all)")
    dump.add_argument("--nodes", metavar="A:B",
                      help="only node ids A <= id < B (also A:, :B or one id)")
    graph = command("graph", help="draw an event graph (Graphviz)")
    gsub = graph.add_subparsers(dest="graph_command", metavar="ACTION", required=True)
    draw = command(
        "draw", gsub,
        help="write the event graph as a .dot file, and PNG/SVG with the graph extra",
        description="Draw a scenario's (or Chakra traces') event graph: nodes by kind, "
                    "dependency edges, send/recv pairs across ranks dashed. Writes DOT "
                    "always; --format renders it (needs the graph extra and Graphviz's dot).")
    draw.add_argument("scenario", nargs="?", help="YAML file or bundled scenario name")
    draw.add_argument("--et", metavar="PREFIX", help="draw Chakra traces PREFIX.{rank}.et")
    draw.add_argument("--comm-groups", type=Path, metavar="JSON",
                      help="AstraSim comm-group file for --et")
    draw.add_argument("--rank", type=int, action="append", metavar="R",
                      help="draw rank R (repeatable; default: all)")
    draw.add_argument("--nodes", metavar="A:B",
                      help="only node ids A <= id < B (also A:, :B or one id)")
    draw.add_argument("--out", type=Path, default=Path("graph.dot"), metavar="FILE.dot",
                      help="the DOT file (default graph.dot); an image goes beside it")
    draw.add_argument("--format", choices=("png", "svg"), help="also render FILE.png/.svg")
    draw.add_argument("--max-nodes", type=int, default=500, metavar="N",
                      help="draw at most N nodes (default 500, at most 20000)")
    sweep = command(
        "sweep", help="run a design-space sweep: every point of its axes, ranked",
        description="Run every point of a sweep file (or bundled sweep), stream results to "
                    "DIR/points.jsonl (a rerun resumes), write results.csv/json and rank. "
                    "Exit 3 when stopped (--timeout, Ctrl-C) before every point finished.")
    cli_sweep.add_arguments(sweep, BACKEND_HELP)
    search = command(
        "search", help="find the fastest strategy (or hardware) without a full sweep",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Prune a strategy space by divisibility and memory, rank the survivors\n"
                    "by a closed-form bound and the analytical backend, confirm the best with\n"
                    "the contended engine (branch and bound); or search hardware against a\n"
                    "cost model for the Pareto front of time vs cost.",
        epilog=cli_search.EXAMPLES)
    cli_search.add_arguments(search)

    cross = command(
        "crosscheck", help="run a scenario in des and in AstraSim on the same inputs",
        description="Export the scenario as AstraSim inputs, simulate those files in des "
                    "(AstraSim-compatible) and, with a binary, in AstraSim; compare per rank.")
    cross.add_argument("scenario", nargs="?", help="YAML file or bundled scenario name")
    cross.add_argument("--astra-bin", type=Path, metavar="PATH",
                       help="AstraSim analytical binary (default: $ASTRA_SIM_BIN)")
    cross.add_argument("--out", type=Path, default=Path("crosscheck"), metavar="DIR",
                       help="folder for the AstraSim inputs, its output and crosscheck.json")
    cross.add_argument("--unaware", action="store_true",
                       help="the binary is AstraSim's congestion-unaware backend")
    cross.add_argument("--timeout", type=float, default=600.0, metavar="S",
                       help="seconds the binary may run (default 600)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``des`` and ``python -m des``; returns the exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    console = Console(markup=False, emoji=False)
    errors = Console(stderr=True, markup=False, emoji=False, highlight=False)
    if args.command is None:
        build_parser().print_help()
        return EXIT_OK
    try:
        if args.command == "list":
            return cli_tools.list_bundled(console)
        if args.command == "topo":
            return cli_tools.topo(args, console)
        if args.command == "crosscheck":
            return _crosscheck(args, console)
        if args.command == "sweep":
            return cli_sweep.run(args, console)
        if args.command == "search":
            return cli_search.run(args, console)
        if args.command == "model":
            return cli_tools.model_import(args, console)
        if args.command == "et":
            return cli_tools.et_dump(args, console)
        if args.command == "graph":
            return cli_tools.graph_draw(args, console)
        return _simulate(args, console)
    except _bad_input() as err:
        errors.print(Text.assemble(("error: ", "bold red"), _message(err)))
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        errors.print("interrupted")
        return 130
    except Exception as err:
        logging.getLogger("des").debug("internal error", exc_info=True)
        errors.print(Text.assemble(("internal error: ", "bold red"),
                                   f"{type(err).__name__}: {_message(err)} "
                                   "(run with -v for details)"))
        return EXIT_INTERNAL


def _message(err: BaseException) -> str:
    """An error's text for the terminal: never longer than :data:`MAX_MESSAGE` (the middle is
    elided), and for an OS error the file it concerns."""
    if isinstance(err, OSError) and err.strerror and err.filename is not None:
        text = f"{err.filename}: {err.strerror}"
    else:
        text = str(err) or type(err).__name__
    if len(text) > MAX_MESSAGE:
        half = MAX_MESSAGE // 2
        text = f"{text[:half]} [... {len(text) - MAX_MESSAGE:,} characters ...] {text[-half:]}"
    return text


def _bad_input() -> tuple[type[BaseException], ...]:
    """BAD_INPUT plus the lazily imported modules' input errors, for those already loaded."""
    lazy = tuple(getattr(sys.modules[module], name) for module, name in LAZY_BAD_INPUT
                 if module in sys.modules)
    return BAD_INPUT + lazy


def _astra_scenario(args: argparse.Namespace) -> tuple[Scenario, str, Any]:
    from astra_bridge.inputs import load_inputs  # protobuf/Chakra: only for AstraSim inputs

    missing = [flag for flag, value in (("--system-configuration", args.system_configuration),
                                        ("--network-configuration", args.network_configuration))
               if value is None]
    if missing:
        raise ConfigError(f"--workload-configuration needs {' and '.join(missing)}")
    if args.scenario:
        raise ConfigError("give either a scenario or AstraSim's input flags, not both")
    inputs = load_inputs(args.workload_configuration, args.system_configuration,
                         args.network_configuration, comm_groups=args.comm_group_configuration,
                         remote_memory=args.remote_memory_configuration)
    model = "unaware" if args.no_contention else "aware" if args.astra_compat else "des"
    described = {"des": "des's own model", "aware": "AstraSim congestion-aware semantics",
                 "unaware": "AstraSim congestion-unaware semantics"}[model]
    scenario = Scenario(Path(args.workload_configuration).name,
                        f"AstraSim inputs, {described}", inputs.topology, inputs.graph,
                        inputs.hardware, inputs.options(model))
    return scenario, model, inputs


def _simulate(args: argparse.Namespace, console: Console) -> int:
    astra_model = astra_inputs = None
    if args.workload_configuration:
        scenario, astra_model, astra_inputs = _astra_scenario(args)
    elif args.astra_compat or args.no_contention or args.system_configuration:
        raise ConfigError("--astra-compat, --no-contention and the AstraSim configuration "
                          "flags go with --workload-configuration")
    else:
        scenario = load_scenario(args.scenario, backend=args.backend)
    if args.scenario is None and astra_model is None and not args.quiet:
        console.print(f"No scenario given: running the embedded default "
                      f"[bold]{DEFAULT_SCENARIO}[/].", markup=True)
    outputs = scenario.outputs
    json_path = args.json or (args.out / "result.json" if args.out else outputs.json)
    trace_path = args.trace or (args.out / "trace.json" if args.out else outputs.trace)
    csv_path = args.csv or (args.out / "links.csv" if args.out else outputs.links_csv)
    targets = [(p, w) for p, w in ((json_path, write_json), (trace_path, write_chrome_trace),
                                    (csv_path, write_links_csv)) if p]
    for extra in (args.plot_links, args.report):
        if extra:
            check_writable(extra)
    for path, _ in targets:  # a bad output path fails now, not after a long run
        check_writable(path)
    if trace_path:
        scenario.options.record_link_activity = True
    result = _run_with_progress(scenario, args.backend, console, quiet=args.quiet)
    evaluation = evaluate(result, scenario, roofline_figures=True)  # as a sweep records
    evaluation.attach(result)
    refusal = astra_inputs.aware_refusal if astra_model == "aware" else None
    if refusal:
        result.meta["astra_would_refuse"] = refusal
    peaks = None
    if astra_inputs is not None and astra_inputs.system.track_local_mem:
        from astra_bridge.local_mem import rank_peaks

        peaks = rank_peaks(astra_inputs.trace.tensor_io, result)
        result.meta["local_memory_peak_bytes"] = peaks
    if args.quiet:
        console.print(f"{result.makespan_ns:.0f}")
    else:
        render(scenario.name, scenario.description, len(scenario.topology.links), result,
               console)
        if evaluation.report is not None and evaluation.kind.render is not None:
            evaluation.kind.render(evaluation.report, console)
        if evaluation.roofline:
            from des.app.render import render_roofline

            render_roofline(evaluation.roofline, result, console)
        if astra_model is not None:
            from astra_bridge.report import from_result
            from des.app.render import render_astra_terms

            render_astra_terms(from_result(result), console,
                               "Per rank in AstraSim's terms (ns)", peak_memory=peaks)
            if refusal:
                console.print(f"note: {refusal}", style="yellow", markup=False)
    for path, write in targets:
        write(result, path)
        if not args.quiet:
            console.print(f"wrote {path}")
    if args.plot_links:
        from des.app.plots import draw_link_heatmap

        draw_link_heatmap(scenario.topology, result, args.plot_links)
        if not args.quiet:
            console.print(f"wrote {args.plot_links}")
    if args.report:
        from des.app.html_report import write_report

        write_report(result, args.report, name=scenario.name,
                     description=scenario.description, topology=scenario.topology)
        if not args.quiet:
            console.print(f"wrote {args.report}")
    return EXIT_OK


def _crosscheck(args: argparse.Namespace, console: Console) -> int:
    from astra_bridge.crosscheck import ENV_BINARY, crosscheck, find_binary
    from des.app.render import render_crosscheck

    scenario = load_scenario(args.scenario)
    binary = find_binary(args.astra_bin)
    check = crosscheck(scenario.graph, scenario.topology, args.out, options=scenario.options,
                       hardware=scenario.hardware, binary=binary,
                       congestion_aware=not args.unaware, timeout=args.timeout)
    (args.out / "crosscheck.json").write_text(json.dumps(check.to_dict(), indent=1) + "\n")
    render_crosscheck(check, console)
    if binary is None:
        console.print(f"No AstraSim binary (--astra-bin or ${ENV_BINARY}): wrote its inputs to "
                      f"{args.out}; run them with\n  cd {args.out} && ASTRA_BINARY "
                      + " ".join(check.files.flags()), highlight=False)
    elif not check.astra.ok:
        code = "timed out" if check.astra.timed_out else f"exit code {check.astra.exit_code}"
        console.print(Text.assemble((f"AstraSim failed ({code})", "bold red"),
                                    f"; last lines of its output:\n{check.astra.tail}"),
                      highlight=False)
        return EXIT_BAD_INPUT
    console.print(f"wrote {args.out / 'crosscheck.json'}")
    return EXIT_OK


class _LazyProgress:
    """A rich progress bar that appears only once a run has taken more than half a second."""

    def __init__(self, console: Console, enabled: bool) -> None:
        self.console = console
        self.enabled = enabled
        self.started = time.perf_counter()
        self.bar: Any = None  # a rich Progress, imported when it first appears
        self.task = None

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            if time.perf_counter() - self.started < 0.5:
                return
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(TextColumn("simulating"), BarColumn(),
                                TextColumn("{task.completed}/{task.total} nodes"),
                                TimeElapsedColumn(), console=self.console, transient=True)
            self.bar.start()
            self.task = self.bar.add_task("sim", total=total)
        self.bar.update(self.task, completed=done)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def _run_with_progress(scenario: Scenario, backend: str, console: Console, quiet: bool
                       ) -> Result:
    progress = _LazyProgress(console, enabled=not quiet and console.is_terminal)
    try:
        result = get_backend(backend).run(scenario.topology, scenario.graph,
                                          hardware=scenario.hardware, options=scenario.options,
                                          progress=progress)
    finally:
        progress.close()
    result.meta["scenario"] = scenario.name
    return result


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
