"""What a sweep is made of and gives: its error, a point to run and a point's result."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from des.core.schema import SchemaError


class SweepError(SchemaError):
    """A sweep file that cannot be used; names the key and what is allowed."""


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

