"""Hardware search (DeepFlow's ``GD_search``, gradient-free): the Pareto front of iteration time
against cost over hardware parameters, for a fixed strategy or jointly with the strategy.

A hardware search spec::

    name: hw_llama7b_superpod
    base: {topology: {kind: superpod, ...}, hardware: {...}, workload: {...}}
    free: {tp: [1, 2, 4, 8]}          # optional: search the strategy jointly (as des search)
    hardware:
      costs: gpu_cluster_2025          # configs/costs/<name>.yaml, a file, or a mapping
      budget: 2.5e6                    # optional: the cluster's most cost, in the currency
      params:                          # dotted scenario keys -> values and what prices them
        topology.bandwidth: {values: [450 GB/s, 900 GB/s], cost: link.scale_up}
        topology.nic_bandwidth: {values: [25 GB/s, 50 GB/s], cost: link.scale_out}
        hardware.hbm_bandwidth: {values: [2 TB/s, 3.35 TB/s], cost: hbm_bandwidth}
        hardware.hbm_capacity: {values: [40 GiB, 80 GiB], cost: hbm_capacity}
        hardware.peak_flops.bf16: {values: [312 TFLOP/s, 989 TFLOP/s], cost: peak_flops}
        topology.gpus_per_node: {values: [4, 8]}      # no cost entry: free of charge
      derive: {topology.nodes: "16 // gpus_per_node"} # the sweep interpreter's expressions
      samples: 24                      # optional: a seeded random sample of the grid
      seed: 0

A design's cost is ``NPUs x (GPU price + sum of price x quantity x per_gpu)`` over its priced
parameters (:func:`design_cost`; the GPU price is ``items.gpu.prices.base``, or the price of
the hardware preset the design names). Its time is the best strategy's iteration time
(:func:`des.app.search.run_search`: one candidate for a fixed strategy).

**The search is an exact multi-fidelity branch and bound over the front.** Designs within the
budget are taken cheapest first; the front so far is the running minimum of confirmed time. A
design whose every strategy's lower bound (closed form, then analytical) is not below the best
confirmed time of a cheaper-or-equal design is dominated and is never simulated with
contention (the strategy search is told to ``beat`` that time); otherwise its best strategy is
confirmed with the contended engine. So every design off the front is dominated by one on it,
simulated or proven by a bound, and the front is that of the contended times (with the
strategy search's own ``margin`` caveat for the analytical bound).
"""

from __future__ import annotations

import copy
import itertools
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from des.app.search_spec import FREE_AXES, Confirm, SearchError, SearchSpec, _values
from des.app.sweep import set_path
from des.core import units
from des.core.schema import Section, nonneg_number, positive_int, show
from des.core.yaml_safe import YamlError, load_yaml

#: How each cost unit turns a parameter value (with its unit) into a quantity.
UNITS = {
    "GB/s": lambda v, w: units.parse_bandwidth(v, w),           # bytes/ns = GB/s
    "TB/s": lambda v, w: units.parse_bandwidth(v, w) / 1e3,
    "GB": lambda v, w: units.parse_size(v, w) / 1e9,
    "TFLOP/s": lambda v, w: units.parse_flops(v, w) / 1e3,     # FLOP/ns -> TFLOP/s
    "GPU": lambda v, w: 1.0,
}


@dataclass
class CostItem:
    """One priced part: ``price`` per ``unit`` per GPU (or ``prices`` by GPU class)."""

    name: str
    unit: str
    price: float = 0.0
    prices: dict[str, float] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)
    assumption: str = ""


@dataclass
class CostModel:
    """A cost model file (``configs/costs/*.yaml``)."""

    name: str
    currency: str
    items: dict[str, CostItem]


