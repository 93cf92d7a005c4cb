"""How scenario files are read: :class:`ConfigError` and the :class:`Section` whose errors are
ConfigErrors, shared by the scenario loader (:mod:`des.app.config`) and the workload parsers
(:mod:`des.app.workload_parsers`, and any kind a user registers)."""

from __future__ import annotations

from typing import Any

from des.core import schema
from des.core.schema import SchemaError


class ConfigError(SchemaError):
    """A scenario that cannot be used; the message names the key path and what is allowed."""


class Section(schema.Section):
    """A scenario mapping read key by key (see :class:`des.core.schema.Section`); its errors,
    and those of the sections nested in it, are :class:`ConfigError`."""

    error = ConfigError


def ranks(value: Any, where: str) -> tuple[int, ...]:
    """A non-empty list of rank ids."""
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{where}: expected a non-empty list of ranks, got {schema.show(value)}")
    return tuple(schema.nonneg_int(v, f"{where}[{i}]") for i, v in enumerate(value))


__all__ = ["ConfigError", "Section", "ranks"]
