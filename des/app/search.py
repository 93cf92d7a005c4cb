"""``des search``: the fastest training strategy without simulating the whole space.

1. **Enumerate** the candidates as arrays (:mod:`des.app.search_space`): a spec's free axes on
   its base scenario, or a sweep file's points (its constraints and derived values applied by
   the sweep's own screening).
2. **Prune** by divisibility (the workload builder's own rules) and by memory (the builder's
   peak-memory model against the limit), both vectorised.
3. **Pre-screen**: a closed-form lower bound of every survivor's time
   (:mod:`des.app.search_bound`), vectorised.
4. **Branch and bound** on a priority queue keyed by each candidate's best known lower bound:
   take the lowest; if it only has its pre-screen bound, run the analytical backend on it (in
   batches, on the sweep executors) and put it back keyed by ``max(pre-screen, analytical /
   (1 + margin))``; if it has been through the analytical backend, confirm it with the
   contended (SimPy) engine. Stop when the lowest key exceeds the best confirmed time: every
   candidate left is then slower, *provided the keys are lower bounds*. The pre-screen is one by
   construction. The analytical backend is the contended engine without contention; with
   ``margin`` 0 it is trusted as a lower bound, and every confirmation checks that trust (the
   result counts the candidates whose analytical time exceeded their contended time, with the
   worst excess); a positive margin keeps the stop exact when it is exceeded by less.

Points are :class:`~des.app.sweep_types.SweepPoint` objects run by
:func:`des.app.sweep_exec.run_point` on the same executors as sweeps (the local process pool or
Dask), so a search's confirmed point and the full sweep's give the same figures. The library
never prints; the CLI (:mod:`des.app.cli_search`) renders :class:`SearchResult`.
"""

from __future__ import annotations

import contextlib
import copy
import heapq
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from des.app.search_bound import NodeCut, injection_bandwidth, lower_bound, node_cut
from des.app.search_space import COLUMNS, Candidates, grid, prune, same_graph
from des.app.search_spec import SearchError, SearchSpec, divisors
from des.app.sweep import point_key, set_path
from des.app.sweep_types import PointResult, SweepPoint, canonical_json
from des.core.schema import check, positive_int
from workloads.parallel import RECOMPUTE, SCHEDULES
from workloads.precision import DTYPE_BYTES, GRAD_REDUCE_DTYPES, dtype_bytes

_LOG = logging.getLogger(__name__)
_STRATEGY_KEYS = ("tp", "pp", "dp", "cp", "ep", "sp", "zero", "micro_batch", "recompute",
                  "schedule", "virtual_stages", "order")


@dataclass
class Context:
    """What the candidates of one cluster share: the scenario they are set into, its model,
    GPU and topology, and the figures the prunes and the bound need."""

    label: str
    scenario: dict[str, Any]
    model: Any
    hardware: Any
    topology: Any
    seq: int
    global_batch: int
    dtype_bytes: int
    grad_bytes: int
    flash: bool
    memory_limit: float | None
    dp_overlap: bool = True
    tp_grad_overlap: bool = False

    @cached_property
    def cut(self) -> NodeCut | None:
        """The topology's node cut (:func:`~des.app.search_bound.node_cut`)."""
        return node_cut(self.topology)

    @property
    def npus(self) -> int:
        """NPUs of the cluster."""
        return self.topology.num_npus


@dataclass(frozen=True)
class SearchProgress:
    """Where a running search stands after a batch: runs so far, the best confirmed time and
    the lowest key still open (no candidate left can beat it), seconds."""

    analysed: int
    confirmed: int
    survivors: int
    best_s: float | None
    floor_s: float | None


