"""What a sweep is made of and gives: its error, a point to run and a point's result."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from des.core.schema import SchemaError


class SweepError(SchemaError):
    """A sweep file that cannot be used; names the key and what is allowed."""


def canonical_json(value: Any) -> str:
    """``value`` as JSON with sorted keys, the same text for equal values: what point keys,
    fingerprints and duplicate checks compare. Non-string keys are written with their type
    (``int:0``) so that a mapping mixing ``0`` and ``'a'`` sorts instead of raising; values
    of string keys only are written exactly as ``json.dumps(sort_keys=True)`` writes them,
    so the keys of earlier sweeps' points do not change."""
    return json.dumps(_text_keys(value), sort_keys=True, default=str)


def _text_keys(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k if isinstance(k, str) else f"{type(k).__name__}:{k}": _text_keys(v)
                for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_text_keys(v) for v in value]
    return value


@dataclass(frozen=True)
class SweepPoint:
    """One combination of axis values and the scenario it gives."""

    index: int
    key: str
    values: dict[str, Any]
    scenario: dict[str, Any]


@dataclass
class PointResult:
    """What one point gave: ``status`` is ok, invalid (a constraint) or error."""

    key: str
    index: int
    values: dict[str, Any]
    status: str
    reason: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        """A flat row: axis values, status, reason, metrics (a metric named like an axis is
        prefixed ``result.`` so the axis value survives)."""
        row = {**self.values, "status": self.status, "reason": self.reason}
        for key, value in self.metrics.items():
            row[f"result.{key}" if key in row else key] = value
        return row



class SweepRun(list[PointResult]):
    """The results of :func:`~des.app.sweep.run_sweep` in point order (a list, as before),
    and how the run ended: ``total`` points in the sweep, ``cut_off`` valid points that never
    finished because the run stopped, and ``stopped`` -- "" when it ran to the end, else
    "timeout" or "interrupted" (rerunning resumes from ``points.jsonl``)."""

    def __init__(self, results: list[PointResult], *, total: int, cut_off: int = 0,
                 stopped: str = "") -> None:
        super().__init__(results)
        self.total = total
        self.cut_off = cut_off
        self.stopped = stopped

    @property
    def complete(self) -> bool:
        """Every point has a result."""
        return not self.stopped and not self.cut_off


@dataclass(frozen=True)
class SweepProgress:
    """Where a running sweep is, for a progress bar. ``phase`` is "estimating" (working out
    each point's cost) or "running"; ``done``/``total`` count this run's points (resumed ones
    are in ``resumed``), ``cost_done``/``cost_total`` weigh them by their estimated cost, so a
    time-left estimate from the cost rate is not misled by cheap points finishing first."""

    phase: str
    done: int
    total: int
    cost_done: float
    cost_total: float
    resumed: int = 0