def _item(value: Any, where: str, name: str) -> CostItem:
    sec = Section(value, where, keys=("price", "prices", "unit", "sources", "assumption"),
                  error=SearchError)
    unit = sec.choice("unit", list(UNITS), what="unit")
    price = sec.get("price", nonneg_number, default=0.0)
    prices = sec.get("prices", default={})
    if not isinstance(prices, dict) or not all(
            isinstance(p, int | float) and not isinstance(p, bool) and p >= 0
            for p in prices.values()):
        raise sec.fail("prices", f"must map GPU classes to prices >= 0, got {show(prices)}")
    sources = sec.get("sources", default=[])
    assumption = sec.get("assumption", default="")
    if not sources and not assumption:
        raise sec.fail("", "every price needs sources or an assumption (say it is one)")
    return CostItem(name, unit, float(price), {k: float(v) for k, v in prices.items()},
                    list(sources), str(assumption))


def load_costs(value: Any, base_dir: Path | None = None) -> CostModel:
    """A cost model: a mapping, a file, or a name under ``configs/costs``."""
    from des.core.paths import bundled, read_file_or_bundled

    where = "hardware.costs"
    if isinstance(value, str):
        found = read_file_or_bundled("costs", value, base_dir)
        if found is None:
            raise SearchError(f"{where}: {value!r} is no file and no bundled cost model; "
                              f"bundled: {', '.join(sorted(bundled('costs'))) or 'none'}")
        text, path = found
        try:
            value = load_yaml(text, str(path))
        except YamlError as err:
            raise SearchError(str(err)) from None
    sec = Section(value, where, keys=("name", "currency", "description", "items"),
                  error=SearchError)
    name = str(sec.get("name", default="costs"))
    currency = str(sec.get("currency", default="USD"))
    sec.get("description", default="")
    raw = sec.get("items")
    if not isinstance(raw, dict) or not raw:
        raise sec.fail("items", f"must map part names to prices, got {show(raw)}")
    items = {k: _item(v, f"{where}.items.{k}", k) for k, v in raw.items()}
    sec.finish()
    return CostModel(name, currency, items)


@dataclass
class HwParam:
    """A hardware parameter: a dotted scenario key, its values, the cost item pricing it."""

    key: str
    values: list[Any]
    cost: str | None = None
    per_gpu: float = 1.0


@dataclass
class HwSpec:
    """A parsed hardware search spec (see the module doc)."""

    name: str
    base: dict[str, Any]
    params: list[HwParam]
    costs: CostModel
    free: dict[str, Any] = field(default_factory=dict)
    derive: dict[str, str] = field(default_factory=dict)
    budget: float | None = None
    samples: int | None = None
    seed: int = 0
    memory_limit: float | None = None
    memory_limit_set: bool = False
    confirm: Confirm = field(default_factory=Confirm)
    kind: str = "hardware"


