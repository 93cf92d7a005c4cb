"""Node windows: ``--nodes A:B`` picks node ids ``A <= id < B`` (``A:``, ``:B``, or one id
``A``), as the trace dump and the graph drawing take them."""

from __future__ import annotations

import re
from dataclasses import dataclass

from des.core.schema import SchemaError, short

__all__ = ["NodeWindow", "WindowError", "parse_window"]

_WINDOW = re.compile(r"\s*(\d{1,18})?\s*(:)?\s*(\d{1,18})?\s*")


class WindowError(SchemaError):
    """A node window that is not ``A:B`` with whole numbers ``0 <= A < B``."""


@dataclass(frozen=True, slots=True)
class NodeWindow:
    """Node ids ``start <= id < stop`` (``stop`` None: no upper end)."""

    start: int = 0
    stop: int | None = None

    def __contains__(self, node_id: int) -> bool:
        return node_id >= self.start and (self.stop is None or node_id < self.stop)

    def __str__(self) -> str:
        return f"{self.start}:{'' if self.stop is None else self.stop}"


def parse_window(text: str | None, where: str = "--nodes") -> NodeWindow:
    """``"100:200"`` -> ids 100..199; ``"100:"``, ``":200"``, ``"7"`` (id 7 only); None or
    ``""`` -> every id. Anything else is a :class:`WindowError` naming ``where``."""
    if text is None or not text.strip():
        return NodeWindow()
    match = _WINDOW.fullmatch(text)
    if match is None or (match.group(1) is None and match.group(3) is None):
        raise WindowError(f"{where} {short(text)}: expected node ids A:B (A <= id < B), A:, "
                          ":B or one id A, with whole numbers >= 0")
    first, colon, last = match.groups()
    start = int(first) if first is not None else 0
    if not colon:
        return NodeWindow(start, start + 1)
    stop = int(last) if last is not None else None
    if stop is not None and stop <= start:
        raise WindowError(f"{where} {short(text)}: empty window (the end {stop} must be "
                          f"greater than the start {start}; the end is excluded)")
    return NodeWindow(start, stop)
