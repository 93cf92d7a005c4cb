"""One interface per workload kind: how ``des simulate`` reports it and ``des sweep`` ranks it.

A scenario's ``workload.kind`` names a :class:`WorkloadKind` in the one registry,
:data:`WORKLOAD_KINDS`. The kind says how its graph is built (its scenario parser, which
:mod:`des.app.config` calls), what report a finished run gives (the ``llm`` or ``gemm``
section of the JSON result), the flat metrics a sweep records for a point, which metric ranks
points and in which direction, the metric columns of the sweep's ranking table, and how the
terminal shows the report. The command line and the
sweep both call :func:`evaluate`, so a run is reported and ranked the same way in both:

* ``llm_training``: iteration time, lowest first;
* ``llm_inference``: output tokens/s (the decode rate), highest first;
* ``lstm_training``: iteration time, lowest first;
* ``gemm``, ``collectives``, ``data_parallel_step`` and graphs from elsewhere (AstraSim inputs):
  the makespan, lowest first.

Every kind's metrics hold ``iteration_s`` (the time of one iteration, request batch or GEMM:
what the sweep plots draw), ``makespan_ns``, ``exposed_comm_s`` and ``workload`` (the kind).
When the scenario's hardware has energy figures (:mod:`des.core.energy`), they also hold
``energy_j``, ``energy_per_token_j`` (per the kind's ``tokens_key`` figure of its report),
``avg_power_w`` and the energy breakdown, and the JSON result an ``energy`` section.

A new kind is one :func:`register_workload` call (see ``examples/custom_workload.py``)::

    register_workload(WorkloadKind("parameter_server", "one parameter-server step",
                                   build=parse_ps, metrics=ps_metrics))

after which scenarios (``workload: {kind: parameter_server, ...}``), ``des simulate`` and
``des sweep`` know it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rich.console import Console

from des.app import workload_parsers as parsers
from des.app.llm_report import inference_report, training_report
from des.app.render import render_gemm, render_inference, render_llm, render_lstm
from des.core.results import Result

if TYPE_CHECKING:  # des.app.config dispatches through this module; it is imported for types
    from des.app.config import Scenario
    from des.app.sections import Section
    from des.core.graph import EventGraph

Report = dict[str, Any]
Metrics = dict[str, Any]
Parser = Callable[["Section", int, str], "EventGraph | tuple[EventGraph, Any]"]
"""A scenario parser: ``parse(workload_section, num_ranks, scenario_name)`` -> the graph, or
(graph, what built it) when the kind's report needs the builder (``scenario.workload``)."""

#: The kind of a scenario whose graph did not come from a ``workload.kind`` (AstraSim inputs).
GRAPH_KIND = "graph"


@dataclass(frozen=True)
class Column:
    """One metric column of the sweep's ranking table: the metric, its header, and how to show
    it (``time`` in seconds, ``rate`` per second, ``percent``, ``memory`` bytes with the
    out-of-memory verdict, ``number``)."""

    key: str
    header: str
    unit: str


@dataclass(frozen=True)
class WorkloadKind:
    """How one workload kind is built, reported, measured and ranked (see the module doc).

    ``build`` parses the scenario's ``workload:`` section (a :data:`Parser`; None for the
    ``graph`` kind, which no scenario names);
    ``report`` gives the JSON section ``report_key`` of a finished run (None: no report);
    ``metrics`` the flat figures a sweep records (from the report and the Result);
    ``rank_key`` the metric that ranks points, best first by ``higher_is_better``;
    ``columns`` the ranking table's metric columns; ``render`` shows the report on a console;
    ``folds``: the parser takes ``topology`` and ``symmetric`` keywords to decide what it can
    fold exactly (:mod:`workloads.folding`); ``tokens_key``: the report figure counting the
    tokens one run produces, for the energy per token (None: no tokens).
    """

    name: str
    description: str
    build: Parser | None
    metrics: Callable[[Report | None, Result], Metrics]
    rank_key: str = "iteration_s"
    higher_is_better: bool = False
    columns: tuple[Column, ...] = (Column("iteration_s", "time", "time"),)
    report: Callable[[Result, Scenario], Report] | None = None
    report_key: str | None = None
    render: Callable[[Report, Console], None] | None = None
    folds: bool = False
    tokens_key: str | None = None

    def sort_key(self, metrics: Mapping[str, Any]) -> tuple[bool, float]:
        """Best first: ascending, or descending for ``higher_is_better``; missing last."""
        value = metrics.get(self.rank_key)
        if value is None:
            return True, 0.0
        return False, -value if self.higher_is_better else value


