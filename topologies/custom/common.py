"""What the YAML and GraphML readers of custom topologies share: bandwidth and latency values
checked with errors naming where they were read, the default link kind, and the router state of
the chosen routing."""

from __future__ import annotations

from typing import Any

from des.core.units import parse_bandwidth, parse_time
from topologies.base import TopologyError
from topologies.routing_state import EcmpRouting, ExplicitRouting, RouterState

__all__ = ["DEFAULT_LINK_KIND", "checked_bandwidth", "checked_time", "router_state"]

DEFAULT_LINK_KIND = "link"


def router_state(routing: str, seed: int,
                 explicit: dict[tuple[int, int], tuple[int, ...]]) -> RouterState | None:
    """The tables the chosen router reads: the ECMP seed, the explicit routes, or none."""
    if routing == "ecmp":
        return EcmpRouting(seed)
    if routing == "explicit":
        return ExplicitRouting(explicit)
    return None


def checked_bandwidth(value: Any, where: str) -> float:
    """A bandwidth > 0 in bytes/ns (a bare number is GB/s); errors name ``where``."""
    try:
        result = parse_bandwidth(value, where)
    except ValueError as err:
        raise TopologyError(str(err)) from None
    if not result > 0:
        raise TopologyError(f"{where}: must be > 0, got {value!r}")
    return result


def checked_time(value: Any, where: str) -> float:
    """A time in ns (a bare number is ns); errors name ``where``."""
    try:
        return parse_time(value, where)
    except ValueError as err:
        raise TopologyError(str(err)) from None
