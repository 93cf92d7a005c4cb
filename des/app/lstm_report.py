"""What an LSTM training run means: iteration time, tokens/s, achieved FLOP rate, where the
time went.

The FLOPs are the iteration's GEMM FLOPs (:meth:`workloads.lstm.LstmConfig.gemm_flops`: the
cells' forward and two backward GEMMs and the projection's three), the LSTM counterpart of
"model FLOPs" (element-wise math, the embedding and the optimizer do not count). The fraction
of peak divides their rate by the peak of all GPUs at the hardware's default dtype (the
roofline's rate; compute nodes carry no dtype of their own). The breakdown is of the slowest
rank, as for LLM training (:func:`des.app.llm_report.breakdown`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from des.app.llm_report import breakdown
from des.core.hardware import GpuSpec
from des.core.results import Result

if TYPE_CHECKING:  # the LSTM builder loads only for LSTM scenarios
    from workloads.lstm import LstmWorkload

PHASES = ("fwd", "bwd", "optimizer")
DIMS = ("tp", "pp", "dp")

__all__ = ["DIMS", "PHASES", "lstm_report"]


def lstm_report(result: Result, workload: LstmWorkload, hardware: GpuSpec | None
                ) -> dict[str, Any]:
    """The LSTM figures of a finished run (the JSON result's ``lstm`` section)."""
    cfg = workload.config
    seconds = result.makespan_ns * 1e-9
    flops = cfg.gemm_flops()
    report: dict[str, Any] = {
        "model": {k: getattr(cfg, k) for k in ("layers", "hidden", "seq", "batch", "vocab",
                                               "dtype")},
        "parameters": cfg.params(),
        "strategy": {"dp": cfg.dp, "pp": cfg.pp, "tp": cfg.tp},
        "iteration_s": seconds,
        "tokens_per_iteration": cfg.tokens,
        "tokens_per_s": cfg.tokens / seconds if seconds > 0 else 0.0,
        "gemm_flops_per_iteration": flops,
        "tflops": flops / seconds * 1e-12 if seconds > 0 else 0.0,
        "dp_allreduce_bytes_per_rank": max((sum(v) for v in workload.dp_bytes.values()),
                                           default=0.0),
    }
    if hardware is not None and seconds > 0:
        peak = hardware.peak_flops[hardware.default_dtype] * 1e9 * cfg.world  # FLOP/s
        report["fraction_of_peak"] = flops / seconds / peak
    rank = max(workload.simulated_ranks, key=lambda r: result.ranks[r].finished_ns)
    report["breakdown_rank"] = rank
    report["breakdown_s"] = breakdown(result, rank, PHASES, DIMS)
    return report