@dataclass
class Evaluation:
    """What one finished run of a scenario gave: its kind, report (or None) and metrics."""

    kind: WorkloadKind
    report: Report | None
    metrics: Metrics
    roofline: dict[int, dict[str, float]] = field(default_factory=dict)
    energy: dict[str, Any] | None = None

    def attach(self, result: Result) -> None:
        """Put the report (under the kind's key), the metrics, the per-rank roofline
        statistics (:mod:`des.sim.roofline_stats`) and the energy report into ``result.meta``."""
        if self.report is not None and self.kind.report_key:
            result.meta[self.kind.report_key] = self.report
        result.meta["metrics"] = self.metrics
        if self.roofline:
            result.meta["roofline"] = self.roofline
        if self.energy is not None:
            result.meta["energy"] = self.energy


# ---------------------------------------------------------------------- per kind
def _makespan(report: Report | None, result: Result) -> Metrics:
    return {"iteration_s": result.makespan_ns * 1e-9}


def _memory(report: Report) -> Metrics:
    return {"peak_memory_bytes": report.get("memory_peak_bytes"),
            "out_of_memory": report.get("out_of_memory")}


def _exposed(report: Report, dims: Iterable[str]) -> Metrics:
    parts = report["breakdown_s"]
    return {**{f"exposed_{dim}_s": parts[f"exposed_{dim}"] for dim in dims},
            "bubble_s": parts["idle"]}


def _training_metrics(report: Report | None, result: Result) -> Metrics:
    assert report is not None
    return {"iteration_s": report["iteration_s"], "tokens_per_s": report["tokens_per_s"],
            "mfu": report.get("mfu"), **_memory(report),
            **_exposed(report, ("tp", "cp", "ep", "pp", "dp"))}


def _inference_metrics(report: Report | None, result: Result) -> Metrics:
    assert report is not None
    return {"iteration_s": report["e2e_s"],
            **{k: report[k] for k in ("ttft_s", "tpot_s", "e2e_s", "output_tokens_per_s",
                                      "total_tokens_per_s")},
            **_memory(report), **_exposed(report, ("tp", "pp"))}


def _gemm_metrics(report: Report | None, result: Result) -> Metrics:
    assert report is not None
    return {"iteration_s": report["time_s"], "tflops": report["tflops"],
            "fraction_of_peak": report.get("fraction_of_peak"),
            "compute_share": report["compute_share"],
            "communication_share": report["communication_share"]}


def _lstm_metrics(report: Report | None, result: Result) -> Metrics:
    assert report is not None
    return {"iteration_s": report["iteration_s"], "tokens_per_s": report["tokens_per_s"],
            "tflops": report["tflops"], "fraction_of_peak": report.get("fraction_of_peak"),
            **_exposed(report, ("tp", "pp", "dp"))}


def _lstm_report(result: Result, scenario: Scenario) -> Report:
    from des.app.lstm_report import lstm_report  # only for LSTM scenarios

    return lstm_report(result, scenario.workload, scenario.hardware)


def _training_report(result: Result, scenario: Scenario) -> Report:
    return training_report(result, scenario.workload, scenario.hardware)


def _inference_report(result: Result, scenario: Scenario) -> Report:
    return inference_report(result, scenario.workload, scenario.hardware)


def _gemm_report(result: Result, scenario: Scenario) -> Report:
    from workloads.gemm import gemm_report  # the GEMM workload: only for GEMM scenarios

    hw = scenario.hardware
    peak = hw.peak_flops[hw.default_dtype] * 1e9 if hw is not None else None
    return gemm_report(result, scenario.workload, peak)


_MEMORY = Column("peak_memory_bytes", "memory", "memory")
_TIME = Column("iteration_s", "time", "time")

#: The one registry of workload kinds, by name (add to it with :func:`register_workload`).
WORKLOAD_KINDS: dict[str, WorkloadKind] = {}


def register_workload(kind: WorkloadKind) -> WorkloadKind:
    """Add ``kind`` to the registry (scenarios, ``des simulate`` and ``des sweep`` then know
    it) and return it. A name already registered is a ValueError."""
    if not isinstance(kind, WorkloadKind):
        raise TypeError(f"register_workload: expected a WorkloadKind, got {type(kind).__name__}")
    if not kind.name or not isinstance(kind.name, str):
        raise ValueError(f"register_workload: a workload kind needs a name, got {kind.name!r}")
    if kind.name in WORKLOAD_KINDS:
        raise ValueError(f"workload kind {kind.name!r} is already registered")
    WORKLOAD_KINDS[kind.name] = kind
    return kind


def get_workload_kind(name: str) -> WorkloadKind:
    """The registered kind called ``name``; a KeyError listing the registered ones otherwise."""
    if name not in WORKLOAD_KINDS:
        raise KeyError(f"unknown workload kind {name!r}; registered: "
                       f"{', '.join(sorted(WORKLOAD_KINDS))}")
    return WORKLOAD_KINDS[name]


def scenario_kinds() -> list[str]:
    """The kinds a scenario's ``workload.kind`` may name (those with a parser), sorted."""
    return sorted(name for name, kind in WORKLOAD_KINDS.items() if kind.build is not None)


