"""The small commands of the command line: ``des topo show|route`` and ``des model import``,
and the output-path check every command that writes files uses. Rendering only; the work is in
:mod:`topologies` and :mod:`workloads.models`."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from des.app.config import ConfigError
from des.app.render import render_topology
from des.core.schema import SchemaError, show
from des.core.units import parse_bandwidth, parse_time
from topologies.faults import LinkFault, set_fault
from topologies.spec import parse_spec

EXIT_OK, EXIT_INTERNAL, EXIT_BAD_INPUT = 0, 1, 2


def model_import(args: argparse.Namespace, console: Console) -> int:
    """``des model import``: a HuggingFace config.json as des model YAML."""
    # The model code is imported here, not at module level: every ``des`` run imports this
    # module and only ``des model import`` needs it.
    from workloads.hf_config import import_hf_config, read_hf_config
    from workloads.models import ModelConfigError, model_to_yaml

    path: Path = args.config
    config = read_hf_config(path)  # a ModelConfigError (a SchemaError) naming the file
    name = args.name
    if not name:
        source = config.get("_name_or_path")
        if source is not None and not isinstance(source, str):
            raise ConfigError(f"{path}: _name_or_path must be a string, got {show(source)}")
        name = (Path(source).name if source else "") or (
            path.resolve().parent.name if path.stem == "config" else path.stem)
    if args.seq is not None and args.seq < 1:
        raise ConfigError(f"--seq: expected a whole number >= 1, got {args.seq}")
    try:
        imported = import_hf_config(config, name, seq=args.seq, log=False)
    except ModelConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
    model = imported.model
    warn = Console(stderr=True)  # fields des does not model; stdout stays pure YAML
    for warning in imported.warnings:
        warn.print(f"warning: {warning}", style="yellow", highlight=False, markup=False)
    text = model_to_yaml(model)
    if args.out:
        check_writable(args.out)
        args.out.write_text(text, encoding="utf-8")
        console.print(f"wrote {args.out} ({model.name}, {model.params() / 1e9:.2f}B "
                      "parameters)", highlight=False)
    else:
        console.print(text, end="", highlight=False, markup=False, emoji=False, soft_wrap=True)
    return EXIT_OK


def topo(args: argparse.Namespace, console: Console) -> int:
    """``des topo show|route``: a topology's summary, or the route between two devices."""
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
            console.print(f"{escape(topo.name)}: {args.src} -> {args.dst} in {len(path)} hops: "
                          + " -> ".join(names), markup=True)
        return EXIT_OK
    from topologies.analysis import disconnected, summary  # networkx: only ``topo show``

    broken = disconnected(topo)
    if broken:  # refused as ``des simulate`` refuses it (there, at the first such message)
        cause = " with the links --fail takes down" if args.fail else ""
        raise ConfigError(f"topology {topo.name}{cause} is disconnected: {broken}")
    png = _png_path(args.png) if args.png else None
    info = summary(topo)
    if args.json:
        console.print_json(data=info)
    else:
        render_topology(info, console)
    if png:
        from des.app.plots import draw_topology

        draw_topology(topo, png)
        console.print(f"wrote {png}")
    return EXIT_OK


def _png_path(path: Path) -> Path:
    """Where ``--png PATH`` writes: PATH itself, which must name a file ending in .png (a
    folder is refused rather than written beside as PATH.png by matplotlib)."""
    if path.is_dir():
        raise ConfigError(f"--png {path}: is a directory; give a file name such as "
                          f"{path / 'topology.png'}")
    if path.suffix.lower() != ".png":
        raise ConfigError(f"--png {path}: expected a file name ending in .png")
    check_writable(path)
    return path


def _cable(text: str, flag: str) -> tuple[int, int]:
    a, dash, b = text.partition("-")
    if not dash or not a.strip().isdigit() or not b.strip().isdigit():
        raise ConfigError(f"{flag} {text!r}: expected two device ids like 3-7")
    return int(a), int(b)