@dataclass
class Candidate:
    """One candidate the search looked at beyond the prunes: its strategy, bounds, and what
    the backends gave (None where it was not run)."""

    id: int
    context: str
    strategy: dict[str, Any]
    values: dict[str, Any]
    memory_bytes: float
    prescreen_s: float
    analytical_s: float | None = None
    confirmed_s: float | None = None
    status: str = "bounded"  # bounded, analysed, confirmed, error
    reason: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    point: SweepPoint | None = field(default=None, repr=False)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (without the scenario)."""
        return {"id": self.id, "context": self.context, "strategy": self.strategy,
                "values": self.values, "memory_bytes": self.memory_bytes,
                "prescreen_s": self.prescreen_s, "analytical_s": self.analytical_s,
                "confirmed_s": self.confirmed_s, "status": self.status, "reason": self.reason,
                "metrics": self.metrics}


@dataclass
class SearchResult:
    """What a search found and how much of the space it visited."""

    name: str
    counts: dict[str, int]
    pruned_by_rule: dict[str, int]
    best: Candidate | None
    confirmed: list[Candidate]
    runners_up: list[Candidate]
    stop: str
    proven: bool
    margin: float
    memory_limit: dict[str, float | None]
    wall_s: dict[str, float]
    bound_gap: dict[str, float | None]
    explanation: dict[str, Any] | None = None
    min_bound_s: float | None = None  # the lowest lower bound of any survivor
    floor_s: float | None = None  # a lower bound of every candidate not confirmed, at the stop

    def as_dict(self) -> dict[str, Any]:
        """The result as JSON-ready data (stable keys)."""
        return {"name": self.name, "counts": self.counts, "pruned_by_rule": self.pruned_by_rule,
                "best": self.best.as_dict() if self.best else None,
                "confirmed": [c.as_dict() for c in self.confirmed],
                "runners_up": [c.as_dict() for c in self.runners_up],
                "stop": self.stop, "proven": self.proven, "margin": self.margin,
                "memory_limit": self.memory_limit, "wall_s": self.wall_s,
                "bound_gap": self.bound_gap, "min_bound_s": self.min_bound_s,
                "floor_s": self.floor_s,
                "explanation": self.explanation}

    def rows(self) -> list[dict[str, Any]]:
        """Flat rows for CSV: every candidate that reached a backend."""
        out = []
        for c in sorted({id(c): c for c in [*self.confirmed, *self.runners_up]}.values(),
                        key=lambda c: (c.confirmed_s is None, c.confirmed_s or 0.0,
                                       c.analytical_s or 0.0)):
            out.append({"context": c.context, **c.strategy, "memory_bytes": c.memory_bytes,
                        "prescreen_s": c.prescreen_s, "analytical_s": c.analytical_s,
                        "confirmed_s": c.confirmed_s, "status": c.status})
        return out


# ---------------------------------------------------------------------- the space
def _context(scenario: dict[str, Any], label: str, memory_limit: float | None,
             limit_set: bool) -> Context:
    """The cluster of ``scenario`` (its topology is built; its workload graph is not)."""
    from des.app.config import ConfigError, build_topology
    from des.core.hardware import HardwareError, gpu_from_dict, load_gpu
    from des.core.schema import Section
    from workloads.models import load_model, model_from_dict

    try:
        topology = build_topology(Section(scenario.get("topology"), "topology"))
        hw = scenario.get("hardware")
        if hw is None:
            raise SearchError("base.hardware: the search needs the GPU (peak FLOP/s, HBM) to "
                              "bound and rank strategies")
        hardware = load_gpu(hw) if isinstance(hw, str) else gpu_from_dict(hw, "hardware")
        workload = scenario["workload"]
        raw = workload.get("model")
        model = load_model(raw) if isinstance(raw, str) else model_from_dict(
            raw, "workload.model")
    except (ConfigError, HardwareError, ValueError) as err:
        if isinstance(err, SearchError):
            raise
        raise SearchError(f"base: {err}") from None
    par = workload.get("parallel") or {}
    seq = int(workload.get("seq") or model.seq)
    limit = memory_limit if limit_set else hardware.hbm_capacity
    if "global_batch" not in par:
        raise SearchError("base.workload.parallel.global_batch: required for a search")
    return Context(label, scenario, model, hardware, topology, seq, int(par["global_batch"]),
                   int(par.get("dtype_bytes", 2)), _grad_bytes(par),
                   bool(par.get("flash", True)), None if limit is None else float(limit),
                   bool(par.get("dp_overlap", True)), bool(par.get("tp_grad_overlap", False)))


def _grad_bytes(par: dict[str, Any]) -> int:
    """The gradient precision in bytes, as :class:`~workloads.parallel.ParallelConfig`
    resolves it (``grad_bytes`` or ``grad_reduce_dtype``; fp32 when neither is given)."""
    where = "base.workload.parallel"
    given = par.get("grad_bytes")
    named = par.get("grad_reduce_dtype")
    if named is None:
        return DTYPE_BYTES["fp32"] if given is None else check(positive_int, given,
                                                              f"{where}.grad_bytes")
    size = dtype_bytes(named, GRAD_REDUCE_DTYPES, f"{where}.grad_reduce_dtype")
    if given is not None and given != size:
        raise SearchError(f"{where}.grad_bytes ({given!r}) disagrees with grad_reduce_dtype "
                          f"({named}: {size} bytes); give one of them")
    return size


def _resolve(free: dict[str, Any], npus: int, global_batch: int) -> dict[str, list[Any]]:
    axes = {}
    for axis, values in free.items():
        if values == "auto":
            values = divisors(global_batch if axis == "micro_batch" else npus)
        axes[axis] = values
    return axes


@dataclass
class _Space:
    contexts: list[Context]
    cands: Candidates
    enumerated: int
    invalid: int  # broke a sweep constraint
    invalid_reasons: Counter
    points: dict[int, SweepPoint]  # sweep route: row -> screened point
    fingerprint: str = ""


def build_space(spec: SearchSpec) -> _Space:
    """Every candidate of ``spec`` as a table (before the prunes)."""
    if spec.sweep is None:
        assert spec.base is not None
        ctx = _context(spec.base, "base", spec.memory_limit, spec.memory_limit_set)
        axes = _resolve(spec.free, ctx.npus, ctx.global_batch)
        count = math.prod(len(v) for v in axes.values())
        if count > spec.max_candidates:
            raise SearchError(f"free: {count:,} candidates exceed limits.max_candidates "
                              f"({spec.max_candidates:,}); narrow the axes or raise it")
        orders = axes.pop("order", None) or [(spec.base["workload"].get("parallel") or {}).get(
            "order", "tp,cp,ep,pp,dp")]
        axes["order"] = list(range(len(orders)))
        base_par = spec.base["workload"].get("parallel") or {}
        for axis in ("tp", "pp", "cp", "ep", "sp", "zero", "micro_batch", "recompute",
                     "schedule", "virtual_stages"):
            if axis not in axes and axis in base_par:
                axes[axis] = [base_par[axis]]
        if "dp" not in axes and "dp" in base_par and not spec.free.keys() & {"tp", "pp",
                                                                            "cp"}:
            axes["dp"] = [base_par["dp"]]
        cands = grid(axes, ctx.npus, orders)
        return _Space([ctx], cands, len(cands), 0, Counter(), {},
                      canonical_json([spec.base]))
    sweep = spec.sweep
    points = sweep.points()
    if len(points) > spec.max_candidates:
        raise SearchError(f"sweep: {len(points):,} points exceed limits.max_candidates")
    contexts: dict[str, int] = {}
    ctx_list: list[Context] = []
    rows: list[dict[str, Any]] = []
    kept: dict[int, SweepPoint] = {}
    invalid, reasons = 0, Counter()
    orders: list[str] = []
    for point in points:
        screened, reason = sweep.screen(point)
        if reason:
            invalid += 1
            reasons[reason] += 1
            continue
        scn = screened.scenario
        par = dict((scn.get("workload") or {}).get("parallel") or {})
        if (scn.get("workload") or {}).get("kind") != "llm_training":
            raise SearchError(f"sweep {sweep.name}: the search needs llm_training points")
        rest = copy.deepcopy(scn)
        rest.pop("name", None)
        for key in _STRATEGY_KEYS:
            rest["workload"]["parallel"].pop(key, None)
        ckey = canonical_json(rest)
        if ckey not in contexts:
            label = ", ".join(f"{k}={v}" for k, v in point.values.items()
                              if k.rsplit(".", 1)[-1] not in _STRATEGY_KEYS) or "base"
            contexts[ckey] = len(ctx_list)
            ctx_list.append(_context(scn, label, spec.memory_limit, spec.memory_limit_set))
        order = par.get("order", "tp,cp,ep,pp,dp")
        if order not in orders:
            orders.append(order)
        row = {"tp": par.get("tp", 1), "pp": par.get("pp", 1), "dp": par.get("dp", 1),
               "cp": par.get("cp", 1), "ep": par.get("ep", 1), "sp": int(bool(par.get("sp"))),
               "zero": par.get("zero", 0), "micro_batch": par.get("micro_batch", 1),
               "recompute": RECOMPUTE.index(par.get("recompute", "none"))
               if par.get("recompute", "none") in RECOMPUTE else -1,
               "schedule": SCHEDULES.index(par.get("schedule", "1f1b"))
               if par.get("schedule", "1f1b") in SCHEDULES else -1,
               "virtual_stages": par.get("virtual_stages", 1), "order": orders.index(order),
               "ctx": contexts[ckey]}
        if any(not isinstance(v, int) or isinstance(v, bool) or v < 0 for v in row.values()):
            invalid += 1
            reasons[f"strategy values {short_values(row)} are not whole numbers"] += 1
            continue
        kept[len(rows)] = screened
        rows.append(row)
    cols = {c: np.asarray([r[c] for r in rows], dtype=np.int64) for c in COLUMNS}
    return _Space(ctx_list, Candidates(cols, orders or ["tp,cp,ep,pp,dp"]), len(points),
                  invalid, reasons, kept)


def short_values(row: dict[str, Any]) -> str:
    """A row's values for a message."""
    return ", ".join(f"{k}={v}" for k, v in row.items())


