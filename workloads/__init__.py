"""Workload builders: each turns a description into an EventGraph (sizes and FLOPs, no times).

Never imports the engine.
"""

from workloads.microbench import CollectiveSpec, collective_sequence, data_parallel_step

__all__ = ["CollectiveSpec", "collective_sequence", "data_parallel_step"]