for _kind in (
    WorkloadKind("llm_training", "one LLM training iteration", parsers.parse_llm_training,
                 _training_metrics,
                 columns=(Column("iteration_s", "iteration", "time"),
                          Column("tokens_per_s", "tokens/s", "rate"),
                          Column("mfu", "MFU", "percent"), _MEMORY),
                 report=_training_report, report_key="llm", render=render_llm, folds=True,
                 tokens_key="tokens_per_iteration"),
    WorkloadKind("llm_inference", "prefill and decode of one LLM request batch",
                 parsers.parse_llm_inference, _inference_metrics,
                 rank_key="output_tokens_per_s", higher_is_better=True,
                 columns=(Column("output_tokens_per_s", "output tokens/s", "rate"),
                          Column("ttft_s", "TTFT", "time"), Column("tpot_s", "TPOT", "time"),
                          Column("e2e_s", "end to end", "time"), _MEMORY),
                 report=_inference_report, report_key="llm", render=render_inference,
                 tokens_key="output_tokens"),
    WorkloadKind("gemm", "one distributed GEMM", parsers.parse_gemm, _gemm_metrics,
                 columns=(_TIME, Column("tflops", "TFLOP/s", "number"),
                          Column("fraction_of_peak", "of peak", "percent")),
                 report=_gemm_report, report_key="gemm", render=render_gemm),
    WorkloadKind("lstm_training", "one LSTM language-model training iteration (DeepFlow)",
                 parsers.parse_lstm_training, _lstm_metrics,
                 columns=(Column("iteration_s", "iteration", "time"),
                          Column("tokens_per_s", "tokens/s", "rate"),
                          Column("fraction_of_peak", "of peak", "percent")),
                 report=_lstm_report, report_key="lstm", render=render_lstm,
                 tokens_key="tokens_per_iteration"),
    WorkloadKind("collectives", "a sequence of collectives", parsers.parse_collectives,
                 _makespan, folds=True),
    WorkloadKind("data_parallel_step", "a data-parallel training step",
                 parsers.parse_data_parallel_step, _makespan),
    WorkloadKind(GRAPH_KIND, "an event graph from elsewhere (AstraSim inputs)", None,
                 _makespan),
):
    register_workload(_kind)


def kind_of(scenario: Scenario) -> WorkloadKind:
    """The interface of a scenario's workload kind (``graph`` when it has none)."""
    return get_workload_kind(scenario.kind or GRAPH_KIND)


def evaluate(result: Result, scenario: Scenario, roofline_figures: bool = False) -> Evaluation:
    """The report and metrics of a finished run of ``scenario``, as its kind defines them;
    with ``roofline_figures``, also each rank's roofline statistics."""
    kind = kind_of(scenario)
    report = kind.report(result, scenario) if kind.report is not None else None
    exposed = max((st.exposed_comm_ns for st in result.ranks.values()), default=0.0)
    metrics: Metrics = {"workload": kind.name, "makespan_ns": result.makespan_ns,
                        "exposed_comm_s": exposed * 1e-9, **kind.metrics(report, result)}
    roofline = {}
    if roofline_figures:
        from des.sim.roofline_stats import roofline_stats

        roofline = {rank: st.as_dict() for rank, st in
                    roofline_stats(scenario.graph, result, scenario.hardware).items()}
    energy = None
    hardware = scenario.hardware
    if hardware is not None and hardware.energy is not None:
        from des.core.energy import energy_report

        tokens = report.get(kind.tokens_key) if report and kind.tokens_key else None
        unmoved, unlaid = None, 0
        if result.meta.get("backend") == "analytical" or any(
                c.bytes_injected is None for c in result.collectives):
            from des.sim.link_traffic import unmoved_link_bytes

            unmoved, unlaid = unmoved_link_bytes(scenario.topology, scenario.graph, result,
                                                 scenario.options)
        figures = energy_report(scenario.graph, result, hardware, tokens=tokens,
                                unmoved=unmoved, unlaid=unlaid)
        metrics.update(figures.metrics())
        energy = figures.as_dict()
    return Evaluation(kind, report, metrics, roofline, energy)


def ranking_kind(metrics: Iterable[Mapping[str, Any]]) -> WorkloadKind:
    """The kind whose rule ranks these points: theirs when they share one, else the makespan
    (points of different kinds, or recorded before points named their kind)."""
    names = {m.get("workload", GRAPH_KIND) for m in metrics}
    only = names.pop() if len(names) == 1 else GRAPH_KIND
    return WORKLOAD_KINDS.get(only, WORKLOAD_KINDS[GRAPH_KIND])


__all__ = ["GRAPH_KIND", "WORKLOAD_KINDS", "Column", "Evaluation", "Parser", "WorkloadKind",
           "evaluate", "get_workload_kind", "kind_of", "ranking_kind", "register_workload",
           "scenario_kinds"]
