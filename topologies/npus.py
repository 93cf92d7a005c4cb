"""How many NPUs a topology of a built-in kind has, from its parameters alone (no building).

Every built-in kind has a closed form: ``ring``/``fully_connected``/``switch`` ``npus``;
``mesh2d``/``torus2d`` x*y; ``torus3d`` x*y*z; ``fat_tree`` k^3/4; ``leaf_spine``
leaves*hosts_per_leaf; ``superpod`` nodes*gpus_per_node (8 by default); ``hierarchical`` the
product of its dimensions' sizes. :func:`npu_count` gives it, or None when it cannot be sure --
a registered (non built-in) kind, or parameters the builder would refuse -- so the caller builds
the topology and gets the builder's own answer or error. A sweep screens thousands of points
with this instead of building a topology per point.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from math import prod
from numbers import Integral
from typing import Any

from topologies.registry import canonical


def _count(value: Any, minimum: int = 1) -> int | None:
    if isinstance(value, Integral) and not isinstance(value, bool) and value >= minimum:
        return int(value)
    return None


def _product(params: Mapping[str, Any], keys: str) -> int | None:
    sizes = [_count(params.get(k)) for k in keys]
    if any(s is None for s in sizes):
        return None
    total = prod(s for s in sizes if s is not None)
    return total if total >= 2 else None


def _fat_tree(params: Mapping[str, Any]) -> int | None:
    k = _count(params.get("k"), 2)
    return None if k is None or k % 2 else k * (k // 2) ** 2


def _leaf_spine(params: Mapping[str, Any]) -> int | None:
    leaves, hosts = _count(params.get("leaves")), _count(params.get("hosts_per_leaf"))
    return None if leaves is None or hosts is None else leaves * hosts


def _superpod(params: Mapping[str, Any]) -> int | None:
    nodes, gpus = _count(params.get("nodes")), _count(params.get("gpus_per_node", 8))
    return None if nodes is None or gpus is None else nodes * gpus


def _hierarchical(params: Mapping[str, Any]) -> int | None:
    dims = params.get("dims")
    if not isinstance(dims, list | tuple) or not dims:
        return None
    sizes = [_count(d.get("size") if isinstance(d, Mapping) else getattr(d, "size", None))
             for d in dims]
    if any(s is None for s in sizes):
        return None
    total = prod(s for s in sizes if s is not None)
    return total if total >= 2 else None


_CLOSED_FORMS: dict[str, Callable[[Mapping[str, Any]], int | None]] = {
    "ring": lambda p: _count(p.get("npus"), 2),
    "fully_connected": lambda p: _count(p.get("npus"), 2),
    "switch": lambda p: _count(p.get("npus"), 2),
    "mesh2d": lambda p: _product(p, "xy"),
    "torus2d": lambda p: _product(p, "xy"),
    "torus3d": lambda p: _product(p, "xyz"),
    "fat_tree": _fat_tree,
    "leaf_spine": _leaf_spine,
    "superpod": _superpod,
    "hierarchical": _hierarchical,
}


def npu_count(kind: str, params: Mapping[str, Any]) -> int | None:
    """The NPU count of the topology ``topologies.build(kind, params)`` would build, computed
    from ``params`` alone; None for a kind without a closed form here (a registered one) or
    parameters its builder would refuse (build it to learn why)."""
    form = _CLOSED_FORMS.get(canonical(kind)) if isinstance(kind, str) else None
    return None if form is None else form(params)


__all__ = ["npu_count"]
