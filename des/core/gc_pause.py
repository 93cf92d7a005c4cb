"""Pausing Python's cyclic garbage collector while a large structure is built or run.

Building an event graph or running it allocates 10^5-10^6 objects that all live to the end of
the step (nodes, op records, events): each young-generation collection meanwhile finds nothing
to free, and each full collection rescans everything built so far (about 30% of a GPT-3 step's
CPU time with the collector on). Reference counting still frees whatever is not in a cycle; the
collector's previous state is restored afterwards, and it collects any cycles then.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["cyclic_gc_paused"]


@contextmanager
def cyclic_gc_paused() -> Iterator[None]:
    """Disable the cyclic collector inside the block (nesting is fine), then restore it."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            # what the block allocated would otherwise sit in the youngest generation and be
            # rescanned by a young, a middle and a full collection in turn (0.6 s after a
            # GPT-3 step); freeze-then-unfreeze moves every tracked object to the oldest
            # generation in O(1), where it is scanned only by full collections, as any
            # long-lived object is (CPython's gc.freeze / gc.unfreeze)
            gc.freeze()
            gc.unfreeze()
            gc.enable()
