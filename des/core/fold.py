"""Folding: a graph that simulates one representative for each set of symmetric ranks.

A workload whose ranks are symmetric along some parallel axes (tensor-parallel peers,
data-parallel replicas) can build its graph for the *representative* ranks only (coordinate 0 on
every folded axis). The others are their images under the translations of those axes: the
translation by offset ``o`` moves every rank ``o`` steps along the folded axes (modulo each
axis's size). A collective over a folded axis keeps its full group as its ``span``.

:class:`Fold` is that description, attached to the graph (``EventGraph.fold``). Backends use it
to time span collectives and to report every rank: a folded rank's figures are its
representative's (marked as such in the Result). Whether a fold is *exact* on a topology is a
property of the routes (every translation must map the representative's routes onto routes with
the same links' parameters, and no link may serve two images): :func:`topologies.symmetry` checks
it before a workload folds, and the contended engine simulates each orbit of links once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from itertools import product
from typing import Any


def axis_strides(sizes: Mapping[str, int], order: Sequence[str]) -> dict[str, int]:
    """Each axis's rank stride on a grid whose axes, innermost first, are ``order``
    (rank = sum of coordinate x stride)."""
    strides, stride = {}, 1
    for axis in order:
        strides[axis] = stride
        stride *= sizes[axis]
    return strides


@dataclass(frozen=True)
class Fold:
    """Folded axes of a rank grid. ``sizes`` and ``strides`` give each folded axis's size and
    rank stride (rank = sum of coordinate x stride over all axes); ``world`` is the number of
    ranks. An axis may appear more than once, cut into cyclic factors (:meth:`aligned`).
    Translations are numbered in mixed radix over the folded axes (first fastest);
    translation 0 is the identity."""

    axes: tuple[str, ...]
    sizes: tuple[int, ...]
    strides: tuple[int, ...]
    world: int
    _table: list[tuple[int, ...]] = field(default_factory=list, compare=False, repr=False)

    @classmethod
    def of(cls, axes: Sequence[str], sizes: Mapping[str, int], order: Sequence[str]) -> Fold:
        """The fold of ``axes`` on a grid whose axes, innermost first, are ``order`` with
        ``sizes``: each axis one cyclic translation (:meth:`aligned` on no dimensions)."""
        return cls.aligned(axes, sizes, order, ())

    @classmethod
    def aligned(cls, axes: Sequence[str], sizes: Mapping[str, int], order: Sequence[str],
                dims: Sequence[int]) -> Fold:
        """The fold of ``axes`` with each axis cut where it crosses a boundary of the
        topology's logical dimensions ``dims`` (NPU ids in mixed radix, dimension 0 fastest).

        The orbits of ranks are those of :meth:`of` (every coordinate of a folded axis), so the
        representatives are the same; only the translations differ. A data-parallel axis of 64
        ranks at stride 4 on nodes of 8 GPUs becomes two cyclic factors, 2 within a node and
        32 across nodes: translating by one along the axis would move a node's last member to
        the next node (an NVSwitch route onto a NIC route), while each factor's translation
        maps NVSwitch routes onto NVSwitch routes and rail routes onto the same rails, which
        is the symmetry a dimension-by-dimension collective over the group has."""
        strides = axis_strides(sizes, order)
        bounds, b = [], 1
        for d in dims[:-1]:
            b *= int(d)
            bounds.append(b)
        out_axes: list[str] = []
        out_sizes: list[int] = []
        out_strides: list[int] = []
        for axis in order:
            if axis not in axes or sizes[axis] <= 1:
                continue
            low, high = strides[axis], strides[axis] * sizes[axis]
            cur = low
            for bound in bounds:
                if cur < bound < high and bound % cur == 0 and high % bound == 0:
                    out_axes.append(axis)
                    out_sizes.append(bound // cur)
                    out_strides.append(cur)
                    cur = bound
            out_axes.append(axis)
            out_sizes.append(high // cur)
            out_strides.append(cur)
        return cls(tuple(out_axes), tuple(out_sizes), tuple(out_strides),
                   math.prod(sizes[a] for a in order))

    @property
    def folded_axes(self) -> tuple[str, ...]:
        """The parallel axes folded, each once (an aligned fold may cut one into factors)."""
        return tuple(dict.fromkeys(self.axes))

    def summary(self, copies: int) -> dict[str, object]:
        """The result document's description of the fold: the axes folded, how many copies
        each simulated rank stands for, and the translation sizes."""
        return {"axes": list(self.folded_axes), "copies": copies,
                "translations": list(self.sizes)}

    @cached_property
    def count(self) -> int:
        """Number of translations (the size of every orbit of ranks)."""
        return math.prod(self.sizes)

    def coords(self, rank: int) -> tuple[int, ...]:
        """The rank's coordinates on the folded axes."""
        return tuple((rank // st) % sz for st, sz in zip(self.strides, self.sizes, strict=True))

    def is_representative(self, rank: int) -> bool:
        """True for ranks at coordinate 0 on every folded axis."""
        return not any(self.coords(rank))

    def translate(self, rank: int, k: int) -> int:
        """``rank`` moved by translation ``k``."""
        for st, sz in zip(self.strides, self.sizes, strict=True):
            step = k % sz
            k //= sz
            c = (rank // st) % sz
            rank += (((c + step) % sz) - c) * st
        return rank

    def table(self) -> list[tuple[int, ...]]:
        """``table()[k][r]``: rank ``r`` moved by translation ``k``, for every k and r, as
        tuples (:meth:`table_array` as a numpy array)."""
        if not self._table:
            self._table.extend(map(tuple, self.table_array().tolist()))
        return self._table

    @cached_property
    def _array(self) -> Any:
        import numpy as np  # only folded runs need it: keep start-up lean

        ranks = np.arange(self.world, dtype=np.int64)
        moved = np.broadcast_to(ranks, (self.count, self.world)).copy()
        k = np.arange(self.count, dtype=np.int64)
        for st, sz in zip(self.strides, self.sizes, strict=True):
            step = (k % sz)[:, None]
            k //= sz
            c = (ranks // st) % sz
            moved += (((c + step) % sz) - c) * st
        return moved

    def table_array(self) -> Any:
        """A numpy ``[k, rank]`` array: rank ``r`` moved by translation ``k``, for every k
        and r, worked out for all at once (256 translations of 1024 ranks are 262,144
        entries) and kept."""
        return self._array

    def representative(self, rank: int) -> tuple[int, int]:
        """(representative, k) with ``translate(representative, k) == rank``."""
        k, mult, rep = 0, 1, rank
        for st, sz in zip(self.strides, self.sizes, strict=True):
            c = (rank // st) % sz
            k += c * mult
            mult *= sz
            rep -= c * st
        return rep, k

    def offsets(self) -> list[tuple[int, ...]]:
        """Every translation as a coordinate offset, in translation order."""
        return [tuple(reversed(o)) for o in product(*(range(s) for s in reversed(self.sizes)))]
