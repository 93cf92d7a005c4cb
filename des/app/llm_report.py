"""What an LLM training run means: iteration time, throughput, MFU, where the time went, memory.

Model FLOPs utilization (MFU) is model FLOPs per second over the peak of all GPUs, with model
FLOPs = 6 x parameters x tokens (Kaplan et al. 2020; active parameters for mixture-of-experts)
and, in ``mfu_with_attention``, plus 12 x layers x heads x head_dim x sequence per token for
attention (Chowdhery et al. 2022, PaLM appendix B; with multi-head latent attention 2 x head_dim
is the query/key plus the value head width, and a sliding window caps the sequence at the
window); recomputation does not count.

The breakdown is of the slowest simulated rank: its compute time by phase (forward, backward,
recompute, optimizer; union of intervals), its communication by parallel dimension that no
compute overlaps (exposed), and the time it did neither (pipeline bubble and other waiting).
Categories are the ``category`` the workload builders give each node, carried into the op
records (see :mod:`workloads.llm`); node names are never parsed, so renaming a node cannot move
its time.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any

from des.core.hardware import GpuSpec
from des.core.results import Result, intersection_length, merge_intervals

if TYPE_CHECKING:  # for annotations only: the LLM builders load only for LLM scenarios
    from workloads.inference import InferenceWorkload
    from workloads.llm import TrainingWorkload

COMPUTE = ("fwd", "bwd", "recompute", "optimizer")
COMM = ("tp", "cp", "ep", "pp", "dp")


def training_report(result: Result, workload: TrainingWorkload,
                    hardware: GpuSpec | None) -> dict[str, Any]:
    """The LLM figures of a finished run (goes into the JSON result under ``llm``)."""
    model, par = workload.model, workload.par
    seconds = result.makespan_ns * 1e-9
    tokens = workload.tokens
    params = model.active_params() if model.experts else model.params()
    model_flops = 6.0 * params * tokens
    widths = model.head_dim + (model.v_head_dim if model.is_mla else model.head_dim)
    keys = min(workload.seq, model.sliding_window or workload.seq)
    attention_flops = 6.0 * model.layers * model.heads * widths * keys * tokens
    report: dict[str, Any] = {
        "model": model.name,
        "parameters": model.params(),
        "strategy": {k: getattr(par, k) for k in ("dp", "tp", "pp", "cp", "ep", "sp", "zero",
                                                  "recompute", "micro_batch", "global_batch",
                                                  "schedule", "virtual_stages", "fold_tp",
                                                  "ring_attention")},
        "approximations": list(par.approximations),
        "iteration_s": seconds,
        "tokens_per_iteration": tokens,
        "tokens_per_s": tokens / seconds if seconds > 0 else 0.0,
        "model_flops_per_iteration": model_flops,
    }
    if hardware is not None and seconds > 0:
        peak = hardware.peak_flops[hardware.default_dtype] * 1e9 * par.world  # FLOP/s
        report["mfu"] = model_flops / seconds / peak
        report["mfu_with_attention"] = (model_flops + attention_flops) / seconds / peak
    rank = max(workload.simulated_ranks, key=lambda r: result.ranks[r].finished_ns)
    report["breakdown_rank"] = rank
    report["breakdown_s"] = breakdown(result, rank)
    report.update(memory_section(workload.memory, hardware,
                                 ("weights", "gradients", "optimizer", "activations")))
    return report


def memory_section(memory: dict, hardware: GpuSpec | None, parts: tuple[str, ...]
                   ) -> dict[str, Any]:
    """Peak memory per GPU (the worst rank), its ``parts``, and the out-of-memory verdict."""
    if not memory:
        return {}
    worst = max(memory, key=lambda r: memory[r].total)
    m = memory[worst]
    out: dict[str, Any] = {"memory_peak_bytes": m.total, "memory_peak_rank": worst,
                           "memory_breakdown_bytes": {k: getattr(m, k) for k in parts}}
    if hardware is not None:
        out["memory_capacity_bytes"] = hardware.hbm_capacity
        out["out_of_memory"] = m.total > hardware.hbm_capacity
    return out


def breakdown(result: Result, rank: int, phases: tuple[str, ...] = COMPUTE,
              dims: tuple[str, ...] = COMM) -> dict[str, float]:
    """Seconds of one rank: compute by phase (other compute as ``other``), communication of
    each parallel dimension that no compute overlaps (exposed), and idle."""
    compute: dict[str, list[tuple[float, float]]] = defaultdict(list)
    comm: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for op in result.ops:
        if op.rank != rank or op.end_ns <= op.start_ns:
            continue
        category = op.category
        if op.kind == "compute":
            compute[category if category in phases else "other"].append(
                (op.start_ns, op.end_ns))
        elif category in dims:
            comm[category].append((op.start_ns, op.end_ns))
    busy = merge_intervals([iv for ivs in compute.values() for iv in ivs])
    out = {f"compute_{k}": sum(e - s for s, e in merge_intervals(v)) * 1e-9
           for k, v in sorted(compute.items())}
    for dim in dims:
        merged = merge_intervals(comm.get(dim, []))
        total = sum(e - s for s, e in merged)
        out[f"exposed_{dim}"] = (total - intersection_length(merged, busy)) * 1e-9
    stats = result.ranks[rank]
    out["idle"] = stats.idle_ns * 1e-9
    out["finished"] = stats.finished_ns * 1e-9
    return out


def inference_report(result: Result, workload: InferenceWorkload,
                     hardware: GpuSpec | None) -> dict[str, Any]:
    """The serving figures of a finished inference run (goes into the JSON under ``llm``).

    Read on the last pipeline stage: TTFT (time to first token) is the end of the prefill,
    nothing else (no queueing); decode step ``i`` takes from the end of step ``i - 1`` (the
    prefill for ``i = 0``) to its own end, and TPOT (time per output token) is their mean;
    end-to-end latency is the makespan. Output tokens/s is ``batch * generate / (e2e - TTFT)``
    (the decode phase's rate), total tokens/s ``batch * (prompt + generate) / e2e``. Memory: the
    GPU with the most (weights + KV cache + prefill working set), and whether it exceeds the
    GPU's capacity.
    """
    cfg, model = workload.cfg, workload.model
    rank = workload.last_stage_rank
    ends = {op.node: op.end_ns for op in result.ops if op.rank == rank}
    ttft_ns = ends[workload.prefill_end[rank]]
    step_ends = [ends[node] for node in workload.decode_end[rank]]
    steps = [(b - a) * 1e-9 for a, b in zip([ttft_ns, *step_ends], step_ends, strict=False)]
    e2e = result.makespan_ns * 1e-9
    ttft = ttft_ns * 1e-9
    decode = e2e - ttft
    report: dict[str, Any] = {
        "model": model.name,
        "parameters": model.params(),
        "serving": {k: getattr(cfg, k) for k in ("tp", "pp", "batch", "prompt", "generate",
                                                 "dtype_bytes", "flash", "fold_tp")},
        "timing_rank": rank,
        "ttft_s": ttft,
        "tpot_s": sum(steps) / len(steps) if steps else 0.0,
        "decode_step_s": steps,
        "e2e_s": e2e,
        "output_tokens": workload.output_tokens,
        "output_tokens_per_s": workload.output_tokens / decode if decode > 0 else 0.0,
        "total_tokens_per_s": workload.total_tokens / e2e if e2e > 0 else 0.0,
        "breakdown_rank": rank,
        "breakdown_s": inference_breakdown(result, rank),
    }
    report.update(memory_section(workload.memory, hardware,
                                 ("weights", "kv_cache", "activations")))
    return report


def inference_breakdown(result: Result, rank: int) -> dict[str, float]:
    """:func:`breakdown` with the inference phases (prefill, decode) and dimensions (tp, pp)."""
    return breakdown(result, rank, ("prefill", "decode"), ("tp", "pp"))
