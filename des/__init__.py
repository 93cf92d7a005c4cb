"""des: a discrete-event simulator of distributed ML systems.

Workloads build an :class:`~des.core.graph.EventGraph` (sizes and FLOPs, never times); backends time
it on a topology: :mod:`des.sim.engine` with link contention (SimPy), later an analytical backend
and the AstraSim bridge.
"""

__version__ = "0.1.0"
