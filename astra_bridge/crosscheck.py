"""Cross-check des against an AstraSim binary on the same event graph.

The scenario is exported as AstraSim inputs; those very files are read back and simulated by
des in the AstraSim-compatible model of the backend the binary implements (and in des's own
model, for the picture); the binary, when given, runs on them in the export folder with an
argument list and a timeout, its output kept beside the inputs. The comparison is per rank
(finished time, exposed communication) and overall, with des's critical path to show which
operations set the makespan.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from astra_bridge.export import ExportedFiles, export
from astra_bridge.inputs import AstraInputs, load_inputs
from astra_bridge.report import AstraRankStats, from_result, parse_astra_output
from des.core.critical_path import PathStep, critical_path
from des.core.graph import EventGraph
from des.core.hardware import GpuSpec
from des.core.results import Result
from des.core.schema import check as check_value
from des.core.schema import positive_number
from des.sim.engine import simulate
from des.sim.options import EngineOptions
from topologies.base import Topology

ENV_BINARY = "ASTRA_SIM_BIN"
TAIL_LINES = 20


@dataclass
class AstraRun:
    """What running the binary gave: exit code, whether it timed out, its per-rank results."""

    command: list[str]
    exit_code: int | None
    timed_out: bool
    ranks: dict[int, AstraRankStats]
    tail: str
    stdout_path: Path
    stderr_path: Path

    @property
    def ok(self) -> bool:
        """Every rank reported finishing (AstraSim sometimes aborts after reporting)."""
        return bool(self.ranks) and not self.timed_out


@dataclass
class Crosscheck:
    """des and (maybe) AstraSim on the same exported inputs."""

    files: ExportedFiles
    backend: str
    des_compat: dict[int, AstraRankStats]
    des_compat_result: Result
    des_own: Result
    critical: list[PathStep]
    astra: AstraRun | None = None
    notes: list[str] = field(default_factory=list)

    def rows(self) -> list[dict]:
        """Per-rank comparison rows (AstraSim columns None without a binary)."""
        out = []
        for rank, ours in sorted(self.des_compat.items()):
            theirs = self.astra.ranks.get(rank) if self.astra else None
            diff = None
            if theirs is not None and theirs.finished_ns:
                diff = (ours.finished_ns - theirs.finished_ns) / theirs.finished_ns
            compute_diff = comm_diff = None
            if theirs is not None and theirs.finished_ns:
                # the makespan difference, split: compute time (GPU time) and the rest
                # (communication, and waiting on it)
                compute_diff = ((ours.gpu_ns or 0.0) - (theirs.gpu_ns or 0.0)) \
                    / theirs.finished_ns
                comm_diff = diff - compute_diff
            out.append({"rank": rank, "des_finished_ns": ours.finished_ns,
                        "des_exposed_comm_ns": ours.exposed_comm_ns,
                        "des_gpu_ns": ours.gpu_ns,
                        "astra_finished_ns": theirs.finished_ns if theirs else None,
                        "astra_exposed_comm_ns": theirs.exposed_comm_ns if theirs else None,
                        "astra_gpu_ns": theirs.gpu_ns if theirs else None,
                        "difference": diff, "compute_difference": compute_diff,
                        "communication_difference": comm_diff})
        return out

    def overall_difference(self) -> float | None:
        """Makespan difference of des-compatible versus AstraSim, as a fraction."""
        if not self.astra or not self.astra.ranks:
            return None
        theirs = max(r.finished_ns for r in self.astra.ranks.values())
        ours = max(r.finished_ns for r in self.des_compat.values())
        return (ours - theirs) / theirs if theirs else None

    def to_dict(self) -> dict:
        """The JSON document."""
        return {
            "schema": "des.crosscheck/1",
            "folder": str(self.files.folder),
            "astra_flags": self.files.flags(),
            "backend": self.backend,
            "ranks": self.rows(),
            "overall_difference": self.overall_difference(),
            "des_own_model_makespan_ns": self.des_own.makespan_ns,
            "astra": None if self.astra is None else {
                "command": self.astra.command, "exit_code": self.astra.exit_code,
                "timed_out": self.astra.timed_out, "tail": self.astra.tail},
            "critical_path": [vars(s) for s in self.critical],
            "notes": self.notes + self.files.notes,
        }


def run_astra(binary: str | Path, files: ExportedFiles, timeout: float) -> AstraRun:
    """Run the binary in the export folder; never raises for its failures, reports them."""
    command = [str(binary), *files.flags()]
    stdout_path = files.folder / "astra.stdout.txt"
    stderr_path = files.folder / "astra.stderr.txt"
    timed_out = False
    try:
        proc = subprocess.run(command, cwd=files.folder, capture_output=True, text=True,
                              errors="replace", timeout=timeout, check=False,
                              stdin=subprocess.DEVNULL)
        out, err, code = proc.stdout, proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as exc:
        timed_out = True
        out = _text(exc.stdout)
        err = _text(exc.stderr)
        code = None
    except OSError as exc:
        out, err, code = "", f"could not start {binary}: {exc}", None
    stdout_path.write_text(out)
    stderr_path.write_text(err)
    tail = "\n".join((out + "\n" + err).strip().splitlines()[-TAIL_LINES:])
    return AstraRun(command, code, timed_out, parse_astra_output(out + "\n" + err), tail,
                    stdout_path, stderr_path)


def _text(value: str | bytes | None) -> str:
    if value is None:
        return ""
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def find_binary(explicit: str | Path | None) -> Path | None:
    """The binary given, else $ASTRA_SIM_BIN, else None; a given path must exist."""
    candidate = explicit or os.environ.get(ENV_BINARY)
    if not candidate:
        return None
    path = Path(candidate).resolve()  # the binary starts from the export folder
    if not path.is_file():
        raise FileNotFoundError(f"AstraSim binary not found: {path} (from "
                                f"{'--astra-bin' if explicit else ENV_BINARY})")
    return path


def crosscheck(graph: EventGraph, topology: Topology, folder: str | Path, *,
               options: EngineOptions | None = None, hardware: GpuSpec | None = None,
               binary: str | Path | None = None, congestion_aware: bool = True,
               timeout: float = 600.0) -> Crosscheck:
    """Export, simulate the exported files in des, run the binary if any, compare. Compute
    goes out as des's own per-node durations (efficiencies included), so both sides compute
    for the same time and the difference left is communication.
    ``timeout`` (seconds the binary may run) must be a finite number > 0: a
    :class:`~des.core.schema.SchemaError` before anything is written otherwise."""
    check_value(positive_number, timeout, "--timeout")
    options = options or EngineOptions()
    files = export(graph, topology, folder, options=options, hardware=hardware,
                   compute="durations")
    inputs: AstraInputs = load_inputs(files.workload_prefix, files.system, files.network,
                                      comm_groups=files.comm_groups,
                                      remote_memory=files.remote_memory)
    model = "aware" if congestion_aware else "unaware"
    compat = simulate(inputs.topology, inputs.graph, hardware=inputs.hardware,
                      options=inputs.options(model))
    own = simulate(topology, graph, hardware=hardware, options=options)
    check = Crosscheck(files, model, from_result(compat), compat, own,
                       critical_path(compat, inputs.graph), notes=list(inputs.warnings))
    if binary is not None:
        check.astra = run_astra(binary, files, timeout)
    return check