def hw_spec_from_dict(data: Any, default_name: str = "hw_search", base_dir: Path | None = None
                      ) -> HwSpec:
    """Validate a hardware search spec (errors are :class:`SearchError` naming the key)."""
    from des.app.search_spec import _confirm
    from des.app.sweep_expr import check_expression
    from des.app.sweep_load import load_scenario_data
    from des.app.sweep_types import SweepError

    sec = Section(data, "", label="hardware search spec",
                  keys=("name", "description", "base", "free", "hardware", "memory_limit",
                        "confirm"), error=SearchError)
    name = str(sec.get("name", default=default_name))
    sec.get("description", default="")
    raw = sec.get("base")
    try:
        base = load_scenario_data(raw, base_dir) if isinstance(raw, str) else raw
    except SweepError as err:
        raise SearchError(f"base: {err}") from None
    if not isinstance(base, dict) or (base.get("workload") or {}).get("kind") != "llm_training":
        raise sec.fail("base", "must be an llm_training scenario (mapping, file or bundled)")
    free = sec.get("free", default={}) or {}
    if not isinstance(free, dict):
        raise sec.fail("free", f"must map strategy axes to values, got {show(free)}")
    for axis in free:
        if axis not in FREE_AXES:
            raise SearchError(f"free.{axis}: unknown strategy axis; expected one of "
                              f"{', '.join(FREE_AXES)}")
    free = {axis: _values(axis, v, f"free.{axis}") for axis, v in free.items()}
    hw = sec.section("hardware", required=True)
    hw.known += ["costs", "budget", "params", "derive", "samples", "seed"]
    costs = load_costs(hw.get("costs"), base_dir)
    budget = hw.get("budget", nonneg_number, default=None)
    samples = hw.get("samples", positive_int, default=None)
    seed = hw.get("seed", default=0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise hw.fail("seed", f"must be a whole number >= 0, got {show(seed)}")
    raw_params = hw.get("params")
    if not isinstance(raw_params, dict) or not raw_params:
        raise hw.fail("params", "must map dotted scenario keys to {values: [...], cost: item}")
    params = []
    for key, spec in raw_params.items():
        where = f"hardware.params.{key}"
        if not isinstance(key, str) or not all(p.strip() for p in key.split(".")):
            raise SearchError(f"{where}: a parameter is a dotted scenario key")
        psec = Section(spec, where, keys=("values", "cost", "per_gpu"), error=SearchError)
        values = psec.get("values")
        if not isinstance(values, list) or not values:
            raise psec.fail("values", f"must be a non-empty list, got {show(values)}")
        cost = psec.get("cost", default=None)
        if cost is not None and cost not in costs.items:
            raise psec.fail("cost", f"{cost!r} is not an item of the cost model; items: "
                                    f"{', '.join(costs.items)}")
        per_gpu = psec.get("per_gpu", nonneg_number, default=1.0)
        param = HwParam(key, values, cost, float(per_gpu))
        for i, value in enumerate(values):  # every value must price
            _quantity(param, costs, value, f"{where}.values[{i}]")
        params.append(param)
    derive = hw.get("derive", default={}) or {}
    if not isinstance(derive, dict):
        raise hw.fail("derive", f"must map scenario keys to expressions, got {show(derive)}")
    for key, text in derive.items():
        check_expression(text, f"hardware.derive.{key}")
    hw.finish()
    spec = HwSpec(name, base, params, costs, free, dict(derive), budget, samples, seed)
    if "memory_limit" in sec.data:
        raw = sec.get("memory_limit")
        spec.memory_limit_set = True
        spec.memory_limit = None if raw in (None, "none") else units.parse_size(raw,
                                                                               "memory_limit")
    spec.confirm = sec.get("confirm", _confirm, default=Confirm())
    sec.finish()
    if "gpu" not in costs.items:
        raise SearchError("hardware.costs.items.gpu: the cost model needs the GPU's price")
    return spec


def _quantity(param: HwParam, costs: CostModel, value: Any, where: str) -> float:
    """What ``value`` of ``param`` adds to one GPU's price."""
    if param.cost is None:
        return 0.0
    item = costs.items[param.cost]
    if item.prices:
        if not isinstance(value, str) or value not in item.prices:
            raise SearchError(f"{where}: {show(value)} has no price under "
                              f"items.{param.cost}.prices ({', '.join(item.prices)})")
        return item.prices[value] * param.per_gpu
    try:
        return item.price * UNITS[item.unit](value, where) * param.per_gpu
    except ValueError as err:
        raise SearchError(f"{where}: {err}") from None


def design_cost(spec: HwSpec, design: dict[str, Any], npus: int) -> float:
    """The cluster's cost: ``npus x (GPU price + priced parameters)``. The GPU price is the
    ``gpu`` item's ``base`` price, or its price for the hardware preset the scenario names
    when no parameter prices the GPU class."""
    gpu = spec.costs.items["gpu"]
    per = sum(_quantity(p, spec.costs, design[p.key], p.key) for p in spec.params)
    if not any(p.cost == "gpu" for p in spec.params):
        hw = spec.base.get("hardware")
        per += gpu.prices.get(hw, gpu.prices.get("base", gpu.price)) if isinstance(hw, str) \
            else gpu.prices.get("base", gpu.price)
    return npus * per


@dataclass
class Design:
    """One hardware design: its parameter values, cost, and what the search found."""

    values: dict[str, Any]
    cost: float
    time_s: float | None = None
    bound_s: float | None = None
    status: str = ""  # front, dominated, bounded (dominated by a bound), over_budget, error
    strategy: dict[str, Any] | None = None
    dominated_by: int | None = None
    reason: str = ""
    confirmed: int = 0
    analysed: int = 0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {"values": self.values, "cost": self.cost, "time_s": self.time_s,
                "bound_s": self.bound_s, "status": self.status, "strategy": self.strategy,
                "dominated_by": self.dominated_by, "reason": self.reason,
                "confirmed": self.confirmed, "analysed": self.analysed}


@dataclass
class HwResult:
    """The designs looked at and the Pareto front of time vs cost (cheapest first)."""

    name: str
    currency: str
    evaluated: list[Design]
    front: list[Design]
    budget: float | None
    wall_s: float
    method: str
    counts: dict[str, int]

    @property
    def budget_text(self) -> str:
        """The budget for messages."""
        return "none" if self.budget is None else f"{self.budget:,.0f} {self.currency}"

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {"name": self.name, "currency": self.currency, "budget": self.budget,
                "method": self.method, "counts": self.counts, "wall_s": self.wall_s,
                "front": [d.as_dict() for d in self.front],
                "designs": [d.as_dict() for d in self.evaluated]}

    def rows(self) -> list[dict[str, Any]]:
        """Flat CSV rows, one per design."""
        return [{**d.values, "cost": d.cost, "time_s": d.time_s, "bound_s": d.bound_s,
                 "status": d.status,
                 **({f"strategy.{k}": v for k, v in d.strategy.items()} if d.strategy else {})}
                for d in self.evaluated]


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points (cost, time) no other point dominates (cheaper-or-equal *and*
    faster-or-equal, better in one), cheapest first; of equal points the first is kept."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], points[i][1], i))
    front, best = [], math.inf
    for i in order:
        if points[i][1] < best:
            front.append(i)
            best = points[i][1]
    return front


def _designs(spec: HwSpec) -> tuple[list[dict[str, Any]], str]:
    grid = [dict(zip([p.key for p in spec.params], combo, strict=True))
            for combo in itertools.product(*(p.values for p in spec.params))]
    if spec.samples is None or spec.samples >= len(grid):
        return grid, f"grid of {len(grid)}"
    import numpy as np

    rng = np.random.default_rng(spec.seed)
    picked = sorted(rng.choice(len(grid), size=spec.samples, replace=False).tolist())
    return [grid[i] for i in picked], f"random {spec.samples} of {len(grid)} (seed {spec.seed})"


def _scenario(spec: HwSpec, values: dict[str, Any]) -> dict[str, Any]:
    from des.app.sweep_expr import check_expression, evaluate, scenario_names

    scenario = copy.deepcopy(spec.base)
    for key, value in values.items():
        set_path(scenario, key, value)
    if spec.derive:
        names = scenario_names(scenario, 0)
        for key, text in spec.derive.items():
            set_path(scenario, key, evaluate(check_expression(text, f"derive.{key}"), names))
    return scenario


def _front_search(spec: HwSpec, live: list[Design], designs: list[Design],
                  counts: dict[str, int], executor: Any, run_search: Any) -> int | None:
    """Designs cheapest first, each told to beat the best time of the cheaper ones."""
    best_time, best_at = math.inf, None
    for d in live:
        sspec = SearchSpec(f"{spec.name}@{designs.index(d)}", base=d._scenario,  # type: ignore
                           free=dict(spec.free), memory_limit=spec.memory_limit,
                           memory_limit_set=spec.memory_limit_set,
                           confirm=copy.copy(spec.confirm))
        try:
            found = run_search(sspec, executor, beat=best_time)
        except (SearchError, ValueError) as err:
            d.status, d.reason = "error", str(err)
            counts["errors"] += 1
            continue
        # the bound the design was judged by: its best strategy's lowest closed-form bound
        # when it was simulated, else what was left when its search stopped
        d.bound_s = found.min_bound_s if found.best is not None else found.floor_s
        d.confirmed, d.analysed = found.counts["confirmed"], found.counts["analysed"]
        counts["simulated"] += d.confirmed
        if found.best is not None:
            d.time_s, d.strategy = found.best.confirmed_s, found.best.strategy
            best_time, best_at = d.time_s, designs.index(d)
        elif found.counts["survivors"] == 0:
            d.status, d.reason = "error", "no strategy fits and divides"
            counts["errors"] += 1
        else:
            d.status, d.dominated_by = "bounded", best_at
            d.reason = ("its strategies' contended times are no faster than a cheaper design's"
                        if d.confirmed else "every strategy's lower bound is at least a cheaper "
                        "design's time")
            counts["bounded"] += 1
    return best_at


def run_hw_search(spec: HwSpec, executor: Any = None) -> HwResult:
    """The Pareto front of ``spec`` (see the module doc)."""
    from des.app.search import _context, executor_session, run_search
    from des.app.sweep_exec import LocalExecutor

    start = time.perf_counter()
    raw, method = _designs(spec)
    designs: list[Design] = []
    for values in raw:
        try:
            scenario = _scenario(spec, values)
            ctx = _context(scenario, "design", spec.memory_limit, spec.memory_limit_set)
            cost = design_cost(spec, values, ctx.npus)
        except (SearchError, ValueError) as err:
            designs.append(Design(values, math.nan, status="error", reason=str(err)))
            continue
        design = Design(values, cost)
        design._scenario = scenario  # type: ignore[attr-defined]
        designs.append(design)
    counts = {"designs": len(designs), "over_budget": 0, "bounded": 0, "simulated": 0,
              "errors": sum(1 for d in designs if d.status == "error")}
    live = [d for d in designs if d.status != "error"]
    for d in live:
        if spec.budget is not None and d.cost > spec.budget:
            d.status = "over_budget"
            counts["over_budget"] += 1
    live = sorted((d for d in live if not d.status), key=lambda d: (d.cost, designs.index(d)))
    with executor_session(executor or LocalExecutor()) as session:
        _front_search(spec, live, designs, counts, session, run_search)
    timed = [d for d in live if d.time_s is not None]
    on = pareto_front([(d.cost, d.time_s) for d in timed])  # type: ignore[misc]
    front = [timed[i] for i in on]
    for i, d in enumerate(timed):
        if i in on:
            d.status = "front"
        else:
            d.status = "dominated"
            d.dominated_by = designs.index(next(f for f in front if f.cost <= d.cost
                                                and f.time_s <= d.time_s))  # type: ignore
    for d in designs:
        d.__dict__.pop("_scenario", None)
    counts["front"] = len(front)
    return HwResult(spec.name, spec.costs.currency, designs, front, spec.budget,
                    time.perf_counter() - start, method, counts)


def plot_pareto(result: HwResult, path: str | os.PathLike[str]) -> Path:
    """A PNG of every design's time against its cost, the front joined as a staircase."""
    from des.app.plots import PlotError, _pyplot

    plt = _pyplot()
    timed = [d for d in result.evaluated if d.time_s is not None]
    if not timed:
        raise PlotError("hardware search: no design has a time to plot")
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    off = [d for d in timed if d.status != "front"]
    ax.scatter([d.cost for d in off], [d.time_s for d in off], s=22, color="0.6",
               label="dominated (simulated)")
    bounded = [d for d in result.evaluated if d.status == "bounded" and d.bound_s is not None]
    if bounded:
        ax.scatter([d.cost for d in bounded], [d.bound_s for d in bounded], s=22,
                   marker="^", facecolors="none", edgecolors="tab:orange",
                   label="dominated, not simulated (its lower bound shown)")
    front = sorted(result.front, key=lambda d: d.cost)
    ax.step([d.cost for d in front], [d.time_s for d in front], where="post",
            color="tab:blue", lw=1.5)
    ax.scatter([d.cost for d in front], [d.time_s for d in front], s=40, color="tab:blue",
               zorder=3, label="Pareto front")
    if result.budget is not None:
        ax.axvline(result.budget, color="tab:red", ls="--", lw=1, label="budget")
    ax.set_xlabel(f"cluster cost ({result.currency})")
    ax.set_ylabel("iteration time (s)")
    ax.set_title(f"{result.name}: time vs cost ({result.method})")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
