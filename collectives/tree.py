"""Tree algorithms: NCCL's double binary tree all-reduce, binomial-tree broadcast and reduce,
and the pipelined chain (``ring``) broadcast and reduce.

All plans work on *positions* 0..n-1 in group order and map them to ranks at the end; every
message of a step k is received in the peer's step k (the aligned-step contract of
:mod:`collectives.base`), ranks with nothing to do in a step get an empty step.

**Double binary tree** (Sanders, Speck & Träff, "Two-tree algorithms for full bandwidth
broadcast, reduction and scan", Parallel Computing 2009; NCCL 2.4, "Massively Scale Your Deep
Learning Training with NCCL 2.4", NVIDIA blog 2019). Tree 0 is NCCL's ``ncclGetBtree`` over
positions: for ``i > 0`` let ``b`` be the lowest set bit of ``i``; the parent is
``(i ^ b) | 2b``, or ``i ^ b`` when that is ``>= n``; the children are ``i - b/2`` and the largest
``i + b/2^j`` (j >= 1) that is ``< n`` (none when ``b = 1``: odd positions are leaves). Position 0
is the root with the single child ``2^(ceil(log2 n) - 1)``. Tree 1 is tree 0 *mirrored*
(position ``i`` plays ``n-1-i``) when n is even, and *shifted* by one (position ``i`` plays
``(i-1) mod n``) when n is odd (NCCL's ``ncclGetDtree``), so the leaves of one tree (odd
positions) are inner nodes of the other. Both trees have height ``H = ceil(log2 n)``.

The buffer S is split in two halves, one per tree; each tree reduces its half to its root and
broadcasts it back. Steps: ``2H``. In the reduce phase (steps 0..H-1) a node at depth d >= 1
sends its (reduced) half to its parent in step ``H-d``, so a node receives from its children
in step ``H-d-1`` and reduces what it received; in the broadcast phase (steps H..2H-1) a node
at depth d receives from its parent in step ``H+d-1`` and sends to its children in step
``H+d``. Both trees run in the same steps. Bytes: a rank sends ``h_t`` to its parent (unless it
is tree t's root) and ``h_t`` to each child in tree t, with ``h_0 + h_1 = S``; summed over
ranks that is exactly ``2 (n-1) S``, at most ``2S`` for any rank (a leaf in one tree and a node
with two children in the other: ``S/2 + 3 S/2``), and for n a power of two exactly ``2S`` for
every position but 0 and n-1, which send ``S``.

**Binomial tree** (the MPICH broadcast/reduce tree; Thakur, Rabenseifner & Gropp, IJHPCA 2005):
``ceil(log2 n)`` steps of whole-buffer messages. With positions relative to the root
(``p = (i - i_root) mod n``), broadcast step j sends from every ``p < 2^j`` to ``p + 2^j``
(if ``< n``); reduce is the mirror image in reverse step order, the receiver reducing S per
message. The root sends (broadcast) or receives (reduce) S once per child, ``ceil(log2 n)``
times.

**Chain** (registered as ``ring``): the pipeline along the group order starting at the root.
Broadcast step k sends S from relative position k to k+1 (n-1 steps); reduce step k sends from
n-1-k to n-2-k, ending at the root. With the engine's chunking this pipelines: chunk c
reaches relative position k at ``(c + k) s + k alpha`` with ``s = S / (chunks B)``, so the last
one lands at ``(n - 2 + chunks) s + (n - 1) alpha``.
"""

from __future__ import annotations

from collectives.base import EMPTY_STEP, CollectivePlan, Step, register
from des.core.graph import CollectiveType

# ---------------------------------------------------------------------- NCCL's trees


def btree_parent(n: int, i: int) -> int:
    """Parent of position ``i`` in NCCL's binary tree over ``n`` positions (-1 for the root 0)."""
    if i == 0:
        return -1
    bit = i & -i
    up = (i ^ bit) | (bit << 1)
    return up if up < n else i ^ bit


