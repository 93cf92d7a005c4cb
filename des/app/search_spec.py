"""A search spec: what ``des search`` looks through, read and validated key by key.

Either a base scenario and the strategy axes left free::

    name: llama70b_1024
    base: llama70b_torus3d_64          # a scenario mapping, file or bundled name (llm_training)
    free:                              # strategy axes: a list of values, or auto
      tp: auto                         # auto: every divisor of the NPUs (tp, pp, cp, ep, dp)
      pp: auto
      cp: [1, 2]
      sp: [false, true]
      zero: [0, 1, 3]
      micro_batch: [1, 2, 4]           # auto: every divisor of global_batch
      recompute: [none, selective, full]
      schedule: [1f1b, interleaved]
      virtual_stages: [1, 2, 4]
      order: ["tp,cp,ep,pp,dp", "tp,pp,cp,ep,dp"]
      # dp, when not listed, is NPUs / (tp x pp x cp)
    memory_limit: 80 GiB               # default: the GPU's HBM capacity
    confirm: {margin: 0.0, max: 64, batch: 2}

or a sweep file's space (``sweep: stage_lab_llama70b``: its axes, groups, derived values and
constraints; its ``memory_limit`` unless one is given here). ``confirm.margin`` is how far the
analytical backend may exceed the contended time (0: it is trusted as a lower bound);
``confirm.max`` caps the contended runs and ``confirm.analyse_max`` the analytical ones (a
search stopped by either says its best is not proven); ``confirm.batch`` runs that many at
once (default: the executor's workers). ``limits.max_candidates`` bounds the enumeration
(default 10^7).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from des.app.sweep_types import SweepError
from des.core.schema import (
    SchemaError,
    Section,
    nonneg_number,
    positive_int,
    short,
    show,
)
from des.core.yaml_safe import YamlError, is_file, load_yaml, read_text
from workloads.parallel import RECOMPUTE, SCHEDULES

if TYPE_CHECKING:  # hw_search imports this module; it is imported lazily below
    from des.app.hw_search import HwSpec

#: Strategy axes a spec may leave free.
FREE_AXES = ("tp", "pp", "dp", "cp", "ep", "sp", "zero", "micro_batch", "recompute",
             "schedule", "virtual_stages", "order")
_KEYS = ("name", "description", "base", "sweep", "free", "memory_limit", "confirm", "limits")
DEFAULT_MAX_CANDIDATES = 10_000_000


class SearchError(SchemaError):
    """A search spec that cannot be used; names the key and what is allowed."""


@dataclass
class Confirm:
    """How the contended engine confirms candidates (see the module doc)."""

    margin: float = 0.0
    max: int = 64
    batch: int | None = None
    analyse_max: int | None = None


@dataclass
class SearchSpec:
    """A parsed search spec: ``base`` + ``free`` axes, or a ``sweep``'s space."""

    name: str
    base: dict[str, Any] | None = None
    free: dict[str, Any] = field(default_factory=dict)
    sweep: Any = None  # a des.app.sweep.Sweep
    memory_limit: float | None = None
    memory_limit_set: bool = False
    confirm: Confirm = field(default_factory=Confirm)
    max_candidates: int = DEFAULT_MAX_CANDIDATES


def _values(axis: str, value: Any, where: str) -> Any:
    if value == "auto" and axis in ("tp", "pp", "dp", "cp", "ep", "micro_batch"):
        return "auto"
    if not isinstance(value, list) or not value:
        raise SearchError(f"{where}: must be a non-empty list of values"
                          + (" or auto" if axis in ("tp", "pp", "dp", "cp", "ep",
                                                    "micro_batch") else "")
                          + f", got {show(value)}")
    for i, item in enumerate(value):
        at = f"{where}[{i}]"
        if axis == "sp":
            if not isinstance(item, bool):
                raise SearchError(f"{at}: must be true or false, got {show(item)}")
        elif axis == "recompute":
            if item not in RECOMPUTE:
                raise SearchError(f"{at}: unknown {short(item)}; expected one of "
                                  f"{', '.join(RECOMPUTE)}")
        elif axis == "schedule":
            if item not in SCHEDULES:
                raise SearchError(f"{at}: unknown {short(item)}; expected one of "
                                  f"{', '.join(SCHEDULES)}")
        elif axis == "order":
            parts = [p.strip() for p in item.split(",")] if isinstance(item, str) else None
            if not parts or sorted(parts) != sorted(("tp", "cp", "ep", "pp", "dp")):
                raise SearchError(f"{at}: a rank order lists each of tp, cp, ep, pp, dp once, "
                                  f"like 'tp,cp,ep,pp,dp', got {show(item)}")
        elif axis == "zero":
            if isinstance(item, bool) or item not in (0, 1, 2, 3):
                raise SearchError(f"{at}: a ZeRO stage is 0, 1, 2 or 3, got {show(item)}")
        else:
            positive_int(item, at)
    if len({repr(v) for v in value}) != len(value):
        raise SearchError(f"{where}: a value appears more than once in {short(value)}")
    return list(value)


def _confirm(value: Any, where: str) -> Confirm:
    sec = Section(value, where, keys=("margin", "max", "batch", "analyse_max"),
                  error=SearchError)
    margin = sec.get("margin", nonneg_number, default=0.0)
    most = sec.get("max", positive_int, default=64)
    batch = sec.get("batch", positive_int, default=None)
    analyse = sec.get("analyse_max", positive_int, default=None)
    return Confirm(float(margin), most, batch, analyse)


