"""Direct all-to-all: in one step every rank sends its S/n slice for each peer straight to it.

Uncontended on a fully connected fabric it takes alpha + (n-1) S / (n B) per port; on shared
links the n-1 messages contend, which is the point of simulating it.
"""

from __future__ import annotations

from collectives.base import CollectivePlan, Step, register
from des.graph import CollectiveType


@register(CollectiveType.ALL_TO_ALL, "direct")
class DirectAllToAll(CollectivePlan):
    """One step: a message of S/n bytes to every other member, one from every other member."""

    algorithm = "direct"

    def num_steps(self, rank: int) -> int:
        return 1 if self.size > 1 else 0

    def step(self, rank: int, k: int) -> Step:
        piece = self.nbytes / self.size
        peers = tuple((p, piece) for p in self.group if p != rank)
        return Step(peers, peers, 0.0)