def btree_children(n: int, i: int) -> tuple[int, ...]:
    """Children of position ``i`` in NCCL's binary tree (``ncclGetBtree``), in (d0, d1) order."""
    if i == 0:
        return (1 << ((n - 1).bit_length() - 1),) if n > 1 else ()
    low = (i & -i) >> 1
    if low == 0:
        return ()
    down0 = i - low  # always in range
    while i + low >= n:  # the largest i + b/2^j inside the group
        low >>= 1
        if low == 0:
            return (down0,)
    return (down0, i + low)


def btree_depth(n: int, i: int) -> int:
    """Depth of position ``i`` (edges to the root 0) in NCCL's binary tree."""
    depth = 0
    while i != 0:
        i = btree_parent(n, i)
        depth += 1
    return depth


def tree_height(n: int) -> int:
    """Height of NCCL's binary tree (and of the double tree) over ``n`` positions:
    ``ceil(log2 n)`` (0 for one position)."""
    return (n - 1).bit_length()


def dtree_links(n: int, i: int, tree: int) -> tuple[int, tuple[int, ...], int]:
    """``(parent, children, depth)`` of position ``i`` in tree 0 or 1 of NCCL's double binary
    tree (parent -1 at the root): tree 1 mirrors tree 0 for even n, shifts it by one for odd n."""
    if tree == 0:
        return btree_parent(n, i), btree_children(n, i), btree_depth(n, i)
    mirror = n % 2 == 0

    def back(x: int) -> int:  # tree-1 role -> position
        return n - 1 - x if mirror else (x + 1) % n

    j = n - 1 - i if mirror else (i - 1) % n
    parent = btree_parent(n, j)
    children = tuple(back(c) for c in btree_children(n, j))
    return (back(parent) if parent >= 0 else -1), children, btree_depth(n, j)


# ---------------------------------------------------------------------- double binary tree


@register(CollectiveType.ALL_REDUCE, "double_binary_tree")
class DoubleBinaryTreeAllReduce(CollectivePlan):
    """NCCL 2.4's double binary tree all-reduce: half the buffer reduced up and broadcast down
    each of two complementary binary trees, ``2 ceil(log2 n)`` steps (Sanders, Speck & Träff,
    Parallel Computing 2009; NVIDIA's NCCL 2.4 blog, 2019). See the module docstring for the
    exact trees and schedule."""

    algorithm = "double_binary_tree"
    supports = frozenset({CollectiveType.ALL_REDUCE})

    def _prepare(self) -> None:
        half = self.split(self.nbytes, 2)
        rest = float(int(self.nbytes) - int(half)) if self.options.integer_sizes else half
        self.halves = (half, rest)
        self.height = tree_height(self.size)
        self._links: dict[int, tuple[tuple[int, tuple[int, ...], int], ...]] = {}

    def tree(self, rank: int, tree: int) -> tuple[int | None, tuple[int, ...], int]:
        """``(parent rank or None, child ranks, depth)`` of ``rank`` in tree 0 or 1."""
        parent, children, depth = self._tree_links(self.position[rank])[tree]
        return (self.group[parent] if parent >= 0 else None,
                tuple(self.group[c] for c in children), depth)

    def _tree_links(self, i: int) -> tuple[tuple[int, tuple[int, ...], int], ...]:
        links = self._links.get(i)
        if links is None:
            links = self._links[i] = (dtree_links(self.size, i, 0),
                                      dtree_links(self.size, i, 1))
        return links

    def num_steps(self, rank: int) -> int:
        return 2 * self.height if self.size > 1 else 0

    def step(self, rank: int, k: int) -> Step:
        h = self.height
        sends: list[tuple[int, float]] = []
        recvs: list[tuple[int, float]] = []
        reduce = 0.0
        for (parent, children, depth), half in zip(self._tree_links(self.position[rank]),
                                                   self.halves, strict=True):
            if k < h:  # reduce towards the root
                if parent >= 0 and k == h - depth:
                    sends.append((self.group[parent], half))
                if children and k == h - depth - 1:
                    recvs.extend((self.group[c], half) for c in children)
                    reduce += half * len(children)
            else:  # broadcast back down
                j = k - h
                if parent >= 0 and j == depth - 1:
                    recvs.append((self.group[parent], half))
                if children and j == depth:
                    sends.extend((self.group[c], half) for c in children)
        if not sends and not recvs:
            return EMPTY_STEP
        return Step(tuple(sends), tuple(recvs), reduce)


