"""Collective bandwidth against published nccl-tests runs: read nccl-tests tables, rebuild each
run as a des collectives scenario on a machine description, and compare bus bandwidth.

A measurement file (YAML) says ``format: nccl-tests`` and lists ``runs:``; each run names its
``collective`` (all_reduce, all_gather, reduce_scatter, alltoall, broadcast, reduce), ``nodes``
and ``gpus_per_node``, and holds the rows of the table the test printed, copied verbatim, as
``table:`` (a block of text). A row is ``size count type redop [root] time algbw busbw #wrong``
for the out-of-place run followed by the same four for the in-place run; nccl-tests 2.x prints
the ``root`` column, earlier versions do not. Only out-of-place figures are compared.

Bus bandwidth follows nccl-tests' definitions (doc/PERFORMANCE.md in NVIDIA/nccl-tests):
``algbw = size / time``, ``busbw = algbw x factor`` with factor ``2(n-1)/n`` for all-reduce,
``(n-1)/n`` for all-gather, reduce-scatter and all-to-all, 1 for broadcast and reduce
(:func:`des.core.results.bus_factor`). ``size`` is the full buffer at each rank, which is also
what a des collective's ``nbytes`` means (:class:`des.core.graph.CollectiveType`).

The machine description is the same one the Megatron rows use (:mod:`des.app.validation`):
the run's scenario is its topology sized to the run's nodes, its GPU and its network options,
running the table's sizes one after another as an nccl-tests sweep does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from des.app.validation import (
    NCCL_FORMAT,
    ValidationError,
    is_nccl_file,
    machine_topology,
    measurement_files,
)
from des.core.results import bus_factor

FORMAT = NCCL_FORMAT  # the format: key these files carry (checked by is_nccl_file)
#: nccl-tests binary names (without ``_perf``) -> des collective names.
COLLECTIVES = {"all_reduce": "all_reduce", "all_gather": "all_gather",
               "reduce_scatter": "reduce_scatter", "alltoall": "all_to_all",
               "all_to_all": "all_to_all", "broadcast": "broadcast", "reduce": "reduce"}


@dataclass(frozen=True)
class NcclPoint:
    """One printed row (out-of-place): size in bytes, time in us, algbw and busbw in GB/s."""

    size: int
    time_us: float
    algbw: float
    busbw: float


@dataclass(frozen=True)
class NcclRun:
    """One published nccl-tests run: where it came from, what ran where, and its rows."""

    source: str
    name: str
    collective: str
    nodes: int
    gpus_per_node: int
    points: tuple[NcclPoint, ...]
    command: str = ""

    @property
    def ranks(self) -> int:
        """GPUs taking part (one rank per GPU)."""
        return self.nodes * self.gpus_per_node


def busbw_GBps(collective: str, ranks: int, size: float, time_us: float) -> float:
    """nccl-tests bus bandwidth in GB/s of ``size`` bytes moved in ``time_us``."""
    if time_us <= 0:
        return 0.0
    return size / (time_us * 1e3) * bus_factor(collective, ranks)


def parse_table(text: str, where: str) -> list[NcclPoint]:
    """The out-of-place figures of the rows of an nccl-tests table (comment lines skipped)."""
    points = []
    for i, line in enumerate(text.splitlines()):
        cells = line.split()
        if not cells or cells[0].startswith("#"):
            continue
        # 13 cells: size count type redop root + 2 x (time algbw busbw #wrong); 12 without root
        if len(cells) not in (12, 13):
            raise ValidationError(f"{where}: table line {i + 1} has {len(cells)} columns; "
                                  "expected 12 or 13 (an nccl-tests row)")
        first = len(cells) - 8
        try:
            points.append(NcclPoint(int(cells[0]), float(cells[first]), float(cells[first + 1]),
                                    float(cells[first + 2])))
        except ValueError:
            raise ValidationError(f"{where}: table line {i + 1} is not an nccl-tests row: "
                                  f"{line.strip()!r}") from None
        if not points[-1].time_us > 0:
            raise ValidationError(f"{where}: table line {i + 1} has an out-of-place time of "
                                  f"{points[-1].time_us} us; a measured time must be positive")
    if not points:
        raise ValidationError(f"{where}: the table has no rows")
    return points


def runs_of(data: Any, source: str) -> list[NcclRun]:
    """The runs of one nccl-tests measurement file's parsed YAML."""
    if not is_nccl_file(data) or not isinstance(data.get("runs"), list):
        raise ValidationError(f"{source}: expected format: {FORMAT} with a 'runs' list")
    runs = []
    for i, run in enumerate(data["runs"]):
        where = f"{source}: runs[{i}]"
        if not isinstance(run, dict):
            raise ValidationError(f"{where}: expected a mapping")
        missing = [k for k in ("name", "collective", "nodes", "gpus_per_node", "table")
                   if k not in run]
        if missing:
            raise ValidationError(f"{where}: missing {', '.join(missing)}")
        collective = COLLECTIVES.get(str(run["collective"]))
        if collective is None:
            raise ValidationError(f"{where}: collective {run['collective']!r}; expected one of "
                                  f"{', '.join(sorted(COLLECTIVES))}")
        nodes, per_node = run["nodes"], run["gpus_per_node"]
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1
                   for v in (nodes, per_node)):
            raise ValidationError(f"{where}: nodes and gpus_per_node must be whole numbers >= 1")
        if not isinstance(run["table"], str):
            raise ValidationError(f"{where}: table must be the printed rows as a block of text")
        runs.append(NcclRun(source, str(run["name"]), collective, nodes, per_node,
                            tuple(parse_table(run["table"], f"{where}.table")),
                            str(run.get("command", ""))))
    return runs


