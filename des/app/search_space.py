"""The candidate strategies of a search as arrays, and the two cheap prunes: divisibility and
memory.

A :class:`Candidates` table holds one row per strategy (tensor, pipeline, data, context and
expert degrees, sequence parallelism, ZeRO stage, micro-batch, recomputation, schedule, virtual
stages, rank order) as numpy arrays, so enumerating and pruning 10^5-10^6 rows is a handful of
vector operations, not a loop over scenarios.

:func:`divisibility` returns, per row, the first rule it breaks (``""`` when none). The rules
are exactly those that make :class:`~workloads.parallel.ParallelConfig`,
:class:`~workloads.llm.TrainingBuilder` or the memory model refuse a strategy (listed in
:data:`RULES`), so a row passes iff the workload builder accepts it (``tests/test_search.py``
checks this both ways on a whole small space).

:func:`peak_memory` is the per-GPU peak of :meth:`workloads.llm.TrainingBuilder.memory`,
vectorised: ZeRO-sharded weights, gradients and Adam state (Rajbhandari et al. 2020) of the
busiest pipeline stage plus its in-flight activations (Korthikanti et al. 2022), with the
per-layer activation bytes taken from :func:`workloads.memory.activations_per_layer` itself
(once per distinct micro-batch / tensor / context / recompute / pipeline shape, layer by
layer so that MoE models' leading dense layers and MLA count as the builder counts them).
The busiest stage is the first or the last: middle stages hold no embedding or LM head and
no more in-flight micro-batches than the first. It equals the builder's figure (the
``peak_memory_bytes`` a sweep ranks by), which the tests check point by point.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from workloads.memory import activations_per_layer
from workloads.models import ModelConfig
from workloads.ops import ADAM_STATE_BYTES, ADAM_STATES, MASTER_BYTES
from workloads.parallel import RECOMPUTE, SCHEDULES

#: The columns of a candidate table (``sp`` is 0/1; ``recompute`` and ``schedule`` index
#: :data:`RECOMPUTE` and :data:`SCHEDULES`; ``order`` indexes the table's ``orders``; ``ctx``
#: indexes its contexts, e.g. a sweep's systems).
COLUMNS = ("tp", "pp", "dp", "cp", "ep", "sp", "zero", "micro_batch", "recompute", "schedule",
           "virtual_stages", "order", "ctx")

#: The divisibility rules, in the order they are checked, with what each says.
RULES = {
    "world": "dp x tp x pp x cp must equal the NPUs",
    "ep_dp": "ep must divide dp",
    "sp_tp": "sequence parallelism needs tp > 1",
    "batch": "global_batch must be a multiple of micro_batch x dp",
    "virtual": "virtual_stages > 1 only with the interleaved schedule, which needs >= 2",
    "interleaved_pp": "interleaved needs pp >= 2",
    "interleaved_mb": "interleaved needs the micro-batch count to be a multiple of pp",
    "layers": "layers must split into pp x virtual_stages equal chunks",
    "heads": "heads (and KV heads) must split over tp",
    "seq": "the sequence must split over cp",
    "experts": "experts must split over ep (and ep > 1 needs experts)",
}


@dataclass
class Candidates:
    """Strategies as parallel arrays (see :data:`COLUMNS`); ``orders`` names the rank orders
    the ``order`` column indexes."""

    cols: dict[str, np.ndarray]
    orders: list[str] = field(default_factory=lambda: ["tp,cp,ep,pp,dp"])

    def __len__(self) -> int:
        return len(self.cols["tp"])

    def take(self, index: np.ndarray) -> Candidates:
        """The rows at ``index`` (a boolean mask or positions)."""
        return Candidates({k: v[index] for k, v in self.cols.items()}, self.orders)

    def row(self, i: int) -> dict[str, Any]:
        """Row ``i`` as ``workload.parallel`` settings."""
        c = self.cols
        return {"tp": int(c["tp"][i]), "pp": int(c["pp"][i]), "dp": int(c["dp"][i]),
                "cp": int(c["cp"][i]), "ep": int(c["ep"][i]), "sp": bool(c["sp"][i]),
                "zero": int(c["zero"][i]), "micro_batch": int(c["micro_batch"][i]),
                "recompute": RECOMPUTE[int(c["recompute"][i])],
                "schedule": SCHEDULES[int(c["schedule"][i])],
                "virtual_stages": int(c["virtual_stages"][i]),
                "order": self.orders[int(c["order"][i])]}


def grid(axes: dict[str, list[Any]], npus: int, orders: list[str]) -> Candidates:
    """Every combination of ``axes`` values (each a list; ``recompute``/``schedule`` by name,
    ``order`` by position in ``orders``); a missing ``dp`` is derived as
    ``npus // (tp x pp x cp)`` (rows where that is not whole fail the ``world`` rule)."""
    names = [c for c in COLUMNS if c in axes]
    values = []
    for name in names:
        raw = axes[name]
        if name == "recompute":
            raw = [RECOMPUTE.index(v) for v in raw]
        elif name == "schedule":
            raw = [SCHEDULES.index(v) for v in raw]
        elif name == "sp":
            raw = [int(bool(v)) for v in raw]
        values.append(np.asarray(raw, dtype=np.int64))
    sizes = [len(v) for v in values]
    index = np.indices(sizes).reshape(len(sizes), -1) if sizes else np.zeros((0, 1), int)
    n = index.shape[1]
    cols: dict[str, np.ndarray] = {}
    for k, name in enumerate(names):
        cols[name] = values[k][index[k]]
    defaults = {"tp": 1, "pp": 1, "cp": 1, "ep": 1, "sp": 0, "zero": 0, "micro_batch": 1,
                "recompute": 0, "schedule": SCHEDULES.index("1f1b"), "virtual_stages": 1,
                "order": 0, "ctx": 0}
    for name, value in defaults.items():
        cols.setdefault(name, np.full(n, value, dtype=np.int64))
    if "dp" not in cols:
        inner = cols["tp"] * cols["pp"] * cols["cp"]
        cols["dp"] = np.where(npus % inner == 0, npus // np.maximum(inner, 1), 0)
    return Candidates(cols, orders)


def divisibility(c: Candidates, model: ModelConfig, npus: int, seq: int, global_batch: int
                 ) -> np.ndarray:
    """Per row, the key of the first :data:`RULES` entry it breaks, or ``""``."""
    x = c.cols
    tp, pp, dp, cp, ep = x["tp"], x["pp"], x["dp"], x["cp"], x["ep"]
    mb, v = x["micro_batch"], x["virtual_stages"]
    interleaved = x["schedule"] == SCHEDULES.index("interleaved")
    safe_dp = np.maximum(dp, 1)
    micro_batches = global_batch // np.maximum(mb * safe_dp, 1)
    kv_ok = (model.kv_heads % tp == 0) | (tp % model.kv_heads == 0)
    experts_ok = (ep == 1) if not model.experts else (model.experts % ep == 0)
    checks = [
        ("world", (dp >= 1) & (dp * tp * pp * cp == npus)),
        ("ep_dp", safe_dp % ep == 0),
        ("sp_tp", (x["sp"] == 0) | (tp > 1)),
        ("batch", global_batch % np.maximum(mb * safe_dp, 1) == 0),
        ("virtual", np.where(interleaved, v >= 2, v == 1)),
        ("interleaved_pp", ~interleaved | (pp >= 2)),
        ("interleaved_mb", ~interleaved | (micro_batches % pp == 0)),
        ("layers", model.layers % (pp * v) == 0),
        ("heads", (model.heads % tp == 0) & kv_ok),
        ("seq", seq % cp == 0),
        ("experts", experts_ok),
    ]
    out = np.full(len(c), "", dtype=object)
    for key, ok in reversed(checks):  # the first broken rule wins
        out[~np.asarray(ok, dtype=bool)] = key
    return out


def distinct_rows(*cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct rows of ``cols`` stacked, and each row's index among them."""
    distinct, inverse = np.unique(np.stack(cols, axis=1), axis=0, return_inverse=True)
    return distinct, np.ravel(inverse)


def _stage_chunks(pp: int, v: int, last: bool) -> list[int]:
    """The global model chunks the first (or last) pipeline stage holds."""
    stage = pp - 1 if last else 0
    return [local * pp + stage for local in range(v)]


def stage_params(c: Candidates, model: ModelConfig) -> tuple[np.ndarray, np.ndarray]:
    """Parameters on one GPU of the first and of the last pipeline stage
    (:meth:`~workloads.llm.TrainingBuilder._stage_params`): each layer of the stage's chunks at
    :meth:`~workloads.models.ModelConfig.layer_params_local` (dense or MoE layer, MLA
    down-projections whole on every tensor-parallel rank), the embedding in the first chunk and
    the LM head in the last; summed once per distinct (tp, ep, pp, virtual stages)."""
    x = c.cols
    distinct, inverse = distinct_rows(x["tp"], x["ep"], x["pp"], x["virtual_stages"])
    out = np.zeros((len(distinct), 2))
    for i, (tp, ep, pp, v) in enumerate(distinct.tolist()):
        per_chunk = model.layers // (pp * v)
        chunks = pp * v
        for j, last in enumerate((False, True)):
            total = 0.0
            for g in _stage_chunks(pp, v, last):
                total += sum(model.layer_params_local(tp, ep, layer)
                             for layer in range(g * per_chunk, (g + 1) * per_chunk))
                if g == 0:
                    total += model.embedding_params() / tp
                if g == chunks - 1 and (not model.tied_embeddings or pp > 1):
                    total += model.vocab * model.hidden / tp
            out[i, j] = total
    return out[inverse, 0], out[inverse, 1]


def _stage_activations(c: Candidates, model: ModelConfig, seq: int, flash: bool
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Activation bytes of the largest model chunk of the first and of the last stage
    (:meth:`~workloads.llm.TrainingBuilder.memory`), each layer at
    :func:`workloads.memory.activations_per_layer` (an MoE model's leading dense layers at
    their own figure); once per distinct shape."""
    x = c.cols
    distinct, inverse = distinct_rows(x["micro_batch"], x["tp"], x["cp"], x["sp"], x["recompute"],
                                  x["pp"], x["virtual_stages"])
    out = np.zeros((len(distinct), 2))
    memo: dict[tuple, float] = {}

    def layer_bytes(b: int, t: int, cp: int, sp: int, r: int, layer: int) -> float:
        kind = model.is_moe_layer(layer) if model.is_moe else None
        key = (b, t, cp, sp, r, kind)
        if key not in memo:
            memo[key] = activations_per_layer(
                model, micro_batch=b, seq=seq // cp, tp=t, sp=bool(sp),
                recompute=RECOMPUTE[r], flash=flash, layer=layer)
        return memo[key]

    for i, (b, t, cp, sp, r, pp, v) in enumerate(distinct.tolist()):
        per_chunk = model.layers // (pp * v)
        for j, last in enumerate((False, True)):
            out[i, j] = max(sum(layer_bytes(b, t, cp, sp, r, layer)
                                for layer in range(g * per_chunk, (g + 1) * per_chunk))
                            for g in _stage_chunks(pp, v, last))
    return out[inverse, 0], out[inverse, 1]


def _in_flight(c: Candidates, stage_last: bool, global_batch: int) -> np.ndarray:
    """:func:`workloads.memory.in_flight_microbatches` of the first or the last stage."""
    x = c.cols
    pp, v = x["pp"], x["virtual_stages"]
    m = global_batch // np.maximum(x["micro_batch"] * np.maximum(x["dp"], 1), 1)
    stage = pp - 1 if stage_last else np.zeros_like(pp)
    gpipe = m
    one_f = np.minimum(pp - stage, m)
    inter = np.minimum(2 * (pp - stage - 1) + (v - 1) * pp + 1, m * v)
    sched = x["schedule"]
    return np.where(sched == SCHEDULES.index("gpipe"), gpipe,
                    np.where(sched == SCHEDULES.index("interleaved"), inter, one_f))


def peak_memory(c: Candidates, model: ModelConfig, seq: int, global_batch: int, *,
                dtype_bytes: int = 2, grad_bytes: int = 4, flash: bool = True) -> np.ndarray:
    """Per-GPU peak bytes of each row (rows must pass :func:`divisibility`); gradients held at
    ``grad_bytes`` (the builder's default: fp32, :class:`~workloads.parallel.ParallelConfig`)."""
    x = c.cols
    dp = np.maximum(x["dp"], 1).astype(float)
    zero = x["zero"]
    per_param = (dtype_bytes / np.where(zero >= 3, dp, 1.0)
                 + grad_bytes / np.where(zero >= 2, dp, 1.0)
                 + (MASTER_BYTES + ADAM_STATES * ADAM_STATE_BYTES) / np.where(zero >= 1, dp, 1))
    first_p, last_p = stage_params(c, model)
    first_a, last_a = _stage_activations(c, model, seq, flash)
    first = first_p * per_param + first_a * _in_flight(c, False, global_batch)
    last = last_p * per_param + last_a * _in_flight(c, True, global_batch)
    return np.maximum(first, last)


def prune(c: Candidates, model: ModelConfig, npus: int, seq: int, global_batch: int,
          memory_limit: float | None, *, dtype_bytes: int = 2, grad_bytes: int = 4,
          flash: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(reasons, memory, keep)``: each row's broken divisibility rule (``""`` none), its peak
    memory (NaN where it does not divide) and whether it survives both prunes."""
    reasons = divisibility(c, model, npus, seq, global_batch)
    divides = reasons == ""
    memory = np.full(len(c), np.nan)
    if divides.any():
        memory[divides] = peak_memory(c.take(divides), model, seq, global_batch,
                                      dtype_bytes=dtype_bytes, grad_bytes=grad_bytes,
                                      flash=flash)
    keep = divides.copy()
    if memory_limit is not None:
        keep &= np.where(divides, memory <= memory_limit, False)
    return reasons, memory, keep


def same_graph(c: Candidates) -> np.ndarray:
    """Per row, a class id shared by the rows whose workload builder builds the same event
    graph, so every backend gives them the same time: ZeRO-1 and ZeRO-2 differ only in the
    gradients a GPU holds (both reduce-scatter gradients and all-gather parameters,
    :class:`~workloads.llm.TrainingBuilder`), and with ``dp`` 1 the ZeRO stage shards
    nothing. The rows of a class differ in memory only (``tests/test_search.py`` builds both
    graphs of such pairs and compares them)."""
    x = c.cols
    zero = np.where(x["zero"] == 2, 1, x["zero"])
    zero = np.where(x["dp"] == 1, 0, zero)
    cols = [x[k] for k in COLUMNS if k != "zero"] + [zero]
    return distinct_rows(*cols)[1]
