"""What a run will cost, estimated from its event graph and options before it is simulated, and
checked against :mod:`des.core.limits`: a run that would take hours is refused with the estimate
(or, above ``warn_messages``, logged as a warning) instead of being found out after the fact.

The estimate counts event-graph nodes and *messages*: each collective node of each rank is cut
into chunks (``chunks``, or its size / ``chunk_size``) and every chunk takes at least
2 ceil(log2 g) steps of one message for a reducing collective of g ranks (ceil(log2 g) for the
others; the fewest any algorithm needs, so the estimate is a lower bound whatever algorithm
runs); a send moves in chunks of ``p2p_chunk_bytes``. Lockstep batching and folding make many
runs far cheaper than their message count, which is why only a count beyond ``max_messages``
(default 10^9) is refused.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from des.core import limits
from des.core.graph import CollectiveType, EventGraph, NodeKind
from des.sim.collective_run import chunk_layout
from des.sim.options import EngineOptions

__all__ = ["WorkEstimate", "check_work", "estimate_work"]

_LOG = logging.getLogger(__name__)

_REDUCING = {CollectiveType.ALL_REDUCE}


@dataclass(frozen=True)
class WorkEstimate:
    """Nodes of the graph, messages the run needs at least, and the most chunks one
    collective is cut into (with the node that does, for messages)."""

    nodes: int
    messages: int
    max_chunks: int
    max_chunks_node: str = ""


def estimate_work(graph: EventGraph, options: EngineOptions, num_npus: int) -> WorkEstimate:
    """The :class:`WorkEstimate` of running ``graph`` with ``options`` on ``num_npus`` NPUs."""
    messages = 0
    most, most_at = 0, ""
    counts: dict[tuple, int] = {}  # the same collective recurs every layer: lay it out once
    for node in graph.all_nodes():
        if node.kind is NodeKind.COLLECTIVE and node.collective is not None:
            size = len(node.group) if node.group else graph.num_ranks
            if size < 2:
                continue
            shape = (node.collective, node.nbytes, size)
            count = counts.get(shape)
            if count is None:
                count = counts[shape] = chunk_layout(
                    node.collective, node.nbytes, size, num_npus, options.chunks,
                    options.chunking, options.chunk_bytes)[0]
            if count > most:
                most, most_at = count, node.label()
            steps = max(1, math.ceil(math.log2(size)))
            messages += count * (2 * steps if node.collective in _REDUCING else steps)
        elif node.kind is NodeKind.SEND:
            chunk = options.p2p_chunk_bytes
            messages += 1 if not math.isfinite(chunk) else max(1, math.ceil(node.nbytes / chunk))
    return WorkEstimate(len(graph), messages, most, most_at)


def check_work(graph: EventGraph, options: EngineOptions, num_npus: int,
               where: str = "") -> WorkEstimate:
    """Estimate the run and refuse it (:class:`~des.core.limits.LimitError`) when its nodes,
    chunks per collective or messages exceed their limits; log a warning when the messages
    exceed ``warn_messages``. Returns the estimate."""
    limits.check("max_graph_nodes", len(graph), where or graph.name, what="event-graph nodes")
    work = estimate_work(graph, options, num_npus)
    if work.max_chunks:
        limits.check("max_chunks", work.max_chunks, where or graph.name,
                     what=f"chunks of {work.max_chunks_node}")
    limits.check("max_messages", work.messages, where or graph.name,
                 what="messages estimated for the run")
    if limits.exceeds("warn_messages", work.messages):
        _LOG.warning("%s: about %.3g messages to simulate (%d graph nodes); this may take a "
                     "long time (warn_messages = %g)", where or graph.name, work.messages,
                     work.nodes, limits.get("warn_messages"))
    return work