def _limits(value: Any, where: str) -> int:
    sec = Section(value, where, keys=("max_candidates",), error=SearchError)
    return sec.get("max_candidates", positive_int, default=DEFAULT_MAX_CANDIDATES)


def spec_from_dict(data: Any, default_name: str = "search", base_dir: Path | None = None
                   ) -> SearchSpec:
    """Validate a parsed search spec (errors are :class:`SearchError` naming the key)."""
    from des.app.sweep_load import load_scenario_data, load_sweep, sweep_from_dict
    from des.core import units

    sec = Section(data, "", label="search spec", keys=_KEYS, error=SearchError)
    name = sec.get("name", default=default_name)
    if not isinstance(name, str) or not name:
        raise sec.fail("name", f"must be non-empty text, got {show(name)}")
    sec.get("description", default="")
    has_base, has_sweep = "base" in sec.data, "sweep" in sec.data
    if has_base == has_sweep:
        raise sec.fail("", "give either base (a scenario, with free axes) or sweep (a sweep "
                           "file or bundled sweep whose space is searched), not "
                       + ("both" if has_base else "neither"))
    spec = SearchSpec(name)
    if has_sweep:
        value = sec.get("sweep")
        try:
            if isinstance(value, str):
                path = Path(value)
                if not path.is_absolute() and base_dir is not None and is_file(base_dir / path):
                    value = str(base_dir / path)
                spec.sweep = load_sweep(value)
            else:
                spec.sweep = sweep_from_dict(value, name, base_dir)
        except SweepError as err:
            raise SearchError(f"sweep: {err}") from None
        if "free" in sec.data:
            raise sec.fail("free", "a sweep's space is its axes; free goes with base")
    else:
        value = sec.get("base")
        try:
            base = load_scenario_data(value, base_dir) if isinstance(value, str) else value
        except SweepError as err:
            raise SearchError(f"base: {err}") from None
        if not isinstance(base, dict):
            raise sec.fail("base", f"must be a scenario mapping, file or bundled name, got "
                                   f"{show(value)}")
        workload = base.get("workload")
        if not isinstance(workload, dict) or workload.get("kind") != "llm_training":
            raise sec.fail("base", "the search needs an llm_training scenario (workload.kind: "
                                   "llm_training)")
        spec.base = base
        free = sec.get("free", default=None)
        if not isinstance(free, dict) or not free:
            raise sec.fail("free", f"must be a non-empty mapping of strategy axes "
                                   f"({', '.join(FREE_AXES)}) to lists of values, got "
                                   f"{show(free)}")
        for axis, values in free.items():
            if axis not in FREE_AXES:
                raise SearchError(f"free.{axis}: unknown strategy axis; expected one of "
                                  f"{', '.join(FREE_AXES)}")
            spec.free[axis] = _values(axis, values, f"free.{axis}")
    if "memory_limit" in sec.data:
        raw = sec.get("memory_limit")
        spec.memory_limit_set = True
        spec.memory_limit = None if raw in (None, "none") else units.parse_size(
            raw, "memory_limit") if not isinstance(raw, bool) else _bad_size(raw)
        if spec.memory_limit is not None and not spec.memory_limit > 0:
            raise sec.fail("memory_limit", f"must be > 0, got {show(raw)}")
    elif spec.sweep is not None:  # the sweep's own limit, or none, as its ranking has
        spec.memory_limit = spec.sweep.memory_limit
        spec.memory_limit_set = True
    spec.confirm = sec.get("confirm", _confirm, default=Confirm())
    spec.max_candidates = sec.get("limits", _limits, default=DEFAULT_MAX_CANDIDATES)
    sec.finish()
    return spec


def _bad_size(value: Any) -> float:
    raise SearchError(f"memory_limit: expected a size like '80 GiB' or none, got {show(value)}")


def load_spec(spec: str | os.PathLike[str]) -> SearchSpec | HwSpec:
    """A search spec from a YAML file or a bundled search (``configs/searches``); a bundled
    sweep's name searches that sweep's space. A spec with a ``hardware:`` section is a
    hardware search (:class:`des.app.hw_search.HwSpec`)."""
    from des.core.paths import bundled

    text = os.fspath(spec)
    path = Path(text)
    if is_file(path) or text in bundled("searches"):
        source = read_text(path, "search spec") if is_file(path) else \
            bundled("searches")[text].read_text()
        try:
            data = load_yaml(source, text)
        except YamlError as err:
            raise SearchError(str(err)) from None
        base_dir = path.parent if is_file(path) else Path.cwd()
        if isinstance(data, dict) and "hardware" in data:
            from des.app.hw_search import hw_spec_from_dict

            return hw_spec_from_dict(data, path.stem, base_dir)
        return spec_from_dict(data, path.stem, base_dir)
    if text in bundled("sweeps"):
        return spec_from_dict({"sweep": text}, text)
    raise SearchError(f"search spec {text!r}: no such file, bundled search or bundled sweep; "
                      f"bundled searches: {', '.join(sorted(bundled('searches')))}; bundled "
                      f"sweeps: {', '.join(sorted(bundled('sweeps')))}")


def divisors(n: int) -> list[int]:
    """The divisors of ``n``, ascending."""
    small = [d for d in range(1, math.isqrt(n) + 1) if n % d == 0]
    return sorted(set(small + [n // d for d in small]))
