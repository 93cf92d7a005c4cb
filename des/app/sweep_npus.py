"""NPU counts for sweep screening: a constraint like ``dp * tp * cp == npus`` needs each point's
NPU count, and a sweep may have thousands of points. :class:`NpuCounter` works the count out
once per distinct ``topology:`` mapping, from the kind's closed form
(:func:`topologies.npus.npu_count`) when it has one, and by building the topology only for
custom files and registered kinds (or parameters the closed form is unsure of)."""

from __future__ import annotations

from typing import Any

from des.app.config import ConfigError, Section, build_topology, topology_params
from des.app.sweep_types import canonical_json
from topologies.npus import npu_count


class NpuCounter:
    """``counter(spec) -> npus`` for ``topology:`` mappings, each distinct one worked out once
    (an error too: a bad spec raises the same :class:`ConfigError` every time). ``built``
    counts the topologies it had to build."""

    def __init__(self) -> None:
        self._known: dict[str, int | ConfigError | ValueError] = {}
        self.built = 0

    def __call__(self, spec: Any) -> int:
        key = canonical_json(spec)
        if key not in self._known:
            try:
                self._known[key] = self._count(spec)
            except (ConfigError, ValueError) as err:
                self._known[key] = err
        found = self._known[key]
        if isinstance(found, Exception):
            raise found
        return found

    def _count(self, spec: Any) -> int:
        kind, params = topology_params(Section(spec, "topology"))
        count = None if kind == "custom" else npu_count(kind, params)
        if count is None:
            self.built += 1
            count = build_topology(Section(spec, "topology")).num_npus
        return count
