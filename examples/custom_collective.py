"""Extension point: your own collective algorithm.

A collective algorithm in des is a step program: for every member, a list of steps, each
sending some messages and receiving some (:mod:`collectives.base` states the contract: steps are
aligned across ranks, a rank's step k+1 starts when its step-k receives have arrived). Subclass
:class:`~collectives.base.CollectivePlan`, implement ``num_steps`` and ``step``, and register it
with ``@register(collective, name)``; scenarios and graphs can then ask for it by name
(``algorithm: star`` on a collective, or ``network.algorithms: {all_reduce: star}``), and the
engine chunks, pipelines and contends it like any built-in algorithm.

This example registers a star all-reduce: every rank sends its whole buffer to the root, the
root reduces and sends the result back. On a switch the root's down-link carries n-1 whole
buffers, so the star needs at least (n-1) S / b against a ring's 2 (n-1) S / (n b): about n/2
times slower on large messages, plus the pipeline's fill and drain.

Run: ``python examples/custom_collective.py``
"""

from __future__ import annotations

import topologies
from collectives.base import CollectivePlan, Step, register
from des.core.graph import CollectiveType, EventGraph
from des.sim.engine import simulate


@register(CollectiveType.ALL_REDUCE, "star")
class StarAllReduce(CollectivePlan):
    """Reduce to the root, then broadcast from it, each in one step of n-1 whole-buffer
    messages (the root's links are the bottleneck)."""

    algorithm = "star"
    supports = frozenset({CollectiveType.ALL_REDUCE})

    def num_steps(self, rank: int) -> int:
        """Two steps: gather to the root, scatter back."""
        return 2

    def step(self, rank: int, k: int) -> Step:
        """Step ``k`` of ``rank`` (see the class doc)."""
        others = tuple(r for r in self.group if r != self.root)
        size = self.nbytes
        if rank == self.root:
            if k == 0:  # receive and reduce every buffer
                return Step(recvs=tuple((r, size) for r in others),
                            reduce_bytes=size * len(others))
            return Step(sends=tuple((r, size) for r in others))
        if k == 0:
            return Step(sends=((self.root, size),))
        return Step(recvs=((self.root, size),))


def main() -> dict[str, float]:
    """Simulate a 64 MiB all-reduce on an 8-NPU switch with a ring and with the star."""
    out = {}
    for algorithm in ("ring", "star"):
        graph = EventGraph(8, f"{algorithm} all-reduce")
        graph.collective_all("all_reduce", 64 * 2**20, algorithm=algorithm)
        result = simulate(topologies.switch(8, 50.0, 500.0), graph)
        out[f"{algorithm}_ns"] = result.makespan_ns
        out[f"{algorithm}_bytes"] = sum(lk.bytes for lk in result.links)
    return out


if __name__ == "__main__":
    out = main()
    for algorithm in ("ring", "star"):
        print(f"{algorithm:5s} all-reduce: {out[f'{algorithm}_ns'] / 1e3:10.1f} us, "
              f"{out[f'{algorithm}_bytes'] / 2**20:8.1f} MiB over links")
