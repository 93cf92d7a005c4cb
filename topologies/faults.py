"""Faulty links: bandwidth derates (soft faults) and hard failures, fixed, random or timed.

A fault names a *cable*, the pair of devices it joins: by default both directions fail or
derate together; ``one_way`` limits it to the src -> dst direction. Parallel links between the
same pair (hierarchical stacks) are all affected. A fault with ``at_ns`` > 0 or an ``until_ns``
is timed: the engine applies it during the run and reroutes messages queued on a link that goes
down. Routing around failures is the topology's router's job (see each builder).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from des.core import limits
from topologies.base import Topology, TopologyError


@dataclass(frozen=True)
class LinkFault:
    """A fault on the cable between devices ``src`` and ``dst``.

    ``down``: the links carry nothing (hard fault); else ``derate`` in (0, 1] scales their
    bandwidth (soft fault). ``at_ns``/``until_ns``: when it starts and ends (None = never ends).
    """

    src: int
    dst: int
    down: bool = False
    derate: float = 1.0
    at_ns: float = 0.0
    until_ns: float | None = None
    one_way: bool = False

    def __post_init__(self) -> None:
        if not self.down and not (0.0 < self.derate <= 1.0):
            raise TopologyError(
                f"fault {self.src}-{self.dst}: derate must be in (0, 1], got {self.derate!r} "
                "(use down: true for a failed link)")
        if not (self.at_ns >= 0 and math.isfinite(self.at_ns)):
            raise TopologyError(f"fault {self.src}-{self.dst}: start time must be >= 0")
        if self.until_ns is not None and not self.until_ns > self.at_ns:
            raise TopologyError(
                f"fault {self.src}-{self.dst}: recovery time {self.until_ns} must be after the "
                f"start time {self.at_ns}")

    @property
    def timed(self) -> bool:
        """True when the engine must apply it during the run."""
        return self.at_ns > 0 or self.until_ns is not None

    def label(self) -> str:
        """``3-7 down`` / ``3->7 derate 0.5`` for reports."""
        arrow = "->" if self.one_way else "-"
        what = "down" if self.down else f"derate {self.derate:g}"
        when = ""
        if self.timed:
            until = "" if self.until_ns is None else f" until {self.until_ns:g} ns"
            when = f" from {self.at_ns:g} ns{until}"
        return f"{self.src}{arrow}{self.dst} {what}{when}"


def fault_links(topo: Topology, fault: LinkFault) -> list[int]:
    """Ids of the links a fault affects; a TopologyError if the devices are not joined."""
    for end in (fault.src, fault.dst):
        if not (0 <= end < topo.num_devices):
            raise TopologyError(
                f"fault {fault.src}-{fault.dst}: device {end} is outside 0..{topo.num_devices - 1}")
    ids = [lk.id for lk in topo.links_between(fault.src, fault.dst, up_only=False)]
    if not fault.one_way:
        ids += [lk.id for lk in topo.links_between(fault.dst, fault.src, up_only=False)]
    if not ids:
        raise TopologyError(
            f"fault {fault.src}-{fault.dst}: no link joins devices {fault.src} and {fault.dst} "
            f"in {topo.name}")
    return ids


def set_fault(topo: Topology, fault: LinkFault, active: bool = True) -> list[int]:
    """Apply (or, with ``active=False``, lift) a fault now; returns the affected link ids."""
    ids = fault_links(topo, fault)
    if active:
        _check_derate(topo, fault, ids)
    for i in ids:
        link = topo.links[i]
        if fault.down:
            link.up = not active
        else:
            link.derate = fault.derate if active else 1.0
    topo.invalidate_routes()
    return ids


def _check_derate(topo: Topology, fault: LinkFault, ids: list[int]) -> None:
    """A derate must not leave a link below ``min_bandwidth`` (an infinite makespan)."""
    if not fault.down:
        for i in ids:
            limits.check("min_bandwidth", topo.links[i].bandwidth * fault.derate,
                         f"fault {fault.src}-{fault.dst}",
                         what=f"bandwidth after derate {fault.derate:g}")


def apply_faults(topo: Topology, faults: Iterable[LinkFault]) -> list[LinkFault]:
    """Apply the untimed faults to the topology; return the timed ones for the engine."""
    timed = []
    for fault in faults:
        if fault.timed:
            # check it names real links, and leaves a sane bandwidth, now, not mid-run
            _check_derate(topo, fault, fault_links(topo, fault))
            timed.append(fault)
        else:
            set_fault(topo, fault)
    return timed


def cables(topo: Topology) -> list[tuple[int, int]]:
    """Device pairs joined by at least one link, each once (lower id first), sorted."""
    return sorted({(min(lk.src, lk.dst), max(lk.src, lk.dst)) for lk in topo.links})


def random_faults(topo: Topology, *, seed: int, rate: float | None = None,
                  count: int | None = None, down: bool = True, derate: float = 0.5,
                  kinds: Sequence[str] | None = None) -> list[LinkFault]:
    """Faults on randomly chosen cables: each fails with probability ``rate``, or exactly
    ``count`` of them are drawn without replacement; ``kinds`` limits the draw to link kinds.
    Deterministic for a given seed (numpy PCG64)."""
    if (rate is None) == (count is None):
        raise TopologyError("random faults: give exactly one of rate or count")
    pool = cables(topo)
    if kinds is not None:
        wanted = set(kinds)
        pool = [c for c in pool
                if any(lk.kind in wanted for lk in topo.links_between(*c, up_only=False))]
    # numpy only here: importing it costs ~70 ms of start-up on every run without random faults
    import numpy as np

    rng = np.random.default_rng(seed)
    if rate is not None:
        if not (0.0 <= rate <= 1.0):
            raise TopologyError(f"random faults: rate must be in [0, 1], got {rate!r}")
        chosen = [c for c, u in zip(pool, rng.random(len(pool)), strict=True) if u < rate]
    else:
        if not (0 <= count <= len(pool)):
            raise TopologyError(
                f"random faults: count must be in 0..{len(pool)} (cables available), got {count}")
        chosen = [pool[i] for i in sorted(rng.choice(len(pool), size=count, replace=False))]
    return [LinkFault(a, b, down=down, derate=1.0 if down else derate) for a, b in chosen]