def check_writable(path: Path) -> None:
    """Create the output's folder and refuse a path that is a folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_dir():
        raise IsADirectoryError(f"output {path} is a directory; give a file name")


def et_dump(args: argparse.Namespace, console: Console) -> int:
    """``des et dump``: Chakra ET files as text, one line per node."""
    from astra_bridge.chakra_dump import dump_lines  # protobuf/Chakra: only for this command
    from des.core.window import parse_window

    window = parse_window(args.nodes)
    lines = dump_lines(args.prefix, args.rank, window)
    first = next(lines)  # a missing or corrupt file fails before anything is printed
    console.print(first, highlight=False, soft_wrap=True)
    for line in lines:
        console.print(line, highlight=False, soft_wrap=True)
    return EXIT_OK


def graph_draw(args: argparse.Namespace, console: Console) -> int:
    """``des graph draw``: a scenario's or Chakra traces' event graph as DOT (and PNG/SVG)."""
    from des.app.graph_dot import render, to_dot
    from des.core.window import parse_window

    window = parse_window(args.nodes)
    out: Path = args.out
    if out.suffix.lower() != ".dot":
        raise ConfigError(f"--out {out}: expected a file name ending in .dot")
    check_writable(out)
    if args.et:
        if args.scenario:
            raise ConfigError("give either a scenario or --et PREFIX, not both")
        from astra_bridge.chakra_read import read_trace

        graph = read_trace(args.et, comm_groups=args.comm_groups).graph
    else:
        if args.comm_groups:
            raise ConfigError("--comm-groups goes with --et PREFIX")
        from des.app.config import load_scenario

        graph = load_scenario(args.scenario).graph
    dot = to_dot(graph, args.rank or None, window, args.max_nodes)
    out.write_text(dot.text, encoding="utf-8")
    pairs = "pair" if dot.p2p == 1 else "pairs"
    edges = f", {dot.p2p} send/recv {pairs} across ranks" if dot.p2p else ""
    console.print(f"wrote {out} ({dot.drawn} nodes{edges})", highlight=False)
    if dot.truncated:
        console.print(f"drew the first {dot.drawn} of {dot.selected} nodes (--max-nodes "
                      f"{args.max_nodes}); pick a rank (--rank) or a window (--nodes A:B)",
                      highlight=False)
    if args.format:
        image = render(dot.text, out.with_suffix(f".{args.format}"), args.format)
        console.print(f"wrote {image}", highlight=False)
    return EXIT_OK


def _first_line(text: str, limit: int = 110) -> str:
    """A bundled file's one-line description: the first sentence of its ``description`` key,
    else its first comment line, shortened to ``limit`` characters."""
    import re

    from des.core.yaml_safe import load_yaml

    try:
        data = load_yaml(text, "bundled file")
    except SchemaError:
        data = None
    line = ""
    if isinstance(data, dict) and isinstance(data.get("description"), str):
        line = re.split(r"(?<=\.)\s", " ".join(data["description"].split()), maxsplit=1)[0]
    else:
        line = next((ln.lstrip("# ").strip() for ln in text.splitlines()
                     if ln.startswith("#")), "")
    return line if len(line) <= limit else line[:limit - 1].rstrip() + "…"


def list_bundled(console: Console) -> int:
    """``des list``: every bundled scenario, sweep, model, GPU and machine with its one-line
    description."""
    from rich.table import Table

    from des.core.paths import bundled

    for kind, title in (("scenarios", "Scenarios (des simulate NAME)"),
                        ("sweeps", "Sweeps (des sweep NAME)"),
                        ("models", "Models (workload.model: NAME)"),
                        ("hardware", "GPUs (hardware: NAME)"),
                        ("machines", "Machines (bench/validation.py --machine NAME)")):
        table = Table(title=title, title_justify="left", show_header=False)
        table.add_column("name", no_wrap=True)
        table.add_column("description")
        for name, entry in sorted(bundled(kind).items(), key=lambda kv: kv[0].lower()):
            table.add_row(name, _first_line(entry.read_text(encoding="utf-8")))
        console.print(table)
    return 0
