"""Ring attention (context parallelism) as event-graph nodes: exchange by exchange, or by phase.

With context parallelism the sequence is split over the ``cp`` ranks of a context group, and each
rank's queries must attend to every rank's keys and values. Ring attention (Liu et al. 2023,
"Ring Attention with Blockwise Transformers for Near-Infinite Context", arXiv:2310.01889;
Megatron-LM / Transformer Engine context parallelism, ``attn_forward_func_with_cp``) passes the
KV blocks round the ring: in each of ``cp - 1`` steps a rank sends the block it holds to its
successor and receives one from its predecessor while it computes blockwise attention on the
block it holds; the last block received is computed after the last exchange. In the backward
pass the KV blocks travel with their gradients dK, dV (``passes = 2``: twice the bytes).

Two models, chosen by ``parallel.ring_attention``:

``detailed`` (the default)
    every exchange: per step a send, a receive, the block's compute node and a zero-time join
    (``kv_ready``) on both: ``4 cp - 3`` nodes per rank, layer and pass. A step starts when both
    the previous block's compute and its receive are done, so with nothing else contending a
    ring takes ``(cp - 1) max(t_c, T_x(b)) + t_c``, where ``t_c`` is one block's attention
    (1/cp of the core's FLOPs and bytes, each kernel with its launch) and ``T_x(b)`` the
    uncontended point-to-point time of one block of ``b`` bytes.

``phased`` (opt-in, approximate)
    the whole rotation as one phase: a ring all-gather of the ``cp`` blocks over the context
    group in ring order (``algorithm="ring"``: ``cp - 1`` steps, in each of which every rank
    sends one block to its successor, exactly the rotation's traffic: the same bytes on the
    same links, so in the SimPy engine the KV traffic still crosses the real links and
    contends with other traffic), one compute node for the ``cp - 1`` overlapped blocks (the
    block's kernels ``cp - 1`` times, shared, so launches count as in ``detailed``) and one for
    the last block, after both: 3 nodes per rank, layer and pass, whatever ``cp``. A collective
    rather than one long send because the engine runs its steps as ``chunks`` pieces of a block
    (lockstep-batched where the topology is symmetric) instead of every 1 MiB point-to-point
    chunk, and because it keeps the per-step latency. Uncontended, a ring takes
    ``max((cp - 1) t_c, T_rot) + t_c`` with ``T_rot`` the ring all-gather's closed form for
    ``C`` pipelined chunks (:mod:`des.sim.costs`; Patarasuk & Yuan 2009):
    ``max((cp - 1)(alpha + b/(C beta)) + (C - 1) b/(C beta), (cp - 1) b/beta + alpha')``.

Why ``phased`` is an approximation, and how far it is: the two differ only in their transfer
term, ``(cp - 1) T_x(b)`` against ``T_rot``, and ``max`` is 1-Lipschitz, so per ring, with
nothing else contending::

    |detailed - phased| <= |(cp - 1) T_x(b) - T_rot|

which is 0 when the ring is compute-bound (``(cp - 1) t_c`` exceeds both: then both are
``cp t_c``, equal up to floating-point rounding). When transfer-bound, with the default options
(chunks pipelined), ``T_rot <= (cp - 1) T_x(b)``: the rotation's chunks overlap one step's
latency with the next step's serialization, so ``phased`` is at most about ``(cp - 1) alpha``
per ring faster than ``detailed``, whose steps each wait for a whole block (the literature's
``(cp - 1) max(t_c, T_x) + t_c`` counts one latency per step). With one chunk in flight
(AstraSim-compatible options) ``T_rot ~ C (cp - 1) alpha + (cp - 1) b / beta`` and ``phased`` is
slower by about ``(C - 1)(cp - 1) alpha``. The rotation is a collective, so it holds a
communication stream (the sends of ``detailed`` hold none unless ``sends_use_comm_stream``):
with one stream, a gradient all-reduce overlapping the backward pass serializes with it. Under
contention the two also place the bytes differently in time. Since it is not exact,
``phased`` is never the default: a run that uses it says so (``ParallelConfig.approximations``,
the graph's name, and the ``approximations`` entry of the LLM report). Tests:
``tests/test_ring_attention.py``.
"""

from __future__ import annotations

from collections.abc import Callable

from des.core.graph import CollectiveType, EventGraph
from workloads.op_cost import OpCost, kernels

RING_ATTENTION = ("detailed", "phased")
"""The ring-attention models ``parallel.ring_attention`` accepts; the first is the default."""


