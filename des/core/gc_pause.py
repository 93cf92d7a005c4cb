"""Pausing Python's cyclic garbage collector while a large structure is built or run.

Building an event graph or running it allocates 10^5-10^6 objects that all live to the end of
the step (nodes, op records, events): each young-generation collection meanwhile finds nothing
to free, and each full collection rescans everything built so far (about 30% of a GPT-3 step's
CPU time with the collector on). Reference counting still frees whatever is not in a cycle; the
collector's previous state is restored afterwards.

What the block allocated and still lives is then moved to the oldest generation in O(1)
(``gc.freeze()`` then ``gc.unfreeze()``), so young collections do not rescan it (0.6 s after a
GPT-3 step). Garbage cycles made inside the block move there too and wait for the next full
collection, which may be far off; so the runs break their own cycles when they end (the
models' ``detach``, :meth:`des.sim.transport.Transport.close`), and repeated runs in one process
leave a handful of objects each (``tests/test_gc_pause.py``). A host program that froze objects
itself keeps them frozen: then the block skips the move.
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
            if gc.get_freeze_count() == 0:  # unfreeze would also release a host's frozen set
                gc.freeze()
                gc.unfreeze()
            gc.enable()