def _point(space: _Space, ctx: Context, row: int, strategy: dict[str, Any],
           free: list[str]) -> SweepPoint:
    """The sweep point of a candidate (the sweep's own point on the sweep route)."""
    if row in space.points:
        return space.points[row]
    scenario = copy.deepcopy(ctx.scenario)
    values = {}
    for key in free:
        set_path(scenario, f"workload.parallel.{key}", strategy[key])
        values[f"workload.parallel.{key}"] = strategy[key]
    scenario["name"] = f"search#{row}"
    return SweepPoint(row, point_key(values, space.fingerprint), values, scenario)


# ---------------------------------------------------------------------- the search
class _LocalSession:
    """The local executor's process pool kept open for a whole search: the branch and bound
    runs many small batches one after the other, and a new pool per batch would pay the
    workers' start-up (importing des) every time. Same workers and run function
    (:func:`des.app.sweep_exec.run_point`) as :class:`~des.app.sweep_exec.LocalExecutor`."""

    name = "local"

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.pool: Any = None

    def __enter__(self) -> _LocalSession:
        from concurrent.futures import ProcessPoolExecutor

        from des.app.sweep_exec import _worker_signals

        self.pool = ProcessPoolExecutor(max_workers=self.workers, initializer=_worker_signals)
        return self

    def __exit__(self, *exc: object) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    def run(self, points: list[SweepPoint], backend: str, constraints: list[str]
            ) -> Iterator[PointResult]:
        """Results as they finish."""
        from concurrent.futures import as_completed

        from des.app.sweep_exec import run_point

        futures = [self.pool.submit(run_point, p, backend, constraints) for p in points]
        for future in as_completed(futures):
            yield future.result()