class RingAttention:
    """Adds the attention core of one rank, layer and pass under context parallelism."""

    def __init__(self, graph: EventGraph, mode: str, cp: int, block_bytes: float,
                 fold: bool = False) -> None:
        """``block_bytes``: one KV block (K and V of a rank's tokens, its KV heads).
        ``fold``: context-parallel peers are folded (``phased`` only): the rotation is built
        for the representative with the context group as its span."""
        if mode not in RING_ATTENTION:
            raise ValueError(f"ring attention model {mode!r}; expected one of "
                             f"{', '.join(RING_ATTENTION)}")
        if fold and mode != "phased":
            raise ValueError("folding context-parallel peers needs ring attention 'phased'")
        self.fold = fold
        self.graph, self.mode, self.cp, self.block_bytes = graph, mode, cp, block_bytes
        # one shared kernel sequence per core (the same core recurs every layer and pass)
        self._blocks: dict[tuple, tuple] = {}

    def piece(self, core: list[OpCost]) -> list[OpCost]:
        """One block's share (1/cp) of the attention core's kernels."""
        cp = self.cp
        return [OpCost(c.name, c.op_class, c.flops / cp, c.bytes / cp) for c in core]

    def build(self, rank: int, ring: tuple[int, ...], h: int, cat: str, g: str,
              core: list[OpCost], passes: int, next_tag: Callable[[], int]) -> int:
        """The ring after node ``h`` of ``rank`` (``ring``: its context group in ring order);
        returns the node the layer continues from. ``passes`` = 2 moves dK, dV with K, V."""
        pos = ring.index(rank)
        nxt, prv = ring[(pos + 1) % self.cp], ring[(pos - 1) % self.cp]
        block = passes * self.block_bytes
        piece = self.piece(core)
        if self.mode == "phased":
            return self._phased(rank, ring, h, cat, g, piece, block)
        return self._detailed(rank, nxt, prv, h, cat, g, piece, block, next_tag)

    def _detailed(self, rank: int, nxt: int, prv: int, h: int, cat: str, g: str,
                  piece: list[OpCost], block: float, next_tag: Callable[[], int]) -> int:
        graph, cp = self.graph, self.cp
        for i in range(cp):
            deps = [h]
            if i < cp - 1:
                tag = next_tag()
                graph.send(rank, nxt, block, tag=tag, name=f"cp/{g}.kv{i}", deps=(h,),
                           category="cp")
                recv = graph.recv(rank, prv, block, tag=tag, name=f"cp/{g}.kv{i}",
                                  deps=(h,), category="cp")
            h = graph.compute(rank, name=f"{g}.attn{i}", kernels=kernels(piece), deps=deps,
                              category=cat)
            if i < cp - 1:
                h = graph.compute(rank, name=f"{g}.kv_ready{i}", duration_ns=0.0,
                                  deps=(h, recv), category=cat)
        return h

    def _phased(self, rank: int, ring: tuple[int, ...], h: int, cat: str, g: str,
                piece: list[OpCost], block: float) -> int:
        graph, steps = self.graph, self.cp - 1
        group, span = ((rank,), ring) if self.fold else (ring, None)
        rotation = graph.collective(rank, CollectiveType.ALL_GATHER, self.cp * block,
                                    group=group, span=span, algorithm="ring",
                                    name=f"cp/{g}.kv", deps=(h,), category="cp")
        blocks = graph.compute(rank, name=f"{g}.attn_ring", kernels=(), deps=(h,),
                               category=cat)
        node = graph.node(rank, blocks)
        node.kernels = self._repeated(piece)  # shared: O(1) memory per node, not O(cp)
        node.flops = steps * sum(c.flops for c in piece)
        node.nbytes = steps * sum(c.bytes for c in piece)
        return graph.compute(rank, name=f"{g}.attn_last", kernels=kernels(piece),
                             deps=(blocks, rotation), category=cat)

    def _repeated(self, piece: list[OpCost]) -> tuple[tuple[float, float, str], ...]:
        """The block's kernels ``cp - 1`` times, one tuple shared by every node that runs them."""
        one = tuple((float(f), float(b), str(c)) for f, b, c in kernels(piece))
        shared = self._blocks.get(one)
        if shared is None:
            shared = self._blocks[one] = one * (self.cp - 1)
        return shared


__all__ = ["RING_ATTENTION", "RingAttention"]
