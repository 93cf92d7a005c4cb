"""Accuracy against published measurements: read measurement files, build each case as a
scenario on a shipped machine description, and compare.

A measurement file (YAML, ``cases:``) lists published runs with their full configuration:
``model`` (layers, hidden, heads, head_dim, ffn, seq, vocab), ``parallel`` (gpus, tp, pp, dp,
global_batch, micro_batch, pipeline_interleaving, and optionally ``ddp``,
``grad_allreduce_bytes`` and ``tp_grad_overlap``: what the source records of its software),
and what was measured, in one of two forms:

* ``measured_iteration_s: {full: 1.42, selective+sp: 1.10}``: iteration seconds per
  recomputation mode (``full``: full recomputation; ``selective+sp``: sequence parallelism with
  selective recomputation), one row per mode;
* ``measured_layer_ms: {full: {forward: 7.7, backward: 19.5}, ...}``: the time of one
  transformer layer's forward and backward pass (backward including its recomputation and
  tensor-parallel communication) per mode (:data:`LAYER_MODES`), two rows per mode, for a case
  with one micro-batch and no pipeline; des's figure is the span of that layer's operations on
  the first rank (:func:`layer_seconds`), the case's ``layer`` (default: the middle one);
* ``measured: {metric: tflops_per_gpu, value: 137, flops_formula: narayanan2021_eq3}`` with
  ``recompute`` and ``sp`` on the case: achieved teraFLOP/s per GPU, compared as iteration time
  ``t = F / (n X)`` through the paper's own FLOP count ``F`` (Narayanan et al. 2021, eq. 3:
  ``F = 96 B s l h^2 (1 + s/(6h) + V/(16 l h))``).

A machine description (``configs/machines/*.yaml``) is the same for every row: the topology
(its ``nodes`` filled in per case from the GPU count), the GPU preset, the network options and
the training software's behaviour (``software:``, keys of ``workload.parallel``). Nothing is set
per case but what the measurement file records.

Its ``links:`` section, when present, describes each link class of the topology as hardware:
``line_rate`` (the signalling rate per direction), ``efficiency`` (the fraction of it collective
traffic achieves) and ``step_latency`` (what one hop through the class's switch costs a message),
each with its source in the file. The topology's bandwidths are ``line_rate x efficiency`` and
its switch latencies the step latencies (:data:`LINK_CLASSES` says which topology key each class
sets). nccl-tests files in the same folder are read by :mod:`des.app.validation_nccl`.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from des.core import units
from des.core.paths import load_preset
from des.core.schema import SchemaError, boolean, check, nonneg_int, positive_number
from des.core.yaml_safe import load_yaml, read_text

#: The ``format:`` of an nccl-tests measurement file (:mod:`des.app.validation_nccl`).
NCCL_FORMAT = "nccl-tests"


class ValidationError(SchemaError):
    """A measurement file or machine description that cannot be read; names what is wrong."""


#: Link classes a machine's ``links:`` may describe, per topology kind: class -> (topology key of
#: its bandwidth, topology key of its per-hop switch latency).
LINK_CLASSES: dict[str, dict[str, tuple[str, str]]] = {
    "superpod": {"nvlink": ("bandwidth", "nvswitch_latency"),
                 "nic": ("nic_bandwidth", "leaf_latency")},
}
MODES = {"full": ("full", False), "selective+sp": ("selective", True)}
"""Recomputation modes of ``measured_iteration_s``: (recompute, sequence parallelism)."""
LAYER_MODES = {"none": ("none", False), "sp": ("none", True), **MODES,
               "selective": ("selective", False)}
"""Modes of ``measured_layer_ms`` (Korthikanti et al. 2022, Table 4's rows)."""
PASSES = ("forward", "backward")
FLOP_FORMULAS = ("narayanan2021_eq3",)


@dataclass(frozen=True)
class Row:
    """One measured run to reproduce: where it came from, its scenario workload and the
    measured iteration time in seconds."""

    source: str
    case: str
    mode: str
    gpus: int
    measured_s: float
    workload: dict[str, Any] = field(compare=False)
    measured_as: str = "iteration_s"
    layer: int | None = None  # measured_as layer_forward_s / layer_backward_s: which layer

    @property
    def layer_pass(self) -> str | None:
        """``"forward"`` or ``"backward"`` for a per-layer row, else None."""
        return None if self.layer is None else self.measured_as.split("_")[1]


def layer_seconds(result: Any, layer: int, rank: int = 0) -> dict[str, float]:
    """Seconds from the first start to the last end of layer ``layer``'s forward operations
    (``fwd/`` names and the collectives of every axis named after them: ``tp/fwd/``,
    ``cp/fwd/``, ``ep/fwd/``, ``dp/fwd/``) and of the rest of its operations (backward,
    recomputation and their collectives) on ``rank``: what a profile of one layer's passes
    measures (a graph with one micro-batch, so the layer runs once per pass)."""
    tag = f"/L{layer}."
    spans: dict[str, list[float]] = {}
    for op in result.ops:
        if op.rank != rank or tag not in op.name + ".":
            continue
        kind = "forward" if "fwd" in op.name.split("/")[:-1] else "backward"
        low, high = spans.setdefault(kind, [op.start_ns, op.end_ns])
        spans[kind] = [min(low, op.start_ns), max(high, op.end_ns)]
    return {kind: (high - low) * 1e-9 for kind, (low, high) in spans.items()}


def narayanan_eq3_flops(model: dict[str, Any], global_batch: int) -> float:
    """FLOPs of one iteration with full recomputation (Narayanan et al. 2021, eq. 3):
    ``96 B s l h^2 (1 + s/(6h) + V/(16 l h))``."""
    b, s, layers, h, v = (global_batch, model["seq"], model["layers"], model["hidden"],
                          model["vocab"])
    return 96.0 * b * s * layers * h * h * (1 + s / (6 * h) + v / (16 * layers * h))


def _workload(case: dict[str, Any], recompute: str, sp: bool) -> dict[str, Any]:
    m, p = case["model"], case["parallel"]
    v = p.get("pipeline_interleaving", 1)
    parallel: dict[str, Any] = {
        "dp": p["dp"], "tp": p["tp"], "pp": p["pp"], "micro_batch": p["micro_batch"],
        "global_batch": p["global_batch"], "sp": sp, "recompute": recompute,
        "schedule": "interleaved" if v > 1 else "1f1b", "virtual_stages": v,
    }
    if "ddp" in p:
        if p["ddp"] not in ("torch", "local"):
            raise ValidationError(f"{case['name']}: parallel.ddp must be torch or local, got "
                                  f"{p['ddp']!r}")
        parallel["dp_overlap"] = p["ddp"] == "torch"
    if "grad_allreduce_bytes" in p:
        parallel["grad_bytes"] = p["grad_allreduce_bytes"]
    if "tp_grad_overlap" in p:
        parallel["tp_grad_overlap"] = check(boolean, p["tp_grad_overlap"],
                                            f"{case['name']}: parallel.tp_grad_overlap",
                                            ValidationError)
    model = {"name": case["name"], "layers": m["layers"], "hidden": m["hidden"],
             "heads": m["heads"], "kv_heads": m["heads"], "head_dim": m["head_dim"],
             "ffn": m["ffn"], "vocab": m["vocab"], "seq": m["seq"], "activation": "gelu",
             "position_embeddings": True}
    return {"kind": "llm_training", "model": model, "seq": m["seq"], "parallel": parallel}


def rows_of(data: Any, source: str) -> list[Row]:
    """The rows of one measurement file's parsed YAML."""
    if not isinstance(data, dict) or not isinstance(data.get("cases"), list):
        raise ValidationError(f"{source}: expected a mapping with a 'cases' list")
    rows = []
    for i, case in enumerate(data["cases"]):
        where = f"{source}: cases[{i}]"
        try:
            name, gpus = case["name"], case["parallel"]["gpus"]
            if "measured_iteration_s" in case:
                for mode, seconds in case["measured_iteration_s"].items():
                    if mode not in MODES:
                        raise ValidationError(f"{where}: measured mode {mode!r}; expected "
                                              f"one of {', '.join(MODES)}")
                    rows.append(Row(source, name, mode, gpus, float(seconds),
                                    _workload(case, *MODES[mode])))
            elif "measured_layer_ms" in case:
                rows.extend(_layer_rows(case, where, source))
            elif "measured" in case:
                measured = case["measured"]
                if measured.get("metric") != "tflops_per_gpu" or \
                        measured.get("flops_formula") not in FLOP_FORMULAS:
                    raise ValidationError(f"{where}: measured must be metric tflops_per_gpu "
                                          f"with flops_formula {', '.join(FLOP_FORMULAS)}")
                flops = narayanan_eq3_flops(case["model"], case["parallel"]["global_batch"])
                seconds = flops / (gpus * float(measured["value"]) * 1e12)
                recompute, sp = case.get("recompute", "none"), bool(case.get("sp", False))
                mode = f"{recompute}{'+sp' if sp else ''}"
                rows.append(Row(source, name, mode, gpus, seconds,
                                _workload(case, recompute, sp), "tflops_per_gpu"))
            else:
                raise ValidationError(f"{where}: needs measured_iteration_s, "
                                      "measured_layer_ms or measured")
        except (KeyError, TypeError, ValueError) as err:
            if isinstance(err, ValidationError):
                raise
            raise ValidationError(f"{where}: cannot read the case ({err!r})") from None
    return rows


def _layer_rows(case: dict[str, Any], where: str, source: str) -> list[Row]:
    """Two rows (forward, backward) per mode of a ``measured_layer_ms`` case."""
    p, layers = case["parallel"], case["model"]["layers"]
    if p["pp"] != 1 or p["global_batch"] != p["micro_batch"] * p["dp"]:
        raise ValidationError(f"{where}: per-layer times need pp 1 and one micro-batch "
                              f"(global_batch = micro_batch x dp), got pp {p['pp']}, "
                              f"global_batch {p['global_batch']}, micro_batch {p['micro_batch']}")
    layer = check(nonneg_int, case.get("layer", layers // 2), f"{where}: layer", ValidationError)
    if layer >= layers:
        raise ValidationError(f"{where}: layer {layer} is not one of the {layers} layers")
    measured = case["measured_layer_ms"]
    if not isinstance(measured, dict):
        raise ValidationError(f"{where}: measured_layer_ms: expected a mapping of modes, got "
                              f"{measured!r}")
    rows = []
    for mode, passes in measured.items():
        if mode not in LAYER_MODES:
            raise ValidationError(f"{where}: measured_layer_ms mode {mode!r}; expected one of "
                                  f"{', '.join(LAYER_MODES)}")
        if not isinstance(passes, dict) or set(passes) != set(PASSES):
            raise ValidationError(f"{where}: measured_layer_ms.{mode} needs exactly "
                                  f"{' and '.join(PASSES)} (ms)")
        for kind in PASSES:
            ms = check(positive_number, passes[kind], f"{where}: measured_layer_ms.{mode}.{kind}",
                       ValidationError)
            rows.append(Row(source, case["name"], mode, p["gpus"], float(ms) / 1e3,
                            _workload(case, *LAYER_MODES[mode]), f"layer_{kind}_s", layer))
    return rows


def is_nccl_file(data: Any) -> bool:
    """Whether parsed YAML is an nccl-tests measurement file (:mod:`des.app.validation_nccl`)."""
    return isinstance(data, dict) and data.get("format") == NCCL_FORMAT


def measurement_files(folder: str | Path) -> Iterator[tuple[str, Any]]:
    """``(file name, parsed YAML)`` of every ``*.yaml`` measurement file in ``folder``, in name
    order; a missing folder or a file that cannot be read is a :class:`ValidationError`."""
    path = Path(folder)
    if not path.is_dir():
        raise ValidationError(f"measurement folder not found: {path}")
    for file in sorted(path.glob("*.yaml")):
        try:
            data = load_yaml(read_text(file, "measurement file"), file.name)
        except SchemaError as err:
            raise ValidationError(str(err)) from None
        yield file.name, data


def load_rows(folder: str | Path) -> list[Row]:
    """Every row of every ``*.yaml`` measurement file in ``folder``, files in name order;
    nccl-tests files are left to :func:`des.app.validation_nccl.load_runs`."""
    return [row for name, data in measurement_files(folder) if not is_nccl_file(data)
            for row in rows_of(data, name)]


def load_machine(name_or_path: str) -> dict[str, Any]:
    """A machine description: bundled (``configs/machines``) by name, or a YAML path."""
    def parse(data: Any) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise ValidationError("expected a mapping")
        missing = [k for k in ("topology", "gpus_per_node", "hardware") if k not in data]
        if missing:
            raise ValidationError(f"missing {', '.join(missing)}")
        if "links" in data:
            _link_settings(data)  # checked now, applied per case by machine_topology
        return data
    return load_preset("machines", name_or_path, parse, ValidationError, "machine")


def _link_settings(machine: dict[str, Any]) -> dict[str, Any]:
    """Topology keys set by a machine's ``links:``: per class, bandwidth = line_rate x
    efficiency and the class's switch latency = step_latency (see the module docstring)."""
    links, kind = machine["links"], machine["topology"].get("kind")
    classes = LINK_CLASSES.get(kind)
    if classes is None:
        raise ValidationError(f"links: topology kind {kind!r} has no link classes; "
                              f"supported: {', '.join(LINK_CLASSES)}")
    if not isinstance(links, dict):
        raise ValidationError("links: expected a mapping of link class to "
                              "{line_rate, efficiency, step_latency}")
    out: dict[str, Any] = {}
    for name, spec in links.items():
        where = f"links.{name}"
        if name not in classes:
            raise ValidationError(f"{where}: unknown link class; expected one of "
                                  f"{', '.join(classes)}")
        if not isinstance(spec, dict) or "line_rate" not in spec:
            raise ValidationError(f"{where}: expected {{line_rate, efficiency, step_latency}}")
        unknown = set(spec) - {"line_rate", "efficiency", "step_latency"}
        if unknown:
            raise ValidationError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
        rate = units.parse_bandwidth(spec["line_rate"], f"{where}.line_rate")
        efficiency = spec.get("efficiency", 1.0)
        if isinstance(efficiency, bool) or not isinstance(efficiency, int | float) \
                or not 0 < efficiency <= 1:
            raise ValidationError(f"{where}.efficiency: must be in (0, 1], got {efficiency!r}")
        bandwidth_key, latency_key = classes[name]
        out[bandwidth_key] = rate * efficiency  # bytes/ns (= GB/s)
        if "step_latency" in spec:
            units.parse_time(spec["step_latency"], f"{where}.step_latency")
            out[latency_key] = spec["step_latency"]
    return out


def machine_topology(machine: dict[str, Any], nodes: int) -> dict[str, Any]:
    """The machine's ``topology:`` for ``nodes`` nodes, with its ``links:`` applied."""
    topology = {**machine["topology"], "nodes": nodes}
    if "links" in machine:
        topology.update(_link_settings(machine))
    return topology


def scenario_dict(row: Row, machine: dict[str, Any]) -> dict[str, Any]:
    """The scenario (as a mapping for :func:`des.app.config.scenario_from_dict`) of ``row``
    on ``machine``: its topology sized to the row's GPUs, its GPU, network and software."""
    per_node = machine["gpus_per_node"]
    if row.gpus % per_node:
        raise ValidationError(f"{row.case}: {row.gpus} GPUs are not whole nodes of {per_node}")
    topology = machine_topology(machine, row.gpus // per_node)
    workload = copy.deepcopy(row.workload)
    workload["parallel"] = {**machine.get("software", {}), **workload["parallel"]}
    out = {"name": f"{row.case} {row.mode}", "topology": topology,
           "hardware": machine["hardware"], "workload": workload}
    if "network" in machine:
        out["network"] = machine["network"]
    return out


__all__ = ["FLOP_FORMULAS", "LAYER_MODES", "LINK_CLASSES", "MODES", "NCCL_FORMAT", "PASSES",
           "Row", "ValidationError", "is_nccl_file", "layer_seconds", "load_machine",
           "load_rows", "machine_topology", "measurement_files", "narayanan_eq3_flops",
           "rows_of", "scenario_dict"]
