"""Collective algorithms: one collective over a group -> chunked point-to-point step programs.

Never imports SimPy or the engine. Importing this package registers the built-in algorithms.
"""

from collectives import (  # noqa: F401  (registration side effect)
    auto,
    barrier,
    direct,
    halving_doubling,
    hierarchical,
    pairwise,
    rail_rings,
    ring,
    torus2d,
    tree,
)
from collectives.base import (
    CollectiveError,
    CollectivePlan,
    Step,
    algorithms_for,
    check_algorithm,
    make_plan,
    register,
)

__all__ = [
    "CollectiveError",
    "CollectivePlan",
    "Step",
    "algorithms_for",
    "check_algorithm",
    "make_plan",
    "register",
]
