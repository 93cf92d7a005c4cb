"""Every plan that declares a translation symmetry has it: translating a position by any vector
of the declared group maps its step k onto the translated position's step k (peers translated,
same bytes, reductions and dimension). The lockstep engine trusts these declarations."""

from __future__ import annotations

from math import prod

import pytest

from collectives.base import PlanOptions, Step, algorithms_for, make_plan
from des.core.graph import CollectiveType


def coords(i: int, dims: tuple[int, ...]) -> list[int]:
    out = []
    for d in dims:
        out.append(i % d)
        i //= d
    return out


def translate(i: int, by: int, dims: tuple[int, ...]) -> int:
    a, b = coords(i, dims), coords(by, dims)
    pos, stride = 0, 1
    for x, y, d in zip(a, b, dims, strict=True):
        pos += ((x + y) % d) * stride
        stride *= d
    return pos


def mapped(step: Step, group: tuple[int, ...], shift: int, dims: tuple[int, ...]) -> Step:
    where = {r: i for i, r in enumerate(group)}

    def move(peers):
        return tuple(sorted((group[translate(where[p], shift, dims)], b) for p, b in peers))

    return Step(move(step.sends), move(step.recvs), step.reduce_bytes, step.dim)


def canonical(step: Step) -> Step:
    return Step(tuple(sorted(step.sends)), tuple(sorted(step.recvs)), step.reduce_bytes,
                step.dim)


CASES = [(c, a, n, dims) for c in CollectiveType for a in algorithms_for(c)
         for n, dims in ((6, None), (8, None), (12, (3, 4)), (8, (2, 2, 2)))]


@pytest.mark.parametrize(("collective", "algorithm", "n", "dims"), CASES)
def test_declared_translation_symmetry_holds(collective, algorithm, n, dims) -> None:
    group = tuple(range(100, 100 + 3 * n, 3))  # non-contiguous ranks
    try:
        plan = make_plan(collective, group, 6000.0 * n, algorithm, dims=dims,
                         options=PlanOptions(window=2 if algorithm == "direct" else 0))
    except Exception:
        pytest.skip("not applicable")
    declared = plan.translation_dims()
    if declared is None:
        pytest.skip("no symmetry declared")
    assert prod(declared) == len(group)
    for shift in range(1, len(group)):
        for p in range(len(group)):
            q = translate(p, shift, declared)
            for k in range(plan.num_steps(group[p])):
                want = mapped(plan.step(group[p], k), group, shift, declared)
                assert canonical(plan.step(group[q], k)) == want, (p, q, k)


def test_some_plans_declare_symmetry() -> None:
    ring = make_plan(CollectiveType.ALL_REDUCE, tuple(range(8)), 800.0, "ring")
    hier = make_plan(CollectiveType.ALL_REDUCE, tuple(range(8)), 800.0, "hierarchical",
                     dims=(2, 4))
    tree = make_plan(CollectiveType.ALL_REDUCE, tuple(range(8)), 800.0, "double_binary_tree")
    assert ring.translation_dims() == (8,)
    assert hier.translation_dims() == (2, 4)
    assert tree.translation_dims() is None
    # direct takes peers by coordinate offset on a grid (AstraSim modes: in cyclic order)
    grid = make_plan(CollectiveType.ALL_TO_ALL, tuple(range(8)), 800.0, "direct", dims=(2, 4))
    astra = make_plan(CollectiveType.ALL_TO_ALL, tuple(range(8)), 800.0, "direct", dims=(2, 4),
                      options=PlanOptions(astra=True))
    assert grid.translation_dims() == (2, 4) and astra.translation_dims() == (8,)
    assert [p for p, _ in grid.step(1, 0).sends] == [0, 3, 2, 5, 4, 7, 6]
    assert [p for p, _ in astra.step(1, 0).sends] == [2, 3, 4, 5, 6, 7, 0]
