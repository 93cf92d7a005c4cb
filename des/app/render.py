"""Rich rendering of results for the terminal: the simulation summary, topology summaries and
the AstraSim comparison tables. Library code returns data; only the CLI calls these.

Text that comes from the user's files (names, descriptions, notes, axis values) is never read
as rich markup: the CLI's consoles have markup off, and the few lines styled here opt in with
``markup=True`` and pass every user-derived part through :func:`rich.markup.escape`."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from des.core.results import Result
from des.core.units import (
    format_bandwidth,
    format_energy,
    format_power,
    format_seconds,
    format_size,
    format_time,
)

RANK_ROWS = 16


def render(name: str, description: str, links: int, result: Result, console: Console
           ) -> None:
    """The terminal summary: what ran, the makespan, per-rank time, hottest links, collectives."""
    meta = result.meta
    title = f"[bold]{escape(name)}[/]"
    console.print(f"{title}: {escape(description)}" if description else title,
                  highlight=False, markup=True)
    hw = meta["hardware"] or "no hardware model (explicit durations)"
    nodes = _count(meta["nodes"], "graph node")
    work = (f"{nodes}, {meta['hops']:,} chunk-hops" if meta["backend"] == "simpy"
            else f"{nodes} list-scheduled at closed-form cost, no contention")
    console.print(f"topology {meta['topology']} ({meta['npus']} NPUs, "
                  f"{links} links) | {hw} | backend {meta['backend']} "
                  f"({meta['transport']}) | {work}{_wall(result)}",
                  highlight=False, markup=False)
    faults = [f"{len(meta['failed_links'])} links down"] if meta["failed_links"] else []
    if meta["derated_links"]:
        faults.append(f"{len(meta['derated_links'])} derated")
    if meta["timed_faults"]:
        faults.append(f"timed: {'; '.join(meta['timed_faults'][:4])}")
    if faults:
        console.print(f"faults: {', '.join(faults)}; {meta['reroutes']} messages rerouted "
                      "mid-flight", highlight=False)
    folded, mirrored = meta.get("folded"), meta.get("mirrored_messages", 0)
    if folded:
        how = ("closed form: every image of a representative takes its time"
               if folded.get("closed_form") else
               "exact: every link of an orbit simulated once, "
               f"{folded.get('replayed_collectives', 0)} recurring collectives replayed"
               if folded["exact"] else
               "[yellow]not exact[/]: the topology breaks the symmetry, so "
               f"{folded['closed_form_collectives']} folded collectives were closed-form")
        reps = sum(1 for st in result.ranks.values() if st.represented_by is None)
        console.print(f"folded {'+'.join(folded['axes'])}: {_count(reps, 'rank')} simulated for "
                      f"{len(result.ranks)} ({how})", highlight=False, markup=True)
    elif mirrored:
        console.print(f"lockstep: {mirrored:,} of {meta['messages']:,} messages mirrored from "
                      "a representative rank (exact)", highlight=False)
    console.print(f"[bold green]makespan {format_time(result.makespan_ns)}[/]", markup=True)

    worst = max(result.ranks.values(), key=lambda st: st.finished_ns, default=None)
    if worst is not None and worst.finished_ns > 0:
        console.print(f"slowest rank: compute {_share(worst.compute_ns, worst.finished_ns)}, "
                      f"exposed communication {_share(worst.exposed_comm_ns, worst.finished_ns)}"
                      f", idle {_share(worst.idle_ns, worst.finished_ns)}", highlight=False)

    ranks = Table(title="Per-rank time", title_justify="left")
    for col in ("ranks", "finished", "compute", "comm", "exposed comm", "idle"):
        ranks.add_column(col, justify="right")
    rows = _group_ranks(result)
    for label, st in rows[:RANK_ROWS]:
        ranks.add_row(label, format_time(st.finished_ns), format_time(st.compute_ns),
                      format_time(st.comm_ns), format_time(st.exposed_comm_ns),
                      format_time(st.idle_ns))
    if len(rows) > RANK_ROWS:
        ranks.caption = f"{len(rows) - RANK_ROWS} more rows in the JSON"
    console.print(ranks)

    links = Table(title="Hottest links", title_justify="left")
    for col in ("link", "kind", "bandwidth", "bytes", "busy", "utilization", "peak queue"):
        links.add_column(col, justify="right")
    for lk in result.hottest_links(5):
        links.add_row(f"{lk.src}->{lk.dst}", lk.kind, format_bandwidth(lk.bandwidth_GBps),
                      format_size(lk.bytes), format_time(lk.busy_ns), f"{lk.utilization:.1%}",
                      str(lk.peak_queue))
    console.print(links)

    if result.collectives:
        colls = Table(title="Collectives", title_justify="left")
        for col in ("#", "collective", "algorithm", "ranks", "size", "time", "busbw GB/s"):
            colls.add_column(col, justify="right")
        for c in result.collectives[:12]:
            colls.add_row(str(c.index), c.collective, c.algorithm, str(len(c.group)),
                          format_size(c.nbytes), format_time(c.time_ns), f"{c.busbw_GBps:.1f}")
        if len(result.collectives) > 12:
            colls.caption = f"{len(result.collectives) - 12} more in the JSON"
        console.print(colls)
    if meta.get("energy"):
        render_energy(meta["energy"], console)


def render_energy(energy: dict, console: Console) -> None:
    """The energy of the run (``result.meta["energy"]``, :mod:`des.core.energy`): total, per
    token, average power, the breakdown, and what was not charged."""
    per_token = (f", {format_energy(energy['per_token_j'])}/token"
                 if energy.get("per_token_j") is not None else "")
    console.print(f"energy {format_energy(energy['total_j'])}{per_token}, average power "
                  f"{format_power(energy['average_power_w'])} "
                  f"({format_power(energy['per_gpu_power_w'])}/GPU over {energy['gpus']} GPUs): "
                  f"compute {format_energy(energy['compute_j'])}, HBM "
                  f"{format_energy(energy['hbm_j'])}, links {format_energy(energy['links_j'])}, "
                  f"switches {format_energy(energy['switch_j'])}, static "
                  f"{format_energy(energy['static_j'])}", highlight=False, markup=False)
    if energy.get("missing"):
        console.print(f"energy: not set in the hardware, charged as 0: "
                      f"{', '.join(energy['missing'])}", style="yellow", markup=False)
    for note in energy.get("notes", []):
        console.print(f"energy: {note}", style="yellow", markup=False)


def _count(n: int, noun: str) -> str:
    """``n`` and ``noun``, plural unless n is one: "1 rank", "8 ranks"."""
    return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"


def _wall(result: Result) -> str:
    """" in 1.23 s" when the run measured its wall-clock time (kept out of the JSON)."""
    return "" if result.wall_seconds is None else f" in {result.wall_seconds:.2f} s"


def _share(part: float, whole: float) -> str:
    return f"{format_time(part)} ({part / whole:.0%})"


def _group_ranks(result: Result) -> list[tuple[str, object]]:
    """Consecutive ranks whose times print the same share one row ("0-7")."""
    rows: list[tuple[list[int], tuple[str, ...], object]] = []
    for rank, st in sorted(result.ranks.items()):
        key = tuple(format_time(v) for v in (st.finished_ns, st.compute_ns, st.comm_ns,
                                             st.exposed_comm_ns, st.idle_ns))
        if rows and rows[-1][1] == key and rows[-1][0][-1] == rank - 1:
            rows[-1][0].append(rank)
        else:
            rows.append(([rank], key, st))
    return [(f"{r[0]}" if len(r) == 1 else f"{r[0]}-{r[-1]}", st) for r, _, st in rows]


def render_roofline(stats: dict[int, dict[str, float]], result: Result,
                    console: Console) -> None:
    """One line of roofline statistics for the rank that finished last (all ranks in JSON)."""
    rank = max(stats, key=lambda r: result.ranks[r].finished_ns if r in result.ranks else 0.0)
    st = stats[rank]
    console.print(f"roofline (rank {rank}): {st['compute_bound_pct']:.1f}% of compute time "
                  f"compute-bound, compute utilization {st['avg_compute_util_pct']:.1f}%, "
                  f"memory utilization {st['avg_memory_util_pct']:.1f}%, operation intensity "
                  f"{st['avg_operation_intensity']:.1f} FLOP/B (of datasheet peaks)",
                  highlight=False, markup=False)


def render_topology(info: dict, console: Console) -> None:
    """The ``topo show`` tables."""
    kind = info["kind"] if info.get("builder", info["kind"]) == info["kind"] else \
        f"{info['kind']}: {info['builder']}"
    console.print(f"[bold]{escape(str(info['name']))}[/] ({escape(str(kind))}): "
                  f"{info['npus']} NPUs, {info['switches']} switches, {info['links']} directed "
                  "links", highlight=False, markup=True)
    diam = info["diameter_hops"]
    console.print(f"diameter: {diam if diam >= 0 else 'n/a'} hops ({info['diameter_method']})",
                  highlight=False)
    console.print(f"bisection bandwidth: {format_bandwidth(info['bisection_bandwidth'])} "
                  f"per direction ({info['bisection_method']})", highlight=False)
    table = Table(title="Link classes", title_justify="left")
    for col in ("kind", "links", "bandwidth", "latency", "down", "derated"):
        table.add_column(col, justify="right")
    for row in info["link_classes"]:
        bw = format_bandwidth(row["bandwidth_min"])
        if row["bandwidth_max"] != row["bandwidth_min"]:
            bw += f" - {format_bandwidth(row['bandwidth_max'])}"
        lat = format_time(row["latency_min"])
        if row["latency_max"] != row["latency_min"]:
            lat += f" - {format_time(row['latency_max'])}"
        table.add_row(row["kind"], str(row["links"]), bw, lat, str(row["down"]),
                      str(row["derated"]))
    console.print(table)




def render_astra_terms(rows: dict, console: Console, title: str,
                       peak_memory: dict[int, int] | None = None) -> None:
    """Per-rank figures in AstraSim's terms (``{rank: AstraRankStats}``); with
    ``peak_memory`` (``{rank: bytes}``, AstraSim's ``track-local-mem``) a ``peak memory``
    column as AstraSim prints it (``sys[R] peak memory usage``)."""
    from astra_bridge.local_mem import format_bytes

    table = Table(title=title, title_justify="left")
    columns = ["rank", "finished", "exposed comm", "wall", "GPU", "comm"]
    if peak_memory is not None:
        columns.append("peak memory")
    for col in columns:
        table.add_column(col, justify="right")
    for rank, st in sorted(rows.items())[:RANK_ROWS * 4]:
        cells = [f"{v:,.0f}" if v is not None else "-" for v in
                 (st.finished_ns, st.exposed_comm_ns, st.wall_ns, st.gpu_ns, st.comm_ns)]
        if peak_memory is not None:
            peak = peak_memory.get(rank)
            cells.append("-" if peak is None else format_bytes(peak))
        table.add_row(str(rank), *cells)
    console.print(table)


def render_crosscheck(check, console: Console) -> None:
    """The side-by-side table of a cross-check, the overall difference and the critical path."""
    table = Table(title=f"des (AstraSim-compatible, {check.backend}) vs AstraSim",
                  title_justify="left")
    for col in ("rank", "des finished", "AstraSim finished", "difference", "of which compute",
                "communication"):
        table.add_column(col, justify="right")

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{value:+.2%}"

    for row in check.rows()[:RANK_ROWS * 4]:
        theirs = row["astra_finished_ns"]
        table.add_row(str(row["rank"]), f"{row['des_finished_ns']:,.0f}",
                      "-" if theirs is None else f"{theirs:,.0f}", pct(row["difference"]),
                      pct(row["compute_difference"]), pct(row["communication_difference"]))
    console.print(table)
    overall = check.overall_difference()
    if overall is not None:
        console.print(f"makespan difference: {overall:+.3%}")
    console.print(f"des's own model on the same graph: {format_time(check.des_own.makespan_ns)}"
                  " (cut-through, pipelined chunks: where the models deliberately differ)")
    if check.critical:
        console.print("critical path (des): " + " -> ".join(
            f"r{s.rank}:{s.name or s.kind}" for s in check.critical[-8:]), highlight=False)
    for note in check.notes + check.files.notes:
        console.print(f"[yellow]note:[/] {escape(str(note))}", highlight=False, markup=True)


def render_llm(llm: dict, console: Console) -> None:
    """Iteration time, throughput, MFU, the breakdown and memory of an LLM training run."""
    line = (f"[bold]{escape(str(llm['model']))}[/]: iteration {llm['iteration_s']:.3f} s, "
            f"{llm['tokens_per_s']:,.0f} tokens/s")
    if "mfu" in llm:
        line += f", MFU {llm['mfu']:.1%} ({llm['mfu_with_attention']:.1%} with attention)"
    console.print(line, highlight=False, markup=True)
    for approximation in llm.get("approximations", ()):
        console.print(f"[yellow]approximate model[/]: {escape(str(approximation))}",
                      highlight=False, markup=True)
    _breakdown(llm, console)


def render_inference(llm: dict, console: Console) -> None:
    """TTFT, time per output token, throughput, the breakdown and memory of an inference run."""
    serving = llm["serving"]
    console.print(f"[bold]{escape(str(llm['model']))}[/]: batch {serving['batch']}, "
                  f"{serving['prompt']} prompt + {serving['generate']} generated tokens: TTFT "
                  f"{format_time(llm['ttft_s'] * 1e9)}, TPOT {format_time(llm['tpot_s'] * 1e9)}"
                  f", end to end {format_time(llm['e2e_s'] * 1e9)}; "
                  f"{llm['output_tokens_per_s']:,.0f} output tokens/s, "
                  f"{llm['total_tokens_per_s']:,.0f} total tokens/s", highlight=False,
                  markup=True)
    steps = llm["decode_step_s"]
    if steps:
        console.print(f"decode steps: first {steps[0] * 1e3:.3f} ms, last "
                      f"{steps[-1] * 1e3:.3f} ms (the KV cache grows)", highlight=False)
    _breakdown(llm, console)


def render_gemm(gemm: dict, console: Console) -> None:
    """Time, achieved TFLOP/s and the compute/communication split of a distributed GEMM."""
    m, n, k = gemm["shape"]
    line = (f"[bold]GEMM {m}x{n}x{k}[/] over {gemm['tp']} GPUs, {gemm['shard']}-sharded"
            f" ({gemm['collective'] or 'no collective'}): {format_time(gemm['time_s'] * 1e9)}, "
            f"{gemm['tflops']:,.1f} TFLOP/s")
    if "fraction_of_peak" in gemm:
        line += f" ({gemm['fraction_of_peak']:.1%} of peak)"
    console.print(line, highlight=False, markup=True)
    console.print(f"compute {format_time(gemm['compute_s'] * 1e9)} "
                  f"({gemm['compute_share']:.1%}), exposed communication "
                  f"{format_time(gemm['communication_s'] * 1e9)} "
                  f"({gemm['communication_share']:.1%})", highlight=False)


def render_lstm(lstm: dict, console: Console) -> None:
    """Iteration time, tokens/s, achieved GEMM TFLOP/s and the breakdown of an LSTM run."""
    m, st = lstm["model"], lstm["strategy"]
    line = (f"[bold]LSTM {m['layers']} x {m['hidden']}[/], seq {m['seq']}, batch {m['batch']}"
            f", vocab {m['vocab']:,} ({m['dtype']}), dp {st['dp']} pp {st['pp']} tp {st['tp']}"
            f": iteration {format_time(lstm['iteration_s'] * 1e9)}, "
            f"{lstm['tokens_per_s']:,.0f} tokens/s, {lstm['tflops']:,.1f} GEMM TFLOP/s")
    gpus = st['dp'] * st['pp'] * st['tp']
    if "fraction_of_peak" in lstm:
        line += f" over {gpus} GPUs ({lstm['fraction_of_peak']:.1%} of their peak)"
    console.print(line, highlight=False, markup=True)
    _breakdown(lstm, console)


def render_sweep(sweep, results: list, console: Console, top: int = 10) -> None:
    """Counts, the ranking (and the ranking of points that fit in memory), invalid points. The
    ranking and its metric columns are those of the points' workload kind."""
    from collections import Counter

    from des.app.sweep_results import ranking
    from des.app.workload_kinds import ranking_kind

    counts = Counter(r.status for r in results)
    console.print(", ".join(f"{n} {status}" for status, n in sorted(counts.items())))
    axes = list(sweep.axes)
    for title, limit in (("best", None), ("best that fit", sweep.memory_limit)):
        if title.endswith("fit") and limit is None:
            continue
        ranked = ranking(results, limit)[:top]
        if not ranked:
            console.print(f"no point qualifies for '{title}'")
            continue
        kind = ranking_kind(r.metrics for r in ranked)
        order = "highest" if kind.higher_is_better else "lowest"
        header = next((c.header for c in kind.columns if c.key == kind.rank_key), kind.rank_key)
        suffix = f" in {format_size(limit)}" if limit else ""
        table = Table(title=f"{title}{suffix}: {header}, {order} first", title_justify="left")
        for col in ("#", *(a.rsplit(".", 1)[-1] for a in axes),
                    *(c.header for c in kind.columns)):
            table.add_column(col, justify="right")
        for r in ranked:
            table.add_row(str(r.index), *(str(r.values[a]) for a in axes),
                          *(_metric_cell(r.metrics, c.key, c.unit) for c in kind.columns))
        console.print(table)
    bad = [r for r in results if r.status != "ok"]
    for r in bad[:5]:
        console.print(f"  #{r.index} {r.status}: {r.reason}", highlight=False)
    if len(bad) > 5:
        console.print(f"  ... {len(bad) - 5} more invalid or failed points (all in the table)")


def _metric_cell(metrics: dict, key: str, unit: str) -> str:
    """One sweep-table cell; ``-`` for a metric the point does not have."""
    value = metrics.get(key)
    if value is None or (unit in ("rate", "percent", "memory") and not value):
        return "-"
    if unit == "time":
        return format_seconds(value)
    if unit == "rate":
        return f"{value:,.0f}"
    if unit == "percent":
        return f"{value:.1%}"
    if unit == "memory":
        return format_size(value) + (" OOM" if metrics.get("out_of_memory") else "")
    return f"{value:,.4g}"


def _breakdown(llm: dict, console: Console) -> None:
    """The where-the-time-went table and the peak-memory line of an LLM report."""
    table = Table(title=f"Where the time went (rank {llm['breakdown_rank']})",
                  title_justify="left")
    table.add_column("part")
    table.add_column("seconds", justify="right")
    table.add_column("share", justify="right")
    parts = llm["breakdown_s"]
    total = parts.get("finished") or 1.0
    for key, value in parts.items():
        if key != "finished" and value > 0:
            table.add_row(key.replace("_", " "), f"{value:.4f}", f"{value / total:.1%}")
    console.print(table)
    if "memory_peak_bytes" in llm:
        m = llm["memory_breakdown_bytes"]
        listed = ", ".join(f"{k.replace('_', ' ')} {format_size(v)}" for k, v in m.items())
        verdict = ""
        if "out_of_memory" in llm:
            verdict = (" [bold red]does not fit[/]" if llm["out_of_memory"] else " fits") + \
                f" in {format_size(llm['memory_capacity_bytes'])}"
        console.print(f"peak memory {format_size(llm['memory_peak_bytes'])} per GPU "
                      f"({escape(listed)}){verdict}", highlight=False, markup=True)
