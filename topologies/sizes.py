"""How big a built-in topology will be, worked out from its parameters before it is built, so a
``ring:1000000000`` or ``fattree:k=1e9`` is refused at once (:mod:`des.core.limits`) instead of
after minutes of building. Counts are upper bounds in closed form; parameters that are not
whole numbers are left to the builders, which refuse them with their own message."""

from __future__ import annotations

from collections.abc import Mapping
from math import prod
from numbers import Integral
from typing import Any

from des.core import limits

__all__ = ["check_size", "estimate_size"]


def _int(params: Mapping[str, Any], key: str, default: int | None = None) -> int | None:
    value = params.get(key, default)
    if isinstance(value, bool) or not isinstance(value, Integral):
        return None
    return int(value)


def _dim_links(kind: str, size: int, bidirectional: bool = True) -> int:
    """Directed links of one group of ``size`` NPUs of a dimension kind."""
    if size < 2:
        return 0
    if kind in ("fully_connected", "fc"):
        return size * (size - 1)
    if kind == "switch":
        return 2 * size
    return 2 * size if bidirectional else size  # ring


def estimate_size(kind: str, params: Mapping[str, Any]) -> tuple[int, int, str] | None:
    """``(npus, links, how)`` of a built-in kind with converted ``params``, or None when it
    cannot be told (an unknown kind, a parameter that is not a whole number)."""
    if kind in ("ring", "fully_connected", "switch"):
        n = _int(params, "npus")
        if n is None:
            return None
        links = _dim_links(kind, n, bool(params.get("bidirectional", True)))
        return n, links, f"{kind} of {n:,} NPUs" if n < 10**15 else kind
    if kind in ("mesh2d", "torus2d", "torus3d"):
        sizes = [_int(params, d) for d in ("x", "y", "z")[:3 if kind == "torus3d" else 2]]
        if any(s is None for s in sizes):
            return None
        n = prod(s for s in sizes if s is not None)
        return n, 2 * len(sizes) * n, f"{kind} {'x'.join(map(str, sizes))}"
    if kind == "fat_tree":
        k = _int(params, "k")
        if k is None:
            return None
        return k**3 // 4, 3 * k**3 // 2, f"k^3/4 hosts of a k={k} fat tree"
    if kind == "leaf_spine":
        leaves, hosts, spines = (_int(params, key) for key in
                                 ("leaves", "hosts_per_leaf", "spines"))
        if leaves is None or hosts is None or spines is None:
            return None
        return (leaves * hosts, 2 * leaves * (hosts + spines),
                f"{leaves} leaves x {hosts} hosts")
    if kind == "superpod":
        nodes, gpus = _int(params, "nodes"), _int(params, "gpus_per_node", 8)
        spines = _int(params, "spines", gpus)
        if nodes is None or gpus is None or spines is None:
            return None
        return (nodes * gpus, 4 * nodes * gpus + 2 * gpus * spines,
                f"{nodes} nodes x {gpus} GPUs")
    if kind == "hierarchical":
        dims = params.get("dims")
        if not isinstance(dims, list) or not dims:
            return None
        sizes = [_int(d, "size") if isinstance(d, Mapping) else getattr(d, "size", None)
                 for d in dims]
        if any(not isinstance(s, int) or s < 1 for s in sizes):
            return None
        n = prod(sizes)
        links = sum(n // size * _dim_links(str(_kind(d)), size) for d, size in zip(
            dims, sizes, strict=True))
        return n, links, "x".join(f"{_kind(d)}{s}" for d, s in zip(dims, sizes, strict=True))
    return None


def _kind(dim: Any) -> Any:
    return dim.get("kind") if isinstance(dim, Mapping) else getattr(dim, "kind", "")


def check_size(kind: str, params: Mapping[str, Any], where: str = "") -> None:
    """Refuse a built-in topology whose NPUs or links would exceed ``max_npus`` or
    ``max_links`` (:class:`~des.core.limits.LimitError`), before it is built."""
    size = estimate_size(kind, params)
    if size is None:
        return
    npus, links, how = size
    limits.check("max_npus", npus, where or kind, what=how)
    limits.check("max_links", links, where or kind, what=f"directed links of {how}")
