"""Hierarchical (multi-dimensional) collectives: AstraSim's ``localBWAware`` phase order.

The group has logical dimensions ``dims`` (``CollectivePlan.dims``, dimension 0 varying
fastest in group order: position ``i`` has coordinate ``(i // prod(dims[:d])) % dims[d]`` in
dimension d). A phase runs one flat collective in one dimension d, concurrently on every
*dimension-d sub-group* (the members that differ from each other only in coordinate d, in
coordinate order), with the algorithm ``options.dim_algorithms[d]`` (default ``"ring"``) built
by :func:`collectives.base.make_plan`. The phases' steps are concatenated, each tagged
``Step.dim = d`` (and ``multi_dim`` is set when more than one dimension is active), so the
engine's per-dimension queues pipeline chunks across dimensions.
Since every dimension-d sub-group has the same size and algorithm, every member of the group
has the same number of steps in each phase, so phase boundaries stay aligned.

With ``c_0 = S`` and ``c_{i+1} = c_i / n_i`` over the active dimensions (size > 1, ascending):

* **All-reduce** = reduce-scatter on dims ``0..D-2`` ascending (input ``c_i``), all-reduce on
  the last active dim ``D-1`` (buffer ``c_{D-1}``), all-gather on dims ``D-2..0`` descending
  (output ``c_i``), as AstraSim's ``localBWAware`` (Rashidi et al., "ASTRA-SIM: Enabling SW/HW
  Co-Design Exploration for Distributed DL Training Platforms", ISPASS 2020; notes section
  3.3). One active dimension is a plain all-reduce; a 1-rank group has no steps.
* **Reduce-scatter** = reduce-scatter on every active dim ascending; **all-gather** =
  all-gather on every active dim descending (``nbytes`` is the gathered output ``c_0``).

All-gather phases run "anticlockwise" as AstraSim does (its ``_last`` queues): the sub-group is
built in reverse coordinate order, so a ring receives from the next member and sends to the
previous one. With ring sub-plans a rank sends ``(n_i - 1) c_{i+1}`` in the RS and AG phases of
dimension i and ``2 (n_D - 1) / n_D c_{D-1}`` in the all-reduce, which telescopes to the flat
ring's ``2 (n - 1) / n S`` (but in ``2 sum_i (n_i - 1)`` steps instead of ``2 (n - 1)``).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from math import prod

from collectives.base import (
    EMPTY_STEP,
    CollectiveError,
    CollectivePlan,
    PlanOptions,
    Step,
    make_plan,
    register,
)
from des.core.graph import CollectiveType

RS, AR, AG = CollectiveType.REDUCE_SCATTER, CollectiveType.ALL_REDUCE, CollectiveType.ALL_GATHER


@dataclass(frozen=True, slots=True)
class Phase:
    """One phase: ``collective`` of ``nbytes`` (its own size convention) on the dimension-``dim``
    sub-groups with ``algorithm``; ``reverse`` builds the sub-groups in reverse order."""

    collective: CollectiveType
    dim: int
    nbytes: float
    algorithm: str
    reverse: bool = False


def check_dims(plan: CollectivePlan) -> tuple[int, ...]:
    """``plan.dims``, after checking that they are positive and multiply to the group size."""
    dims = plan.dims
    if any(int(d) != d or d < 1 for d in dims):
        raise CollectiveError(f"{plan.collective} {plan.algorithm}: dims {list(dims)} must be "
                              "positive integers")
    if prod(dims) != plan.size:
        raise CollectiveError(
            f"{plan.collective} {plan.algorithm}: dims {list(dims)} multiply to {prod(dims)}, "
            f"but the group has {plan.size} ranks")
    return tuple(int(d) for d in dims)


def dim_algorithm(options: PlanOptions, d: int) -> str:
    """The algorithm of dimension ``d`` (``options.dim_algorithms[d]``, default ``"ring"``)."""
    algs = options.dim_algorithms
    return algs[d] if d < len(algs) and algs[d] else "ring"


class PhaseProgram:
    """A sequence of :class:`Phase` over the group of ``plan`` (with logical ``dims``), run
    concurrently on every sub-group; sub-plans are built lazily and shared by their members."""

    def __init__(self, plan: CollectivePlan, dims: Sequence[int], phases: Sequence[Phase]) -> None:
        # the plan's group, positions and options, not the plan: it holds this program, and a
        # cycle would keep both (and every sub-plan) alive until the cyclic collector runs
        self.group, self.position, self.options = plan.group, plan.position, plan.options
        self.dims = tuple(dims)
        self.strides = tuple(prod(self.dims[:d]) for d in range(len(self.dims)))
        self.phases = tuple(phases)
        self._subplans: dict[tuple[int, int], CollectivePlan] = {}
        lengths = []
        for index in range(len(self.phases)):  # also checks every phase's algorithm now
            first = self._subplan(index, 0)
            lengths.append(first.num_steps(first.group[0]))
        self.lengths = tuple(lengths)
        self.offsets = tuple(sum(lengths[:i]) for i in range(len(lengths) + 1))

    @property
    def num_steps(self) -> int:
        """Steps of the whole program (the same for every member)."""
        return self.offsets[-1]

    def subgroup(self, position: int, d: int, reverse: bool = False) -> tuple[int, ...]:
        """The ranks that differ from the member at ``position`` only in coordinate ``d``."""
        stride, size = self.strides[d], self.dims[d]
        base = position - (position // stride) % size * stride
        ranks = tuple(self.group[base + j * stride] for j in range(size))
        return ranks[::-1] if reverse else ranks

    def _subplan(self, index: int, position: int) -> CollectivePlan:
        phase = self.phases[index]
        stride, size = self.strides[phase.dim], self.dims[phase.dim]
        base = position - (position // stride) % size * stride
        sub = self._subplans.get((index, base))
        if sub is None:
            sub = make_plan(phase.collective, self.subgroup(base, phase.dim, phase.reverse),
                            phase.nbytes, phase.algorithm, options=self.options)
            self._subplans[(index, base)] = sub
        return sub

    def translation_dims(self) -> tuple[int, ...] | None:
        """The dims when every phase's sub-plans are cyclic (see
        :meth:`~collectives.base.CollectivePlan.translation_dims`), else None."""
        for index in range(len(self.phases)):
            sub = self._subplan(index, 0)
            if sub.size > 1 and not sub.cyclic:
                return None
        return self.dims if len(self.group) > 1 else None

    def phase_of(self, k: int) -> int:
        """Index of the phase that step ``k`` belongs to."""
        return bisect.bisect_right(self.offsets, k) - 1

    def step(self, rank: int, k: int) -> Step:
        """Step ``k`` of ``rank``: its sub-plan's step, tagged with the phase's dimension."""
        index = self.phase_of(k)
        phase = self.phases[index]
        sub = self._subplan(index, self.position[rank])
        j = k - self.offsets[index]
        if j >= sub.num_steps(rank):
            return Step(dim=phase.dim)
        s = sub.step(rank, j)
        if s is EMPTY_STEP or (not s.sends and not s.recvs):
            return Step(dim=phase.dim)
        return Step(s.sends, s.recvs, s.reduce_bytes, phase.dim)


def local_bw_aware_phases(collective: CollectiveType, dims: Sequence[int], nbytes: float,
                          split: Callable[[float, int], float], algorithms: Sequence[str], *,
                          reverse_ag: bool = True, reverse_all: bool = False,
                          order: Sequence[int] | None = None) -> list[Phase]:
    """AstraSim's localBWAware phases of ``collective`` over ``dims`` (size-1 dims skipped):
    ``algorithms[d]`` runs in dimension d, ``order`` permutes the dimensions (default
    ascending), ``split(c, n)`` sizes the next phase, ``reverse_ag`` runs all-gather phases
    anticlockwise, ``reverse_all`` runs every phase in reverse sub-group order."""
    active = [d for d in (order if order is not None else range(len(dims))) if dims[d] > 1]
    if not active:
        return []
    sizes = [float(nbytes)]
    for d in active[:-1]:
        sizes.append(split(sizes[-1], dims[d]))

    def phase(kind: CollectiveType, i: int) -> Phase:
        d = active[i]
        rev = reverse_all or (reverse_ag and kind is AG)
        return Phase(kind, d, sizes[i], algorithms[d], rev)

    last = len(active) - 1
    if collective is AR:
        return ([phase(RS, i) for i in range(last)] + [phase(AR, last)]
                + [phase(AG, i) for i in reversed(range(last))])
    if collective is RS:
        return [phase(RS, i) for i in range(last + 1)]
    if collective is AG:
        return [phase(AG, i) for i in reversed(range(last + 1))]
    raise CollectiveError(f"hierarchical: {collective} is not supported")


@register(CollectiveType.ALL_REDUCE, "hierarchical")
@register(CollectiveType.REDUCE_SCATTER, "hierarchical")
@register(CollectiveType.ALL_GATHER, "hierarchical")
class HierarchicalPlan(CollectivePlan):
    """Multi-dimensional all-reduce / reduce-scatter / all-gather as per-dimension phases in
    AstraSim's localBWAware order (Rashidi et al., ASTRA-SIM, ISPASS 2020); see the module
    docstring. ``dims`` must multiply to the group size (the default ``(n,)`` is one flat
    phase)."""

    algorithm = "hierarchical"
    supports = frozenset({AR, RS, AG})

    def _prepare(self) -> None:
        dims = check_dims(self)
        algorithms = [dim_algorithm(self.options, d) for d in range(len(dims))]
        phases = local_bw_aware_phases(self.collective, dims, self.nbytes, self.split, algorithms)
        self.program = PhaseProgram(self, dims, phases)
        self.multi_dim = len({phase.dim for phase in phases}) > 1

    @property
    def phases(self) -> tuple[Phase, ...]:
        """The phases, in order."""
        return self.program.phases

    def num_steps(self, rank: int) -> int:
        return self.program.num_steps

    def translation_dims(self) -> tuple[int, ...] | None:
        """The logical dims when every phase's flat algorithm is cyclic on its sub-groups
        (translating by one in dimension d rotates every dimension-d sub-group by one)."""
        return self.program.translation_dims()

    def step(self, rank: int, k: int) -> Step:
        return self.program.step(rank, k)