@contextlib.contextmanager
def executor_session(executor: Any) -> Iterator[Any]:
    """``executor`` ready for many batches: a local pool kept open, a Dask client kept
    connected (its own session), anything else as it is."""
    from des.app.sweep_exec import LocalExecutor

    if isinstance(executor, LocalExecutor) and executor.workers > 1:
        with _LocalSession(executor.workers) as session:
            yield session
    elif hasattr(executor, "__enter__") and getattr(executor, "_active", None) is None \
            and not isinstance(executor, _LocalSession):
        with executor:
            yield executor
    else:
        yield executor


def _run_batch(executor: Any, points: list[SweepPoint], backend: str) -> dict[str, PointResult]:
    return {r.key: r for r in executor.run(points, backend, [])}


@dataclass
class Prescreen:
    """What happens to a search space before any backend runs: each row's prune reason ("" if
    it divides), peak memory, whether it survives (divides, fits, and stands for its same-graph
    class), and for survivors the chain and full lower bounds (ns); the counts per stage and the
    wall seconds of each."""

    reasons: np.ndarray
    memory: np.ndarray
    keep: np.ndarray
    chain: np.ndarray
    bound: np.ndarray
    counts: dict[str, int]
    wall: dict[str, float]


def prescreen(spec: SearchSpec) -> tuple[_Space, Prescreen]:
    """Enumerate ``spec``'s space, prune it (divisibility, memory, same graph) and bound the
    survivors: every step before the backends, as :func:`run_search` and ``bench/search.py``
    both take it."""
    clock = time.perf_counter()
    wall: dict[str, float] = {}
    space = build_space(spec)
    cands = space.cands
    n = len(cands)
    wall["enumerate"] = time.perf_counter() - clock
    t0 = time.perf_counter()
    reasons = np.full(n, "", dtype=object)
    memory = np.full(n, np.nan)
    keep = np.zeros(n, dtype=bool)
    chain = np.full(n, np.nan)
    bound = np.full(n, np.nan)
    ctx_col = cands.cols["ctx"]
    for ci, ctx in enumerate(space.contexts):
        rows = np.flatnonzero(ctx_col == ci)
        r, m, k = prune(cands.take(rows), ctx.model, ctx.npus, ctx.seq, ctx.global_batch,
                        ctx.memory_limit, dtype_bytes=ctx.dtype_bytes,
                        grad_bytes=ctx.grad_bytes, flash=ctx.flash)
        reasons[rows], memory[rows], keep[rows] = r, m, k
    pruned_memory = int(((reasons == "") & ~keep).sum())
    # rows that build the same graph run once: the one needing the least memory stands in
    equivalent = 0
    if keep.any():
        rows = np.flatnonzero(keep)
        klass = same_graph(cands.take(rows))
        order = np.lexsort((rows, memory[rows], klass))
        first = np.ones(len(order), dtype=bool)
        first[1:] = klass[order][1:] != klass[order][:-1]
        dropped = rows[order[~first]]
        keep[dropped] = False
        equivalent = len(dropped)
    wall["prune"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    for ci, ctx in enumerate(space.contexts):
        rows = np.flatnonzero((ctx_col == ci) & keep)
        if not len(rows):
            continue
        c, b = lower_bound(cands.take(rows), ctx.model, ctx.hardware,
                           injection_bandwidth(ctx.topology), ctx.seq, ctx.global_batch,
                           dtype_bytes=ctx.dtype_bytes, grad_bytes=ctx.grad_bytes,
                           flash=ctx.flash, cut=ctx.cut, dp_overlap=ctx.dp_overlap,
                           tp_grad_overlap=ctx.tp_grad_overlap)
        chain[rows], bound[rows] = c, b
    wall["prescreen"] = time.perf_counter() - t0
    counts = {"enumerated": space.enumerated, "pruned_constraints": space.invalid,
              "pruned_divisibility": int((reasons != "").sum()),
              "pruned_memory": pruned_memory, "pruned_equivalent": equivalent,
              "survivors": int(keep.sum())}
    return space, Prescreen(reasons, memory, keep, chain, bound, counts, wall)


def run_search(spec: SearchSpec, executor: Any = None,
               progress: Callable[[SearchProgress], None] | None = None, *,
               beat: float = math.inf) -> SearchResult:
    """Search ``spec``'s space (see the module doc) on ``executor`` (default: a local process
    pool). ``progress`` gets a :class:`SearchProgress` as backends finish batches. With
    ``beat`` (seconds), only strategies that could be faster are looked at: the result has no
    best when none is (the hardware search uses this to skip dominated designs)."""
    from des.app.sweep_exec import LocalExecutor

    executor = executor or LocalExecutor()
    clock = time.perf_counter()
    space, screen = prescreen(spec)
    keep, bound, memory = screen.keep, screen.bound, screen.memory
    counts, wall = screen.counts, screen.wall
    by_rule = Counter(str(x) for x in screen.reasons[screen.reasons != ""])
    free = list(spec.free) + (["dp"] if spec.sweep is None and "dp" not in spec.free else [])
    t0 = time.perf_counter()
    with executor_session(executor) as session:
        found = _branch_and_bound(spec, space, keep, bound, memory, free, session, progress,
                                  beat)
    wall["search"] = time.perf_counter() - t0
    confirmed, analysed, best, stop, proven, floor = found
    counts["analysed"] = len(analysed)
    counts["confirmed"] = sum(1 for c in confirmed if c.status == "confirmed")
    counts["confirm_errors"] = sum(1 for c in confirmed if c.status == "error")
    counts["bounded_out"] = counts["survivors"] - counts["analysed"]
    gaps = [c.confirmed_s / c.analytical_s - 1 for c in confirmed
            if c.confirmed_s and c.analytical_s]
    over = [c for c in confirmed if c.confirmed_s and c.analytical_s
            and c.analytical_s > c.confirmed_s * (1 + 1e-9)]
    bound_gap = {"min": min(gaps) if gaps else None, "max": max(gaps) if gaps else None,
                 "mean": sum(gaps) / len(gaps) if gaps else None,
                 "best": (best.confirmed_s / best.analytical_s - 1)
                 if best and best.analytical_s else None,
                 "prescreen_best": (best.confirmed_s / best.prescreen_s - 1)
                 if best and best.prescreen_s else None,
                 "analytical_above_contended": len(over),
                 "worst_excess": max((c.analytical_s / c.confirmed_s - 1 for c in over),
                                     default=0.0)}
    ok = sorted((c for c in confirmed if c.status == "confirmed"), key=lambda c: c.confirmed_s)
    pending = sorted((c for c in analysed if c.status == "analysed"),
                     key=lambda c: c.analytical_s or math.inf)
    runners = ok[1:] + pending
    wall["total"] = time.perf_counter() - clock
    limits_by_ctx = {c.label: c.memory_limit for c in space.contexts}
    return SearchResult(spec.name, counts, dict(by_rule), best, ok, runners, stop, proven,
                        spec.confirm.margin, limits_by_ctx, wall, bound_gap,
                        min_bound_s=float(np.nanmin(bound[keep])) * 1e-9 if keep.any()
                        else None, floor_s=floor)


def _branch_and_bound(spec: SearchSpec, space: _Space, keep: np.ndarray, bound: np.ndarray,
                      memory: np.ndarray, free: list[str], executor: Any,
                      progress: Callable[[SearchProgress], None] | None,
                      beat: float = math.inf):
    """The lazy branch and bound of the module doc."""
    cands = space.cands
    margin = spec.confirm.margin
    workers = getattr(executor, "workers", None) or 1
    confirm_batch = spec.confirm.batch or workers
    analyse_batch = max(8, 4 * workers)
    rows = np.flatnonzero(keep)
    heap: list[tuple[float, int, int]] = [(float(bound[r]) * 1e-9, 0, int(r)) for r in rows]
    heapq.heapify(heap)
    made: dict[int, Candidate] = {}
    best: Candidate | None = None
    best_s = beat
    confirmed: list[Candidate] = []
    analysed: list[Candidate] = []
    stop, proven = "exhausted", True

    def candidate(row: int) -> Candidate:
        if row not in made:
            ctx = space.contexts[int(cands.cols["ctx"][row])]
            strategy = cands.row(row)
            point = _point(space, ctx, row, strategy, free)
            made[row] = Candidate(row, ctx.label, strategy, point.values,
                                  float(memory[row]), float(bound[row]) * 1e-9, point=point)
        return made[row]

    analyse_max = spec.confirm.analyse_max
    skipped = 0
    while heap and heap[0][0] <= best_s:
        state = heap[0][1]
        if state == 0 and analyse_max is not None and len(analysed) >= analyse_max:
            heapq.heappop(heap)  # could be faster, but the analytical budget is spent
            skipped += 1
            continue
        if state == 1 and len(confirmed) >= spec.confirm.max:
            stop, proven = f"confirm.max ({spec.confirm.max}) contended runs reached", False
            break
        size = analyse_batch if state == 0 else confirm_batch
        if state == 0 and analyse_max is not None:
            size = min(size, analyse_max - len(analysed))
        batch, other = [], []
        while heap and len(batch) < size and heap[0][0] <= best_s:
            item = heapq.heappop(heap)
            (batch if item[1] == state else other).append(item)
        for item in other:
            heapq.heappush(heap, item)
        if state == 1:
            batch = batch[:max(1, spec.confirm.max - len(confirmed))]
        todo = [candidate(r) for _, _, r in batch]
        backend = "analytical" if state == 0 else "simpy"
        results = _run_batch(executor, [c.point for c in todo], backend)
        for key_s, _, row in batch:
            cand = made[row]
            res = results.get(cand.point.key)
            if res is None or res.status != "ok":
                cand.status, cand.reason = "error", res.reason if res else "no result"
                if state == 1:
                    confirmed.append(cand)
                else:
                    analysed.append(cand)
                continue
            time_s = float(res.metrics["iteration_s"])
            if state == 0:
                cand.analytical_s, cand.status = time_s, "analysed"
                analysed.append(cand)
                heapq.heappush(heap, (max(key_s, time_s / (1 + margin)), 1, row))
            else:
                cand.confirmed_s, cand.status, cand.metrics = time_s, "confirmed", res.metrics
                confirmed.append(cand)
                if time_s < best_s or (time_s == best_s and best is not None and row < best.id):
                    best, best_s = cand, time_s
        _LOG.info("%s batch of %d done: %d analysed, %d confirmed, best %s, lowest open key %s",
                  backend, len(batch), len(analysed), len(confirmed),
                  f"{best.confirmed_s:.4f} s" if best else "-",
                  f"{heap[0][0]:.4f} s" if heap else "-")
        if progress:
            progress(SearchProgress(len(analysed), len(confirmed), len(rows),
                                    best.confirmed_s if best else None,
                                    heap[0][0] if heap else None))
    if skipped:
        stop, proven = (f"confirm.analyse_max ({analyse_max}) analytical runs reached; "
                        f"{skipped} candidates whose bound is below the best were never "
                        "analysed"), False
    elif stop == "exhausted" and heap:
        stop = "bound: every remaining candidate's lower bound exceeds the best confirmed time"
    floor = min([heap[0][0]] if heap else [math.inf])
    floor = min([floor, *(c.confirmed_s for c in confirmed if c.confirmed_s is not None)])
    return confirmed, analysed, best, stop, proven, floor if math.isfinite(floor) else None


def explain(candidate: Candidate) -> dict[str, Any]:
    """Where the winner's time goes: the LLM report of a contended run of its point
    (iteration time, MFU, memory, and the breakdown of the slowest rank: compute by phase,
    exposed communication per dimension, idle = pipeline bubble and waiting)."""
    from des.app.config import scenario_from_dict
    from des.app.workload_kinds import evaluate
    from des.sim.backends import get_backend

    point = candidate.point
    assert point is not None
    scenario = scenario_from_dict(copy.deepcopy(point.scenario), point.scenario["name"])
    result = get_backend("simpy").run(scenario.topology, scenario.graph,
                                      hardware=scenario.hardware, options=scenario.options)
    report = evaluate(result, scenario).report or {}
    keys = ("iteration_s", "tokens_per_s", "mfu", "memory_peak_bytes", "breakdown_s",
            "breakdown_rank", "approximations")
    return {k: report[k] for k in keys if k in report}