# ---------------------------------------------------------------------- rooted collectives


class _RootedPlan(CollectivePlan):
    """Positions relative to the root: ``p = (i - i_root) mod n``."""

    def _prepare(self) -> None:
        self._root_pos = self.position[self.root]

    def rel(self, rank: int) -> int:
        """Position of ``rank`` relative to the root."""
        return (self.position[rank] - self._root_pos) % self.size

    def rank_at(self, p: int) -> int:
        """The rank at relative position ``p``."""
        return self.group[(p + self._root_pos) % self.size]


class _BinomialTree(_RootedPlan):
    algorithm = "binomial_tree"
    reducing = False

    def num_steps(self, rank: int) -> int:
        return tree_height(self.size)

    def step(self, rank: int, k: int) -> Step:
        p, n, s = self.rel(rank), self.size, self.nbytes
        # broadcast step j: p < 2^j sends to p + 2^j; reduce runs it backwards
        j = tree_height(n) - 1 - k if self.reducing else k
        span = 1 << j
        sends: tuple[tuple[int, float], ...] = ()
        recvs: tuple[tuple[int, float], ...] = ()
        if p < span and p + span < n:
            out = ((self.rank_at(p + span), s),)
            if self.reducing:
                recvs = out
            else:
                sends = out
        elif span <= p < 2 * span:
            inn = ((self.rank_at(p - span), s),)
            if self.reducing:
                sends = inn
            else:
                recvs = inn
        if not sends and not recvs:
            return EMPTY_STEP
        return Step(sends, recvs, s if (self.reducing and recvs) else 0.0)


@register(CollectiveType.BROADCAST, "binomial_tree")
class BinomialTreeBroadcast(_BinomialTree):
    """Binomial-tree broadcast from the root: ``ceil(log2 n)`` steps, whole buffer per message
    (Thakur, Rabenseifner & Gropp, IJHPCA 2005)."""

    supports = frozenset({CollectiveType.BROADCAST})


@register(CollectiveType.REDUCE, "binomial_tree")
class BinomialTreeReduce(_BinomialTree):
    """Binomial-tree reduce to the root: the broadcast mirrored, each receiver reducing the whole
    buffer (Thakur, Rabenseifner & Gropp, IJHPCA 2005)."""

    supports = frozenset({CollectiveType.REDUCE})
    reducing = True


class _Chain(_RootedPlan):
    algorithm = "ring"
    reducing = False

    def num_steps(self, rank: int) -> int:
        return self.size - 1

    def step(self, rank: int, k: int) -> Step:
        p, n, s = self.rel(rank), self.size, self.nbytes
        if self.reducing:  # step k: n-1-k -> n-2-k
            if p == n - 1 - k:
                return Step(((self.rank_at(p - 1), s),), ())
            if p == n - 2 - k:
                return Step((), ((self.rank_at(p + 1), s),), s)
            return EMPTY_STEP
        if p == k:  # broadcast step k: k -> k+1
            return Step(((self.rank_at(p + 1), s),), ())
        if p == k + 1:
            return Step((), ((self.rank_at(p - 1), s),))
        return EMPTY_STEP


@register(CollectiveType.BROADCAST, "ring")
class ChainBroadcast(_Chain):
    """Pipelined chain broadcast along the group order from the root: n-1 whole-buffer steps,
    pipelined by the engine's chunks (the NCCL ring broadcast)."""

    supports = frozenset({CollectiveType.BROADCAST})


@register(CollectiveType.REDUCE, "ring")
class ChainReduce(_Chain):
    """Pipelined chain reduce along the group order, ending at the root: n-1 steps, each
    receiver reducing the whole buffer (the NCCL ring reduce)."""

    supports = frozenset({CollectiveType.REDUCE})
    reducing = True