def load_runs(folder: str | Path) -> list[NcclRun]:
    """Every run of every nccl-tests file (``*.yaml`` with ``format: nccl-tests``) in
    ``folder``, files in name order; other measurement files are left to
    :func:`des.app.validation.load_rows`."""
    return [run for name, data in measurement_files(folder) if is_nccl_file(data)
            for run in runs_of(data, name)]


def run_scenario_dict(run: NcclRun, machine: dict[str, Any]) -> dict[str, Any]:
    """The scenario (a mapping for :func:`des.app.config.scenario_from_dict`) of ``run`` on
    ``machine``: its topology sized to the run's nodes, the table's sizes one after another."""
    if run.gpus_per_node != machine["gpus_per_node"]:
        raise ValidationError(f"{run.name}: {run.gpus_per_node} GPUs per node, but machine "
                              f"{machine.get('name')!r} has {machine['gpus_per_node']}")
    out = {"name": run.name, "topology": machine_topology(machine, run.nodes),
           "hardware": machine["hardware"],
           "workload": {"kind": "collectives", "ops": [
               {"collective": run.collective, "sizes": [p.size for p in run.points]}]}}
    if "network" in machine:
        out["network"] = dict(machine["network"])
    return out


def compare_run(run: NcclRun, machine: dict[str, Any], backend: str = "analytical"
                ) -> list[dict[str, float]]:
    """Simulate ``run`` on ``machine`` with ``backend``; per size: measured and des time (us)
    and bus bandwidth (GB/s), and the relative time error (des / measured - 1: negative is
    optimistic, as in the training rows, which the issue defines on iteration time). des's
    time of a call is rank 0's collective op, from when its stream takes it (the launch
    included, as nccl-tests times a call) to its end."""
    from des.app.config import scenario_from_dict
    from des.sim.backends import run_backend

    scenario = scenario_from_dict(run_scenario_dict(run, machine))
    result = run_backend(backend, scenario.topology, scenario.graph,
                         hardware=scenario.hardware, options=scenario.options)
    # a call's time as nccl-tests takes it: rank 0's collective op, launch included
    calls = sorted((op for op in result.ops if op.rank == 0 and op.kind == "collective"),
                   key=lambda op: op.start_ns)
    if len(calls) != len(run.points):
        raise ValidationError(f"{run.name}: simulated {len(calls)} collectives for "
                              f"{len(run.points)} table rows")
    rows = []
    for point, call in zip(run.points, calls, strict=True):
        measured = busbw_GBps(run.collective, run.ranks, point.size, point.time_us)
        des_us = (call.end_ns - call.start_ns) / 1e3
        rows.append({"size": point.size, "measured_us": point.time_us,
                     "measured_busbw": measured, "printed_busbw": point.busbw,
                     "des_us": des_us,
                     "des_busbw": busbw_GBps(run.collective, run.ranks, point.size, des_us),
                     "error": des_us / point.time_us - 1})
    return rows


__all__ = ["COLLECTIVES", "FORMAT", "NcclPoint", "NcclRun", "busbw_GBps", "compare_run",
           "is_nccl_file", "load_runs", "parse_table", "run_scenario_dict", "runs_of"]
