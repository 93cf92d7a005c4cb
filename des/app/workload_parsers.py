"""The scenario parsers of the built-in workload kinds: each reads a scenario's ``workload:``
section into an event graph (and what built it, when a report needs it).

A parser is ``parse(section, num_ranks, name) -> EventGraph | (EventGraph, built)``; the
:class:`~des.app.workload_kinds.WorkloadKind` of each kind carries its parser, and
:mod:`des.app.config` dispatches through that registry.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from collectives import CollectiveError, check_algorithm
from des.app.sections import ConfigError, Section, ranks
from des.core import limits, schema, units
from des.core.graph import CollectiveType, EventGraph
from des.core.hardware import DEFAULT_DTYPE_BYTES
from topologies.base import Topology
from workloads import CollectiveSpec, collective_sequence, data_parallel_step
from workloads.parallel import ParallelConfig, ParallelError  # cheap; the CLI needs the error
from workloads.precision import GRAD_REDUCE_DTYPES, KV_CACHE_DTYPES, PrecisionError, dtype_bytes

# The GEMM and LLM builders are imported by the parsers of their kinds, not here: every
# scenario loads this module, and a collectives scenario should not pay for the LLM code.
if TYPE_CHECKING:
    from des.sim.options import EngineOptions
    from workloads.inference import InferenceConfig
    from workloads.models import ModelConfig

_show = schema.show
_positive_int = schema.positive_int
_nonneg_int = schema.nonneg_int
_positive_number = schema.positive_number
_boolean = schema.boolean
_text = schema.text


def _dim(value: Any, where: str) -> int:
    """A positive whole number no larger than ``max_model_dim`` (sequence lengths, batches,
    GEMM shapes): a 10^200 is refused here, not overflowed in a FLOP count."""
    number = _positive_int(value, where)
    limits.check("max_model_dim", number, where)
    return number


def _size_range(value: Any, where: str) -> list[float]:
    sec = Section(value, where)
    low = sec.get("from", units.parse_size)
    high = sec.get("to", units.parse_size)
    factor = sec.get("factor", _positive_number, default=2.0)
    sec.finish()
    if not (low > 0 and high >= low and factor > 1):
        raise ConfigError(f"{where}: need 0 < from <= to and factor > 1")
    sizes = []
    size = low
    while size <= high * (1 + 1e-12) and len(sizes) < 64:
        sizes.append(float(round(size)))
        size *= factor
    return sizes


def _collective_specs(item: Any, where: str, num_ranks: int) -> list[CollectiveSpec]:
    """One op: a collective at one ``size``, a list of ``sizes`` or a ``size_range`` (an
    nccl-tests-style sweep: from, to, factor), each size run ``repeat`` times in turn."""
    sec = Section(item, where)
    ctype = sec.get("collective", lambda v, w: CollectiveType.parse(_text(v, w)))
    given = [k for k in ("size", "sizes", "size_range") if k in sec.data]
    if not given:
        raise ConfigError(f"{sec.where('size')}: required key is missing (or give sizes: "
                          "[...] or size_range: {from, to, factor})")
    if len(given) > 1:
        raise ConfigError(f"{where}: give only one of size, sizes or size_range, not "
                          f"{' and '.join(given)}")
    sizes = [sec.get("size", units.parse_size, default=None)]
    if given[0] == "sizes":
        raw = sec.get("sizes")
        if not isinstance(raw, list) or not raw:
            raise ConfigError(f"{sec.where('sizes')}: expected a non-empty list of sizes")
        sizes = [units.parse_size(v, f"{sec.where('sizes')}[{i}]") for i, v in enumerate(raw)]
    elif given[0] == "size_range":
        sizes = sec.get("size_range", _size_range)
    else:
        sec.known += ["sizes", "size_range"]
    group = sec.get("group", ranks, default=None)
    for i, rank in enumerate(group or ()):
        if rank >= num_ranks:
            raise ConfigError(f"{sec.where('group')}[{i}]: rank {rank} is outside the "
                              f"topology's NPUs 0..{num_ranks - 1}")
    algorithm = sec.get("algorithm", _text, default=None)
    if algorithm != "auto":
        try:
            check_algorithm(ctype, algorithm)
        except CollectiveError as err:
            raise ConfigError(f"{sec.where('algorithm')}: {err}") from None
    repeat = sec.get("repeat", _positive_int, default=1)
    limits.check("max_repeat", repeat, sec.where("repeat"))
    sec.finish()
    if ctype is not CollectiveType.BARRIER:  # one rule for size, sizes and size_range
        for size in sizes:
            if not size > 0:
                key = given[0] if given[0] != "sizes" else "sizes"
                raise ConfigError(f"{sec.where(key)}: {ctype.value} must move more than 0 "
                                  "bytes (only a barrier takes size: 0)")
    return [CollectiveSpec(ctype, size, group, algorithm, repeat) for size in sizes]


def parse_collectives(sec: Section, num_ranks: int, name: str,
                      topology: Topology | None = None, symmetric: bool = True,
                      contention: bool = True, options: EngineOptions | None = None
                      ) -> EventGraph:
    """``kind: collectives``: a sequence of collectives (``ops:``), one after another.

    ``fold: auto`` (the default) builds it for rank 0 alone when every op spans all ranks, the
    run is ``symmetric`` and the topology's translations make that exact for the backend
    (:func:`_folded`); ``fold: none`` always builds every rank."""
    ops = sec.get("ops")
    if not isinstance(ops, list) or not ops:
        raise ConfigError(f"{sec.where('ops')}: expected a non-empty list of collectives")
    specs = [spec for i, item in enumerate(ops)
             for spec in _collective_specs(item, f"{sec.where('ops')}[{i}]", num_ranks)]
    fold = sec.choice("fold", ("auto", "none"), default="auto")
    sec.finish()
    nodes = sum(spec.repeat * len(spec.group or range(num_ranks)) for spec in specs)
    limits.check("max_graph_nodes", nodes, sec.where("ops"),
                 what="collective nodes: repeats x sizes x ranks")
    if fold == "auto" and symmetric and topology is not None and options is not None:
        graph = _folded(specs, num_ranks, name, topology, contention, options)
        if graph is not None:
            return graph
    return collective_sequence(num_ranks, specs, name=name)


def _folded(specs: list[CollectiveSpec], num_ranks: int, name: str, topology: Topology,
            contention: bool, options: EngineOptions) -> EventGraph | None:
    """The collectives folded onto rank 0 by the topology's translations
    (:func:`workloads.folding.world_fold`), when every op spans all ranks and the fold is exact
    for the backend: link by link for the contended engine (:mod:`des.sim.fold_check`); the
    closed-form backend times a span collective over its whole span, as it would unfolded."""
    from workloads.folding import world_fold

    everyone = tuple(range(num_ranks))
    if any(spec.group not in (None, everyone) for spec in specs):
        return None
    fold = world_fold(topology, num_ranks)
    if fold is None:
        return None
    graph = collective_sequence(num_ranks, specs, name=name, fold=fold)
    return graph if not contention or _exact_fold(graph, topology, options) else None


def parse_data_parallel_step(sec: Section, num_ranks: int, name: str) -> EventGraph:
    """``kind: data_parallel_step``: per-layer compute with a gradient all-reduce each."""
    layers = sec.get("layers", _positive_int)
    limits.check("max_graph_nodes", 3 * layers * num_ranks, sec.where("layers"),
                 what="nodes: forward, backward and all-reduce per layer and rank")
    graph = data_parallel_step(
        num_ranks,
        layers=layers,
        params_per_layer=sec.get("params_per_layer", _positive_number),
        tokens_per_rank=sec.get("tokens_per_rank", _positive_number),
        dtype_bytes=sec.get("dtype_bytes", _positive_int, default=DEFAULT_DTYPE_BYTES),
        algorithm=sec.get("algorithm", _text, default=None),
        name=name,
    )
    sec.finish()
    return graph


def _models() -> Any:
    from workloads import models  # model presets and YAML: only LLM kinds read them

    return models


def _model(value: Any, where: str) -> ModelConfig:
    try:
        if isinstance(value, str):
            return _models().load_model(value)
        if isinstance(value, Mapping):
            return _models().model_from_dict(value, where)
    except ValueError as err:
        msg = str(err)
        raise ConfigError(msg if msg.startswith(where) else f"{where}: {msg}") from None
    raise ConfigError(f"{where}: expected a model preset name, a YAML path or a mapping, got "
                      f"{_show(value)}")


def _fold(value: Any, where: str) -> str | tuple[str, ...]:
    if value in ("auto", "none"):
        return value
    if isinstance(value, list) and value and all(a in ("tp", "dp", "cp") for a in value):
        return tuple(value)  # ParallelConfig checks cp against the ring-attention model
    raise ConfigError(f"{where}: expected auto, none or a list of axes from [tp, dp, cp], got "
                      f"{_show(value)}")


def _number_format(allowed: tuple[str, ...]) -> Any:
    """A parser of a named number format (``fp32``, ``bf16``...) from ``allowed``."""
    def parse(value: Any, where: str) -> str:
        try:
            dtype_bytes(value, allowed, where)
        except PrecisionError as err:
            raise ConfigError(str(err)) from None
        return value
    return parse


_PARALLEL_KEYS = {
    "dp": _positive_int, "tp": _positive_int, "pp": _positive_int, "cp": _positive_int,
    "ep": _positive_int, "sp": _boolean, "zero": _nonneg_int, "recompute": _text,
    "micro_batch": _dim, "global_batch": _dim, "schedule": _text,
    "virtual_stages": _positive_int, "order": _text, "bucket_size": units.parse_size,
    "grad_bytes": _positive_int, "dtype_bytes": _positive_int, "flash": _boolean,
    "fold_tp": _boolean, "fold": _fold, "ring_attention": _text, "dropout": _boolean,
    "pp_blocking": _boolean, "pp_scatter_gather": _boolean, "dp_overlap": _boolean,
    "tp_grad_overlap": _boolean, "optimizer_impl": _text,
    "grad_reduce_dtype": _number_format(GRAD_REDUCE_DTYPES),
}


def _parallel(value: Any, where: str, seq: int | None) -> ParallelConfig:
    sec = Section(value, where)
    kwargs = {}
    for key, parse in _PARALLEL_KEYS.items():
        if key in sec.data:
            kwargs["bucket_bytes" if key == "bucket_size" else key] = sec.get(key, parse)
        else:
            sec.known.append(key)
    sec.finish()
    try:
        return ParallelConfig(seq=seq, **kwargs)
    except (ParallelError, PrecisionError) as err:
        raise ConfigError(str(err).replace("parallel.", f"{where}.", 1)) from None


def parse_llm_training(sec: Section, num_ranks: int, name: str,
                       topology: Topology | None = None,
                       symmetric: bool = True, contention: bool = True,
                       options: EngineOptions | None = None) -> tuple[EventGraph, Any]:
    """``kind: llm_training``: one training iteration of ``model`` under ``parallel``
    (folded where ``topology`` proves it exact for the backend, contended or not, and the run
    is ``symmetric``)."""
    model = sec.get("model", _model)
    seq = sec.get("seq", _dim, default=None)
    par = sec.get("parallel", lambda v, w: _parallel(v, w, seq))
    sec.finish()
    # at least a forward and a backward node per layer and micro-batch (many more in practice)
    limits.check("max_graph_nodes", 2 * par.micro_batches * model.layers, sec.where("parallel"),
                 what=f"at least 2 nodes x {par.micro_batches:,} micro-batches x "
                      f"{model.layers} layers")
    from workloads.llm import build_training  # the LLM builder: only for this kind

    try:
        workload = build_training(model, par, num_ranks, topology, symmetric, contention)
        if contention and par.fold_request == "auto" and topology is not None \
                and options is not None and not _exact_fold(workload.graph, topology, options):
            # the builder proves its fold for the algorithms auto picks; the run's options
            # may name others (a machine file's NCCL rings) that the fold does not fit
            workload = build_training(model, replace(par, fold="none"), num_ranks, topology,
                                      symmetric, contention)
    except ParallelError as err:
        raise ConfigError(f"{sec.path}: {err}") from None
    return workload.graph, workload


def _exact_fold(graph: EventGraph, topology: Topology, options: EngineOptions) -> bool:
    """True when ``graph`` is unfolded or its fold is exact for the contended engine run with
    ``options`` (:mod:`des.sim.fold_check`)."""
    if graph.fold is None or graph.fold.count <= 1:
        return True
    from des.sim.fold_check import fold_orbits, spans_match

    return fold_orbits(graph, topology, options) is not None \
        and spans_match(graph, topology, options)


_INFERENCE_KEYS = {
    "tp": _positive_int, "pp": _positive_int, "batch": _dim, "prompt": _dim,
    "generate": _dim, "dtype_bytes": _positive_int, "flash": _boolean,
    "fold_tp": _boolean, "kv_cache_dtype": _number_format(KV_CACHE_DTYPES),
}


def _inference(value: Any, where: str) -> InferenceConfig:
    from workloads.inference import InferenceConfig

    sec = Section(value, where)
    kwargs = {}
    for key, parse in _INFERENCE_KEYS.items():
        if key in sec.data:
            kwargs[key] = sec.get(key, parse)
        else:
            sec.known.append(key)
    sec.finish()
    try:
        return InferenceConfig(**kwargs)
    except ParallelError as err:
        raise ConfigError(str(err).replace("parallel.", f"{where}.", 1)) from None


def parse_llm_inference(sec: Section, num_ranks: int, name: str) -> tuple[EventGraph, Any]:
    """``kind: llm_inference``: prefill and decode of one request batch."""
    from workloads.inference import InferenceConfig, build_inference  # only for this kind

    model = sec.get("model", _model)
    cfg = sec.get("parallel", _inference, default=None) or InferenceConfig()
    sec.finish()
    limits.check("max_graph_nodes", (cfg.generate + 1) * model.layers, sec.where("parallel"),
                 what=f"at least a node per layer of the prefill and {cfg.generate:,} decode "
                      "steps")
    try:
        workload = build_inference(model, cfg, num_ranks)
    except ParallelError as err:
        raise ConfigError(f"{sec.path}: {err}") from None
    return workload.graph, workload


def parse_gemm(sec: Section, num_ranks: int, name: str) -> tuple[EventGraph, Any]:
    """``kind: gemm``: one distributed GEMM, ``m x k @ k x n`` sharded over ``tp`` ranks."""
    from workloads.gemm import SHARDS, build_gemm  # only for this kind

    m, n, k = (sec.get(key, _dim) for key in ("m", "n", "k"))
    tp = sec.get("tp", _positive_int, default=num_ranks)
    shard = sec.choice("shard", list(SHARDS))
    gather = sec.get("gather_output", _boolean, default=True)
    dtype_bytes = sec.get("dtype_bytes", _positive_int, default=DEFAULT_DTYPE_BYTES)
    fold = sec.get("fold_tp", _boolean, default=False)
    sec.finish()
    try:
        workload = build_gemm(m, n, k, tp=tp, shard=shard, npus=num_ranks,
                              dtype_bytes=dtype_bytes, gather_output=gather, fold_tp=fold)
    except ParallelError as err:
        raise ConfigError(f"{sec.path}: {err}") from None
    return workload.graph, workload


def _lstm_parallel(sec: Section) -> dict[str, int]:
    """``parallel: {dp, pp, tp}`` of an LSTM (each defaults to 1)."""
    par = sec.section("parallel")
    out = {key: par.get(key, _positive_int, default=1) for key in ("dp", "pp", "tp")}
    par.finish()
    return out


def parse_lstm_training(sec: Section, num_ranks: int, name: str) -> tuple[EventGraph, Any]:
    """``kind: lstm_training``: one iteration of an LSTM language model (DeepFlow's LSTM mode;
    :mod:`workloads.lstm`) under data, layer (``pp``) and kernel (``tp``) parallelism."""
    from workloads.lstm import DTYPE_BYTES, LstmConfig, build_lstm, nodes_per_rank

    dims = {key: sec.get(key, _dim) for key in ("layers", "hidden", "seq", "batch", "vocab")}
    dtype = sec.choice("dtype", list(DTYPE_BYTES), default="bf16", what="dtype")
    par = _lstm_parallel(sec)
    sec.finish()
    try:
        cfg = LstmConfig(**dims, dtype=dtype, **par)
    except ParallelError as err:  # its message starts with the key at fault
        raise ConfigError(f"{sec.path}.{err}") from None
    if cfg.world != num_ranks:  # before the size check: a wrong strategy is the real error
        raise ConfigError(f"{sec.where('parallel')}: dp x pp x tp = {cfg.dp} x {cfg.pp} x "
                          f"{cfg.tp} = {cfg.world}, but the topology has {num_ranks} NPUs")
    nodes = sum(nodes_per_rank(cfg, s) for s in range(cfg.pp)) * cfg.dp * cfg.tp
    limits.check("max_graph_nodes", nodes, sec.where("seq"),
                 what="nodes: cells x steps x ranks and their communication")
    workload = build_lstm(cfg, num_ranks)
    return workload.graph, workload


__all__ = ["parse_collectives", "parse_data_parallel_step", "parse_gemm",
           "parse_llm_inference", "parse_llm_training", "parse_lstm_training"]
